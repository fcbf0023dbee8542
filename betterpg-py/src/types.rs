//! Result objects: `Info`, `Branch`, `RewindReport`, `StepTiming`,
//! `PoolUsage`, `Status`, `GcItem`, `GcReport`.
//!
//! Plain immutable snapshots of what the core returned; `Branch` adds the
//! timing breakdown and a context manager that destroys the branch.

use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::manager::PyBranchManager;

/// Replace the password of a `postgresql://user:password@...` URL with `***`.
pub fn mask_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

/// `value` as a Python string literal (single quotes).
pub fn py_str(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// `value` as a Python literal: a string or `None`.
pub fn py_opt(value: Option<&str>) -> String {
    value.map(py_str).unwrap_or_else(|| "None".into())
}

/// A database or branch as `status` reports it (a snapshot, not live).
#[pyclass(module = "betterpg", name = "Info", frozen, subclass)]
#[derive(Debug, Clone)]
pub struct PyInfo {
    /// Name.
    #[pyo3(get)]
    pub name: String,
    /// "database" or "branch".
    #[pyo3(get)]
    pub kind: String,
    /// Parent name (None for a database).
    #[pyo3(get)]
    pub parent: Option<String>,
    /// "running" or "stopped".
    #[pyo3(get)]
    pub status: String,
    /// "ready", "creating", "destroying" or "incomplete".
    #[pyo3(get)]
    pub state: String,
    /// TCP port.
    #[pyo3(get)]
    pub port: u16,
    /// Pool bytes used by its dataset.
    #[pyo3(get)]
    pub used_bytes: u64,
    /// Bytes its dataset refers to.
    #[pyo3(get)]
    pub referenced_bytes: u64,
    /// Connection URL, with the password (`postgresql://postgres:...@host:port/postgres`).
    #[pyo3(get)]
    pub url: String,
    /// How a branch was made ("application-consistent" or "crash-consistent"); None for a database.
    #[pyo3(get)]
    pub mode: Option<String>,
    /// Its ZFS dataset.
    #[pyo3(get)]
    pub dataset: String,
    /// For a branch, the snapshot it was cloned from.
    #[pyo3(get)]
    pub snapshot: Option<String>,
    /// Runtime name ("native").
    #[pyo3(get)]
    pub runtime: String,
    /// PostgreSQL major version.
    #[pyo3(get)]
    pub pg_version: u32,
    /// Unix time of creation.
    #[pyo3(get)]
    pub created_at: u64,
    /// For a database that keeps WAL (``retain_wal``): its restorable
    /// window and what the WAL uses; None otherwise.
    #[pyo3(get)]
    pub wal_retention: Option<PyWalRetention>,
    /// Protected (``protect``): destroy, reset and expiry raise
    /// ``ProtectedError``.
    #[pyo3(get)]
    pub protected: bool,
    /// A branch made with ``rewindable=True``: it has a rewind point, and
    /// ``BranchManager.rewind`` rolls it back to how it was when made.
    #[pyo3(get)]
    pub rewindable: bool,
    /// The process the branch lives for (``owner_pid=``): once it is gone,
    /// ``gc`` and the daemon's pass destroy the branch; None: no owner.
    #[pyo3(get)]
    pub owner_pid: Option<u32>,
    /// Unix time after which the daemon destroys it (its ``ttl``), or
    /// ``None``: never.
    #[pyo3(get)]
    pub expires_at: Option<u64>,
    /// Credentials policy: for a branch the one it was made with
    /// (``"rotate"`` or ``"keep"``); for a source what its branches get by
    /// default (``"rotate"`` for a replica or attached cluster), ``None``
    /// for a database without the setting.
    #[pyo3(get)]
    pub credentials: Option<String>,
}

/// The WAL a database keeps and the window it can be branched at
/// (``Info.wal_retention``; ``branch(..., at=...)`` takes a point inside).
#[pyclass(module = "betterpg", name = "WalRetention", frozen)]
#[derive(Debug, Clone)]
pub struct PyWalRetention {
    /// How long WAL is kept, seconds.
    #[pyo3(get)]
    pub retain_secs: u64,
    /// True once archiving runs and a base exists; False while the
    /// setting waits for the database's next start.
    #[pyo3(get)]
    pub active: bool,
    /// Oldest restorable time (UTC, as PostgreSQL prints it), or None.
    #[pyo3(get)]
    pub from_time: Option<String>,
    /// Newest point known archived (UTC), or None.
    #[pyo3(get)]
    pub to_time: Option<String>,
    /// Oldest restorable WAL location, or None.
    #[pyo3(get)]
    pub from_lsn: Option<String>,
    /// Newest WAL location known archived, or None.
    #[pyo3(get)]
    pub to_lsn: Option<String>,
    /// Pool bytes the retained WAL uses.
    #[pyo3(get)]
    pub wal_bytes: u64,
    /// WAL segments retained.
    #[pyo3(get)]
    pub segments: usize,
    /// Base snapshots replay can start from.
    #[pyo3(get)]
    pub bases: usize,
}

impl From<betterpg_core::WalRetention> for PyWalRetention {
    fn from(w: betterpg_core::WalRetention) -> Self {
        PyWalRetention {
            retain_secs: w.retain_secs,
            active: w.active,
            from_time: w.from_time,
            to_time: w.to_time,
            from_lsn: w.from_lsn,
            to_lsn: w.to_lsn,
            wal_bytes: w.wal_bytes,
            segments: w.segments,
            bases: w.bases,
        }
    }
}

impl PyWalRetention {
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("retain_secs", self.retain_secs)?;
        d.set_item("active", self.active)?;
        d.set_item("from_time", &self.from_time)?;
        d.set_item("to_time", &self.to_time)?;
        d.set_item("from_lsn", &self.from_lsn)?;
        d.set_item("to_lsn", &self.to_lsn)?;
        d.set_item("wal_bytes", self.wal_bytes)?;
        d.set_item("segments", self.segments)?;
        d.set_item("bases", self.bases)?;
        Ok(d)
    }
}

