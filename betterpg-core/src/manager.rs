//! `BranchManager`: the verbs (init, create, branch, start, stop, destroy,
//! status, logs), orchestrating catalog, storage, PostgreSQL and runtime.
//!
//! The branch recipe itself lives in [`crate::branch`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::catalog::{allocate_port, Catalog, Entry, Kind, State};
use crate::error::{Error, Result};
use crate::home::{Config, Home};
use crate::name::validate_name;
use crate::osuser::OsUser;
use crate::pg::cluster::{self, Profile};
use crate::pg::datadir::DataDir;
use crate::pg::isolate::{enforce_owned_settings, Target};
use crate::pg::{ConnInfo, PgBin};
use crate::runtime::{DockerRuntime, InstanceSpec, NativeRuntime, RunStatus, Runtime};
use crate::storage::{DatasetInfo, PoolSpace, Storage, ZfsCli};
use crate::util::{now_unix, random_token};

/// Directory inside each dataset that holds the data directory. A
/// subdirectory (not the mountpoint itself) so that an unmounted dataset can
/// never be mistaken for an empty data directory.
pub const PGDATA_SUBDIR: &str = "pgdata";

/// Pool use above which `status` warns.
pub const POOL_WARN_FRACTION: f64 = 0.8;

/// How `init` gets its storage.
#[derive(Debug, Clone)]
pub enum InitStorage {
    /// Use (or create) this dataset in an existing pool, e.g. `tank/betterpg`.
    Dataset(String),
    /// Create a pool on a sparse file and use `POOL/betterpg` in it.
    PoolFile {
        /// Path of the backing file (created sparse).
        file: PathBuf,
        /// Size of the file, bytes.
        size: u64,
        /// Pool name.
        pool: String,
    },
}

/// Options of [`BranchManager::init`].
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Where datasets live.
    pub storage: InitStorage,
    /// Default PostgreSQL bin directory (found on the machine when `None`).
    pub pg_bin: Option<PathBuf>,
    /// OS user for servers (see [`OsUser::resolve`]).
    pub os_user: Option<String>,
    /// Listen address (default 127.0.0.1).
    pub listen_address: Option<String>,
    /// First and last port to allocate from.
    pub port_range: Option<(u16, u16)>,
    /// Percent of the pool kept for databases (see [`crate::space`]);
    /// default [`crate::home::DEFAULT_BRANCH_HEADROOM_PERCENT`].
    pub branch_headroom_percent: Option<u8>,
    /// Bytes reserved for every branch; default
    /// [`crate::home::DEFAULT_BRANCH_RESERVE`].
    pub branch_reserve: Option<u64>,
    /// Memory limit of every container (docker runtime), bytes, 0 for none;
    /// default [`crate::home::DEFAULT_DOCKER_MEMORY`].
    pub docker_memory: Option<u64>,
    /// Most processes/threads in every container, 0 for none; default
    /// [`crate::home::DEFAULT_DOCKER_PIDS`].
    pub docker_pids: Option<u64>,
    /// Native ZFS properties (`("recordsize", "16K")` ...) replacing or
    /// adding to betterpg's defaults for PostgreSQL (`recordsize=8K`,
    /// `atime=off`, `compression=lz4` or `on`); see
    /// [`crate::storage::props`] for the keys and values accepted. Empty:
    /// the defaults.
    pub zfs_properties: Vec<(String, String)>,
}

impl InitOptions {
    /// Options for an existing dataset with every default.
    pub fn dataset(dataset: impl Into<String>) -> Self {
        InitOptions {
            storage: InitStorage::Dataset(dataset.into()),
            pg_bin: None,
            os_user: None,
            listen_address: None,
            port_range: None,
            branch_headroom_percent: None,
            branch_reserve: None,
            docker_memory: None,
            docker_pids: None,
            zfs_properties: Vec::new(),
        }
    }
}

/// Options of [`BranchManager::create`].
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// PostgreSQL bin directory for this database (else the configured one).
    pub pg_bin: Option<PathBuf>,
    /// Required PostgreSQL major version.
    pub pg_version: Option<u32>,
    /// Runtime to run it with ("native" when `None`).
    pub runtime: Option<String>,
    /// Container image, for container runtimes.
    pub image: Option<String>,
}

/// How a branch snapshot is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SnapshotMode {
    /// Backup mode around the snapshot (the default): every committed
    /// transaction, recovered as a base backup.
    #[default]
    ApplicationConsistent,
    /// `CHECKPOINT` then an atomic snapshot; crash recovery on start.
    CrashConsistent,
}

/// Options of [`BranchManager::branch`].
#[derive(Debug, Clone, Default)]
pub struct BranchOptions {
    /// How to snapshot a running source.
    pub mode: SnapshotMode,
    /// Most pool space the branch may use (a ZFS `quota`), in bytes. A
    /// branch that fills it gets PostgreSQL's own disk-full error while its
    /// source and the other branches keep writing; without it, one branch
    /// can fill the pool for everyone.
    pub quota: Option<u64>,
    /// Runtime of the branch; `None`: its source's. Branching a native
    /// database into a container (or back) works: the data directory is
    /// the same either way.
    pub runtime: Option<String>,
    /// Container image of the branch; `None`: its source's image when the
    /// runtime is the source's, else the runtime's default image.
    pub image: Option<String>,
}

/// A database or branch as `status` reports it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Info {
    /// Name.
    pub name: String,
    /// "database" or "branch".
    pub kind: &'static str,
    /// Parent name (null for a database).
    pub parent: Option<String>,
    /// "running" or "stopped".
    pub status: &'static str,
    /// "ready", "creating", "destroying" or "incomplete" (left half-made by
    /// a process that died; `bpg destroy` or `gc` removes it).
    pub state: &'static str,
    /// TCP port.
    pub port: u16,
    /// Pool bytes used by its dataset.
    pub used_bytes: u64,
    /// Bytes its dataset refers to.
    pub referenced_bytes: u64,
    /// Connection URL (with the password).
    pub url: String,
    /// How a branch was made; null for a database.
    pub mode: Option<&'static str>,
    /// Its ZFS dataset.
    pub dataset: String,
    /// For a branch, the snapshot it was cloned from.
    pub snapshot: Option<String>,
    /// Runtime ("native").
    pub runtime: String,
    /// PostgreSQL major version.
    pub pg_version: u32,
    /// Unix time of creation.
    pub created_at: u64,
}

