//! The JSON `bpg --json` prints: one explicit type per output, so the
//! command line's contract changes only here (and in `docs/cli-json.md`,
//! which `tests/cli_json.rs` checks against real output), never as a side
//! effect of a change in the library's types.
//!
//! Field order is the order printed.

use std::collections::BTreeMap;
use std::path::Path;

use betterpg_core::pg::isolate::IsolationReport;
use betterpg_core::TablespaceClone;
use serde::Serialize;

/// A database or branch (`create`, `start`, `stop`, each row of `status`,
/// `branch` of `branch` and `reset`).
#[derive(Serialize)]
pub struct Info<'a> {
    pub name: &'a str,
    pub kind: &'a str,
    pub parent: Option<&'a str>,
    pub status: &'a str,
    pub state: &'a str,
    pub port: u16,
    pub used_bytes: u64,
    pub referenced_bytes: u64,
    pub url: &'a str,
    pub mode: Option<&'a str>,
    pub dataset: &'a str,
    pub snapshot: Option<&'a str>,
    pub runtime: &'a str,
    pub pg_version: u32,
    pub created_at: u64,
    pub wal_retention: Option<WalRetention<'a>>,
    pub protected: bool,
    pub rewindable: bool,
    pub owner_pid: Option<u32>,
    pub expires_at: Option<u64>,
    /// Only for a replica.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replication: Option<Replication<'a>>,
    /// "rotate", "keep" or null (a database without the setting).
    pub credentials: Option<&'a str>,
}

/// How a replica follows its primary.
#[derive(Serialize)]
pub struct Replication<'a> {
    pub upstream: &'a str,
    pub slot: Option<&'a str>,
    pub state: &'a str,
    pub lag_bytes: Option<u64>,
    pub lag_seconds: Option<f64>,
    pub replay_lsn: Option<&'a str>,
    pub primary_lsn: Option<&'a str>,
    pub last_replay_time: Option<&'a str>,
}

impl<'a> From<&'a betterpg_core::Replication> for Replication<'a> {
    fn from(r: &'a betterpg_core::Replication) -> Self {
        Replication {
            upstream: &r.upstream,
            slot: r.slot.as_deref(),
            state: r.state.as_str(),
            lag_bytes: r.lag_bytes,
            lag_seconds: r.lag_seconds,
            replay_lsn: r.replay_lsn.as_deref(),
            primary_lsn: r.primary_lsn.as_deref(),
            last_replay_time: r.last_replay_time.as_deref(),
        }
    }
}

/// `follow`.
#[derive(Serialize)]
pub struct FollowReport<'a> {
    pub replica: Info<'a>,
    pub upstream: &'a str,
    pub system_id: &'a str,
    pub slot: Option<&'a str>,
    pub slot_created: bool,
    pub backup_bytes: u64,
    pub total_millis: f64,
    pub retired_dataset: Option<&'a str>,
}

impl<'a> From<&'a betterpg_core::FollowReport> for FollowReport<'a> {
    fn from(r: &'a betterpg_core::FollowReport) -> Self {
        FollowReport {
            replica: (&r.replica).into(),
            upstream: &r.upstream,
            system_id: &r.system_id,
            slot: r.slot.as_deref(),
            slot_created: r.slot_created,
            backup_bytes: r.backup_bytes,
            total_millis: r.total_millis,
            retired_dataset: r.retired_dataset.as_deref(),
        }
    }
}

/// Where a branch of a replica stands in the primary's history.
#[derive(Serialize)]
pub struct ReplicaPoint<'a> {
    pub primary_lsn: Option<&'a str>,
    pub replay_lsn: &'a str,
    pub replay_time: Option<&'a str>,
    pub waited_millis: f64,
}

/// The WAL a database keeps and the window it can be branched at
/// (`wal_retention` of an info; null when it keeps none).
#[derive(Serialize)]
pub struct WalRetention<'a> {
    pub retain_secs: u64,
    pub active: bool,
    pub from_time: Option<&'a str>,
    pub to_time: Option<&'a str>,
    pub from_lsn: Option<&'a str>,
    pub to_lsn: Option<&'a str>,
    pub wal_bytes: u64,
    pub segments: usize,
    pub bases: usize,
}

