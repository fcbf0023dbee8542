//! The one error type of betterpg.
//!
//! Every fallible call in the library returns [`Error`]. Each variant has a
//! stable numeric [`Error::code`] that the C and Python bindings expose, so
//! the bindings cannot drift from the core: add variants, never renumber.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, with a message that says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A database or branch name failed validation.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Why it was rejected and what is allowed.
        reason: String,
    },
    /// Something with this name already exists.
    #[error("{what} {name:?} already exists: choose another name or destroy it first")]
    AlreadyExists {
        /// "database", "branch", "dataset" ...
        what: &'static str,
        /// The name that is taken.
        name: String,
    },
    /// No database or branch with this name.
    #[error("{what} {name:?} not found{hint}")]
    NotFound {
        /// "database or branch", "snapshot" ...
        what: &'static str,
        /// The name that was looked up.
        name: String,
        /// Extra advice, starting with ": " when non-empty.
        hint: String,
    },
    /// The object has dependents (branches, clones, snapshots betterpg did
    /// not make) and `force` was not given.
    #[error("{name:?} has dependents ({dependents}): destroy them first or pass --force")]
    HasDependents {
        /// The object asked to be destroyed.
        name: String,
        /// Comma-separated dependents.
        dependents: String,
    },
    /// The betterpg home is not initialised (no config).
    #[error("betterpg home {home} is not initialised: run `bpg init` first (or pass the right --home / BPG_HOME)")]
    NotInitialized {
        /// The home directory that was looked at.
        home: PathBuf,
    },
    /// Configuration is missing or wrong.
    #[error("configuration error: {0}")]
    Config(String),
    /// A `zfs`/`zpool` command or ZFS library call failed.
    ///
    /// ZFS's "does not exist", "already exists" and "has dependents" come as
    /// [`Error::NotFound`], [`Error::AlreadyExists`] and
    /// [`Error::HasDependents`] instead; `kind` says what else went wrong.
    #[error("zfs: {message}")]
    Zfs {
        /// What kind of failure (decide on this, never on the text).
        kind: ZfsErrorKind,
        /// The operation: the `zfs`/`zpool` command line or the library
        /// call (empty when the failure is not one call's).
        operation: String,
        /// The dataset, snapshot or pool concerned (empty when none).
        dataset: String,
        /// What ZFS said: the command's stderr or the errno's text.
        stderr: String,
        /// The whole message, saying what to do.
        message: String,
    },
    /// PostgreSQL refused or failed something.
    #[error("postgres: {message}")]
    Postgres {
        /// The SQLSTATE when the server answered with an error (e.g.
        /// `"28P01"`, wrong password), `None` when the failure is not the
        /// server's (no connection, unreadable backup label ...).
        sqlstate: Option<String>,
        /// The message, with the server's own and its hint.
        message: String,
        /// The server's DETAIL, when it gave one.
        detail: Option<String>,
    },
    /// Starting, stopping or inspecting a server process/container failed.
    #[error("runtime: {message}")]
    Runtime {
        /// What kind of failure (decide on this, never on the text).
        kind: RuntimeErrorKind,
        /// The message, with the last lines of the server's log.
        message: String,
    },
    /// Something did not finish in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// An I/O error on a named path.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the path.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The catalog file is unreadable, corrupt or from a newer betterpg.
    #[error("catalog: {0}")]
    Catalog(String),
    /// No free port, or the requested port is taken.
    #[error("port: {message}")]
    Port {
        /// Taken, or none free.
        kind: PortErrorKind,
        /// The port concerned, when one is.
        port: Option<u16>,
        /// The message, saying what to do.
        message: String,
    },
    /// Data directory and binaries are of different PostgreSQL major versions.
    #[error("version mismatch: {0}")]
    VersionMismatch(String),
    /// The operation is not supported in this situation.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The Docker engine refused or failed something.
    #[error("docker: {message}")]
    Docker {
        /// The engine's HTTP status, when it answered (404 not found, 409
        /// conflict ...); `None` when it could not be reached.
        status: Option<u16>,
        /// The message, with the engine's own.
        message: String,
    },
    /// The object is in a state that does not allow the operation.
    #[error("{0}")]
    InvalidState(String),
    /// Not enough space for what was asked (see the branch space in `docs/architecture.md`).
    #[error("no space: {0}")]
    NoSpace(String),
    /// A point in time outside what a database's retained WAL can restore
    /// (a branch `--at`): the message states the window.
    #[error("{target} is outside the restorable window of {name:?}: {from} .. {to}; branch at a point inside it")]
    OutOfWindow {
        /// The database whose WAL was asked for.
        name: String,
        /// The point asked for, as given back in the window's terms.
        target: String,
        /// The oldest restorable point (`none` when there is none yet).
        from: String,
        /// The newest restorable point (`none` when there is none yet).
        to: String,
    },
    /// Masking a branch (its SQL files, its rules, or making it
    /// schema-only) failed before the branch was ever reachable; the
    /// branch was destroyed.
    #[error("masking failed{}: {message}", mask_where(file, *line, statement))]
    Mask {
        /// The masking file (or rules file) concerned, when one is.
        file: Option<PathBuf>,
        /// Its line (1-based) where the failing statement or rule is.
        line: Option<u32>,
        /// The failing statement (or rule), as written.
        statement: Option<String>,
        /// The SQLSTATE when the server refused the statement.
        sqlstate: Option<String>,
        /// What went wrong and what to do.
        message: String,
    },
    /// The database or branch is protected (`bpg protect`): destroy,
    /// reset and expiry are refused, even forced.
    #[error("{name:?} is protected: {operation} is refused (even with --force); `bpg unprotect {name}` first if you mean it")]
    Protected {
        /// The protected database or branch (the one asked for, or a
        /// branch of it that would go too).
        name: String,
        /// What was refused: "destroy", "reset" or "expire".
        operation: &'static str,
    },
    /// Another `bpg daemon` already runs for this home.
    #[error("a bpg daemon already runs for this home (pid {pid}, lock {lock}): stop it first (one daemon per home)", pid = pid.map_or_else(|| "unknown".to_string(), |p| p.to_string()), lock = lock.display())]
    DaemonRunning {
        /// The daemon's lock file.
        lock: PathBuf,
        /// The pid of the daemon holding it, when recorded.
        pid: Option<u32>,
    },
    /// A bug: something that should not happen.
    #[error("internal error: {0}")]
    Internal(String),
}

