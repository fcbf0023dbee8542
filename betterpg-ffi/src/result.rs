//! Result codes, the thread-local last error, and the panic guard that wraps
//! the body of every exported function.

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use betterpg_core::{Error, ErrorKind};

/// What every fallible betterpg function returns.
///
/// `BETTERPG_RESULT_OK` (0) is success. Values 1-999 are the stable codes of
/// the core library's errors (`betterpg_core::Error::code()`, same numbers).
/// Values from 1000 up come from this C binding itself (bad arguments,
/// panics). Values are never renumbered nor reused; new ones may be added,
/// so treat an unknown value as a failure (`betterpg_result_name` gives
/// `"unknown"` for it). On failure, `betterpg_last_error_message()` says
/// what went wrong.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum betterpg_result {
    /// Success.
    Ok = 0,
    /// A database or branch name failed validation (1-63 ASCII letters,
    /// digits, '-' or '_', starting with a letter or digit).
    InvalidName = 1,
    /// Something with this name already exists.
    AlreadyExists = 2,
    /// No database or branch with this name.
    NotFound = 3,
    /// The object has branches and `force` was not given.
    HasDependents = 4,
    /// The home directory is not initialised (`betterpg_manager_init`).
    NotInitialized = 5,
    /// Configuration is missing or wrong.
    Config = 6,
    /// A ZFS command failed.
    Zfs = 7,
    /// PostgreSQL refused or failed something.
    Postgres = 8,
    /// Starting, stopping or inspecting a server failed.
    Runtime = 9,
    /// Something did not finish in time.
    Timeout = 10,
    /// An I/O error on a named path.
    Io = 11,
    /// The catalog is unreadable, corrupt or from a newer betterpg.
    Catalog = 12,
    /// No free port, or the requested port is taken.
    Port = 13,
    /// Data directory and binaries are of different PostgreSQL versions.
    VersionMismatch = 14,
    /// The operation is not supported in this situation.
    Unsupported = 15,
    /// The Docker engine refused or failed something.
    Docker = 16,
    /// The object is in a state that does not allow the operation.
    InvalidState = 17,
    /// Not enough space for what was asked (the branches' share of the
    /// pool is used up).
    NoSpace = 18,
    /// A point in time outside the restorable window of the retained WAL.
    OutOfWindow = 19,
    /// Masking a branch failed (file, line and statement in the message);
    /// the branch was destroyed and was never reachable.
    Mask = 20,
    /// The database or branch is protected: destroy, reset and expiry
    /// are refused, even forced.
    Protected = 21,
    /// Another bpg daemon already runs for this home.
    DaemonRunning = 22,
    /// A bug in betterpg.
    Internal = 99,
    /// A pointer argument that must not be NULL was NULL.
    NullParameter = 1000,
    /// A string argument was not valid UTF-8.
    InvalidUtf8 = 1001,
    /// An argument had a value outside its allowed range (unknown mode
    /// flag, index out of range, empty port range, missing storage ...).
    InvalidArgument = 1002,
    /// betterpg panicked; the panic was caught at the boundary. The
    /// objects involved may be in an unspecified (but memory-safe) state.
    Panic = 1003,
}

/// The result of each core error kind, in the order of
/// [`ErrorKind::ALL`]. The enum above must be written out for cbindgen; the
/// check below makes a build with a kind missing, extra or numbered
/// differently fail to compile, and a unit test checks the header's
/// constant names against [`ErrorKind::c_constant`].
const CORE_RESULTS: &[betterpg_result] = {
    use betterpg_result::*;
    &[
        InvalidName,
        AlreadyExists,
        NotFound,
        HasDependents,
        NotInitialized,
        Config,
        Zfs,
        Postgres,
        Runtime,
        Timeout,
        Io,
        Catalog,
        Port,
        VersionMismatch,
        Unsupported,
        Docker,
        InvalidState,
        NoSpace,
        OutOfWindow,
        Mask,
        Protected,
        DaemonRunning,
        Internal,
    ]
};

/// This binding's own results (not core errors), all from 1000 up but `Ok`.
const BINDING_RESULTS: &[betterpg_result] = {
    use betterpg_result::*;
    &[Ok, NullParameter, InvalidUtf8, InvalidArgument, Panic]
};

const _: () = {
    let kinds = ErrorKind::ALL;
    assert!(
        kinds.len() == CORE_RESULTS.len(),
        "betterpg_result lacks or has extra core kinds: follow betterpg_core::ErrorKind::ALL"
    );
    let mut i = 0;
    while i < kinds.len() {
        assert!(
            CORE_RESULTS[i] as u32 == kinds[i].code(),
            "a betterpg_result differs from its core kind's code"
        );
        assert!(kinds[i].code() > 0 && kinds[i].code() < 1000);
        i += 1;
    }
    let mut j = 0;
    while j < BINDING_RESULTS.len() {
        let v = BINDING_RESULTS[j] as u32;
        assert!(v == 0 || v >= 1000, "binding results are 0 or from 1000 up");
        j += 1;
    }
};

