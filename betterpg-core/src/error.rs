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
    #[error("zfs: {0}")]
    Zfs(String),
    /// PostgreSQL refused or failed something.
    #[error("postgres: {0}")]
    Postgres(String),
    /// Starting, stopping or inspecting a server process/container failed.
    #[error("runtime: {0}")]
    Runtime(String),
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
    #[error("port: {0}")]
    Port(String),
    /// Data directory and binaries are of different PostgreSQL major versions.
    #[error("version mismatch: {0}")]
    VersionMismatch(String),
    /// The operation is not supported in this situation.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The Docker engine refused or failed something.
    #[error("docker: {0}")]
    Docker(String),
    /// The object is in a state that does not allow the operation.
    #[error("{0}")]
    InvalidState(String),
    /// Not enough space for what was asked (see [`crate::space`]).
    #[error("no space: {0}")]
    NoSpace(String),
    /// A bug: something that should not happen.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Stable numeric code of this error kind (never reused, never renumbered).
    pub fn code(&self) -> u32 {
        match self {
            Error::InvalidName { .. } => 1,
            Error::AlreadyExists { .. } => 2,
            Error::NotFound { .. } => 3,
            Error::HasDependents { .. } => 4,
            Error::NotInitialized { .. } => 5,
            Error::Config(_) => 6,
            Error::Zfs(_) => 7,
            Error::Postgres(_) => 8,
            Error::Runtime(_) => 9,
            Error::Timeout(_) => 10,
            Error::Io { .. } => 11,
            Error::Catalog(_) => 12,
            Error::Port(_) => 13,
            Error::VersionMismatch(_) => 14,
            Error::Unsupported(_) => 15,
            Error::Docker(_) => 16,
            Error::InvalidState(_) => 17,
            Error::NoSpace(_) => 18,
            Error::Internal(_) => 99,
        }
    }

    /// Short stable identifier of the kind, e.g. `"not_found"`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Error::InvalidName { .. } => "invalid_name",
            Error::AlreadyExists { .. } => "already_exists",
            Error::NotFound { .. } => "not_found",
            Error::HasDependents { .. } => "has_dependents",
            Error::NotInitialized { .. } => "not_initialized",
            Error::Config(_) => "config",
            Error::Zfs(_) => "zfs",
            Error::Postgres(_) => "postgres",
            Error::Runtime(_) => "runtime",
            Error::Timeout(_) => "timeout",
            Error::Io { .. } => "io",
            Error::Catalog(_) => "catalog",
            Error::Port(_) => "port",
            Error::VersionMismatch(_) => "version_mismatch",
            Error::Unsupported(_) => "unsupported",
            Error::Docker(_) => "docker",
            Error::InvalidState(_) => "invalid_state",
            Error::NoSpace(_) => "no_space",
            Error::Internal(_) => "internal",
        }
    }

    /// Every (code, kind name) pair, for bindings that build tables from it.
    pub const KINDS: &'static [(u32, &'static str)] = &[
        (1, "invalid_name"),
        (2, "already_exists"),
        (3, "not_found"),
        (4, "has_dependents"),
        (5, "not_initialized"),
        (6, "config"),
        (7, "zfs"),
        (8, "postgres"),
        (9, "runtime"),
        (10, "timeout"),
        (11, "io"),
        (12, "catalog"),
        (13, "port"),
        (14, "version_mismatch"),
        (15, "unsupported"),
        (16, "docker"),
        (17, "invalid_state"),
        (18, "no_space"),
        (99, "internal"),
    ];

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
}

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        // The Display of tokio_postgres::Error hides the server's message;
        // include it so users see e.g. "password authentication failed".
        match e.as_db_error() {
            Some(db) => Error::Postgres(format!(
                "{}: {}{}",
                db.severity(),
                db.message(),
                db.hint()
                    .map(|h| format!(" (hint: {h})"))
                    .unwrap_or_default()
            )),
            None => Error::Postgres(e.to_string()),
        }
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
        let samples = [
            Error::Config("x".into()),
            Error::Zfs("x".into()),
            Error::not_found("x"),
            Error::Internal("x".into()),
        ];
        for e in samples {
            assert!(Error::KINDS.contains(&(e.code(), e.kind_name())), "{e:?}");
        }
    }
}
