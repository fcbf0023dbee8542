//! Named snapshots: take one (`bpg snapshot SRC [--name NAME]`), list them
//! (`bpg snapshots`), destroy one (`bpg snapshot destroy SRC@NAME`), apply
//! retention (`bpg snapshot --prune`), and the schedule's pass (take what
//! the policy says is due, then prune) that the daemon runs.
//!
//! A named snapshot is taken with the branch recipe's steps 1-3
//! ([`super::branch::snapshot_source`]): one atomic ZFS snapshot of every
//! dataset of the source, inside backup mode for a running source
//! (application-consistent, the default), after a `CHECKPOINT` with
//! `--fast`, as it is for a stopped source. What a branch of it will need
//! and the ZFS snapshot does not hold is kept beside it: the backup label
//! and tablespace map in its catalog record, and the WAL from the backup's
//! start to its stop in a dataset of betterpg's
//! (`ROOT/_snapshots/SOURCE.SNAP`, readable by root only). So it can be
//! branched (`bpg branch SRC@NAME dev`) whatever the source did since:
//! moved on, stopped. A source with named snapshots is not destroyed
//! without `--force` (see `ops::destroy`).

use std::time::Instant;

use serde::Serialize;

use super::branch::{snapshot_source, source_state, Snap, StepTiming, Timer};
use super::destroy::destroy_kept;
use crate::catalog::{EntryState, KeptBackup, Mode, SnapshotRecord, State};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::fault;
use crate::name::validate_name;
use crate::pg::datadir::DataDir;
use crate::pg::{wal, BackupSession};
use crate::retention::{self, Candidate, KeepReason, RetentionPolicy};
use crate::storage::{destroy_with_retry, DatasetInfo};
use crate::util::now_unix;

/// The dataset under the root that holds the kept WAL of named snapshots.
pub const SNAPSHOTS_DATASET: &str = "_snapshots";

/// Options of [`crate::BranchManager::snapshot`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SnapshotOptions {
    /// Its name (validated like a branch name); `None`: the time, UTC,
    /// `YYYYMMDD-HHMMSS` (sortable; `-N` added when taken), and retention
    /// may remove it (see [`crate::retention`]).
    pub name: Option<String>,
    /// How to snapshot a running source (a stopped one is always
    /// snapshotted as it is: crash-consistent, nothing to recover).
    pub mode: Mode,
}

impl SnapshotOptions {
    /// Options with this name.
    pub fn named(name: impl Into<String>) -> Self {
        SnapshotOptions {
            name: Some(name.into()),
            ..Default::default()
        }
    }

    /// The same options with another mode.
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }
}

/// A named snapshot as `bpg snapshots` reports it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SnapshotInfo {
    /// The database or branch it was taken of.
    pub source: String,
    /// Its name.
    pub name: String,
    /// `SOURCE@NAME`, as `bpg branch` and `bpg reset --to` take it.
    pub full_name: String,
    /// Unix time it was taken.
    pub created_at: u64,
    /// How it was taken (JSON: "application-consistent" or
    /// "crash-consistent").
    pub mode: Mode,
    /// True when betterpg chose its name (retention may remove it).
    pub auto: bool,
    /// Ready, creating, destroying, or incomplete (left half-made by a
    /// process that died; `bpg gc` removes it).
    pub state: EntryState,
    /// Whether the source was running when it was taken.
    pub source_was_running: bool,
    /// Pool bytes only it holds: its ZFS snapshots' `used` plus its kept
    /// WAL.
    pub used_bytes: u64,
    /// Bytes of kept WAL (within `used_bytes`).
    pub wal_bytes: u64,
    /// Bytes its data directory's snapshot refers to.
    pub referenced_bytes: u64,
    /// The branches cloned from it, by name.
    pub branches: Vec<String>,
    /// The ZFS snapshot of the source's dataset.
    pub zfs_snapshot: String,
    /// The dataset holding its kept WAL (application-consistent snapshots
    /// of a running source), else null.
    pub wal_dataset: Option<String>,
    /// Where it is consistent, for an application-consistent snapshot of a
    /// running source (the backup's stop LSN), else null.
    pub stop_lsn: Option<String>,
    /// Timeline of that backup, else null.
    pub timeline: Option<u32>,
}

