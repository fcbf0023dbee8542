//! Python bindings over the blocking facade of betterpg-core.
//!
//! Built with maturin as `betterpg._internal` (abi3, CPython >= 3.9); the
//! pure-Python package `betterpg` (in `python/`) re-exports it and adds the
//! pytest plugin. No logic of its own: every verb is one call of
//! [`betterpg_core::blocking::BranchManager`], made with the GIL released,
//! and every core error becomes the exception class of its kind
//! (see [`errors`]).

#![warn(missing_docs)]

pub mod errors;
pub mod manager;
pub mod types;

use pyo3::prelude::*;

/// Native part of the `betterpg` package (import `betterpg` instead).
#[pymodule]
fn _internal(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<manager::PyBranchManager>()?;
    m.add_class::<types::PyInfo>()?;
    m.add_class::<types::PyBranch>()?;
    m.add_class::<types::PyStepTiming>()?;
    m.add_class::<types::PyPoolUsage>()?;
    errors::register(m)?;
    Ok(())
}