/// "in FILE line N (statement: ...)" for [`Error::Mask`].
fn mask_where(file: &Option<PathBuf>, line: Option<u32>, statement: &Option<String>) -> String {
    let mut s = String::new();
    if let Some(f) = file {
        s.push_str(&format!(" in {}", f.display()));
        if let Some(l) = line {
            s.push_str(&format!(" line {l}"));
        }
    }
    if let Some(st) = statement {
        let one: String = st.split_whitespace().collect::<Vec<_>>().join(" ");
        let short: String = one.chars().take(200).collect();
        let more = if short.len() < one.len() { " ..." } else { "" };
        s.push_str(&format!(" (statement: {short}{more})"));
    }
    s
}

/// What kind of ZFS failure an [`Error::Zfs`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ZfsErrorKind {
    /// The dataset, snapshot or pool does not exist (reported as
    /// [`Error::NotFound`]).
    NotFound,
    /// The dataset already exists (reported as [`Error::AlreadyExists`]).
    Exists,
    /// The dataset has children, clones or holds (reported as
    /// [`Error::HasDependents`]).
    HasDependents,
    /// The dataset is busy (mounted and in use, or just made: zfs-fuse says
    /// so briefly after a clone or unmount).
    Busy,
    /// The pool, a quota or a reservation has no room for what was asked.
    NoSpace,
    /// ZFS itself is not reachable (no `/dev/zfs`, zfs-fuse not running).
    Unavailable,
    /// Anything else: read `stderr`.
    Other,
}

impl ZfsErrorKind {
    /// Short stable name, e.g. `"busy"` (for the bindings).
    pub const fn name(self) -> &'static str {
        match self {
            ZfsErrorKind::NotFound => "not_found",
            ZfsErrorKind::Exists => "exists",
            ZfsErrorKind::HasDependents => "has_dependents",
            ZfsErrorKind::Busy => "busy",
            ZfsErrorKind::NoSpace => "no_space",
            ZfsErrorKind::Unavailable => "unavailable",
            ZfsErrorKind::Other => "other",
        }
    }
}

