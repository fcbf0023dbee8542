//! What exists and how it relates: databases, branches, their ports.
//!
//! The catalog is a JSON file changed only under an exclusive advisory lock
//! (so concurrent `bpg` processes serialise their changes) and replaced by an
//! atomic rename (so a killed process leaves the old or the new file, never a
//! torn one). Long operations do not hold the lock: they first record an
//! entry in state `creating` (which reserves the name and port), work, and
//! then mark it `ready`. An entry left `creating` by a process that died is
//! visible as incomplete. The same facts are also written as ZFS user
//! properties on each dataset, so the pool itself records what betterpg made.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::home::Home;
use crate::util::write_atomic;

pub mod lock;
pub mod settings;
pub mod snapshot;

pub use settings::{Credentials, Settings};
pub use snapshot::{split_snapshot_ref, KeptBackup, SnapshotRecord};

/// Newest catalog format this build reads and writes.
pub const CATALOG_VERSION: u32 = 1;

/// Directory inside each dataset that holds the data directory. A
/// subdirectory (not the mountpoint itself) so that an unmounted dataset can
/// never be mistaken for an empty data directory.
pub const PGDATA_SUBDIR: &str = "pgdata";

/// Whether an entry is a database, a branch, an attached cluster or a
/// replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A cluster created by `create` (or adopted).
    Database,
    /// A cluster started on a clone of another database or branch.
    Branch,
    /// A running cluster betterpg did not create, registered by `attach`:
    /// betterpg branches it but never starts, stops, reconfigures or
    /// destroys it.
    Attached,
    /// A streaming standby of a remote primary (`follow`): read-only,
    /// branched like a database without touching the primary.
    Replica,
}

impl Kind {
    /// "database", "branch", "attached" or "replica".
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Database => "database",
            Kind::Branch => "branch",
            Kind::Attached => "attached",
            Kind::Replica => "replica",
        }
    }
}

/// The remote primary a replica follows (never its password: that is in
/// the replica's passfile, see [`crate::home::Home::upstream_passfile`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upstream {
    /// Host name or address of the primary.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The role with `REPLICATION` that the replica logs in as.
    pub user: String,
    /// The physical replication slot on the primary, when one is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    /// True when `follow` created the slot (then `destroy` drops it).
    #[serde(default)]
    pub slot_created: bool,
    /// True while `follow` is creating the slot (recorded before it asks
    /// the primary): a `follow` killed then may or may not have created
    /// it, and `gc` says so rather than drop a slot that may not be ours.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub slot_creating: bool,
    /// The primary's system identifier when the replica was made: another
    /// value there later means another cluster (`diverged`).
    pub system_id: String,
}

/// How a branch's snapshot is taken: the one name of this choice on every
/// surface (`BranchOptions::mode`, `bpg branch --mode`, C's
/// `BETTERPG_MODE_*`, Python's `mode=`), and how a branch was made
/// (`Info::mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Backup mode around the snapshot (the default): every committed
    /// transaction, recovered as a base backup.
    #[default]
    ApplicationConsistent,
    /// An atomic snapshot only (after a CHECKPOINT when the source runs);
    /// crash recovery on start. A stopped source is always snapshotted this
    /// way: it was shut down cleanly, so no recovery is needed.
    CrashConsistent,
}

impl Mode {
    /// Every mode, the default first.
    pub const ALL: [Mode; 2] = [Mode::ApplicationConsistent, Mode::CrashConsistent];

    /// Stable string, as in JSON output and ZFS properties.
    pub fn as_str(&self) -> &'static str {
        match self {
            Mode::ApplicationConsistent => "application-consistent",
            Mode::CrashConsistent => "crash-consistent",
        }
    }
}

/// Where an entry is in its life, as `status` reports it (JSON: the
/// lowercase name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryState {
    /// Complete and usable.
    Ready,
    /// Being made by a process that still runs.
    Creating,
    /// Being destroyed by a process that still runs.
    Destroying,
    /// Left half-made or half-destroyed by a process that is gone (`bpg
    /// destroy` or `gc` removes it).
    Incomplete,
}