impl<'a> From<&'a betterpg_core::WalRetention> for WalRetention<'a> {
    fn from(w: &'a betterpg_core::WalRetention) -> Self {
        WalRetention {
            retain_secs: w.retain_secs,
            active: w.active,
            from_time: w.from_time.as_deref(),
            to_time: w.to_time.as_deref(),
            from_lsn: w.from_lsn.as_deref(),
            to_lsn: w.to_lsn.as_deref(),
            wal_bytes: w.wal_bytes,
            segments: w.segments,
            bases: w.bases,
        }
    }
}

impl<'a> From<&'a betterpg_core::Info> for Info<'a> {
    fn from(i: &'a betterpg_core::Info) -> Self {
        Info {
            name: &i.name,
            kind: i.kind.as_str(),
            parent: i.parent.as_deref(),
            status: i.status.as_str(),
            state: i.state.as_str(),
            port: i.port,
            used_bytes: i.used_bytes,
            referenced_bytes: i.referenced_bytes,
            url: &i.url,
            mode: i.mode.map(|m| m.as_str()),
            dataset: &i.dataset,
            snapshot: i.snapshot.as_deref(),
            runtime: &i.runtime,
            pg_version: i.pg_version,
            created_at: i.created_at,
            wal_retention: i.wal_retention.as_ref().map(WalRetention::from),
            protected: i.protected,
            rewindable: i.rewindable,
            owner_pid: i.owner_pid,
            expires_at: i.expires_at,
            replication: i.replication.as_ref().map(Replication::from),
            credentials: i.credentials.map(|c| c.as_str()),
        }
    }
}

/// One step of `branch`/`reset` with its time.
#[derive(Serialize)]
pub struct StepTiming<'a> {
    pub step: &'a str,
    pub millis: f64,
}

/// `branch` and `reset`.
#[derive(Serialize)]
pub struct BranchReport<'a> {
    pub branch: Info<'a>,
    pub timings: Vec<StepTiming<'a>>,
    pub total_millis: f64,
    pub source_was_running: bool,
    pub wal_bytes_copied: u64,
    pub tablespaces: Vec<Tablespace<'a>>,
    pub isolation: Isolation<'a>,
    pub password_changed: bool,
    pub masking: Option<Masking<'a>>,
    /// "rotate" or "keep".
    pub credentials: &'a str,
    /// `--fast` from a running source: checkpoint done or skipped, and why.
    pub checkpoint: Option<Checkpoint<'a>>,
    /// Only for a branch of a replica.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica_point: Option<ReplicaPoint<'a>>,
}

/// What masking (or making the branch schema-only) did.
#[derive(Serialize)]
pub struct Masking<'a> {
    pub files: Vec<&'a Path>,
    pub statements: usize,
    pub tables_rewritten: &'a [String],
    pub schema_only: bool,
    pub tables_emptied: &'a [String],
    pub wal_files_removed: usize,
}

impl<'a> From<&'a betterpg_core::MaskingReport> for Masking<'a> {
    fn from(m: &'a betterpg_core::MaskingReport) -> Self {
        Masking {
            files: m.files.iter().map(|p| p.as_path()).collect(),
            statements: m.statements,
            tables_rewritten: &m.tables_rewritten,
            schema_only: m.schema_only,
            tables_emptied: &m.tables_emptied,
            wal_files_removed: m.wal_files_removed,
        }
    }
}

/// [`betterpg_core::CheckpointDecision`].
#[derive(Serialize)]
pub struct Checkpoint<'a> {
    pub done: bool,
    pub wal_since_checkpoint: Option<u64>,
    pub threshold: u64,
    pub reason: &'a str,
}