/// What kind of failure an [`Error::Port`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PortErrorKind {
    /// The port is in use by another program.
    Taken,
    /// No port of the configured range is free.
    Exhausted,
}

impl PortErrorKind {
    /// Short stable name, `"taken"` or `"exhausted"`.
    pub const fn name(self) -> &'static str {
        match self {
            PortErrorKind::Taken => "taken",
            PortErrorKind::Exhausted => "exhausted",
        }
    }
}

/// What kind of failure an [`Error::Runtime`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RuntimeErrorKind {
    /// The server could not listen on its port: another program has it.
    PortInUse,
    /// The machine has not enough of something a server needs (memory,
    /// shared memory, processes, open files); the message says which.
    /// Stopping or destroying idle branches, or lowering their
    /// `branch_shared_buffers`, makes room.
    Resources,
    /// Anything else: read the message.
    Other,
}

impl RuntimeErrorKind {
    /// Short stable name, `"port_in_use"`, `"resources"` or `"other"`.
    pub const fn name(self) -> &'static str {
        match self {
            RuntimeErrorKind::PortInUse => "port_in_use",
            RuntimeErrorKind::Resources => "resources",
            RuntimeErrorKind::Other => "other",
        }
    }
}

/// A Python builtin exception an error kind's Python class also derives
/// from, so code that catches builtins keeps working.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PyBuiltin {
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

/// The one definition of betterpg's error kinds.
///
/// Each row gives a variant of [`Error`] and, for its kind, the stable
/// code, the short name, the C result constant, the Python exception class
/// (with the builtin it also derives from) and the documentation. From it
/// come [`Error::code`], [`Error::kind_name`], [`Error::kind`],
/// [`Error::KINDS`] and [`ErrorKind`]; the C binding checks its
/// `betterpg_result` against [`ErrorKind::ALL`] at compile time (a mismatch
/// does not build) and the Python binding builds its exception classes from
/// it. Add rows, never renumber nor reuse a code.
macro_rules! error_kinds {
    ($(
        $code:literal $variant:ident $name:literal $c_const:literal
        $py_class:literal $py_builtin:ident $doc:literal;
    )*) => {
        /// The kind of an [`Error`], without its fields: what the bindings
        /// map to a C result code and a Python exception class.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        #[repr(u32)]
        pub enum ErrorKind {
            $(
                #[doc = $doc]
                $variant = $code,
            )*
        }

        impl ErrorKind {
            /// Every kind, in code order.
            pub const ALL: &'static [ErrorKind] = &[$(ErrorKind::$variant),*];

            /// Stable numeric code (never reused, never renumbered).
            pub const fn code(self) -> u32 {
                self as u32
            }

            /// Short stable identifier, e.g. `"not_found"`.
            pub const fn name(self) -> &'static str {
                match self { $(ErrorKind::$variant => $name,)* }
            }

            /// [`ErrorKind::name`] as a C string (for the C binding).
            pub const fn c_name(self) -> &'static std::ffi::CStr {
                match self {
                    $(ErrorKind::$variant => match std::ffi::CStr::from_bytes_with_nul(
                        concat!($name, "\0").as_bytes(),
                    ) {
                        Ok(c) => c,
                        Err(_) => panic!("kind name with a NUL byte"),
                    },)*
                }
            }

            /// The C binding's result constant, e.g. `"BETTERPG_RESULT_NOT_FOUND"`.
            pub const fn c_constant(self) -> &'static str {
                match self { $(ErrorKind::$variant => $c_const,)* }
            }

            /// The Python binding's exception class, e.g. `"NotFoundError"`.
            pub const fn py_class(self) -> &'static str {
                match self { $(ErrorKind::$variant => $py_class,)* }
            }

            /// The Python builtin the class also derives from.
            pub const fn py_builtin(self) -> PyBuiltin {
                match self { $(ErrorKind::$variant => PyBuiltin::$py_builtin,)* }
            }

            /// One sentence saying what the kind means.
            pub const fn doc(self) -> &'static str {
                match self { $(ErrorKind::$variant => $doc,)* }
            }

            /// The kind with this code, `None` for a code no kind has.
            pub const fn from_code(code: u32) -> Option<ErrorKind> {
                match code {
                    $($code => Some(ErrorKind::$variant),)*
                    _ => None,
                }
            }
        }

        impl Error {
            /// The kind of this error.
            pub fn kind(&self) -> ErrorKind {
                match self { $(Error::$variant { .. } => ErrorKind::$variant,)* }
            }

            /// Every (code, kind name) pair, for bindings that build tables from it.
            pub const KINDS: &'static [(u32, &'static str)] = &[$(($code, $name)),*];
        }
    };
}