/// What [`crate::BranchManager::snapshot`] returns.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotReport {
    /// The new snapshot.
    pub snapshot: SnapshotInfo,
    /// Each step with its time, in order.
    pub timings: Vec<StepTiming>,
    /// Whole call, milliseconds.
    pub total_millis: f64,
}

/// One snapshot retention looked at.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PruneItem {
    /// `SOURCE@NAME`.
    pub snapshot: String,
    /// Unix time it was taken.
    pub created_at: u64,
    /// Why it is kept (JSON: "no_policy", "named", "last", "hourly",
    /// "daily", "branches"); empty for one pruned.
    pub reasons: Vec<KeepReason>,
}

/// What [`crate::BranchManager::prune_snapshots`] did (or would do).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PruneReport {
    /// True when nothing was changed.
    pub dry_run: bool,
    /// Removed (or, in a dry run, to be removed).
    pub pruned: Vec<PruneItem>,
    /// Kept, each with its reasons.
    pub kept: Vec<PruneItem>,
}

/// A source the schedule could not snapshot or prune, and why.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PolicyFailure {
    /// The database or branch.
    pub source: String,
    /// What went wrong.
    pub error: String,
}

/// What one pass of the snapshot schedule did
/// ([`crate::BranchManager::run_snapshot_policy`]).
#[derive(Debug, Clone, Serialize)]
pub struct PolicyReport {
    /// True when nothing was changed (then `due` lists what would be taken).
    pub dry_run: bool,
    /// Sources whose policy called for a snapshot now.
    pub due: Vec<String>,
    /// The snapshots taken.
    pub taken: Vec<SnapshotInfo>,
    /// What retention removed and kept.
    pub prune: PruneReport,
    /// Sources that failed (the others were still done).
    pub failures: Vec<PolicyFailure>,
}

/// The retention policy of an entry (its `keep_*` settings, `bpg config`).
pub(crate) fn policy_of(e: &crate::catalog::Entry) -> RetentionPolicy {
    RetentionPolicy {
        keep_last: e.settings.keep_last,
        keep_hourly: e.settings.keep_hourly,
        keep_daily: e.settings.keep_daily,
    }
}

/// The default name of a snapshot taken at `unix` seconds: the UTC time,
/// `YYYYMMDD-HHMMSS`, which sorts as time does.
pub fn default_name(unix: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix);
    // "2026-12-03T16:45:12Z" -> "20261203-164512"
    let s = humantime::format_rfc3339_seconds(t).to_string();
    s.trim_end_matches('Z')
        .replace(['-', ':'], "")
        .replace('T', "-")
}

/// What a snapshot being taken has made, to undo on failure.
#[derive(Default)]
struct Undo {
    session: Option<BackupSession>,
    snapshots: Vec<String>,
    wal_dataset: Option<String>,
}

/// Take a named snapshot of `source` (a database or branch).
pub(crate) async fn snapshot(
    ctx: &Context,
    source: &str,
    opts: SnapshotOptions,
) -> Result<SnapshotReport> {
    let t0 = Instant::now();
    validate_name(source)?;
    if let Some(n) = &opts.name {
        validate_name(n)?;
    }
    let src = ctx.ready_entry(source)?;
    // A replica is not rebuilt under its snapshot: held to the end.
    let _replica_lock = ctx.replica_lock(&src, false)?;
    let src = ctx.ready_entry(source)?;
    let now = now_unix();
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    // Reserve the name: a record in state creating (gc removes it and
    // what it made if this process dies).
    let mut rec = {
        let mut cat = ctx.lock()?;
        match cat.get(source) {
            Some(e) if e.is_ready() => {}
            Some(e) => {
                return Err(Error::InvalidState(format!(
                    "{source:?} is not ready (it is {})",
                    e.state.label()
                )))
            }
            None => return Err(Error::not_found(source)),
        }
        let name = match &opts.name {
            Some(n) => n.clone(),
            None => {
                let base = default_name(now);
                let mut n = base.clone();
                let mut i = 1;
                while cat.snapshot(source, &n).is_some() {
                    n = format!("{base}-{i}");
                    i += 1;
                }
                n
            }
        };
        let zfs_snap = format!("bpgsnap-{name}-{millis}");
        let rec = SnapshotRecord {
            source: source.to_string(),
            name,
            auto: opts.name.is_none(),
            created_at: now,
            mode: opts.mode,
            source_was_running: false,
            zfs_snapshot: format!("{}@{zfs_snap}", src.dataset),
            tablespace_snapshots: Vec::new(),
            wal_dataset: None,
            backup: None,
            pg_major: src.pg_major,
            state: State::creating(),
        };
        cat.insert_snapshot(rec.clone())?;
        cat.save()?;
        rec
    };
    let mut undo = Undo::default();
    let mut timer = Timer::new();
    let taken = take(ctx, &src, &opts, &mut rec, &mut undo, &mut timer).await;
    let taken = match taken {
        Ok(()) => mark_ready(ctx, &rec),
        Err(e) => Err(e),
    };
    if let Err(e) = taken {
        rollback(ctx, undo, &rec).await;
        return Err(e);
    }
    Ok(SnapshotReport {
        snapshot: info(ctx, source, &rec.name).await?,
        timings: timer.steps,
        total_millis: t0.elapsed().as_secs_f64() * 1000.0,
    })
}

