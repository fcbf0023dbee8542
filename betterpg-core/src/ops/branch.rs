//! The branch recipe: how a branch of a database is made so that it holds
//! every committed transaction.
//!
//! For a running source in application-consistent mode (the default), the
//! steps follow PostgreSQL's "low level base backup" exactly:
//!
//! 1. On ONE held connection: create a temporary physical replication slot
//!    (retains WAL) and `pg_backup_start(label, fast)` (PG <= 14:
//!    non-exclusive `pg_start_backup`).
//! 2. Snapshot every dataset of the cluster atomically.
//! 3. `pg_backup_stop(false)` on the same connection -> stop LSN, label, map.
//! 4. Clone the snapshot; write `backup_label` (and a non-empty
//!    `tablespace_map`) byte for byte; copy WAL segments start..stop from the
//!    live source; remove pid files and replication slots.
//! 5. End the session (drops the slot) and start the branch on its own port:
//!    it replays to the stop LSN ("completed backup recovery").
//!
//! Crash-consistent (`--fast`): `CHECKPOINT`, snapshot; the branch does crash
//! recovery. A stopped source: snapshot only (it is clean).
//!
//! On any failure every step taken is undone in reverse (backup ended, slot
//! dropped, server stopped, clone and snapshot destroyed, reservation
//! removed) and the typed error returned; the source is never changed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::credentials::{self, Audited};
use super::private::{self, MaskingReport, PrivatePlan};
use super::retain;
use super::start::start_on_free_port;
use super::status::{self, Info};
use crate::catalog::{
    rewind_snapshot_name, split_snapshot_ref, Credentials, Entry, Kind, Lifecycle, Mode, Settings,
    SnapshotRecord, State,
};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::fault;
use crate::name::validate_name;
use crate::osuser::OsUser;
use crate::pg::backup::{BackupStop, CheckpointDecision};
use crate::pg::cluster;
use crate::pg::datadir::DataDir;
use crate::pg::isolate::{self, IsolationReport};
use crate::pg::{wal, BackupSession};
use crate::pitr::{base_for, Target};
use crate::runtime::{InstanceSpec, RunStatus};
use crate::storage::{destroy_with_retry, DatasetInfo, DatasetType, SpaceLimit};
use crate::tablespace;
use crate::util::{now_unix, random_token};

/// Smallest quota accepted: a cluster needs some room to start at all.
pub const MIN_QUOTA: u64 = 64 << 20;

pub(crate) fn check_quota(q: Option<u64>) -> Result<()> {
    match q {
        Some(b) if b < MIN_QUOTA => Err(Error::Config(format!(
            "a quota of {b} bytes is too small for a PostgreSQL cluster: give at least 64M"
        ))),
        _ => Ok(()),
    }
}

pub(crate) fn check_ttl(ttl: Option<std::time::Duration>) -> Result<()> {
    match ttl {
        Some(t) if t.as_secs() == 0 => Err(Error::Config(
            "a time to live of 0 seconds would destroy the branch as soon as it is made: give at least 1s".into(),
        )),
        _ => Ok(()),
    }
}

/// What has been made so far, to undo on failure.
#[derive(Default)]
struct Undo {
    session: Option<BackupSession>,
    snapshot: Option<String>,
    clone: Option<String>,
    started: Option<InstanceSpec>,
    /// Snapshots and clones of the source's tablespaces.
    tablespaces: tablespace::Made,
    /// Not undone, only reported: whether a `--fast` snapshot was preceded
    /// by a checkpoint.
    checkpoint: Option<CheckpointDecision>,
    /// Not undone, only reported: the clone's listing (its sizes), read
    /// while the branch started.
    listed: Option<DatasetInfo>,
}

/// The branch's real start (step 6), and meanwhile the listing of its
/// clone for the report (a `zfs` command: alongside the start, it costs
/// nothing). The sizes are those of the clone as the server starts: ZFS
/// counts what the start writes only once its transaction group is
/// written anyway.
async fn start(ctx: &Context, entry: &Entry, data_dir: &Path, undo: &mut Undo) -> Result<()> {
    let (started, listed) = tokio::join!(
        start_on_free_port(ctx, entry, data_dir, |_| {}, &mut undo.started),
        ctx.storage.get(&entry.dataset)
    );
    started?;
    // A listing that failed only costs the report's sizes their
    // freshness: they are read again.
    undo.listed = listed.ok().flatten();
    Ok(())
}

pub(crate) struct Timer {
    pub(crate) steps: Vec<StepTiming>,
    last: Instant,
}

impl Timer {
    pub(crate) fn new() -> Self {
        Self::since(Instant::now())
    }
    /// A timer whose first lap began at `t0` (the start of the whole
    /// call: the work before the recipe is a step too).
    pub(crate) fn since(t0: Instant) -> Self {
        Timer {
            steps: Vec::new(),
            last: t0,
        }
    }
    /// Add steps timed elsewhere, which began at the last lap.
    pub(crate) fn extend(&mut self, steps: Vec<StepTiming>) {
        let ms: f64 = steps.iter().map(|s| s.millis).sum();
        self.last += std::time::Duration::from_secs_f64(ms / 1000.0);
        self.steps.extend(steps);
    }
    pub(crate) fn lap(&mut self, step: &'static str) {
        let now = Instant::now();
        self.steps.push(StepTiming {
            step,
            millis: (now - self.last).as_secs_f64() * 1000.0,
        });
        self.last = now;
    }
}

/// The old name of [`Mode`], kept for one release.
#[deprecated(
    since = "0.1.0",
    note = "use `Mode`, the one name of the snapshot mode"
)]
pub type SnapshotMode = Mode;

