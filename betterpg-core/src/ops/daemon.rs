//! The scheduler (`bpg daemon`): one pass takes the snapshots the
//! retention policies call for and prunes, destroys expired entries
//! (children first, never a protected subtree), stops servers idle for
//! longer than their `idle_stop`, and watches replicas (state and lag; a
//! replica whose server died is started again). The loop runs a pass
//! every interval until told to stop.
//!
//! One daemon per home: a pass (and the whole loop) holds an exclusive
//! `flock` on `HOME/daemon.lock`; a second one fails at once with
//! [`Error::DaemonRunning`]. Every step is decided from the catalog, so a
//! pass killed half-way is finished by the next without doing anything
//! twice: a snapshot due this hour that was taken is not taken again (the
//! catalog has it), an expiry whose entries are marked `destroying` by a
//! process that is gone is taken up again (or by `gc`).
//!
//! See `docs/lifecycle.md`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fs4::fs_std::FileExt;
use serde::Serialize;

use super::destroy::{destroy_with, Scope};
use super::status::Replication;
use crate::catalog::{Entry, Kind};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::home::Home;
use crate::runtime::RunStatus;
use crate::util::now_unix;

/// Name of the daemon's lock file in the home.
pub const LOCK_FILE: &str = "daemon.lock";

/// How long the idle check waits for a server to answer.
const IDLE_QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Options of the daemon's loop ([`crate::BranchManager::run_daemon`]).
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// Time between the starts of two passes (a pass longer than this is
    /// followed by the next at once).
    pub interval: Duration,
    /// Say what each pass would do, changing nothing.
    pub dry_run: bool,
}

impl Default for DaemonOptions {
    /// One pass a minute, for real.
    fn default() -> Self {
        DaemonOptions {
            interval: Duration::from_secs(60),
            dry_run: false,
        }
    }
}

/// How an action of a pass ended (JSON: the snake-case name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionResult {
    /// Done.
    Done,
    /// A dry run: it would be done.
    DryRun,
    /// Not done, on purpose (the reason says why: protected, stopped ...).
    Skipped,
    /// Tried and failed (the reason is the error); the pass went on.
    Failed,
}

impl ActionResult {
    /// "done", "dry_run", "skipped" or "failed".
    pub fn as_str(&self) -> &'static str {
        match self {
            ActionResult::Done => "done",
            ActionResult::DryRun => "dry_run",
            ActionResult::Skipped => "skipped",
            ActionResult::Failed => "failed",
        }
    }
}

/// One thing a pass did (or would do, or declined): also one JSON line of
/// the daemon's log.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DaemonAction {
    /// When, RFC 3339 in UTC to the second.
    pub time: String,
    /// What: `snapshot`, `prune`, `expire`, `owner_gone`, `idle_stop`,
    /// `watch_replica`, `restart_replica`, `restart_receiver`.
    pub action: &'static str,
    /// The entry, or the snapshot (`SOURCE@NAME`) for `snapshot` and `prune`.
    pub name: String,
    /// How it ended.
    pub result: ActionResult,
    /// Why (or the error); `None` when there is nothing to add.
    pub reason: Option<String>,
    /// For `watch_replica`: the replica's state and lag (else `None`).
    pub replication: Option<Replication>,
}

impl DaemonAction {
    fn new(action: &'static str, name: impl Into<String>, result: ActionResult) -> Self {
        DaemonAction {
            time: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            action,
            name: name.into(),
            result,
            reason: None,
            replication: None,
        }
    }

    fn because(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
}

/// What one pass did ([`crate::BranchManager::daemon_pass`]).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PassReport {
    /// True when nothing was changed.
    pub dry_run: bool,
    /// Unix time the pass began.
    pub started_at: u64,
    /// Unix time it ended.
    pub finished_at: u64,
    /// True when a stop request ended it before every step was done
    /// (the step under way was finished).
    pub interrupted: bool,
    /// Every action, in order.
    pub actions: Vec<DaemonAction>,
}

impl PassReport {
    /// The actions that failed.
    pub fn failures(&self) -> impl Iterator<Item = &DaemonAction> {
        self.actions
            .iter()
            .filter(|a| a.result == ActionResult::Failed)
    }
}