#[pymethods]
impl PyWalRetention {
    fn __repr__(&self) -> String {
        format!(
            "WalRetention(retain_secs={}, active={}, from_time={}, to_time={}, wal_bytes={})",
            self.retain_secs,
            if self.active { "True" } else { "False" },
            py_opt(self.from_time.as_deref()),
            py_opt(self.to_time.as_deref()),
            self.wal_bytes
        )
    }
}

impl From<betterpg_core::Info> for PyInfo {
    fn from(i: betterpg_core::Info) -> Self {
        PyInfo {
            name: i.name,
            kind: i.kind.to_string(),
            parent: i.parent,
            status: i.status.to_string(),
            state: i.state.to_string(),
            port: i.port,
            used_bytes: i.used_bytes,
            referenced_bytes: i.referenced_bytes,
            url: i.url,
            mode: i.mode.map(|m| m.as_str().to_string()),
            dataset: i.dataset,
            snapshot: i.snapshot,
            runtime: i.runtime,
            pg_version: i.pg_version,
            created_at: i.created_at,
            wal_retention: i.wal_retention.map(PyWalRetention::from),
            protected: i.protected,
            rewindable: i.rewindable,
            owner_pid: i.owner_pid,
            expires_at: i.expires_at,
            credentials: i.credentials.map(|c| c.as_str().to_string()),
        }
    }
}

impl PyInfo {
    fn fill_dict(&self, d: &Bound<'_, PyDict>) -> PyResult<()> {
        d.set_item("name", &self.name)?;
        d.set_item("kind", &self.kind)?;
        d.set_item("parent", &self.parent)?;
        d.set_item("status", &self.status)?;
        d.set_item("state", &self.state)?;
        d.set_item("port", self.port)?;
        d.set_item("used_bytes", self.used_bytes)?;
        d.set_item("referenced_bytes", self.referenced_bytes)?;
        d.set_item("url", &self.url)?;
        d.set_item("mode", &self.mode)?;
        d.set_item("dataset", &self.dataset)?;
        d.set_item("snapshot", &self.snapshot)?;
        d.set_item("runtime", &self.runtime)?;
        d.set_item("pg_version", self.pg_version)?;
        d.set_item("created_at", self.created_at)?;
        match &self.wal_retention {
            Some(w) => d.set_item("wal_retention", w.to_dict(d.py())?)?,
            None => d.set_item("wal_retention", d.py().None())?,
        }
        d.set_item("protected", self.protected)?;
        d.set_item("rewindable", self.rewindable)?;
        d.set_item("owner_pid", self.owner_pid)?;
        d.set_item("expires_at", self.expires_at)?;
        d.set_item("credentials", &self.credentials)?;
        Ok(())
    }
}

#[pymethods]
impl PyInfo {
    /// True for a branch, False for a database.
    #[getter]
    fn is_branch(&self) -> bool {
        self.kind == "branch"
    }

