//! The catalog's advisory lock: taken with a timeout, never waited on forever.
//!
//! A `flock` on `HOME/catalog.lock`. A process that hangs while holding it
//! (or a forked child that inherited it) would otherwise block every later
//! `bpg` for good, so waiting is bounded ([`crate::home::DEFAULT_LOCK_TIMEOUT_SECS`],
//! `lock_timeout_secs` in the home's config, `BPG_LOCK_TIMEOUT`), and the
//! timeout error names the lock file and who holds it: the kernel's view
//! (`/proc/locks`) and the pid betterpg records in the file while it holds it.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use fs4::fs_std::FileExt;

use crate::error::{Error, Result};

/// Environment variable overriding the home's `lock_timeout_secs`
/// (seconds, fractions allowed, `0`: do not wait at all).
pub const TIMEOUT_ENV: &str = "BPG_LOCK_TIMEOUT";

/// The time to wait: [`TIMEOUT_ENV`] when set, else `config_secs`.
pub fn timeout(config_secs: u64) -> Result<Duration> {
    match std::env::var(TIMEOUT_ENV) {
        Ok(v) if !v.trim().is_empty() => parse_timeout(&v),
        _ => Ok(Duration::from_secs(config_secs)),
    }
}

/// Parse a number of seconds such as `30` or `0.5` (pure, unit-tested).
pub fn parse_timeout(v: &str) -> Result<Duration> {
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0 && *s <= 86_400.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            Error::Config(format!(
                "{TIMEOUT_ENV}={v:?} is not a number of seconds between 0 and 86400 (e.g. 30 or 0.5)"
            ))
        })
}

/// The held lock. Dropping it clears the holder record and closes the file,
/// which releases the lock.
#[derive(Debug)]
pub(crate) struct LockFile {
    file: fs::File,
}

impl LockFile {
    /// Take the exclusive lock on `path`, waiting at most `timeout`.
    pub(crate) fn acquire(path: &Path, timeout: Duration) -> Result<LockFile> {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o644)
            .open(path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(2);
        loop {
            let taken = FileExt::try_lock_exclusive(&file)
                .map_err(|e| Error::io(format!("locking {}", path.display()), e))?;
            if taken {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout(format!(
                    "waited {} for the catalog lock {}, held by {}: wait for that process to finish \
                     (stop it if it hangs), or wait longer with {TIMEOUT_ENV}=SECONDS or \
                     lock_timeout_secs in the home's config.json; nothing was changed",
                    human(timeout),
                    path.display(),
                    holders(path, &file),
                )));
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(Duration::from_millis(100));
        }
        // Record the holder for whoever waits next (advisory: a failure to
        // write it does not matter, the kernel's view is reported too).
        let _ = file.set_len(0);
        let _ = (&file).write_all(format!("{} {}\n", std::process::id(), own_cmdline()).as_bytes());
        crate::fault::point_blocking("catalog_locked")?;
        Ok(LockFile { file })
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        // Clear the record before the lock goes, so a later holder that does
        // not write one (another tool) is not mistaken for this process.
        let _ = self.file.set_len(0);
    }
}

/// A `flock` on a directory, taken at once or not at all: the replica
/// lock (`HOME/replicas/NAME`, see [`crate::home::Home::replica_dir`]).
/// `follow --rebuild` holds it exclusively for its whole run (it retires
/// the replica's dataset); a branch of the replica, a reset of a branch of
/// it, a named snapshot of it and its destroy hold it shared (each reads
/// the replica's dataset to make something of it). So a rebuild never
/// retires data that one of those is cloning, and two rebuilds never swap
/// at once. The kernel releases it when the process ends, also when it
/// is killed; the file is opened close-on-exec, so no server started
/// meanwhile inherits it.
#[derive(Debug)]
pub(crate) struct DirLock {
    _dir: fs::File,
}

impl DirLock {
    /// Take the lock on `dir` (exclusive or shared) without waiting:
    /// `Ok(None)` when the directory is not there, `Err` naming the
    /// holders when another holds it in a conflicting way. The directory
    /// is opened without following a link (it is created by root in a
    /// directory only root writes).
    pub(crate) fn try_take(
        dir: &Path,
        exclusive: bool,
    ) -> Result<std::result::Result<Option<DirLock>, String>> {
        let file = match fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_DIRECTORY | nix::libc::O_NOFOLLOW)
            .open(dir)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Ok(None)),
            Err(e) => return Err(Error::io(format!("opening {}", dir.display()), e)),
        };
        let taken = if exclusive {
            FileExt::try_lock_exclusive(&file)
        } else {
            FileExt::try_lock_shared(&file)
        }
        .map_err(|e| Error::io(format!("locking {}", dir.display()), e))?;
        if !taken {
            return Ok(Err(holders(dir, &file)));
        }
        Ok(Ok(Some(DirLock { _dir: file })))
    }
}

fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

fn own_cmdline() -> String {
    cmdline(std::process::id()).unwrap_or_default()
}

/// A process's command line, spaces between arguments, at most 200 chars.
fn cmdline(pid: u32) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let text: String = String::from_utf8_lossy(&raw)
        .split('\0')
        .filter(|a| !a.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if text.is_empty() {
        return None;
    }
    Some(text.chars().take(200).collect())
}

