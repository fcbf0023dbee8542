//! WAL retention and points in time (DESIGN.md section 9), on plain
//! values: where a database's retained WAL lives, the base snapshots that
//! replay starts from, the restorable window, the target of a branch
//! `--at`, and what pruning keeps.
//!
//! A database with the setting `retain_wal` archives every finished WAL
//! segment (`archive_command`) into a dataset of betterpg's,
//! `ROOT/_wal/NAME`, next to its own. Replay needs a base to start from:
//! betterpg takes one (a snapshot of the database in backup mode) when
//! archiving starts and again whenever the newest is older than half the
//! retention, and records each in `HOME/wal/NAME.json` (root's file: the
//! archive itself is writable by the server's OS user, and so by whoever
//! is superuser on the server or on any of its branches, so nothing there
//! is trusted). A point in time is restorable from the oldest base's
//! consistency point to the newest WAL archived. A replica (`bpg follow`)
//! archives what it receives (`archive_mode = always`); its window ends at
//! the last transaction it replayed, the segments after the archive's end
//! being read from its `pg_wal` ([`replica_tail`]).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::home::Home;
use crate::pg::wal::{format_lsn, parse_lsn, parse_segment_name, segment_name, Lsn};

/// The dataset under the root that holds every database's WAL archive.
pub const WAL_DATASET: &str = "_wal";

/// Prefix of the names of base snapshots (`DATASET@bpg-walbase-MILLIS`).
pub const BASE_PREFIX: &str = "bpg-walbase-";

/// Dataset of `name`'s WAL archive: `ROOT/_wal/NAME`.
pub fn archive_dataset(root: &str, name: &str) -> String {
    format!("{root}/{WAL_DATASET}/{name}")
}

/// A base: a snapshot of the database that replay can start from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Base {
    /// Full snapshot name, `DATASET@bpg-walbase-MILLIS`.
    pub snapshot: String,
    /// When it became consistent (after `pg_backup_stop`), Unix
    /// microseconds: no commit in the WAL before `stop_lsn` is later.
    pub time_us: i64,
    /// Where replay starts (the backup's start, from its label).
    pub start_lsn: Lsn,
    /// Where replay is consistent (the backup's stop).
    pub stop_lsn: Lsn,
    /// Timeline of the backup.
    pub timeline: u32,
    /// The `backup_label` to write into a clone, byte for byte.
    pub label: String,
}

/// Where the archive is known to be complete: everything committed up to
/// `time_us` (at or before `lsn`) is archived. Written when betterpg
/// closes a segment itself (before a branch `--at`, before `stop`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// Unix microseconds.
    pub time_us: i64,
    /// The WAL location of the segment switch.
    pub lsn: Lsn,
}

/// The `pg_receivewal` process that streams an attached cluster's WAL
/// into its archive over a physical replication slot (betterpg never
/// reconfigures an attached cluster, so it has no `archive_command`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receiver {
    /// The slot on the attached cluster (`bpg_wal_NAME`).
    pub slot: String,
    /// The process, while betterpg believes it runs (`None` once stopped).
    pub pid: Option<u32>,
    /// Its start time (`/proc/PID/stat` field 22): a reused pid is another
    /// process.
    pub pid_start: Option<u64>,
}

/// What betterpg knows of one database's retention (`HOME/wal/NAME.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// WAL segment size of the database, bytes (0 before the first base).
    pub segment_size: u64,
    /// Bases, oldest first.
    pub bases: Vec<Base>,
    /// The newest point betterpg saw archived.
    pub sealed: Option<Sealed>,
    /// An attached cluster's WAL receiver (omitted for the others).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver: Option<Receiver>,
}

/// The replication slot an attached cluster's WAL receiver uses: slot
/// names allow lower-case letters, digits and underscores only.
pub fn receiver_slot(name: &str) -> String {
    let mut s = String::from("bpg_wal_");
    s.extend(name.chars().map(|c| {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '_'
        }
    }));
    s.truncate(63);
    s
}

/// Suffix of the segment `pg_receivewal` is writing (full size, renamed
/// without it once complete).
pub const PARTIAL_SUFFIX: &str = ".partial";