    /// True when the server is running.
    #[getter]
    fn running(&self) -> bool {
        self.status == "running"
    }

    /// Every field as a plain dict (JSON-serialisable; includes the URL with its password).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        self.fill_dict(&d)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!(
            "Info(name={}, kind={}, parent={}, status={}, port={}, url={})",
            py_str(&self.name),
            py_str(&self.kind),
            py_opt(self.parent.as_deref()),
            py_str(&self.status),
            self.port,
            py_str(&mask_url(&self.url))
        )
    }
}

/// Time taken by one step of a branch call.
#[pyclass(module = "betterpg", name = "StepTiming", frozen)]
#[derive(Debug, Clone)]
pub struct PyStepTiming {
    /// Step name: backup_start, snapshot, backup_stop, clone, prepare, start ...
    #[pyo3(get)]
    pub step: String,
    /// Milliseconds.
    #[pyo3(get)]
    pub millis: f64,
}

#[pymethods]
impl PyStepTiming {
    fn __repr__(&self) -> String {
        format!(
            "StepTiming(step={}, millis={:.1})",
            py_str(&self.step),
            self.millis
        )
    }
}

/// The steps of a core report as `StepTiming` objects, in order.
/// A report's steps as a dict: step name -> milliseconds.
fn step_dict<'py>(py: Python<'py>, steps: &[(String, f64)]) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (step, millis) in steps {
        d.set_item(step, millis)?;
    }
    Ok(d)
}

fn step_list<'py>(py: Python<'py>, steps: &[(String, f64)]) -> PyResult<Bound<'py, PyList>> {
    let items = steps
        .iter()
        .map(|(step, millis)| {
            Py::new(
                py,
                PyStepTiming {
                    step: step.clone(),
                    millis: *millis,
                },
            )
        })
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, items)
}

/// What `BranchManager.rewind` did: the branch as it is now (running, same
/// name, port and URL), its rewind point and the time of each step.
#[pyclass(module = "betterpg", name = "RewindReport", frozen)]
pub struct PyRewindReport {
    /// The branch as it is now (running, same name, port and URL).
    #[pyo3(get)]
    branch: PyInfo,
    /// The rewind point's ZFS snapshot name (after the ``@``).
    #[pyo3(get)]
    snapshot: String,
    steps: Vec<(String, f64)>,
    /// Milliseconds of the whole call.
    #[pyo3(get)]
    total_millis: f64,
}

impl From<betterpg_core::RewindReport> for PyRewindReport {
    fn from(r: betterpg_core::RewindReport) -> Self {
        PyRewindReport {
            branch: PyInfo::from(r.branch),
            snapshot: r.snapshot,
            steps: r
                .timings
                .iter()
                .map(|t| (t.step.to_string(), t.millis))
                .collect(),
            total_millis: r.total_millis,
        }
    }
}

#[pymethods]
impl PyRewindReport {
    /// Each step (``check``, ``stop``, ``rollback``, ``start``) with its time, in order.
    #[getter]
    fn timings<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        step_list(py, &self.steps)
    }

    /// The steps as a dict: step name -> milliseconds.
    #[getter]
    fn timing_breakdown<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        step_dict(py, &self.steps)
    }

    /// Every field as a plain dict: ``branch`` (as ``Info.to_dict``),
    /// ``snapshot``, ``timings`` (list of [step, millis], as
    /// ``Branch.to_dict``) and ``total_millis``.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        let b = PyDict::new(py);
        self.branch.fill_dict(&b)?;
        d.set_item("branch", b)?;
        d.set_item("snapshot", &self.snapshot)?;
        d.set_item("timings", self.steps.clone())?;
        d.set_item("total_millis", self.total_millis)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!(
            "RewindReport(branch={}, snapshot={}, port={}, total_millis={:.1})",
            py_str(&self.branch.name),
            py_str(&self.snapshot),
            self.branch.port,
            self.total_millis
        )
    }
}