impl EntryState {
    /// "ready", "creating", "destroying" or "incomplete".
    pub fn as_str(&self) -> &'static str {
        match self {
            EntryState::Ready => "ready",
            EntryState::Creating => "creating",
            EntryState::Destroying => "destroying",
            EntryState::Incomplete => "incomplete",
        }
    }
}

impl std::fmt::Display for EntryState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// Equality with the JSON names ("database" == `Kind::Database` ...), so
/// an [`crate::Info`] field compares with the string `status --json`
/// prints.
macro_rules! eq_str {
    ($t:ty) => {
        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
        impl PartialEq<str> for $t {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }
    };
}

eq_str!(Kind);
eq_str!(Mode);
eq_str!(EntryState);

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for Mode {
    type Err = Error;

    /// The mode named by its stable string ("application-consistent",
    /// "crash-consistent"); anything else is a [`Error::Config`] naming
    /// both.
    fn from_str(s: &str) -> Result<Mode> {
        Mode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                Error::Config(format!(
                    "unknown mode {s:?}: use application-consistent or crash-consistent"
                ))
            })
    }
}

/// Life-cycle state of an entry.
///
/// A busy state names the process doing the work by its pid AND its start
/// time (`/proc/PID/stat` field 22): a pid alone can be reused by an
/// unrelated process after the worker died, which would make a dead
/// operation look alive forever. Catalogs written before the start time was
/// recorded still load (`pid_start` is then `None` and the pid alone counts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "state")]
pub enum State {
    /// Being made by process `pid`; not usable yet.
    Creating {
        /// The process doing the work.
        pid: u32,
        /// Its start time in clock ticks since boot (`None` in old catalogs).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pid_start: Option<u64>,
    },
    /// Complete and usable.
    Ready,
    /// Being destroyed by process `pid`.
    Destroying {
        /// The process doing the work.
        pid: u32,
        /// Its start time in clock ticks since boot (`None` in old catalogs).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pid_start: Option<u64>,
    },
}

impl State {
    /// `Creating` by this process.
    pub fn creating() -> State {
        let (pid, pid_start) = this_process();
        State::Creating { pid, pid_start }
    }

    /// `Destroying` by this process.
    pub fn destroying() -> State {
        let (pid, pid_start) = this_process();
        State::Destroying { pid, pid_start }
    }

    /// The process working on the entry (`None` when ready).
    pub fn worker(&self) -> Option<u32> {
        match self {
            State::Creating { pid, .. } | State::Destroying { pid, .. } => Some(*pid),
            State::Ready => None,
        }
    }

    /// True when the entry is ready, or the process that is working on it
    /// still runs (same pid and same start time).
    pub fn is_live(&self) -> bool {
        match self {
            State::Ready => true,
            State::Creating { pid, pid_start } | State::Destroying { pid, pid_start } => {
                process_alive(*pid, *pid_start)
            }
        }
    }

    /// True when a process other than this one is working on the entry.
    pub fn busy_elsewhere(&self) -> bool {
        self.worker().is_some_and(|p| p != std::process::id()) && self.is_live()
    }

    /// Where the entry is in its life, as `status` reports it: ready,
    /// creating, destroying, or incomplete when the process that was
    /// working on it is gone.
    pub fn summary(&self) -> EntryState {
        match self {
            State::Ready => EntryState::Ready,
            _ if !self.is_live() => EntryState::Incomplete,
            State::Creating { .. } => EntryState::Creating,
            State::Destroying { .. } => EntryState::Destroying,
        }
    }

    /// "ready", "creating", "destroying", or "incomplete" when the process
    /// that was working on it is gone (see [`State::summary`]).
    pub fn label(&self) -> &'static str {
        self.summary().as_str()
    }
}

/// This process's pid and start time.
fn this_process() -> (u32, Option<u64>) {
    let pid = std::process::id();
    (pid, process_start_time(pid))
}

/// Start time of process `pid` in clock ticks since boot (field 22 of
/// `/proc/PID/stat`), or `None` when there is no such process (or no /proc).
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