/// Who holds the lock, as precisely as can be known.
fn holders(path: &Path, file: &fs::File) -> String {
    let mut known: Vec<String> = Vec::new();
    if let (Ok(meta), Ok(locks)) = (file.metadata(), fs::read_to_string("/proc/locks")) {
        for pid in flock_holders(&locks, meta.dev(), meta.ino()) {
            known.push(match cmdline(pid) {
                Some(c) => format!("pid {pid} ({c})"),
                None => format!("pid {pid}"),
            });
        }
    }
    let recorded = fs::read_to_string(path).unwrap_or_default();
    let recorded = recorded.trim();
    if known.is_empty() {
        return if recorded.is_empty() {
            "an unknown process (see /proc/locks)".to_string()
        } else {
            format!("pid {recorded} (as it recorded in the lock file)")
        };
    }
    let mut s = known.join(", ");
    if let Some(pid) = recorded.split_whitespace().next() {
        if !known.iter().any(|k| k.starts_with(&format!("pid {pid} "))) {
            s.push_str(&format!(
                "; the file records pid {pid} (a betterpg process: the lock may have been inherited by a forked child)"
            ));
        }
    }
    s
}

/// Pids holding a granted `FLOCK` on the file `(dev, ino)`, from the text of
/// `/proc/locks` (pure, unit-tested). Lines look like
/// `1: FLOCK  ADVISORY  WRITE 2335 fd:01:1053247 0 EOF`; waiters carry `->`.
/// The device is `major:minor` in hex. Some file systems (overlayfs) report a
/// different device than `stat`: then the inode alone is matched.
pub fn flock_holders(proc_locks: &str, dev: u64, ino: u64) -> Vec<u32> {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let mut exact = Vec::new();
    let mut by_inode = Vec::new();
    for line in proc_locks.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 || f.get(1) == Some(&"->") || f[1] != "FLOCK" {
            continue;
        }
        let (Ok(pid), Some(id)) = (f[4].parse::<u32>(), f.get(5)) else {
            continue;
        };
        let parts: Vec<&str> = id.split(':').collect();
        if parts.len() != 3 || parts[2].parse::<u64>().ok() != Some(ino) {
            continue;
        }
        let same_dev = u64::from_str_radix(parts[0], 16).ok() == Some(major)
            && u64::from_str_radix(parts[1], 16).ok() == Some(minor);
        if same_dev {
            exact.push(pid);
        } else {
            by_inode.push(pid);
        }
    }
    if exact.is_empty() {
        by_inode
    } else {
        exact
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_timeouts() {
        assert_eq!(parse_timeout("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_timeout(" 0.5 ").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_timeout("0").unwrap(), Duration::ZERO);
        for bad in ["", "x", "-1", "inf", "NaN", "1e9"] {
            let e = parse_timeout(bad).unwrap_err();
            assert_eq!(e.code(), 6, "{bad}");
            assert!(e.to_string().contains(TIMEOUT_ENV), "{e}");
        }
    }

    #[test]
    fn finds_flock_holders_in_proc_locks() {
        // dev 0xfd01 = major 0xfd, minor 0x01.
        let text = "1: POSIX  ADVISORY  WRITE 10 fd:01:77 0 EOF\n\
                    2: FLOCK  ADVISORY  WRITE 11 fd:01:77 0 EOF\n\
                    2: -> FLOCK  ADVISORY  WRITE 12 fd:01:77 0 EOF\n\
                    3: FLOCK  ADVISORY  WRITE 13 fd:01:78 0 EOF\n";
        assert_eq!(flock_holders(text, 0xfd01, 77), vec![11]);
        assert_eq!(flock_holders(text, 0xfd01, 99), Vec::<u32>::new());
        // Another device number for the same inode (overlayfs): inode only.
        assert_eq!(flock_holders(text, 0x0801, 78), vec![13]);
    }

    #[test]
    fn a_dir_lock_is_shared_or_exclusive_and_names_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let a = DirLock::try_take(d, false).unwrap().unwrap();
        let b = DirLock::try_take(d, false).unwrap().unwrap();
        assert!(a.is_some() && b.is_some());
        let held = DirLock::try_take(d, true).unwrap().unwrap_err();
        assert!(
            held.contains(&format!("pid {}", std::process::id())),
            "{held}"
        );
        drop((a, b));
        let x = DirLock::try_take(d, true).unwrap().unwrap();
        assert!(DirLock::try_take(d, false).unwrap().is_err());
        drop(x);
        assert!(DirLock::try_take(d, false).unwrap().unwrap().is_some());
        assert!(DirLock::try_take(&d.join("gone"), true)
            .unwrap()
            .unwrap()
            .is_none());
        // A link is not followed.
        std::os::unix::fs::symlink(d, d.join("link")).unwrap();
        assert!(DirLock::try_take(&d.join("link"), true).is_err());
    }

    #[test]
    fn times_out_naming_the_file_and_holder_and_clears_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.lock");
        let held = LockFile::acquire(&path, Duration::ZERO).unwrap();
        let recorded = fs::read_to_string(&path).unwrap();
        assert!(
            recorded.starts_with(&format!("{} ", std::process::id())),
            "{recorded:?}"
        );
        let e = LockFile::acquire(&path, Duration::from_millis(50)).unwrap_err();
        assert_eq!(e.code(), 10, "{e}");
        let msg = e.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        drop(held);
        assert_eq!(fs::read_to_string(&path).unwrap(), "");
        LockFile::acquire(&path, Duration::ZERO).unwrap();
    }
}