impl betterpg_result {
    /// The result for a core error code, `None` for a code this build does
    /// not know.
    pub fn from_core_code(code: u32) -> Option<betterpg_result> {
        let i = ErrorKind::ALL.iter().position(|k| k.code() == code)?;
        Some(CORE_RESULTS[i])
    }

    /// The result for a raw value, `None` when no result has this value.
    pub fn from_u32(value: u32) -> Option<betterpg_result> {
        Self::from_core_code(value)
            .or_else(|| BINDING_RESULTS.iter().copied().find(|r| *r as u32 == value))
    }

    /// Short stable name: the core's [`ErrorKind::name`] for core codes,
    /// else "ok", "null_parameter", "invalid_utf8", "invalid_argument",
    /// "panic".
    pub fn name(self) -> &'static CStr {
        use betterpg_result::*;
        match self {
            Ok => c"ok",
            NullParameter => c"null_parameter",
            InvalidUtf8 => c"invalid_utf8",
            InvalidArgument => c"invalid_argument",
            Panic => c"panic",
            core => match ErrorKind::from_code(core as u32) {
                Some(k) => k.c_name(),
                None => c"unknown",
            },
        }
    }
}

/// Why an exported function failed (internal; becomes a result code and
/// the last error message).
#[derive(Debug)]
pub(crate) enum Failure {
    /// The core library failed.
    Core(Error),
    /// This argument was NULL.
    Null(&'static str),
    /// This string argument was not UTF-8.
    Utf8(&'static str),
    /// An argument was out of range; the message says which and why.
    Arg(String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Core(e)
    }
}

/// What a failure leaves for the thread's `betterpg_last_error_*` getters.
struct LastError {
    message: CString,
    sqlstate: Option<CString>,
    reason: Option<CString>,
}

impl Failure {
    /// The result code and what the getters return.
    fn describe(self, func: &str) -> (betterpg_result, LastError) {
        let plain = |code, msg: String| {
            (
                code,
                LastError {
                    message: c_text(&msg),
                    sqlstate: None,
                    reason: None,
                },
            )
        };
        match self {
            Failure::Core(e) => {
                let (code, msg) = match betterpg_result::from_core_code(e.code()) {
                    Some(r) => (r, e.to_string()),
                    None => (
                        betterpg_result::Internal,
                        format!(
                            "{e} (error code {} of kind {} is not known to this build of the C binding)",
                            e.code(),
                            e.kind_name()
                        ),
                    ),
                };
                (
                    code,
                    LastError {
                        message: c_text(&msg),
                        sqlstate: e.sqlstate().map(c_text),
                        reason: e.reason().map(c_text),
                    },
                )
            }
            Failure::Null(arg) => plain(
                betterpg_result::NullParameter,
                format!("{func}: argument `{arg}` is NULL"),
            ),
            Failure::Utf8(arg) => plain(
                betterpg_result::InvalidUtf8,
                format!("{func}: argument `{arg}` is not valid UTF-8"),
            ),
            Failure::Arg(msg) => plain(betterpg_result::InvalidArgument, format!("{func}: {msg}")),
        }
    }
}

/// A message as a C string; an interior NUL (which C would cut the text
/// at) becomes U+FFFD.
fn c_text(msg: &str) -> CString {
    CString::new(msg.replace('\0', "\u{FFFD}")).unwrap_or_default()
}

thread_local! {
    static LAST_ERROR: RefCell<Option<LastError>> = const { RefCell::new(None) };
}

fn set_last_error(e: LastError) {
    LAST_ERROR.with(|l| *l.borrow_mut() = Some(e));
}

fn clear_last_error() {
    LAST_ERROR.with(|l| *l.borrow_mut() = None);
}

/// A field of the last error on this thread, NULL when none.
fn last_error_field(f: impl FnOnce(&LastError) -> Option<&CString>) -> *const c_char {
    LAST_ERROR.with(|l| {
        l.borrow()
            .as_ref()
            .and_then(f)
            .map_or(std::ptr::null(), |m| m.as_ptr())
    })
}

/// The message of the last error on this thread, NULL when none.
pub(crate) fn last_error_ptr() -> *const c_char {
    last_error_field(|e| Some(&e.message))
}

/// The SQLSTATE of the last error on this thread, NULL when none.
pub(crate) fn last_error_sqlstate_ptr() -> *const c_char {
    last_error_field(|e| e.sqlstate.as_ref())
}

/// The reason of the last error on this thread, NULL when none.
pub(crate) fn last_error_reason_ptr() -> *const c_char {
    last_error_field(|e| e.reason.as_ref())
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}

/// Run the body of a fallible exported function `func`: clear the last
/// error, catch panics, turn failures into a result code and a message.
pub(crate) fn guard(func: &str, body: impl FnOnce() -> Result<(), Failure>) -> betterpg_result {
    clear_last_error();
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => betterpg_result::Ok,
        Ok(Err(failure)) => {
            let (code, last) = failure.describe(func);
            set_last_error(last);
            code
        }
        Err(payload) => {
            set_last_error(LastError {
                message: c_text(&format!(
                    "{func}: panic (a bug in betterpg): {}",
                    panic_message(&*payload)
                )),
                sqlstate: None,
                reason: None,
            });
            betterpg_result::Panic
        }
    }
}

/// Run the body of an infallible exported function (a getter, a `_free`):
/// a panic returns `fallback` instead of unwinding into C. Does not touch
/// the last error.
pub(crate) fn guard_value<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

/// A NUL-terminated UTF-8 argument as `&str`.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that stays valid and
/// unchanged for `'a`.
pub(crate) unsafe fn arg_str<'a>(p: *const c_char, arg: &'static str) -> Result<&'a str, Failure> {
    if p.is_null() {
        return Err(Failure::Null(arg));
    }
    // SAFETY: non-NULL and NUL-terminated per the caller's contract.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| Failure::Utf8(arg))
}