impl<'a> From<&'a betterpg_core::BranchReport> for BranchReport<'a> {
    fn from(r: &'a betterpg_core::BranchReport) -> Self {
        BranchReport {
            branch: (&r.branch).into(),
            timings: timings(&r.timings),
            total_millis: r.total_millis,
            source_was_running: r.source_was_running,
            wal_bytes_copied: r.wal_bytes_copied,
            tablespaces: r.tablespaces.iter().map(Tablespace::from).collect(),
            isolation: (&r.isolation).into(),
            password_changed: r.password_changed,
            masking: r.masking.as_ref().map(Masking::from),
            credentials: r.credentials.as_str(),
            checkpoint: r.checkpoint.as_ref().map(|c| Checkpoint {
                done: c.done,
                wal_since_checkpoint: c.wal_since_checkpoint,
                threshold: c.threshold,
                reason: &c.reason,
            }),
            replica_point: r.replica_point.as_ref().map(|p| ReplicaPoint {
                primary_lsn: p.primary_lsn.as_deref(),
                replay_lsn: &p.replay_lsn,
                replay_time: p.replay_time.as_deref(),
                waited_millis: p.waited_millis,
            }),
        }
    }
}

/// A tablespace of the source, cloned for the branch.
#[derive(Serialize)]
pub struct Tablespace<'a> {
    pub oid: u32,
    pub name: Option<&'a str>,
    pub source_location: &'a Path,
    pub location: &'a Path,
    pub dataset: &'a str,
}

impl<'a> From<&'a TablespaceClone> for Tablespace<'a> {
    fn from(t: &'a TablespaceClone) -> Self {
        Tablespace {
            oid: t.oid,
            name: t.name.as_deref(),
            source_location: &t.source_location,
            location: &t.location,
            dataset: &t.dataset,
        }
    }
}

/// What a branch was cut off from.
#[derive(Serialize)]
pub struct Isolation<'a> {
    pub settings_removed: Vec<RemovedSetting<'a>>,
    pub settings_overridden: Vec<OverriddenSetting<'a>>,
    pub files_removed: &'a [String],
    pub replication_slots_dropped: &'a [String],
    pub subscriptions_detached: Vec<DetachedSubscription<'a>>,
    pub password_replaced: bool,
    pub roles_rotated: &'a [String],
    pub warnings: Vec<IsolationWarning<'a>>,
}

/// A line removed from the clone's `postgresql.auto.conf`.
#[derive(Serialize)]
pub struct RemovedSetting<'a> {
    pub name: &'a str,
    pub value: &'a str,
}

/// A source setting the branch runs without.
#[derive(Serialize)]
pub struct OverriddenSetting<'a> {
    pub name: &'a str,
    pub source_value: &'a str,
    pub branch_value: &'a str,
}

/// A subscription disabled and detached on the branch.
#[derive(Serialize)]
pub struct DetachedSubscription<'a> {
    pub database: &'a str,
    pub name: &'a str,
    pub was_enabled: bool,
    pub slot_name: Option<&'a str>,
}

/// Something in the branch that still points at another system.
#[derive(Serialize)]
pub struct IsolationWarning<'a> {
    pub kind: &'a str,
    pub database: &'a str,
    pub name: &'a str,
    pub detail: &'a str,
}

impl<'a> From<&'a IsolationReport> for Isolation<'a> {
    fn from(i: &'a IsolationReport) -> Self {
        Isolation {
            settings_removed: i
                .settings_removed
                .iter()
                .map(|s| RemovedSetting {
                    name: &s.name,
                    value: &s.value,
                })
                .collect(),
            settings_overridden: i
                .settings_overridden
                .iter()
                .map(|s| OverriddenSetting {
                    name: &s.name,
                    source_value: &s.source_value,
                    branch_value: &s.branch_value,
                })
                .collect(),
            files_removed: &i.files_removed,
            replication_slots_dropped: &i.replication_slots_dropped,
            subscriptions_detached: i
                .subscriptions_detached
                .iter()
                .map(|s| DetachedSubscription {
                    database: &s.database,
                    name: &s.name,
                    was_enabled: s.was_enabled,
                    slot_name: s.slot_name.as_deref(),
                })
                .collect(),
            password_replaced: i.password_replaced,
            roles_rotated: &i.roles_rotated,
            warnings: i
                .warnings
                .iter()
                .map(|w| IsolationWarning {
                    kind: &w.kind,
                    database: &w.database,
                    name: &w.name,
                    detail: &w.detail,
                })
                .collect(),
        }
    }
}

