//! Python bindings over the blocking facade of betterpg-core.
//!
//! Built with maturin as `betterpg._internal` (abi3, CPython >= 3.9); the
//! pure-Python package `betterpg` (in `python/`) re-exports it and adds the
//! pytest plugin. No logic of its own: every verb is one call of
//! [`betterpg_core::blocking::BranchManager`], made with the GIL released,
//! and every core error becomes the exception class of its kind
//! (see [`errors`]).
//!
//! Fork safety: importing the module registers `os.register_at_fork` hooks
//! around the core's fork gate ([`betterpg_core::blocking::fork`]): `fork()`
//! waits until no call of another thread is in flight (so no catalog lock,
//! libzfs mutex or backup session is copied into the child half-held), and
//! the child starts with fresh state (see [`manager`]).

#![warn(missing_docs)]

pub mod doctor;
pub mod errors;
pub mod manager;
pub mod types;

use pyo3::prelude::*;
use pyo3::types::PyDict;

/// `os.register_at_fork(before=...)`: wait until no call is in flight and
/// hold new ones back. Releases the GIL while waiting, so the calls it waits
/// for (and other Python threads) can finish.
#[pyfunction]
fn _fork_before(py: Python<'_>) {
    py.detach(betterpg_core::blocking::fork::prepare);
}

/// `os.register_at_fork(after_in_parent=...)`: let calls run again.
#[pyfunction]
fn _fork_after_in_parent() {
    betterpg_core::blocking::fork::parent();
}

/// `os.register_at_fork(after_in_child=...)`: fresh gate and storage
/// handles in the child (managers re-open themselves on first use).
#[pyfunction]
fn _fork_after_in_child() {
    betterpg_core::blocking::fork::child();
}

/// Native part of the `betterpg` package (import `betterpg` instead).
#[pymodule]
fn _internal(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<manager::PyBranchManager>()?;
    m.add_class::<types::PyInfo>()?;
    m.add_class::<types::PyWalRetention>()?;
    m.add_class::<types::PyBranch>()?;
    m.add_class::<types::PyRewindReport>()?;
    m.add_class::<types::PyStepTiming>()?;
    m.add_class::<types::PyPoolUsage>()?;
    m.add_class::<types::PyGcItem>()?;
    m.add_class::<types::PyGcReport>()?;
    m.add_class::<types::PyStatus>()?;
    m.add_class::<doctor::PyDoctorReport>()?;
    m.add_class::<doctor::PyLogFollower>()?;
    errors::register(m)?;
    let before = wrap_pyfunction!(_fork_before, m)?;
    let parent = wrap_pyfunction!(_fork_after_in_parent, m)?;
    let child = wrap_pyfunction!(_fork_after_in_child, m)?;
    let hooks = PyDict::new(m.py());
    hooks.set_item("before", &before)?;
    hooks.set_item("after_in_parent", &parent)?;
    hooks.set_item("after_in_child", &child)?;
    m.py()
        .import("os")?
        .call_method("register_at_fork", (), Some(&hooks))?;
    Ok(())
}