/// `HOME/wal`: root's directory of retention records.
pub fn meta_dir(home: &Home) -> PathBuf {
    home.root().join("wal")
}

fn meta_path(home: &Home, name: &str) -> PathBuf {
    meta_dir(home).join(format!("{name}.json"))
}

impl Meta {
    /// The record of `name`; empty when there is none.
    pub fn load(home: &Home, name: &str) -> Result<Meta> {
        let p = meta_path(home, name);
        match std::fs::read_to_string(&p) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| {
                Error::Catalog(format!(
                    "{} is not a WAL retention record ({e}): restore it from a backup or remove it (the database's base snapshots are then forgotten, and its point-in-time window starts anew)",
                    p.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Meta::default()),
            Err(e) => Err(Error::io(format!("reading {}", p.display()), e)),
        }
    }

    /// Write the record of `name` (atomically, root's, 0600).
    pub fn save(&self, home: &Home, name: &str) -> Result<()> {
        let dir = meta_dir(home);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let text =
            serde_json::to_string_pretty(self).map_err(|e| Error::Internal(e.to_string()))?;
        crate::util::write_atomic(&meta_path(home, name), text.as_bytes(), 0o600)
    }

    /// Forget `name`'s record (missing is fine).
    pub fn remove(home: &Home, name: &str) {
        let _ = std::fs::remove_file(meta_path(home, name));
    }
}

/// The point a branch `--at` replays to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Every transaction committed at or before this time (Unix
    /// microseconds).
    Time(i64),
    /// Every transaction committed at or before this WAL location.
    Lsn(Lsn),
}

impl Target {
    /// Read a target as every surface gives it: an LSN as PostgreSQL
    /// prints it (`0/16B3748`), or a timestamp with its offset
    /// (`2026-12-03 16:40:00.123456+00`, `2026-12-03T16:40:00Z`, the
    /// `T` or a space, fractions of a second optional). A time without an
    /// offset is refused: it would mean a different instant on another
    /// machine.
    pub fn parse(s: &str) -> Result<Target> {
        let t = s.trim();
        if t.contains('/') {
            return parse_lsn(t).map(Target::Lsn).map_err(|_| {
                Error::Config(format!(
                    "--at {s:?} is not a WAL location: give an LSN as PostgreSQL prints it (e.g. 0/16B3748) or a timestamp with an offset (e.g. 2026-12-03 16:40:00+00)"
                ))
            });
        }
        let mut norm = t.replacen('T', " ", 1);
        if let Some(stripped) = norm.strip_suffix(['Z', 'z']) {
            norm = format!("{stripped}+00:00");
        }
        chrono::DateTime::parse_from_str(&norm, "%Y-%m-%d %H:%M:%S%.f%#z")
            .map(|d| Target::Time(d.timestamp_micros()))
            .map_err(|e| {
                Error::Config(format!(
                    "--at {s:?} is not a timestamp with an offset ({e}): give e.g. 2026-12-03 16:40:00.5+00 or 2026-12-03T16:40:00Z, or an LSN such as 0/16B3748"
                ))
            })
    }

    /// The recovery settings that replay to this target and then promote.
    pub fn recovery_settings(&self) -> String {
        let target = match self {
            Target::Time(us) => format!("recovery_target_time = '{}'\n", format_time(*us)),
            Target::Lsn(l) => format!("recovery_target_lsn = '{}'\n", format_lsn(*l)),
        };
        format!(
            "# Point-in-time recovery of this branch (removed once it is promoted).\n\
             {target}recovery_target_inclusive = on\n\
             recovery_target_action = promote\n\
             recovery_target_timeline = 'current'\n"
        )
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Time(us) => f.write_str(&format_time(*us)),
            Target::Lsn(l) => f.write_str(&format_lsn(*l)),
        }
    }
}

/// Unix microseconds as PostgreSQL reads and prints a timestamp with time
/// zone, in UTC (`2026-12-03 16:40:00.123456+00`).
pub fn format_time(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string())
        .unwrap_or_else(|| format!("@{us}us"))
}

