//! Everything that talks to or about PostgreSQL: binaries, connections, the
//! backup session, WAL hand-off, cluster files (never following a link:
//! [`datadir`]) and cutting a clone off from its source ([`isolate`]).

pub mod backup;
pub mod binaries;
pub mod cluster;
pub mod conn;
pub mod datadir;
pub mod isolate;
pub mod mask;
pub mod mask_rules;
pub mod personal;
pub mod upstream;
pub mod wal;

pub use backup::{BackupSession, BackupStop};
pub use binaries::PgBin;
pub use conn::ConnInfo;