/// Options of [`crate::BranchManager::branch`] and [`crate::BranchManager::reset`].
#[derive(Debug, Clone, Default)]
pub struct BranchOptions {
    /// How to snapshot a running source (a stopped one is always
    /// snapshotted as it is: crash-consistent, without recovery to do).
    pub mode: Mode,
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
    /// Branch the source as it was at this point, from its retained WAL
    /// (the setting `retain_wal`): a timestamp with its offset
    /// (`2026-12-03 16:40:00.5+00`, `2026-12-03T16:40:00Z`) or a WAL
    /// location (`0/16B3748`). The branch holds exactly the transactions
    /// committed at or before it. `None`: the source as it is now.
    pub at: Option<String>,
    /// Masking SQL files, applied in order in ONE transaction on the
    /// branch's private first start, before it has a TCP port (a directory
    /// means its `*.sql` files in name order). If any statement fails the
    /// branch is destroyed and the error names the file, line and
    /// statement. Afterwards the tables changed are rewritten and the WAL
    /// written before is removed, so the old values cannot be read back.
    pub mask: Vec<std::path::PathBuf>,
    /// Masking rules files (TOML, docs/masking.md), compiled to SQL that
    /// runs after the `mask` files in the same transaction.
    pub mask_rules: Vec<std::path::PathBuf>,
    /// Make the branch schema-only: every object, role and setting kept,
    /// every table emptied, on the private first start.
    pub schema_only: bool,
    /// Branch without the source's masking policy (its settings `mask`,
    /// `mask_rules`); refused when the source's `forbid_unmasked` is set.
    pub unmasked: bool,
    /// Whether the branch's roles get new passwords (`Rotate`: the
    /// source's passwords do not log in; `bpg url NAME --role ROLE` gives
    /// the new ones) or keep the source's (`Keep`). `None`: for a reset,
    /// the branch's own policy; else the source's setting `credentials`,
    /// else `Rotate` when the source's root is a replica or an attached
    /// cluster, `Keep` for a database. A branch of a rotated branch always
    /// rotates.
    pub credentials: Option<crate::catalog::Credentials>,
    /// Time to live of a new branch: the daemon destroys it (with its
    /// branches) this long after it was made (`bpg branch --ttl 8h`).
    /// `None`: it never expires. Not allowed for `reset`, which keeps the
    /// branch's expiry as it was.
    pub ttl: Option<std::time::Duration>,
    /// A replica's branch: how long to wait for the replica to replay
    /// the primary's WAL position read at the call; `None`: 30 s.
    pub wait_timeout: Option<Duration>,
    /// A replica's branch: do not wait; branch what the replica has
    /// replayed (the report says which LSN and time it reflects).
    pub no_wait: bool,
    /// Take a rewind point: a snapshot of the new branch as it is made
    /// (isolated, masked, before its server first listens), so that
    /// `bpg rewind NAME` can roll it back to it in a fraction of a new
    /// branch's time (see [`crate::ops::rewind`]). A reset keeps a
    /// branch's rewind point (taken again of the new data), and sets
    /// one when this is given. Costs one snapshot per branch.
    pub rewindable: bool,
    /// The process the branch lives for (e.g. a test run's): once it is
    /// gone, `bpg gc` destroys the branch (unless protected), so a run
    /// killed before it cleaned up leaves nothing for long. Must name a
    /// running process. `None`: no owner.
    pub owner_pid: Option<u32>,
}

/// Default of [`BranchOptions::wait_timeout`].
pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a branch of a replica stands in the primary's history.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReplicaPoint {
    /// The primary's WAL position read at the call (`None` with
    /// `no_wait`): the branch holds everything before it.
    pub primary_lsn: Option<String>,
    /// The replica's replay position when the backup began: the branch
    /// holds the primary's history at least up to here.
    pub replay_lsn: String,
    /// Commit time of the last transaction replayed by then (`None`
    /// when the replica has replayed none since it started).
    pub replay_time: Option<String>,
    /// Milliseconds spent waiting for the replica to catch up.
    pub waited_millis: f64,
}

/// Time taken by one step of an operation.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StepTiming {
    /// Step name: backup_start, snapshot, backup_stop, clone, prepare, start ...
    pub step: &'static str,
    /// Milliseconds.
    pub millis: f64,
}

/// What [`crate::BranchManager::branch`] returns.
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
    /// What masking did (files, tables rewritten, WAL removed) or making
    /// the branch schema-only; `None` for a branch with neither.
    pub masking: Option<MaskingReport>,
    /// The branch's credentials policy: `Rotate` (its roles got new
    /// passwords, listed in `isolation.roles_rotated`) or `Keep`.
    pub credentials: crate::catalog::Credentials,
    /// Crash-consistent (`--fast`) from a running source: whether the
    /// source was asked for a `CHECKPOINT` first, and why (it is skipped
    /// when little WAL was written since the last one: the branch replays
    /// it instead; see `Config::fast_checkpoint_max_wal`). `None` otherwise.
    pub checkpoint: Option<CheckpointDecision>,
    /// For a branch of a replica: the point of the primary's history it
    /// reflects (JSON null otherwise).
    pub replica_point: Option<ReplicaPoint>,
}

/// Make `name`, a new read-write server on a clone of `source`
/// (a database or a branch), and start it.
pub(crate) async fn branch(
    ctx: &Context,
    source: &str,
    name: &str,
    opts: BranchOptions,
) -> Result<BranchReport> {
    let requested = opts.mode;
    let mut audited = Audited::default();
    let r = branch_unaudited(ctx, source, name, opts, &mut audited).await;
    record(ctx, "branch", source, name, requested, &audited, &r);
    r
}

/// Append the audit line of a branch or reset of `name` from `source`.
pub(crate) fn record(
    ctx: &Context,
    operation: &str,
    source: &str,
    name: &str,
    requested: Mode,
    audited: &Audited,
    r: &Result<BranchReport>,
) {
    let mut ev = crate::audit::AuditEvent::now(operation);
    ev.source = Some(source.to_string());
    ev.branch = Some(name.to_string());
    ev.credentials = audited.credentials.map(|c| c.as_str().to_string());
    ev.masking = audited.masking.clone();
    let mode = match r {
        Ok(rep) => rep.branch.mode.unwrap_or(requested),
        Err(_) => requested,
    };
    ev.mode = Some(mode.as_str().to_string());
    super::audit::record(ctx, ev.outcome(r));
}