/// Field 22 (starttime) of a `/proc/PID/stat` line. The command name
/// (field 2) is in parentheses and may itself hold spaces and ')', so
/// fields are counted from the last ')'.
fn parse_start_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // rest starts at field 3 (state): starttime is 19 fields later.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// True when process `pid` exists and, if `start` is known, is the same
/// process (same start time): a reused pid is a different process.
pub fn process_alive(pid: u32, start: Option<u64>) -> bool {
    let exists = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok();
    match start {
        Some(s) if exists => match process_start_time(pid) {
            Some(now) => now == s,
            // Gone since, or a system without /proc (then the pid counts).
            None => !std::path::Path::new("/proc/self/stat").exists(),
        },
        _ => exists,
    }
}

/// One database or branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Unique name (databases and branches share one namespace).
    pub name: String,
    /// Database or branch.
    pub kind: Kind,
    /// The database or branch this branch was made from.
    pub parent: Option<String>,
    /// The ZFS dataset holding the cluster.
    pub dataset: String,
    /// For a branch, the snapshot its dataset was cloned from.
    pub snapshot: Option<String>,
    /// TCP port of the server.
    pub port: u16,
    /// Runtime that runs the server ("native").
    pub runtime: String,
    /// Container image when the runtime runs containers.
    #[serde(default)]
    pub image: Option<String>,
    /// How a branch was made; `None` for a database.
    pub mode: Option<Mode>,
    /// PostgreSQL bin directory the server runs with.
    pub pg_bin: PathBuf,
    /// PostgreSQL major version of the cluster.
    pub pg_major: u32,
    /// Unix time of creation.
    pub created_at: u64,
    /// For a replica, the primary it follows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<Upstream>,
    /// Life-cycle state.
    #[serde(flatten)]
    pub state: State,
    /// Policies set with `bpg config` (omitted from the record when none).
    #[serde(default, skip_serializing_if = "Settings::is_default")]
    pub settings: Settings,
    /// Where the data directory is below the dataset's mountpoint, when
    /// not [`PGDATA_SUBDIR`]: an attached cluster's own layout (empty: the
    /// mountpoint itself), which its branches (clones) keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_subdir: Option<PathBuf>,
    /// For an attached cluster: how betterpg reaches it (never the
    /// password, which is in the home's secrets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attached: Option<AttachedSource>,
    /// Protection, expiry and idleness (omitted from the catalog when
    /// nothing is set).
    #[serde(default, skip_serializing_if = "Lifecycle::is_unset")]
    pub lifecycle: Lifecycle,
    /// The OS user id (and group id) the entry's server runs as when it is
    /// not the home's `os_user`: every branch gets one of its own, so that
    /// a superuser of a branch, who can act as its server's OS user, can
    /// reach neither its source's files nor another branch's (see
    /// [`crate::osuser::BRANCH_UIDS`]). `None`: the home's user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_uid: Option<u32>,
    /// A branch made with a rewind point (`bpg branch --rewindable`): a
    /// snapshot of its datasets as they were when it was made, isolated
    /// and masked, which `bpg rewind` rolls it back to (see
    /// [`REWIND_SNAPSHOT_PREFIX`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rewindable: bool,
}

/// The ZFS snapshot of a rewindable branch's rewind point is
/// `DATASET@bpgrewind-NAME` (on each of its datasets), with the local
/// property `betterpg:rewind` = NAME.
pub const REWIND_SNAPSHOT_PREFIX: &str = "bpgrewind-";

/// The name of the snapshot (after the `@`) of branch `name`'s rewind point.
pub fn rewind_snapshot_name(name: &str) -> String {
    format!("{REWIND_SNAPSHOT_PREFIX}{name}")
}

/// How betterpg reaches an attached cluster (the URL given to `attach`,
/// without its password).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachedSource {
    /// Host name, address, or Unix socket directory.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Role betterpg logs in as.
    pub user: String,
    /// Database it connects to.
    pub dbname: String,
    /// The data directory as the server reported it.
    pub data_directory: PathBuf,
}

