//! Copy-on-write storage: the trait the branch recipe needs, and its backends.
//!
//! The recipe only needs five things from storage: create a dataset, take an
//! atomic snapshot of one or more datasets, clone a snapshot, destroy, and
//! read back what exists with sizes and user properties. Any copy-on-write
//! store that can do that (ZFS through its CLI today; libzfs, btrfs or XFS
//! reflinks later) plugs in here without touching the recipe.

pub mod libzfs;
pub mod props;
mod zfs_cli;

pub use zfs_cli::{host_free_space, parse_get_output, PoolFileSpace, ZfsCli, ZfsFlavor};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::{Error, Result};

/// Prefix of every user property betterpg writes (`betterpg:kind` ...).
pub const PROP_PREFIX: &str = "betterpg:";

/// User properties (without the [`PROP_PREFIX`]) betterpg sets on datasets
/// and reads back.
pub const ZFS_PROPS: &[&str] = &[
    "managed", "name", "kind", "parent", "snapshot", "port", "mode", "runtime", "home", "created",
    "branch", "dataset", "named", "rewind",
];

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
    /// Its ZFS `quota` in bytes (`None`: no quota; always `None` for
    /// snapshots).
    pub quota: Option<u64>,
    /// Where it is mounted (file systems only).
    pub mountpoint: Option<PathBuf>,
    /// betterpg's user properties, without the `betterpg:` prefix, set on
    /// this dataset or inherited (ZFS user properties are inherited by
    /// children and snapshots).
    pub props: BTreeMap<String, String>,
    /// The names (keys of `props`) whose ZFS source is `local`: set on this
    /// dataset or snapshot itself, not inherited. Only these say who made
    /// it (see [`DatasetInfo::made_by_betterpg`]).
    pub local: BTreeSet<String>,
}

impl DatasetInfo {
    /// The betterpg property `key` when it is set on this dataset itself
    /// (not inherited from a parent).
    pub fn local_prop(&self, key: &str) -> Option<&str> {
        if self.local.contains(key) {
            self.props.get(key).map(String::as_str)
        } else {
            None
        }
    }

    /// True when betterpg made this dataset or snapshot for the home
    /// `home`. A snapshot an operator takes of a database, or a dataset made
    /// under one, inherits its `betterpg:*` properties, so only properties
    /// set locally count, and they must name this very dataset:
    /// `betterpg:dataset` equal to its full name, or (datasets made before
    /// that property existed) `betterpg:name` equal to its last path
    /// component; for a snapshot, `betterpg:branch` = B with a snapshot name
    /// `bpg-B-…` (as betterpg names them).
    pub fn made_by_betterpg(&self, home: &str) -> bool {
        if self.local_prop("managed") != Some("yes") || self.local_prop("home") != Some(home) {
            return false;
        }
        if let Some(ds) = self.local_prop("dataset") {
            return ds == self.name;
        }
        match self.kind {
            DatasetType::Filesystem => self.local_prop("name").is_some_and(|n| {
                let mut parts = self.name.rsplit('/');
                let last = parts.next();
                // A branch's tablespace clone, `<branch>/tblspc-OID`, is
                // named after its branch.
                last == Some(n)
                    || self.local_prop("kind") == Some("tablespace")
                        && last.is_some_and(|l| l.starts_with("tblspc-"))
                        && parts.next() == Some(n)
            }),
            DatasetType::Snapshot => {
                let snap = self.name.split_once('@').map(|(_, s)| s).unwrap_or("");
                let named_as = |prefix: &str, key: &str| {
                    self.local_prop(key).is_some_and(|b| {
                        snap.strip_prefix(prefix)
                            .and_then(|rest| rest.strip_prefix(b))
                            .is_some_and(|tail| tail.is_empty() || tail.starts_with('-'))
                    })
                };
                // A branch's snapshot `bpg-B-…`, a named snapshot's
                // `bpgsnap-N-…`, a rewind point's `bpgrewind-B`.
                named_as("bpg-", "branch")
                    || named_as("bpgsnap-", "named")
                    || named_as("bpgrewind-", "rewind")
            }
            DatasetType::Other => false,
        }
    }
}

/// The ZFS space limits betterpg sets (the branch space; see `docs/architecture.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpaceLimit {
    /// `quota`: the most the dataset and its descendants may use.
    Quota,
    /// `reservation`: space kept for the dataset and its descendants,
    /// which no other dataset may take.
    Reservation,
}