/// A request to stop the daemon, shared between whoever asks (a signal
/// handler) and the loop: the loop finishes the step under way, ends the
/// pass, releases its lock and returns.
#[derive(Debug, Clone, Default)]
pub struct StopSignal {
    flag: Arc<AtomicBool>,
    notify: Arc<tokio::sync::Notify>,
}

impl StopSignal {
    /// A signal not raised yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ask the daemon to stop (idempotent).
    pub fn stop(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// True once [`StopSignal::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Wait until it is raised, or at most `d`.
    async fn wait(&self, d: Duration) {
        let notified = self.notify.notified();
        if self.is_stopped() {
            return;
        }
        let _ = tokio::time::timeout(d, notified).await;
    }
}

/// The daemon's lock on `HOME/daemon.lock`, held for the life of this
/// value (closing the file releases it, also when the process dies).
#[derive(Debug)]
pub struct DaemonLock {
    file: fs::File,
    path: PathBuf,
}

impl DaemonLock {
    /// Take the lock of `home` without waiting: when another process
    /// holds it, [`Error::DaemonRunning`] with the pid it recorded.
    pub fn acquire(home: &Home) -> Result<DaemonLock> {
        let path = home.root().join(LOCK_FILE);
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o644)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let taken = FileExt::try_lock_exclusive(&file)
            .map_err(|e| Error::io(format!("locking {}", path.display()), e))?;
        if !taken {
            let pid = fs::read_to_string(&path)
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse().ok());
            return Err(Error::DaemonRunning { lock: path, pid });
        }
        let _ = file.set_len(0);
        let _ = (&file).write_all(format!("{}\n", std::process::id()).as_bytes());
        Ok(DaemonLock { file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DaemonLock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
    }
}

/// One pass under the daemon's lock (taken here, released at the end).
/// `stop` ends it between steps, as it ends the loop's (`bpg daemon
/// --once` raises it on SIGTERM or SIGINT): the report then says
/// `interrupted`, and the next pass does what this one left.
pub(crate) async fn pass(
    ctx: &Context,
    dry_run: bool,
    stop: &StopSignal,
    on_action: &(dyn Fn(&DaemonAction) + Send + Sync),
) -> Result<PassReport> {
    let _lock = DaemonLock::acquire(&ctx.home)?;
    Ok(pass_locked(ctx, dry_run, stop, on_action).await)
}

/// The loop: a pass every `opts.interval` until `stop` is raised, under
/// the daemon's lock for the whole time. Each action is handed to
/// `on_action` as it happens.
pub(crate) async fn run(
    ctx: &Context,
    opts: DaemonOptions,
    stop: StopSignal,
    on_action: &(dyn Fn(&DaemonAction) + Send + Sync),
) -> Result<()> {
    if opts.interval.is_zero() {
        return Err(Error::Config(
            "the daemon's interval must be at least 1s".into(),
        ));
    }
    let _lock = DaemonLock::acquire(&ctx.home)?;
    while !stop.is_stopped() {
        let began = tokio::time::Instant::now();
        pass_locked(ctx, opts.dry_run, &stop, on_action).await;
        let next = began + opts.interval;
        stop.wait(next.saturating_duration_since(tokio::time::Instant::now()))
            .await;
    }
    Ok(())
}

/// Collects the actions of a pass and hands each on as it happens.
struct Log<'a> {
    actions: Vec<DaemonAction>,
    on_action: &'a (dyn Fn(&DaemonAction) + Send + Sync),
}

impl Log<'_> {
    fn push(&mut self, a: DaemonAction) {
        (self.on_action)(&a);
        self.actions.push(a);
    }

    fn error(&mut self, action: &'static str, name: &str, e: &Error) {
        self.push(DaemonAction::new(action, name, ActionResult::Failed).because(e.to_string()));
    }
}