/// A branch just made by `BranchManager.branch`: an `Info` plus the timing
/// breakdown. A context manager: leaving the `with` block destroys the
/// branch (and any branch made of it).
#[pyclass(module = "betterpg", name = "Branch", frozen, extends = PyInfo)]
pub struct PyBranch {
    steps: Vec<(String, f64)>,
    /// Whole branch call, milliseconds.
    #[pyo3(get)]
    total_millis: f64,
    /// Whether the source was running (a stopped source needs no backup mode).
    #[pyo3(get)]
    source_was_running: bool,
    /// WAL copied from the source into the branch, bytes.
    #[pyo3(get)]
    wal_bytes_copied: u64,
    /// True when `reset` gave the branch a new password (its password file
    /// was missing), so its URL changed.
    #[pyo3(get)]
    password_changed: bool,
    tablespaces: Vec<betterpg_core::TablespaceClone>,
    /// The isolation report as JSON (turned into a dict on access).
    isolation_json: String,
    manager: Py<PyBranchManager>,
    destroyed: AtomicBool,
}

impl PyBranch {
    /// The initializer for a `Branch` object made from a core report.
    pub fn initializer(
        report: betterpg_core::BranchReport,
        manager: Py<PyBranchManager>,
    ) -> PyClassInitializer<PyBranch> {
        let steps = report
            .timings
            .iter()
            .map(|t| (t.step.to_string(), t.millis))
            .collect();
        PyClassInitializer::from(PyInfo::from(report.branch)).add_subclass(PyBranch {
            steps,
            total_millis: report.total_millis,
            source_was_running: report.source_was_running,
            wal_bytes_copied: report.wal_bytes_copied,
            password_changed: report.password_changed,
            tablespaces: report.tablespaces,
            isolation_json: serde_json::to_string(&report.isolation).unwrap_or_default(),
            manager,
            destroyed: AtomicBool::new(false),
        })
    }
}

#[pymethods]
impl PyBranch {
    /// The source's tablespaces the branch got its own clones of: dicts with
    /// `oid`, `name` (None when the source was stopped), `source_location`,
    /// `location` and `dataset`.
    #[getter]
    fn tablespaces<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for t in &self.tablespaces {
            let d = PyDict::new(py);
            d.set_item("oid", t.oid)?;
            d.set_item("name", t.name.clone())?;
            d.set_item("source_location", t.source_location.to_string_lossy())?;
            d.set_item("location", t.location.to_string_lossy())?;
            d.set_item("dataset", t.dataset.clone())?;
            list.append(d)?;
        }
        Ok(list)
    }

    /// What the branch was cut off from its source and what still points
    /// elsewhere: the `isolation` object of `bpg --json branch` as a dict
    /// (`settings_removed`, `settings_overridden`, `files_removed`,
    /// `replication_slots_dropped`, `subscriptions_detached`,
    /// `password_replaced`, `warnings`).
    #[getter]
    fn isolation<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        py.import("json")?
            .getattr("loads")?
            .call1((self.isolation_json.as_str(),))
    }

    /// Each step of the branch call with its time, in order.
    #[getter]
    fn timings<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        step_list(py, &self.steps)
    }

    /// The steps as a dict: step name -> milliseconds.
    #[getter]
    fn timing_breakdown<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        step_dict(py, &self.steps)
    }

    /// The manager that made this branch.
    #[getter]
    fn manager(&self, py: Python<'_>) -> Py<PyBranchManager> {
        self.manager.clone_ref(py)
    }

    /// True once `destroy()` (or leaving the `with` block) removed it.
    #[getter]
    fn destroyed(&self) -> bool {
        self.destroyed.load(Ordering::SeqCst)
    }

    /// Destroy this branch (`force=True` also destroys branches made of it).
    #[pyo3(signature = (force = false))]
    fn destroy(slf: &Bound<'_, Self>, force: bool) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        let name = slf.as_super().get().name.clone();
        me.manager.bind(py).get().destroy(py, &name, force)?;
        me.destroyed.store(true, Ordering::SeqCst);
        Ok(())
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// Destroy the branch with `force=True`; a branch already gone is fine.
    fn __exit__(
        slf: &Bound<'_, Self>,
        _exc_type: &Bound<'_, PyAny>,
        _exc: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        let py = slf.py();
        let me = slf.get();
        if !me.destroyed.load(Ordering::SeqCst) {
            let name = slf.as_super().get().name.clone();
            match me.manager.bind(py).get().destroy(py, &name, true) {
                Ok(()) => {}
                Err(e) if is_not_found(py, &e) => {}
                Err(e) => return Err(e),
            }
            me.destroyed.store(true, Ordering::SeqCst);
        }
        Ok(false)
    }

    fn __repr__(slf: &Bound<'_, Self>) -> String {
        let me = slf.get();
        let info = slf.as_super().get();
        format!(
            "Branch(name={}, parent={}, port={}, mode={}, total_millis={:.1}, url={})",
            py_str(&info.name),
            py_opt(info.parent.as_deref()),
            info.port,
            py_opt(info.mode.as_deref()),
            me.total_millis,
            py_str(&mask_url(&info.url))
        )
    }

    /// Every field as a plain dict, with `timings` (list of [step, millis]) and `total_millis`.
    fn to_dict<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyDict>> {
        let py = slf.py();
        let me = slf.get();
        let d = PyDict::new(py);
        slf.as_super().get().fill_dict(&d)?;
        d.set_item("timings", me.steps.clone())?;
        d.set_item("total_millis", me.total_millis)?;
        d.set_item("source_was_running", me.source_was_running)?;
        d.set_item("wal_bytes_copied", me.wal_bytes_copied)?;
        d.set_item("password_changed", me.password_changed)?;
        d.set_item("tablespaces", me.tablespaces(py)?)?;
        d.set_item("isolation", me.isolation(py)?)?;
        Ok(d)
    }
}

