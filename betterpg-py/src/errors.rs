//! The exception hierarchy, generated from the core's one definition of
//! the error kinds ([`betterpg_core::ErrorKind::ALL`]).
//!
//! `betterpg.BetterPgError` is the base; every core error kind gets one
//! subclass named by [`ErrorKind::py_class`], carrying the kind's stable
//! `code` and `kind` name as class attributes. The classes are built at
//! import time by walking the core's table, so a kind added to the core
//! always has a class and a core error can never surface as a bare
//! `Exception`. Where a Python builtin means the same thing
//! ([`ErrorKind::py_builtin`]), the class also derives from it
//! (`InvalidNameError` is a `ValueError`, `NotFoundError` a `LookupError`,
//! ...), so code that catches builtins keeps working. A unit test checks
//! that `python/betterpg/_internal.pyi` and `exceptions.py` declare the same
//! classes.

use betterpg_core::error::PyBuiltin;
use betterpg_core::{Error, ErrorKind};
use pyo3::exceptions::{PyException, PyLookupError, PyOSError, PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

/// Python module the exception classes claim to live in (for reprs and pickling).
pub const EXCEPTIONS_MODULE: &str = "betterpg.exceptions";

/// The core's code of error kind `kind` (e.g. `"not_found"` -> 3).
pub fn code_of(kind: &str) -> Option<u32> {
    ErrorKind::ALL
        .iter()
        .find(|k| k.name() == kind)
        .map(|k| k.code())
}

/// The Python name of a builtin base, `None` for none.
pub fn builtin_name(b: PyBuiltin) -> Option<&'static str> {
    match b {
        PyBuiltin::None => None,
        PyBuiltin::Value => Some("ValueError"),
        PyBuiltin::Lookup => Some("LookupError"),
        PyBuiltin::Timeout => Some("TimeoutError"),
        PyBuiltin::Os => Some("OSError"),
    }
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
         short name (e.g. ``\"not_found\"``); the message is the core's. \
         Decide on the fields, not on the message: ``sqlstate`` and \
         ``detail`` (PostgreSQL's, when the server answered), ``reason`` (a \
         finer stable reason: ``\"busy\"``, ``\"no_space\"``, \
         ``\"unavailable\"`` or ``\"other\"`` for a ZFS error, ``\"taken\"`` \
         or ``\"exhausted\"`` for a port error, ``\"port_in_use\"``, \
         ``\"resources\"`` or ``\"other\"`` for a runtime error), ``operation``, ``dataset`` and \
         ``stderr`` (a ZFS error's), ``status`` (the Docker engine's HTTP \
         status) and ``port``; each is None where it does not apply.",
        &[
            ("code", 0u32.into_pyobject(py)?.into_any()),
            ("kind", "error".into_pyobject(py)?.into_any()),
            ("sqlstate", py.None().into_bound(py)),
            ("detail", py.None().into_bound(py)),
            ("reason", py.None().into_bound(py)),
            ("operation", py.None().into_bound(py)),
            ("dataset", py.None().into_bound(py)),
            ("stderr", py.None().into_bound(py)),
            ("status", py.None().into_bound(py)),
            ("port", py.None().into_bound(py)),
        ],
    )?;
    let mut by_code = Vec::new();
    for k in ErrorKind::ALL {
        let (code, kind, name) = (k.code(), k.name(), k.py_class());
        let base_b = base.bind(py).clone();
        let bases = match k.py_builtin() {
            PyBuiltin::None => PyTuple::new(py, [base_b])?,
            PyBuiltin::Value => PyTuple::new(py, [base_b, py.get_type::<PyValueError>()])?,
            PyBuiltin::Lookup => PyTuple::new(py, [base_b, py.get_type::<PyLookupError>()])?,
            PyBuiltin::Timeout => PyTuple::new(py, [base_b, py.get_type::<PyTimeoutError>()])?,
            PyBuiltin::Os => PyTuple::new(py, [base_b, py.get_type::<PyOSError>()])?,
        };
        let doc = format!("{}\n\nCore error kind ``{kind}``, code {code}.", k.doc());
        let cls = make_class(
            py,
            name,
            bases,
            &doc,
            &[
                ("code", code.into_pyobject(py)?.into_any()),
                ("kind", kind.into_pyobject(py)?.into_any()),
            ],
        )?;
        by_code.push((code, name.to_string(), cls));
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

/// The structured fields of a core error, as (attribute, value) pairs set
/// on the Python exception (attributes not listed stay None).
fn fields<'py>(py: Python<'py>, e: &Error) -> PyResult<Vec<(&'static str, Bound<'py, PyAny>)>> {
    let mut out: Vec<(&'static str, Bound<'py, PyAny>)> = Vec::new();
    if let Some(r) = e.reason() {
        out.push(("reason", r.into_pyobject(py)?.into_any()));
    }
    match e {
        Error::Postgres {
            sqlstate, detail, ..
        } => {
            if let Some(s) = sqlstate {
                out.push(("sqlstate", s.into_pyobject(py)?.into_any()));
            }
            if let Some(d) = detail {
                out.push(("detail", d.into_pyobject(py)?.into_any()));
            }
        }
        Error::Mask {
            sqlstate: Some(s), ..
        } => out.push(("sqlstate", s.into_pyobject(py)?.into_any())),
        Error::Zfs {
            operation,
            dataset,
            stderr,
            ..
        } => {
            for (k, v) in [
                ("operation", operation),
                ("dataset", dataset),
                ("stderr", stderr),
            ] {
                if !v.is_empty() {
                    out.push((k, v.into_pyobject(py)?.into_any()));
                }
            }
        }
        Error::Docker {
            status: Some(s), ..
        } => out.push(("status", s.into_pyobject(py)?.into_any())),
        Error::Port { port: Some(p), .. } => out.push(("port", p.into_pyobject(py)?.into_any())),
        _ => {}
    }
    Ok(out)
}

/// Convert a core error into the matching Python exception; the message is
/// the core's `Display`, the structured fields are attributes ([`fields`]).
pub fn to_pyerr(py: Python<'_>, e: Error) -> PyErr {
    let code = e.code();
    let msg = e.to_string();
    let made = || -> PyResult<PyErr> {
        let c = classes(py)?;
        let cls = c
            .by_code
            .iter()
            .find(|(k, _, _)| *k == code)
            .map(|(_, _, cls)| cls)
            .unwrap_or(&c.base);
        let exc = cls.bind(py).call1((msg,))?;
        for (k, v) in fields(py, &e)? {
            exc.setattr(k, v)?;
        }
        Ok(PyErr::from_value(exc))
    };
    made().unwrap_or_else(|err| err)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Python sources that name the classes for type checkers and
    /// readers must follow the core's table.
    #[test]
    fn stubs_and_exceptions_py_declare_every_class_of_the_core() {
        let pyi = include_str!("../python/betterpg/_internal.pyi");
        let exc = include_str!("../python/betterpg/exceptions.py");
        let mut declared = 0;
        for line in pyi.lines() {
            if let Some(rest) = line.strip_prefix("class ") {
                if rest.contains("(BetterPgError") {
                    declared += 1;
                }
            }
        }
        assert_eq!(
            declared,
            ErrorKind::ALL.len(),
            "_internal.pyi declares {declared} error classes, the core has {} kinds",
            ErrorKind::ALL.len()
        );
        for k in ErrorKind::ALL {
            let bases = match builtin_name(k.py_builtin()) {
                Some(b) => format!("BetterPgError, {b}"),
                None => "BetterPgError".to_string(),
            };
            let decl = format!("class {}({bases}):", k.py_class());
            assert!(
                pyi.lines().any(|l| l.starts_with(&decl)),
                "_internal.pyi lacks {decl:?} ({:?})",
                k.name()
            );
            let import = format!("    {},", k.py_class());
            assert!(
                exc.lines().any(|l| l == import),
                "exceptions.py does not import {} ({:?})",
                k.py_class(),
                k.name()
            );
        }
        assert_eq!(code_of("not_found"), Some(3));
        assert_eq!(code_of("nope"), None);
    }
}