/// Time taken by one step of an operation.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StepTiming {
    /// Step name: backup_start, snapshot, backup_stop, clone, prepare, start ...
    pub step: &'static str,
    /// Milliseconds.
    pub millis: f64,
}

/// What [`BranchManager::branch`] returns.
#[derive(Debug, Clone, Serialize)]
pub struct BranchReport {
    /// The new branch.
    pub branch: Info,
    /// Each step with its time, in order.
    pub timings: Vec<StepTiming>,
    /// Whole call, milliseconds.
    pub total_millis: f64,
    /// Whether the source was running (a stopped source needs no backup mode).
    pub source_was_running: bool,
    /// WAL copied from the source into the branch, bytes.
    pub wal_bytes_copied: u64,
    /// The source's tablespaces, each cloned for the branch (empty when it
    /// has none outside its data directory).
    pub tablespaces: Vec<crate::tablespace::TablespaceClone>,
    /// What was cut off between the branch and its source (archiving,
    /// upstream, slots, subscriptions, settings, password), and warnings
    /// about what still points at other systems (foreign servers, pg_cron).
    pub isolation: crate::pg::isolate::IsolationReport,
    /// True when `reset` gave the branch a new password because its
    /// password file (HOME/secrets/NAME) was missing: its URL changed.
    /// False for a new branch and a reset that kept the password.
    pub password_changed: bool,
}

/// Pool usage summary.
#[derive(Debug, Clone, Serialize)]
pub struct PoolUsage {
    /// Pool name.
    pub pool: String,
    /// Bytes used and available.
    #[serde(flatten)]
    pub space: PoolSpace,
    /// Used fraction, 0..1.
    pub fraction_used: f64,
    /// True above [`POOL_WARN_FRACTION`].
    pub warning: bool,
    /// All branches together: what they use and may use.
    pub branches: crate::space::BranchSpace,
}

/// The entry point of the library.
#[derive(Debug)]
pub struct BranchManager {
    pub(crate) home: Home,
    pub(crate) config: Config,
    pub(crate) storage: Arc<dyn Storage>,
    /// Which storage backend is in use, and why.
    pub(crate) storage_selection: crate::storage::Selection,
    /// Runtimes by name; an entry's `runtime` field picks one.
    pub(crate) runtimes: Vec<Arc<dyn Runtime>>,
    pub(crate) user: OsUser,
}

impl BranchManager {
    /// Initialise a home: record where datasets live (creating a file-backed
    /// pool and/or the root dataset when asked) and the defaults.
    pub async fn init(home: impl Into<PathBuf>, opts: InitOptions) -> Result<BranchManager> {
        Self::init_with_backend(home, opts, None).await
    }

    /// [`BranchManager::init`], recording a storage backend choice in the
    /// config: `auto` (`None`), `libzfs` or `cli` (see [`crate::storage::select`]).
    pub async fn init_with_backend(
        home: impl Into<PathBuf>,
        opts: InitOptions,
        storage_backend: Option<&str>,
    ) -> Result<BranchManager> {
        let home = Home::new(absolute(home.into())?);
        match home.load_config() {
            Ok(cfg) => {
                return Err(Error::AlreadyExists {
                    what: "betterpg home",
                    name: format!("{} (dataset {})", home.root().display(), cfg.dataset),
                })
            }
            Err(Error::NotInitialized { .. }) => {}
            Err(e) => return Err(e),
        }
        // Everything that can be checked without touching storage is checked
        // first, so a bad option never leaves a pool or dataset behind.
        if let Some((a, b)) = opts.port_range {
            if a == 0 || a > b {
                return Err(Error::Config(format!(
                    "invalid port range {a}-{b}: give FIRST-LAST with 0 < FIRST <= LAST"
                )));
            }
        }
        let mut cfg = Config::new("");
        if let Some(p) = opts.branch_headroom_percent {
            cfg.branch_headroom_percent = p;
        }
        if let Some(r) = opts.branch_reserve {
            cfg.branch_reserve = r;
        }
        if let Some(m) = opts.docker_memory {
            cfg.docker_memory = m;
        }
        if let Some(p) = opts.docker_pids {
            cfg.docker_pids = p;
        }
        crate::space::check_settings(&cfg)?;
        cfg.check_container_limits()?;
        let user = OsUser::resolve(opts.os_user.as_deref())?;
        let pg_bin = match &opts.pg_bin {
            Some(d) => Some(PgBin::at(d)?.dir),
            None => {
                // Fail now, not at the first create, when there is no server.
                PgBin::discover(None, None)?;
                None
            }
        };
        let (storage, storage_selection) = crate::storage::select(storage_backend).await?;
        let zfs = ZfsCli::default();
        // The storage's own checks, then reachability, all before anything
        // is made. ZFS properties are checked against this ZFS's flavour.
        let zfs_props = crate::storage::props::resolve(&opts.zfs_properties, zfs.flavor().await)?;
        let mut planned_mountpoint = None;
        match &opts.storage {
            InitStorage::Dataset(ds) => {
                validate_dataset_name(ds)?;
                Self::check_pool_exists(&zfs, ds).await?;
                planned_mountpoint = Self::planned_mountpoint(&zfs, ds).await?;
            }
            InitStorage::PoolFile { file, size, pool } => {
                validate_name(pool).map_err(|e| Error::Config(format!("pool name: {e}")))?;
                zfs.check_file_pool(pool, file, *size).await?;
            }
        }
        // The servers' OS user must reach the home (its logs, and a
        // file-backed pool's mountpoint, live there; the home itself is
        // made 0755) and the datasets' mountpoint, or every `create` would
        // fail later with a bare "Permission denied".
        crate::home::check_reachable(&user, home.root(), false, "the betterpg home")?;
        if let Some(mp) = &planned_mountpoint {
            crate::home::check_reachable(&user, mp, true, "the datasets' mountpoint")?;
        }
        let mut created_pool: Option<(String, PathBuf)> = None;
        let dataset = match &opts.storage {
            InitStorage::Dataset(ds) => ds.clone(),
            InitStorage::PoolFile { file, size, pool } => {
                let mountpoint = home.root().join("mnt").join(pool);
                zfs.create_file_pool(pool, file, *size, &mountpoint).await?;
                created_pool = Some((pool.clone(), file.clone()));
                format!("{pool}/betterpg")
            }
        };
        let result =
            Self::init_dataset(&zfs, &home, &dataset, &zfs_props, &opts.zfs_properties).await;
        if let Err(e) = &result {
            tracing::debug!("init of {dataset} failed: {e}");
        }
        let result = match result {
            Ok(()) => {
                let keys: Vec<&str> = zfs_props.iter().map(|(k, _)| k.as_str()).collect();
                zfs.get_native(&dataset, &keys).await
            }
            Err(e) => Err(e),
        };
        if let Ok(p) = &result {
            cfg.zfs_properties = p.clone();
        }
        if let Err(e) = result {
            if let Some((pool, file)) = created_pool {
                let _ = zfs.destroy_pool(&pool).await;
                let _ = std::fs::remove_file(file);
            }
            return Err(e);
        }
        cfg.dataset = dataset;
        cfg.storage_backend = storage_backend.map(str::to_string);
        cfg.pg_bin = pg_bin;
        cfg.os_user = opts.os_user.clone();
        if let Some(l) = opts.listen_address {
            cfg.listen_address = l;
        }
        if let Some((a, b)) = opts.port_range {
            cfg.port_start = a;
            cfg.port_end = b;
        }
        if let InitStorage::PoolFile { file, .. } = &opts.storage {
            cfg.pool_file = Some(file.clone());
        }
        home.ensure_dirs()?;
        home.save_config(&cfg)?;
        Ok(BranchManager {
            home,
            config: cfg,
            storage,
            storage_selection,
            runtimes: default_runtimes(),
            user,
        })
    }

