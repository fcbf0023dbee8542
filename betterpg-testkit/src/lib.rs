//! Shared set-up for betterpg's integration tests (a dev-dependency of
//! `betterpg-core` and `betterpg-cli`, never published).
//!
//! Everything here uses the real parts: a file-backed ZFS pool (zfs-fuse or
//! OpenZFS), PostgreSQL run as the OS user `postgres`, and the real `bpg`
//! binary. A missing prerequisite FAILS the test with what to install or
//! start; nothing is skipped.
//!
//! - [`env`]: a betterpg home on its own pool ([`TestEnv`]), torn down on drop;
//!   the prerequisites; the port range of a test binary.
//! - [`pg`]: connections, a sequential writer, a writer recording each
//!   commit's time and LSN, and assertions on what a branch holds.
//! - [`remote`]: a remote primary in a network namespace of its own (the
//!   `follow` tests), with failover and replacement.
//! - [`restart`]: databases and branches seeded with data, stopped and
//!   started all, the pool exported and imported (what restarts must not
//!   lose).
//! - [`zfs`] and [`catalog`]: what "nothing changed" compares.
//! - [`docs`]: docs/cli-json.md's JSON examples and the check that
//!   printed output has their shape.
//! - [`cli`]: running `bpg` ([`Bpg`]), `bpg init` of a [`TestEnv`], and the
//!   pool/catalog/ports consistency check.
//!
//! Tests use it with one line: `use betterpg_testkit::*;`.

pub mod catalog;
pub mod cli;
pub mod docs;
pub mod env;
pub mod pg;
pub mod remote;
pub mod restart;
pub mod zfs;

pub use catalog::*;
pub use cli::*;
pub use docs::*;
pub use env::*;
pub use pg::*;
pub use remote::*;
pub use restart::*;
pub use zfs::*;
