//! The exception hierarchy, generated from [`betterpg_core::Error::KINDS`].
//!
//! `betterpg.BetterPgError` is the base; every core error kind gets one
//! subclass carrying the kind's stable `code` and `kind` name as class
//! attributes. The classes are built at import time by walking
//! `Error::KINDS`, so a kind added to the core always has a class (named by
//! [`PY_NAMES`] or, failing that, derived from the kind name) and a core
//! error can never surface as a bare `Exception`. Where a Python builtin
//! means the same thing, the class also derives from it (`InvalidNameError`
//! is a `ValueError`, `NotFoundError` a `LookupError`, ...), so code that
//! catches builtins keeps working.

use betterpg_core::Error;
use pyo3::exceptions::{PyException, PyLookupError, PyOSError, PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

/// Python module the exception classes claim to live in (for reprs and pickling).
pub const EXCEPTIONS_MODULE: &str = "betterpg.exceptions";

/// A Python builtin exception an error class also derives from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    /// Only `BetterPgError`.
    None,
    /// Also `ValueError`.
    Value,
    /// Also `LookupError`.
    Lookup,
    /// Also `TimeoutError`.
    Timeout,
    /// Also `OSError`.
    Os,
}

/// Python class name, extra builtin base and docstring of each core error
/// kind. A unit test checks this table against `Error::KINDS` both ways.
pub const PY_NAMES: &[(&str, &str, Builtin, &str)] = &[
    (
        "invalid_name",
        "InvalidNameError",
        Builtin::Value,
        "A database or branch name failed validation (also a ValueError).",
    ),
    (
        "already_exists",
        "AlreadyExistsError",
        Builtin::None,
        "Something with this name already exists (database, branch, pool, home).",
    ),
    (
        "not_found",
        "NotFoundError",
        Builtin::Lookup,
        "No database or branch (or pool, dataset) with this name (also a LookupError).",
    ),
    (
        "has_dependents",
        "HasDependentsError",
        Builtin::None,
        "The object has branches and force was not given.",
    ),
    (
        "not_initialized",
        "NotInitializedError",
        Builtin::None,
        "The betterpg home is not initialised: call BranchManager.init first.",
    ),
    (
        "config",
        "ConfigError",
        Builtin::None,
        "Configuration is missing or wrong.",
    ),
    (
        "zfs",
        "ZfsError",
        Builtin::None,
        "A zfs/zpool command failed.",
    ),
    (
        "postgres",
        "PostgresError",
        Builtin::None,
        "PostgreSQL refused or failed something.",
    ),
    (
        "runtime",
        "ServerRuntimeError",
        Builtin::None,
        "Starting, stopping or inspecting a server process failed.",
    ),
    (
        "timeout",
        "OperationTimeoutError",
        Builtin::Timeout,
        "Something did not finish in time (also a TimeoutError).",
    ),
    (
        "io",
        "LocalIOError",
        Builtin::Os,
        "An I/O error on a named local path (also an OSError).",
    ),
    (
        "catalog",
        "CatalogError",
        Builtin::None,
        "The catalog file is unreadable, corrupt or from a newer betterpg.",
    ),
    (
        "port",
        "PortError",
        Builtin::None,
        "No free port in the configured range, or the requested port is taken.",
    ),
    (
        "version_mismatch",
        "VersionMismatchError",
        Builtin::None,
        "Data directory and binaries are of different PostgreSQL major versions.",
    ),
    (
        "unsupported",
        "UnsupportedError",
        Builtin::None,
        "The operation is not supported in this situation.",
    ),
    (
        "docker",
        "DockerError",
        Builtin::None,
        "The Docker engine refused or failed something.",
    ),
    (
        "invalid_state",
        "InvalidStateError",
        Builtin::None,
        "The object is in a state that does not allow the operation (busy, incomplete).",
    ),
    (
        "no_space",
        "NoSpaceError",
        Builtin::None,
        "Not enough space for what was asked: the branches' share of the pool is used up.",
    ),
    (
        "internal",
        "InternalError",
        Builtin::None,
        "A bug in betterpg: please report it.",
    ),
];

/// Class name for a kind without an entry in [`PY_NAMES`]:
/// `version_mismatch` -> `VersionMismatchError`.
pub fn derived_class_name(kind: &str) -> String {
    let mut out = String::new();
    for part in kind.split('_').filter(|p| !p.is_empty()) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.extend(first.to_uppercase());
            out.push_str(chars.as_str());
        }
    }
    out.push_str("Error");
    out
}

/// (code, kind, class name, builtin, doc) for every core kind, in `KINDS` order.
pub fn class_specs() -> Vec<(u32, &'static str, String, Builtin, String)> {
    Error::KINDS
        .iter()
        .map(
            |&(code, kind)| match PY_NAMES.iter().find(|p| p.0 == kind) {
                Some(&(_, name, builtin, doc)) => {
                    (code, kind, name.to_string(), builtin, doc.into())
                }
                None => (
                    code,
                    kind,
                    derived_class_name(kind),
                    Builtin::None,
                    format!("betterpg error kind {kind:?}."),
                ),
            },
        )
        .collect()
}

