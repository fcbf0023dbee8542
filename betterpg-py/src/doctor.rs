//! `DoctorReport` and `LogFollower`: `doctor` and following a server's log,
//! over the blocking facade.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use betterpg_core::blocking::{LogEvent, LogFollower};
use betterpg_core::storage::ZfsFlavor;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use crate::errors::to_pyerr;

/// What `BranchManager.doctor` found: this machine and a home (initialised
/// or not), what they would use and what is missing.
#[pyclass(module = "betterpg", name = "DoctorReport", frozen)]
#[derive(Debug, Clone)]
pub struct PyDoctorReport {
    /// The home checked.
    #[pyo3(get)]
    pub home: String,
    /// Whether the home is initialised (else only the machine was checked).
    #[pyo3(get)]
    pub initialised: bool,
    /// What is missing or broken, one line each (empty: all is well).
    #[pyo3(get)]
    pub problems: Vec<String>,
    /// What works but needs attention.
    #[pyo3(get)]
    pub warnings: Vec<String>,
    /// The storage backend the home would use ("libzfs" or "cli"); None
    /// when none is usable.
    #[pyo3(get)]
    pub storage_backend: Option<String>,
    /// Why that backend, or why none is usable.
    #[pyo3(get)]
    pub storage_reason: String,
    /// The OpenZFS libraries found for the libzfs backend, or why none.
    #[pyo3(get)]
    pub libzfs_library: String,
    /// The `zfs` userland: "openzfs" or "legacy" (zfs-fuse).
    #[pyo3(get)]
    pub zfs_flavor: String,
    /// Whether `zpool list` works.
    #[pyo3(get)]
    pub zpool_list_ok: bool,
    /// Major version of the PostgreSQL binaries found; None when none were.
    #[pyo3(get)]
    pub postgres_major: Option<u32>,
    /// Their bin directory; None when none were found.
    #[pyo3(get)]
    pub postgres_bin: Option<String>,
    /// The OS user the servers run as; None when it cannot be resolved.
    #[pyo3(get)]
    pub os_user: Option<String>,
    /// Whether this is a test build that obeys BETTERPG_FAULT.
    #[pyo3(get)]
    pub fault_injection: bool,
}

impl From<betterpg_core::DoctorReport> for PyDoctorReport {
    fn from(r: betterpg_core::DoctorReport) -> Self {
        PyDoctorReport {
            home: r.home.display().to_string(),
            initialised: r.initialised,
            storage_backend: r.storage.ok().map(|s| s.backend.clone()),
            storage_reason: match &r.storage {
                betterpg_core::Check::Ok(s) => s.reason.clone(),
                betterpg_core::Check::Failed(e) => e.clone(),
            },
            libzfs_library: r.libzfs_library.clone(),
            zfs_flavor: match r.zfs_flavor {
                ZfsFlavor::OpenZfs => "openzfs",
                ZfsFlavor::Legacy => "legacy",
            }
            .into(),
            zpool_list_ok: r.zpool_list_ok,
            postgres_major: r.postgres.ok().map(|p| p.major),
            postgres_bin: r.postgres.ok().map(|p| p.bin.display().to_string()),
            os_user: r.os_user.ok().map(|u| u.name.clone()),
            fault_injection: r.fault_injection,
            problems: r.problems,
            warnings: r.warnings,
        }
    }
}

#[pymethods]
impl PyDoctorReport {
    /// True when nothing is missing or broken.
    #[getter]
    fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn __bool__(&self) -> bool {
        self.ok()
    }

    fn __repr__(&self) -> String {
        format!(
            "DoctorReport(home={:?}, ok={}, problems={:?})",
            self.home,
            if self.ok() { "True" } else { "False" },
            self.problems
        )
    }
}

/// `BranchManager.doctor(home)`, with the GIL released.
pub fn doctor(py: Python<'_>, home: PathBuf) -> PyResult<PyDoctorReport> {
    py.detach(move || betterpg_core::blocking::BranchManager::doctor(home))
        .map(PyDoctorReport::from)
        .map_err(|e| to_pyerr(py, e))
}

/// A server's log as the server writes it (`BranchManager.follow_logs`):
/// its last lines first, then each chunk written. Iterating blocks until
/// each chunk comes (Ctrl-C interrupts) and stops when the log ends (a
/// container stopped; a native server's log never ends). `read(timeout)`
/// waits at most `timeout` seconds. `close()` (or leaving a `with` block)
/// stops following.
#[pyclass(module = "betterpg", name = "LogFollower", frozen)]
pub struct PyLogFollower {
    pid: u32,
    inner: Mutex<Option<LogFollower>>,
}

impl PyLogFollower {
    /// Follow with `f`.
    pub fn new(f: LogFollower) -> Self {
        PyLogFollower {
            pid: std::process::id(),
            inner: Mutex::new(Some(f)),
        }
    }

    /// The next event within `timeout`, with the GIL released.
    fn next_event(&self, py: Python<'_>, timeout: Duration) -> PyResult<LogEvent> {
        if self.pid != std::process::id() {
            return Err(PyRuntimeError::new_err(
                "betterpg.LogFollower: made before fork(): follow the log again in this process",
            ));
        }
        let r = py.detach(|| {
            let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            match g.as_mut() {
                Some(f) => f.next_within(timeout).map(Some),
                None => Ok(None),
            }
        });
        match r {
            Ok(Some(e)) => Ok(e),
            Ok(None) => Ok(LogEvent::Ended), // closed
            Err(e) => Err(to_pyerr(py, e)),
        }
    }
}

fn text(b: Vec<u8>) -> String {
    String::from_utf8_lossy(&b).into_owned()
}

#[pymethods]
impl PyLogFollower {
    /// The next chunk of text, waiting at most `timeout` seconds (None:
    /// until one comes); None when nothing came in time or the log ended
    /// (then `ended` is True).
    #[pyo3(signature = (timeout = None))]
    fn read(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<String>> {
        let Some(t) = timeout else {
            return self.__next__(py);
        };
        if !(t.is_finite() && t >= 0.0) {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "timeout must be a number of seconds >= 0, not {t}"
            )));
        }
        match self.next_event(py, Duration::from_secs_f64(t))? {
            LogEvent::Chunk(b) => Ok(Some(text(b))),
            LogEvent::Idle => Ok(None),
            LogEvent::Ended => {
                self.close();
                Ok(None)
            }
        }
    }

    /// True once the log ended or the follower was closed.
    #[getter]
    fn ended(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }

    /// Stop following (idempotent).
    fn close(&self) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<String>> {
        loop {
            // Short waits, so Ctrl-C (and a pending fork) gets its turn.
            match self.next_event(py, Duration::from_millis(200))? {
                LogEvent::Chunk(b) => return Ok(Some(text(b))),
                LogEvent::Idle => py.check_signals()?,
                LogEvent::Ended => {
                    self.close();
                    return Ok(None);
                }
            }
        }
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.close();
        false
    }

    fn __repr__(&self) -> String {
        format!(
            "LogFollower(ended={})",
            if self.ended() { "True" } else { "False" }
        )
    }
}
