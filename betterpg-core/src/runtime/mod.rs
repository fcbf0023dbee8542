//! Running servers: the trait the manager uses, and its implementations.
//!
//! The native runtime runs `postgres` as a process on this machine (the
//! embedded default). The docker runtime runs one container per server
//! through the Docker Engine API. Both implement the same trait.

mod docker;
mod native;

pub use docker::{
    DockerRuntime, DEFAULT_IMAGE, ICC_OPTION, LABEL_HOME, LABEL_MANAGED, LABEL_NAME, LABEL_PARENT,
    NETWORK,
};
pub use native::NativeRuntime;

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::{Result, RuntimeErrorKind};
use crate::osuser::OsUser;
use crate::pg::{ConnInfo, PgBin};

/// The chunks of a followed server log, as written: the last lines first,
/// then what the server appends. A native server's log never ends (drop
/// the stream to stop); a container's ends when the container stops.
pub type LogStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Vec<u8>>> + Send + 'static>>;

/// Default [`crate::home::Config::docker_memory`]: 2 GiB, room for PostgreSQL's default
/// `shared_buffers` (128 MB) many times over plus sorts and connections,
/// while one branch cannot take the host's memory. A branch of a source
/// with a larger `shared_buffers` needs a larger limit (or 0).
pub const DEFAULT_DOCKER_MEMORY: u64 = 2 << 30;
/// Default [`crate::home::Config::docker_pids`]: PostgreSQL needs one process per
/// connection plus about a dozen background processes; 1024 leaves room
/// for `max_connections` in the hundreds and stops a fork bomb.
pub const DEFAULT_DOCKER_PIDS: u64 = 1024;

/// Whether a server is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Running (it may still be starting up).
    Running,
    /// Not running.
    Stopped,
}

impl RunStatus {
    /// "running" or "stopped".
    pub fn as_str(&self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Stopped => "stopped",
        }
    }
}

/// Equality with the JSON names ("running" == `RunStatus::Running`).
impl PartialEq<&str> for RunStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<str> for RunStatus {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// Everything a runtime needs to run one database or branch.
#[derive(Debug, Clone)]
pub struct InstanceSpec {
    /// Database or branch name.
    pub name: String,
    /// The data directory (on the ZFS dataset).
    pub data_dir: PathBuf,
    /// PostgreSQL binaries to run.
    pub pg_bin: PgBin,
    /// Server log file (native runtime).
    pub log_file: PathBuf,
    /// Runtime name of the instance.
    pub runtime: String,
    /// Container image (container runtimes).
    pub image: Option<String>,
    /// The betterpg home (for labels that find what betterpg made).
    pub home: PathBuf,
    /// Parent name of a branch (for labels).
    pub parent: Option<String>,
    /// OS user the server runs as.
    pub user: OsUser,
    /// How to reach it once up (used to check readiness with a real query).
    pub conn: ConnInfo,
    /// How long to wait for the first answered query.
    pub start_timeout: Duration,
    /// Resource limits of a container (container runtimes; the native
    /// runtime ignores them).
    pub limits: ContainerLimits,
    /// Start privately: no TCP listener, the Unix socket in this directory
    /// (reachable only by root and the server's user), no logical
    /// replication workers; readiness is checked through the socket (see
    /// [`Runtime::private_conn`]). A branch's first start, so that nothing
    /// reaches it, and it reaches nothing, before it is cut off from its
    /// source ([`crate::pg::isolate`]).
    pub private_socket_dir: Option<PathBuf>,
}

/// Resource limits put on every container of a home (`bpg init
/// --docker-memory/--docker-pids`, stored in the home's config), so one
/// branch (whose superuser can run any program as the server's user)
/// cannot exhaust the host's memory or process table. 0 means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerLimits {
    /// Memory limit in bytes (Docker `--memory`); 0: none.
    pub memory: u64,
    /// Most processes and threads (Docker `--pids-limit`); 0: none.
    pub pids: u64,
}

