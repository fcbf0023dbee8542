//! # betterpg-core
//!
//! Production-safe PostgreSQL branching on ZFS. A *database* is a PostgreSQL
//! cluster on its own ZFS dataset; a *branch* is a new read-write cluster
//! started on a ZFS clone of a snapshot of another database or branch, made
//! in about a second whatever the size, holding every committed transaction.
//!
//! ```no_run
//! use betterpg_core::{BranchManager, BranchOptions, CreateOptions};
//! # async fn demo() -> betterpg_core::Result<()> {
//! let mgr = BranchManager::open("/var/lib/betterpg").await?;
//! mgr.create("prod", CreateOptions::default()).await?;
//! let report = mgr.branch("prod", "dev", BranchOptions::default()).await?;
//! println!("{} in {:.0} ms", report.branch.url, report.total_millis);
//! # Ok(()) }
//! ```
//!
//! Layers, each using only the ones below it (checked by `tests/layers.rs`;
//! see `docs/architecture.md`):
//!
//! - facades: [`manager`] ([`BranchManager`]) and [`blocking`] (the
//!   synchronous facade the C and Python bindings use);
//! - operations (internal): `ops`, one module per verb (`ops::branch` is
//!   the recipe), each a function over the context of a home (`context`);
//! - policy on plain values: [`audit`] (the audit log), `catalog`, `space` (why a full branch cannot
//!   stop its source), `ports`, `tablespace` (internal) and [`home`];
//! - leaves that know nothing of betterpg's policy: [`storage`] (ZFS),
//!   [`pg`] (PostgreSQL), [`runtime`] (running servers), [`name`],
//!   [`osuser`], [`util`], [`fault`], [`error`].
//!
//! The public API is what this page re-exports, plus those modules.

#![warn(missing_docs)]

pub mod audit;
#[doc(hidden)]
pub mod bench;
pub mod blocking;
pub(crate) mod catalog;
pub(crate) mod context;
pub mod error;
pub mod fault;
pub mod home;
pub mod manager;
pub mod name;
pub(crate) mod ops;
pub mod osuser;
pub mod pg;
pub(crate) mod pitr;
pub(crate) mod ports;
pub mod retention;
pub mod runtime;
pub(crate) mod space;
pub mod storage;
pub(crate) mod tablespace;
pub mod util;

pub use audit::{AuditError, AuditEvent, AuditMaskFile};
pub use catalog::settings::{
    format_duration, parse_duration, Key as SettingKey, KEYS as SETTING_KEYS,
};
pub use catalog::{
    AttachedSource, Credentials, Entry, EntryState, Kind, Lifecycle, Mode, Settings, State,
    Upstream, PGDATA_SUBDIR, REWIND_SNAPSHOT_PREFIX,
};
pub use error::{Error, ErrorKind, PortErrorKind, Result, RuntimeErrorKind, ZfsErrorKind};
#[allow(deprecated)]
pub use manager::SnapshotMode;
pub use manager::{
    available_runtimes, validate_dataset_name, AttachOptions, BranchManager, BranchOptions,
    BranchReport, CreateOptions, FollowOptions, FollowProgress, FollowReport, GcItem, GcReport,
    Info, InitOptions, InitStorage, PolicyFailure, PolicyReport, PoolUsage, ProgressFn, PruneItem,
    PruneReport, ReplicaPoint, Replication, ReplicationState, RewindReport, SnapshotDestroyReport,
    SnapshotInfo, SnapshotOptions, SnapshotReport, StepTiming, DEFAULT_WAIT_TIMEOUT,
};
pub use manager::{ActionResult, DaemonAction, DaemonLock, DaemonOptions, PassReport, StopSignal};
pub use name::validate_name;
pub use ops::doctor::{
    Check, DatasetProperties, DockerLimits, DoctorReport, OsUserFound, PoolFileCheck,
    PostgresFound, StorageChoice,
};
pub use ops::logs::LogStream;
pub use ops::mask_check::{
    MaskCheckOptions, MaskCheckReport, PersonalColumn, DEFAULT_SAMPLE_ROWS, MAX_SAMPLE_ROWS,
};
pub use ops::mask_rules::MaskSql;
pub use ops::private::MaskingReport;
pub use ops::retain::WalRetention;
pub use pg::backup::CheckpointDecision;
pub use pg::isolate::{
    DetachedSubscription, IsolationReport, IsolationWarning, OverriddenSetting, RemovedSetting,
};
pub use retention::{KeepReason, RetentionPolicy};
pub use runtime::RunStatus;
pub use space::{BranchSpace, BRANCH_SPACE_WARN_FRACTION, POOL_WARN_FRACTION};
pub use tablespace::TablespaceClone;

/// The README's Rust examples, compiled by `cargo test --doc` so they stay
/// true to the API.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