/// What decides when an entry may go away or stop: protection, an expiry
/// time, and when its server was last seen with clients (see
/// `docs/lifecycle.md`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lifecycle {
    /// Protected (`bpg protect`): destroy, reset and expiry are refused,
    /// even forced, and `gc` never removes what the entry owns.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub protected: bool,
    /// Unix time after which the daemon destroys the entry (with its
    /// branches); `None`: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// Unix time the daemon last saw a client connected to the server
    /// (for idle stop); `None`: not seen yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_at: Option<u64>,
    /// The process the entry lives for (`bpg branch --owner-pid PID`, the
    /// pytest plugin's own process): once it is gone, `bpg gc` destroys
    /// the entry (unless protected); `None`: no owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
}

/// A process, told apart from a later one with the same pid by its start
/// time (see [`process_alive`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// Its process id.
    pub pid: u32,
    /// Its start time in clock ticks since boot (`None` without /proc).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_start: Option<u64>,
    /// The pid namespace the pid belongs to (the inode of
    /// `/proc/self/ns/pid` of the process that recorded it): a pid means
    /// nothing in another namespace (a container's test run, `bpg gc` on
    /// the host), so from there the owner counts as alive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_ns: Option<u64>,
}

/// The inode of this process's pid namespace (`None` without /proc).
fn pid_namespace() -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self/ns/pid").ok().map(|m| m.ino())
}

impl Owner {
    /// The running process `pid`; an error naming it when there is none.
    pub fn of(pid: u32) -> Result<Owner> {
        let exists = pid > 0
            && pid <= i32::MAX as u32
            && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None)
                .map_or_else(|e| e == nix::errno::Errno::EPERM, |_| true);
        if !exists {
            return Err(Error::Config(format!(
                "--owner-pid {pid}: no such process: give the pid of a running process the branch lives for"
            )));
        }
        Ok(Owner {
            pid,
            pid_start: process_start_time(pid),
            pid_ns: pid_namespace(),
        })
    }

    /// True while the process may still run: always when it was recorded
    /// in another pid namespace than this process's (its pid cannot be
    /// checked from here, and a wrong guess would destroy a live run's
    /// branches), else when a process with its pid and start time exists.
    pub fn alive(&self) -> bool {
        self.alive_in(pid_namespace())
    }

    /// [`Self::alive`] as seen from the pid namespace `here`.
    fn alive_in(&self, here: Option<u64>) -> bool {
        if self.pid_ns.is_some() && self.pid_ns != here {
            return true;
        }
        process_alive(self.pid, self.pid_start)
    }
}

impl Lifecycle {
    /// True when nothing is set (the catalog then omits it).
    pub fn is_unset(&self) -> bool {
        *self == Lifecycle::default()
    }
}

impl Entry {
    /// A ready entry with placeholder values (dataset `t/b/NAME`, native,
    /// PostgreSQL 15): for the unit tests and benchmarks that need a
    /// catalog without servers; real entries come from the operations.
    pub(crate) fn sample(name: &str, kind: Kind, port: u16) -> Entry {
        Entry {
            name: name.into(),
            kind,
            parent: None,
            dataset: format!("t/b/{name}"),
            snapshot: None,
            port,
            runtime: "native".into(),
            image: None,
            mode: None,
            pg_bin: "/usr/bin".into(),
            pg_major: 15,
            created_at: 0,
            upstream: None,
            state: State::Ready,
            settings: Default::default(),
            data_subdir: None,
            attached: None,
            lifecycle: Default::default(),
            os_uid: None,
            rewindable: false,
        }
    }

    /// True when the entry is complete and usable.
    pub fn is_ready(&self) -> bool {
        self.state == State::Ready
    }

    /// The data directory of this entry's cluster when its dataset is
    /// mounted at `mountpoint`.
    pub fn data_dir(&self, mountpoint: &std::path::Path) -> PathBuf {
        match &self.data_subdir {
            Some(sub) => mountpoint.join(sub),
            None => mountpoint.join(PGDATA_SUBDIR),
        }
    }

    /// Refuse `verb` (start, stop, destroy ...) on an attached cluster:
    /// betterpg never changes a cluster it did not create.
    pub fn refuse_if_attached(&self, verb: &str) -> Result<()> {
        if self.kind != Kind::Attached {
            return Ok(());
        }
        let name = &self.name;
        Err(Error::Unsupported(format!(
            "{name:?} is an attached cluster: betterpg branches it but never starts, stops, reconfigures or destroys a cluster it did not create, so it does not {verb} it. Manage it the way it is run (pg_ctl, systemd, its container); `bpg detach {name}` makes betterpg forget it"
        )))
    }