/// `init`: the home's configuration as recorded.
#[derive(Serialize)]
pub struct Config<'a> {
    pub version: u32,
    pub dataset: &'a str,
    pub pg_bin: Option<&'a Path>,
    pub os_user: Option<&'a str>,
    pub listen_address: &'a str,
    pub port_start: u16,
    pub port_end: u16,
    pub pool_file: Option<&'a Path>,
    pub start_timeout_secs: u64,
    pub storage_backend: Option<&'a str>,
    pub default_runtime: Option<&'a str>,
    pub default_image: Option<&'a str>,
    pub branch_headroom_percent: u8,
    pub branch_reserve: u64,
    pub docker_memory: u64,
    pub docker_pids: u64,
    pub lock_timeout_secs: u64,
    pub zfs_properties: &'a BTreeMap<String, String>,
}

impl<'a> From<&'a betterpg_core::home::Config> for Config<'a> {
    fn from(c: &'a betterpg_core::home::Config) -> Self {
        Config {
            version: c.version,
            dataset: &c.dataset,
            pg_bin: c.pg_bin.as_deref(),
            os_user: c.os_user.as_deref(),
            listen_address: &c.listen_address,
            port_start: c.port_start,
            port_end: c.port_end,
            pool_file: c.pool_file.as_deref(),
            start_timeout_secs: c.start_timeout_secs,
            storage_backend: c.storage_backend.as_deref(),
            default_runtime: c.default_runtime.as_deref(),
            default_image: c.default_image.as_deref(),
            branch_headroom_percent: c.branch_headroom_percent,
            branch_reserve: c.branch_reserve,
            docker_memory: c.docker_memory,
            docker_pids: c.docker_pids,
            lock_timeout_secs: c.lock_timeout_secs,
            zfs_properties: &c.zfs_properties,
        }
    }
}

/// `status --pool`: the entries and the pool usage.
#[derive(Serialize)]
pub struct Status<'a> {
    pub entries: Vec<Info<'a>>,
    pub pool: Pool<'a>,
}

/// The pool the home lives on, as `status` shows it.
#[derive(Serialize)]
pub struct Pool<'a> {
    pub name: &'a str,
    pub used_bytes: u64,
    pub available_bytes: u64,
    pub fraction_used: f64,
    pub warning: bool,
    pub branches: BranchSpace,
    pub zfs_properties: &'a BTreeMap<String, String>,
}

/// All branches together: what they use and may use.
#[derive(Serialize)]
pub struct BranchSpace {
    pub used_bytes: u64,
    pub limit_bytes: Option<u64>,
    pub fraction_used: f64,
    pub warning: bool,
    pub headroom_percent: u8,
}

impl<'a> Pool<'a> {
    /// From the pool usage and the home's config (its headroom and the
    /// datasets' properties).
    pub fn new(p: &'a betterpg_core::PoolUsage, c: &'a betterpg_core::home::Config) -> Self {
        Pool {
            name: &p.pool,
            used_bytes: p.space.used,
            available_bytes: p.space.available,
            fraction_used: p.fraction_used,
            warning: p.warning,
            branches: BranchSpace {
                used_bytes: p.branches.used,
                limit_bytes: p.branches.limit,
                fraction_used: p.branches.fraction_used,
                warning: p.branches.warning,
                headroom_percent: c.branch_headroom_percent,
            },
            zfs_properties: &c.zfs_properties,
        }
    }
}

/// `config`: the entry's settings in the library's one JSON form
/// (`betterpg_core::Settings::to_json`: every key, `null` when not set).
#[derive(Serialize)]
pub struct EntrySettings<'a> {
    pub name: &'a str,
    pub settings: serde_json::Value,
}

/// `url`.
#[derive(Serialize)]
pub struct Url<'a> {
    pub name: &'a str,
    /// `--role`: the role whose URL this is (null: betterpg's superuser).
    pub role: Option<&'a str>,
    pub url: &'a str,
}

/// `destroy`.
#[derive(Serialize)]
pub struct Destroyed<'a> {
    pub destroyed: &'a str,
}

/// `detach`.
#[derive(Serialize)]
pub struct Detached<'a> {
    pub detached: &'a str,
    pub branches_destroyed: &'a [String],
}

/// One thing `gc` found.
#[derive(Serialize)]
pub struct GcItem<'a> {
    pub what: &'a str,
    pub name: &'a str,
    pub reason: &'a str,
}

