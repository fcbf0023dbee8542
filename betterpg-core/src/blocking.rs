//! A synchronous facade over [`crate::BranchManager`].
//!
//! The C and Python bindings are layered on this, so they contain no logic
//! of their own. It owns a tokio runtime and blocks on each call; do not call
//! it from inside another tokio runtime (use the async API there).
//!
//! Every call holds the process's [`fork`] gate shared, so a binding can
//! make `fork()` wait until no call is in flight (the Python module does).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use crate::error::Result;
use crate::manager::{
    BranchManager as AsyncManager, BranchOptions, BranchReport, CreateOptions, FollowOptions,
    FollowReport, Info, InitOptions, PolicyReport, PoolUsage, PruneReport, RewindReport,
    SnapshotDestroyReport, SnapshotInfo, SnapshotOptions, SnapshotReport,
};

/// Blocking `BranchManager`.
#[derive(Debug)]
pub struct BranchManager {
    rt: Arc<tokio::runtime::Runtime>,
    inner: AsyncManager,
}

fn runtime() -> Result<Arc<tokio::runtime::Runtime>> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("betterpg")
        .build()
        .map(Arc::new)
        .map_err(|e| crate::error::Error::io("starting the tokio runtime", e))
}

impl BranchManager {
    /// Open an initialised home (see [`AsyncManager::open`]).
    pub fn open(home: impl Into<PathBuf>) -> Result<Self> {
        let _gate = fork::enter();
        let rt = runtime()?;
        let inner = rt.block_on(AsyncManager::open(home))?;
        Ok(BranchManager { rt, inner })
    }

    /// Initialise a home (see [`AsyncManager::init`]).
    pub fn init(home: impl Into<PathBuf>, opts: InitOptions) -> Result<Self> {
        let _gate = fork::enter();
        let rt = runtime()?;
        let inner = rt.block_on(AsyncManager::init(home, opts))?;
        Ok(BranchManager { rt, inner })
    }

    /// The async manager inside.
    pub fn inner(&self) -> &AsyncManager {
        &self.inner
    }