impl Default for ContainerLimits {
    /// The defaults of a new home:
    /// [`DEFAULT_DOCKER_MEMORY`] and
    /// [`DEFAULT_DOCKER_PIDS`].
    fn default() -> Self {
        ContainerLimits {
            memory: DEFAULT_DOCKER_MEMORY,
            pids: DEFAULT_DOCKER_PIDS,
        }
    }
}

/// Starts, stops and inspects servers.
#[async_trait]
pub trait Runtime: Send + Sync + std::fmt::Debug {
    /// Stable runtime name stored in the catalog ("native", "docker").
    fn name(&self) -> &'static str;
    /// Image used when none is given (container runtimes); `None` for a
    /// runtime that runs no image.
    fn default_image(&self) -> Option<&'static str> {
        None
    }
    /// Make a new cluster in `spec.data_dir` (an empty directory on the new
    /// dataset) whose superuser `postgres` has `password`. The default runs
    /// the host's `initdb` (see [`crate::pg::cluster::initdb`]); a runtime may
    /// check its own prerequisites first, or make the cluster its own way
    /// with the same properties.
    async fn init_cluster(&self, spec: &InstanceSpec, password: &str) -> Result<()> {
        crate::pg::cluster::initdb(&spec.pg_bin, &spec.user, &spec.data_dir, password).await
    }
    /// Start the server and wait until a query answers. On failure the
    /// server is left stopped and the error carries its last log lines.
    /// With [`InstanceSpec::private_socket_dir`] set, start it privately.
    async fn start(&self, spec: &InstanceSpec) -> Result<()>;
    /// How betterpg reaches a server started privately: through the socket
    /// in [`InstanceSpec::private_socket_dir`] (`None` when not private).
    fn private_conn(&self, spec: &InstanceSpec) -> Option<ConnInfo> {
        let dir = spec.private_socket_dir.as_ref()?;
        Some(ConnInfo {
            host: dir.to_string_lossy().into_owned(),
            ..spec.conn.clone()
        })
    }
    /// Stop the server (fast shutdown); stopping a stopped server is fine.
    async fn stop(&self, spec: &InstanceSpec) -> Result<()>;
    /// Stop a server whose data is thrown away next (destroyed, reset,
    /// rolled back): immediate shutdown, without the shutdown checkpoint
    /// that writes every dirty buffer to files about to vanish. Were the
    /// data kept after all (a later step failed), the next start recovers
    /// it from WAL like after a crash: nothing committed is lost. The
    /// default is [`Runtime::stop`].
    async fn stop_discarding(&self, spec: &InstanceSpec) -> Result<()> {
        self.stop(spec).await
    }
    /// Whether the server is running.
    async fn status(&self, spec: &InstanceSpec) -> Result<RunStatus>;
    /// Whether each of `specs` is running, in their order: `status` of many
    /// servers at once, for a runtime that can answer for all of them in
    /// one pass (one query of the container engine). The default asks
    /// [`Runtime::status`] of each.
    async fn status_all(&self, specs: &[InstanceSpec]) -> Result<Vec<RunStatus>> {
        let mut out = Vec::with_capacity(specs.len());
        for spec in specs {
            out.push(self.status(spec).await?);
        }
        Ok(out)
    }
    /// The server log, or its last `tail` lines.
    async fn logs(&self, spec: &InstanceSpec, tail: Option<usize>) -> Result<String>;
    /// Forget everything the runtime holds for this instance (after stop).
    async fn remove(&self, spec: &InstanceSpec) -> Result<()>;
    /// Find (and unless `dry_run`, remove) what this runtime made for the
    /// home `home` that belongs to none of the names in `keep` (e.g.
    /// containers whose database is gone). Returns descriptions of what was
    /// found. Runtimes holding nothing outside the dataset keep the default.
    async fn sweep(
        &self,
        home: &std::path::Path,
        keep: &[String],
        dry_run: bool,
    ) -> Result<Vec<String>> {
        let _ = (home, keep, dry_run);
        Ok(Vec::new())
    }
}