/// `gc`.
#[derive(Serialize)]
pub struct GcReport<'a> {
    pub dry_run: bool,
    pub items: Vec<GcItem<'a>>,
    pub kept: Vec<GcItem<'a>>,
}

impl<'a> From<&'a betterpg_core::GcReport> for GcReport<'a> {
    fn from(r: &'a betterpg_core::GcReport) -> Self {
        let items = |v: &'a [betterpg_core::GcItem]| {
            v.iter()
                .map(|i| GcItem {
                    what: &i.what,
                    name: &i.name,
                    reason: &i.reason,
                })
                .collect()
        };
        GcReport {
            dry_run: r.dry_run,
            items: items(&r.items),
            kept: items(&r.kept),
        }
    }
}

/// `doctor` (keys in alphabetical order, as it always printed them).
#[derive(Serialize)]
pub struct Doctor<'a> {
    pub dataset_properties: Option<DoctorDatasetProperties<'a>>,
    pub docker: Option<DoctorDocker<'a>>,
    pub fault_injection: bool,
    pub home: &'a Path,
    pub initialised: bool,
    pub os_user: DoctorOsUser<'a>,
    pub pool_file: Option<DoctorPoolFile<'a>>,
    pub postgres: DoctorPostgres<'a>,
    pub problems: &'a [String],
    pub storage: DoctorStorage<'a>,
    pub warnings: &'a [String],
    pub zfs: DoctorZfs,
}

/// `doctor`'s datasets' properties.
#[derive(Serialize)]
pub struct DoctorDatasetProperties<'a> {
    pub live: &'a BTreeMap<String, String>,
    pub recorded: &'a BTreeMap<String, String>,
}

/// `doctor`'s container limits.
#[derive(Serialize)]
pub struct DoctorDocker<'a> {
    pub memory: u64,
    pub network: &'a str,
    pub pids: u64,
}

/// `doctor`'s OS user: name and uid, or the error.
#[derive(Serialize)]
pub struct DoctorOsUser<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
}

/// `doctor`'s pool file: its space, or the error.
#[derive(Serialize)]
pub struct DoctorPoolFile<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_short: Option<bool>,
    pub path: &'a Path,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub space: Option<PoolFileSpace>,
}

/// A pool file's size, allocation and its host's free space, bytes (keys
/// in alphabetical order, as `doctor` always printed them).
#[derive(Serialize)]
pub struct PoolFileSpace {
    pub allocated: u64,
    pub host_free: u64,
    pub size: u64,
}

/// `doctor`'s PostgreSQL: bin directory and major version, or the error.
#[derive(Serialize)]
pub struct DoctorPostgres<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bin: Option<&'a Path>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub major: Option<u32>,
}

/// `doctor`'s storage backend and why, or the error.
#[derive(Serialize)]
pub struct DoctorStorage<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
    pub libzfs_compiled: bool,
    pub libzfs_library: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested: Option<&'a str>,
}

/// `doctor`'s ZFS userland.
#[derive(Serialize)]
pub struct DoctorZfs {
    pub flavor: &'static str,
    pub zpool_list_ok: bool,
}

impl<'a> From<&'a betterpg_core::DoctorReport> for Doctor<'a> {
    fn from(r: &'a betterpg_core::DoctorReport) -> Self {
        let storage = r.storage.ok();
        let pg = r.postgres.ok();
        let user = r.os_user.ok();
        Doctor {
            dataset_properties: r
                .dataset_properties
                .as_ref()
                .map(|p| DoctorDatasetProperties {
                    live: &p.live,
                    recorded: &p.recorded,
                }),
            docker: r.docker.as_ref().map(|d| DoctorDocker {
                memory: d.memory,
                network: &d.network,
                pids: d.pids,
            }),
            fault_injection: r.fault_injection,
            home: &r.home,
            initialised: r.initialised,
            os_user: DoctorOsUser {
                error: r.os_user.error(),
                name: user.map(|u| u.name.as_str()),
                uid: user.map(|u| u.uid),
            },
            pool_file: r.pool_file.as_ref().map(|p| {
                let space = p.space.ok();
                DoctorPoolFile {
                    error: p.space.error(),
                    host_short: space.map(|s| s.host_short()),
                    path: &p.path,
                    space: space.map(|s| PoolFileSpace {
                        allocated: s.allocated,
                        host_free: s.host_free,
                        size: s.size,
                    }),
                }
            }),
            postgres: DoctorPostgres {
                bin: pg.map(|p| p.bin.as_path()),
                error: r.postgres.error(),
                major: pg.map(|p| p.major),
            },
            problems: &r.problems,
            storage: DoctorStorage {
                backend: storage.map(|s| s.backend.as_str()),
                error: r.storage.error(),
                libzfs_compiled: r.libzfs_compiled,
                libzfs_library: &r.libzfs_library,
                name: storage.map(|s| s.name.as_str()),
                reason: storage.map(|s| s.reason.as_str()),
                requested: storage.map(|s| s.requested.as_str()),
            },
            warnings: &r.warnings,
            zfs: DoctorZfs {
                flavor: crate::commands::doctor::flavor(r.zfs_flavor),
                zpool_list_ok: r.zpool_list_ok,
            },
        }
    }
}