async fn branch_unaudited(
    ctx: &Context,
    source: &str,
    name: &str,
    opts: BranchOptions,
    audited: &mut Audited,
) -> Result<BranchReport> {
    let t0 = Instant::now();
    // `SRC@NAME`: a branch of the named snapshot NAME of SRC.
    let (source, named) = match split_snapshot_ref(source) {
        Some((src, snap)) => {
            validate_name(snap)?;
            (src, Some(snap))
        }
        None => (source, None),
    };
    validate_name(source)?;
    validate_name(name)?;
    check_quota(opts.quota)?;
    let target = opts.at.as_deref().map(Target::parse).transpose()?;
    if target.is_some() && named.is_some() {
        return Err(Error::Unsupported(
            "--at picks its own base: branch the database itself (SRC, not SRC@NAME) at a point in time".into(),
        ));
    }
    check_ttl(opts.ttl)?;
    let owner = opts.owner_pid.map(crate::catalog::Owner::of).transpose()?;
    let src = ctx.entry(source)?;
    // A replica is not rebuilt while it is branched (and not branched
    // while it is rebuilt): held to the end; its entry read again under it.
    let replica_lock = ctx.replica_lock(&src, false)?;
    let src = match &replica_lock {
        Some(_) => ctx.entry(source)?,
        None => src,
    };
    // The masking files are read before anything is made: a missing one
    // changes nothing.
    let (mut plan, mut keep) = private_plan(&src, None, &opts)?;
    audited.masking = plan.audit_files();
    let policy = credentials::policy_for(&|n| ctx.entry(n).ok(), &src, None, opts.credentials)?;
    audited.credentials = Some(policy);
    plan.rotate = policy == Credentials::Rotate;
    keep.credentials = Some(policy);
    if target.is_some() && src.kind == Kind::Branch {
        return Err(Error::Unsupported(format!(
            "{source:?} is a branch: only a database, a replica or an attached cluster keeps WAL to branch from a point in time (--at)"
        )));
    }
    if !src.is_ready() {
        return Err(Error::InvalidState(format!(
            "source {source:?} is not ready (it is being created or destroyed)"
        )));
    }
    let origin = match named {
        Some(snap) => Some(ready_snapshot(ctx, source, snap)?),
        None => None,
    };
    // The source's runtime and image unless told otherwise; a new
    // runtime without an image gets that runtime's default image.
    let (runtime, image) = match &opts.runtime {
        Some(r) if *r != src.runtime => {
            let (rt, image) = ctx.runtime_and_image(r, opts.image.clone())?;
            (rt.name().to_string(), image)
        }
        _ => {
            let (rt, image) = ctx.runtime_and_image(
                &src.runtime,
                opts.image.clone().or_else(|| src.image.clone()),
            )?;
            (rt.name().to_string(), image)
        }
    };
    // Enough memory for one more server, before anything is made.
    super::start::check_memory(name, &crate::context::branch_memory(&keep))?;
    fault::point("before_reserve").await?;
    let created_at = now_unix();
    // A branch at a point in time is a clone of a base snapshot that WAL
    // retention owns: the branch owns no snapshot of its own.
    let snapshot = match (&origin, &target) {
        (Some(rec), _) => Some(rec.zfs_snapshot.clone()),
        (None, Some(_)) => None,
        (None, None) => Some(snapshot_name(&src.dataset, name)),
    };
    let entry = ctx.reserve(Entry {
        name: name.to_string(),
        kind: Kind::Branch,
        parent: Some(source.to_string()),
        dataset: ctx.branch_dataset_for(name),
        snapshot,
        port: 0,
        runtime,
        image,
        mode: None,
        pg_bin: src.pg_bin.clone(),
        pg_major: src.pg_major,
        created_at,
        upstream: None,
        state: State::Ready,
        settings: keep,
        // A clone keeps its source's layout.
        data_subdir: src.data_subdir.clone(),
        attached: None,
        lifecycle: Lifecycle {
            expires_at: opts.ttl.map(|t| created_at.saturating_add(t.as_secs())),
            owner,
            ..Lifecycle::default()
        },
        // Drawn by `reserve`, under the catalog lock.
        os_uid: None,
        rewindable: opts.rewindable,
    })?;
    // A password of its own: the source's must not log in to a branch
    // (it is set during the branch's private first start).
    ctx.home
        .write_secret(name, &random_token(32))
        .inspect_err(|_| {
            let _ = ctx.unreserve(name);
        })?;

    // A replica first catches up with what the primary acknowledged
    // (not for `--at`: a past point, from its archive, running or not).
    let point = if src.kind == Kind::Replica && origin.is_none() && target.is_none() {
        match catch_up(ctx, &src, &opts).await {
            Ok(p) => Some(p),
            Err(e) => {
                ctx.home.remove_secret(name);
                let _ = ctx.unreserve(name);
                return Err(e);
            }
        }
    } else {
        None
    };
    let mut report = complete_branch(
        ctx,
        &src,
        &entry,
        opts,
        origin.as_ref(),
        plan,
        t0,
        "reserve",
        false,
    )
    .await?;
    report.replica_point = point;
    drop(replica_lock);
    Ok(report)
}

