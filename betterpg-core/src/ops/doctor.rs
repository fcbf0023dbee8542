//! `doctor`: what this machine and a home would use, and what is missing.
//!
//! Works on a home that is not initialised (it then checks the machine
//! only), so it is a function of the home's path, not of an opened manager.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::home::Home;
use crate::osuser::OsUser;
use crate::pg::PgBin;
use crate::storage::{self, PoolFileSpace, Storage, ZfsCli, ZfsFlavor};
use crate::util::human_bytes;

/// The outcome of one check: what was found, or why it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check<T> {
    /// Found.
    Ok(T),
    /// Not usable; the error's message.
    Failed(String),
}

impl<T> Check<T> {
    /// What was found, if anything.
    pub fn ok(&self) -> Option<&T> {
        match self {
            Check::Ok(v) => Some(v),
            Check::Failed(_) => None,
        }
    }
    /// Why it failed, if it did.
    pub fn error(&self) -> Option<&str> {
        match self {
            Check::Ok(_) => None,
            Check::Failed(e) => Some(e),
        }
    }
}

/// The storage backend `open` would use, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageChoice {
    /// `"libzfs"` or `"cli"`.
    pub backend: String,
    /// The backend's own name (with its version where it has one).
    pub name: String,
    /// What the home asked for: `"auto"`, `"libzfs"` or `"cli"`.
    pub requested: String,
    /// Why this backend, in one sentence.
    pub reason: String,
}

/// The PostgreSQL binaries found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresFound {
    /// Their bin directory.
    pub bin: PathBuf,
    /// Major version.
    pub major: u32,
}

/// The OS user the servers would run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsUserFound {
    /// Login name.
    pub name: String,
    /// Numeric user id.
    pub uid: u32,
}

/// The pool file of a file-backed pool, and what its host can hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolFileCheck {
    /// The file.
    pub path: PathBuf,
    /// Its size, allocation and the host's free space.
    pub space: Check<PoolFileSpace>,
}

/// The datasets' ZFS properties: recorded at init, and live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetProperties {
    /// What `init` set (empty for homes made before it recorded them).
    pub recorded: BTreeMap<String, String>,
    /// What ZFS says now.
    pub live: BTreeMap<String, String>,
}

/// The container limits of the docker runtime (0: no limit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerLimits {
    /// The network the containers are on (no inter-container traffic).
    pub network: String,
    /// Memory limit per container, bytes.
    pub memory: u64,
    /// Most processes/threads per container.
    pub pids: u64,
}

/// What [`doctor`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoctorReport {
    /// The home checked.
    pub home: PathBuf,
    /// Whether it is initialised (else only the machine was checked).
    pub initialised: bool,
    /// Whether this is a test build that obeys `BETTERPG_FAULT`.
    pub fault_injection: bool,
    /// Whether this build has the libzfs backend.
    pub libzfs_compiled: bool,
    /// Which OpenZFS libraries this machine has for the libzfs backend,
    /// in one line (the soname, its version and the declarations that
    /// apply), or why none could be loaded; whether or not it is in use.
    pub libzfs_library: String,
    /// The storage backend.
    pub storage: Check<StorageChoice>,
    /// The `zfs` userland installed.
    pub zfs_flavor: ZfsFlavor,
    /// Whether `zpool list` works (a ZFS daemon or module is there).
    pub zpool_list_ok: bool,
    /// The PostgreSQL binaries.
    pub postgres: Check<PostgresFound>,
    /// The servers' OS user.
    pub os_user: Check<OsUserFound>,
    /// The pool file (homes on a file-backed pool).
    pub pool_file: Option<PoolFileCheck>,
    /// The datasets' properties (initialised homes whose dataset answers).
    pub dataset_properties: Option<DatasetProperties>,
    /// The docker runtime's limits (initialised homes).
    pub docker: Option<DockerLimits>,
    /// What works but needs attention.
    pub warnings: Vec<String>,
    /// What is missing or broken, one line each.
    pub problems: Vec<String>,
}

impl DoctorReport {
    /// True when nothing is missing or broken.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// The report as an error when it found problems: a
    /// [`Error::Config`] naming them all.
    pub fn into_result(self) -> Result<DoctorReport> {
        if self.ok() {
            Ok(self)
        } else {
            Err(Error::Config(format!(
                "doctor found problems: {}",
                self.problems.join("; ")
            )))
        }
    }
}