    /// Run any async call of the inner manager to completion.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        let _gate = fork::enter();
        self.rt.block_on(f)
    }

    /// See [`AsyncManager::create`].
    pub fn create(&self, name: &str, opts: CreateOptions) -> Result<Info> {
        self.block_on(self.inner.create(name, opts))
    }
    /// See [`AsyncManager::branch`].
    pub fn branch(&self, source: &str, name: &str, opts: BranchOptions) -> Result<BranchReport> {
        self.block_on(self.inner.branch(source, name, opts))
    }
    /// See [`AsyncManager::follow`].
    pub fn follow(&self, name: &str, opts: FollowOptions) -> Result<FollowReport> {
        self.block_on(self.inner.follow(name, opts))
    }
    /// See [`AsyncManager::destroy`].
    pub fn destroy(&self, name: &str, force: bool) -> Result<()> {
        self.block_on(self.inner.destroy(name, force))
    }
    /// See [`AsyncManager::protect`].
    pub fn protect(&self, name: &str) -> Result<Info> {
        self.block_on(self.inner.protect(name))
    }
    /// See [`AsyncManager::unprotect`].
    pub fn unprotect(&self, name: &str) -> Result<Info> {
        self.block_on(self.inner.unprotect(name))
    }
    /// See [`AsyncManager::start`].
    pub fn start(&self, name: &str) -> Result<Info> {
        self.block_on(self.inner.start(name))
    }
    /// See [`AsyncManager::stop`].
    pub fn stop(&self, name: &str) -> Result<Info> {
        self.block_on(self.inner.stop(name))
    }
    /// See [`AsyncManager::info`].
    pub fn info(&self, name: &str) -> Result<Info> {
        self.block_on(self.inner.info(name))
    }
    /// See [`AsyncManager::status`].
    pub fn status(&self) -> Result<Vec<Info>> {
        self.block_on(self.inner.status())
    }
    /// See [`AsyncManager::url`].
    pub fn url(&self, name: &str) -> Result<String> {
        self.block_on(self.inner.url(name))
    }

    /// See [`AsyncManager::url_for_role`].
    pub fn url_for_role(&self, name: &str, role: &str) -> Result<String> {
        self.block_on(self.inner.url_for_role(name, role))
    }
    /// See [`AsyncManager::audit`].
    pub fn audit(&self, since: Option<&str>) -> Result<Vec<crate::audit::AuditEvent>> {
        self.inner.audit(since)
    }
    /// See [`AsyncManager::mask_check`].
    pub fn mask_check(
        &self,
        source: &str,
        opts: crate::ops::mask_check::MaskCheckOptions,
    ) -> Result<crate::ops::mask_check::MaskCheckReport> {
        self.block_on(self.inner.mask_check(source, opts))
    }
    /// See [`AsyncManager::mask_sql`].
    pub fn mask_sql(
        &self,
        path: &std::path::Path,
        source: Option<&str>,
    ) -> Result<crate::ops::mask_rules::MaskSql> {
        self.inner.mask_sql(path, source)
    }
    /// See [`AsyncManager::logs`].
    pub fn logs(&self, name: &str, tail: Option<usize>) -> Result<String> {
        self.block_on(self.inner.logs(name, tail))
    }
    /// Follow the server log of `name` (see [`AsyncManager::follow_logs`]):
    /// its last `tail` lines (all when `None`), then what the server writes.
    pub fn follow_logs(&self, name: &str, tail: Option<usize>) -> Result<LogFollower> {
        let stream = self.block_on(self.inner.follow_logs(name, tail))?;
        Ok(LogFollower {
            rt: self.rt.clone(),
            stream,
        })
    }
    /// Check this machine and the home at `home`, initialised or not (see
    /// [`AsyncManager::doctor`]); problems are in the report.
    pub fn doctor(home: impl AsRef<Path>) -> Result<crate::manager::DoctorReport> {
        let _gate = fork::enter();
        runtime()?.block_on(AsyncManager::doctor(home))
    }
    /// See [`AsyncManager::reset`].
    pub fn reset(&self, name: &str, opts: BranchOptions) -> Result<BranchReport> {
        self.block_on(self.inner.reset(name, opts))
    }
    /// See [`AsyncManager::rewind`].
    pub fn rewind(&self, name: &str) -> Result<RewindReport> {
        self.block_on(self.inner.rewind(name))
    }
    /// See [`AsyncManager::reset_to`].
    pub fn reset_to(&self, name: &str, to: &str, opts: BranchOptions) -> Result<BranchReport> {
        self.block_on(self.inner.reset_to(name, to, opts))
    }
    /// See [`AsyncManager::snapshot`].
    pub fn snapshot(&self, source: &str, opts: SnapshotOptions) -> Result<SnapshotReport> {
        self.block_on(self.inner.snapshot(source, opts))
    }
    /// See [`AsyncManager::snapshots`].
    pub fn snapshots(&self, source: Option<&str>) -> Result<Vec<SnapshotInfo>> {
        self.block_on(self.inner.snapshots(source))
    }
    /// See [`AsyncManager::destroy_snapshot`].
    pub fn destroy_snapshot(
        &self,
        source: &str,
        name: &str,
        force: bool,
    ) -> Result<SnapshotDestroyReport> {
        self.block_on(self.inner.destroy_snapshot(source, name, force))
    }
    /// See [`AsyncManager::prune_snapshots`].
    pub fn prune_snapshots(&self, source: Option<&str>, dry_run: bool) -> Result<PruneReport> {
        self.block_on(self.inner.prune_snapshots(source, dry_run))
    }
    /// See [`AsyncManager::daemon_pass`].
    pub fn daemon_once(&self, dry_run: bool) -> Result<crate::manager::PassReport> {
        self.block_on(self.inner.daemon_pass(dry_run))
    }
    /// See [`AsyncManager::run_snapshot_policy`].
    pub fn run_snapshot_policy(&self, source: Option<&str>, dry_run: bool) -> Result<PolicyReport> {
        self.block_on(self.inner.run_snapshot_policy(source, dry_run))
    }
    /// See [`AsyncManager::attach`].
    pub fn attach(&self, name: &str, opts: crate::manager::AttachOptions) -> Result<Info> {
        self.block_on(self.inner.attach(name, opts))
    }
    /// See [`AsyncManager::detach`].
    pub fn detach(&self, name: &str, force: bool) -> Result<Vec<String>> {
        self.block_on(self.inner.detach(name, force))
    }
    /// See [`AsyncManager::gc`].
    pub fn gc(&self, dry_run: bool) -> Result<crate::manager::GcReport> {
        self.block_on(self.inner.gc(dry_run))
    }
    /// See [`AsyncManager::settings`].
    pub fn settings(&self, name: &str) -> Result<crate::manager::Settings> {
        self.inner.settings(name)
    }
    /// See [`AsyncManager::configure`]: `(key, value)` pairs in string form.
    pub fn configure<K: AsRef<str>, V: AsRef<str>>(
        &self,
        name: &str,
        pairs: &[(K, V)],
    ) -> Result<crate::manager::Settings> {
        self.block_on(self.inner.configure(name, pairs))
    }
    /// See [`AsyncManager::pool_usage`].
    pub fn pool_usage(&self) -> Result<PoolUsage> {
        self.block_on(self.inner.pool_usage())
    }
}