impl SpaceLimit {
    /// The ZFS property name.
    pub fn property(self) -> &'static str {
        match self {
            SpaceLimit::Quota => "quota",
            SpaceLimit::Reservation => "reservation",
        }
    }

    /// The property's value: bytes, or `none`.
    pub fn value(bytes: Option<u64>) -> String {
        bytes.map_or_else(|| "none".to_string(), |b| b.to_string())
    }
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

    /// Roll the file system of `snapshot` (`DATASET@SNAP`) back to it:
    /// everything written since is lost. Refused when it is not the
    /// dataset's most recent snapshot (nothing newer is destroyed).
    async fn rollback(&self, snapshot: &str) -> Result<()> {
        ZfsCli::default().rollback(snapshot).await
    }

    /// Set a space limit of `dataset` (and its descendants), in bytes;
    /// `None` removes it.
    async fn set_space_limit(
        &self,
        dataset: &str,
        limit: SpaceLimit,
        bytes: Option<u64>,
    ) -> Result<()>;

    /// Set user properties on a dataset.
    async fn set_props(&self, name: &str, props: &[(&str, &str)]) -> Result<()>;

    /// One dataset or snapshot, or `None` when it does not exist.
    async fn get(&self, name: &str) -> Result<Option<DatasetInfo>>;

    /// `root` and everything below it, snapshots included.
    async fn list(&self, root: &str) -> Result<Vec<DatasetInfo>>;

    /// Space of the pool that holds `dataset`.
    async fn pool_space(&self, dataset: &str) -> Result<PoolSpace>;

    // What `init` needs besides the above: pools on files and native
    // properties. The defaults run the `zfs`/`zpool` commands (a backend
    // that can do it natively overrides them).

    /// Which ZFS userland this is (decides which property values it takes).
    async fn flavor(&self) -> ZfsFlavor {
        ZfsCli::default().flavor().await
    }

    /// Everything [`Storage::create_file_pool`] checks before it makes
    /// anything (see [`ZfsCli::check_file_pool`]).
    async fn check_file_pool(&self, pool: &str, file: &Path, size: u64) -> Result<()> {
        ZfsCli::default().check_file_pool(pool, file, size).await
    }

    /// Create a pool on a new sparse file of `size` bytes, mounted at
    /// `mountpoint` (see [`ZfsCli::create_file_pool`]).
    async fn create_file_pool(
        &self,
        pool: &str,
        file: &Path,
        size: u64,
        mountpoint: &Path,
    ) -> Result<()> {
        ZfsCli::default()
            .create_file_pool(pool, file, size, mountpoint)
            .await
    }

    /// Destroy a pool (a failed `init`'s own).
    async fn destroy_pool(&self, pool: &str) -> Result<()> {
        ZfsCli::default().destroy_pool(pool).await
    }

    /// Create the file system `name` with betterpg's user properties
    /// `props` and the native properties `native` in one call, so a value
    /// ZFS refuses leaves nothing made.
    async fn create_with_native(
        &self,
        name: &str,
        props: &[(&str, &str)],
        native: &[(String, String)],
    ) -> Result<()> {
        ZfsCli::default()
            .create_with_native(name, props, native)
            .await
    }

    /// The values of native properties `keys` of `name` as ZFS shows them.
    async fn get_native(&self, name: &str, keys: &[&str]) -> Result<BTreeMap<String, String>> {
        ZfsCli::default().get_native(name, keys).await
    }

    /// Set a native (non-user) property, e.g. `compression=on`.
    async fn set_native(&self, name: &str, prop: &str, value: &str) -> Result<()> {
        ZfsCli::default().set_native(name, prop, value).await
    }
}

/// Where `dataset` is mounted; an error when it is missing or not mounted.
pub async fn mountpoint(storage: &dyn Storage, dataset: &str) -> Result<PathBuf> {
    storage
        .get(dataset)
        .await?
        .and_then(|d| d.mountpoint)
        .ok_or_else(|| Error::zfs(format!("dataset {dataset} is missing or not mounted")))
}