/// Record the snapshot as made.
fn mark_ready(ctx: &Context, rec: &SnapshotRecord) -> Result<()> {
    let mut cat = ctx.lock()?;
    let r = cat
        .snapshot_mut(&rec.source, &rec.name)
        .ok_or_else(|| Error::Internal(format!("snapshot {} vanished", rec.full_name())))?;
    *r = SnapshotRecord {
        state: State::Ready,
        ..rec.clone()
    };
    cat.save()
}

/// The recipe of a named snapshot; fills in `rec`.
async fn take(
    ctx: &Context,
    src: &crate::catalog::Entry,
    opts: &SnapshotOptions,
    rec: &mut SnapshotRecord,
    undo: &mut Undo,
    timer: &mut Timer,
) -> Result<()> {
    let spec = ctx.spec(src).await?;
    let (running, plan, mode) = source_state(ctx, src, &spec, opts.mode).await?;
    timer.lap("prepare");
    let home = ctx.home.root().to_string_lossy().into_owned();
    let snap_name = rec.zfs_snap_name().to_string();
    let props = [
        ("managed", "yes"),
        ("named", rec.name.as_str()),
        ("home", home.as_str()),
    ];
    let label = format!("betterpg snapshot {}", rec.full_name());
    let mut made = false;
    let stop = snapshot_source(
        ctx,
        src,
        &spec,
        &plan,
        Snap {
            mode,
            running,
            name: &snap_name,
            props: &props,
            label: &label,
            // A kept snapshot is branched many times: always checkpoint.
            checkpoint_max_wal: None,
            defer_stop: false,
        },
        &mut undo.session,
        &mut made,
        timer,
        &mut None,
    )
    .await;
    if made {
        undo.snapshots.push(rec.zfs_snapshot.clone());
        undo.snapshots.extend(plan.snapshots(&snap_name));
    }
    let stop = stop?;
    rec.mode = mode;
    rec.source_was_running = running;
    rec.tablespace_snapshots = plan.snapshots(&snap_name);
    if let (Some(stop), Some(session)) = (stop, undo.session.as_ref()) {
        // Keep the WAL from the backup's start to its stop beside the
        // snapshot, in a dataset of betterpg's.
        let seg_size = session.wal_segment_size;
        let label = wal::parse_backup_label(&stop.labelfile)?;
        let segments =
            wal::segments_between(label.timeline, label.start_lsn, stop.stop_lsn, seg_size);
        let parent = format!("{}/{SNAPSHOTS_DATASET}", ctx.config.dataset);
        crate::storage::create_missing(
            &*ctx.storage,
            &parent,
            &[("managed", "snapshots"), ("home", &home)],
        )
        .await?;
        let ds = format!("{parent}/{}.{snap_name}", rec.source);
        let created = rec.created_at.to_string();
        ctx.storage
            .create(
                &ds,
                None,
                &[
                    ("managed", "yes"),
                    ("kind", "snapshot-wal"),
                    ("dataset", &ds),
                    ("parent", &rec.source),
                    ("home", &home),
                    ("created", &created),
                ],
            )
            .await?;
        undo.wal_dataset = Some(ds.clone());
        let mp = ctx.mountpoint(&ds).await?;
        // Production's WAL: root's only.
        std::fs::set_permissions(&mp, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(|e| Error::io(format!("chmod 0700 {}", mp.display()), e))?;
        let kept = DataDir::open(&mp)?.ensure_subdir("pg_wal", None)?;
        let src_wal = match &plan.wal {
            Some(w) => DataDir::open(&w.location)?,
            None => DataDir::open(&spec.data_dir)?.subdir("pg_wal")?,
        };
        wal::copy_segments(&src_wal, &kept, &segments, seg_size, &ctx.user)?;
        timer.lap("wal_keep");
        fault::point("snapshot_after_wal").await?;
        if let Some(session) = undo.session.take() {
            session.finish().await?;
        }
        rec.wal_dataset = Some(ds);
        rec.backup = Some(KeptBackup {
            start_lsn: format_lsn(label.start_lsn),
            stop_lsn: format_lsn(stop.stop_lsn),
            timeline: label.timeline,
            wal_segment_size: seg_size,
            wal_segments: segments,
            label: stop.labelfile,
            tablespace_map: stop.spcmapfile,
        });
    }
    fault::point("snapshot_before_catalog").await?;
    Ok(())
}

/// An LSN as PostgreSQL prints it (`X/Y`, hex).
fn format_lsn(lsn: wal::Lsn) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// Undo a failed snapshot: end the backup, destroy what was made, forget
/// the record. Best effort; what is left is found by `gc`.
async fn rollback(ctx: &Context, undo: Undo, rec: &SnapshotRecord) {
    if let Some(session) = undo.session {
        if let Err(e) = session.finish().await {
            tracing::warn!("ending the backup session after a failure: {e}");
        }
    }
    if let Some(ds) = &undo.wal_dataset {
        if let Err(e) = destroy_with_retry(&*ctx.storage, ds, true).await {
            tracing::warn!("destroying {ds}: {e}");
        }
    }
    for s in &undo.snapshots {
        if let Err(e) = destroy_with_retry(&*ctx.storage, s, false).await {
            tracing::warn!("destroying snapshot {s}: {e}");
        }
    }
    match ctx.lock() {
        Ok(mut cat) => {
            cat.remove_snapshot(&rec.source, &rec.name);
            if let Err(e) = cat.save() {
                tracing::warn!("forgetting snapshot {}: {e}", rec.full_name());
            }
        }
        Err(e) => tracing::warn!("forgetting snapshot {}: {e}", rec.full_name()),
    }
}

/// The [`SnapshotInfo`] of `rec`, with the pool's listing `all`.
fn info_of(rec: &SnapshotRecord, branches: Vec<String>, all: &[DatasetInfo]) -> SnapshotInfo {
    let find = |n: &str| all.iter().find(|d| d.name == n);
    let main = find(&rec.zfs_snapshot);
    let ts: u64 = rec
        .tablespace_snapshots
        .iter()
        .filter_map(|s| find(s))
        .map(|d| d.used)
        .sum();
    let wal_bytes = rec
        .wal_dataset
        .as_deref()
        .and_then(find)
        .map(|d| d.used)
        .unwrap_or(0);
    SnapshotInfo {
        source: rec.source.clone(),
        name: rec.name.clone(),
        full_name: rec.full_name(),
        created_at: rec.created_at,
        mode: rec.mode,
        auto: rec.auto,
        state: rec.state.summary(),
        source_was_running: rec.source_was_running,
        used_bytes: main.map(|d| d.used).unwrap_or(0) + ts + wal_bytes,
        wal_bytes,
        referenced_bytes: main.map(|d| d.referenced).unwrap_or(0),
        branches,
        zfs_snapshot: rec.zfs_snapshot.clone(),
        wal_dataset: rec.wal_dataset.clone(),
        stop_lsn: rec.backup.as_ref().map(|b| b.stop_lsn.clone()),
        timeline: rec.backup.as_ref().map(|b| b.timeline),
    }
}

/// The named snapshots of `source` (every one when `None`), by source,
/// oldest first.
pub(crate) async fn snapshots(ctx: &Context, source: Option<&str>) -> Result<Vec<SnapshotInfo>> {
    if let Some(s) = source {
        ctx.entry(s)?;
    }
    let (recs, deps): (Vec<SnapshotRecord>, Vec<Vec<String>>) = {
        let cat = ctx.lock()?;
        cat.snapshots()
            .filter(|r| source.is_none_or(|s| r.source == s))
            .map(|r| {
                let d = cat
                    .dependents_of(r)
                    .iter()
                    .map(|e| e.name.clone())
                    .collect();
                (r.clone(), d)
            })
            .unzip()
    };
    if recs.is_empty() {
        return Ok(Vec::new());
    }
    let all = ctx.storage.list(&ctx.config.dataset).await?;
    Ok(recs
        .iter()
        .zip(deps)
        .map(|(r, d)| info_of(r, d, &all))
        .collect())
}

/// One named snapshot.
pub(crate) async fn info(ctx: &Context, source: &str, name: &str) -> Result<SnapshotInfo> {
    snapshots(ctx, Some(source))
        .await?
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| snapshot_not_found(source, name))
}

