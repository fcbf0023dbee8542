//! WAL and backup-label arithmetic, and the hand-off of WAL into a clone.
//!
//! A branch taken in backup mode starts from the checkpoint named in its
//! `backup_label` and must replay WAL up to the stop LSN before it is
//! consistent. The snapshot already holds the WAL written before it was
//! taken; the rest (snapshot .. stop) is copied here from the live source,
//! whose WAL a replication slot held back meanwhile.

use super::datadir::DataDir;
use crate::error::{Error, Result};
use crate::osuser::OsUser;

/// A WAL location (`XXXXXXXX/XXXXXXXX`).
pub type Lsn = u64;

/// Parse an LSN as PostgreSQL prints it.
pub fn parse_lsn(s: &str) -> Result<Lsn> {
    let (hi, lo) = s
        .trim()
        .split_once('/')
        .ok_or_else(|| Error::postgres(format!("not an LSN: {s:?}")))?;
    let hi =
        u64::from_str_radix(hi, 16).map_err(|_| Error::postgres(format!("not an LSN: {s:?}")))?;
    let lo =
        u64::from_str_radix(lo, 16).map_err(|_| Error::postgres(format!("not an LSN: {s:?}")))?;
    if hi > u32::MAX as u64 || lo > u32::MAX as u64 {
        return Err(Error::postgres(format!("not an LSN: {s:?}")));
    }
    Ok((hi << 32) | lo)
}

/// The facts a `backup_label` holds that the WAL hand-off needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupLabel {
    /// LSN where replay must start.
    pub start_lsn: Lsn,
    /// Name of the WAL segment holding `start_lsn`.
    pub start_segment: String,
    /// Timeline of the backup.
    pub timeline: u32,
}

/// Parse the `labelfile` returned by `pg_backup_stop`.
pub fn parse_backup_label(label: &str) -> Result<BackupLabel> {
    let mut start = None;
    let mut tli = None;
    for line in label.lines() {
        if let Some(rest) = line.strip_prefix("START WAL LOCATION: ") {
            // "0/9000028 (file 000000010000000000000009)"
            let lsn = rest.split_whitespace().next().unwrap_or("");
            let file = rest
                .split("(file ")
                .nth(1)
                .and_then(|s| s.strip_suffix(')'))
                .unwrap_or("");
            start = Some((parse_lsn(lsn)?, file.to_string()));
        } else if let Some(rest) = line.strip_prefix("START TIMELINE: ") {
            tli = rest.trim().parse::<u32>().ok();
        }
    }
    let (start_lsn, start_segment) =
        start.ok_or_else(|| Error::postgres("backup label has no START WAL LOCATION"))?;
    if !is_segment_name(&start_segment) {
        return Err(Error::postgres(format!(
            "backup label names an odd WAL file {start_segment:?}"
        )));
    }
    // Labels before PG 11 had no START TIMELINE line; the file name has it.
    let timeline = match tli {
        Some(t) => t,
        None => u32::from_str_radix(&start_segment[..8], 16)
            .map_err(|_| Error::postgres("bad timeline in WAL file name"))?,
    };
    Ok(BackupLabel {
        start_lsn,
        start_segment,
        timeline,
    })
}