    /// The data directory's path below the mountpoint (`pgdata` unless
    /// the cluster was attached with another layout).
    pub fn data_subdir(&self) -> PathBuf {
        self.data_subdir
            .clone()
            .unwrap_or_else(|| PathBuf::from(PGDATA_SUBDIR))
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct CatalogFile {
    version: u32,
    entries: BTreeMap<String, Entry>,
    /// Named snapshots, ordered by source, then time (omitted when none,
    /// so catalogs without any read and write as before).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    snapshots: Vec<SnapshotRecord>,
}

/// The catalog, locked for the life of this value.
///
/// Dropping it releases the lock without saving; call [`Catalog::save`] to
/// persist changes.
#[derive(Debug)]
pub struct Catalog {
    path: PathBuf,
    _lock: lock::LockFile,
    entries: BTreeMap<String, Entry>,
    snapshots: Vec<SnapshotRecord>,
}

impl Catalog {
    /// Take the exclusive lock (waiting for other processes at most
    /// [`lock::timeout`] of the default, see [`Catalog::lock_within`]) and
    /// read. The operations use the home's configured timeout instead (the
    /// benchmarks and tests use this).
    pub fn lock(home: &Home) -> Result<Catalog> {
        Self::lock_within(home, lock::timeout(crate::home::DEFAULT_LOCK_TIMEOUT_SECS)?)
    }

    /// Take the exclusive lock, waiting for other processes at most
    /// `timeout` (then a [`Error::Timeout`] naming the lock file and its
    /// holder, having changed nothing), and read.
    pub fn lock_within(home: &Home, timeout: std::time::Duration) -> Result<Catalog> {
        let lock = lock::LockFile::acquire(&home.lock_path(), timeout)?;
        let path = home.catalog_path();
        let (entries, snapshots) = match fs::read_to_string(&path) {
            Ok(text) => parse(&text, &path)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (BTreeMap::new(), Vec::new()),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        Ok(Catalog {
            path,
            _lock: lock,
            entries,
            snapshots,
        })
    }

    /// Persist atomically (the lock stays held).
    pub fn save(&self) -> Result<()> {
        let file = CatalogFile {
            version: CATALOG_VERSION,
            entries: self.entries.clone(),
            snapshots: self.snapshots.clone(),
        };
        let text =
            serde_json::to_string_pretty(&file).map_err(|e| Error::Internal(e.to_string()))?;
        write_atomic(&self.path, text.as_bytes(), 0o644)
    }

    /// An entry by name.
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name)
    }

    /// A mutable entry by name.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Entry> {
        self.entries.get_mut(name)
    }

    /// Insert a new entry; refuses a taken name.
    pub fn insert(&mut self, entry: Entry) -> Result<()> {
        if let Some(existing) = self.entries.get(&entry.name) {
            return Err(Error::AlreadyExists {
                what: existing.kind.as_str(),
                name: entry.name,
            });
        }
        self.entries.insert(entry.name.clone(), entry);
        Ok(())
    }

    /// Remove an entry, returning it.
    pub fn remove(&mut self, name: &str) -> Option<Entry> {
        self.entries.remove(name)
    }

    /// All entries, ordered by name.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// Direct children (branches) of `name`.
    pub fn children(&self, name: &str) -> Vec<&Entry> {
        self.entries
            .values()
            .filter(|e| e.parent.as_deref() == Some(name))
            .collect()
    }

    /// Every descendant of `name`, deepest first (the order to destroy them).
    pub fn descendants_deepest_first(&self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        for c in self.children(name) {
            out.extend(self.descendants_deepest_first(&c.name));
            out.push(c.name.clone());
        }
        out
    }

    /// Every named snapshot, by source, oldest first.
    pub fn snapshots(&self) -> impl Iterator<Item = &SnapshotRecord> {
        self.snapshots.iter()
    }