/// One pass, the lock already held: every step, each failure logged and
/// the pass going on; `stop` ends it between steps.
async fn pass_locked(
    ctx: &Context,
    dry_run: bool,
    stop: &StopSignal,
    on_action: &(dyn Fn(&DaemonAction) + Send + Sync),
) -> PassReport {
    let started_at = now_unix();
    let mut log = Log {
        actions: Vec::new(),
        on_action,
    };
    let mut interrupted = false;
    for step in [Step::Snapshots, Step::Expiry, Step::Idle, Step::Replicas] {
        if stop.is_stopped() {
            interrupted = true;
            break;
        }
        let r = match step {
            Step::Snapshots => snapshots(ctx, dry_run, &mut log).await,
            Step::Expiry => match expiry(ctx, dry_run, stop, &mut log).await {
                Ok(()) => owners_gone(ctx, dry_run, &mut log).await,
                e => e,
            },
            Step::Idle => idle(ctx, dry_run, stop, &mut log).await,
            Step::Replicas => replicas(ctx, dry_run, stop, &mut log).await,
        };
        if let Err(e) = r {
            log.error(step.action(), "", &e);
        }
        if let Err(e) = crate::fault::point(step.fault_point()).await {
            log.error(step.action(), "", &e);
            interrupted = true;
            break;
        }
    }
    PassReport {
        dry_run,
        started_at,
        finished_at: now_unix(),
        interrupted: interrupted || stop.is_stopped(),
        actions: log.actions,
    }
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Snapshots,
    Expiry,
    Idle,
    Replicas,
}

impl Step {
    fn action(self) -> &'static str {
        match self {
            Step::Snapshots => "snapshot",
            Step::Expiry => "expire",
            Step::Idle => "idle_stop",
            Step::Replicas => "watch_replica",
        }
    }

    /// The fault point after the step (`BETTERPG_FAULT=daemon_after_...`).
    fn fault_point(self) -> &'static str {
        match self {
            Step::Snapshots => "daemon_after_snapshots",
            Step::Expiry => "daemon_after_expiry",
            Step::Idle => "daemon_after_idle",
            Step::Replicas => "daemon_after_replicas",
        }
    }
}

/// The snapshot schedule: what the policies call for, then pruning.
async fn snapshots(ctx: &Context, dry_run: bool, log: &mut Log<'_>) -> Result<()> {
    let r = super::snapshot::run_policy(ctx, None, dry_run).await?;
    if dry_run {
        for s in &r.due {
            log.push(
                DaemonAction::new("snapshot", s, ActionResult::DryRun)
                    .because("due by its retention policy"),
            );
        }
    }
    for s in &r.taken {
        log.push(
            DaemonAction::new("snapshot", s.full_name.clone(), ActionResult::Done)
                .because("due by its retention policy"),
        );
    }
    for f in &r.failures {
        log.push(DaemonAction::new("snapshot", &f.source, ActionResult::Failed).because(&f.error));
    }
    for p in &r.prune.pruned {
        log.push(
            DaemonAction::new(
                "prune",
                p.snapshot.clone(),
                if dry_run {
                    ActionResult::DryRun
                } else {
                    ActionResult::Done
                },
            )
            .because("no retention rule keeps it"),
        );
    }
    Ok(())
}

/// Depth of `e` in the tree (a database 0).
fn depth(entries: &[Entry], e: &Entry) -> usize {
    let mut d = 0;
    let mut p = e.parent.as_deref();
    while let Some(name) = p {
        d += 1;
        p = entries
            .iter()
            .find(|x| x.name == name)
            .and_then(|x| x.parent.as_deref());
        if d > entries.len() {
            break;
        }
    }
    d
}

/// Destroy the branches whose owner process (`--owner-pid`) is gone, as
/// `bpg gc` does (action `owner_gone`): a run killed before it cleaned
/// up leaves nothing past the next pass.
async fn owners_gone(ctx: &Context, dry_run: bool, log: &mut Log<'_>) -> Result<()> {
    let mut done = Vec::new();
    let mut left = Vec::new();
    super::gc::owners_gone(ctx, dry_run, &mut done, &mut left).await?;
    let result = if dry_run {
        ActionResult::DryRun
    } else {
        ActionResult::Done
    };
    for item in done {
        log.push(DaemonAction::new("owner_gone", item.name, result).because(item.reason));
    }
    for item in left {
        log.push(
            DaemonAction::new("owner_gone", item.name, ActionResult::Failed).because(item.reason),
        );
    }
    Ok(())
}

