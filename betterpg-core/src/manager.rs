//! `BranchManager`: the public face of the library, a thin facade that
//! owns the context of one home (`crate::context::Context`) and hands it to
//! the operations in `crate::ops` (init, create, branch, reset, start, stop, destroy, gc,
//! status, logs).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::audit::AuditEvent;
use crate::catalog::Entry;
pub use crate::catalog::Settings;
use crate::context::Context;
use crate::error::Result;
use crate::home::Config;
use crate::ops;
use crate::runtime::Runtime;
use crate::space::BranchSpace;
use crate::storage::{Selection, Storage};

pub use crate::catalog::PGDATA_SUBDIR;
pub use crate::name::validate_dataset_name;
pub use crate::ops::attach::AttachOptions;
#[allow(deprecated)]
pub use crate::ops::branch::SnapshotMode;
pub use crate::ops::branch::{
    BranchOptions, BranchReport, ReplicaPoint, StepTiming, DEFAULT_WAIT_TIMEOUT,
};
pub use crate::ops::create::CreateOptions;
pub use crate::ops::daemon::{
    ActionResult, DaemonAction, DaemonLock, DaemonOptions, PassReport, StopSignal,
};
pub use crate::ops::doctor::DoctorReport;
pub use crate::ops::follow::{FollowOptions, FollowProgress, FollowReport, ProgressFn};
pub use crate::ops::gc::{GcItem, GcReport};
pub use crate::ops::init::{InitOptions, InitStorage};
pub use crate::ops::logs::LogStream;
pub use crate::ops::mask_check::{MaskCheckOptions, MaskCheckReport, PersonalColumn};
pub use crate::ops::rewind::RewindReport;
pub use crate::ops::snapshot::{
    PolicyFailure, PolicyReport, PruneItem, PruneReport, SnapshotDestroyReport, SnapshotInfo,
    SnapshotOptions, SnapshotReport,
};
pub use crate::ops::status::{Info, PoolUsage, Replication, ReplicationState};
pub use crate::space::POOL_WARN_FRACTION;