/// The current time, Unix microseconds.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// The restorable window of a database, as `status` shows it and a branch
/// `--at` checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// The oldest restorable time (the oldest base's consistency point).
    pub from_us: i64,
    /// The newest restorable time known archived.
    pub to_us: i64,
    /// The oldest restorable WAL location.
    pub from_lsn: Lsn,
    /// The newest WAL location known archived.
    pub to_lsn: Lsn,
}

impl Window {
    /// From the oldest base to the newest archived point (`to_*`).
    pub fn of(meta: &Meta, to_us: i64, to_lsn: Lsn) -> Option<Window> {
        let first = meta.bases.first()?;
        Some(Window {
            from_us: first.time_us,
            to_us: to_us.max(first.time_us),
            from_lsn: first.stop_lsn,
            to_lsn: to_lsn.max(first.stop_lsn),
        })
    }

    /// Whether `t` lies inside.
    pub fn contains(&self, t: Target) -> bool {
        match t {
            Target::Time(us) => self.from_us <= us && us <= self.to_us,
            Target::Lsn(l) => self.from_lsn <= l && l <= self.to_lsn,
        }
    }

    /// "from .. to", in the target's terms.
    pub fn describe(&self, t: Target) -> (String, String) {
        match t {
            Target::Time(_) => (format_time(self.from_us), format_time(self.to_us)),
            Target::Lsn(_) => (format_lsn(self.from_lsn), format_lsn(self.to_lsn)),
        }
    }
}

/// The newest base that can reach `t`: consistent at or before it.
pub fn base_for(meta: &Meta, t: Target) -> Option<&Base> {
    meta.bases.iter().rev().find(|b| match t {
        Target::Time(us) => b.time_us <= us,
        Target::Lsn(l) => b.stop_lsn <= l,
    })
}

/// What a prune keeps: every base younger than the retention, and the
/// newest older one (it covers the window's start); the others go, unless
/// `pinned` (a branch was cloned from it). Returns (kept, dropped).
pub fn prune_plan(
    bases: &[Base],
    now_us: i64,
    retain_secs: u64,
    pinned: impl Fn(&Base) -> bool,
) -> (Vec<Base>, Vec<Base>) {
    let cutoff = now_us.saturating_sub(retain_secs.saturating_mul(1_000_000) as i64);
    let newest_old = bases.iter().rposition(|b| b.time_us < cutoff);
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    for (i, b) in bases.iter().enumerate() {
        if newest_old.is_some_and(|n| i < n) && !pinned(b) {
            dropped.push(b.clone());
        } else {
            kept.push(b.clone());
        }
    }
    (kept, dropped)
}

/// Whether a new base is due: none yet, or the newest is older than half
/// the retention (so no more than about half a window's WAL is replayed).
pub fn base_due(meta: &Meta, now_us: i64, retain_secs: u64) -> bool {
    match meta.bases.last() {
        None => true,
        Some(b) => now_us - b.time_us >= (retain_secs as i64).saturating_mul(500_000),
    }
}

/// Archived files no kept base needs: WAL segments before the oldest
/// kept base's start segment (on any timeline).
pub fn prunable_segments<'a>(names: impl IntoIterator<Item = &'a str>, meta: &Meta) -> Vec<String> {
    let Some(first) = meta.bases.first() else {
        return Vec::new();
    };
    if meta.segment_size == 0 {
        return Vec::new();
    }
    let keep_from = first.start_lsn / meta.segment_size;
    names
        .into_iter()
        .filter(|n| parse_segment_name(n, meta.segment_size).is_some_and(|(_, s)| s < keep_from))
        .map(str::to_string)
        .collect()
}