fn snapshot_not_found(source: &str, name: &str) -> Error {
    Error::NotFound {
        what: "snapshot",
        name: format!("{source}@{name}"),
        hint: format!(": `bpg snapshots {source}` lists the snapshots of {source}"),
    }
}

/// What [`crate::BranchManager::destroy_snapshot`] removed.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SnapshotDestroyReport {
    /// `SOURCE@NAME`.
    pub snapshot: String,
    /// The branches destroyed with it (`force`), with their own branches.
    pub branches_destroyed: Vec<String>,
}

/// Destroy the named snapshot `source@name`. Refused while branches were
/// cloned from it, unless `force`: then those branches (and their own
/// branches) are destroyed first, as `bpg destroy --force` would.
pub(crate) async fn destroy_snapshot(
    ctx: &Context,
    source: &str,
    name: &str,
    force: bool,
) -> Result<SnapshotDestroyReport> {
    validate_name(source)?;
    validate_name(name)?;
    let (rec, deps, all_deps) = {
        let cat = ctx.lock()?;
        let rec = cat
            .snapshot(source, name)
            .cloned()
            .ok_or_else(|| snapshot_not_found(source, name))?;
        if rec.state.busy_elsewhere() {
            return Err(Error::InvalidState(format!(
                "snapshot {} is being changed by process {}; wait for it",
                rec.full_name(),
                rec.state.worker().unwrap_or_default()
            )));
        }
        let deps: Vec<String> = cat
            .dependents_of(&rec)
            .iter()
            .map(|e| e.name.clone())
            .collect();
        let mut all = Vec::new();
        for d in &deps {
            all.extend(cat.descendants_deepest_first(d));
            all.push(d.clone());
        }
        (rec, deps, all)
    };
    if !deps.is_empty() && !force {
        return Err(Error::HasDependents {
            name: rec.full_name(),
            dependents: format!(
                "branches {} were cloned from it; --force destroys them too",
                all_deps.join(", ")
            ),
        });
    }
    for d in &deps {
        super::destroy::destroy(ctx, d, true).await?;
    }
    remove(ctx, &rec).await?;
    Ok(SnapshotDestroyReport {
        snapshot: rec.full_name(),
        branches_destroyed: all_deps,
    })
}