    /// The named snapshots of `source`, oldest first.
    pub fn snapshots_of(&self, source: &str) -> Vec<&SnapshotRecord> {
        self.snapshots
            .iter()
            .filter(|s| s.source == source)
            .collect()
    }

    /// The named snapshot `source@name`.
    pub fn snapshot(&self, source: &str, name: &str) -> Option<&SnapshotRecord> {
        self.snapshots
            .iter()
            .find(|s| s.source == source && s.name == name)
    }

    /// The named snapshot `source@name`, to change.
    pub fn snapshot_mut(&mut self, source: &str, name: &str) -> Option<&mut SnapshotRecord> {
        self.snapshots
            .iter_mut()
            .find(|s| s.source == source && s.name == name)
    }

    /// Record a new named snapshot; refuses a name its source already has.
    pub fn insert_snapshot(&mut self, rec: SnapshotRecord) -> Result<()> {
        if self.snapshot(&rec.source, &rec.name).is_some() {
            return Err(Error::AlreadyExists {
                what: "snapshot",
                name: rec.full_name(),
            });
        }
        self.snapshots.push(rec);
        self.snapshots.sort_by(|a, b| {
            (&a.source, a.created_at, &a.name).cmp(&(&b.source, b.created_at, &b.name))
        });
        Ok(())
    }

    /// Forget the named snapshot `source@name`, returning it.
    pub fn remove_snapshot(&mut self, source: &str, name: &str) -> Option<SnapshotRecord> {
        let i = self
            .snapshots
            .iter()
            .position(|s| s.source == source && s.name == name)?;
        Some(self.snapshots.remove(i))
    }

    /// The named snapshot whose ZFS snapshot (of the data directory's
    /// dataset) is `zfs_snapshot`: the entry cloned from it must not destroy
    /// it with itself.
    pub fn named_by_zfs(&self, zfs_snapshot: &str) -> Option<&SnapshotRecord> {
        self.snapshots
            .iter()
            .find(|s| s.zfs_snapshot == zfs_snapshot)
    }

    /// The entries cloned from the named snapshot `rec` (its dependents).
    pub fn dependents_of(&self, rec: &SnapshotRecord) -> Vec<&Entry> {
        self.entries
            .values()
            .filter(|e| rec.is_origin_of(e))
            .collect()
    }

    /// Ports held by any entry.
    pub fn used_ports(&self) -> Vec<u16> {
        self.entries.values().map(|e| e.port).collect()
    }
}

type Parsed = (BTreeMap<String, Entry>, Vec<SnapshotRecord>);

