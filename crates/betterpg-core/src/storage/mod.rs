//! Copy-on-write storage: the trait the branch recipe needs, and its backends.
//!
//! The recipe only needs five things from storage: create a dataset, take an
//! atomic snapshot of one or more datasets, clone a snapshot, destroy, and
//! read back what exists with sizes and user properties. Any copy-on-write
//! store that can do that (ZFS through its CLI today; libzfs, btrfs or XFS
//! reflinks later) plugs in here without touching the recipe.

mod zfs_cli;

pub use zfs_cli::{parse_get_output, ZfsCli, ZfsFlavor};

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;

use crate::error::Result;

/// Prefix of every user property betterpg writes (`betterpg:kind` ...).
pub const PROP_PREFIX: &str = "betterpg:";

/// What a dataset entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatasetType {
    /// A file system (a database or branch data set).
    Filesystem,
    /// A snapshot (`fs@snap`).
    Snapshot,
    /// Anything else (volumes, bookmarks).
    Other,
}

/// One dataset or snapshot as the storage reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetInfo {
    /// Full name, e.g. `tank/betterpg/dev` or `tank/betterpg/prod@b-dev`.
    pub name: String,
    /// File system, snapshot or other.
    pub kind: DatasetType,
    /// Bytes used by this dataset and its descendants.
    pub used: u64,
    /// Bytes referenced (the logical size of what it shows).
    pub referenced: u64,
    /// For a clone, the snapshot it was cloned from.
    pub origin: Option<String>,
    /// Where it is mounted (file systems only).
    pub mountpoint: Option<PathBuf>,
    /// betterpg's user properties, without the `betterpg:` prefix.
    pub props: BTreeMap<String, String>,
}

/// Space in the pool that holds the datasets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PoolSpace {
    /// Bytes in use.
    pub used: u64,
    /// Bytes still available.
    pub available: u64,
}

impl PoolSpace {
    /// Fraction of the pool in use, 0.0 ..= 1.0.
    pub fn fraction_used(&self) -> f64 {
        let total = self.used + self.available;
        if total == 0 {
            0.0
        } else {
            self.used as f64 / total as f64
        }
    }
}

/// A copy-on-write storage backend.
#[async_trait]
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// Short name of the backend for status output ("zfs-cli").
    fn backend_name(&self) -> String;

    /// Create a file system with the given user properties (names without
    /// prefix) and optional mountpoint (inherited when `None`).
    async fn create(
        &self,
        dataset: &str,
        mountpoint: Option<&std::path::Path>,
        props: &[(&str, &str)],
    ) -> Result<()>;

    /// Snapshot every dataset in `datasets` as `dataset@snap`, atomically:
    /// either all snapshots exist afterwards and were taken at the same
    /// instant, or none does.
    async fn snapshot(&self, datasets: &[&str], snap: &str, props: &[(&str, &str)]) -> Result<()>;

    /// Clone `snapshot` to a new file system `target`.
    async fn clone_snapshot(
        &self,
        snapshot: &str,
        target: &str,
        mountpoint: Option<&std::path::Path>,
        props: &[(&str, &str)],
    ) -> Result<()>;

    /// Destroy a file system or snapshot. Without `force`, a dataset with
    /// children, snapshots or dependent clones is refused with
    /// [`crate::Error::HasDependents`]; with it, its own snapshots and
    /// children go too (clones elsewhere still block it).
    async fn destroy(&self, name: &str, force: bool) -> Result<()>;

    /// Set user properties on a dataset.
    async fn set_props(&self, name: &str, props: &[(&str, &str)]) -> Result<()>;

    /// One dataset or snapshot, or `None` when it does not exist.
    async fn get(&self, name: &str) -> Result<Option<DatasetInfo>>;

    /// `root` and everything below it, snapshots included.
    async fn list(&self, root: &str) -> Result<Vec<DatasetInfo>>;

    /// Space of the pool that holds `dataset`.
    async fn pool_space(&self, dataset: &str) -> Result<PoolSpace>;
}