error_kinds! {
    1 InvalidName "invalid_name" "BETTERPG_RESULT_INVALID_NAME"
        "InvalidNameError" Value
        "A database or branch name failed validation (also a ValueError).";
    2 AlreadyExists "already_exists" "BETTERPG_RESULT_ALREADY_EXISTS"
        "AlreadyExistsError" None
        "Something with this name already exists (database, branch, pool, home).";
    3 NotFound "not_found" "BETTERPG_RESULT_NOT_FOUND"
        "NotFoundError" Lookup
        "No database or branch (or pool, dataset) with this name (also a LookupError).";
    4 HasDependents "has_dependents" "BETTERPG_RESULT_HAS_DEPENDENTS"
        "HasDependentsError" None
        "The object has branches and force was not given.";
    5 NotInitialized "not_initialized" "BETTERPG_RESULT_NOT_INITIALIZED"
        "NotInitializedError" None
        "The betterpg home is not initialised: call BranchManager.init first.";
    6 Config "config" "BETTERPG_RESULT_CONFIG"
        "ConfigError" None
        "Configuration is missing or wrong.";
    7 Zfs "zfs" "BETTERPG_RESULT_ZFS"
        "ZfsError" None
        "A zfs/zpool command failed.";
    8 Postgres "postgres" "BETTERPG_RESULT_POSTGRES"
        "PostgresError" None
        "PostgreSQL refused or failed something.";
    9 Runtime "runtime" "BETTERPG_RESULT_RUNTIME"
        "ServerRuntimeError" None
        "Starting, stopping or inspecting a server process failed.";
    10 Timeout "timeout" "BETTERPG_RESULT_TIMEOUT"
        "OperationTimeoutError" Timeout
        "Something did not finish in time (also a TimeoutError).";
    11 Io "io" "BETTERPG_RESULT_IO"
        "LocalIOError" Os
        "An I/O error on a named local path (also an OSError).";
    12 Catalog "catalog" "BETTERPG_RESULT_CATALOG"
        "CatalogError" None
        "The catalog file is unreadable, corrupt or from a newer betterpg.";
    13 Port "port" "BETTERPG_RESULT_PORT"
        "PortError" None
        "No free port in the configured range, or the requested port is taken.";
    14 VersionMismatch "version_mismatch" "BETTERPG_RESULT_VERSION_MISMATCH"
        "VersionMismatchError" None
        "Data directory and binaries are of different PostgreSQL major versions.";
    15 Unsupported "unsupported" "BETTERPG_RESULT_UNSUPPORTED"
        "UnsupportedError" None
        "The operation is not supported in this situation.";
    16 Docker "docker" "BETTERPG_RESULT_DOCKER"
        "DockerError" None
        "The Docker engine refused or failed something.";
    17 InvalidState "invalid_state" "BETTERPG_RESULT_INVALID_STATE"
        "InvalidStateError" None
        "The object is in a state that does not allow the operation (busy, incomplete).";
    18 NoSpace "no_space" "BETTERPG_RESULT_NO_SPACE"
        "NoSpaceError" None
        "Not enough space for what was asked: the branches' share of the pool is used up.";
    19 OutOfWindow "out_of_window" "BETTERPG_RESULT_OUT_OF_WINDOW"
        "OutOfWindowError" Value
        "A point in time outside the restorable window of the retained WAL (also a ValueError).";
    20 Mask "mask" "BETTERPG_RESULT_MASK"
        "MaskError" None
        "Masking a branch failed (file, line and statement named); the branch was destroyed, nothing was reachable.";
    21 Protected "protected" "BETTERPG_RESULT_PROTECTED"
        "ProtectedError" None
        "The database or branch is protected: destroy, reset and expiry are refused, even forced.";
    22 DaemonRunning "daemon_running" "BETTERPG_RESULT_DAEMON_RUNNING"
        "DaemonRunningError" None
        "Another bpg daemon already runs for this home (one daemon per home).";
    99 Internal "internal" "BETTERPG_RESULT_INTERNAL"
        "InternalError" None
        "A bug in betterpg: please report it.";
}