fn is_not_found(py: Python<'_>, e: &PyErr) -> bool {
    let not_found = crate::errors::code_of("not_found");
    e.value(py)
        .getattr("code")
        .and_then(|c| c.extract::<u32>())
        .is_ok_and(|c| Some(c) == not_found)
}

/// Space of the pool holding the datasets.
#[pyclass(module = "betterpg", name = "PoolUsage", frozen)]
#[derive(Debug, Clone)]
pub struct PyPoolUsage {
    /// Pool name.
    #[pyo3(get)]
    pub pool: String,
    /// Bytes in use.
    #[pyo3(get)]
    pub used_bytes: u64,
    /// Bytes still available.
    #[pyo3(get)]
    pub available_bytes: u64,
    /// Used fraction, 0..1.
    #[pyo3(get)]
    pub fraction_used: f64,
    /// True above the core's warning threshold.
    #[pyo3(get)]
    pub warning: bool,
    /// Bytes all branches use together (reservations included).
    #[pyo3(get)]
    pub branches_used_bytes: u64,
    /// Most bytes the branches may use together (None: no limit).
    #[pyo3(get)]
    pub branches_limit_bytes: Option<u64>,
    /// True when the branches' space is above the core's warning threshold.
    #[pyo3(get)]
    pub branches_warning: bool,
}

impl From<betterpg_core::PoolUsage> for PyPoolUsage {
    fn from(p: betterpg_core::PoolUsage) -> Self {
        PyPoolUsage {
            pool: p.pool,
            used_bytes: p.space.used,
            available_bytes: p.space.available,
            fraction_used: p.fraction_used,
            warning: p.warning,
            branches_used_bytes: p.branches.used,
            branches_limit_bytes: p.branches.limit,
            branches_warning: p.branches.warning,
        }
    }
}

#[pymethods]
impl PyPoolUsage {
    fn __repr__(&self) -> String {
        format!(
            "PoolUsage(pool={}, used_bytes={}, available_bytes={}, fraction_used={:.3}, warning={}, branches_used_bytes={}, branches_limit_bytes={}, branches_warning={})",
            py_str(&self.pool),
            self.used_bytes,
            self.available_bytes,
            self.fraction_used,
            py_bool(self.warning),
            self.branches_used_bytes,
            self.branches_limit_bytes
                .map_or_else(|| "None".to_string(), |b| b.to_string()),
            py_bool(self.branches_warning),
        )
    }
}

/// One thing `gc` found, removed or kept.
#[pyclass(module = "betterpg", name = "GcItem", frozen, eq)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PyGcItem {
    /// What it is: ``"catalog entry"``, ``"dataset"``, ``"snapshot"``,
    /// ``"password file"``, ``"docker network"`` ...
    #[pyo3(get)]
    pub what: String,
    /// Its name (a dataset, snapshot, entry or file name).
    #[pyo3(get)]
    pub name: String,
    /// Why gc removed it, or why it left it alone (what to move or destroy).
    #[pyo3(get)]
    pub reason: String,
}

impl From<betterpg_core::GcItem> for PyGcItem {
    fn from(i: betterpg_core::GcItem) -> Self {
        PyGcItem {
            what: i.what,
            name: i.name,
            reason: i.reason,
        }
    }
}

#[pymethods]
impl PyGcItem {
    fn __repr__(&self) -> String {
        format!(
            "GcItem(what={}, name={}, reason={})",
            py_str(&self.what),
            py_str(&self.name),
            py_str(&self.reason)
        )
    }
}