/// Create the file system `dataset` with `props` unless it is there (also
/// when another process made it meanwhile): betterpg's parents of
/// datasets (the WAL archives', the named snapshots' WAL).
pub async fn create_missing(
    storage: &dyn Storage,
    dataset: &str,
    props: &[(&str, &str)],
) -> Result<()> {
    if storage.get(dataset).await?.is_some() {
        return Ok(());
    }
    match storage.create(dataset, None, props).await {
        Ok(()) | Err(Error::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Destroy, retrying briefly: right after a server stops, the file system
/// can still be busy for a moment (zfs-fuse in particular). Already gone is
/// fine.
pub async fn destroy_with_retry(storage: &dyn Storage, name: &str, force: bool) -> Result<()> {
    let mut last = None;
    for _ in 0..20 {
        match storage.destroy(name, force).await {
            Ok(()) => return Ok(()),
            Err(Error::NotFound { .. }) => return Ok(()),
            Err(e @ Error::HasDependents { .. }) => return Err(e),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(last.unwrap_or_else(|| Error::Internal("destroy failed".into())))
}

/// Which storage backend [`select`] chose, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Selection {
    /// `"libzfs"` or `"cli"` (`"custom"` after `BranchManager::with_storage`).
    pub backend: &'static str,
    /// What was asked for: `"auto"`, `"libzfs"` or `"cli"`.
    pub requested: String,
    /// Why this backend, in one sentence (the fallback reason included).
    pub reason: String,
}

/// Whether this build has the libzfs backend: always, since its libraries
/// are loaded at run time (see [`libzfs::abi`]); kept for `bpg doctor`'s JSON.
pub const LIBZFS_COMPILED: bool = true;

/// Backend names accepted by [`select`] (and `storage_backend` in the config).
pub const BACKENDS: &[&str] = &["auto", "libzfs", "cli"];

/// Choose the storage backend: `requested` is `None`/`"auto"` (the linked
/// library where usable, the `zfs` command otherwise), `"libzfs"` (the
/// library or an error saying why not) or `"cli"`.
pub async fn select(requested: Option<&str>) -> Result<(Arc<dyn Storage>, Selection)> {
    let requested = requested.unwrap_or("auto").trim().to_ascii_lowercase();
    // The CLI backend, its userland detected now so that its name says which.
    let cli = |reason: String, requested: String| async move {
        let zfs = ZfsCli::default();
        let flavor = match zfs.flavor().await {
            ZfsFlavor::OpenZfs => "OpenZFS",
            ZfsFlavor::Legacy => "zfs-fuse/legacy",
        };
        let storage: Arc<dyn Storage> = Arc::new(zfs);
        (
            storage,
            Selection {
                backend: "cli",
                requested,
                reason: format!("{reason} ({flavor} userland)"),
            },
        )
    };
    match requested.as_str() {
        "cli" | "zfs-cli" => Ok(cli("configured: storage_backend = cli".into(), "cli".into()).await),
        "auto" | "libzfs" => match open_libzfs().await {
            Ok((lib, why)) => Ok((
                lib,
                Selection {
                    backend: "libzfs",
                    reason: if requested == "auto" {
                        format!("auto: {why}")
                    } else {
                        format!("configured: storage_backend = libzfs; {why}")
                    },
                    requested,
                },
            )),
            Err(why) if requested == "auto" => {
                if std::path::Path::new("/dev/zfs").exists() {
                    // OpenZFS is here but its library is not usable: say so.
                    tracing::warn!("storage: libzfs not used ({why}); falling back to the zfs CLI");
                } else {
                    tracing::info!("storage: libzfs not used ({why}); falling back to the zfs CLI");
                }
                Ok(cli(
                    format!("auto: libzfs not usable ({why}); using the zfs command"),
                    requested,
                )
                .await)
            }
            Err(why) => Err(Error::Unsupported(format!(
                "storage backend libzfs was asked for but is not usable: {why} (use `auto` or `cli`)"
            ))),
        },
        other => Err(Error::Config(format!(
            "unknown storage backend {other:?}: use one of {}",
            BACKENDS.join(", ")
        ))),
    }
}

/// Which OpenZFS libraries this machine has for the libzfs backend, in one
/// line, whether or not the backend is in use (`bpg doctor`): the libzfs
/// soname loaded, its version and the release whose declarations apply, or
/// why none could be loaded. Loads the libraries (no module needed), once
/// per process.
pub fn libzfs_libraries() -> String {
    match libzfs::abi::Api::load() {
        Ok(api) => format!(
            "{} ({}), OpenZFS {} declarations",
            api.soname,
            api.version_userland(),
            api.release.as_str()
        ),
        Err(why) => format!("none usable: {why}"),
    }
}

/// In a child made by `fork()`: forget process-wide storage handles
/// inherited from the parent (the libzfs handle shares its descriptors and
/// mount table stream with the parent), without finalising them, so the
/// child's next manager opens its own. See [`crate::blocking::fork`].
pub fn forget_after_fork() {
    libzfs::Libzfs::forget_after_fork();
}

async fn open_libzfs() -> std::result::Result<(Arc<dyn Storage>, String), String> {
    let lib = tokio::task::spawn_blocking(libzfs::Libzfs::open)
        .await
        .map_err(|e| format!("libzfs probe failed: {e}"))??;
    let v = lib.versions().clone();
    Ok((
        Arc::new(lib),
        format!(
            "libzfs {} ({}, OpenZFS {} declarations) with kernel module {}",
            v.userland, v.library, v.release, v.kernel
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(name: &str, kind: DatasetType, props: &[(&str, &str)], local: &[&str]) -> DatasetInfo {
        DatasetInfo {
            name: name.into(),
            kind,
            used: 0,
            referenced: 0,
            origin: None,
            quota: None,
            mountpoint: None,
            props: props
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            local: local.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn only_local_properties_naming_the_dataset_make_it_betterpgs() {
        use DatasetType::*;
        let h = "/h";
        let all = [("managed", "yes"), ("home", h), ("name", "prod")];
        let every = ["managed", "home", "name"];
        // A database (old style: name) and one with betterpg:dataset.
        assert!(ds("t/b/prod", Filesystem, &all, &every).made_by_betterpg(h));
        let mut p = all.to_vec();
        p.push(("dataset", "t/b/prod"));
        assert!(
            ds("t/b/prod", Filesystem, &p, &["managed", "home", "dataset"]).made_by_betterpg(h)
        );
        // Renamed elsewhere: the recorded name no longer matches.
        assert!(
            !ds("t/b/other", Filesystem, &p, &["managed", "home", "dataset"]).made_by_betterpg(h)
        );
        // Another home's.
        assert!(!ds("t/b/prod", Filesystem, &all, &every).made_by_betterpg("/x"));
        // A child dataset or snapshot inheriting everything from prod.
        assert!(!ds("t/b/prod/extra", Filesystem, &all, &[]).made_by_betterpg(h));
        assert!(!ds("t/b/prod@manual", Snapshot, &all, &[]).made_by_betterpg(h));
        assert!(!ds("t/b/prod@autosnap_2026-01-01_daily", Snapshot, &all, &[]).made_by_betterpg(h));
        // A branch's tablespace clone (made before betterpg:dataset).
        let ts = [
            ("managed", "yes"),
            ("home", h),
            ("name", "dev"),
            ("kind", "tablespace"),
        ];
        let ts_local = ["managed", "home", "name", "kind"];
        assert!(
            ds("t/b/_branches/dev/tblspc-16384", Filesystem, &ts, &ts_local).made_by_betterpg(h)
        );
        assert!(!ds("t/b/_branches/dev/other", Filesystem, &ts, &ts_local).made_by_betterpg(h));
        assert!(!ds("t/b/_branches/dev/tblspc-1", Filesystem, &ts, &[]).made_by_betterpg(h));
        // A child that happens to be called like its parent.
        assert!(!ds("t/b/prod/prod", Filesystem, &all, &[]).made_by_betterpg(h));
        // Local but not naming this dataset.
        assert!(!ds("t/b/prod/x", Filesystem, &all, &every).made_by_betterpg(h));
        // A branch snapshot: local branch matching the snapshot's name.
        let snap = [("managed", "yes"), ("home", h), ("branch", "dev")];
        let local = ["managed", "home", "branch"];
        assert!(ds("t/b/prod@bpg-dev-17", Snapshot, &snap, &local).made_by_betterpg(h));
        assert!(ds("t/b/prod@bpg-dev", Snapshot, &snap, &local).made_by_betterpg(h));
        assert!(!ds("t/b/prod@bpg-devx-17", Snapshot, &snap, &local).made_by_betterpg(h));
        assert!(!ds("t/b/prod@manual", Snapshot, &snap, &local).made_by_betterpg(h));
        // A named snapshot: local `named` matching the snapshot's name.
        let named = [("managed", "yes"), ("home", h), ("named", "before")];
        let named_local = ["managed", "home", "named"];
        assert!(
            ds("t/b/prod@bpgsnap-before-17", Snapshot, &named, &named_local).made_by_betterpg(h)
        );
        assert!(!ds(
            "t/b/prod@bpgsnap-beforex-17",
            Snapshot,
            &named,
            &named_local
        )
        .made_by_betterpg(h));
        assert!(!ds("t/b/prod@bpg-before-17", Snapshot, &named, &named_local).made_by_betterpg(h));
        assert!(
            !ds("t/b/prod@bpgsnap-before-17", Snapshot, &named, &["named"]).made_by_betterpg(h)
        );
        // A rewind point: local `rewind` matching the snapshot's name.
        let rw = [("managed", "yes"), ("home", h), ("rewind", "dev")];
        let rw_local = ["managed", "home", "rewind"];
        assert!(
            ds("t/b/_branches/dev@bpgrewind-dev", Snapshot, &rw, &rw_local).made_by_betterpg(h)
        );
        assert!(
            !ds("t/b/_branches/dev@bpgrewind-devx", Snapshot, &rw, &rw_local).made_by_betterpg(h)
        );
        assert!(!ds(
            "t/b/_branches/dev@bpgrewind-dev",
            Snapshot,
            &rw,
            &["rewind"]
        )
        .made_by_betterpg(h));
        // managed inherited, branch local (as a snapshot made with only
        // -o betterpg:branch would be): not ours.
        assert!(
            !ds("t/b/prod@bpg-dev-1", Snapshot, &snap, &["branch", "home"]).made_by_betterpg(h)
        );
    }
}