/// What [`LogFollower::next_within`] got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEvent {
    /// Log text as written (a chunk, not necessarily whole lines).
    Chunk(Vec<u8>),
    /// Nothing new within the time given; ask again.
    Idle,
    /// The log ended (a container stopped); nothing more will come.
    Ended,
}

/// A followed server log (see [`BranchManager::follow_logs`]). Owns what
/// it needs: it may outlive the manager's borrow, and dropping it stops
/// following. Also an [`Iterator`] of chunks that blocks until each comes.
pub struct LogFollower {
    rt: Arc<tokio::runtime::Runtime>,
    stream: crate::runtime::LogStream,
}

impl std::fmt::Debug for LogFollower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogFollower").finish_non_exhaustive()
    }
}

impl LogFollower {
    /// The next chunk, waiting at most `timeout` for it.
    pub fn next_within(&mut self, timeout: Duration) -> Result<LogEvent> {
        let _gate = fork::enter();
        let next = self
            .rt
            .block_on(async { tokio::time::timeout(timeout, self.stream.next()).await });
        match next {
            Err(_) => Ok(LogEvent::Idle),
            Ok(None) => Ok(LogEvent::Ended),
            Ok(Some(Ok(b))) => Ok(LogEvent::Chunk(b)),
            Ok(Some(Err(e))) => Err(e),
        }
    }
}