/// Wait until the replica `src` has replayed the primary's WAL position
/// read now (unless `no_wait`), then say where it stands.
async fn catch_up(ctx: &Context, src: &Entry, opts: &BranchOptions) -> Result<ReplicaPoint> {
    let t = Instant::now();
    let spec = ctx.spec(src).await?;
    if ctx.runtime(&src.runtime)?.status(&spec).await? != RunStatus::Running {
        return Err(Error::InvalidState(format!(
            "the replica {:?} is stopped: `bpg start {}` it first (a replica is branched while it runs)",
            src.name, src.name
        )));
    }
    let c = spec.conn.connect().await?;
    let replayed = || async {
        let row = c
            .query_one(
                "SELECT pg_last_wal_replay_lsn()::text, pg_last_xact_replay_timestamp()::text",
                &[],
            )
            .await?;
        let lsn: Option<String> = row.get(0);
        let lsn = lsn.unwrap_or_else(|| "0/0".into());
        Ok::<_, Error>((wal::parse_lsn(&lsn)?, lsn, row.get::<_, Option<String>>(1)))
    };
    let mut primary_lsn = None;
    if !opts.no_wait {
        let timeout = opts.wait_timeout.unwrap_or(DEFAULT_WAIT_TIMEOUT);
        let repl = ctx.replication_of(src)?;
        let ident = repl
            .identify(timeout.min(super::follow::UPSTREAM_TIMEOUT))
            .await
            .map_err(|e| {
                e.reword(|m| {
                    format!(
                        "cannot read the primary's WAL position, so the branch could miss what it acknowledged (is the primary unreachable? `bpg status {}` says): {m}. `--no-wait` branches what the replica has replayed",
                        src.name
                    )
                })
            })?;
        check_not_diverged(src, &ident.system_id)?;
        let deadline = t + timeout;
        loop {
            let (lsn, text, _) = replayed().await?;
            if lsn >= ident.wal_lsn {
                break;
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout(format!(
                    "the replica {:?} has replayed up to {text}, {} bytes short of the primary's position {} read at the call, after {}s: it is lagging or disconnected (see `bpg status {}`); give a longer --wait-timeout, or --no-wait to branch what it has",
                    src.name,
                    ident.wal_lsn - lsn,
                    wal::format_lsn(ident.wal_lsn),
                    timeout.as_secs(),
                    src.name
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        primary_lsn = Some(wal::format_lsn(ident.wal_lsn));
    }
    let (_, replay_lsn, replay_time) = replayed().await?;
    Ok(ReplicaPoint {
        primary_lsn,
        replay_lsn,
        replay_time,
        waited_millis: t.elapsed().as_secs_f64() * 1000.0,
    })
}

/// A replica whose primary now answers as another cluster (another system
/// identifier than at `follow` time) is `diverged`: its WAL can never be
/// replayed there, so waiting would only time out.
fn check_not_diverged(src: &Entry, system_id: &str) -> Result<()> {
    match &src.upstream {
        Some(u) if u.system_id != system_id => Err(Error::InvalidState(format!(
            "the replica {:?} has diverged: its primary at {} is now another cluster (system identifier {system_id}, the replica follows {}), so it can never catch up; `bpg follow {} --rebuild` takes a new base backup (its branches keep running), or --no-wait branches what the replica has",
            src.name,
            crate::pg::upstream::address(&u.host, u.port),
            u.system_id,
            src.name
        ))),
        _ => Ok(()),
    }
}

/// The named snapshot `source@name`, complete (else why not).
pub(crate) fn ready_snapshot(ctx: &Context, source: &str, name: &str) -> Result<SnapshotRecord> {
    let cat = ctx.lock()?;
    let rec = cat
        .snapshot(source, name)
        .cloned()
        .ok_or_else(|| Error::NotFound {
            what: "snapshot",
            name: format!("{source}@{name}"),
            hint: format!(": `bpg snapshots {source}` lists the snapshots of {source}"),
        })?;
    if !rec.is_live() || rec.state.worker().is_some() {
        return Err(Error::InvalidState(format!(
            "snapshot {} is not ready (it is {}): wait for the other bpg process, or run `bpg gc` if it is incomplete",
            rec.full_name(),
            rec.state.label()
        )));
    }
    Ok(rec)
}

/// The private phase of a branch of `src` made with `opts`, and the
/// settings the branch keeps so that its own branches and its resets are
/// masked (or schema-only) the same way. `own`: the branch's own settings
/// (a reset). The source's policy (settings `mask`, `mask_rules`) applies
/// unless `opts.unmasked`, which its `forbid_unmasked` refuses. The files
/// are read here, before anything is made: a missing one changes nothing.
pub(crate) fn private_plan(
    src: &Entry,
    own: Option<&Settings>,
    opts: &BranchOptions,
) -> Result<(PrivatePlan, Settings)> {
    let policy = &src.settings;
    if opts.unmasked && policy.forbid_unmasked {
        return Err(Error::Mask {
            file: None,
            line: None,
            statement: None,
            sqlstate: None,
            message: format!(
                "{:?} forbids branching it without its masking (forbid_unmasked): drop --unmasked, or allow it with `bpg config {} --allow-unmasked`; nothing was made",
                src.name, src.name
            ),
        });
    }
    let mut files: Vec<std::path::PathBuf> = Vec::new();
    let mut rules: Vec<std::path::PathBuf> = Vec::new();
    if !opts.unmasked {
        files.extend(policy.mask.iter().cloned());
        rules.extend(policy.mask_rules.iter().cloned());
    }
    if let Some(o) = own {
        files.extend(o.mask.iter().cloned());
        rules.extend(o.mask_rules.iter().cloned());
    }
    for m in &opts.mask {
        files.push(
            std::path::absolute(m)
                .map_err(|e| Error::io(format!("resolving {}", m.display()), e))?,
        );
    }
    let mut seen = std::collections::HashSet::new();
    files.retain(|f| seen.insert(f.clone()));
    for m in &opts.mask_rules {
        rules.push(
            std::path::absolute(m)
                .map_err(|e| Error::io(format!("resolving {}", m.display()), e))?,
        );
    }
    rules.retain(|f| seen.insert(f.clone()));
    // Parsed and compiled now: a bad file changes nothing.
    let mut compiled = Vec::new();
    for r in &rules {
        compiled.push(crate::pg::mask_rules::compile(
            &crate::pg::mask_rules::load(r)?,
            "the branch's root source",
        ));
    }
    let schema_only = opts.schema_only || policy.schema_only || own.is_some_and(|o| o.schema_only);
    let keep = Settings {
        mask: files.clone(),
        mask_rules: rules.clone(),
        forbid_unmasked: (!files.is_empty() || !rules.is_empty())
            && (policy.forbid_unmasked || own.is_some_and(|o| o.forbid_unmasked)),
        schema_only,
        // A branch's memory is its source's branch setting (kept, so that
        // its restarts, resets and own branches have it too).
        branch_shared_buffers: own
            .and_then(|o| o.branch_shared_buffers)
            .or(policy.branch_shared_buffers),
        branch_max_connections: own
            .and_then(|o| o.branch_max_connections)
            .or(policy.branch_max_connections),
        ..Settings::default()
    };
    Ok((
        PrivatePlan {
            mask: crate::pg::mask::load_files(&files)?,
            rules: compiled,
            schema_only,
            ..PrivatePlan::default()
        },
        keep,
    ))
}

/// Everything after the reservation: run the recipe, then mark the
/// entry ready, or undo it all. `password_changed` goes into the report
/// (a reset that had to make a new password).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn complete_branch(
    ctx: &Context,
    src: &Entry,
    entry: &Entry,
    opts: BranchOptions,
    origin: Option<&SnapshotRecord>,
    plan: PrivatePlan,
    t0: Instant,
    first_step: &'static str,
    password_changed: bool,
) -> Result<BranchReport> {
    let name = entry.name.as_str();
    let mut undo = Undo::default();
    // Everything since the call began (checks, the catalog reservation,
    // the password file; a reset's discarding of the old data) is the
    // first step, so that the steps add up to the total.
    let mut timer = Timer::since(t0);
    timer.lap(first_step);
    let credentials = if plan.rotate {
        Credentials::Rotate
    } else {
        Credentials::Keep
    };
    match run_recipe(ctx, src, entry, opts, origin, &plan, &mut undo, &mut timer).await {
        Ok((mode, running, wal_bytes, isolation, masking)) => {
            let ready = {
                let mut cat = ctx.lock()?;
                let e = cat
                    .get_mut(name)
                    .ok_or_else(|| Error::Internal(format!("catalog entry {name} vanished")))?;
                e.mode = Some(mode);
                e.state = State::Ready;
                let ready = e.clone();
                cat.save()?;
                ready
            };
            timer.lap("catalog");
            // Running: it was just started (a status query would say so).
            let branch = match undo.listed.take() {
                Some(ds) => status::info_with(ctx, &ready, Some(&ds), RunStatus::Running).await?,
                None => status::info(ctx, name).await?,
            };
            timer.lap("info");
            Ok(BranchReport {
                branch,
                tablespaces: undo.tablespaces.clones,
                timings: timer.steps,
                total_millis: t0.elapsed().as_secs_f64() * 1000.0,
                source_was_running: running,
                wal_bytes_copied: wal_bytes,
                isolation,
                password_changed,
                masking,
                credentials,
                checkpoint: undo.checkpoint,
                replica_point: None,
            })
        }
        Err(e) => {
            rollback(ctx, undo, name).await;
            Err(e)
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_recipe(
    ctx: &Context,
    src: &Entry,
    entry: &Entry,
    opts: BranchOptions,
    origin: Option<&SnapshotRecord>,
    phase: &PrivatePlan,
    undo: &mut Undo,
    timer: &mut Timer,
) -> Result<(Mode, bool, u64, IsolationReport, Option<MaskingReport>)> {
    if let Some(at) = opts.at.as_deref() {
        let target = Target::parse(at)?;
        let src_spec = ctx.spec(src).await?;
        // An attached cluster is taken as running (see below).
        let running = src.kind == Kind::Attached
            || ctx.runtime(&src.runtime)?.status(&src_spec).await? == RunStatus::Running;
        return run_pitr(
            ctx, src, &src_spec, running, entry, opts, phase, target, undo, timer,
        )
        .await;
    }
    let snap_name = entry
        .snapshot
        .as_deref()
        .and_then(|s| s.split_once('@'))
        .map(|(_, s)| s.to_string())
        .ok_or_else(|| Error::Internal("branch without snapshot name".into()))?;
    let home = ctx.home.root().to_string_lossy().into_owned();
    // The WAL handoff: known now (a named snapshot's), or once the
    // backup still running is stopped (`pending`).
    let (plan, mode, running, handoff, pending) = match origin {
        None => {
            let src_spec = ctx.spec(src).await?;
            let (running, plan, mode) = source_state(ctx, src, &src_spec, opts.mode).await?;
            timer.lap("prepare");
            // Before anything is made: the branch space has room for one more.
            crate::space::prepare(
                &*ctx.storage,
                &ctx.config,
                &ctx.home,
                crate::space::reserve_for(&ctx.config, opts.quota),
            )
            .await?;
            timer.lap("space");
            // 1-3: snapshot, inside backup mode when the source is running.
            let snap_props = [
                ("managed", "yes"),
                ("branch", entry.name.as_str()),
                ("home", home.as_str()),
            ];
            let label = format!("betterpg branch {}", entry.name);
            let mut taken = false;
            let stop = snapshot_source(
                ctx,
                src,
                &src_spec,
                &plan,
                Snap {
                    mode,
                    running,
                    name: &snap_name,
                    props: &snap_props,
                    label: &label,
                    checkpoint_max_wal: Some(ctx.config.fast_checkpoint_max_wal),
                    defer_stop: true,
                },
                &mut undo.session,
                &mut taken,
                timer,
                &mut undo.checkpoint,
            )
            .await;
            // What was made is undone even when a later step failed.
            if taken {
                undo.snapshot = entry.snapshot.clone();
                undo.tablespaces.snapshots = plan.snapshots(&snap_name);
            }
            stop?;
            // The backup is still running: it is stopped while the
            // snapshot is cloned (below); then its WAL is handed over.
            let pending = match undo.session.as_ref() {
                Some(session) => Some(PendingStop {
                    // A linked pg_wal is read where the plan resolved it.
                    wal: match &plan.wal {
                        Some(w) => DataDir::open(&w.location)?,
                        None => DataDir::open(&src_spec.data_dir)?.subdir("pg_wal")?,
                    },
                    seg_size: session.wal_segment_size,
                    standby: src.kind == Kind::Replica,
                }),
                None => None,
            };
            (plan, mode, running, None, pending)
        }
        Some(rec) => {
            // A named snapshot: nothing is taken from the source, which
            // may have moved on or stopped since; its tablespaces are
            // planned from its data directory only when the snapshot has
            // some, and must be the datasets the snapshot covered.
            let plan = if rec.tablespace_snapshots.is_empty() {
                tablespace::Plan::default()
            } else {
                let spec = ctx.control_spec(src).await?;
                let plan = tablespace::plan(&ctx.config.dataset, src, &spec.data_dir, None).await?;
                if plan.snapshots(&snap_name) != rec.tablespace_snapshots {
                    return Err(Error::Unsupported(format!(
                        "the tablespaces of {:?} moved since the snapshot {} was taken (it has {}): branch the source itself",
                        src.name,
                        rec.full_name(),
                        rec.tablespace_snapshots.join(", ")
                    )));
                }
                plan
            };
            timer.lap("prepare");
            crate::space::prepare(
                &*ctx.storage,
                &ctx.config,
                &ctx.home,
                crate::space::reserve_for(&ctx.config, opts.quota),
            )
            .await?;
            timer.lap("space");
            let handoff = match (&rec.backup, &rec.wal_dataset) {
                (Some(b), Some(ds)) => Some(Handoff {
                    label: b.label.clone(),
                    spcmap: b.tablespace_map.clone(),
                    segments: b.wal_segments.clone(),
                    range: wal::parse_backup_label(&b.label).ok().and_then(|l| {
                        let stop = wal::parse_lsn(&b.stop_lsn).ok()?;
                        Some((l.timeline, l.start_lsn, stop))
                    }),
                    seg_size: b.wal_segment_size,
                    wal: DataDir::open(&ctx.mountpoint(ds).await?)?.subdir("pg_wal")?,
                }),
                (Some(_), None) => {
                    return Err(Error::InvalidState(format!(
                        "snapshot {} has a backup label but no kept WAL: it cannot be started; destroy it",
                        rec.full_name()
                    )))
                }
                _ => None,
            };
            (plan, rec.mode, rec.source_was_running, handoff, None)
        }
    };

    // 4: clone and make it a data directory of its own, while a backup
    // still running is stopped on the source: the snapshot exists, so
    // the two are independent (the label and the WAL the stop hands over
    // are written into the clone afterwards). Both run to their end
    // (neither is cancelled half-way), then either's failure fails the
    // branch, and everything made is undone. Steps that overlap share
    // the wall time: each step's time runs from the previous step's end.
    let lapper = std::cell::RefCell::new(&mut *timer);
    let session = &mut undo.session;
    let stopping = async {
        let (Some(p), Some(s)) = (pending, session.as_mut()) else {
            return Ok(None);
        };
        let stop = s.stop().await?;
        lapper.borrow_mut().lap("backup_stop");
        fault::point("after_backup_stop").await?;
        Handoff::live(stop, p.seg_size, p.wal, p.standby).map(Some)
    };
    let made_clone = &mut undo.clone;
    let made_tablespaces = &mut undo.tablespaces;
    let making = async {
        let snapshot = entry.snapshot.clone().unwrap_or_default();
        let (mp, data_dir, user) = clone_and_chown(
            ctx,
            entry,
            &src.name,
            &snapshot,
            mode,
            opts.quota,
            made_clone,
            |step| lapper.borrow_mut().lap(step),
        )
        .await?;
        tablespace::clone_all(
            &*ctx.storage,
            ctx.home.root(),
            &user,
            &plan,
            entry,
            &snap_name,
            &mp,
            made_tablespaces,
        )
        .await?;
        lapper.borrow_mut().lap("chown");
        // Every file below is reached without following links: the clone is
        // a copy of a directory its source's users could write.
        let dd = DataDir::open(&data_dir)?;
        let mut isolation = isolate::prepare_clone(&dd, &user)?;
        // The WAL clone (a linked pg_wal), reached through the path betterpg
        // made and checked (real directories only) when it relinked pg_wal.
        let wal_dir = match &made_tablespaces.wal {
            Some(l) => DataDir::open(l)?,
            None => dd.subdir("pg_wal")?,
        };
        if made_tablespaces.wal.is_some() {
            isolate::forget_pending_archive(&wal_dir, &user, &mut isolation)?;
        }
        if src.kind == Kind::Attached {
            // Production's rules and roles stay out of the branch.
            cluster::write_owned(
                &dd,
                "pg_hba.conf",
                if phase.rotate {
                    isolate::ATTACHED_ROTATED_BRANCH_HBA
                } else {
                    isolate::ATTACHED_BRANCH_HBA
                }
                .as_bytes(),
                &user,
            )?;
        }
        if src.kind == Kind::Replica {
            // A standby's copy comes up as a primary of its own on a new
            // timeline: archive recovery of what is in pg_wal (its
            // restore_command fails, see REPLICA_RECOVERY), then promotion.
            cluster::write_owned(&dd, "recovery.signal", b"", &user)?;
            // The primary's access rules name its own networks: a branch is
            // reached on betterpg's address with its own password.
            cluster::write_owned(&dd, "pg_hba.conf", BRANCH_OF_REPLICA_HBA.as_bytes(), &user)?;
        }
        lapper.borrow_mut().lap("prepare_clone");
        Ok::<_, Error>((mp, data_dir, user, dd, isolation, wal_dir))
    };
    let (stopped, made) = tokio::join!(stopping, making);
    let handoff = match stopped? {
        Some(h) => Some(h),
        None => handoff,
    };
    let (mp, data_dir, user, dd, mut isolation, wal_dir) = made?;
    let from_replica = src.kind == Kind::Replica;
    let mut wal_bytes = 0;
    if let Some(h) = handoff {
        cluster::write_owned(&dd, "backup_label", h.label.as_bytes(), &user)?;
        if !h.spcmap.is_empty() {
            let map = tablespace::rewrite_map(&h.spcmap, &undo.tablespaces.clones)?;
            cluster::write_owned(&dd, "tablespace_map", map.as_bytes(), &user)?;
        }
        wal_bytes = match h.range {
            Some((tli, start, stop)) => {
                wal::copy_backup_wal(&h.wal, &wal_dir, tli, start, stop, h.seg_size, &user)?
            }
            None => wal::copy_segments(&h.wal, &wal_dir, &h.segments, h.seg_size, &user)?,
        };
        // The WAL is safe in the clone: release the slot and connection.
        if let Some(session) = undo.session.take() {
            session.finish().await?;
        }
    }
    timer.lap("wal_copy");
    tablespace::check_links(&entry.name, &data_dir, &mp)?;

    // 5: the first start is private (no TCP listener, no logical
    // replication workers): recovery runs, then the private phase's steps
    // (ops/private.rs: the branch's own password, subscriptions detached,
    // masking ...), before anything can reach it or it can reach
    // anything. Meanwhile the clone gets its reservation: a `zfs set`
    // waits for a transaction group, the server start takes longer, and a
    // reservation is a guarantee, not a limit, so it need not come first.
    // Either failing fails the branch (and rolls it back).
    let mut private_steps = Vec::new();
    let mut masking = None;
    let (isolated, reserved) = tokio::join!(
        private::run(
            ctx,
            entry,
            &dd,
            &wal_dir,
            &data_dir,
            if from_replica { REPLICA_RECOVERY } else { "" },
            phase,
            &mut isolation,
            &mut masking,
            &mut undo.started,
            &mut private_steps
        ),
        crate::space::reserve(&*ctx.storage, &ctx.config, &entry.dataset, opts.quota)
    );
    isolated?;
    reserved?;
    // The private start's own steps, then whatever the reservation
    // took beyond them.
    timer.extend(
        private_steps
            .into_iter()
            .map(|(step, millis)| StepTiming { step, millis })
            .collect(),
    );
    timer.lap("reserve_wait");
    fault::point("after_isolate").await?;

    // 6: the real start, on its own port, with betterpg's settings.
    cluster::write_settings(
        &dd,
        &user,
        entry.port,
        &ctx.config.listen_address,
        &ctx.profile_for(entry),
    )?;
    if entry.rewindable {
        take_rewind_point(ctx, entry).await?;
        timer.lap("rewind_point");
    }
    start(ctx, entry, &data_dir, undo).await?;
    timer.lap("start");
    fault::point("after_start").await?;
    fault::point("before_catalog").await?;
    Ok((mode, running, wal_bytes, isolation, masking))
}

/// The branch's dataset: a clone of `snapshot` (of `parent`) with
/// betterpg's properties, recorded in `made` at once for the rollback,
/// then its quota. The clone is the source's files: they become the
/// branch's own server user's (crate::osuser) before anything runs on
/// them. The walk of every file is blocking: off this task, so that what
/// runs beside it (a backup's stop) is answered meanwhile. Laps "clone"
/// through `lap`; returns the mountpoint, the data directory and the user.
#[allow(clippy::too_many_arguments)]
async fn clone_and_chown(
    ctx: &Context,
    entry: &Entry,
    parent: &str,
    snapshot: &str,
    mode: Mode,
    quota: Option<u64>,
    made: &mut Option<String>,
    mut lap: impl FnMut(&'static str),
) -> Result<(PathBuf, PathBuf, OsUser)> {
    let home = ctx.home.root().to_string_lossy().into_owned();
    let port = entry.port.to_string();
    let created = entry.created_at.to_string();
    ctx.storage
        .clone_snapshot(
            snapshot,
            &entry.dataset,
            None,
            &[
                ("managed", "yes"),
                ("name", &entry.name),
                ("dataset", &entry.dataset),
                ("kind", "branch"),
                ("parent", parent),
                ("snapshot", snapshot),
                ("port", &port),
                ("mode", mode.as_str()),
                ("runtime", &entry.runtime),
                ("home", &home),
                ("created", &created),
            ],
        )
        .await?;
    *made = Some(entry.dataset.clone());
    lap("clone");
    fault::point("after_clone").await?;
    if let Some(q) = quota {
        ctx.storage
            .set_space_limit(&entry.dataset, SpaceLimit::Quota, Some(q))
            .await?;
    }
    let mp = ctx.mountpoint(&entry.dataset).await?;
    let data_dir = entry.data_dir(&mp);
    let user = ctx.user_of(entry);
    {
        let (user, mp) = (user.clone(), mp.clone());
        tokio::task::spawn_blocking(move || user.chown_tree(&mp))
            .await
            .map_err(|e| Error::Internal(format!("giving the clone to its user: {e}")))??;
    }
    Ok((mp, data_dir, user))
}

/// Every file system of a branch (its own and its tablespace clones,
/// which live below it), its own first.
pub(crate) async fn datasets_of(ctx: &Context, entry: &Entry) -> Result<Vec<String>> {
    Ok(filesystems_of(
        &ctx.storage.list(&entry.dataset).await?,
        entry,
    ))
}

/// [`datasets_of`] from a listing of the branch's dataset (`Storage::list`).
pub(crate) fn filesystems_of(listing: &[DatasetInfo], entry: &Entry) -> Vec<String> {
    let mut v: Vec<String> = listing
        .iter()
        .filter(|d| d.kind == DatasetType::Filesystem)
        .map(|d| d.name.clone())
        .collect();
    v.sort_by_key(|d| (d != &entry.dataset, d.clone()));
    v
}

/// Take the rewind point of a branch being made: one atomic snapshot of
/// all its datasets. Called by the recipe while its server is stopped
/// between the private first start and the real one, so the snapshot
/// holds a cleanly shut down, isolated and masked cluster that never
/// had a TCP listener. Undone with the clone (a forced destroy takes its
/// snapshots).
pub(crate) async fn take_rewind_point(ctx: &Context, entry: &Entry) -> Result<()> {
    let datasets = datasets_of(ctx, entry).await?;
    let refs: Vec<&str> = datasets.iter().map(String::as_str).collect();
    let home = ctx.home.root().to_string_lossy().into_owned();
    ctx.storage
        .snapshot(
            &refs,
            &rewind_snapshot_name(&entry.name),
            &[
                ("managed", "yes"),
                ("rewind", entry.name.as_str()),
                ("home", home.as_str()),
            ],
        )
        .await
}

/// `pg_hba.conf` of a branch of a replica (the primary's names its own
/// networks and roles): TCP on betterpg's address with a password.
const BRANCH_OF_REPLICA_HBA: &str = "# betterpg: a branch of a replica\n\
host all all 127.0.0.1/32 scram-sha-256\n\
host all all ::1/128 scram-sha-256\n";

/// The private start of a branch of a replica (a standby's copy): replay
/// what is in `pg_wal` and no more (the restore command fails), then a
/// new timeline; no connections before it is promoted.
const REPLICA_RECOVERY: &str = "restore_command = '/bin/false'\n\
recovery_target_timeline = 'latest'\n\
hot_standby = off\n";

/// What a snapshot of `src` (its spec `spec`) starts from: whether it
/// runs, where its tablespaces live (or a refusal before anything is
/// made), and the mode: `wanted` when it runs, crash-consistent when not.
/// An attached cluster is not betterpg's to inspect or start: it counts
/// as running, and one that does not answer fails the backup (or the
/// CHECKPOINT) with the server's or the network's own words.
pub(crate) async fn source_state(
    ctx: &Context,
    src: &Entry,
    spec: &InstanceSpec,
    wanted: Mode,
) -> Result<(bool, tablespace::Plan, Mode)> {
    let running = src.kind == Kind::Attached
        || ctx.runtime(&src.runtime)?.status(spec).await? == RunStatus::Running;
    let plan = tablespace::plan(
        &ctx.config.dataset,
        src,
        &spec.data_dir,
        running.then_some(&spec.conn),
    )
    .await?;
    let mode = if running {
        wanted
    } else {
        Mode::CrashConsistent
    };
    Ok((running, plan, mode))
}

/// How one snapshot of a source is taken ([`snapshot_source`]).
pub(crate) struct Snap<'a> {
    /// Backup mode around it, or a checkpoint only (a running source).
    pub mode: Mode,
    /// Whether the source runs (a stopped one is only snapshotted).
    pub running: bool,
    /// The ZFS snapshot name (after `@`), for every dataset.
    pub name: &'a str,
    /// betterpg's user properties of the snapshots.
    pub props: &'a [(&'a str, &'a str)],
    /// The backup's label.
    pub label: &'a str,
    /// Crash-consistent from a running source: skip the `CHECKPOINT` when
    /// the source wrote at most this much WAL since its last one
    /// ([`crate::pg::backup::checkpoint_unless_recent`]); `None`: always
    /// checkpoint.
    pub checkpoint_max_wal: Option<u64>,
    /// Leave the backup running after the snapshot: the caller stops it
    /// (a branch does, while it clones the snapshot meanwhile).
    pub defer_stop: bool,
}

/// Steps 1-3 of the recipe, for a branch and for a named snapshot: one
/// atomic snapshot of every dataset of `src` (its tablespaces' as
/// `plan` says), inside backup mode for a running source in
/// application-consistent mode (the session is left in `session`, to
/// be finished once its WAL is safe), after a `CHECKPOINT` in
/// crash-consistent mode, as it is for a stopped source. Returns what
/// `pg_backup_stop` said, when in backup mode. `taken` is set once the
/// snapshots exist (so a caller undoes them even when a later step fails).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn snapshot_source(
    ctx: &Context,
    src: &Entry,
    src_spec: &InstanceSpec,
    plan: &tablespace::Plan,
    snap: Snap<'_>,
    session: &mut Option<BackupSession>,
    taken: &mut bool,
    timer: &mut Timer,
    checkpoint: &mut Option<CheckpointDecision>,
) -> Result<Option<BackupStop>> {
    let datasets = plan.snapshot_datasets(&src.dataset);
    if snap.running && snap.mode == Mode::ApplicationConsistent {
        *session = Some(if src.kind == Kind::Replica {
            // On the standby: its restartpoint is the start; nothing is
            // asked of the primary.
            BackupSession::start_on_standby(&src_spec.conn, snap.label).await?
        } else {
            BackupSession::start(&src_spec.conn, snap.label).await?
        });
        timer.lap("backup_start");
        fault::point("after_backup_start").await?;
    } else if snap.running {
        let c = src_spec.conn.connect().await?;
        // The right to CHECKPOINT is checked whether or not this branch
        // needs one, so that a role without it fails the same clear way
        // (saying what to grant) before anything is made, not later.
        let version = crate::pg::backup::server_version_num(&c).await?;
        let missing: Vec<String> = crate::pg::backup::missing_backup_rights(&c, version)
            .await?
            .into_iter()
            .filter(|g| g.contains("pg_checkpoint"))
            .collect();
        if !missing.is_empty() {
            return Err(crate::pg::backup::missing_rights_error(
                &src_spec.conn.user,
                &missing,
            ));
        }
        // 0: always checkpoint.
        let max = snap.checkpoint_max_wal.unwrap_or(0);
        *checkpoint = Some(crate::pg::backup::checkpoint_unless_recent(&c, max).await?);
        drop(c);
        timer.lap("checkpoint");
    }
    ctx.storage
        .snapshot(&datasets, snap.name, snap.props)
        .await
        .map_err(|e| plan.explain_snapshot_error(&src.dataset, e))?;
    *taken = true;
    timer.lap("snapshot");
    fault::point("after_snapshot").await?;
    let mut stop = None;
    if let Some(session) = session.as_mut().filter(|_| !snap.defer_stop) {
        stop = Some(session.stop().await?);
        timer.lap("backup_stop");
        fault::point("after_backup_stop").await?;
    }
    Ok(stop)
}

/// A backup left running after its snapshot: where its WAL is read once
/// it is stopped ([`Handoff::live`]).
struct PendingStop {
    wal: DataDir,
    seg_size: u64,
    standby: bool,
}

/// What a clone needs besides its snapshot to recover as a base backup:
/// the label, the map, and the WAL from the backup's start to its stop.
struct Handoff {
    label: String,
    spcmap: String,
    segments: Vec<String>,
    /// The backup's timeline, start and stop (the end of its last
    /// record): only the pages between them can differ in the clone
    /// ([`wal::copy_backup_wal`]); `None` copies `segments` whole.
    range: Option<(u32, wal::Lsn, wal::Lsn)>,
    seg_size: u64,
    /// Where the segments are: the live source's `pg_wal`, or a named
    /// snapshot's kept WAL.
    wal: DataDir,
}

impl Handoff {
    /// From a backup of the live source whose WAL directory is `wal`.
    /// `standby`: the backup was taken on a standby.
    fn live(stop: BackupStop, seg_size: u64, wal: DataDir, standby: bool) -> Result<Handoff> {
        let label = wal::parse_backup_label(&stop.labelfile)?;
        // A backup on a standby of an idle primary can stop exactly at a
        // segment boundary, before the next segment exists: the WAL it
        // needs ends with the previous one (the stop LSN is an end).
        let stop_lsn = if standby && stop.stop_lsn % seg_size == 0 {
            stop.stop_lsn.saturating_sub(1).max(label.start_lsn)
        } else {
            stop.stop_lsn
        };
        Ok(Handoff {
            segments: wal::segments_between(label.timeline, label.start_lsn, stop_lsn, seg_size),
            range: Some((label.timeline, label.start_lsn, stop_lsn)),
            seg_size,
            wal,
            label: stop.labelfile,
            spcmap: stop.spcmapfile,
        })
    }
}

/// Directory inside a point-in-time branch's data directory holding the
/// archived WAL its replay reads (copies: the branch never reaches its
/// source's archive); removed once the branch is promoted.
const RESTORE_DIR: &str = "betterpg_restore_wal";

/// The recipe of a branch `--at` a point in time: the newest base of the
/// source consistent before the target is cloned, the archived WAL from
/// the base on is copied into the clone, and the private start replays it
/// to exactly the target (`recovery_target_time`/`_lsn`, inclusive), then
/// promotes. The source is only asked to close its current WAL segment.
#[allow(clippy::too_many_arguments)]
async fn run_pitr(
    ctx: &Context,
    src: &Entry,
    src_spec: &InstanceSpec,
    running: bool,
    entry: &Entry,
    opts: BranchOptions,
    phase: &PrivatePlan,
    target: Target,
    undo: &mut Undo,
    timer: &mut Timer,
) -> Result<(Mode, bool, u64, IsolationReport, Option<MaskingReport>)> {
    let (meta, window, archive) = retain::prepare_branch_at(ctx, src, src_spec, running).await?;
    timer.lap("seal");
    let out_of_window = |w: Option<crate::pitr::Window>| {
        let (from, to) = w
            .map(|w| w.describe(target))
            .unwrap_or_else(|| ("none".into(), "none".into()));
        Error::OutOfWindow {
            name: src.name.clone(),
            target: target.to_string(),
            from,
            to,
        }
    };
    if !window.is_some_and(|w| w.contains(target)) {
        return Err(out_of_window(window));
    }
    let base = base_for(&meta, target)
        .ok_or_else(|| out_of_window(window))?
        .clone();
    crate::space::prepare(
        &*ctx.storage,
        &ctx.config,
        &ctx.home,
        crate::space::reserve_for(&ctx.config, opts.quota),
    )
    .await?;
    timer.lap("space");
    let (mp, data_dir, user) = clone_and_chown(
        ctx,
        entry,
        &src.name,
        &base.snapshot,
        Mode::ApplicationConsistent,
        opts.quota,
        &mut undo.clone,
        |step| timer.lap(step),
    )
    .await?;
    timer.lap("chown");
    let dd = DataDir::open(&data_dir)?;
    let mut isolation = isolate::prepare_clone(&dd, &user)?;
    cluster::write_owned(&dd, "backup_label", base.label.as_bytes(), &user)?;
    // The archived WAL the replay reads, copied into the clone: the
    // branch's restore_command reads only its own copy.
    let names: Vec<String> = archive
        .list()?
        .into_iter()
        .filter(|(_, t)| *t == crate::pg::datadir::EntryType::File)
        .map(|(n, _)| n)
        .collect();
    let segs = crate::pitr::segments_for(names.iter().map(String::as_str), &meta, &base, target);
    dd.remove(RESTORE_DIR)?;
    let restore = dd.ensure_subdir(RESTORE_DIR, Some(&user))?;
    let mut wal_bytes = wal::copy_segments(&archive, &restore, &segs, meta.segment_size, &user)?;
    if src.kind == Kind::Replica {
        // A standby closes no segment on demand: the tail its archive
        // lacks yet (through its last replayed transaction) is in its
        // pg_wal, received before it was replayed.
        let tail = crate::pitr::replica_tail(&segs, &meta, &base, target);
        if !tail.is_empty() {
            let live = DataDir::open(&src_spec.data_dir)?.subdir("pg_wal")?;
            wal_bytes += wal::copy_segments(&live, &restore, &tail, meta.segment_size, &user)?;
        }
        // The primary's access rules name its own networks.
        cluster::write_owned(&dd, "pg_hba.conf", BRANCH_OF_REPLICA_HBA.as_bytes(), &user)?;
    }
    if src.kind == Kind::Attached {
        // Its receiver writes the segment under way as NAME.partial: the
        // tail through betterpg's own commit (the seal) is copied from
        // there.
        let tail = crate::pitr::replica_tail(&segs, &meta, &base, target);
        wal_bytes +=
            retain::copy_attached_tail(&archive, &restore, &tail, meta.segment_size, &user)?;
        // Production's rules and roles stay out of the branch.
        cluster::write_owned(
            &dd,
            "pg_hba.conf",
            if phase.rotate {
                isolate::ATTACHED_ROTATED_BRANCH_HBA
            } else {
                isolate::ATTACHED_BRANCH_HBA
            }
            .as_bytes(),
            &user,
        )?;
    }
    cluster::write_owned(&dd, "recovery.signal", b"", &user)?;
    timer.lap("wal_copy");
    tablespace::check_links(&entry.name, &data_dir, &mp)?;
    // Replay while nothing can connect (no standby connections either:
    // the start returns once the branch is promoted).
    let recovery = format!(
        "restore_command = 'cp \"{RESTORE_DIR}/%f\" \"%p\"'\nhot_standby = off\n{}",
        target.recovery_settings()
    );
    let mut private_steps = Vec::new();
    let mut masking = None;
    // A database's own pg_wal (point-in-time branches are of databases).
    let pitr_wal = dd.subdir("pg_wal")?;
    let (isolated, reserved) = tokio::join!(
        private::run(
            ctx,
            entry,
            &dd,
            &pitr_wal,
            &data_dir,
            &recovery,
            phase,
            &mut isolation,
            &mut masking,
            &mut undo.started,
            &mut private_steps
        ),
        crate::space::reserve(&*ctx.storage, &ctx.config, &entry.dataset, opts.quota)
    );
    isolated?;
    reserved?;
    timer.extend(
        private_steps
            .into_iter()
            .map(|(step, millis)| StepTiming { step, millis })
            .collect(),
    );
    timer.lap("reserve_wait");
    // Promoted: its own timeline, no restore_command any more (the
    // settings file is written anew below), and no copy of the archive.
    dd.remove(RESTORE_DIR)?;
    dd.remove("recovery.signal")?;
    fault::point("after_isolate").await?;
    cluster::write_settings(
        &dd,
        &user,
        entry.port,
        &ctx.config.listen_address,
        &ctx.profile_for(entry),
    )?;
    if entry.rewindable {
        take_rewind_point(ctx, entry).await?;
        timer.lap("rewind_point");
    }
    start(ctx, entry, &data_dir, undo).await?;
    timer.lap("start");
    fault::point("after_start").await?;
    fault::point("before_catalog").await?;
    Ok((
        Mode::ApplicationConsistent,
        running,
        wal_bytes,
        isolation,
        masking,
    ))
}

/// Undo a failed branch in reverse order. Best effort: each step is
/// attempted even if an earlier one failed, and what could not be removed
/// is logged (and found later by `gc` through the ZFS properties).
async fn rollback(ctx: &Context, undo: Undo, name: &str) {
    if let Some(session) = undo.session {
        if let Err(e) = session.finish().await {
            tracing::warn!("ending the backup session after a failure: {e} (closing the connection ends it server-side)");
        }
    }
    if let Some(spec) = &undo.started {
        let stopped = match ctx.runtime(&spec.runtime) {
            Ok(rt) => rt.stop(spec).await,
            Err(e) => Err(e),
        };
        if let Err(e) = stopped {
            tracing::warn!("stopping the half-made branch {name}: {e}");
        }
    }
    if let Some(ds) = &undo.clone {
        if let Err(e) = destroy_with_retry(&*ctx.storage, ds, true).await {
            tracing::warn!("destroying clone {ds}: {e}");
        }
    }
    if let Some(snap) = &undo.snapshot {
        if let Err(e) = destroy_with_retry(&*ctx.storage, snap, false).await {
            tracing::warn!("destroying snapshot {snap}: {e}");
        }
    }
    if let Err(e) = tablespace::destroy_snapshots(&*ctx.storage, &undo.tablespaces.snapshots).await
    {
        tracing::warn!("destroying the tablespace snapshots of {name}: {e}");
    }
    let _ = std::fs::remove_file(ctx.home.log_path(name));
    ctx.home.remove_secret(name);
    if let Err(e) = ctx.unreserve(name) {
        tracing::warn!("removing the catalog reservation of {name}: {e}");
    }
}

/// The name of the snapshot a branch is cloned from: `SOURCE@bpg-NAME-MILLIS`.
/// Milliseconds, not seconds: a branch destroyed (or reset) and made again
/// within the same second must not reuse the name of a snapshot that may
/// still exist (a destroy that could not remove it, a gc not yet run).
pub(crate) fn snapshot_name(source_dataset: &str, name: &str) -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("{source_dataset}@bpg-{name}-{millis}")
}