/// True for a 24-hex-digit WAL segment file name.
pub fn is_segment_name(s: &str) -> bool {
    s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Segment file name holding `lsn` on `timeline` with segments of `seg_size` bytes.
pub fn segment_name(timeline: u32, lsn: Lsn, seg_size: u64) -> String {
    let segno = lsn / seg_size;
    let per_id = 0x1_0000_0000u64 / seg_size;
    format!(
        "{:08X}{:08X}{:08X}",
        timeline,
        segno / per_id,
        segno % per_id
    )
}

/// Every segment name from the one holding `start` through the one holding
/// `stop`, inclusive.
pub fn segments_between(timeline: u32, start: Lsn, stop: Lsn, seg_size: u64) -> Vec<String> {
    let (a, b) = (start / seg_size, stop / seg_size);
    (a..=b.max(a))
        .map(|n| segment_name(timeline, n * seg_size, seg_size))
        .collect()
}

/// The parts of a segment file name: (timeline, segment number), with
/// `seg_size`-byte segments; `None` for anything else (`.history`,
/// `.partial`, `.backup` files, temporary files).
pub fn parse_segment_name(name: &str, seg_size: u64) -> Option<(u32, u64)> {
    if !is_segment_name(name) {
        return None;
    }
    let tli = u32::from_str_radix(&name[..8], 16).ok()?;
    let hi = u64::from_str_radix(&name[8..16], 16).ok()?;
    let lo = u64::from_str_radix(&name[16..24], 16).ok()?;
    let per_id = 0x1_0000_0000u64 / seg_size;
    Some((tli, hi * per_id + lo))
}

/// Format an LSN as PostgreSQL prints it (`X/Y`, hex).
pub fn format_lsn(lsn: Lsn) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// The `archive_command` that copies each finished segment into `dir`:
/// through a temporary name, synced, then renamed into place and the
/// directory synced, so a crash never leaves a torn file under a
/// segment's name. A file already there with the same bytes is success
/// (the server retries after a crash between the copy and its own
/// bookkeeping); a different one is a failure, never overwritten.
/// PostgreSQL runs it with `sh -c` in the data directory; `%p` and `%f`
/// are its own (a path under `pg_wal` and a file name), and `dir` may hold
/// no character the shell or the configuration file would interpret.
pub fn archive_command(dir: &std::path::Path) -> Result<String> {
    let d = dir.to_str().unwrap_or("");
    if !dir.is_absolute()
        || d.is_empty()
        || d.chars().any(|c| {
            !(c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.' | '+' | ',' | '@'))
        })
    {
        return Err(Error::Config(format!(
            "the WAL archive directory {} has characters betterpg will not put into a shell command: use a pool mountpoint of letters, digits and / - _ . + , @",
            dir.display()
        )));
    }
    Ok(format!(
        "f=\"%f\"; d=\"{d}\"; if [ -e \"$d/$f\" ]; then cmp -s \"%p\" \"$d/$f\"; \
         else cp \"%p\" \"$d/.$f.tmp\" && sync \"$d/.$f.tmp\" && mv \"$d/.$f.tmp\" \"$d/$f\" && sync \"$d\"; fi"
    ))
}

/// Unit of comparison when copying WAL: one WAL page.
const WAL_CHUNK: usize = 8192;

/// Copy the named segments from `src_wal` into `dst_wal` so that each ends up
/// byte-identical to the source. Returns the bytes actually written.
///
/// Why not `fs::copy`: the clone already holds most of each segment (as it
/// was at snapshot time), and rewriting a whole 16 MB segment would make a
/// fresh branch own 16 MB of pool space per segment. Only pages that differ
/// are written, and in a new file all-zero pages are left as holes.
///
/// A missing source segment is an error: without it the branch would refuse
/// to start ("WAL ends before end of online backup").
///
/// Both directories are reached without following links (see
/// [`super::datadir`]): the source may itself be a branch whose superuser
/// planted a link named like a segment, and the clone holds the same links.
/// A source segment that is not a regular file fails the branch (its bytes
/// are needed); one in the clone is removed (a link, never its target) and
/// written anew from the source, without a word: the clone is betterpg's.
/// Every segment is at most `segment_size` bytes; new files go to `owner`.
pub fn copy_segments(
    src_wal: &DataDir,
    dst_wal: &DataDir,
    segments: &[String],
    segment_size: u64,
    owner: &OsUser,
) -> Result<u64> {
    let mut written = 0u64;
    for seg in segments {
        written += copy_segment_as(src_wal, seg, dst_wal, seg, segment_size, owner)?;
    }
    Ok(written)
}

/// Make the clone's WAL hold every byte of the backup's WAL, from `start`
/// (its `START WAL LOCATION`) to `stop` (the end of its last record) on
/// `timeline`, like [`copy_segments`] of every segment between them, but
/// reading only the pages that can differ. Returns the bytes written.
///
/// Why only those: a clone's segments are as they were at snapshot time,
/// and WAL once written does not change, so everything before `start`
/// (flushed by the backup's checkpoint, before the snapshot) is already
/// there, and nothing after `stop` is needed (recovery ends at the first
/// page that is not of this segment, and pages after `stop` in the clone
/// are of a recycled segment or zero). Reading two whole 16 MB segments
/// through the file system for a few pages of difference was most of this
/// step. A segment's first page is always compared too (recovery checks it
/// whenever it enters a segment). A segment the clone lacks, or holds as
/// anything but a regular file of a segment's size, is copied whole, as
/// [`copy_segments`] does.
pub fn copy_backup_wal(
    src_wal: &DataDir,
    dst_wal: &DataDir,
    timeline: u32,
    start: Lsn,
    stop: Lsn,
    segment_size: u64,
    owner: &OsUser,
) -> Result<u64> {
    let mut written = 0u64;
    let (first, last) = (
        start / segment_size,
        (stop / segment_size).max(start / segment_size),
    );
    let page = WAL_CHUNK as u64;
    for n in first..=last {
        let base = n * segment_size;
        let seg = segment_name(timeline, base, segment_size);
        let lo = start.saturating_sub(base).min(segment_size) / page * page;
        let hi = stop
            .saturating_sub(base)
            .div_ceil(page)
            .saturating_mul(page)
            .clamp(lo, segment_size);
        written += copy_segment_window(
            src_wal,
            &seg,
            dst_wal,
            &seg,
            segment_size,
            Some(lo..hi),
            owner,
        )?;
    }
    Ok(written)
}

/// [`copy_segments`] of one file `src_name` of `src_wal` to `seg` in
/// `dst_wal` (e.g. `pg_receivewal`'s `NAME.partial` as `NAME`).
pub fn copy_segment_as(
    src_wal: &DataDir,
    src_name: &str,
    dst_wal: &DataDir,
    seg: &str,
    segment_size: u64,
    owner: &OsUser,
) -> Result<u64> {
    copy_segment_window(src_wal, src_name, dst_wal, seg, segment_size, None, owner)
}

/// Compare the pages of `window` (and the first page) of a segment the
/// clone holds whole (a regular file of a segment's size) with the
/// source's, write those that differ, and sync it if any did. Returns the
/// bytes written.
fn update_window(
    from: &std::fs::File,
    shown_from: &std::path::Path,
    to: &std::fs::File,
    shown_to: &std::path::Path,
    window: &std::ops::Range<u64>,
) -> Result<u64> {
    use std::os::unix::fs::FileExt;
    let page = WAL_CHUNK as u64;
    let mut written = 0u64;
    let ranges = [0..page.min(window.start), window.clone()];
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for r in ranges.iter().filter(|r| r.start < r.end) {
        let len = (r.end - r.start) as usize;
        a.resize(len, 0);
        b.resize(len, 0);
        from.read_exact_at(&mut a, r.start)
            .map_err(|e| Error::io(format!("reading {}", shown_from.display()), e))?;
        to.read_exact_at(&mut b, r.start)
            .map_err(|e| Error::io(format!("reading {}", shown_to.display()), e))?;
        for (i, (x, y)) in a.chunks(WAL_CHUNK).zip(b.chunks(WAL_CHUNK)).enumerate() {
            if x == y {
                continue;
            }
            to.write_all_at(x, r.start + (i * WAL_CHUNK) as u64)
                .map_err(|e| Error::io(format!("writing {}", shown_to.display()), e))?;
            written += x.len() as u64;
        }
    }
    if written > 0 {
        to.sync_all()
            .map_err(|e| Error::io(format!("finishing {}", shown_to.display()), e))?;
    }
    Ok(written)
}

/// [`copy_segment_as`], reading and comparing only `window` (and the
/// first page) when the clone already holds the segment; see
/// [`copy_backup_wal`].
fn copy_segment_window(
    src_wal: &DataDir,
    src_name: &str,
    dst_wal: &DataDir,
    seg: &str,
    segment_size: u64,
    window: Option<std::ops::Range<u64>>,
    owner: &OsUser,
) -> Result<u64> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut written = 0u64;
    {
        let from = src_wal.path().join(src_name);
        let to = dst_wal.path().join(seg);
        let mut f = src_wal.open_read(src_name)?.ok_or_else(|| {
            Error::io(
                format!(
                    "reading WAL segment {} (needed to reach the backup's end)",
                    from.display()
                ),
                std::io::Error::from(std::io::ErrorKind::NotFound),
            )
        })?;
        if let Some(window) = &window {
            let len = f
                .metadata()
                .map_err(|e| Error::io(format!("reading {}", from.display()), e))?
                .len();
            if len > segment_size {
                return Err(Error::InvalidState(format!(
                    "{} is larger than a WAL segment ({segment_size} bytes)",
                    from.display()
                )));
            }
            if len == segment_size
                && dst_wal.entry_type(seg)? == Some(super::datadir::EntryType::File)
            {
                if let Some(out) = dst_wal.open_rw(seg)? {
                    let dst_len = out
                        .metadata()
                        .map_err(|e| Error::io(format!("reading {}", to.display()), e))?
                        .len();
                    if dst_len == segment_size {
                        let n = update_window(&f, &from, &out, &to, window)?;
                        super::datadir::give_fd(&out, owner, &to.display().to_string())?;
                        return Ok(n);
                    }
                }
            }
        }
        let mut src = Vec::new();
        Read::by_ref(&mut f)
            .take(segment_size + 1)
            .read_to_end(&mut src)
            .map_err(|e| Error::io(format!("reading {}", from.display()), e))?;
        if src.len() as u64 > segment_size {
            return Err(Error::InvalidState(format!(
                "{} is larger than a WAL segment ({segment_size} bytes)",
                from.display()
            )));
        }
        // Whatever sits in the clone under this name and is not a regular
        // file (a link a branch's superuser planted, a directory, a FIFO)
        // is removed, never followed, and the segment made anew: the clone
        // is ours to write, and the source's bytes are what belongs there.
        if dst_wal
            .entry_type(seg)?
            .is_some_and(|t| t != super::datadir::EntryType::File)
        {
            dst_wal.remove(seg)?;
        }
        let mut existing = Vec::new();
        let (mut out, had) = match dst_wal.open_rw(seg)? {
            Some(mut f) => {
                Read::by_ref(&mut f)
                    .take(segment_size)
                    .read_to_end(&mut existing)
                    .map_err(|e| Error::io(format!("reading {}", to.display()), e))?;
                (f, true)
            }
            None => (
                dst_wal
                    .create_new(seg, Some(owner), 0o600)?
                    .ok_or_else(|| {
                        Error::InvalidState(format!("{} appeared while copying", to.display()))
                    })?,
                false,
            ),
        };
        for (i, chunk) in src.chunks(WAL_CHUNK).enumerate() {
            let off = i * WAL_CHUNK;
            let same = if had {
                existing.get(off..off + chunk.len()) == Some(chunk)
            } else {
                chunk.iter().all(|b| *b == 0)
            };
            if same {
                continue;
            }
            out.seek(SeekFrom::Start(off as u64))
                .and_then(|_| out.write_all(chunk))
                .map_err(|e| Error::io(format!("writing {}", to.display()), e))?;
            written += chunk.len() as u64;
        }
        out.set_len(src.len() as u64)
            .and_then(|_| out.sync_all())
            .map_err(|e| Error::io(format!("finishing {}", to.display()), e))?;
        super::datadir::give_fd(&out, owner, &to.display().to_string())?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LABEL: &str = "START WAL LOCATION: 0/9000028 (file 000000010000000000000009)\n\
CHECKPOINT LOCATION: 0/9000060\n\
BACKUP METHOD: streamed\n\
BACKUP FROM: primary\n\
START TIME: 2026-11-27 10:00:00 UTC\n\
LABEL: betterpg\n\
START TIMELINE: 1\n";

    /// The OS user the copied segments go to in these tests: `postgres`
    /// when it exists, else whoever runs them.
    fn test_owner() -> crate::osuser::OsUser {
        crate::osuser::OsUser::resolve(None).unwrap_or(crate::osuser::OsUser {
            name: "postgres".into(),
            uid: nix::unistd::Uid::effective().as_raw(),
            gid: nix::unistd::Gid::effective().as_raw(),
            home: "/".into(),
        })
    }

    #[test]
    fn parses_label() {
        let l = parse_backup_label(LABEL).unwrap();
        assert_eq!(l.start_lsn, 0x9000028);
        assert_eq!(l.start_segment, "000000010000000000000009");
        assert_eq!(l.timeline, 1);
        assert!(parse_backup_label("LABEL: x\n").is_err());
    }

    #[test]
    fn lsn_and_segment_math() {
        assert_eq!(parse_lsn("0/9000028").unwrap(), 0x9000028);
        assert_eq!(parse_lsn("1/0").unwrap(), 1 << 32);
        assert!(parse_lsn("zz").is_err());
        let seg = 16 * 1024 * 1024;
        assert_eq!(segment_name(1, 0x9000028, seg), "000000010000000000000009");
        assert_eq!(
            segment_name(2, (1 << 32) + 0x1000000, seg),
            "000000020000000100000001"
        );
        // 1 GB segments: four per xlogid
        assert_eq!(
            segment_name(1, 0xC000_0000, 1 << 30),
            "000000010000000000000003"
        );
        assert_eq!(
            segments_between(1, 0xFF00_0000, (1 << 32) + 0x100_0000, seg),
            vec![
                "0000000100000000000000FF",
                "000000010000000100000000",
                "000000010000000100000001"
            ]
        );
        assert_eq!(segments_between(1, 0x9000028, 0x9000100, seg).len(), 1);
    }

    /// Run `archive_command` as PostgreSQL does (`sh -c`, in the data
    /// directory, `%p`/`%f` substituted).
    fn archive(cmd: &str, data: &std::path::Path, seg: &str) -> bool {
        let line = cmd
            .replace("%p", &format!("pg_wal/{seg}"))
            .replace("%f", seg);
        std::process::Command::new("sh")
            .arg("-c")
            .arg(line)
            .current_dir(data)
            .status()
            .unwrap()
            .success()
    }

    #[test]
    fn the_archive_command_copies_once_and_never_overwrites_a_different_file() {
        let d = tempfile::tempdir().unwrap();
        let data = d.path().join("data");
        let arch = d.path().join("arch");
        std::fs::create_dir_all(data.join("pg_wal")).unwrap();
        std::fs::create_dir_all(&arch).unwrap();
        let cmd = archive_command(&arch).unwrap();
        let seg = "000000010000000000000001";
        std::fs::write(data.join("pg_wal").join(seg), b"first bytes").unwrap();
        assert!(archive(&cmd, &data, seg));
        assert_eq!(std::fs::read(arch.join(seg)).unwrap(), b"first bytes");
        // Again, same bytes (a retry after a crash): success, no change.
        assert!(archive(&cmd, &data, seg));
        // Different bytes under the same name: refused, the archive kept.
        std::fs::write(data.join("pg_wal").join(seg), b"other bytes").unwrap();
        assert!(!archive(&cmd, &data, seg));
        assert_eq!(std::fs::read(arch.join(seg)).unwrap(), b"first bytes");
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(&arch).unwrap().collect();
        assert_eq!(names.len(), 1);
        // A missing source fails.
        assert!(!archive(&cmd, &data, "000000010000000000000002"));
        // A directory the shell or the settings file would interpret.
        for bad in ["/a b", "/a'b", "/a\"b", "/a$b", "rel/dir", "/a`b`"] {
            let e = archive_command(std::path::Path::new(bad)).unwrap_err();
            assert_eq!(e.kind_name(), "config", "{bad}");
        }
        assert_eq!(format_lsn(0x1_0000_00A0), "1/A0");
        assert_eq!(
            parse_segment_name("0000000200000001000000FF", 16 << 20),
            Some((2, 0x1FF))
        );
        assert_eq!(parse_segment_name("00000002.history", 16 << 20), None);
    }

    #[test]
    fn copy_makes_identical_files_writing_only_differences() {
        let d = tempfile::tempdir().unwrap();
        let (src, dst) = (d.path().join("src"), d.path().join("dst"));
        std::fs::create_dir_all(&src).unwrap();
        std::fs::create_dir_all(&dst).unwrap();
        let a = "000000010000000000000001".to_string();
        let b = "000000010000000000000002".to_string();
        let mut data = vec![0u8; 64 * 1024];
        data[100] = 1;
        std::fs::write(src.join(&a), &data).unwrap();
        let mut old = data.clone();
        old[100] = 0; // the clone's copy lacks the last write
        std::fs::write(dst.join(&a), &old).unwrap();
        let mut fresh = vec![0u8; 64 * 1024];
        fresh[9000] = 7;
        std::fs::write(src.join(&b), &fresh).unwrap();
        let me = test_owner();
        let (srcd, dstd) = (DataDir::open(&src).unwrap(), DataDir::open(&dst).unwrap());
        let n = copy_segments(&srcd, &dstd, &[a.clone(), b.clone()], 1 << 24, &me).unwrap();
        assert_eq!(n, 2 * WAL_CHUNK as u64, "one page differs in each file");
        assert_eq!(std::fs::read(dst.join(&a)).unwrap(), data);
        assert_eq!(std::fs::read(dst.join(&b)).unwrap(), fresh);
        let missing = copy_segments(
            &srcd,
            &dstd,
            &["000000010000000000000009".into()],
            1 << 24,
            &me,
        );
        assert_eq!(missing.unwrap_err().code(), 11);
        // A segment planted as a link in the source is refused, not read.
        let c = "000000010000000000000003".to_string();
        std::os::unix::fs::symlink("/etc/hostname", src.join(&c)).unwrap();
        assert!(copy_segments(&srcd, &dstd, std::slice::from_ref(&c), 1 << 24, &me).is_err());
        assert!(!dst.join(&c).exists());
    }

    #[test]
    fn backup_wal_reads_only_pages_between_start_and_stop() {
        let d = tempfile::tempdir().unwrap();
        let (src, dst) = (d.path().join("src"), d.path().join("dst"));
        std::fs::create_dir_all(&src).unwrap();
        std::fs::create_dir_all(&dst).unwrap();
        let seg = 64 * 1024u64;
        let page = WAL_CHUNK;
        let a = segment_name(1, 0, seg);
        let b = segment_name(1, seg, seg);
        let c = segment_name(1, 2 * seg, seg);
        // The source: segments a, b, c, every page a different pattern.
        let pattern = |n: u8| -> Vec<u8> {
            (0..seg as usize)
                .map(|i| n ^ (i / page) as u8 ^ 0x5a)
                .collect()
        };
        let (sa, sb, sc) = (pattern(1), pattern(2), pattern(3));
        std::fs::write(src.join(&a), &sa).unwrap();
        std::fs::write(src.join(&b), &sb).unwrap();
        std::fs::write(src.join(&c), &sc).unwrap();
        // The clone: a as the source's except its first page and the pages
        // before the start (stale: they must stay as they are unless page
        // 0) and after the start; b absent; c of the wrong size.
        let mut ca = vec![0u8; seg as usize];
        ca[3 * page..].copy_from_slice(&sa[3 * page..]);
        ca[5 * page] ^= 0xff; // inside the window: differs, is written
        std::fs::write(dst.join(&a), &ca).unwrap();
        std::fs::write(dst.join(&c), vec![0u8; page]).unwrap();
        let me = test_owner();
        let (srcd, dstd) = (DataDir::open(&src).unwrap(), DataDir::open(&dst).unwrap());
        // Start in a's page 3, stop in the middle of c's page 1.
        let start = 3 * page as u64 + 40;
        let stop = 2 * seg + page as u64 + 100;
        let n = copy_backup_wal(&srcd, &dstd, 1, start, stop, seg, &me).unwrap();
        let got = std::fs::read(dst.join(&a)).unwrap();
        assert_eq!(
            &got[..page],
            &sa[..page],
            "a's first page is compared and written"
        );
        assert_eq!(
            &got[page..3 * page],
            &ca[page..3 * page],
            "before the start: not read"
        );
        assert_eq!(
            &got[3 * page..],
            &sa[3 * page..],
            "from the start on: the source's"
        );
        assert_eq!(
            std::fs::read(dst.join(&b)).unwrap(),
            sb,
            "a missing segment is copied whole"
        );
        assert_eq!(
            std::fs::read(dst.join(&c)).unwrap(),
            sc,
            "a short one is copied whole"
        );
        assert_eq!(n, 2 * page as u64 + seg + seg);
        // Run again: nothing differs, nothing is written.
        assert_eq!(
            copy_backup_wal(&srcd, &dstd, 1, start, stop, seg, &me).unwrap(),
            0
        );
        // Past the stop the clone's pages are left alone: in c, pages 2..
        // changed on the source after the stop are not read.
        let mut later = sc.clone();
        later[4 * page] ^= 0xff;
        std::fs::write(src.join(&c), &later).unwrap();
        assert_eq!(
            copy_backup_wal(&srcd, &dstd, 1, start, stop, seg, &me).unwrap(),
            0
        );
        assert_eq!(std::fs::read(dst.join(&c)).unwrap(), sc);
        // A missing source segment is an error, as for copy_segments.
        let err = copy_backup_wal(&srcd, &dstd, 1, start, 3 * seg + 1, seg, &me).unwrap_err();
        assert_eq!(err.code(), 11);
    }

    #[test]
    fn a_link_in_the_clone_is_replaced_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let (src, dst) = (d.path().join("src"), d.path().join("dst"));
        std::fs::create_dir_all(&src).unwrap();
        std::fs::create_dir_all(&dst).unwrap();
        // A file outside the clone, owned by whoever runs the test (root on
        // the test machine, as bpg runs), that a planted link points at.
        let outside = d.path().join("outside");
        let before = b"not a WAL segment, not betterpg's".to_vec();
        std::fs::write(&outside, &before).unwrap();
        let owner_before = std::fs::metadata(&outside).unwrap();
        let a = "000000010000000000000001".to_string();
        let b = "000000010000000000000002".to_string();
        let mut data = vec![0u8; 64 * 1024];
        data[100] = 1;
        data[20000] = 9;
        std::fs::write(src.join(&a), &data).unwrap();
        std::fs::write(src.join(&b), &data).unwrap();
        std::os::unix::fs::symlink(&outside, dst.join(&a)).unwrap();
        // Not a regular file either: a directory named like a segment.
        std::fs::create_dir(dst.join(&b)).unwrap();
        std::fs::write(dst.join(&b).join("inner"), b"x").unwrap();
        let me = test_owner();
        let (srcd, dstd) = (DataDir::open(&src).unwrap(), DataDir::open(&dst).unwrap());
        copy_segments(&srcd, &dstd, &[a.clone(), b.clone()], 1 << 24, &me)
            .expect("a planted link or directory is replaced, not an error");
        for seg in [&a, &b] {
            let m = std::fs::symlink_metadata(dst.join(seg)).unwrap();
            assert!(m.file_type().is_file(), "{seg} is a regular file again");
            assert_eq!(std::fs::read(dst.join(seg)).unwrap(), data);
        }
        // The link's target is untouched: content, owner and mode.
        assert_eq!(std::fs::read(&outside).unwrap(), before);
        let after = std::fs::metadata(&outside).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            (after.uid(), after.gid(), after.mode(), after.len()),
            (
                owner_before.uid(),
                owner_before.gid(),
                owner_before.mode(),
                owner_before.len()
            )
        );
    }
}
