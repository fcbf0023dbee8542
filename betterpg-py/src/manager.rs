//! `betterpg.BranchManager`: the blocking core manager, made safe to share
//! between Python threads and to survive `fork`.
//!
//! Every call releases the GIL (`Python::detach`) while the core works, so
//! other Python threads run meanwhile. The core's blocking manager owns a
//! multi-threaded tokio runtime; after `fork` the child has none of its
//! threads, and blocking on it (or even dropping it, which joins them) would
//! hang. So the manager records the pid that opened it: in any other process
//! (a forked child) the first call opens a fresh core manager, with a fresh
//! runtime, on the same home, and the inherited one is leaked on purpose,
//! never used or dropped. The module's fork hooks (see the crate docs) make
//! sure nothing else is inherited half-held: `fork()` waits until no call
//! of another thread is in flight.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use betterpg_core::blocking::BranchManager as Blocking;
use betterpg_core::{
    AttachOptions, BranchOptions, CreateOptions, Error, FollowOptions, InitOptions, InitStorage,
    Mode,
};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyType};

use crate::errors::to_pyerr;
use crate::types::{PyBranch, PyGcReport, PyInfo, PyPoolUsage, PyRewindReport, PyStatus};

/// Home used when none is given and `BPG_HOME` is unset (the CLI's default).
pub const DEFAULT_HOME: &str = "/var/lib/betterpg";

/// The core manager and the process it belongs to.
struct Handle {
    pid: u32,
    mgr: Option<Arc<Blocking>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        if self.pid != std::process::id() {
            // Inherited through fork: its runtime's threads do not exist
            // here, and dropping it would wait for them forever.
            if let Some(m) = self.mgr.take() {
                std::mem::forget(m);
            }
        }
    }
}

/// `mode` (or the deprecated `fast`) and `quota` of `branch` and `reset`.
fn branch_options(
    py: Python<'_>,
    mode: Option<&str>,
    fast: Option<bool>,
    quota: Option<Size>,
) -> PyResult<BranchOptions> {
    let mode = mode_of(py, mode, fast)?;
    let quota = quota
        .map(|q| q.bytes())
        .transpose()
        .map_err(|e| to_pyerr(py, e))?;
    Ok(BranchOptions {
        mode,
        quota,
        ..Default::default()
    })
}

/// ``credentials="rotate"|"keep"`` (None: the default), read by the
/// settings' one parser (a `ConfigError` for another value).
fn credentials_of(
    py: Python<'_>,
    credentials: Option<&str>,
) -> PyResult<Option<betterpg_core::Credentials>> {
    let Some(v) = credentials else {
        return Ok(None);
    };
    let mut s = betterpg_core::Settings::default();
    s.apply("credentials", v).map_err(|e| to_pyerr(py, e))?;
    Ok(s.credentials)
}

/// The mode of ``mode="..."`` (the core's names; a `ConfigError` for
/// another), or of the deprecated ``fast=`` (a `DeprecationWarning`;
/// ``fast=True`` is ``mode="crash-consistent"``). Both given must agree.
fn mode_of(py: Python<'_>, mode: Option<&str>, fast: Option<bool>) -> PyResult<Mode> {
    let named = mode
        .map(|m| m.parse::<Mode>())
        .transpose()
        .map_err(|e| to_pyerr(py, e))?;
    let Some(fast) = fast else {
        return Ok(named.unwrap_or_default());
    };
    PyErr::warn(
        py,
        &py.get_type::<pyo3::exceptions::PyDeprecationWarning>(),
        c"fast= is deprecated: use mode=\"crash-consistent\" (or \"application-consistent\")",
        2,
    )?;
    let by_fast = if fast {
        Mode::CrashConsistent
    } else {
        Mode::ApplicationConsistent
    };
    match named {
        Some(m) if m != by_fast => Err(pyo3::exceptions::PyValueError::new_err(format!(
            "mode={:?} and fast={} disagree: give mode= only",
            m.as_str(),
            if fast { "True" } else { "False" }
        ))),
        _ => Ok(by_fast),
    }
}

/// A size given as bytes or as text like "1G".
#[derive(FromPyObject)]
enum Size {
    Bytes(u64),
    Text(String),
}

impl Size {
    fn bytes(self) -> Result<u64, Error> {
        match self {
            Size::Bytes(b) => Ok(b),
            Size::Text(t) => betterpg_core::util::parse_size(&t),
        }
    }
}

/// A duration given as seconds or as text like "8h" (``ttl=``).
#[derive(FromPyObject)]
enum Secs {
    Seconds(u64),
    Text(String),
}

impl Secs {
    fn duration(self) -> Result<std::time::Duration, Error> {
        match self {
            Secs::Seconds(s) => Ok(std::time::Duration::from_secs(s)),
            Secs::Text(t) => {
                betterpg_core::parse_duration("ttl", &t).map(std::time::Duration::from_secs)
            }
        }
    }
}

