//! `init`: make a home (config, directories) over a pool and root dataset,
//! created when asked; and the home's default runtime.

use std::path::PathBuf;

use crate::context::{absolute, Context};
use crate::error::{Error, Result};
use crate::home::{check_reachable, Config, Home};
use crate::name::{validate_dataset_name, validate_name};
use crate::osuser::OsUser;
use crate::pg::PgBin;
use crate::space::{ensure_branches_dataset, BRANCHES_DATASET};
use crate::storage::Storage;
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

/// Options of [`crate::BranchManager::init`].
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
    /// Percent of the pool kept for databases (see the branch space in
    /// `docs/architecture.md`);
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

/// Initialise a home: record where datasets live (creating a file-backed
/// pool and/or the root dataset when asked) and the defaults, and the
/// storage backend choice `storage_backend`: `auto` (`None`), `libzfs` or
/// `cli` (see [`crate::storage::select`]).
pub(crate) async fn init(
    home: PathBuf,
    opts: InitOptions,
    storage_backend: Option<&str>,
) -> Result<Context> {
    let home = Home::new(absolute(home)?);
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
    cfg.check_branch_space()?;
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
    let zfs = &*storage;
    // The storage's own checks, then reachability, all before anything
    // is made. ZFS properties are checked against this ZFS's flavour.
    let zfs_props = crate::storage::props::resolve(&opts.zfs_properties, zfs.flavor().await)?;
    let mut planned_mountpoint = None;
    match &opts.storage {
        InitStorage::Dataset(ds) => {
            validate_dataset_name(ds)?;
            check_pool_exists(zfs, ds).await?;
            planned_mountpoint = planned_mountpoint_of(zfs, ds).await?;
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
    check_reachable(&user, home.root(), false, "the betterpg home")?;
    if let Some(mp) = &planned_mountpoint {
        check_reachable(&user, mp, true, "the datasets' mountpoint")?;
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
    let result = init_dataset(zfs, &home, &dataset, &zfs_props, &opts.zfs_properties).await;
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
    Ok(Context {
        home,
        config: cfg,
        storage,
        storage_selection,
        runtimes: crate::runtime::defaults(),
        user,
    })
}

/// Where `dataset` is (or, once created under its parent, will be)
/// mounted; `None` when unknown (missing parent, legacy or no mountpoint).
async fn planned_mountpoint_of(zfs: &dyn Storage, dataset: &str) -> Result<Option<PathBuf>> {
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
async fn check_pool_exists(zfs: &dyn Storage, dataset: &str) -> Result<()> {
    let pool = dataset.split('/').next().unwrap_or(dataset);
    if zfs.get(pool).await?.is_none() {
        return Err(Error::NotFound {
            what: "ZFS pool",
            name: pool.to_string(),
            hint:
                ": create it first (`zpool create`) or use `bpg init --pool-file FILE --size SIZE`"
                    .into(),
        });
    }
    Ok(())
}

/// Create (or adopt, when it is this home's) the root dataset with the
/// ZFS properties `props` (see [`crate::storage::props`]); `overrides`
/// are what the caller asked for, the rest are defaults.
async fn init_dataset(
    zfs: &dyn Storage,
    home: &Home,
    dataset: &str,
    props: &[(String, String)],
    overrides: &[(String, String)],
) -> Result<()> {
    let pool = dataset.split('/').next().unwrap_or(dataset);
    check_pool_exists(zfs, dataset).await?;
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
    let branches = format!("{dataset}/{}", BRANCHES_DATASET);
    ensure_branches_dataset(zfs, &branches, home.root()).await?;
    Ok(())
}

/// runtime; recorded in the home's config. `None` resets to native.
pub(crate) fn set_default_runtime(
    ctx: &mut Context,
    runtime: Option<String>,
    image: Option<String>,
) -> Result<()> {
    if let Some(r) = &runtime {
        ctx.runtime_and_image(r, image.clone())?;
    } else if image.is_some() {
        return Err(Error::Config(
            "--image needs a container runtime (--runtime docker)".into(),
        ));
    }
    let mut cfg = ctx.config.clone();
    cfg.default_runtime = runtime;
    cfg.default_image = image;
    ctx.home.save_config(&cfg)?;
    ctx.config = cfg;
    Ok(())
}