/// Remove a named snapshot that nothing depends on: mark it destroying,
/// destroy what it holds, forget it.
async fn remove(ctx: &Context, rec: &SnapshotRecord) -> Result<()> {
    {
        let mut cat = ctx.lock()?;
        let Some(cur) = cat.snapshot(&rec.source, &rec.name).cloned() else {
            return Ok(());
        };
        let deps: Vec<String> = cat
            .dependents_of(&cur)
            .iter()
            .map(|e| e.name.clone())
            .collect();
        if !deps.is_empty() {
            return Err(Error::HasDependents {
                name: cur.full_name(),
                dependents: format!("branches {} were cloned from it", deps.join(", ")),
            });
        }
        if let Some(r) = cat.snapshot_mut(&rec.source, &rec.name) {
            r.state = State::destroying();
        }
        cat.save()?;
    }
    destroy_kept(ctx, rec).await?;
    let mut cat = ctx.lock()?;
    cat.remove_snapshot(&rec.source, &rec.name);
    cat.save()
}

/// Apply each source's retention policy (only `source` when given):
/// remove the automatic snapshots it does not keep, never one a branch
/// was cloned from. A source without a policy loses nothing.
pub(crate) async fn prune(
    ctx: &Context,
    source: Option<&str>,
    dry_run: bool,
) -> Result<PruneReport> {
    if let Some(s) = source {
        ctx.entry(s)?;
    }
    let mut report = PruneReport {
        dry_run,
        pruned: Vec::new(),
        kept: Vec::new(),
    };
    let mut victims = Vec::new();
    {
        let cat = ctx.lock()?;
        let mut sources: Vec<&str> = cat
            .snapshots()
            .map(|r| r.source.as_str())
            .filter(|s| source.is_none_or(|x| x == *s))
            .collect();
        sources.dedup();
        for s in sources {
            let policy = cat.get(s).map(policy_of).unwrap_or_default();
            let recs: Vec<&SnapshotRecord> = cat
                .snapshots_of(s)
                .into_iter()
                .filter(|r| r.state == State::Ready)
                .collect();
            let cands: Vec<Candidate> = recs
                .iter()
                .map(|r| Candidate {
                    name: r.name.clone(),
                    created_at: r.created_at,
                    auto: r.auto,
                    pinned: !cat.dependents_of(r).is_empty(),
                })
                .collect();
            for (r, reasons) in recs.iter().zip(retention::decide(&policy, &cands)) {
                let item = PruneItem {
                    snapshot: r.full_name(),
                    created_at: r.created_at,
                    reasons,
                };
                if item.reasons.is_empty() {
                    victims.push((*r).clone());
                    report.pruned.push(item);
                } else {
                    report.kept.push(item);
                }
            }
        }
    }
    if !dry_run {
        for r in &victims {
            remove(ctx, r).await?;
        }
    }
    Ok(report)
}