/// The core's code of error kind `kind` (e.g. `"not_found"` -> 3).
pub fn code_of(kind: &str) -> Option<u32> {
    Error::KINDS.iter().find(|k| k.1 == kind).map(|k| k.0)
}

/// The classes, made once per interpreter.
struct Classes {
    base: Py<PyType>,
    /// (code, class name, class), in `KINDS` order.
    by_code: Vec<(u32, String, Py<PyType>)>,
}

static CLASSES: PyOnceLock<Classes> = PyOnceLock::new();

fn make_class(
    py: Python<'_>,
    name: &str,
    bases: Bound<'_, PyTuple>,
    doc: &str,
    attrs: &[(&str, Bound<'_, PyAny>)],
) -> PyResult<Py<PyType>> {
    let dict = PyDict::new(py);
    dict.set_item("__module__", EXCEPTIONS_MODULE)?;
    dict.set_item("__doc__", doc)?;
    for (k, v) in attrs {
        dict.set_item(*k, v)?;
    }
    let ty = py.get_type::<PyType>().call1((name, bases, dict))?;
    Ok(ty.cast_into::<PyType>()?.unbind())
}

fn build(py: Python<'_>) -> PyResult<Classes> {
    let base = make_class(
        py,
        "BetterPgError",
        PyTuple::new(py, [py.get_type::<PyException>()])?,
        "Base class of every error raised by betterpg.\n\n\
         ``code`` is the core's stable numeric error code and ``kind`` its \
         short name (e.g. ``\"not_found\"``); the message is the core's.",
        &[
            ("code", 0u32.into_pyobject(py)?.into_any()),
            ("kind", "error".into_pyobject(py)?.into_any()),
        ],
    )?;
    let mut by_code = Vec::new();
    for (code, kind, name, builtin, doc) in class_specs() {
        let base_b = base.bind(py).clone();
        let bases = match builtin {
            Builtin::None => PyTuple::new(py, [base_b])?,
            Builtin::Value => PyTuple::new(py, [base_b, py.get_type::<PyValueError>()])?,
            Builtin::Lookup => PyTuple::new(py, [base_b, py.get_type::<PyLookupError>()])?,
            Builtin::Timeout => PyTuple::new(py, [base_b, py.get_type::<PyTimeoutError>()])?,
            Builtin::Os => PyTuple::new(py, [base_b, py.get_type::<PyOSError>()])?,
        };
        let doc = format!("{doc}\n\nCore error kind ``{kind}``, code {code}.");
        let cls = make_class(
            py,
            &name,
            bases,
            &doc,
            &[
                ("code", code.into_pyobject(py)?.into_any()),
                ("kind", kind.into_pyobject(py)?.into_any()),
            ],
        )?;
        by_code.push((code, name, cls));
    }
    Ok(Classes { base, by_code })
}

fn classes(py: Python<'_>) -> PyResult<&'static Classes> {
    CLASSES.get_or_try_init(py, || build(py))
}

/// Add `BetterPgError`, every subclass, `ERROR_KINDS` (list of
/// `(code, kind)`) and `ERROR_CLASSES` (dict code -> class) to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let c = classes(py)?;
    m.add("BetterPgError", c.base.bind(py))?;
    let by_code = PyDict::new(py);
    for (code, name, cls) in &c.by_code {
        m.add(name.as_str(), cls.bind(py))?;
        by_code.set_item(code, cls.bind(py))?;
    }
    m.add("ERROR_CLASSES", by_code)?;
    m.add("ERROR_KINDS", Error::KINDS.to_vec())?;
    Ok(())
}

/// Convert a core error into the matching Python exception; the message is
/// the core's `Display`.
pub fn to_pyerr(py: Python<'_>, e: Error) -> PyErr {
    let code = e.code();
    let msg = e.to_string();
    match classes(py) {
        Ok(c) => {
            let cls = c
                .by_code
                .iter()
                .find(|(k, _, _)| *k == code)
                .map(|(_, _, cls)| cls)
                .unwrap_or(&c.base);
            PyErr::from_type(cls.bind(py).clone(), msg)
        }
        Err(err) => err,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_core_kind_has_a_python_name_and_back() {
        for (_, kind) in Error::KINDS {
            assert!(
                PY_NAMES.iter().any(|p| p.0 == *kind),
                "core kind {kind:?} has no entry in PY_NAMES: add one (and to _internal.pyi / exceptions.py)"
            );
        }
        for (kind, name, _, _) in PY_NAMES {
            assert!(
                Error::KINDS.iter().any(|k| k.1 == *kind),
                "PY_NAMES has {kind:?} ({name}) which the core does not define"
            );
        }
        let mut names: Vec<_> = class_specs().into_iter().map(|s| s.2).collect();
        names.sort();
        let n = names.len();
        names.dedup();
        assert_eq!(n, names.len(), "duplicate class names");
        assert!(names.iter().all(|n| n.ends_with("Error")));
    }

    #[test]
    fn derived_names() {
        assert_eq!(derived_class_name("not_found"), "NotFoundError");
        assert_eq!(derived_class_name("zfs"), "ZfsError");
        assert_eq!(derived_class_name("a__b_"), "ABError");
    }
}