/// Destroy what expired, each with its branches (deepest first), unless
/// it or one of them is protected (then nothing of that subtree goes).
async fn expiry(ctx: &Context, dry_run: bool, stop: &StopSignal, log: &mut Log<'_>) -> Result<()> {
    let now = now_unix();
    let expired: Vec<(String, u64)> = {
        let cat = ctx.lock()?;
        let all: Vec<Entry> = cat.entries().cloned().collect();
        let mut v: Vec<(usize, String, u64)> = all
            .iter()
            .filter(|e| e.kind != Kind::Attached && !e.state.busy_elsewhere())
            .filter_map(|e| {
                let at = e.lifecycle.expires_at?;
                (at <= now).then(|| (depth(&all, e), e.name.clone(), at))
            })
            .collect();
        // Ancestors first: an expired parent takes its expired children.
        v.sort();
        v.into_iter().map(|(_, n, at)| (n, at)).collect()
    };
    for (name, at) in expired {
        if stop.is_stopped() {
            break;
        }
        let (desc, protected) = {
            let cat = ctx.lock()?;
            if cat.get(&name).is_none() {
                continue; // went with an expired ancestor
            }
            let desc = cat.descendants_deepest_first(&name);
            let protected: Vec<String> = desc
                .iter()
                .map(String::as_str)
                .chain([name.as_str()])
                .filter(|n| cat.get(n).is_some_and(|e| e.lifecycle.protected))
                .map(String::from)
                .collect();
            (desc, protected)
        };
        let when =
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(at));
        let with = if desc.is_empty() {
            String::new()
        } else {
            format!(", with its branches {} (first)", desc.join(", "))
        };
        if !protected.is_empty() {
            log.push(
                DaemonAction::new("expire", &name, ActionResult::Skipped).because(format!(
                    "expired at {when} but protected: {} (`bpg unprotect` to let it expire); nothing of it was destroyed",
                    protected.join(", ")
                )),
            );
            continue;
        }
        if dry_run {
            log.push(
                DaemonAction::new("expire", &name, ActionResult::DryRun)
                    .because(format!("expired at {when}; would be destroyed{with}")),
            );
            continue;
        }
        let parent = ctx.entry(&name).ok().and_then(|e| e.parent);
        let r = destroy_with(
            ctx,
            &name,
            Scope {
                branches: true,
                foreign: false,
                operation: "expire",
            },
        )
        .await;
        let mut ev = crate::audit::AuditEvent::now("expire");
        ev.source = parent;
        ev.branch = Some(name.clone());
        ev.detail = Some(format!("expired at {when}{with}"));
        super::audit::record(ctx, ev.outcome(&r));
        log.push(match r {
            Ok(()) => DaemonAction::new("expire", &name, ActionResult::Done)
                .because(format!("expired at {when}; destroyed{with}")),
            Err(e @ Error::Protected { .. }) => {
                DaemonAction::new("expire", &name, ActionResult::Skipped).because(e.to_string())
            }
            Err(e) => DaemonAction::new("expire", &name, ActionResult::Failed)
                .because(format!("expired at {when}: {e}")),
        });
    }
    Ok(())
}

/// Client connections to `e`'s server other than this one, and when the
/// server started (Unix seconds).
async fn activity(ctx: &Context, e: &Entry) -> Result<(i64, u64)> {
    let conn = ctx.conn_for(e)?;
    let q = async {
        let c = conn.connect().await?;
        let row = c
            .query_one(
                "SELECT count(*) FILTER (WHERE backend_type = 'client backend' \
                 AND pid <> pg_backend_pid()), \
                 extract(epoch FROM pg_postmaster_start_time())::bigint \
                 FROM pg_stat_activity",
                &[],
            )
            .await?;
        let clients: i64 = row.get(0);
        let started: i64 = row.get(1);
        Ok::<_, Error>((clients, started.max(0) as u64))
    };
    tokio::time::timeout(IDLE_QUERY_TIMEOUT, q)
        .await
        .map_err(|_| {
            Error::Timeout(format!(
                "{:?} did not answer the idle check within {} s",
                e.name,
                IDLE_QUERY_TIMEOUT.as_secs()
            ))
        })?
}