/// The runtimes every manager starts with ("native", "docker"). The docker
/// runtime contacts the engine only when an entry uses it.
pub fn defaults() -> Vec<std::sync::Arc<dyn Runtime>> {
    vec![
        std::sync::Arc::new(NativeRuntime),
        std::sync::Arc::new(DockerRuntime::new()),
    ]
}

/// Names of the runtimes every manager has ("native", "docker").
pub fn available() -> Vec<&'static str> {
    defaults().iter().map(|r| r.name()).collect()
}

/// The kind of a failed start, from the last lines of the server's log:
/// PostgreSQL says it could not listen on its port only there ("could not
/// bind IPv4 address ...: Address already in use"). The one place that
/// reads it; callers decide on [`RuntimeErrorKind`].
pub(crate) fn start_failure_kind(log: &str) -> RuntimeErrorKind {
    let lower = log.to_ascii_lowercase();
    if lower.contains("address already in use") {
        RuntimeErrorKind::PortInUse
    } else if lacking_resource(log).is_some() {
        RuntimeErrorKind::Resources
    } else {
        RuntimeErrorKind::Other
    }
}

/// What the machine lacked for a server that failed to start, from the
/// last lines of its log (PostgreSQL's own words), or `None`.
pub(crate) fn lacking_resource(log: &str) -> Option<&'static str> {
    let l = log.to_ascii_lowercase();
    // Most specific first.
    const WORDS: &[(&str, &str)] = &[
        ("could not create semaphores", "semaphores"),
        ("could not map anonymous shared memory", "shared memory"),
        ("could not create shared memory segment", "shared memory"),
        ("could not resize shared memory segment", "shared memory"),
        ("insufficient file descriptors", "open files"),
        ("too many open files", "open files"),
        ("out of file descriptors", "open files"),
        ("could not fork", "processes"),
        ("resource temporarily unavailable", "processes"),
        ("out of memory", "memory"),
        ("cannot allocate memory", "memory"),
    ];
    WORDS
        .iter()
        .find(|(w, _)| l.contains(w))
        .map(|(_, what)| *what)
}

/// The advice for a server that could not start for want of `what`, with
/// the machine's available memory.
pub(crate) fn resource_advice(what: &str) -> String {
    let avail = crate::util::mem_available()
        .map(|b| format!(" ({} of memory available)", crate::util::human_bytes(b)))
        .unwrap_or_default();
    format!(
        "the machine has not enough {what} for another server{avail}: stop or destroy idle branches (`bpg stop NAME`), or lower their memory (`bpg config SOURCE --branch-shared-buffers`)"
    )
}

#[cfg(test)]
mod start_failure_tests {
    use super::*;

    #[test]
    fn a_taken_port_is_recognised_in_the_log() {
        let log = "prod failed to start: pg_ctl: could not start server\n--- last lines ---\nLOG:  could not bind IPv4 address \"127.0.0.1\": Address already in use";
        assert_eq!(start_failure_kind(log), RuntimeErrorKind::PortInUse);
        let other = "FATAL:  configuration file contains errors";
        assert_eq!(start_failure_kind(other), RuntimeErrorKind::Other);
    }

    #[test]
    fn a_machine_out_of_resources_is_recognised_in_the_log() {
        for (log, what) in [
            ("FATAL:  could not map anonymous shared memory: Cannot allocate memory\nHINT:  This error usually means ...", "shared memory"),
            ("FATAL:  could not create semaphores: No space left on device", "semaphores"),
            ("LOG:  could not fork autovacuum launcher process: Resource temporarily unavailable", "processes"),
            ("FATAL:  insufficient file descriptors available to start server process", "open files"),
            ("FATAL:  out of memory\nDETAIL:  Failed on request of size 8192.", "memory"),
        ] {
            assert_eq!(lacking_resource(log), Some(what), "{log}");
            assert_eq!(start_failure_kind(log), RuntimeErrorKind::Resources, "{log}");
        }
        assert_eq!(
            lacking_resource("FATAL:  configuration file contains errors"),
            None
        );
        let advice = resource_advice("memory");
        assert!(
            advice.contains("not enough memory") && advice.contains("branch-shared-buffers"),
            "{advice}"
        );
    }
}