/// Manages the databases and branches of one betterpg home.
///
/// Create one per process and share it between threads; every method
/// releases the GIL while it works. Safe across `os.fork()`: a child
/// transparently opens its own copy on first use.
#[pyclass(module = "betterpg", name = "BranchManager", frozen)]
pub struct PyBranchManager {
    home: PathBuf,
    handle: Mutex<Handle>,
}

impl PyBranchManager {
    fn wrap(home: PathBuf, mgr: Blocking) -> Self {
        PyBranchManager {
            home,
            handle: Mutex::new(Handle {
                pid: std::process::id(),
                mgr: Some(Arc::new(mgr)),
            }),
        }
    }

    /// Lock the handle. It is only ever held for a few instructions and never
    /// across a GIL release, so a lock that stays taken can only have been
    /// held by a thread that `fork` did not copy: report that instead of
    /// waiting forever.
    fn lock(&self) -> PyResult<MutexGuard<'_, Handle>> {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match self.handle.try_lock() {
                Ok(g) => return Ok(g),
                Err(TryLockError::Poisoned(p)) => return Ok(p.into_inner()),
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(pyo3::exceptions::PyRuntimeError::new_err(
                        "betterpg.BranchManager: internal lock held by a thread that no longer exists \
                         (fork() while another thread was using the manager): create a new BranchManager in this process",
                    ))
                }
            }
        }
    }

    /// The core manager for this process (re-opened after a fork).
    fn core(&self, py: Python<'_>) -> PyResult<Arc<Blocking>> {
        let pid = std::process::id();
        {
            let h = self.lock()?;
            if h.pid == pid {
                if let Some(m) = &h.mgr {
                    return Ok(m.clone());
                }
            }
        }
        // A forked child: open a fresh manager (new runtime) on the same home.
        let home = self.home.clone();
        let fresh = Arc::new(
            py.detach(move || Blocking::open(home))
                .map_err(|e| to_pyerr(py, e))?,
        );
        let mut h = self.lock()?;
        if h.pid != pid {
            // Dropping the old Handle leaks the inherited manager (see Drop).
            *h = Handle {
                pid,
                mgr: Some(fresh.clone()),
            };
            return Ok(fresh);
        }
        // Another thread of this child got there first.
        Ok(h.mgr.clone().unwrap_or(fresh))
    }

    /// Run `f` on the core manager with the GIL released; map errors.
    fn call<T, F>(&self, py: Python<'_>, f: F) -> PyResult<T>
    where
        F: FnOnce(&Blocking) -> Result<T, Error> + Send,
        T: Send,
    {
        let mgr = self.core(py)?;
        py.detach(move || f(&mgr)).map_err(|e| to_pyerr(py, e))
    }

    /// `destroy`, usable from other Rust code (the `Branch` context manager).
    pub fn destroy(&self, py: Python<'_>, name: &str, force: bool) -> PyResult<()> {
        self.call(py, |m| m.destroy(name, force))
    }
}

fn resolve_home(home: Option<PathBuf>) -> PathBuf {
    home.or_else(|| std::env::var_os("BPG_HOME").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_HOME))
}

#[pymethods]
impl PyBranchManager {
    /// Open an initialised home (`home`, else `$BPG_HOME`, else /var/lib/betterpg).
    #[new]
    #[pyo3(signature = (home = None))]
    fn new(py: Python<'_>, home: Option<PathBuf>) -> PyResult<Self> {
        let home = resolve_home(home);
        let h = home.clone();
        let mgr = py
            .detach(move || Blocking::open(h))
            .map_err(|e| to_pyerr(py, e))?;
        Ok(Self::wrap(mgr.inner().home().to_path_buf(), mgr))
    }