/// Stop the running servers with `idle_stop` set that had no client for
/// that long; record when the others were last seen with clients.
async fn idle(ctx: &Context, dry_run: bool, stop: &StopSignal, log: &mut Log<'_>) -> Result<()> {
    let candidates = entries_where(ctx, |e| {
        e.settings.idle_stop.is_some()
            && e.is_ready()
            && matches!(e.kind, Kind::Database | Kind::Branch)
    })?;
    for e in candidates {
        if stop.is_stopped() {
            break;
        }
        let limit = e.settings.idle_stop.unwrap_or(u64::MAX);
        let spec = match ctx.control_spec(&e).await {
            Ok(s) => s,
            Err(err) => {
                log.error("idle_stop", &e.name, &err);
                continue;
            }
        };
        match ctx.runtime(&e.runtime)?.status(&spec).await {
            Ok(RunStatus::Running) => {}
            Ok(RunStatus::Stopped) => continue, // a stopped server is not idle
            Err(err) => {
                log.error("idle_stop", &e.name, &err);
                continue;
            }
        }
        let (clients, started) = match activity(ctx, &e).await {
            Ok(a) => a,
            Err(err) => {
                log.error("idle_stop", &e.name, &err);
                continue;
            }
        };
        let now = now_unix();
        if clients > 0 {
            if !dry_run {
                let mut cat = ctx.lock()?;
                if let Some(x) = cat.get_mut(&e.name) {
                    x.lifecycle.active_at = Some(now);
                    cat.save()?;
                }
            }
            continue;
        }
        // Idle since it was last seen with clients, or since it started
        // (a server `bpg start` brought back is not idle from before).
        let since = [e.lifecycle.active_at.unwrap_or(0), started, e.created_at]
            .into_iter()
            .max()
            .unwrap_or(0);
        let idle_for = now.saturating_sub(since);
        if idle_for < limit {
            continue;
        }
        let why = format!(
            "no client connections for {} (idle_stop {}); `bpg start {}` brings it back",
            crate::catalog::settings::format_duration(idle_for.max(1)),
            crate::catalog::settings::format_duration(limit),
            e.name
        );
        if dry_run {
            log.push(DaemonAction::new("idle_stop", &e.name, ActionResult::DryRun).because(why));
            continue;
        }
        log.push(match super::stop::stop(ctx, &e.name).await {
            Ok(_) => DaemonAction::new("idle_stop", &e.name, ActionResult::Done).because(why),
            Err(err) => DaemonAction::new("idle_stop", &e.name, ActionResult::Failed)
                .because(err.to_string()),
        });
    }
    Ok(())
}

/// The catalog's entries that `keep` selects (a copy: the lock is not
/// held while they are worked on).
fn entries_where(ctx: &Context, keep: impl Fn(&Entry) -> bool) -> Result<Vec<Entry>> {
    Ok(ctx.lock()?.entries().filter(|e| keep(e)).cloned().collect())
}

/// The action reporting a restart of `name` (`why` it was due): done, or
/// failed with the error that starting it met.
fn restarted<T>(action: &'static str, name: &str, why: &str, r: Result<T>) -> DaemonAction {
    match r {
        Ok(_) => DaemonAction::new(action, name, ActionResult::Done).because(why),
        Err(err) => DaemonAction::new(action, name, ActionResult::Failed)
            .because(format!("{why}; starting it failed: {err}")),
    }
}

/// True when `data_dir` still has a `postmaster.pid` (a server that was
/// stopped cleanly removes it; one that died leaves it).
fn left_pid_file(data_dir: &Path) -> bool {
    crate::pg::datadir::DataDir::open(data_dir)
        .and_then(|d| d.entry_type("postmaster.pid"))
        .ok()
        .flatten()
        .is_some()
}