impl Error {
    /// Stable numeric code of this error kind (never reused, never renumbered).
    pub fn code(&self) -> u32 {
        self.kind().code()
    }

    /// Short stable identifier of the kind, e.g. `"not_found"`.
    pub fn kind_name(&self) -> &'static str {
        self.kind().name()
    }

    /// Helper: wrap an I/O error with what was being done.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn not_found(name: &str) -> Self {
        Error::NotFound {
            what: "database or branch",
            name: name.to_string(),
            hint: ": `bpg status` lists what exists".to_string(),
        }
    }

    /// A ZFS failure of `kind` in `operation` on `dataset`, ZFS having said
    /// `stderr`. `NotFound`, `Exists` and `HasDependents` become
    /// [`Error::NotFound`], [`Error::AlreadyExists`] and
    /// [`Error::HasDependents`] (their stable codes); every other kind an
    /// [`Error::Zfs`] with `message`.
    pub fn zfs_failure(
        kind: ZfsErrorKind,
        operation: impl Into<String>,
        dataset: impl Into<String>,
        stderr: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        let stderr = stderr.into();
        let dataset = dataset.into();
        match kind {
            ZfsErrorKind::NotFound => Error::NotFound {
                what: "ZFS dataset",
                name: dataset,
                hint: format!(" ({})", stderr.trim()),
            },
            ZfsErrorKind::Exists => Error::AlreadyExists {
                what: "ZFS dataset",
                name: dataset,
            },
            ZfsErrorKind::HasDependents => Error::HasDependents {
                name: dataset,
                dependents: stderr.trim().replace('\n', " "),
            },
            kind => Error::Zfs {
                kind,
                operation: operation.into(),
                dataset,
                stderr,
                message: message.into(),
            },
        }
    }

    /// A ZFS failure that is no one call's and no known kind (a dataset not
    /// mounted where it should be, a name ZFS cannot take ...).
    pub fn zfs(message: impl Into<String>) -> Self {
        Error::Zfs {
            kind: ZfsErrorKind::Other,
            operation: String::new(),
            dataset: String::new(),
            stderr: String::new(),
            message: message.into(),
        }
    }

    /// A PostgreSQL failure that is not the server's answer (no SQLSTATE).
    pub fn postgres(message: impl Into<String>) -> Self {
        Error::Postgres {
            sqlstate: None,
            message: message.into(),
            detail: None,
        }
    }

    /// A PostgreSQL failure with `message`, keeping the SQLSTATE and
    /// DETAIL of the driver's error `e`.
    pub fn postgres_with(e: &tokio_postgres::Error, message: impl Into<String>) -> Self {
        Error::Postgres {
            sqlstate: e.code().map(|c| c.code().to_string()),
            message: message.into(),
            detail: e.as_db_error().and_then(|d| d.detail()).map(str::to_string),
        }
    }

    /// A runtime failure of no particular kind.
    pub fn runtime(message: impl Into<String>) -> Self {
        Error::Runtime {
            kind: RuntimeErrorKind::Other,
            message: message.into(),
        }
    }

    /// The port `port` is in use by another program.
    pub fn port_taken(port: Option<u16>, message: impl Into<String>) -> Self {
        Error::Port {
            kind: PortErrorKind::Taken,
            port,
            message: message.into(),
        }
    }

    /// A Docker engine failure; `status` is its HTTP status when it answered.
    pub fn docker(status: Option<u16>, message: impl Into<String>) -> Self {
        Error::Docker {
            status,
            message: message.into(),
        }
    }

    /// The same error, its fields kept, with its message rewritten by `f`
    /// (given the current one). For the kinds whose message is one text
    /// (postgres, runtime, timeout, zfs, port, docker, ...); others are
    /// returned unchanged.
    pub(crate) fn reword(self, f: impl FnOnce(&str) -> String) -> Error {
        match self {
            Error::Postgres {
                sqlstate,
                message,
                detail,
            } => Error::Postgres {
                message: f(&message),
                sqlstate,
                detail,
            },
            Error::Runtime { kind, message } => Error::Runtime {
                message: f(&message),
                kind,
            },
            Error::Zfs {
                kind,
                operation,
                dataset,
                stderr,
                message,
            } => Error::Zfs {
                message: f(&message),
                kind,
                operation,
                dataset,
                stderr,
            },
            Error::Port {
                kind,
                port,
                message,
            } => Error::Port {
                message: f(&message),
                kind,
                port,
            },
            Error::Docker { status, message } => Error::Docker {
                message: f(&message),
                status,
            },
            Error::Timeout(m) => Error::Timeout(f(&m)),
            Error::Config(m) => Error::Config(f(&m)),
            Error::Unsupported(m) => Error::Unsupported(f(&m)),
            Error::InvalidState(m) => Error::InvalidState(f(&m)),
            Error::NoSpace(m) => Error::NoSpace(f(&m)),
            Error::Internal(m) => Error::Internal(f(&m)),
            Error::Catalog(m) => Error::Catalog(f(&m)),
            Error::VersionMismatch(m) => Error::VersionMismatch(f(&m)),
            e => e,
        }
    }

    /// A finer, stable reason within the kind, for the kinds that have one:
    /// the [`ZfsErrorKind`] name of a zfs error (`"busy"`, `"no_space"`,
    /// ...), the [`PortErrorKind`] name of a port error (`"taken"`,
    /// `"exhausted"`), the [`RuntimeErrorKind`] name of a runtime error
    /// (`"port_in_use"`, `"resources"`, `"other"`). `None` for the other kinds.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Error::Zfs { kind, .. } => Some(kind.name()),
            Error::Port { kind, .. } => Some(kind.name()),
            Error::Runtime { kind, .. } => Some(kind.name()),
            _ => None,
        }
    }

    /// The SQLSTATE of a PostgreSQL error the server answered with (e.g.
    /// `"28P01"`; for a masking failure, the failing statement's), `None`
    /// for every other error.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Error::Postgres { sqlstate, .. } | Error::Mask { sqlstate, .. } => sqlstate.as_deref(),
            _ => None,
        }
    }

    /// True when the server refused the credentials or the connection
    /// itself (SQLSTATE class 28, invalid authorization: a wrong password,
    /// no `pg_hba.conf` entry): waiting will not help.
    pub fn is_auth_failure(&self) -> bool {
        self.sqlstate().is_some_and(|s| s.starts_with("28"))
    }

    /// The kind of a ZFS error, `None` for every other error.
    pub fn zfs_kind(&self) -> Option<ZfsErrorKind> {
        match self {
            Error::Zfs { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// True when something failed because a port was in use by another
    /// program: a port error of that kind, or a server that could not
    /// listen on its port.
    pub fn is_port_taken(&self) -> bool {
        matches!(
            self,
            Error::Port {
                kind: PortErrorKind::Taken,
                ..
            } | Error::Runtime {
                kind: RuntimeErrorKind::PortInUse,
                ..
            }
        )
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        // The Display of tokio_postgres::Error hides the server's message;
        // include it so users see e.g. "password authentication failed".
        let message = match e.as_db_error() {
            Some(db) => format!(
                "{}: {}{}",
                db.severity(),
                db.message(),
                db.hint()
                    .map(|h| format!(" (hint: {h})"))
                    .unwrap_or_default()
            ),
            None => e.to_string(),
        };
        Error::postgres_with(&e, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_match_kinds_table() {
        let mut seen = std::collections::HashSet::new();
        for (code, _) in Error::KINDS {
            assert!(seen.insert(*code), "duplicate code {code}");
        }
        assert_eq!(Error::KINDS.len(), ErrorKind::ALL.len());
        let samples = [
            Error::Config("x".into()),
            Error::zfs("x"),
            Error::postgres("x"),
            Error::runtime("x"),
            Error::docker(None, "x"),
            Error::port_taken(Some(5), "x"),
            Error::not_found("x"),
            Error::Internal("x".into()),
        ];
        for e in samples {
            assert!(Error::KINDS.contains(&(e.code(), e.kind_name())), "{e:?}");
            assert_eq!(ErrorKind::from_code(e.code()), Some(e.kind()));
        }
    }

    #[test]
    fn the_table_is_consistent() {
        let mut classes = std::collections::HashSet::new();
        for (i, k) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(Error::KINDS[i], (k.code(), k.name()));
            assert_eq!(ErrorKind::from_code(k.code()), Some(*k));
            assert!(k.code() > 0 && k.code() < 1000, "core codes stay in 1-999");
            assert_eq!(k.c_name().to_str().unwrap(), k.name());
            assert_eq!(
                k.c_constant(),
                format!("BETTERPG_RESULT_{}", k.name().to_ascii_uppercase())
            );
            assert!(k
                .name()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_'));
            assert!(k.py_class().ends_with("Error"), "{k:?}");
            assert!(
                classes.insert(k.py_class()),
                "duplicate class {}",
                k.py_class()
            );
            assert!(k.doc().ends_with('.'), "{k:?}");
            if i > 0 {
                assert!(ErrorKind::ALL[i - 1].code() < k.code(), "ALL in code order");
            }
        }
        assert_eq!(ErrorKind::from_code(0), None);
        assert_eq!(ErrorKind::from_code(98), None);
    }

    #[test]
    fn zfs_failures_keep_their_stable_codes_by_kind() {
        let f = |k| Error::zfs_failure(k, "zfs destroy t/x", "t/x", "it said\n", "msg");
        assert_eq!(f(ZfsErrorKind::NotFound).kind(), ErrorKind::NotFound);
        assert_eq!(f(ZfsErrorKind::Exists).kind(), ErrorKind::AlreadyExists);
        assert_eq!(
            f(ZfsErrorKind::HasDependents).kind(),
            ErrorKind::HasDependents
        );
        for k in [
            ZfsErrorKind::Busy,
            ZfsErrorKind::NoSpace,
            ZfsErrorKind::Unavailable,
            ZfsErrorKind::Other,
        ] {
            let e = f(k);
            assert_eq!(e.kind(), ErrorKind::Zfs);
            assert_eq!(e.zfs_kind(), Some(k));
            assert_eq!(e.to_string(), "zfs: msg");
            let Error::Zfs {
                operation,
                dataset,
                stderr,
                ..
            } = e
            else {
                unreachable!()
            };
            assert_eq!(
                (operation.as_str(), dataset.as_str(), stderr.as_str()),
                ("zfs destroy t/x", "t/x", "it said\n")
            );
        }
        assert_eq!(Error::zfs("m").zfs_kind(), Some(ZfsErrorKind::Other));
        assert_eq!(Error::postgres("m").zfs_kind(), None);
    }

    #[test]
    fn port_taken_and_auth_failure_are_decided_on_fields() {
        assert!(Error::port_taken(Some(5), "x").is_port_taken());
        let exhausted = Error::Port {
            kind: PortErrorKind::Exhausted,
            port: None,
            message: "none free".into(),
        };
        assert!(!exhausted.is_port_taken());
        let bind = Error::Runtime {
            kind: RuntimeErrorKind::PortInUse,
            message: "x".into(),
        };
        assert!(bind.is_port_taken());
        assert!(!Error::runtime("Address already in use").is_port_taken());
        let pg = |s: &str| Error::Postgres {
            sqlstate: Some(s.into()),
            message: "m".into(),
            detail: None,
        };
        assert!(pg("28P01").is_auth_failure() && pg("28000").is_auth_failure());
        assert!(!pg("57P03").is_auth_failure());
        assert!(!Error::postgres("password authentication failed").is_auth_failure());
        assert_eq!(pg("28P01").sqlstate(), Some("28P01"));
        assert_eq!(pg("28P01").to_string(), "postgres: m");
        assert_eq!(pg("28P01").reason(), None);
        assert_eq!(bind.reason(), Some("port_in_use"));
        assert_eq!(exhausted.reason(), Some("exhausted"));
        assert_eq!(Error::zfs("x").reason(), Some("other"));
    }
}