    /// Initialise a home and return its manager.
    ///
    /// Either ``dataset`` (an existing pool, e.g. ``"tank/betterpg"``) or
    /// ``pool_file`` + ``size`` + ``pool`` (a new pool on a sparse file).
    /// ``branch_headroom`` (percent of the pool kept for databases, 0-90,
    /// default 20) and ``branch_reserve`` (space guaranteed to every branch,
    /// default ``"64M"``) set the branch space (see the README's Safety).
    /// ``docker_memory`` (e.g. ``"4G"``, at least 64M, 0 for none, default
    /// ``"2G"``) and ``docker_pids`` (at least 32, 0 for none, default 1024)
    /// limit every container of the docker runtime.
    /// ``zfs_properties`` (e.g. ``{"recordsize": "16K"}``) replaces or adds
    /// to betterpg's ZFS properties for PostgreSQL (recordsize=8K,
    /// atime=off, compression=lz4 or on); a bad key or value raises
    /// ConfigError before anything is made.
    #[classmethod]
    #[pyo3(signature = (
        home,
        *,
        dataset = None,
        pool_file = None,
        size = None,
        pool = None,
        pg_bin = None,
        os_user = None,
        listen_address = None,
        port_range = None,
        branch_headroom = None,
        branch_reserve = None,
        docker_memory = None,
        docker_pids = None,
        zfs_properties = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn init(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        home: PathBuf,
        dataset: Option<String>,
        pool_file: Option<PathBuf>,
        size: Option<Size>,
        pool: Option<String>,
        pg_bin: Option<PathBuf>,
        os_user: Option<String>,
        listen_address: Option<String>,
        port_range: Option<(u16, u16)>,
        branch_headroom: Option<u8>,
        branch_reserve: Option<Size>,
        docker_memory: Option<Size>,
        docker_pids: Option<u64>,
        zfs_properties: Option<std::collections::BTreeMap<String, String>>,
    ) -> PyResult<Self> {
        let storage = match (dataset, pool_file, size, pool) {
            (Some(ds), None, None, None) => InitStorage::Dataset(ds),
            (None, Some(file), Some(size), Some(pool)) => InitStorage::PoolFile {
                file,
                size: size.bytes().map_err(|e| to_pyerr(py, e))?,
                pool,
            },
            _ => {
                return Err(to_pyerr(
                    py,
                    Error::Config(
                        "BranchManager.init needs either dataset=... or all of pool_file=..., size=..., pool=..."
                            .into(),
                    ),
                ))
            }
        };
        let opts = InitOptions {
            storage,
            pg_bin,
            os_user,
            listen_address,
            port_range,
            branch_headroom_percent: branch_headroom,
            branch_reserve: branch_reserve
                .map(|s| s.bytes())
                .transpose()
                .map_err(|e| to_pyerr(py, e))?,
            docker_memory: docker_memory
                .map(|s| s.bytes())
                .transpose()
                .map_err(|e| to_pyerr(py, e))?,
            docker_pids,
            zfs_properties: zfs_properties.unwrap_or_default().into_iter().collect(),
        };
        let h = home.clone();
        let mgr = py
            .detach(move || Blocking::init(h, opts))
            .map_err(|e| to_pyerr(py, e))?;
        Ok(Self::wrap(mgr.inner().home().to_path_buf(), mgr))
    }

    /// The home directory (absolute).
    #[getter]
    fn home(&self) -> PathBuf {
        self.home.clone()
    }

    /// The parent ZFS dataset of every database and branch.
    #[getter]
    fn dataset(&self, py: Python<'_>) -> PyResult<String> {
        Ok(self.core(py)?.inner().config().dataset.clone())
    }

    /// The datasets' ZFS properties as recorded at init (e.g.
    /// ``{"recordsize": "8K", "atime": "off", "compression": "on"}``).
    #[getter]
    fn zfs_properties(
        &self,
        py: Python<'_>,
    ) -> PyResult<std::collections::BTreeMap<String, String>> {
        Ok(self.core(py)?.inner().config().zfs_properties.clone())
    }

    /// The (first, last) ports this home allocates from.
    #[getter]
    fn port_range(&self, py: Python<'_>) -> PyResult<(u16, u16)> {
        let m = self.core(py)?;
        let c = m.inner().config();
        Ok((c.port_start, c.port_end))
    }

    /// Create a new, started, empty database.
    #[pyo3(signature = (name, *, pg_bin = None, pg_version = None, runtime = None, image = None))]
    fn create(
        &self,
        py: Python<'_>,
        name: &str,
        pg_bin: Option<PathBuf>,
        pg_version: Option<u32>,
        runtime: Option<String>,
        image: Option<String>,
    ) -> PyResult<PyInfo> {
        let opts = CreateOptions {
            pg_bin,
            pg_version,
            runtime,
            image,
        };
        self.call(py, |m| m.create(name, opts)).map(PyInfo::from)
    }

