//! The context every operation runs in: the home (config, catalog, secrets,
//! logs), the storage, the runtimes and the servers' OS user, with the
//! small helpers the operations share (catalog reservations, ports, specs
//! of a server).
//!
//! Operations (`crate::ops`) are functions over a [`Context`];
//! [`crate::BranchManager`] owns one and hands it to them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::catalog::lock::DirLock;
use crate::catalog::{Catalog, Entry, Kind, State};
use crate::error::{Error, Result};
use crate::home::{Config, Home};
use crate::name::validate_name;
use crate::osuser::OsUser;
use crate::pg::cluster::Profile;
use crate::pg::upstream::{self, Replication};
use crate::pg::{ConnInfo, PgBin};
use crate::ports::{connect_host, free_port};
use crate::runtime::{InstanceSpec, Runtime};
use crate::storage::{Selection, Storage};

/// Home, config, storage, runtimes and OS user of one opened home.
#[derive(Debug)]
pub(crate) struct Context {
    pub(crate) home: Home,
    pub(crate) config: Config,
    pub(crate) storage: Arc<dyn Storage>,
    /// Which storage backend is in use, and why.
    pub(crate) storage_selection: Selection,
    /// Runtimes by name; an entry's `runtime` field picks one.
    pub(crate) runtimes: Vec<Arc<dyn Runtime>>,
    pub(crate) user: OsUser,
}

impl Context {
    /// Open an initialised home.
    pub(crate) async fn open(home: impl Into<PathBuf>) -> Result<Context> {
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
        Ok(Context {
            home,
            config,
            storage,
            storage_selection,
            runtimes: crate::runtime::defaults(),
            user,
        })
    }

    /// The OS user `e`'s server runs as: its own (a branch's), else the
    /// home's.
    pub(crate) fn user_of(&self, e: &Entry) -> OsUser {
        match e.os_uid {
            Some(uid) => OsUser::branch(uid),
            None => self.user.clone(),
        }
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

    /// Dataset of a new database `name`.
    pub(crate) fn dataset_for(&self, name: &str) -> String {
        format!("{}/{name}", self.config.dataset)
    }

    /// Dataset of a new branch `name` (in the branch space).
    pub(crate) fn branch_dataset_for(&self, name: &str) -> String {
        crate::space::branch_dataset_for(&self.config.dataset, name)
    }

    /// Take the catalog lock (waiting at most the configured timeout).
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
        entry.port = free_port(&self.config, &cat.used_ports())?;
        if entry.kind == Kind::Branch {
            // A server user of its own (crate::osuser), none of this home's.
            let used: std::collections::HashSet<u32> =
                cat.entries().filter_map(|e| e.os_uid).collect();
            entry.os_uid = OsUser::draw_branch_uid(&used);
        }
        entry.state = State::creating();
        cat.insert(entry.clone())?;
        cat.save()?;
        Ok(entry)
    }