/// A named snapshot (`snapshots`, `snapshot`).
#[derive(Serialize)]
pub struct Snapshot<'a> {
    pub source: &'a str,
    pub name: &'a str,
    pub full_name: &'a str,
    pub created_at: u64,
    pub mode: &'a str,
    pub auto: bool,
    pub state: &'a str,
    pub source_was_running: bool,
    pub used_bytes: u64,
    pub wal_bytes: u64,
    pub referenced_bytes: u64,
    pub branch_count: usize,
    pub branches: &'a [String],
    pub zfs_snapshot: &'a str,
    pub wal_dataset: Option<&'a str>,
    pub stop_lsn: Option<&'a str>,
    pub timeline: Option<u32>,
}

impl<'a> From<&'a betterpg_core::SnapshotInfo> for Snapshot<'a> {
    fn from(s: &'a betterpg_core::SnapshotInfo) -> Self {
        Snapshot {
            source: &s.source,
            name: &s.name,
            full_name: &s.full_name,
            created_at: s.created_at,
            mode: s.mode.as_str(),
            auto: s.auto,
            state: s.state.as_str(),
            source_was_running: s.source_was_running,
            used_bytes: s.used_bytes,
            wal_bytes: s.wal_bytes,
            referenced_bytes: s.referenced_bytes,
            branch_count: s.branches.len(),
            branches: &s.branches,
            zfs_snapshot: &s.zfs_snapshot,
            wal_dataset: s.wal_dataset.as_deref(),
            stop_lsn: s.stop_lsn.as_deref(),
            timeline: s.timeline,
        }
    }
}

/// `snapshots`.
#[derive(Serialize)]
pub struct Snapshots<'a> {
    pub snapshots: Vec<Snapshot<'a>>,
}

impl<'a> From<&'a [betterpg_core::SnapshotInfo]> for Snapshots<'a> {
    fn from(l: &'a [betterpg_core::SnapshotInfo]) -> Self {
        Snapshots {
            snapshots: l.iter().map(Snapshot::from).collect(),
        }
    }
}

/// `snapshot SRC`.
#[derive(Serialize)]
pub struct SnapshotReport<'a> {
    pub snapshot: Snapshot<'a>,
    pub timings: Vec<StepTiming<'a>>,
    pub total_millis: f64,
}

impl<'a> From<&'a betterpg_core::SnapshotReport> for SnapshotReport<'a> {
    fn from(r: &'a betterpg_core::SnapshotReport) -> Self {
        SnapshotReport {
            snapshot: (&r.snapshot).into(),
            timings: timings(&r.timings),
            total_millis: r.total_millis,
        }
    }
}

/// `snapshot destroy SRC@NAME`.
#[derive(Serialize)]
pub struct SnapshotDestroyed<'a> {
    pub destroyed: &'a str,
    pub branches_destroyed: &'a [String],
}

impl<'a> From<&'a betterpg_core::SnapshotDestroyReport> for SnapshotDestroyed<'a> {
    fn from(r: &'a betterpg_core::SnapshotDestroyReport) -> Self {
        SnapshotDestroyed {
            destroyed: &r.snapshot,
            branches_destroyed: &r.branches_destroyed,
        }
    }
}