    /// Make `name`, a new read-write server on a ZFS clone of `source`
    /// (a database or branch), started. ``mode`` is how a running source is
    /// snapshotted: ``"application-consistent"`` (backup mode; the default)
    /// or ``"crash-consistent"`` (CHECKPOINT + snapshot; ``fast=True`` is
    /// its deprecated spelling). ``quota`` (bytes, or text
    /// like ``"2G"``) caps the pool space the branch may use, so it cannot
    /// fill the pool for its source. Returns a `Branch`, a context manager
    /// that destroys the branch on exit.
    ///
    /// ``at`` branches the source as it was at that point, replayed from
    /// its retained WAL (``configure(source, retain_wal="7d")``): a
    /// timestamp with an offset (``"2026-12-03 16:40:00+00"``) or an LSN
    /// (``"0/16B3748"``); the branch holds exactly what was committed by
    /// then. A point outside the window raises ``OutOfWindowError``.
    ///
    /// ``mask`` (a list of SQL files, or directories of ``*.sql``) masks
    /// the branch before it has a TCP port, in one transaction; a failing
    /// statement destroys it and raises ``MaskError`` naming the file, line
    /// and statement. ``schema_only=True`` keeps every object and no rows.
    /// ``unmasked=True`` skips the source's masking policy (refused with
    /// ``MaskError`` when the source forbids it). ``mask_rules`` (a list of
    /// TOML rules files, docs/masking.md) runs after ``mask`` in the same
    /// transaction; a bad file or a rule naming a missing column raises
    /// ``MaskError`` naming the file and rule.
    ///
    /// ``ttl`` (seconds, or text like ``"8h"``): `daemon_once` (or ``bpg
    /// daemon``) destroys the branch, its own branches first, this long
    /// after it was made.
    ///
    /// ``credentials="rotate"`` gives every role with a password a new one
    /// on the branch before it has a TCP port (``url(name, role=...)``
    /// returns a role's URL); ``"keep"`` keeps the source's passwords;
    /// None: the source's setting, else rotate for a branch of a replica
    /// or attached cluster, keep for a database (a branch of a rotated
    /// branch always rotates).
    ///
    /// ``rewindable=True`` gives the branch a rewind point (a snapshot of
    /// it as made: isolated, masked, before it first listened on TCP):
    /// `rewind` then rolls it back to that point under the same name, port
    /// and password, much cheaper than `reset` or a new branch.
    ///
    /// ``owner_pid`` (a running process, e.g. ``os.getpid()``): once that
    /// process is gone, `gc` (and the daemon's pass) destroys the branch;
    /// a pid of no process raises ``ConfigError`` and makes nothing.
    #[pyo3(signature = (source, name, mode = None, quota = None, runtime = None, image = None, *, at = None, fast = None, mask = None, schema_only = false, unmasked = false, ttl = None, mask_rules = None, credentials = None, rewindable = false, owner_pid = None))]
    #[allow(clippy::too_many_arguments)]
    fn branch(
        slf: &Bound<'_, Self>,
        source: &str,
        name: &str,
        mode: Option<&str>,
        quota: Option<Size>,
        runtime: Option<String>,
        image: Option<String>,
        at: Option<String>,
        fast: Option<bool>,
        mask: Option<Vec<std::path::PathBuf>>,
        schema_only: bool,
        unmasked: bool,
        ttl: Option<Secs>,
        mask_rules: Option<Vec<std::path::PathBuf>>,
        credentials: Option<&str>,
        rewindable: bool,
        owner_pid: Option<u32>,
    ) -> PyResult<Py<PyBranch>> {
        let py = slf.py();
        let ttl = ttl
            .map(Secs::duration)
            .transpose()
            .map_err(|e| to_pyerr(py, e))?;
        let opts = BranchOptions {
            credentials: credentials_of(py, credentials)?,
            runtime,
            image,
            at,
            ttl,
            mask: mask.unwrap_or_default(),
            mask_rules: mask_rules.unwrap_or_default(),
            schema_only,
            unmasked,
            rewindable,
            owner_pid,
            ..branch_options(py, mode, fast, quota)?
        };
        let report = slf.get().call(py, |m| m.branch(source, name, opts))?;
        Py::new(py, PyBranch::initializer(report, slf.clone().unbind()))
    }

    /// Throw a branch's changes away: branch its parent again under the
    /// same name and port (its URL stays valid). Refused for a database and
    /// for a branch that has branches (`HasDependentsError`). ``mode`` and
    /// ``quota`` as for `branch`. ``to="SRC@NAME"``: back to that named
    /// snapshot instead (SRC becomes its parent). ``credentials`` changes
    /// the branch's credentials policy (None: the one it was made with;
    /// rotate gives its roles new passwords again). A rewindable branch
    /// stays one and gets a new rewind point of its new data;
    /// ``rewindable=True`` makes a branch without one rewindable.
    #[pyo3(signature = (name, mode = None, quota = None, *, fast = None, to = None, credentials = None, rewindable = false))]
    #[allow(clippy::too_many_arguments)]
    fn reset(
        slf: &Bound<'_, Self>,
        name: &str,
        mode: Option<&str>,
        quota: Option<Size>,
        fast: Option<bool>,
        to: Option<&str>,
        credentials: Option<&str>,
        rewindable: bool,
    ) -> PyResult<Py<PyBranch>> {
        let py = slf.py();
        let opts = BranchOptions {
            credentials: credentials_of(py, credentials)?,
            rewindable,
            ..branch_options(py, mode, fast, quota)?
        };
        let report = slf.get().call(py, |m| match to {
            Some(to) => m.reset_to(name, to, opts),
            None => m.reset(name, opts),
        })?;
        Py::new(py, PyBranch::initializer(report, slf.clone().unbind()))
    }