    /// Give the reserved entry `name` another free port (its current one
    /// turned out to be taken) and record it; returns the new port.
    pub(crate) fn move_port(&self, name: &str) -> Result<u16> {
        let mut cat = self.lock()?;
        let port = free_port(&self.config, &cat.used_ports())?;
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

    /// Mark the entry `name` ready.
    pub(crate) fn mark_ready(&self, name: &str) -> Result<()> {
        let mut cat = self.lock()?;
        let e = cat
            .get_mut(name)
            .ok_or_else(|| Error::Internal(format!("catalog entry {name} vanished")))?;
        e.state = State::Ready;
        cat.save()
    }

    /// Look up an entry (without keeping the lock).
    pub(crate) fn entry(&self, name: &str) -> Result<Entry> {
        validate_name(name)?;
        self.lock()?
            .get(name)
            .cloned()
            .ok_or_else(|| Error::not_found(name))
    }

    /// Look up an entry that no process is working on (else why not).
    pub(crate) fn ready_entry(&self, name: &str) -> Result<Entry> {
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

    /// The replica lock of `e` ([`DirLock`] on its directory), taken at
    /// once or refused naming who holds it: exclusive for `follow
    /// --rebuild`, shared for what makes something of the replica's data
    /// (a branch, a reset of a branch of it, a named snapshot, destroy).
    /// `None` for what is not a replica (or a replica whose directory is
    /// gone). Held until dropped.
    pub(crate) fn replica_lock(&self, e: &Entry, exclusive: bool) -> Result<Option<DirLock>> {
        if e.kind != Kind::Replica {
            return Ok(None);
        }
        let name = &e.name;
        match DirLock::try_take(&self.home.replica_dir(name), exclusive)? {
            Ok(l) => Ok(l),
            Err(holders) if exclusive => Err(Error::InvalidState(format!(
                "the replica {name:?} is in use by {holders} (a rebuild, branch, snapshot or destroy of it): run the rebuild again when that is done; nothing was changed"
            ))),
            Err(holders) => Err(Error::InvalidState(format!(
                "the replica {name:?} is being rebuilt by {holders} (`bpg follow {name} --rebuild` replaces its data): run this again when the rebuild is done; nothing was changed"
            ))),
        }
    }

    /// Where `dataset` is mounted.
    pub(crate) async fn mountpoint(&self, dataset: &str) -> Result<PathBuf> {
        crate::storage::mountpoint(&*self.storage, dataset).await
    }

    /// How betterpg logs in to a replica: through the Unix socket in its
    /// own directory (reachable by root and the server's OS user only),
    /// which its `pg_hba.conf` trusts; its roles are the primary's, whose
    /// passwords betterpg does not hold.
    pub(crate) fn replica_conn(&self, e: &Entry) -> ConnInfo {
        ConnInfo {
            host: self
                .home
                .replica_dir(&e.name)
                .to_string_lossy()
                .into_owned(),
            port: e.port,
            user: "postgres".into(),
            password: String::new(),
            dbname: "postgres".into(),
        }
    }

    /// The `betterpg.conf` profile of `e` for a start with its own port.
    /// (A branch's memory: its settings `branch_shared_buffers` and
    /// `branch_max_connections`, which it took from its source.)
    pub(crate) fn profile_for(&self, e: &Entry) -> Profile {
        match (e.kind, &e.upstream) {
            (Kind::Branch, _) => Profile::Branch(branch_memory(&e.settings)),
            (Kind::Replica, Some(u)) => Profile::Replica {
                dir: self.home.replica_dir(&e.name),
                conninfo: upstream::conninfo(
                    &u.host,
                    u.port,
                    &u.user,
                    &self.home.upstream_passfile(&e.name),
                    &format!("bpg_{}", e.name),
                ),
                slot: u.slot.clone().unwrap_or_default(),
            },
            _ => Profile::Database,
        }
    }

    /// The replication connection to `e`'s primary (a replica's).
    pub(crate) fn replication_of(&self, e: &Entry) -> Result<Replication> {
        let u = e.upstream.as_ref().ok_or_else(|| {
            Error::InvalidState(format!(
                "{:?} is not a replica: it follows no primary",
                e.name
            ))
        })?;
        let dir = self.home.replica_dir(&e.name);
        Ok(Replication {
            psql: PgBin {
                dir: e.pg_bin.clone(),
                major: e.pg_major,
            }
            .tool("psql"),
            user: self.user.clone(),
            conninfo: upstream::conninfo(
                &u.host,
                u.port,
                &u.user,
                &self.home.upstream_passfile(&e.name),
                &format!("bpg_{}", e.name),
            ),
            address: upstream::address(&u.host, u.port),
            cwd: dir,
        })
    }

    /// How clients connect to `e` (its password file must be there). An
    /// attached cluster is reached as its URL said, with the password
    /// stored for it (none when the URL had none).
    pub(crate) fn conn_for(&self, e: &Entry) -> Result<ConnInfo> {
        if e.kind == Kind::Replica {
            return Ok(self.replica_conn(e));
        }
        if let (Kind::Attached, Some(a)) = (e.kind, &e.attached) {
            return Ok(ConnInfo {
                host: a.host.clone(),
                port: a.port,
                user: a.user.clone(),
                password: self.home.read_secret(&e.name)?,
                dbname: a.dbname.clone(),
            });
        }
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
            user: self.user_of(e),
            conn: if e.kind == Kind::Replica {
                self.replica_conn(e)
            } else {
                ConnInfo {
                    host: connect_host(&self.config.listen_address),
                    port: e.port,
                    user: "postgres".into(),
                    password: self.home.read_secret(&e.name).unwrap_or_default(),
                    dbname: "postgres".into(),
                }
            },
            start_timeout: Duration::from_secs(self.config.start_timeout_secs),
            limits: self.config.container_limits(),
            private_socket_dir: None,
        }
    }

    /// [`Self::spec_for`] of `e` on its mounted dataset.
    pub(crate) async fn spec(&self, e: &Entry) -> Result<InstanceSpec> {
        let mp = self.mountpoint(&e.dataset).await?;
        self.spec_for(e, e.data_dir(&mp))
    }

    /// [`Self::control_spec_for`] of `e` on its mounted dataset.
    pub(crate) async fn control_spec(&self, e: &Entry) -> Result<InstanceSpec> {
        let mp = self.mountpoint(&e.dataset).await?;
        Ok(self.control_spec_for(e, e.data_dir(&mp)))
    }
}

/// `p` made absolute against the current directory.
pub(crate) fn absolute(p: PathBuf) -> Result<PathBuf> {
    if p.is_absolute() {
        Ok(p)
    } else {
        std::env::current_dir()
            .map(|c| c.join(p))
            .map_err(|e| Error::io("reading the current directory", e))
    }
}

/// The memory of a branch's server with the settings `s` (the defaults of
/// [`BranchMemory`] for what they do not set).
pub(crate) fn branch_memory(s: &crate::catalog::Settings) -> crate::pg::cluster::BranchMemory {
    let d = crate::pg::cluster::BranchMemory::default();
    crate::pg::cluster::BranchMemory {
        shared_buffers: s.branch_shared_buffers.unwrap_or(d.shared_buffers),
        max_connections: s.branch_max_connections.unwrap_or(d.max_connections),
    }
}