/// One snapshot retention looked at.
#[derive(Serialize)]
pub struct PruneItem<'a> {
    pub snapshot: &'a str,
    pub created_at: u64,
    pub reasons: Vec<&'a str>,
}

/// `snapshot --prune`.
#[derive(Serialize)]
pub struct PruneReport<'a> {
    pub dry_run: bool,
    pub pruned: Vec<PruneItem<'a>>,
    pub kept: Vec<PruneItem<'a>>,
}

impl<'a> From<&'a betterpg_core::PruneReport> for PruneReport<'a> {
    fn from(r: &'a betterpg_core::PruneReport) -> Self {
        let items = |v: &'a [betterpg_core::PruneItem]| {
            v.iter()
                .map(|p| PruneItem {
                    snapshot: &p.snapshot,
                    created_at: p.created_at,
                    reasons: p.reasons.iter().map(|r| r.as_str()).collect(),
                })
                .collect()
        };
        PruneReport {
            dry_run: r.dry_run,
            pruned: items(&r.pruned),
            kept: items(&r.kept),
        }
    }
}

/// A source the schedule failed on.
#[derive(Serialize)]
pub struct PolicyFailure<'a> {
    pub source: &'a str,
    pub error: &'a str,
}

/// `snapshot --schedule`.
#[derive(Serialize)]
pub struct PolicyReport<'a> {
    pub dry_run: bool,
    pub due: &'a [String],
    pub taken: Vec<Snapshot<'a>>,
    pub prune: PruneReport<'a>,
    pub failures: Vec<PolicyFailure<'a>>,
}

impl<'a> From<&'a betterpg_core::PolicyReport> for PolicyReport<'a> {
    fn from(r: &'a betterpg_core::PolicyReport) -> Self {
        PolicyReport {
            dry_run: r.dry_run,
            due: &r.due,
            taken: r.taken.iter().map(Snapshot::from).collect(),
            prune: (&r.prune).into(),
            failures: r
                .failures
                .iter()
                .map(|f| PolicyFailure {
                    source: &f.source,
                    error: &f.error,
                })
                .collect(),
        }
    }
}

/// `audit`: the events of the audit log, oldest first.
#[derive(Serialize)]
pub struct Audit<'a> {
    pub events: Vec<AuditEvent<'a>>,
}

/// One event of `audit` (every key always printed, `null` when empty).
#[derive(Serialize)]
pub struct AuditEvent<'a> {
    pub time: &'a str,
    pub unix: u64,
    pub user: &'a str,
    pub uid: u32,
    pub sudo_user: Option<&'a str>,
    pub operation: &'a str,
    pub source: Option<&'a str>,
    pub branch: Option<&'a str>,
    pub mode: Option<&'a str>,
    pub masking: Vec<AuditMaskFile<'a>>,
    pub credentials: Option<&'a str>,
    pub role: Option<&'a str>,
    pub detail: Option<&'a str>,
    pub result: &'a str,
    pub error: Option<AuditError<'a>>,
}

/// A masking file of an audit event.
#[derive(Serialize)]
pub struct AuditMaskFile<'a> {
    pub file: &'a str,
    pub sha256: &'a str,
}

/// The error of an audit event.
#[derive(Serialize)]
pub struct AuditError<'a> {
    pub kind: &'a str,
    pub message: &'a str,
}

impl<'a> From<&'a betterpg_core::AuditEvent> for AuditEvent<'a> {
    fn from(e: &'a betterpg_core::AuditEvent) -> Self {
        AuditEvent {
            time: &e.time,
            unix: e.unix,
            user: &e.user,
            uid: e.uid,
            sudo_user: e.sudo_user.as_deref(),
            operation: &e.operation,
            source: e.source.as_deref(),
            branch: e.branch.as_deref(),
            mode: e.mode.as_deref(),
            masking: e
                .masking
                .iter()
                .map(|m| AuditMaskFile {
                    file: &m.file,
                    sha256: &m.sha256,
                })
                .collect(),
            credentials: e.credentials.as_deref(),
            role: e.role.as_deref(),
            detail: e.detail.as_deref(),
            result: &e.result,
            error: e.error.as_ref().map(|x| AuditError {
                kind: &x.kind,
                message: &x.message,
            }),
        }
    }
}