/// The entry point of the library.
#[derive(Debug)]
pub struct BranchManager {
    ctx: Context,
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
        let ctx = ops::init::init(home.into(), opts, storage_backend).await?;
        Ok(BranchManager { ctx })
    }

    /// Open an initialised home.
    pub async fn open(home: impl Into<PathBuf>) -> Result<BranchManager> {
        Ok(BranchManager {
            ctx: Context::open(home).await?,
        })
    }

    /// Make `runtime` (and `image`) what `create` uses when a call names no
    /// runtime; recorded in the home's config. `None` resets to native.
    pub fn set_default_runtime(
        &mut self,
        runtime: Option<String>,
        image: Option<String>,
    ) -> Result<()> {
        ops::init::set_default_runtime(&mut self.ctx, runtime, image)
    }

    /// Register (or replace) a runtime.
    pub fn with_runtime(mut self, rt: Arc<dyn Runtime>) -> Self {
        self.ctx.runtimes.retain(|r| r.name() != rt.name());
        self.ctx.runtimes.push(rt);
        self
    }

    /// Replace the storage backend (tests, other backends).
    pub fn with_storage(mut self, storage: Arc<dyn Storage>) -> Self {
        self.ctx.storage_selection = Selection {
            backend: "custom",
            requested: "custom".into(),
            reason: format!(
                "set with BranchManager::with_storage: {}",
                storage.backend_name()
            ),
        };
        self.ctx.storage = storage;
        self
    }

    /// The home directory.
    pub fn home(&self) -> &Path {
        self.ctx.home.root()
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.ctx.config
    }

    /// Name of the storage backend in use.
    pub fn storage_backend(&self) -> String {
        self.ctx.storage.backend_name()
    }

    /// Which storage backend is in use and why (see [`crate::storage::select`]).
    pub fn storage_selection(&self) -> &Selection {
        &self.ctx.storage_selection
    }

    /// Look up an entry (without keeping the lock).
    pub fn entry(&self, name: &str) -> Result<Entry> {
        self.ctx.entry(name)
    }

    /// Create a new, started, empty database cluster.
    pub async fn create(&self, name: &str, opts: CreateOptions) -> Result<Info> {
        ops::create::create(&self.ctx, name, opts).await
    }

    /// Make `name`, a new read-write server on a clone of `source`
    /// (a database or a branch), and start it (the recipe in `docs/architecture.md`).
    pub async fn branch(
        &self,
        source: &str,
        name: &str,
        opts: BranchOptions,
    ) -> Result<BranchReport> {
        ops::branch::branch(&self.ctx, source, name, opts).await
    }

    /// Follow the remote primary at `opts.from` as the replica `name`: a
    /// streaming standby on its own dataset, started on its own port, to
    /// branch production without touching it (see `docs/sources.md`).
    pub async fn follow(&self, name: &str, opts: FollowOptions) -> Result<FollowReport> {
        if opts.rebuild {
            return ops::rebuild::rebuild(&self.ctx, name, opts).await;
        }
        ops::follow::follow(&self.ctx, name, opts).await
    }

    /// Reset a branch to its parent's current state: its data is thrown
    /// away and it is branched again under the same name and port (so
    /// connection URLs stay valid). A branch with branches of its own is
    /// refused. If the new branch cannot be made, the old one is already
    /// gone and the error says so.
    pub async fn reset(&self, name: &str, opts: BranchOptions) -> Result<BranchReport> {
        ops::reset::reset(&self.ctx, name, None, opts).await
    }

    /// Roll a branch made with [`BranchOptions::rewindable`] back to its
    /// rewind point (how it was when made: isolated, masked, nothing
    /// written since), under the same name, port and password: a stop, a
    /// ZFS rollback and a start, much cheaper than [`Self::reset`] (which
    /// branches the parent's current state again). Refused for a branch
    /// without a rewind point, a protected one, or one with branches or
    /// named snapshots of its own (the rollback would destroy them).
    pub async fn rewind(&self, name: &str) -> Result<RewindReport> {
        ops::rewind::rewind(&self.ctx, name).await
    }

    /// Reset a branch to the named snapshot `to` (`SOURCE@NAME`) instead
    /// of its parent's current state; SOURCE becomes its parent. As
    /// [`Self::reset`] otherwise (same name, port and password).
    pub async fn reset_to(
        &self,
        name: &str,
        to: &str,
        opts: BranchOptions,
    ) -> Result<BranchReport> {
        ops::reset::reset(&self.ctx, name, Some(to), opts).await
    }

    /// Take a named snapshot of a database or branch with the branch
    /// recipe (application-consistent by default), keeping what a branch
    /// of it needs later (backup label, WAL to the stop point), so that
    /// `branch("SRC@NAME", ..)` works after the source moved on or
    /// stopped. `opts.name` `None`: a name from the time (sortable).
    pub async fn snapshot(&self, source: &str, opts: SnapshotOptions) -> Result<SnapshotReport> {
        ops::snapshot::snapshot(&self.ctx, source, opts).await
    }

    /// The named snapshots of `source` (every one when `None`), by
    /// source, oldest first, with the space each holds and the branches
    /// cloned from it.
    pub async fn snapshots(&self, source: Option<&str>) -> Result<Vec<SnapshotInfo>> {
        ops::snapshot::snapshots(&self.ctx, source).await
    }

    /// Destroy the named snapshot `source@name`. Refused while branches
    /// were cloned from it, unless `force`, which destroys those branches
    /// (and theirs) first.
    pub async fn destroy_snapshot(
        &self,
        source: &str,
        name: &str,
        force: bool,
    ) -> Result<SnapshotDestroyReport> {
        ops::snapshot::destroy_snapshot(&self.ctx, source, name, force).await
    }

    /// Apply the retention settings (`keep_last`, `keep_hourly`,
    /// `keep_daily`) of `source` (every source when `None`): remove the
    /// automatic snapshots they do not keep, never one a branch was cloned
    /// from (see [`crate::retention`]). `dry_run` changes nothing.
    pub async fn prune_snapshots(
        &self,
        source: Option<&str>,
        dry_run: bool,
    ) -> Result<PruneReport> {
        ops::snapshot::prune(&self.ctx, source, dry_run).await
    }

    /// One pass of the snapshot schedule (what `bpg daemon` runs): take
    /// the automatic snapshots the policies say are due (`keep_hourly`:
    /// one an hour, else `keep_daily`: one a day), then prune by them.
    /// A source that fails is reported, the others still done.
    pub async fn run_snapshot_policy(
        &self,
        source: Option<&str>,
        dry_run: bool,
    ) -> Result<PolicyReport> {
        ops::snapshot::run_policy(&self.ctx, source, dry_run).await
    }

    /// One pass of the scheduler (what `bpg daemon --once` runs):
    /// snapshots by policy and pruning, expiry (children first; a
    /// protected subtree is skipped), idle stop, and watching replicas.
    /// A failing action is in the report, the pass goes on. Holds the
    /// home's daemon lock meanwhile: [`crate::Error::DaemonRunning`] when
    /// a daemon runs. `dry_run` changes nothing.
    pub async fn daemon_pass(&self, dry_run: bool) -> Result<PassReport> {
        ops::daemon::pass(&self.ctx, dry_run, &StopSignal::new(), &|_| {}).await
    }

    /// [`Self::daemon_pass`], handing each action to `on_action` as it
    /// happens (a log line).
    pub async fn daemon_pass_with(
        &self,
        dry_run: bool,
        on_action: &(dyn Fn(&DaemonAction) + Send + Sync),
    ) -> Result<PassReport> {
        ops::daemon::pass(&self.ctx, dry_run, &StopSignal::new(), on_action).await
    }

    /// [`Self::daemon_pass_with`] that `stop` ends between steps (the step
    /// under way is finished first, then the lock released; the report
    /// says `interrupted`): what `bpg daemon --once` runs, raising `stop`
    /// on SIGTERM or SIGINT.
    pub async fn daemon_pass_until(
        &self,
        dry_run: bool,
        stop: &StopSignal,
        on_action: &(dyn Fn(&DaemonAction) + Send + Sync),
    ) -> Result<PassReport> {
        ops::daemon::pass(&self.ctx, dry_run, stop, on_action).await
    }

    /// The scheduler's loop (`bpg daemon`): a pass every
    /// `opts.interval` until `stop` is raised (the step under way is
    /// finished first), holding the home's daemon lock throughout
    /// ([`crate::Error::DaemonRunning`] when another daemon holds it).
    /// Each action goes to `on_action` as it happens.
    pub async fn run_daemon(
        &self,
        opts: DaemonOptions,
        stop: StopSignal,
        on_action: &(dyn Fn(&DaemonAction) + Send + Sync),
    ) -> Result<()> {
        ops::daemon::run(&self.ctx, opts, stop, on_action).await
    }

    /// Start a stopped database or branch.
    pub async fn start(&self, name: &str) -> Result<Info> {
        ops::start::start(&self.ctx, name).await
    }

    /// Stop a database or branch (fast shutdown).
    pub async fn stop(&self, name: &str) -> Result<Info> {
        ops::stop::stop(&self.ctx, name).await
    }

    /// Connection URL of a database or branch.
    pub async fn url(&self, name: &str) -> Result<String> {
        ops::status::url(&self.ctx, name).await
    }

    /// Connection URL of `role` on the branch `name`, with the password
    /// its credentials rotation gave it (`HOME/secrets/NAME.roles`).
    /// A branch that kept its source's passwords (`credentials keep`),
    /// or an entry that is not a branch, is refused
    /// ([`crate::Error::Unsupported`]): betterpg does not know those
    /// passwords; a role that got no password is
    /// [`crate::Error::NotFound`]. Audited (operation `url`, with the
    /// role).
    pub async fn url_for_role(&self, name: &str, role: &str) -> Result<String> {
        ops::credentials::role_url(&self.ctx, name, role).await
    }

    /// The server log, or its last `tail` lines.
    pub async fn logs(&self, name: &str, tail: Option<usize>) -> Result<String> {
        ops::logs::logs(&self.ctx, name, tail).await
    }

    /// Follow the server log: a stream of its last `tail` lines (all when
    /// `None`), then of what the server writes, as it writes it. A native
    /// server's log never ends (drop the stream to stop following); a
    /// container's ends when the container stops (see
    /// [`crate::ops::logs`]).
    pub async fn follow_logs(&self, name: &str, tail: Option<usize>) -> Result<LogStream> {
        ops::logs::follow(&self.ctx, name, tail).await
    }

    /// Check this machine and the home at `home` (initialised or not):
    /// see [`crate::ops::doctor::doctor`]. Problems are in the report.
    pub async fn doctor(home: impl AsRef<Path>) -> Result<DoctorReport> {
        ops::doctor::doctor(home.as_ref()).await
    }

    /// Path of the server log (for following it).
    pub fn log_path(&self, name: &str) -> Result<PathBuf> {
        ops::logs::log_path(&self.ctx, name)
    }

    /// Destroy a database or branch: stop it, destroy its dataset and the
    /// snapshot it came from, forget it. Refused unless `force` when it has
    /// branches (`force` destroys them first, deepest first) or when its
    /// dataset (or a branch's) carries snapshots or datasets betterpg did
    /// not make (an operator's, sanoid's ...; `force` destroys them too).
    /// Always refused while a process that still runs is making or
    /// destroying it or one of its branches.
    pub async fn destroy(&self, name: &str, force: bool) -> Result<()> {
        ops::destroy::destroy(&self.ctx, name, force).await
    }

    /// Register a running PostgreSQL that betterpg did not create, whose
    /// data directory (and `pg_wal`, tablespaces) are on ZFS datasets of
    /// the home's pool, as `name` (kind attached), so that it can be
    /// branched. Everything is checked first (the URL's role's rights,
    /// with the GRANTs it lacks; the datasets; the data directory's owner)
    /// and nothing is recorded on a refusal. betterpg never starts, stops,
    /// reconfigures or destroys it.
    pub async fn attach(&self, name: &str, opts: AttachOptions) -> Result<Info> {
        ops::attach::attach(&self.ctx, name, opts).await
    }

    /// Forget the attached cluster `name` (the cluster itself is not
    /// touched). Refused while it has branches unless `force`, which
    /// destroys them; returns the branches destroyed.
    pub async fn detach(&self, name: &str, force: bool) -> Result<Vec<String>> {
        ops::attach::detach(&self.ctx, name, force).await
    }

    /// Protect a database or branch: destroy, reset and expiry are
    /// refused (a [`crate::Error::Protected`]), even forced, and `gc`
    /// never removes what it owns. Idempotent.
    pub async fn protect(&self, name: &str) -> Result<Info> {
        ops::protect::protect(&self.ctx, name, true).await
    }

    /// Lift the protection of a database or branch. Idempotent.
    pub async fn unprotect(&self, name: &str) -> Result<Info> {
        ops::protect::protect(&self.ctx, name, false).await
    }

    /// Find (and unless `dry_run`, remove) every dataset, snapshot, server,
    /// catalog entry and file of this home that no complete database or
    /// branch, and no operation still running, owns (see `docs/architecture.md`).
    pub async fn gc(&self, dry_run: bool) -> Result<GcReport> {
        ops::gc::gc(&self.ctx, dry_run).await
    }

    /// The home's audit log (`HOME/audit.log`): what created, exposed,
    /// reset or destroyed a copy, by whom, when, and how it ended; oldest
    /// first. `since`: a duration back from now (`30m`, `8h`, `7d`), a time
    /// (`2026-12-03T16:00:00Z`), a date or Unix seconds; `None`: all.
    pub fn audit(&self, since: Option<&str>) -> Result<Vec<AuditEvent>> {
        ops::audit::audit(&self.ctx, since)
    }

    /// List the columns of `source` (a running database or branch, every
    /// database of its server) whose name or sampled values look personal
    /// (email, phone, name, address, birth date, IBAN, card number, IP
    /// address) and that the rules file of `opts` does not cover. Reads
    /// only: a read-only transaction, at most `sample_rows` rows per table.
    pub async fn mask_check(
        &self,
        source: &str,
        opts: MaskCheckOptions,
    ) -> Result<MaskCheckReport> {
        ops::mask_check::mask_check(&self.ctx, source, opts).await
    }

    /// The SQL the masking rules file at `path` compiles to, as a branch
    /// runs it (after the masking SQL files, in the same transaction), with
    /// the key of `source`'s root shown as a placeholder: the key is never
    /// printed. `source` (optional) must exist; no server is contacted.
    pub fn mask_sql(
        &self,
        path: &std::path::Path,
        source: Option<&str>,
    ) -> Result<ops::mask_rules::MaskSql> {
        ops::mask_rules::mask_sql(&self.ctx, path, source)
    }

    /// Status of one database or branch.
    pub async fn info(&self, name: &str) -> Result<Info> {
        ops::status::info(&self.ctx, name).await
    }

    /// Status of every database and branch, parents before their branches.
    pub async fn status(&self) -> Result<Vec<Info>> {
        ops::status::status(&self.ctx).await
    }

    /// The settings of a database or branch (see [`Settings`]).
    pub fn settings(&self, name: &str) -> Result<Settings> {
        ops::config::settings(&self.ctx, name)
    }

    /// Change settings of a database or branch: each `(key, value)` in its
    /// string form (keys in [`crate::SETTING_KEYS`]; durations such as `8h`;
    /// `none` clears). All or nothing; returns the new settings.
    pub async fn configure<K: AsRef<str>, V: AsRef<str>>(
        &self,
        name: &str,
        pairs: &[(K, V)],
    ) -> Result<Settings> {
        ops::config::configure(&self.ctx, name, pairs).await
    }

    /// Space of the pool holding the datasets.
    pub async fn pool_usage(&self) -> Result<PoolUsage> {
        ops::status::pool_usage(&self.ctx).await
    }

    /// Space of all branches together, without changing anything (the
    /// limit is the one the next branch will set).
    pub async fn branch_space(&self) -> Result<BranchSpace> {
        ops::status::branch_space(&self.ctx).await
    }
}

/// Names of the runtimes every manager has ("native", "docker").
pub fn available_runtimes() -> Vec<&'static str> {
    crate::runtime::available()
}