    /// Where `dataset` is (or, once created under its parent, will be)
    /// mounted; `None` when unknown (missing parent, legacy or no mountpoint).
    async fn planned_mountpoint(zfs: &ZfsCli, dataset: &str) -> Result<Option<PathBuf>> {
        if let Some(d) = zfs.get(dataset).await? {
            return Ok(d.mountpoint);
        }
        let Some((parent, last)) = dataset.rsplit_once('/') else {
            return Ok(None);
        };
        Ok(zfs
            .get(parent)
            .await?
            .and_then(|p| p.mountpoint)
            .map(|m| m.join(last)))
    }

    /// The pool of `dataset` exists, or a NotFound saying what to do.
    async fn check_pool_exists(zfs: &ZfsCli, dataset: &str) -> Result<()> {
        let pool = dataset.split('/').next().unwrap_or(dataset);
        if zfs.get(pool).await?.is_none() {
            return Err(Error::NotFound {
                what: "ZFS pool",
                name: pool.to_string(),
                hint: ": create it first (`zpool create`) or use `bpg init --pool-file FILE --size SIZE`"
                    .into(),
            });
        }
        Ok(())
    }

    /// Create (or adopt, when it is this home's) the root dataset with the
    /// ZFS properties `props` (see [`crate::storage::props`]); `overrides`
    /// are what the caller asked for, the rest are defaults.
    async fn init_dataset(
        zfs: &ZfsCli,
        home: &Home,
        dataset: &str,
        props: &[(String, String)],
        overrides: &[(String, String)],
    ) -> Result<()> {
        let pool = dataset.split('/').next().unwrap_or(dataset);
        Self::check_pool_exists(zfs, dataset).await?;
        match zfs.get(dataset).await? {
            Some(ds) => {
                if ds.props.get("managed").map(String::as_str) != Some("root") {
                    return Err(Error::Config(format!(
                        "dataset {dataset} exists and was not made by betterpg (no betterpg:managed=root property): choose a new dataset name, betterpg will create it"
                    )));
                }
                let owner = ds.props.get("home").cloned().unwrap_or_default();
                if owner != home.root().to_string_lossy() {
                    return Err(Error::Config(format!(
                        "dataset {dataset} belongs to the betterpg home {owner:?}: use --home {owner} or another dataset"
                    )));
                }
                // This home's dataset, initialised again: the properties
                // apply to what is written from now on.
                for (k, v) in props {
                    zfs.set_native(dataset, k, v).await?;
                }
            }
            None => {
                let parent = dataset.rsplit_once('/').map(|(p, _)| p).unwrap_or(pool);
                if zfs.get(parent).await?.is_none() {
                    return Err(Error::NotFound {
                        what: "ZFS dataset",
                        name: parent.to_string(),
                        hint: ": create the parent dataset first".into(),
                    });
                }
                let h = home.root().to_string_lossy().into_owned();
                let user = [("managed", "root"), ("home", h.as_str())];
                // One `zfs create -o ...`: a value ZFS refuses leaves no
                // dataset. Every database and branch inherits them.
                match zfs.create_with_native(dataset, &user, props).await {
                    Ok(()) => {}
                    // A pool without the lz4 feature (an old pool given with
                    // --dataset): the default falls back to `on`; a value
                    // the caller asked for is never replaced.
                    Err(e)
                        if props.iter().any(|(k, v)| k == "compression" && v != "on")
                            && !overrides.iter().any(|(k, _)| k == "compression") =>
                    {
                        tracing::warn!(
                            "{dataset}: default compression refused ({e}); using compression=on"
                        );
                        let fallback: Vec<(String, String)> = props
                            .iter()
                            .map(|(k, v)| {
                                if k == "compression" {
                                    (k.clone(), "on".to_string())
                                } else {
                                    (k.clone(), v.clone())
                                }
                            })
                            .collect();
                        zfs.create_with_native(dataset, &user, &fallback).await?;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        // The parent of every branch (see crate::space); its quota is set
        // at each branch.
        let branches = format!("{dataset}/{}", crate::space::BRANCHES_DATASET);
        crate::space::ensure_branches_dataset(zfs, &branches, home.root()).await?;
        Ok(())
    }

    /// Open an initialised home.
    pub async fn open(home: impl Into<PathBuf>) -> Result<BranchManager> {
        let home = Home::new(absolute(home.into())?);
        if !home.root().is_dir() {
            return Err(Error::NotInitialized {
                home: home.root().to_path_buf(),
            });
        }
        let config = home.load_config()?;
        let user = OsUser::resolve(config.os_user.as_deref())?;
        let (storage, storage_selection) =
            crate::storage::select(config.storage_backend.as_deref()).await?;
        Ok(BranchManager {
            home,
            config,
            storage,
            storage_selection,
            runtimes: default_runtimes(),
            user,
        })
    }

    /// The runtime registered under `name`.
    pub(crate) fn runtime(&self, name: &str) -> Result<Arc<dyn Runtime>> {
        self.runtimes
            .iter()
            .find(|r| r.name() == name)
            .cloned()
            .ok_or_else(|| {
                Error::Unsupported(format!(
                    "runtime {name:?} is not available in this build (have: {})",
                    self.runtimes
                        .iter()
                        .map(|r| r.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }

    /// The runtime `name` and the image to run with it: `image` if given
    /// (refused for a runtime that runs no image), else the runtime's default.
    pub(crate) fn runtime_and_image(
        &self,
        name: &str,
        image: Option<String>,
    ) -> Result<(Arc<dyn Runtime>, Option<String>)> {
        let rt = self.runtime(name)?;
        if image.is_some() && rt.default_image().is_none() {
            return Err(Error::Config(format!(
                "the {} runtime runs no image: --image needs a container runtime (--runtime docker)",
                rt.name()
            )));
        }
        let image = image.or_else(|| rt.default_image().map(str::to_string));
        Ok((rt, image))
    }

    /// Make `runtime` (and `image`) what `create` uses when a call names no
    /// runtime; recorded in the home's config. `None` resets to native.
    pub fn set_default_runtime(
        &mut self,
        runtime: Option<String>,
        image: Option<String>,
    ) -> Result<()> {
        if let Some(r) = &runtime {
            self.runtime_and_image(r, image.clone())?;
        } else if image.is_some() {
            return Err(Error::Config(
                "--image needs a container runtime (--runtime docker)".into(),
            ));
        }
        let mut cfg = self.config.clone();
        cfg.default_runtime = runtime;
        cfg.default_image = image;
        self.home.save_config(&cfg)?;
        self.config = cfg;
        Ok(())
    }

    /// Register (or replace) a runtime.
    pub fn with_runtime(mut self, rt: Arc<dyn Runtime>) -> Self {
        self.runtimes.retain(|r| r.name() != rt.name());
        self.runtimes.push(rt);
        self
    }

    /// Replace the storage backend (tests, other backends).
    pub fn with_storage(mut self, storage: Arc<dyn Storage>) -> Self {
        self.storage_selection = crate::storage::Selection {
            backend: "custom",
            requested: "custom".into(),
            reason: format!(
                "set with BranchManager::with_storage: {}",
                storage.backend_name()
            ),
        };
        self.storage = storage;
        self
    }

    /// The home directory.
    pub fn home(&self) -> &Path {
        self.home.root()
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Name of the storage backend in use.
    pub fn storage_backend(&self) -> String {
        self.storage.backend_name()
    }

    /// Which storage backend is in use and why (see [`crate::storage::select`]).
    pub fn storage_selection(&self) -> &crate::storage::Selection {
        &self.storage_selection
    }

    pub(crate) fn dataset_for(&self, name: &str) -> String {
        format!("{}/{name}", self.config.dataset)
    }

    pub(crate) fn lock(&self) -> Result<Catalog> {
        let timeout = crate::catalog::lock::timeout(self.config.lock_timeout_secs)?;
        Catalog::lock_within(&self.home, timeout)
    }

    /// Reserve `name` and a port in the catalog (state `creating`).
    pub(crate) fn reserve(&self, mut entry: Entry) -> Result<Entry> {
        let mut cat = self.lock()?;
        if let Some(e) = cat.get(&entry.name) {
            return Err(Error::AlreadyExists {
                what: e.kind.as_str(),
                name: entry.name,
            });
        }
        // Checked again here, under the lock: the caller looked at the
        // source before, and a `destroy` may have begun since. Once this
        // entry is recorded, `destroy` of the parent waits for it.
        if let Some(parent) = &entry.parent {
            match cat.get(parent) {
                Some(p) if p.is_ready() => {}
                Some(p) => {
                    return Err(Error::InvalidState(format!(
                        "source {parent:?} is not ready (it is {}): wait for the other bpg process, or `bpg destroy {parent}` if it is incomplete",
                        p.state.label()
                    )))
                }
                None => return Err(Error::not_found(parent)),
            }
        }
        entry.port = self.free_port(&cat)?;
        entry.state = State::creating();
        cat.insert(entry.clone())?;
        cat.save()?;
        Ok(entry)
    }

    /// A port of the configured range that no entry of `cat` holds and
    /// nothing listens on (call with the catalog locked).
    fn free_port(&self, cat: &Catalog) -> Result<u16> {
        let listen = &self.config.listen_address;
        allocate_port(
            self.config.port_start,
            self.config.port_end,
            &cat.used_ports(),
            |p| port_is_free(listen, p),
        )
    }

    /// Give the reserved entry `name` another free port (its current one
    /// turned out to be taken) and record it; returns the new port.
    pub(crate) fn move_port(&self, name: &str) -> Result<u16> {
        let mut cat = self.lock()?;
        let port = self.free_port(&cat)?;
        cat.get_mut(name)
            .ok_or_else(|| Error::Internal(format!("catalog entry {name} vanished")))?
            .port = port;
        cat.save()?;
        Ok(port)
    }

    /// Drop a reservation (after a failed create/branch).
    pub(crate) fn unreserve(&self, name: &str) -> Result<()> {
        let mut cat = self.lock()?;
        cat.remove(name);
        cat.save()
    }

    pub(crate) fn mark_ready(&self, name: &str) -> Result<()> {
        let mut cat = self.lock()?;
        let e = cat
            .get_mut(name)
            .ok_or_else(|| Error::Internal(format!("catalog entry {name} vanished")))?;
        e.state = State::Ready;
        cat.save()
    }

    /// Look up an entry (without keeping the lock).
    pub fn entry(&self, name: &str) -> Result<Entry> {
        validate_name(name)?;
        self.lock()?
            .get(name)
            .cloned()
            .ok_or_else(|| Error::not_found(name))
    }

    fn ready_entry(&self, name: &str) -> Result<Entry> {
        let e = self.entry(name)?;
        match e.state.worker() {
            None => Ok(e),
            Some(pid) if !e.state.is_live() => Err(Error::InvalidState(format!(
                "{name:?} is incomplete (left {} by process {pid} that is gone): `bpg destroy {name}` removes it",
                match e.state {
                    State::Destroying { .. } => "half-destroyed",
                    _ => "half-made",
                }
            ))),
            Some(pid) => Err(Error::InvalidState(format!(
                "{name:?} is busy ({} by process {pid}); wait for the other bpg process",
                e.state.label()
            ))),
        }
    }

    pub(crate) async fn mountpoint(&self, dataset: &str) -> Result<PathBuf> {
        self.storage
            .get(dataset)
            .await?
            .and_then(|d| d.mountpoint)
            .ok_or_else(|| Error::Zfs(format!("dataset {dataset} is missing or not mounted")))
    }

    pub(crate) fn conn_for(&self, e: &Entry) -> Result<ConnInfo> {
        Ok(ConnInfo {
            host: connect_host(&self.config.listen_address),
            port: e.port,
            user: "postgres".into(),
            password: self.home.read_secret(&e.name)?,
            dbname: "postgres".into(),
        })
    }

    /// The spec of `e` for what logs in to its server (start, branch): its
    /// password file must be there (the error says which file is missing).
    pub(crate) fn spec_for(&self, e: &Entry, data_dir: PathBuf) -> Result<InstanceSpec> {
        let mut spec = self.control_spec_for(e, data_dir);
        spec.conn = self.conn_for(e)?;
        Ok(spec)
    }

    /// The spec of `e` for what never logs in (stop, status, logs,
    /// destroy): works without its password file (then the password is
    /// empty), so a lost file never blocks stopping or removing a server.
    pub(crate) fn control_spec_for(&self, e: &Entry, data_dir: PathBuf) -> InstanceSpec {
        InstanceSpec {
            name: e.name.clone(),
            data_dir,
            pg_bin: PgBin {
                dir: e.pg_bin.clone(),
                major: e.pg_major,
            },
            log_file: self.home.log_path(&e.name),
            runtime: e.runtime.clone(),
            image: e.image.clone(),
            home: self.home.root().to_path_buf(),
            parent: e.parent.clone(),
            user: self.user.clone(),
            conn: ConnInfo {
                host: connect_host(&self.config.listen_address),
                port: e.port,
                user: "postgres".into(),
                password: self.home.read_secret(&e.name).unwrap_or_default(),
                dbname: "postgres".into(),
            },
            start_timeout: Duration::from_secs(self.config.start_timeout_secs),
            limits: self.config.container_limits(),
            private_socket_dir: None,
        }
    }

    pub(crate) async fn spec(&self, e: &Entry) -> Result<InstanceSpec> {
        let mp = self.mountpoint(&e.dataset).await?;
        self.spec_for(e, mp.join(PGDATA_SUBDIR))
    }

    /// [`Self::control_spec_for`] of `e` on its mounted dataset.
    pub(crate) async fn control_spec(&self, e: &Entry) -> Result<InstanceSpec> {
        let mp = self.mountpoint(&e.dataset).await?;
        Ok(self.control_spec_for(e, mp.join(PGDATA_SUBDIR)))
    }

    /// Create a new, started, empty database cluster.
    pub async fn create(&self, name: &str, opts: CreateOptions) -> Result<Info> {
        validate_name(name)?;
        let bin = PgBin::choose(
            opts.pg_bin.as_deref(),
            self.config.pg_bin.as_deref(),
            opts.pg_version,
        )?;
        // The home's defaults (bpg init --runtime/--image) apply when the
        // call names no runtime.
        let (runtime, image) = match &opts.runtime {
            Some(r) => (r.clone(), opts.image.clone()),
            None => (
                self.config
                    .default_runtime
                    .clone()
                    .unwrap_or_else(|| "native".into()),
                opts.image
                    .clone()
                    .or_else(|| self.config.default_image.clone()),
            ),
        };
        let (rt, image) = self.runtime_and_image(&runtime, image)?;
        let entry = self.reserve(Entry {
            name: name.to_string(),
            kind: Kind::Database,
            parent: None,
            dataset: self.dataset_for(name),
            snapshot: None,
            port: 0,
            runtime: rt.name().to_string(),
            image,
            mode: None,
            pg_bin: bin.dir.clone(),
            pg_major: bin.major,
            created_at: now_unix(),
            state: State::Ready,
        })?;
        let mut made_dataset = false;
        let result = self.create_inner(&entry, &bin, &mut made_dataset).await;
        if let Err(e) = result {
            if made_dataset {
                if let Ok(spec) = self.spec(&entry).await {
                    if let Ok(rt) = self.runtime(&entry.runtime) {
                        let _ = rt.stop(&spec).await;
                        let _ = rt.remove(&spec).await;
                    }
                }
                let _ = destroy_with_retry(&*self.storage, &entry.dataset, true).await;
            }
            self.home.remove_secret(name);
            let _ = std::fs::remove_file(self.home.log_path(name));
            self.unreserve(name)?;
            return Err(e);
        }
        self.mark_ready(name)?;
        self.info(name).await
    }

    async fn create_inner(&self, entry: &Entry, bin: &PgBin, made: &mut bool) -> Result<()> {
        let port = entry.port.to_string();
        let created = entry.created_at.to_string();
        let home = self.home.root().to_string_lossy().into_owned();
        self.storage
            .create(
                &entry.dataset,
                None,
                &[
                    ("managed", "yes"),
                    ("name", &entry.name),
                    // Its own full name: a dataset made under it inherits
                    // this, and then it does not match (see gc).
                    ("dataset", &entry.dataset),
                    ("kind", "database"),
                    ("port", &port),
                    ("runtime", &entry.runtime),
                    ("home", &home),
                    ("created", &created),
                ],
            )
            .await?;
        *made = true;
        let mp = self.mountpoint(&entry.dataset).await?;
        let data_dir = mp.join(PGDATA_SUBDIR);
        let password = random_token(32);
        // The secret first: the spec carries the connection with it (and a
        // failed create removes it).
        self.home.write_secret(&entry.name, &password)?;
        let mut spec = self.spec_for(entry, data_dir.clone())?;
        spec.pg_bin = bin.clone();
        let rt = self.runtime(&entry.runtime)?;
        rt.init_cluster(&spec, &password).await?;
        cluster::write_settings(
            &DataDir::open(&data_dir)?,
            &self.user,
            entry.port,
            &self.config.listen_address,
            &Profile::Database,
        )?;
        self.start_on_free_port(entry, &data_dir, |s| s.pg_bin = bin.clone(), &mut None)
            .await
    }

    /// Start the new server. The port was free when it was reserved, but
    /// another program may bind it before the server does (on Linux any
    /// outgoing connection can take a port of the ephemeral range as its
    /// local port): then move to another free port and try again, instead
    /// of failing a branch over a race nobody can prevent.
    pub(crate) async fn start_on_free_port(
        &self,
        entry: &Entry,
        data_dir: &Path,
        adjust: impl Fn(&mut InstanceSpec),
        started: &mut Option<InstanceSpec>,
    ) -> Result<()> {
        const ATTEMPTS: usize = 3;
        let mut entry = entry.clone();
        let listen = self.config.listen_address.clone();
        for attempt in 1..=ATTEMPTS {
            let mut spec = self.spec_for(&entry, data_dir.to_path_buf())?;
            adjust(&mut spec);
            *started = Some(spec.clone());
            let rt = self.runtime(&entry.runtime)?;
            match rt.start(&spec).await {
                Ok(()) => return Ok(()),
                // The holder may be gone again by now (another home's
                // short-lived server): the server's own words count too.
                Err(e)
                    if attempt < ATTEMPTS
                        && (port_taken_error(&e) || !port_is_free(&listen, entry.port)) =>
                {
                    let old = entry.port;
                    entry.port = self.move_port(&entry.name)?;
                    tracing::warn!(
                        "port {old} of {} was taken by another program before the server could bind it ({e}); trying port {}",
                        entry.name,
                        entry.port
                    );
                    self.storage
                        .set_props(&entry.dataset, &[("port", &entry.port.to_string())])
                        .await?;
                    let profile = match entry.kind {
                        Kind::Branch => Profile::Branch,
                        Kind::Database => Profile::Database,
                    };
                    cluster::write_settings(
                        &DataDir::open(data_dir)?,
                        &self.user,
                        entry.port,
                        &listen,
                        &profile,
                    )?;
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// Start a stopped database or branch.
    pub async fn start(&self, name: &str) -> Result<Info> {
        let e = self.ready_entry(name)?;
        // Strict: waiting for the server to be ready logs in, so a missing
        // password file is reported before anything is started.
        let spec = self.spec(&e).await?;
        let rt = self.runtime(&e.runtime)?;
        if rt.status(&spec).await? == RunStatus::Stopped {
            if e.kind == Kind::Branch {
                let own = spec.data_dir.parent().unwrap_or(&spec.data_dir);
                crate::tablespace::check_links(name, &spec.data_dir, own)?;
            }
            // betterpg's settings win over `ALTER SYSTEM` (port, addresses;
            // for a branch also archiving, upstream, TLS): strip them from
            // postgresql.auto.conf before every start.
            let target = match e.kind {
                Kind::Branch => Target::Branch,
                Kind::Database => Target::Database,
            };
            let dd = DataDir::open(&spec.data_dir)?;
            let removed = enforce_owned_settings(&dd, &self.user, target)?;
            // betterpg.conf itself is the server user's file (and so its
            // superuser's): written anew, never trusted, at every start.
            let profile = match e.kind {
                Kind::Branch => Profile::Branch,
                Kind::Database => Profile::Database,
            };
            cluster::write_settings(
                &dd,
                &self.user,
                e.port,
                &self.config.listen_address,
                &profile,
            )?;
            for r in removed {
                tracing::warn!(
                    "{name}: removed {} = {} from postgresql.auto.conf (betterpg's settings win)",
                    r.name,
                    r.value
                );
            }
            // Another program on our port would make the server fail with
            // a page of log: say what is wrong instead.
            if !port_is_free(&self.config.listen_address, e.port) {
                return Err(Error::Port(format!(
                    "port {port} of {name:?} is in use by another program: stop it (`ss -ltnp 'sport = :{port}'` shows which) and run `bpg start {name}` again",
                    port = e.port
                )));
            }
            rt.start(&spec).await?;
        }
        self.info(name).await
    }

    /// Stop a database or branch (fast shutdown).
    pub async fn stop(&self, name: &str) -> Result<Info> {
        let e = self.ready_entry(name)?;
        let spec = self.control_spec(&e).await?;
        self.runtime(&e.runtime)?.stop(&spec).await?;
        self.info(name).await
    }

    /// Connection URL of a database or branch.
    pub async fn url(&self, name: &str) -> Result<String> {
        let e = self.entry(name)?;
        Ok(self.conn_for(&e)?.url())
    }

    /// The server log, or its last `tail` lines.
    pub async fn logs(&self, name: &str, tail: Option<usize>) -> Result<String> {
        let e = self.entry(name)?;
        let spec = self.control_spec_for(&e, PathBuf::new());
        self.runtime(&e.runtime)?.logs(&spec, tail).await
    }

    /// Follow the server log: a stream of its last `tail` lines (all when
    /// `None`), then of what the server writes, as it writes it. A native
    /// server's log never ends (drop the stream to stop following); a
    /// container's ends when the container stops (see
    /// [`crate::ops::logs`]).
    pub async fn follow_logs(
        &self,
        name: &str,
        tail: Option<usize>,
    ) -> Result<crate::ops::logs::LogStream> {
        let e = self.entry(name)?;
        let path = self.home.log_path(&e.name);
        if e.runtime == "docker" {
            return crate::runtime::DockerRuntime::new()
                .log_stream(self.home.root(), &e.name, &path, tail)
                .await;
        }
        let text = self.logs(name, tail).await?;
        let from = crate::ops::logs::file_len(&path);
        Ok(crate::ops::logs::follow_file(path, text, from))
    }

    /// Check this machine and the home at `home` (initialised or not):
    /// see [`crate::ops::doctor::doctor`]. Problems are in the report.
    pub async fn doctor(home: impl AsRef<Path>) -> Result<crate::ops::doctor::DoctorReport> {
        crate::ops::doctor::doctor(home.as_ref()).await
    }

    /// Path of the server log (for following it).
    pub fn log_path(&self, name: &str) -> Result<PathBuf> {
        let e = self.entry(name)?;
        Ok(self.home.log_path(&e.name))
    }

    /// Destroy a database or branch: stop it, destroy its dataset and the
    /// snapshot it came from, forget it. Refused unless `force` when it has
    /// branches (`force` destroys them first, deepest first) or when its
    /// dataset (or a branch's) carries snapshots or datasets betterpg did
    /// not make (an operator's, sanoid's ...; `force` destroys them too).
    /// Always refused while a process that still runs is making or
    /// destroying it or one of its branches.
    pub async fn destroy(&self, name: &str, force: bool) -> Result<()> {
        validate_name(name)?;
        // What betterpg did not make under the datasets that would go,
        // looked up before the lock is taken (a listing per dataset).
        let datasets: Vec<String> = {
            let cat = self.lock()?;
            let e = cat.get(name).ok_or_else(|| Error::not_found(name))?;
            let mut v: Vec<String> = cat
                .descendants_deepest_first(name)
                .iter()
                .filter_map(|d| cat.get(d).map(|x| x.dataset.clone()))
                .collect();
            v.push(e.dataset.clone());
            v
        };
        let foreign = if force {
            Vec::new()
        } else {
            self.not_made_by_betterpg(&datasets).await?
        };
        let victims = {
            let mut cat = self.lock()?;
            let e = cat
                .get(name)
                .cloned()
                .ok_or_else(|| Error::not_found(name))?;
            if e.state.busy_elsewhere() {
                return Err(Error::InvalidState(format!(
                    "{name:?} is being changed by process {}; wait for it",
                    e.state.worker().unwrap_or_default()
                )));
            }
            let desc = cat.descendants_deepest_first(name);
            // A branch still being made has a clone of a snapshot of its
            // parent (or soon will): destroying the parent under it would
            // leave the parent half-destroyed and the clone orphaned.
            let busy: Vec<String> = desc
                .iter()
                .filter_map(|d| cat.get(d))
                .filter(|d| d.state.busy_elsewhere())
                .map(|d| {
                    format!(
                        "{} ({} by process {})",
                        d.name,
                        d.state.label(),
                        d.state.worker().unwrap_or_default()
                    )
                })
                .collect();
            if !busy.is_empty() {
                return Err(Error::InvalidState(format!(
                    "{name:?} has a branch that is being made or changed by another bpg process: {}; wait for it to finish, then run destroy again",
                    busy.join(", ")
                )));
            }
            if (!desc.is_empty() || !foreign.is_empty()) && !force {
                let mut parts = Vec::new();
                if !desc.is_empty() {
                    parts.push(format!("branches {}", desc.join(", ")));
                }
                if !foreign.is_empty() {
                    parts.push(format!(
                        "snapshots or datasets betterpg did not make (--force destroys them too): {}",
                        foreign.join(", ")
                    ));
                }
                return Err(Error::HasDependents {
                    name: name.to_string(),
                    dependents: parts.join("; "),
                });
            }
            let mut victims = desc;
            victims.push(name.to_string());
            for v in &victims {
                if let Some(x) = cat.get_mut(v) {
                    x.state = State::destroying();
                }
            }
            cat.save()?;
            victims
                .into_iter()
                .filter_map(|v| cat.get(&v).cloned())
                .collect::<Vec<_>>()
        };
        for v in victims {
            self.destroy_one(&v).await?;
        }
        Ok(())
    }

    /// Snapshots and datasets under `datasets` (each included) that
    /// betterpg did not make for this home, by full name.
    pub(crate) async fn not_made_by_betterpg(&self, datasets: &[String]) -> Result<Vec<String>> {
        let home = self.home.root().to_string_lossy().into_owned();
        let mut out = Vec::new();
        for ds in datasets {
            let list = match self.storage.list(ds).await {
                Ok(l) => l,
                Err(Error::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            out.extend(
                list.into_iter()
                    .filter(|d| d.name != *ds && !d.made_by_betterpg(&home))
                    .map(|d| d.name),
            );
        }
        Ok(out)
    }

    /// Remove one entry and everything it owns; tolerant of parts already gone
    /// (so a destroy interrupted half-way can simply be run again).
    pub(crate) async fn destroy_one(&self, e: &Entry) -> Result<()> {
        let tablespace_snapshots =
            crate::tablespace::snapshots_of(&*self.storage, &e.dataset, e.snapshot.as_deref())
                .await?;
        if let Some(ds) = self.storage.get(&e.dataset).await? {
            if let Some(mp) = ds.mountpoint {
                let spec = self.control_spec_for(e, mp.join(PGDATA_SUBDIR));
                let rt = self.runtime(&e.runtime)?;
                rt.stop(&spec).await?;
                rt.remove(&spec).await?;
            }
            destroy_with_retry(&*self.storage, &e.dataset, true).await?;
        }
        if let Some(snap) = &e.snapshot {
            // Already gone is fine (destroy_with_retry says so): no `get`
            // first, one zfs call fewer per destroy.
            destroy_with_retry(&*self.storage, snap, false).await?;
        }
        crate::tablespace::destroy_snapshots(&*self.storage, &tablespace_snapshots).await?;
        let _ = std::fs::remove_file(self.home.log_path(&e.name));
        self.home.remove_secret(&e.name);
        let mut cat = self.lock()?;
        cat.remove(&e.name);
        cat.save()
    }

    /// Status of one database or branch.
    pub async fn info(&self, name: &str) -> Result<Info> {
        let e = self.entry(name)?;
        let sizes = self.storage.get(&e.dataset).await?;
        self.info_of(&e, sizes.as_ref()).await
    }

    /// Status of every database and branch, parents before their branches.
    pub async fn status(&self) -> Result<Vec<Info>> {
        let entries: Vec<Entry> = self.lock()?.entries().cloned().collect();
        let datasets = match self.storage.list(&self.config.dataset).await {
            Err(Error::NotFound { .. }) => return Err(self.root_missing()),
            other => other?,
        };
        let mut out = Vec::with_capacity(entries.len());
        for e in tree_order(&entries) {
            let ds = datasets.iter().find(|d| d.name == e.dataset);
            out.push(self.info_of(e, ds).await?);
        }
        Ok(out)
    }

    async fn info_of(&self, e: &Entry, ds: Option<&DatasetInfo>) -> Result<Info> {
        let status = match ds.and_then(|d| d.mountpoint.clone()) {
            Some(mp) => {
                let spec = self.control_spec_for(e, mp.join(PGDATA_SUBDIR));
                self.runtime(&e.runtime)?.status(&spec).await?
            }
            None => RunStatus::Stopped,
        };
        let state = e.state.label();
        Ok(Info {
            name: e.name.clone(),
            kind: e.kind.as_str(),
            parent: e.parent.clone(),
            status: status.as_str(),
            state,
            port: e.port,
            used_bytes: ds.map(|d| d.used).unwrap_or(0),
            referenced_bytes: ds.map(|d| d.referenced).unwrap_or(0),
            url: self.conn_for(e).map(|c| c.url()).unwrap_or_default(),
            mode: e.mode.map(|m| m.as_str()),
            dataset: e.dataset.clone(),
            snapshot: e.snapshot.clone(),
            runtime: e.runtime.clone(),
            pg_version: e.pg_major,
            created_at: e.created_at,
        })
    }

    /// The error for a root dataset that is not there (pool not imported).
    fn root_missing(&self) -> Error {
        let pool = self.config.dataset.split('/').next().unwrap_or_default();
        let how = match &self.config.pool_file {
            Some(f) => format!(
                "`zpool import -d {} {pool}`",
                f.parent()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ),
            None => format!("`zpool import {pool}`"),
        };
        Error::NotFound {
            what: "ZFS dataset",
            name: self.config.dataset.clone(),
            hint: format!(": is the pool {pool} imported? Import it with {how}"),
        }
    }

    /// Space of the pool holding the datasets.
    pub async fn pool_usage(&self) -> Result<PoolUsage> {
        let space = self.storage.pool_space(&self.config.dataset).await?;
        let f = space.fraction_used();
        Ok(PoolUsage {
            pool: self
                .config
                .dataset
                .split('/')
                .next()
                .unwrap_or_default()
                .to_string(),
            space,
            fraction_used: f,
            warning: f > POOL_WARN_FRACTION,
            branches: self.branch_space().await?,
        })
    }
}

/// Names of the runtimes every manager has ("native", "docker").
pub fn available_runtimes() -> Vec<&'static str> {
    default_runtimes().iter().map(|r| r.name()).collect()
}

/// The runtimes every manager starts with.
fn default_runtimes() -> Vec<Arc<dyn Runtime>> {
    // The docker runtime contacts the engine only when an entry uses it.
    vec![Arc::new(NativeRuntime), Arc::new(DockerRuntime::new())]
}

/// Parents before children, siblings by name.
fn tree_order(entries: &[Entry]) -> Vec<&Entry> {
    fn walk<'a>(all: &'a [Entry], parent: Option<&str>, out: &mut Vec<&'a Entry>) {
        let mut kids: Vec<&Entry> = all
            .iter()
            .filter(|e| e.parent.as_deref() == parent)
            .collect();
        kids.sort_by(|a, b| a.name.cmp(&b.name));
        for k in kids {
            out.push(k);
            walk(all, Some(&k.name), out);
        }
    }
    let mut out = Vec::new();
    walk(entries, None, &mut out);
    // Orphans (parent missing from the catalog) still show.
    for e in entries {
        if !out.iter().any(|o| o.name == e.name) {
            out.push(e);
        }
    }
    out
}

/// Destroy, retrying briefly: right after a server stops, the file system
/// can still be busy for a moment (zfs-fuse in particular).
pub(crate) async fn destroy_with_retry(
    storage: &dyn Storage,
    name: &str,
    force: bool,
) -> Result<()> {
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

/// True when a start failed because the port was taken: PostgreSQL's
/// "could not bind ... Address already in use" in the log quoted by the
/// error, or a runtime's own port error.
fn port_taken_error(e: &Error) -> bool {
    match e {
        Error::Port(_) => true,
        Error::Runtime(text) => {
            text.contains("Address already in use") || text.contains("address already in use")
        }
        _ => false,
    }
}

/// True when nothing listens on `addr:port` (we can bind it).
pub(crate) fn port_is_free(addr: &str, port: u16) -> bool {
    let host = connect_host(addr);
    std::net::TcpListener::bind((host.as_str(), port)).is_ok()
}

/// The address clients use to reach a server listening on `listen`.
fn connect_host(listen: &str) -> String {
    match listen {
        "*" | "0.0.0.0" | "" => "127.0.0.1".into(),
        "::" => "::1".into(),
        other => other
            .split(',')
            .next()
            .unwrap_or("127.0.0.1")
            .trim()
            .to_string(),
    }
}

fn absolute(p: PathBuf) -> Result<PathBuf> {
    if p.is_absolute() {
        Ok(p)
    } else {
        std::env::current_dir()
            .map(|c| c.join(p))
            .map_err(|e| Error::io("reading the current directory", e))
    }
}

/// Check a ZFS dataset name given on the command line.
pub fn validate_dataset_name(ds: &str) -> Result<()> {
    let ok = !ds.is_empty()
        && ds.len() <= 200
        && !ds.starts_with('/')
        && !ds.ends_with('/')
        && ds.split('/').all(|part| {
            validate_name(part).is_ok()
                || part.contains('.')
                    && !part.contains("..")
                    && part
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                    && !part.starts_with(['-', '.'])
        });
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "invalid dataset {ds:?}: use POOL/PATH with letters, digits, '-', '_' and '.' (e.g. tank/betterpg)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_port_is_recognised_from_the_error() {
        let log = "prod failed to start: pg_ctl: could not start server\n--- last lines ---\nLOG:  could not bind IPv4 address \"127.0.0.1\": Address already in use";
        assert!(port_taken_error(&Error::Runtime(log.into())));
        assert!(port_taken_error(&Error::Port("port 5 is taken".into())));
        let other = "prod failed to start: FATAL:  configuration file contains errors";
        assert!(!port_taken_error(&Error::Runtime(other.into())));
        assert!(!port_taken_error(&Error::Timeout(
            "Address already in use".into()
        )));
    }

    #[test]
    fn dataset_names() {
        for ok in ["tank/betterpg", "tank", "t/a.b/c_d-e"] {
            validate_dataset_name(ok).unwrap();
        }
        for bad in [
            "", "/tank", "tank/", "t/../x", "t/a b", "t/-x", "t@s", "t/$(x)",
        ] {
            assert!(validate_dataset_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn connect_hosts() {
        assert_eq!(connect_host("127.0.0.1"), "127.0.0.1");
        assert_eq!(connect_host("*"), "127.0.0.1");
        assert_eq!(connect_host("10.0.0.1, 127.0.0.1"), "10.0.0.1");
    }
}
