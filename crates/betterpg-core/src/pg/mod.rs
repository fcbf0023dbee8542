//! Everything that talks to or about PostgreSQL: binaries, connections, the
//! backup session, WAL hand-off and cluster files.

pub mod backup;
pub mod binaries;
pub mod cluster;
pub mod conn;
pub mod wal;

pub use backup::{BackupSession, BackupStop};
pub use binaries::PgBin;
pub use conn::ConnInfo;