/// What `gc` found (and removed unless a dry run), and what of betterpg's
/// it left alone because an operator made something on or from it.
/// Iterating it (and `len`) goes over `items`.
#[pyclass(module = "betterpg", name = "GcReport", frozen)]
#[derive(Debug, Clone)]
pub struct PyGcReport {
    /// True when nothing was changed.
    #[pyo3(get)]
    pub dry_run: bool,
    /// Everything found (and removed unless a dry run).
    #[pyo3(get)]
    pub items: Vec<PyGcItem>,
    /// What gc left alone: it holds, or is the origin of, something
    /// betterpg did not make (the reason says what to move or destroy).
    #[pyo3(get)]
    pub kept: Vec<PyGcItem>,
}

impl From<betterpg_core::GcReport> for PyGcReport {
    fn from(r: betterpg_core::GcReport) -> Self {
        PyGcReport {
            dry_run: r.dry_run,
            items: r.items.into_iter().map(PyGcItem::from).collect(),
            kept: r.kept.into_iter().map(PyGcItem::from).collect(),
        }
    }
}

/// An iterator over a snapshot of Python objects.
fn iter_of<'py, T>(py: Python<'py>, items: Vec<T>) -> PyResult<Py<PyAny>>
where
    T: pyo3::IntoPyObject<'py>,
{
    Ok(PyList::new(py, items)?
        .as_any()
        .try_iter()?
        .into_any()
        .unbind())
}

fn repr_list<T>(items: &[T], repr: impl Fn(&T) -> String) -> String {
    let inner: Vec<String> = items.iter().map(repr).collect();
    format!("[{}]", inner.join(", "))
}

#[pymethods]
impl PyGcReport {
    fn __len__(&self) -> usize {
        self.items.len()
    }

    fn __iter__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        iter_of(py, self.items.clone())
    }

    fn __repr__(&self) -> String {
        format!(
            "GcReport(dry_run={}, items={}, kept={})",
            py_bool(self.dry_run),
            repr_list(&self.items, PyGcItem::__repr__),
            repr_list(&self.kept, PyGcItem::__repr__)
        )
    }
}

/// What `status` reports: every database and branch, and the space of the
/// pool holding them (what `bpg status` shows). Iterating it (and `len`)
/// goes over `entries`.
#[pyclass(module = "betterpg", name = "Status", frozen)]
#[derive(Debug, Clone)]
pub struct PyStatus {
    /// Every database and branch, parents before their branches.
    #[pyo3(get)]
    pub entries: Vec<PyInfo>,
    /// Space of the pool and of the branches.
    #[pyo3(get)]
    pub pool: PyPoolUsage,
}

impl PyStatus {
    /// The status of these entries on this pool.
    pub fn new(entries: Vec<betterpg_core::Info>, pool: betterpg_core::PoolUsage) -> Self {
        PyStatus {
            entries: entries.into_iter().map(PyInfo::from).collect(),
            pool: PyPoolUsage::from(pool),
        }
    }
}

#[pymethods]
impl PyStatus {
    /// The entry named ``name``, or None.
    fn get(&self, name: &str) -> Option<PyInfo> {
        self.entries.iter().find(|i| i.name == name).cloned()
    }

    fn __len__(&self) -> usize {
        self.entries.len()
    }

    fn __iter__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        iter_of(py, self.entries.clone())
    }

    fn __repr__(&self) -> String {
        format!(
            "Status(entries={}, pool={})",
            repr_list(&self.entries, |i| py_str(&i.name)),
            self.pool.__repr__()
        )
    }
}

fn py_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

#[cfg(test)]
mod tests {
    use super::{mask_url, py_opt, py_str};

    #[test]
    fn python_literals() {
        assert_eq!(py_str("a'b\\c"), "'a\\'b\\\\c'");
        assert_eq!(py_opt(None), "None");
        assert_eq!(py_opt(Some("x")), "'x'");
    }

    #[test]
    fn masks_passwords() {
        assert_eq!(
            mask_url("postgresql://postgres:s3cr%40t@127.0.0.1:5432/postgres"),
            "postgresql://postgres:***@127.0.0.1:5432/postgres"
        );
        assert_eq!(mask_url("postgresql://h:1/db"), "postgresql://h:1/db");
        assert_eq!(mask_url("nonsense"), "nonsense");
    }
}