impl Iterator for LogFollower {
    type Item = Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            // Short waits, so a pending fork is held back at most this long.
            match self.next_within(Duration::from_millis(500)) {
                Ok(LogEvent::Chunk(b)) => return Some(Ok(b)),
                Ok(LogEvent::Idle) => continue,
                Ok(LogEvent::Ended) => return None,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// A gate that `fork()` closes: calls of this facade hold it shared,
/// [`fork::prepare`] takes it exclusively.
///
/// A child made by `fork()` has only the forking thread. Whatever another
/// thread held at that moment stays held in the child for good: the catalog
/// lock (a `flock` shared by the child's copy of the descriptor, which keeps
/// every later `bpg` waiting while the child lives), the libzfs handle's
/// mutex, a backup session's socket (while the child holds a copy, the
/// source cannot notice that the parent died, and stays in backup mode with
/// a WAL-holding slot). So a fork must happen only while no call is in
/// flight: register [`prepare`](fork::prepare) to run before `fork()` (it waits for running
/// calls to finish and holds new ones back), [`parent`](fork::parent) after it in the
/// parent and [`child`](fork::child) after it in the child (`pthread_atfork`, Python's
/// `os.register_at_fork`). The child must then not use or drop managers made
/// before the fork (their runtime's threads do not exist there): leak them
/// and open new ones.
///
/// Lock-free (one atomic word), so a fork at any instant cannot leave the
/// gate itself locked in the child.
pub mod fork {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    /// Set while a fork is being prepared or done; holds new calls back.
    const CLOSED: u64 = 1 << 63;
    /// The number of calls in flight (the low bits).
    const COUNT: u64 = CLOSED - 1;

    static STATE: AtomicU64 = AtomicU64::new(0);

    thread_local! {
        /// Calls of this thread in flight: a nested call never waits (it
        /// would wait for itself while a fork is pending).
        static DEPTH: Cell<u64> = const { Cell::new(0) };
    }

    /// Proof that the calling thread is inside a call; dropping it leaves.
    #[derive(Debug)]
    #[must_use]
    pub struct Entered(());

    /// Enter a call: waits while a fork is pending.
    pub fn enter() -> Entered {
        if DEPTH.with(|d| d.get()) == 0 {
            let mut pause = Duration::from_micros(100);
            loop {
                let s = STATE.load(Ordering::Acquire);
                if s & CLOSED == 0 {
                    if STATE
                        .compare_exchange_weak(s, s + 1, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        break;
                    }
                    continue;
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(10));
            }
        }
        DEPTH.with(|d| d.set(d.get() + 1));
        Entered(())
    }

    impl Drop for Entered {
        fn drop(&mut self) {
            let depth = DEPTH.with(|d| {
                d.set(d.get() - 1);
                d.get()
            });
            if depth == 0 {
                STATE.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    /// Before `fork()`: close the gate and wait until no call of another
    /// thread is in flight. Blocks as long as the longest running call.
    pub fn prepare() {
        let mut pause = Duration::from_micros(100);
        // One fork at a time: a second forking thread waits for the first.
        loop {
            let s = STATE.load(Ordering::Acquire);
            if s & CLOSED == 0
                && STATE
                    .compare_exchange_weak(s, s | CLOSED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                break;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
        }
        let own = if DEPTH.with(|d| d.get()) > 0 { 1 } else { 0 };
        let mut pause = Duration::from_micros(100);
        while STATE.load(Ordering::Acquire) & COUNT > own {
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }

    /// After `fork()` in the parent: open the gate again.
    pub fn parent() {
        STATE.fetch_and(!CLOSED, Ordering::AcqRel);
    }

    /// After `fork()` in the child: a fresh, open gate (only this thread
    /// exists), and process-wide handles inherited from the parent are
    /// forgotten so the child opens its own.
    pub fn child() {
        let own = if DEPTH.with(|d| d.get()) > 0 { 1 } else { 0 };
        STATE.store(own, Ordering::Release);
        crate::storage::forget_after_fork();
    }

    /// Calls in flight and whether the gate is closed (for tests).
    pub fn state() -> (u64, bool) {
        let s = STATE.load(Ordering::Acquire);
        (s & COUNT, s & CLOSED != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::fork;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn prepare_waits_for_calls_and_holds_new_ones_back() {
        let g = fork::enter();
        let nested = fork::enter(); // a nested call never waits
        drop(nested);
        let prepared = Arc::new(AtomicBool::new(false));
        let p = prepared.clone();
        let forker = std::thread::spawn(move || {
            fork::prepare();
            p.store(true, Ordering::SeqCst);
        });
        // The forker has closed the gate (or will): it cannot finish while
        // this call is in flight.
        while !fork::state().1 {
            std::thread::yield_now();
        }
        assert!(!prepared.load(Ordering::SeqCst));
        let entered = Arc::new(AtomicBool::new(false));
        let e = entered.clone();
        let caller = std::thread::spawn(move || {
            let _g = fork::enter();
            e.store(true, Ordering::SeqCst);
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !entered.load(Ordering::SeqCst),
            "a call entered while a fork was pending"
        );
        drop(g);
        forker.join().unwrap();
        assert!(prepared.load(Ordering::SeqCst));
        assert!(!entered.load(Ordering::SeqCst));
        fork::parent();
        caller.join().unwrap();
        assert!(entered.load(Ordering::SeqCst));
        assert_eq!(fork::state(), (0, false));
    }
}