/// Archived segments a replay from `base` to `t` reads: every segment on
/// the base's timeline from its start on (through the target's segment
/// and the next, for an LSN target), in order.
pub fn segments_for<'a>(
    names: impl IntoIterator<Item = &'a str>,
    meta: &Meta,
    base: &Base,
    t: Target,
) -> Vec<String> {
    let seg = meta.segment_size.max(1);
    let first = base.start_lsn / seg;
    let last = match t {
        Target::Lsn(l) => l / seg + 1,
        Target::Time(_) => u64::MAX,
    };
    let mut v: Vec<String> = names
        .into_iter()
        .filter(|n| {
            parse_segment_name(n, seg)
                .is_some_and(|(tli, s)| tli == base.timeline && s >= first && s <= last)
        })
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

/// The segments a replay of a replica from `base` to `t` reads that its
/// archive lacks (`archived`: what [`segments_for`] found): those through
/// the one holding its last replayed transaction (`meta.sealed`, and for
/// an LSN target no further than the segment after the target's), read
/// from the replica's `pg_wal`.
pub fn replica_tail(archived: &[String], meta: &Meta, base: &Base, t: Target) -> Vec<String> {
    let Some(sealed) = meta.sealed else {
        return Vec::new();
    };
    let seg = meta.segment_size.max(1);
    let mut last = sealed.lsn / seg;
    if let Target::Lsn(l) = t {
        last = last.min(l / seg + 1);
    }
    (base.start_lsn / seg..=last)
        .map(|n| segment_name(base.timeline, n * seg, seg))
        .filter(|n| !archived.contains(n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(us: i64, start: Lsn, stop: Lsn) -> Base {
        Base {
            snapshot: format!("p/r/db@{BASE_PREFIX}{us}"),
            time_us: us,
            start_lsn: start,
            stop_lsn: stop,
            timeline: 1,
            label: "START WAL LOCATION: 0/0 (file 000000010000000000000000)\n".into(),
        }
    }

    #[test]
    fn targets_parse_as_time_or_lsn_and_refuse_the_rest() {
        assert_eq!(Target::parse("0/16B3748").unwrap(), Target::Lsn(0x16B3748));
        let a = Target::parse("2026-12-03 16:40:00.5+00").unwrap();
        let b = Target::parse("2026-12-03T16:40:00.500Z").unwrap();
        let c = Target::parse("2026-12-03 18:40:00.5+02:00").unwrap();
        let d = Target::parse("2026-12-03 17:40:00.5+01").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a, d);
        let Target::Time(us) = a else { panic!() };
        assert_eq!(format_time(us), "2026-12-03 16:40:00.500000+00");
        assert_eq!(Target::parse(&format_time(us)).unwrap(), a);
        for bad in [
            "yesterday",
            "2026-12-03 16:40:00",
            "2026-13-03 16:40:00+00",
            "0/zz",
            "",
        ] {
            let e = Target::parse(bad).unwrap_err();
            assert_eq!(e.kind_name(), "config", "{bad}: {e}");
        }
        let s = Target::Lsn(0x1_0000_0010).recovery_settings();
        assert!(s.contains("recovery_target_lsn = '1/10'"), "{s}");
        assert!(s.contains("recovery_target_inclusive = on"));
        assert!(s.contains("recovery_target_action = promote"));
        assert!(a
            .recovery_settings()
            .contains("recovery_target_time = '2026-12-03 16:40:00.500000+00'"));
    }

    #[test]
    fn a_replica_tail_is_what_the_archive_lacks_through_the_last_replay() {
        let seg = 16u64 << 20;
        let mut meta = Meta {
            segment_size: seg,
            bases: vec![base(100, 2 * seg + 40, 3 * seg)],
            sealed: None,
            receiver: None,
        };
        let b = meta.bases[0].clone();
        let archived = vec![
            "000000010000000000000002".to_string(),
            "000000010000000000000003".to_string(),
        ];
        assert!(replica_tail(&archived, &meta, &b, Target::Time(200)).is_empty());
        meta.sealed = Some(Sealed {
            time_us: 300,
            lsn: 5 * seg + 10,
        });
        assert_eq!(
            replica_tail(&archived, &meta, &b, Target::Time(200)),
            ["000000010000000000000004", "000000010000000000000005"]
        );
        // An LSN target reads no further than the segment after its own.
        assert_eq!(
            replica_tail(&archived, &meta, &b, Target::Lsn(3 * seg + 5)),
            ["000000010000000000000004"]
        );
    }

    #[test]
    fn the_window_and_the_base_for_a_target() {
        let meta = Meta {
            segment_size: 16 << 20,
            bases: vec![base(100, 0x100, 0x200), base(500, 0x5000, 0x6000)],
            sealed: None,
            receiver: None,
        };
        let w = Window::of(&meta, 900, 0x9000).unwrap();
        assert!(w.contains(Target::Time(100)) && w.contains(Target::Time(900)));
        assert!(!w.contains(Target::Time(99)) && !w.contains(Target::Time(901)));
        assert!(w.contains(Target::Lsn(0x200)) && !w.contains(Target::Lsn(0x1ff)));
        assert!(!w.contains(Target::Lsn(0x9001)));
        assert_eq!(base_for(&meta, Target::Time(499)).unwrap().time_us, 100);
        assert_eq!(base_for(&meta, Target::Time(500)).unwrap().time_us, 500);
        assert_eq!(base_for(&meta, Target::Lsn(0x5fff)).unwrap().time_us, 100);
        assert!(base_for(&meta, Target::Time(50)).is_none());
        assert!(Window::of(&Meta::default(), 1, 1).is_none());
    }

    #[test]
    fn pruning_keeps_the_window_and_pinned_bases() {
        let s = 1_000_000;
        let bases = vec![
            base(10 * s, 0, 1),
            base(20 * s, 0, 1),
            base(30 * s, 0, 1),
            base(40 * s, 0, 1),
        ];
        // Retain 15 s at 50 s: the cutoff is 35 s; 30 s covers it.
        let (kept, dropped) = prune_plan(&bases, 50 * s, 15, |_| false);
        assert_eq!(
            kept.iter().map(|b| b.time_us / s).collect::<Vec<_>>(),
            [30, 40]
        );
        assert_eq!(dropped.len(), 2);
        let (kept, _) = prune_plan(&bases, 50 * s, 15, |b| b.time_us == 10 * s);
        assert_eq!(
            kept.iter().map(|b| b.time_us / s).collect::<Vec<_>>(),
            [10, 30, 40]
        );
        // Nothing older than the cutoff: all stay.
        assert_eq!(prune_plan(&bases, 50 * s, 100, |_| false).0.len(), 4);
        let meta = Meta {
            segment_size: 16 << 20,
            bases: vec![base(40 * s, 0x300_0028, 0x300_0100)],
            sealed: None,
            receiver: None,
        };
        assert!(!base_due(&meta, 45 * s, 20));
        assert!(base_due(&meta, 50 * s, 20));
        assert!(base_due(&Meta::default(), 0, 20));
        let names = [
            "000000010000000000000001",
            "000000010000000000000002",
            "000000010000000000000003",
            "000000010000000000000004",
            "00000002.history",
            ".000000010000000000000005.tmp",
        ];
        assert_eq!(
            prunable_segments(names, &meta),
            ["000000010000000000000001", "000000010000000000000002"]
        );
        let b = &meta.bases[0];
        assert_eq!(
            segments_for(names, &meta, b, Target::Time(0)),
            ["000000010000000000000003", "000000010000000000000004"]
        );
        assert_eq!(
            segments_for(names, &meta, b, Target::Lsn(0x200_0000)),
            ["000000010000000000000003"]
        );
    }

    #[test]
    fn receiver_slots_are_valid_slot_names() {
        assert_eq!(receiver_slot("prod"), "bpg_wal_prod");
        assert_eq!(receiver_slot("my-db.2"), "bpg_wal_my_db_2");
        assert!(receiver_slot(&"x".repeat(100)).len() <= 63);
    }

    #[test]
    fn records_round_trip_and_a_corrupt_one_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let home = Home::new(d.path());
        assert_eq!(Meta::load(&home, "db").unwrap(), Meta::default());
        let m = Meta {
            segment_size: 16 << 20,
            bases: vec![base(1, 2, 3)],
            sealed: Some(Sealed { time_us: 5, lsn: 6 }),
            receiver: Some(Receiver {
                slot: receiver_slot("db"),
                pid: Some(7),
                pid_start: None,
            }),
        };
        m.save(&home, "db").unwrap();
        assert_eq!(Meta::load(&home, "db").unwrap(), m);
        std::fs::write(meta_dir(&home).join("db.json"), "{").unwrap();
        assert_eq!(Meta::load(&home, "db").unwrap_err().kind_name(), "catalog");
        Meta::remove(&home, "db");
        assert_eq!(Meta::load(&home, "db").unwrap(), Meta::default());
    }
}