/// Check that an out-parameter is not NULL.
pub(crate) fn arg_out<T>(p: *mut T, arg: &'static str) -> Result<*mut T, Failure> {
    if p.is_null() {
        Err(Failure::Null(arg))
    } else {
        Ok(p)
    }
}

/// A Rust string as an owned C string; an interior NUL (which betterpg
/// never produces) is an internal error.
pub(crate) fn to_cstring(s: impl Into<Vec<u8>>) -> Result<CString, Failure> {
    CString::new(s).map_err(|e| {
        Failure::Core(Error::Internal(format!(
            "string with an interior NUL byte at {}",
            e.nul_position()
        )))
    })
}

/// Opaque C handles: each is a zero-sized `_private` struct in the header
/// and a boxed Rust value (`Inner`) behind the pointer.
pub(crate) trait Opaque: Sized {
    /// The Rust value behind a handle.
    type Inner;

    /// Box a value and hand out its handle (owned by the caller).
    fn into_handle(inner: Self::Inner) -> *mut Self {
        Box::into_raw(Box::new(inner)).cast::<Self>()
    }

    /// Borrow the value behind a handle, NULL being an error.
    ///
    /// # Safety
    /// `p` is NULL or a live handle of this type made by this library.
    unsafe fn get<'a>(p: *const Self, arg: &'static str) -> Result<&'a Self::Inner, Failure> {
        // SAFETY: per the caller's contract, a live handle of this type.
        unsafe { p.cast::<Self::Inner>().as_ref() }.ok_or(Failure::Null(arg))
    }

    /// Borrow the value behind a handle, `None` for NULL.
    ///
    /// # Safety
    /// As [`Opaque::get`].
    unsafe fn get_opt<'a>(p: *const Self) -> Option<&'a Self::Inner> {
        // SAFETY: per the caller's contract, a live handle of this type.
        unsafe { p.cast::<Self::Inner>().as_ref() }
    }

    /// Mutably borrow the value behind a handle, NULL being an error.
    ///
    /// # Safety
    /// `p` is NULL or a live handle of this type, not used elsewhere meanwhile.
    unsafe fn get_mut<'a>(p: *mut Self, arg: &'static str) -> Result<&'a mut Self::Inner, Failure> {
        // SAFETY: per the caller's contract.
        unsafe { p.cast::<Self::Inner>().as_mut() }.ok_or(Failure::Null(arg))
    }

    /// A handle for a value borrowed from another handle (not to be freed).
    fn borrowed(inner: &Self::Inner) -> *const Self {
        (inner as *const Self::Inner).cast::<Self>()
    }

    /// Drop the value behind a handle; NULL does nothing.
    ///
    /// # Safety
    /// `p` is NULL or an owned handle of this type, never used again.
    unsafe fn free(p: *mut Self) {
        if !p.is_null() {
            // SAFETY: made by `into_handle`, ownership comes back here once.
            drop(unsafe { Box::from_raw(p.cast::<Self::Inner>()) });
        }
    }
}

/// Write `value` to a checked out-parameter.
///
/// # Safety
/// `out` is non-NULL (checked by [`arg_out`]) and valid for writes.
pub(crate) unsafe fn write_out<T>(out: *mut T, value: T) {
    // SAFETY: per the caller's contract.
    unsafe { out.write(value) }
}