/// Each replica's state and lag; a replica whose server died (stopped
/// but its pid file left behind) is started again. One stopped with
/// `bpg stop` stays stopped.
async fn replicas(
    ctx: &Context,
    dry_run: bool,
    stop: &StopSignal,
    log: &mut Log<'_>,
) -> Result<()> {
    let list = entries_where(ctx, |e| e.kind == Kind::Replica && e.is_ready())?;
    for e in list {
        if stop.is_stopped() {
            break;
        }
        let spec = match ctx.control_spec(&e).await {
            Ok(s) => s,
            Err(err) => {
                log.error("watch_replica", &e.name, &err);
                continue;
            }
        };
        let status = match ctx.runtime(&e.runtime)?.status(&spec).await {
            Ok(s) => s,
            Err(err) => {
                log.error("watch_replica", &e.name, &err);
                continue;
            }
        };
        if status == RunStatus::Stopped {
            if !left_pid_file(&spec.data_dir) {
                log.push(
                    DaemonAction::new("watch_replica", &e.name, ActionResult::Skipped)
                        .because(format!("stopped (`bpg start {}` starts it again)", e.name)),
                );
                continue;
            }
            let why = "its server died (its pid file was left behind)";
            if dry_run {
                log.push(
                    DaemonAction::new("restart_replica", &e.name, ActionResult::DryRun)
                        .because(why),
                );
                continue;
            }
            let r = super::start::start(ctx, &e.name).await;
            log.push(restarted("restart_replica", &e.name, why, r));
            continue;
        }
        let r = super::status::replication(ctx, &e, true).await;
        let mut a = DaemonAction::new("watch_replica", &e.name, ActionResult::Done);
        if let Some(r) = &r {
            a.reason = Some(format!(
                "{}{}",
                r.state,
                r.lag_bytes
                    .map(|b| format!(", {b} bytes behind"))
                    .unwrap_or_default()
            ));
        }
        a.replication = r;
        log.push(a);
    }
    receivers(ctx, dry_run, stop, log).await
}

/// The WAL receivers of attached clusters that keep WAL: one that died
/// (killed, or its cluster was down and it gave up) is started again
/// (`restart_receiver`; its slot kept the WAL meanwhile), then the
/// retention's upkeep (pruning, a base when one is due) runs.
async fn receivers(
    ctx: &Context,
    dry_run: bool,
    stop: &StopSignal,
    log: &mut Log<'_>,
) -> Result<()> {
    let list = entries_where(ctx, |e| {
        e.kind == Kind::Attached && e.is_ready() && e.settings.retain_wal.is_some()
    })?;
    for e in list {
        if stop.is_stopped() {
            break;
        }
        let running = match super::retain::receiver_running(ctx, &e) {
            Ok(r) => r,
            Err(err) => {
                log.error("restart_receiver", &e.name, &err);
                continue;
            }
        };
        let why = "its WAL receiver (pg_receivewal) does not run";
        if !running && dry_run {
            log.push(
                DaemonAction::new("restart_receiver", &e.name, ActionResult::DryRun).because(why),
            );
            continue;
        }
        if dry_run {
            continue;
        }
        let r = super::retain::maintain(ctx, &e).await;
        if !running {
            log.push(restarted("restart_receiver", &e.name, why, r));
        } else if let Err(err) = r {
            log.error("restart_receiver", &e.name, &err);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_lock_per_home_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        let held = DaemonLock::acquire(&home).unwrap();
        match DaemonLock::acquire(&home).unwrap_err() {
            Error::DaemonRunning { lock, pid } => {
                assert_eq!(lock, held.path());
                assert_eq!(pid, Some(std::process::id()));
            }
            e => panic!("{e}"),
        }
        assert_eq!(
            DaemonLock::acquire(&home).unwrap_err().code(),
            22,
            "daemon_running"
        );
        drop(held);
        DaemonLock::acquire(&home).unwrap();
    }

    #[test]
    fn results_serialise_as_documented() {
        for (r, s) in [
            (ActionResult::Done, "done"),
            (ActionResult::DryRun, "dry_run"),
            (ActionResult::Skipped, "skipped"),
            (ActionResult::Failed, "failed"),
        ] {
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{s}\""));
            assert_eq!(r.as_str(), s);
        }
    }
}
