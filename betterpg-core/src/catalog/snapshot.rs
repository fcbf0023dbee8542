//! Named snapshots: the catalog's record of each one.
//!
//! A named snapshot (`bpg snapshot SRC --name NAME`) is a ZFS snapshot of
//! every dataset of a database or branch (its data directory's and its
//! tablespaces'), taken with the same recipe as a branch, plus everything a
//! branch of it needs later, when the source may have moved on or stopped:
//! for an application-consistent snapshot of a running source the
//! `backup_label`, the `tablespace_map`, the stop LSN, and the WAL from the
//! backup's start to its stop, kept in a dataset of betterpg's beside it
//! (`ROOT/_snapshots/...`). Branching one clones the ZFS snapshot and puts
//! these back, exactly as a branch of the live source would have had them.

use serde::{Deserialize, Serialize};

use super::{Entry, Mode, State};

/// What an application-consistent snapshot keeps to be started later:
/// the two files `pg_backup_stop` returned, where replay must end, and the
/// WAL segments (kept in [`SnapshotRecord::wal_dataset`]) that reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptBackup {
    /// `backup_label`, byte for byte.
    pub label: String,
    /// `tablespace_map`, byte for byte (empty without tablespaces).
    pub tablespace_map: String,
    /// Where replay starts (from the label), as PostgreSQL prints it.
    pub start_lsn: String,
    /// Where the snapshot is consistent (`pg_backup_stop`'s LSN).
    pub stop_lsn: String,
    /// Timeline of the backup.
    pub timeline: u32,
    /// WAL segment size of the source, bytes.
    pub wal_segment_size: u64,
    /// The WAL segments kept, from the one holding the start LSN to the one
    /// holding the stop LSN, in order.
    pub wal_segments: Vec<String>,
}

/// One named snapshot of a database or branch, as the catalog records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    /// The database or branch it was taken of.
    pub source: String,
    /// Its name, unique per source (validated like an entry's name).
    pub name: String,
    /// True when betterpg chose the name (no `--name`, or the schedule):
    /// only these are removed by retention (`bpg snapshot --prune`).
    #[serde(default)]
    pub auto: bool,
    /// Unix time (seconds) of the snapshot.
    pub created_at: u64,
    /// How it was taken (a stopped source: always crash-consistent).
    pub mode: Mode,
    /// Whether the source was running when it was taken.
    pub source_was_running: bool,
    /// The ZFS snapshot of the source's dataset (`DATASET@bpgsnap-...`):
    /// branches of this snapshot are clones of it.
    pub zfs_snapshot: String,
    /// The ZFS snapshots of the source's tablespace datasets, taken in the
    /// same atomic call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tablespace_snapshots: Vec<String>,
    /// The betterpg dataset holding the kept WAL (application-consistent
    /// snapshots of a running source only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_dataset: Option<String>,
    /// What a branch of it needs from the backup (application-consistent
    /// snapshots of a running source only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<KeptBackup>,
    /// PostgreSQL major version of the source.
    pub pg_major: u32,
    /// Life-cycle state (creating while the call that takes it runs; a
    /// record left creating by a process that died is removed by `gc`).
    #[serde(flatten)]
    pub state: State,
}

impl SnapshotRecord {
    /// `SOURCE@NAME`, how every surface names it.
    pub fn full_name(&self) -> String {
        format!("{}@{}", self.source, self.name)
    }

    /// The name of the ZFS snapshots (the part after `@`), shared by the
    /// data directory's and the tablespaces' snapshots.
    pub fn zfs_snap_name(&self) -> &str {
        self.zfs_snapshot
            .split_once('@')
            .map(|(_, s)| s)
            .unwrap_or("")
    }

    /// True when the entry `e` is a clone of this snapshot (a branch of it,
    /// made by `bpg branch SRC@NAME` or `bpg reset --to SRC@NAME`).
    pub fn is_origin_of(&self, e: &Entry) -> bool {
        e.snapshot.as_deref() == Some(self.zfs_snapshot.as_str())
    }

    /// True when complete, or the process taking it still runs.
    pub fn is_live(&self) -> bool {
        self.state.is_live()
    }
}

/// Split `SRC@NAME` into its parts; `None` for a plain name.
pub fn split_snapshot_ref(s: &str) -> Option<(&str, &str)> {
    s.split_once('@')
}