    /// Roll a branch made with ``rewindable=True`` back to its rewind point
    /// (how it was when made: isolated, masked, nothing written since) and
    /// start it again under the same name, port and password (its URL stays
    /// valid): a stop, a ZFS rollback and a start. Returns a
    /// `RewindReport`. Refused, nothing changed: a branch without a rewind
    /// point or a database (``UnsupportedError``), a protected branch
    /// (``ProtectedError``), one with branches or named snapshots of its
    /// own (``HasDependentsError``).
    fn rewind(&self, py: Python<'_>, name: &str) -> PyResult<PyRewindReport> {
        self.call(py, |m| m.rewind(name)).map(PyRewindReport::from)
    }

    /// Take a named snapshot of a database or branch (the branch recipe;
    /// ``mode`` as for `branch`), keeping what a branch of it needs later:
    /// ``branch("SRC@NAME", ...)`` works after the source moved on or
    /// stopped. ``name`` None: the UTC time, ``YYYYMMDD-HHMMSS``. Returns
    /// the snapshot as a dict (the ``snapshot`` of ``bpg snapshot --json``).
    #[pyo3(signature = (source, name = None, mode = None, *, fast = None))]
    fn snapshot<'py>(
        &self,
        py: Python<'py>,
        source: &str,
        name: Option<String>,
        mode: Option<&str>,
        fast: Option<bool>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let mut opts = betterpg_core::SnapshotOptions::default()
            .with_mode(branch_options(py, mode, fast, None)?.mode);
        opts.name = name;
        let r = self.call(py, |m| m.snapshot(source, opts))?;
        json_value(py, &r.snapshot)
    }

    /// The named snapshots of ``source`` (None: every one), oldest first,
    /// as dicts (as in ``bpg snapshots --json``).
    #[pyo3(signature = (source = None))]
    fn snapshots<'py>(&self, py: Python<'py>, source: Option<&str>) -> PyResult<Bound<'py, PyAny>> {
        let l = self.call(py, |m| m.snapshots(source))?;
        json_value(py, &l)
    }

    /// Destroy the named snapshot ``"SRC@NAME"``: `HasDependentsError`
    /// while branches were cloned from it, unless ``force``, which destroys
    /// them too. Returns ``{"snapshot": ..., "branches_destroyed": [...]}``.
    #[pyo3(signature = (snapshot, force = false))]
    fn destroy_snapshot<'py>(
        &self,
        py: Python<'py>,
        snapshot: &str,
        force: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (src, name) = snapshot.split_once('@').ok_or_else(|| {
            pyo3::exceptions::PyValueError::new_err(format!(
                "snapshot {snapshot:?}: give SOURCE@NAME"
            ))
        })?;
        let r = self.call(py, |m| m.destroy_snapshot(src, name, force))?;
        json_value(py, &r)
    }

    /// Apply retention (``keep_last``, ``keep_hourly``, ``keep_daily``)
    /// of ``source`` (None: every source); ``dry_run`` changes nothing.
    /// Returns ``{"dry_run", "pruned", "kept"}`` as ``bpg snapshot --prune
    /// --json``.
    #[pyo3(signature = (source = None, dry_run = false))]
    fn prune_snapshots<'py>(
        &self,
        py: Python<'py>,
        source: Option<&str>,
        dry_run: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let r = self.call(py, |m| m.prune_snapshots(source, dry_run))?;
        json_value(py, &r)
    }

    /// One pass of the snapshot schedule (what ``bpg daemon`` runs): take
    /// what the policies say is due, then prune. Returns the report as
    /// ``bpg snapshot --schedule --json`` (failed sources under
    /// ``failures``).
    #[pyo3(signature = (source = None, dry_run = false))]
    fn run_snapshot_policy<'py>(
        &self,
        py: Python<'py>,
        source: Option<&str>,
        dry_run: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let r = self.call(py, |m| m.run_snapshot_policy(source, dry_run))?;
        json_value(py, &r)
    }

    /// One pass of the scheduler (what ``bpg daemon --once`` runs):
    /// snapshots by policy and pruning, expiry (children first; a subtree
    /// with a protected entry is skipped), idle stop, watching replicas.
    /// Returns the pass report as ``bpg daemon --once --json`` (each
    /// action with ``time``, ``action``, ``name``, ``result``,
    /// ``reason``; failed actions have ``result == "failed"``). Raises
    /// ``DaemonRunningError`` while a ``bpg daemon`` runs for the home.
    #[pyo3(signature = (dry_run = false))]
    fn daemon_once<'py>(&self, py: Python<'py>, dry_run: bool) -> PyResult<Bound<'py, PyAny>> {
        let r = self.call(py, |m| m.daemon_once(dry_run))?;
        json_value(py, &r)
    }

    /// Find (and unless ``dry_run``, remove) what betterpg made that no
    /// complete database or branch owns (left by a killed process). Returns
    /// a ``GcReport``: ``items`` found, ``kept`` (what gc left alone because
    /// an operator made something on or from it), each a list of
    /// ``GcItem`` (``what``, ``name``, ``reason``).
    #[pyo3(signature = (dry_run = false))]
    fn gc(&self, py: Python<'_>, dry_run: bool) -> PyResult<PyGcReport> {
        self.call(py, |m| m.gc(dry_run)).map(PyGcReport::from)
    }

    /// Destroy a database or branch. One with branches is refused
    /// (`HasDependentsError`) unless ``force=True``, which destroys them too.
    #[pyo3(name = "destroy", signature = (name, force = false))]
    fn py_destroy(&self, py: Python<'_>, name: &str, force: bool) -> PyResult<()> {
        self.destroy(py, name, force)
    }

    /// Register a running PostgreSQL that betterpg did not create (its
    /// data directory ``pgdata``, pg_wal and tablespaces on ZFS datasets of
    /// the home's pool; ``url`` a libpq URL for a role with what branching
    /// needs, ``password`` instead of one in the URL) as ``name``, kind
    /// "attached". Everything is checked first and nothing is recorded on a
    /// refusal; betterpg never starts, stops or changes it.
    /// ``settings``: policies for its branches, recorded at once, as
    /// ``configure`` takes them (e.g. ``{"mask": ["users.sql"],
    /// "forbid_unmasked": True}``); a bad one raises ``ConfigError`` and
    /// nothing is recorded.
    #[pyo3(signature = (name, *, pgdata, url, password = None, pg_bin = None, settings = None))]
    #[allow(clippy::too_many_arguments)]
    fn attach<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        pgdata: PathBuf,
        url: String,
        password: Option<String>,
        pg_bin: Option<PathBuf>,
        settings: Option<&Bound<'py, pyo3::types::PyDict>>,
    ) -> PyResult<PyInfo> {
        let opts = AttachOptions {
            pgdata,
            url,
            password,
            pg_bin,
            settings: settings_pairs(settings)?,
        };
        self.call(py, |m| m.attach(name, opts)).map(PyInfo::from)
    }

    /// Follow the primary at ``from_url`` (a libpq URL or key=value string
    /// for a role with ``REPLICATION``; the password in it, in
    /// ``password_file`` or in ``PGPASSFILE``, stored 0600 and never
    /// printed) as the replica ``name``, kind "replica": a base backup into
    /// its own dataset, started as a streaming standby. ``slot`` creates or
    /// reuses a physical replication slot on the primary; ``pg_bin`` names
    /// the local binaries (else those of the primary's major version). A
    /// failure raises the typed error (``PostgresError`` with the server's
    /// message and SQLSTATE, ``VersionMismatchError``, ``NoSpaceError``,
    /// ``ConfigError``) and leaves nothing. ``settings``: policies for its
    /// branches, recorded at once, as ``configure`` takes them.
    ///
    /// ``rebuild=True`` (``bpg follow NAME --rebuild``): rebuild the
    /// existing replica ``name`` instead: a new base backup of the current
    /// primary (``from_url``, ``password_file`` and ``slot`` default to
    /// the stored ones) takes its place on the same port, while the
    /// branches of the old replica keep running on its old data. While it
    /// runs, another rebuild, a branch or a named snapshot of the replica
    /// raises ``InvalidStateError`` (and it does while one of those runs);
    /// a failure leaves the old replica as it was. Returns the replica.
    #[pyo3(signature = (name, from_url = None, *, password_file = None, slot = None, pg_bin = None, settings = None, rebuild = false))]
    #[allow(clippy::too_many_arguments)]
    fn follow<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        from_url: Option<String>,
        password_file: Option<PathBuf>,
        slot: Option<String>,
        pg_bin: Option<PathBuf>,
        settings: Option<&Bound<'py, pyo3::types::PyDict>>,
        rebuild: bool,
    ) -> PyResult<PyInfo> {
        let mut opts = FollowOptions::new(from_url.unwrap_or_default());
        opts.password_file = password_file;
        opts.slot = slot;
        opts.pg_bin = pg_bin;
        opts.settings = settings_pairs(settings)?;
        opts.rebuild = rebuild;
        self.call(py, |m| m.follow(name, opts))
            .map(|r| PyInfo::from(r.replica))
    }

    /// Forget the attached cluster ``name`` (it is not touched). Refused
    /// (``HasDependentsError``) while it has branches unless ``force=True``,
    /// which destroys them; returns the branches destroyed.
    #[pyo3(signature = (name, force = false))]
    fn detach(&self, py: Python<'_>, name: &str, force: bool) -> PyResult<Vec<String>> {
        self.call(py, |m| m.detach(name, force))
    }

    /// Start a stopped database or branch.
    fn start(&self, py: Python<'_>, name: &str) -> PyResult<PyInfo> {
        self.call(py, |m| m.start(name)).map(PyInfo::from)
    }

    /// Stop a database or branch (fast shutdown).
    fn stop(&self, py: Python<'_>, name: &str) -> PyResult<PyInfo> {
        self.call(py, |m| m.stop(name)).map(PyInfo::from)
    }

    /// Protect a database or branch: destroy (even forced), reset and
    /// expiry raise ``ProtectedError``, and gc never removes what it owns.
    fn protect(&self, py: Python<'_>, name: &str) -> PyResult<PyInfo> {
        self.call(py, |m| m.protect(name)).map(PyInfo::from)
    }

    /// Lift the protection of a database or branch.
    fn unprotect(&self, py: Python<'_>, name: &str) -> PyResult<PyInfo> {
        self.call(py, |m| m.unprotect(name)).map(PyInfo::from)
    }

    /// Status of one database or branch.
    fn info(&self, py: Python<'_>, name: &str) -> PyResult<PyInfo> {
        self.call(py, |m| m.info(name)).map(PyInfo::from)
    }

    /// Every database and branch (parents first) and the space of the
    /// pool, as ``bpg status`` shows them: a ``Status``. One entry:
    /// ``info(name)``.
    fn status(&self, py: Python<'_>) -> PyResult<PyStatus> {
        self.call(py, |m| Ok(PyStatus::new(m.status()?, m.pool_usage()?)))
    }

    /// Every database and branch, parents before their branches.
    fn list<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let all = self.call(py, |m| m.status())?;
        let objs = all
            .into_iter()
            .map(|i| Py::new(py, PyInfo::from(i)))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, objs)
    }

    /// The home's audit log: what created, exposed (``url``), reset or
    /// destroyed a copy, by whom, when, and how it ended, oldest first.
    /// Each event is a dict with the keys of a line of ``HOME/audit.log``
    /// (``time``, ``unix``, ``user``, ``uid``, ``operation``, ``source``,
    /// ``branch``, ``mode``, ``masking``, ``credentials``, ``result``,
    /// ``error``; ``sudo_user``, ``role``, ``detail`` when set). ``since``: a
    /// duration back from now (``"30m"``, ``"8h"``, ``"7d"``), a time
    /// (``"2026-12-03T16:00:00Z"``), a date or Unix seconds.
    #[pyo3(signature = (since = None))]
    fn audit<'py>(&self, py: Python<'py>, since: Option<&str>) -> PyResult<Bound<'py, PyAny>> {
        let events = self.call(py, |m| m.audit(since))?;
        let json = serde_json::to_string(&events)
            .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.to_string()))?;
        py.import("json")?.call_method1("loads", (json,))
    }

    /// The columns of ``source`` (a running database or branch; every
    /// database of its server) whose name or sampled values look personal
    /// (email, phone, name, address, birth date, IBAN, card number, IP)
    /// and that the masking rules file ``rules`` does not cover. Returns a
    /// dict: ``source``, ``databases``, ``columns_checked``,
    /// ``sample_rows``, ``rules``, ``uncovered`` and ``covered`` (lists of
    /// dicts with ``database``, ``schema``, ``table``, ``column``,
    /// ``data_type``, ``kinds``, ``reasons``). Reads only.
    #[pyo3(signature = (source, rules = None, sample_rows = 0))]
    fn mask_check<'py>(
        &self,
        py: Python<'py>,
        source: &str,
        rules: Option<PathBuf>,
        sample_rows: u32,
    ) -> PyResult<Bound<'py, PyAny>> {
        let report = self.call(py, |m| {
            let mut opts = betterpg_core::MaskCheckOptions::with_rules(rules);
            opts.sample_rows = sample_rows;
            m.mask_check(source, opts)
        })?;
        let json = serde_json::to_string(&report)
            .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.to_string()))?;
        py.import("json")?.call_method1("loads", (json,))
    }

    /// The SQL the masking rules file ``path`` compiles to, as a dict
    /// (``file``, ``key_source``, ``needs_key``, ``rules``, ``sql``; the
    /// shape of ``bpg mask-sql --json``); the key is a placeholder naming
    /// whose it is (``source``'s root source). Contacts no server, makes no
    /// key; a bad file raises ``MaskError`` naming the file and key.
    #[pyo3(signature = (path, source = None))]
    fn mask_sql<'py>(
        &self,
        py: Python<'py>,
        path: PathBuf,
        source: Option<&str>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let r = self.call(py, |m| m.mask_sql(&path, source))?;
        let json = serde_json::to_string(&r)
            .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.to_string()))?;
        py.import("json")?.call_method1("loads", (json,))
    }

    /// Connection URL (with the password) of a database or branch; with
    /// ``role``, of that role of a branch whose credentials were rotated
    /// (the password the rotation gave it). A branch that kept its
    /// source's passwords raises ``UnsupportedError`` (betterpg does not
    /// know them); a role that got no password ``NotFoundError``.
    #[pyo3(signature = (name, role = None))]
    fn url(&self, py: Python<'_>, name: &str, role: Option<&str>) -> PyResult<String> {
        self.call(py, |m| match role {
            Some(r) => m.url_for_role(name, r),
            None => m.url(name),
        })
    }

    /// The settings of a database or branch (the policies of `bpg config`)
    /// as a dict: every key, None (or [], False) when not set; durations
    /// in seconds.
    fn settings<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
        let s = self.call(py, |m| m.settings(name))?;
        settings_dict(py, &s)
    }

    /// Change settings of a database or branch, all or nothing, and return
    /// them (as `settings`): ``configure("prod", ttl="8h", keep_last=3,
    /// mask=["users.sql"], credentials="rotate")``. Durations are strings
    /// such as "30m" or whole seconds; None clears a setting; a list sets
    /// `mask`/`mask_rules` to those files. A bad key or value raises
    /// `ConfigError` and changes nothing.
    #[pyo3(signature = (name, **settings))]
    fn configure<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        settings: Option<&Bound<'py, pyo3::types::PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let pairs = settings_pairs(settings)?;
        let s = self.call(py, |m| {
            if pairs.is_empty() {
                m.settings(name)
            } else {
                m.configure(name, &pairs)
            }
        })?;
        settings_dict(py, &s)
    }

    /// The server log, or its last `tail` lines.
    #[pyo3(signature = (name, tail = None))]
    fn logs(&self, py: Python<'_>, name: &str, tail: Option<usize>) -> PyResult<String> {
        self.call(py, |m| m.logs(name, tail))
    }

    /// Follow the server log: its last `tail` lines (all when None) come
    /// first, then what the server writes, as it writes it (a
    /// `LogFollower`: iterate it, or `read(timeout)`).
    #[pyo3(signature = (name, tail = None))]
    fn follow_logs(
        &self,
        py: Python<'_>,
        name: &str,
        tail: Option<usize>,
    ) -> PyResult<crate::doctor::PyLogFollower> {
        self.call(py, |m| m.follow_logs(name, tail))
            .map(crate::doctor::PyLogFollower::new)
    }

    /// Check this machine and the home `home` (else `$BPG_HOME`, else
    /// /var/lib/betterpg), initialised or not: storage backend, ZFS,
    /// PostgreSQL binaries, the servers' OS user, pool file. What is
    /// missing is in the report's `problems` (`ok` is False), not raised.
    #[staticmethod]
    #[pyo3(signature = (home = None))]
    fn doctor(py: Python<'_>, home: Option<PathBuf>) -> PyResult<crate::doctor::PyDoctorReport> {
        crate::doctor::doctor(py, resolve_home(home))
    }

    /// Space of the pool holding the datasets.
    fn pool_usage(&self, py: Python<'_>) -> PyResult<PyPoolUsage> {
        self.call(py, |m| m.pool_usage()).map(PyPoolUsage::from)
    }

    fn __repr__(&self) -> String {
        format!(
            "BranchManager(home={})",
            crate::types::py_str(&self.home.display().to_string())
        )
    }
}