fn parse(text: &str, path: &std::path::Path) -> Result<Parsed> {
    // Read the version first so a newer format is refused with a clear
    // message instead of a confusing parse error (and never overwritten).
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        Error::Catalog(format!(
            "{} is corrupt ({e}); betterpg will not overwrite it: restore it from a backup or move it away (datasets carry betterpg:* properties to rebuild from)",
            path.display()
        ))
    })?;
    let version = v.get("version").and_then(|x| x.as_u64()).unwrap_or(0);
    if version > CATALOG_VERSION as u64 {
        return Err(Error::Catalog(format!(
            "{} has format version {version}, newer than this build's {CATALOG_VERSION}: upgrade bpg (the file is left untouched)",
            path.display()
        )));
    }
    let file: CatalogFile = serde_json::from_value(v).map_err(|e| {
        Error::Catalog(format!(
            "{} is not a valid catalog ({e}); betterpg will not overwrite it",
            path.display()
        ))
    })?;
    Ok((file.entries, file.snapshots))
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_owner_of_another_pid_namespace_counts_as_alive() {
        let me = Owner::of(std::process::id()).unwrap();
        assert!(me.alive());
        let gone = Owner {
            pid: me.pid,
            pid_start: me.pid_start.map(|s| s + 1),
            pid_ns: me.pid_ns,
        };
        assert!(!gone.alive(), "another start time: another process");
        // Recorded in another namespace: never judged from here.
        let elsewhere = Owner {
            pid_ns: Some(me.pid_ns.unwrap_or(0) + 1),
            ..gone
        };
        assert!(elsewhere.alive());
        // Recorded before namespaces were: judged by pid and start time.
        let old = Owner {
            pid_ns: None,
            ..gone
        };
        assert!(!old.alive());
        assert!(gone.alive_in(Some(me.pid_ns.unwrap_or(0) + 1)));
        assert!(Owner::of(0).is_err());
    }

    use super::*;

    #[test]
    fn mode_names_parse_display_and_serialise_alike() {
        assert_eq!(Mode::default(), Mode::ApplicationConsistent);
        for m in Mode::ALL {
            assert_eq!(m.as_str().parse::<Mode>().unwrap(), m);
            assert_eq!(m.to_string(), m.as_str());
            assert_eq!(
                serde_json::to_string(&m).unwrap(),
                format!("\"{}\"", m.as_str())
            );
        }
        for bad in ["", "fast", "Crash-Consistent", "crash_consistent"] {
            let e = bad.parse::<Mode>().unwrap_err();
            assert!(matches!(e, Error::Config(_)), "{bad}: {e}");
            assert!(e.to_string().contains("crash-consistent"), "{e}");
        }
    }

    fn entry(name: &str, parent: Option<&str>, port: u16) -> Entry {
        let kind = if parent.is_some() {
            Kind::Branch
        } else {
            Kind::Database
        };
        Entry {
            parent: parent.map(String::from),
            ..Entry::sample(name, kind, port)
        }
    }

    #[test]
    fn round_trips_and_orders_descendants() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        {
            let mut c = Catalog::lock(&home).unwrap();
            c.insert(entry("prod", None, 1)).unwrap();
            c.insert(entry("dev", Some("prod"), 2)).unwrap();
            c.insert(entry("dev2", Some("dev"), 3)).unwrap();
            assert_eq!(c.insert(entry("dev", None, 4)).unwrap_err().code(), 2);
            c.save().unwrap();
        }
        let c = Catalog::lock(&home).unwrap();
        assert_eq!(c.entries().count(), 3);
        assert_eq!(c.descendants_deepest_first("prod"), vec!["dev2", "dev"]);
        assert_eq!(c.used_ports(), vec![2, 3, 1]);
    }

    #[test]
    fn parses_the_start_time_of_proc_stat() {
        let line =
            "4242 (a b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_start_time(line), Some(987654));
        assert_eq!(parse_start_time("4242 (x) S 1"), None);
        assert_eq!(parse_start_time("garbage"), None);
        let me = std::process::id();
        let start = process_start_time(me).expect("own start time");
        assert!(process_alive(me, Some(start)));
        assert!(process_alive(me, None), "old catalogs: the pid alone");
        assert!(!process_alive(me, Some(start + 1)), "a reused pid");
        assert!(State::creating().is_live());
        assert!(!State::creating().busy_elsewhere());
    }

    #[test]
    fn loads_states_written_without_a_start_time() {
        let old = r#"{"name":"a","kind":"database","parent":null,"dataset":"t/a","snapshot":null,"port":1,"runtime":"native","mode":null,"pg_bin":"/b","pg_major":15,"created_at":0,"state":"creating","pid":7}"#;
        let e: Entry = serde_json::from_str(old).unwrap();
        assert_eq!(
            e.state,
            State::Creating {
                pid: 7,
                pid_start: None
            }
        );
        let new = serde_json::to_value(Entry {
            state: State::Destroying {
                pid: 7,
                pid_start: Some(9),
            },
            ..e
        })
        .unwrap();
        assert_eq!(new["state"], "destroying");
        assert_eq!(new["pid_start"], 9);
    }

    #[test]
    fn refuses_corrupt_or_newer_catalog_without_touching_it() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        fs::write(home.catalog_path(), "{\"version\": 7, \"entries\": {}}").unwrap();
        let e = Catalog::lock(&home).unwrap_err();
        assert_eq!(e.code(), 12);
        assert!(e.to_string().contains("newer"));
        fs::write(home.catalog_path(), "garbage").unwrap();
        assert_eq!(Catalog::lock(&home).unwrap_err().code(), 12);
        assert_eq!(fs::read_to_string(home.catalog_path()).unwrap(), "garbage");
    }
}