/// `mask-check`.
#[derive(Serialize)]
pub struct MaskCheck<'a> {
    pub source: &'a str,
    pub databases: &'a [String],
    pub columns_checked: usize,
    pub sample_rows: u32,
    pub rules: Option<&'a Path>,
    pub uncovered: Vec<PersonalColumn<'a>>,
    pub covered: Vec<PersonalColumn<'a>>,
}

/// A personal-looking column of `mask-check`.
#[derive(Serialize)]
pub struct PersonalColumn<'a> {
    pub database: &'a str,
    pub schema: &'a str,
    pub table: &'a str,
    pub column: &'a str,
    pub data_type: &'a str,
    pub kinds: &'a [String],
    pub reasons: &'a [String],
}

impl<'a> From<&'a betterpg_core::PersonalColumn> for PersonalColumn<'a> {
    fn from(c: &'a betterpg_core::PersonalColumn) -> Self {
        PersonalColumn {
            database: &c.database,
            schema: &c.schema,
            table: &c.table,
            column: &c.column,
            data_type: &c.data_type,
            kinds: &c.kinds,
            reasons: &c.reasons,
        }
    }
}

impl<'a> From<&'a betterpg_core::MaskCheckReport> for MaskCheck<'a> {
    fn from(r: &'a betterpg_core::MaskCheckReport) -> Self {
        MaskCheck {
            source: &r.source,
            databases: &r.databases,
            columns_checked: r.columns_checked,
            sample_rows: r.sample_rows,
            rules: r.rules.as_deref(),
            uncovered: r.uncovered.iter().map(PersonalColumn::from).collect(),
            covered: r.covered.iter().map(PersonalColumn::from).collect(),
        }
    }
}

/// One action of a daemon pass: a line of `bpg daemon`'s log, and an
/// element of `actions` of `daemon --once --json`.
#[derive(Serialize)]
pub struct DaemonAction<'a> {
    pub time: &'a str,
    pub action: &'a str,
    pub name: &'a str,
    pub result: &'a str,
    pub reason: Option<&'a str>,
    pub replication: Option<Replication<'a>>,
}

impl<'a> From<&'a betterpg_core::DaemonAction> for DaemonAction<'a> {
    fn from(a: &'a betterpg_core::DaemonAction) -> Self {
        DaemonAction {
            time: &a.time,
            action: a.action,
            name: &a.name,
            result: a.result.as_str(),
            reason: a.reason.as_deref(),
            replication: a.replication.as_ref().map(Replication::from),
        }
    }
}

/// `daemon --once --json`.
#[derive(Serialize)]
pub struct PassReport<'a> {
    pub dry_run: bool,
    pub started_at: u64,
    pub finished_at: u64,
    pub interrupted: bool,
    pub actions: Vec<DaemonAction<'a>>,
}

impl<'a> From<&'a betterpg_core::PassReport> for PassReport<'a> {
    fn from(r: &'a betterpg_core::PassReport) -> Self {
        PassReport {
            dry_run: r.dry_run,
            started_at: r.started_at,
            finished_at: r.finished_at,
            interrupted: r.interrupted,
            actions: r.actions.iter().map(DaemonAction::from).collect(),
        }
    }
}

/// `bpg rewind --json`.
#[derive(Serialize)]
pub struct RewindReport<'a> {
    pub branch: Info<'a>,
    /// The rewind point's ZFS snapshot name (after the `@`).
    pub snapshot: &'a str,
    pub timings: Vec<StepTiming<'a>>,
    pub total_millis: f64,
}

impl<'a> From<&'a betterpg_core::RewindReport> for RewindReport<'a> {
    fn from(r: &'a betterpg_core::RewindReport) -> Self {
        RewindReport {
            branch: (&r.branch).into(),
            snapshot: &r.snapshot,
            timings: timings(&r.timings),
            total_millis: r.total_millis,
        }
    }
}

/// A report's timed steps.
fn timings(t: &[betterpg_core::StepTiming]) -> Vec<StepTiming<'static>> {
    t.iter()
        .map(|t| StepTiming {
            step: t.step,
            millis: t.millis,
        })
        .collect()
}