/// The settings as a Python dict (through their one JSON form).
/// A core result as plain Python values (through its JSON form).
fn json_value<'py>(py: Python<'py>, v: &impl serde::Serialize) -> PyResult<Bound<'py, PyAny>> {
    let text = serde_json::to_string(v)
        .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.to_string()))?;
    py.import("json")?.call_method1("loads", (text,))
}

fn settings_dict<'py>(py: Python<'py>, s: &betterpg_core::Settings) -> PyResult<Bound<'py, PyAny>> {
    py.import("json")?
        .call_method1("loads", (s.to_json().to_string(),))
}

/// The `(key, value)` pairs of a settings dict, in the string forms the
/// library parses: None clears (`none`), a list gives one pair per item
/// (an empty list clears), booleans are `true`/`false`.
fn settings_pairs(
    settings: Option<&Bound<'_, pyo3::types::PyDict>>,
) -> PyResult<Vec<(String, String)>> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (k, v) in settings.into_iter().flatten() {
        let key: String = k.extract()?;
        if v.is_none() {
            pairs.push((key, "none".into()));
        } else if let Ok(list) = v.cast::<PyList>() {
            if list.is_empty() {
                pairs.push((key.clone(), "none".into()));
            }
            for item in list.iter() {
                pairs.push((key.clone(), item.str()?.extract()?));
            }
        } else if let Ok(b) = v.extract::<bool>() {
            pairs.push((key, b.to_string()));
        } else {
            pairs.push((key, v.str()?.extract()?));
        }
    }
    Ok(pairs)
}