/// One pass of the snapshot schedule, for the daemon (or a cron job):
/// for every ready database and branch (only `source` when given) whose
/// policy calls for it ([`RetentionPolicy::due`]: `keep_hourly` takes one
/// an hour, else `keep_daily` one a day), take an automatic snapshot,
/// then prune by the policy. One source's failure does not stop the
/// others; it is reported. With `dry_run`, says what is due and what
/// would be pruned, changing nothing.
pub(crate) async fn run_policy(
    ctx: &Context,
    source: Option<&str>,
    dry_run: bool,
) -> Result<PolicyReport> {
    if let Some(s) = source {
        ctx.entry(s)?;
    }
    let now = now_unix();
    let due: Vec<String> = {
        let cat = ctx.lock()?;
        cat.entries()
            .filter(|e| e.is_ready() && source.is_none_or(|s| e.name == s))
            .filter(|e| {
                let newest = cat
                    .snapshots_of(&e.name)
                    .iter()
                    // One half-made by a process that is gone does not
                    // count: it is taken again (gc removes the remains).
                    .filter(|r| r.auto && r.state.is_live())
                    .map(|r| r.created_at)
                    .max();
                policy_of(e).due(newest, now)
            })
            .map(|e| e.name.clone())
            .collect()
    };
    let mut report = PolicyReport {
        dry_run,
        due: due.clone(),
        taken: Vec::new(),
        prune: PruneReport {
            dry_run,
            pruned: Vec::new(),
            kept: Vec::new(),
        },
        failures: Vec::new(),
    };
    if !dry_run {
        for s in &due {
            match snapshot(ctx, s, SnapshotOptions::default()).await {
                Ok(r) => report.taken.push(r.snapshot),
                Err(e) => report.failures.push(PolicyFailure {
                    source: s.clone(),
                    error: e.to_string(),
                }),
            }
        }
    }
    let sources: Vec<String> = {
        let cat = ctx.lock()?;
        let mut v: Vec<String> = cat
            .snapshots()
            .map(|r| r.source.clone())
            .filter(|s| source.is_none_or(|x| x == s))
            .collect();
        v.dedup();
        v
    };
    for s in sources {
        match prune(ctx, Some(&s), dry_run).await {
            Ok(p) => {
                report.prune.pruned.extend(p.pruned);
                report.prune.kept.extend(p.kept);
            }
            Err(e) => report.failures.push(PolicyFailure {
                source: s,
                error: e.to_string(),
            }),
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_are_the_utc_time_and_sort_as_it_does() {
        assert_eq!(default_name(0), "19700101-000000");
        assert_eq!(default_name(1_796_316_312), "20261203-164512");
        let a = default_name(1_796_316_312);
        let b = default_name(1_796_316_313);
        assert!(a < b && format!("{a}-1") < b);
        validate_name(&a).unwrap();
        assert_eq!(format_lsn(0x1_0000_0028), "1/28");
    }
}