/// Check this machine and the home at `home`: storage backend and why,
/// ZFS flavour, PostgreSQL binaries, OS user and what it can reach, pool
/// file, dataset properties. Problems are in the report, never an `Err`;
/// `Err` only when the home's config exists but cannot be read.
pub async fn doctor(home: &Path) -> Result<DoctorReport> {
    let mut problems: Vec<String> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    let cfg = match Home::new(home).load_config() {
        Ok(c) => Some(c),
        Err(Error::NotInitialized { .. }) => None,
        Err(e) => return Err(e),
    };
    let requested = cfg.as_ref().and_then(|c| c.storage_backend.clone());
    let libzfs_library = tokio::task::spawn_blocking(storage::libzfs_libraries)
        .await
        .unwrap_or_else(|e| format!("library probe failed: {e}"));
    let storage = match storage::select(requested.as_deref()).await {
        Ok((s, sel)) => Check::Ok(StorageChoice {
            backend: sel.backend.to_string(),
            name: s.backend_name(),
            requested: sel.requested,
            reason: sel.reason,
        }),
        Err(e) => {
            problems.push(format!("storage: {e}"));
            Check::Failed(e.to_string())
        }
    };
    let zfs = ZfsCli::default();
    let zfs_flavor = zfs.flavor().await;
    let zpool_list_ok = std::process::Command::new("zpool")
        .arg("list")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !zpool_list_ok {
        problems
            .push("zfs: `zpool list` fails: no ZFS daemon/module (run scripts/setup.sh)".into());
    }
    let postgres = match PgBin::discover(cfg.as_ref().and_then(|c| c.pg_bin.as_deref()), None) {
        Ok(b) => Check::Ok(PostgresFound {
            bin: b.dir,
            major: b.major,
        }),
        Err(e) => {
            problems.push(format!("postgres: {e}"));
            Check::Failed(e.to_string())
        }
    };
    let resolved = OsUser::resolve(cfg.as_ref().and_then(|c| c.os_user.as_deref()));
    let os_user = match &resolved {
        Ok(u) => Check::Ok(OsUserFound {
            name: u.name.clone(),
            uid: u.uid,
        }),
        Err(e) => {
            problems.push(format!("os user: {e}"));
            Check::Failed(e.to_string())
        }
    };
    // The servers' user must reach the log directory and the datasets'
    // mountpoint through every ancestor (a directory closed after init
    // would fail every start with "Permission denied").
    if let (Some(c), Ok(u)) = (&cfg, &resolved) {
        let h = Home::new(home);
        let mut targets = vec![(h.logs_dir(), "the log directory")];
        if let Ok(Some(d)) = zfs.get(&c.dataset).await {
            if let Some(mp) = d.mountpoint {
                targets.push((mp, "the datasets' mountpoint"));
            }
        }
        for (path, what) in targets {
            if let Err(e) = crate::home::check_reachable(u, &path, true, what) {
                problems.push(format!("reach: {e}"));
            }
        }
    }
    // The datasets' ZFS properties: recorded at init, and what ZFS says now.
    let mut dataset_properties = None;
    if let Some(c) = &cfg {
        let mut keys: Vec<String> = c.zfs_properties.keys().cloned().collect();
        if keys.is_empty() {
            keys = storage::props::defaults(zfs_flavor)
                .into_iter()
                .map(|(k, _)| k)
                .collect();
        }
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        match zfs.get_native(&c.dataset, &keys).await {
            Ok(live) => {
                for (k, v) in &c.zfs_properties {
                    if live.get(k) != Some(v) {
                        warnings.push(format!(
                            "dataset {} has {k}={} but init set {k}={v}",
                            c.dataset,
                            live.get(k).map(String::as_str).unwrap_or("?")
                        ));
                    }
                }
                dataset_properties = Some(DatasetProperties {
                    recorded: c.zfs_properties.clone(),
                    live,
                });
            }
            Err(e) => problems.push(format!("dataset properties: {e}")),
        }
    }
    // A sparse pool file the host could not hold once the pool fills:
    // the pool would suspend before ZFS reports it full.
    let pool_file = cfg.as_ref().and_then(|c| c.pool_file.clone()).map(|f| {
        let space = match PoolFileSpace::of(&f) {
            Ok(sp) => {
                if sp.host_short() {
                    warnings.push(format!(
                        "pool file {} can still grow by {} but its file system has only {} free: free space on the host (or move the pool) before the pool fills, or it suspends",
                        f.display(),
                        human_bytes(sp.can_grow()),
                        human_bytes(sp.host_free)
                    ));
                }
                Check::Ok(sp)
            }
            Err(e) => {
                problems.push(format!("pool file: {e}"));
                Check::Failed(e.to_string())
            }
        };
        PoolFileCheck { path: f, space }
    });
    let docker = cfg.as_ref().map(|c| DockerLimits {
        network: crate::runtime::NETWORK.to_string(),
        memory: c.docker_memory,
        pids: c.docker_pids,
    });
    Ok(DoctorReport {
        home: home.to_path_buf(),
        initialised: cfg.is_some(),
        // Test builds only (cargo feature `fault-injection`); a shipped
        // build never reads BETTERPG_FAULT.
        fault_injection: crate::fault::ENABLED,
        libzfs_compiled: storage::LIBZFS_COMPILED,
        libzfs_library,
        storage,
        zfs_flavor,
        zpool_list_ok,
        postgres,
        os_user,
        pool_file,
        dataset_properties,
        docker,
        warnings,
        problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_with_problems_is_an_error_naming_them_all() {
        let base = DoctorReport {
            home: "/nowhere".into(),
            initialised: false,
            fault_injection: false,
            libzfs_compiled: false,
            libzfs_library: "none usable: test".into(),
            storage: Check::Failed("no zfs".into()),
            zfs_flavor: ZfsFlavor::Legacy,
            zpool_list_ok: false,
            postgres: Check::Ok(PostgresFound {
                bin: "/usr/bin".into(),
                major: 15,
            }),
            os_user: Check::Failed("no user".into()),
            pool_file: None,
            dataset_properties: None,
            docker: None,
            warnings: vec![],
            problems: vec![],
        };
        assert!(base.ok());
        assert!(base.clone().into_result().is_ok());
        let bad = DoctorReport {
            problems: vec!["storage: no zfs".into(), "os user: no user".into()],
            ..base
        };
        assert!(!bad.ok());
        let e = bad.into_result().unwrap_err();
        assert_eq!(e.code(), 6, "{e:?}");
        let text = e.to_string();
        assert!(text.contains("storage: no zfs; os user: no user"), "{text}");
        assert_eq!(Check::<u32>::Failed("x".into()).error(), Some("x"));
        assert_eq!(Check::Ok(3).ok(), Some(&3));
    }
}
