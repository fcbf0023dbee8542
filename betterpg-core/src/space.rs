//! Branch space: why a branch that fills the pool cannot stop its source.
//!
//! Databases and branches share one pool. Without a limit, one branch
//! writing without end fills the pool, and the next WAL write of *every*
//! server on it fails: PostgreSQL PANICs on a failed WAL write and stays
//! down until space returns. So betterpg keeps two promises with plain ZFS
//! properties:
//!
//! - every branch lives under one parent dataset, `ROOT/_branches`, whose
//!   `quota` leaves [`Config::branch_headroom_percent`] of the pool to the
//!   databases: branches together can never take that part. The quota is
//!   recomputed before every branch from the pool's current numbers (a
//!   ZFS quota is a fixed number, the pool is not), and rewritten when it
//!   moved by more than [`QUOTA_SLACK_PERCENT`] of the pool (a `zfs set`
//!   waits for a transaction group: ~50-100 ms on zfs-fuse);
//! - every branch gets a `reservation` of [`Config::branch_reserve`] bytes
//!   inside that space: when another branch has filled the rest, it still
//!   has room of its own to keep writing.
//!
//! A branch that runs out gets PostgreSQL's own disk-full error ("Disk quota
//! exceeded"); the source and the other branches go on.
//!
//! (A `reservation` on the databases instead would not do: it is a floor on
//! what they may use, so once they use more than it, branches could again
//! take every free byte.)

use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result, ZfsErrorKind};
use crate::home::{Config, Home};
use crate::storage::{DatasetInfo, SpaceLimit, Storage};
use crate::util::human_bytes;

/// Name of the parent dataset of every branch, under the root dataset.
/// It starts with `_`, which no database or branch name may, so it can never
/// collide with one.
pub const BRANCHES_DATASET: &str = "_branches";

/// How far (percent of the pool) the branch space's quota may lag behind
/// the computed one before it is rewritten.
pub const QUOTA_SLACK_PERCENT: u64 = 1;

/// Whether the quota `current` must be rewritten as `wanted`. Pure logic,
/// unit-tested.
pub fn quota_needs_update(current: Option<u64>, wanted: Option<u64>, pool_total: u64) -> bool {
    let slack = pool_total / 100 * QUOTA_SLACK_PERCENT;
    match (current, wanted) {
        (None, None) => false,
        (Some(c), Some(w)) => c.abs_diff(w) > slack,
        _ => true,
    }
}

/// Whether `prepare` writes the quota `wanted` over `current`: when it moved
/// by more than the slack (as [`quota_needs_update`]), and also when the
/// quota in force, lagging within the slack, leaves the branches (`used`
/// bytes now) less than the `reserve` of a new branch while `wanted` has
/// room for it. ZFS checks a reservation against the quota in force, not
/// the computed one: without this, a branch the check let through failed
/// later at its reservation (after its clone was made) with room to spare.
/// Pure logic, unit-tested.
pub fn quota_must_be_written(
    current: Option<u64>,
    wanted: Option<u64>,
    pool_total: u64,
    used: u64,
    reserve: u64,
) -> bool {
    if quota_needs_update(current, wanted, pool_total) {
        return true;
    }
    match (current, wanted) {
        (Some(c), Some(w)) => c.saturating_sub(used) < reserve && w.saturating_sub(used) >= reserve,
        _ => false,
    }
}

/// Pool use above which `status` warns.
pub const POOL_WARN_FRACTION: f64 = 0.8;

/// Used fraction of the branch space above which `status` warns.
pub const BRANCH_SPACE_WARN_FRACTION: f64 = 0.9;

/// Space of all branches together, as `status` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BranchSpace {
    /// Bytes the branches use, their reservations included.
    pub used: u64,
    /// Most bytes they may use together (`None`: no limit, headroom 0%).
    pub limit: Option<u64>,
    /// `used / limit`, 0..1 (0 without a limit).
    pub fraction_used: f64,
    /// True above [`BRANCH_SPACE_WARN_FRACTION`].
    pub warning: bool,
}

/// The quota of the branch space: what the branches use now plus what the
/// pool has free beyond the databases' headroom (never less than what they
/// use: ZFS refuses a quota below it, and shrinking is not the point).
/// `None` when the headroom is 0 (no limit). Pure logic, unit-tested.
pub fn branch_space_limit(
    pool_used: u64,
    pool_available: u64,
    branches_used: u64,
    headroom_percent: u8,
) -> Option<u64> {
    if headroom_percent == 0 {
        return None;
    }
    let total = pool_used.saturating_add(pool_available) as u128;
    let headroom = (total * headroom_percent as u128 / 100) as u64;
    Some(branches_used.saturating_add(pool_available.saturating_sub(headroom)))
}

/// Create the branch space `dataset` when missing (at `init`, and at the
/// next branch of a home made before it existed); returns it.
pub(crate) async fn ensure_branches_dataset(
    storage: &dyn Storage,
    dataset: &str,
    home: &Path,
) -> Result<DatasetInfo> {
    if let Some(info) = storage.get(dataset).await? {
        return Ok(info);
    }
    let home = home.to_string_lossy();
    storage
        .create(dataset, None, &[("managed", "branches"), ("home", &home)])
        .await?;
    storage
        .get(dataset)
        .await?
        .ok_or_else(|| Error::Internal(format!("{dataset} vanished after its creation")))
}

/// Name of the parent dataset of every branch, under the root dataset
/// `root`.
pub fn branches_dataset(root: &str) -> String {
    format!("{root}/{BRANCHES_DATASET}")
}

/// Dataset of a new branch `name` under the root dataset `root`.
pub fn branch_dataset_for(root: &str, name: &str) -> String {
    format!("{}/{name}", branches_dataset(root))
}

/// Make sure the branch space exists (homes made before it are given one
/// at their next branch) and set its quota from the pool's current numbers;
/// refuse when it has not `reserve` bytes left for one more branch.
/// Changes nothing but the parent's quota.
pub(crate) async fn prepare(
    storage: &dyn Storage,
    cfg: &Config,
    home: &Home,
    reserve: u64,
) -> Result<()> {
    let ds = branches_dataset(&cfg.dataset);
    let (info, pool) = tokio::join!(storage.get(&ds), storage.pool_space(&cfg.dataset));
    let (info, pool) = (info?, pool?);
    let info = match info {
        Some(i) => i,
        None => ensure_branches_dataset(storage, &ds, home.root()).await?,
    };
    let limit = branch_space_limit(
        pool.used,
        pool.available,
        info.used,
        cfg.branch_headroom_percent,
    );
    if let Some(limit) = limit {
        if limit.saturating_sub(info.used) < reserve {
            return Err(no_space(cfg, home, &info, limit, reserve));
        }
    }
    if quota_must_be_written(
        info.quota,
        limit,
        pool.used + pool.available,
        info.used,
        reserve,
    ) {
        storage
            .set_space_limit(&ds, SpaceLimit::Quota, limit)
            .await?;
    }
    Ok(())
}

/// The reservation of a branch with this quota: the configured one, at
/// most the quota (ZFS refuses a reservation above the quota).
pub fn reserve_for(cfg: &Config, quota: Option<u64>) -> u64 {
    quota.map_or(cfg.branch_reserve, |q| q.min(cfg.branch_reserve))
}

/// Give a new branch its reservation.
pub(crate) async fn reserve(
    storage: &dyn Storage,
    cfg: &Config,
    dataset: &str,
    quota: Option<u64>,
) -> Result<()> {
    let bytes = reserve_for(cfg, quota);
    if bytes == 0 {
        return Ok(());
    }
    storage
        .set_space_limit(dataset, SpaceLimit::Reservation, Some(bytes))
        .await
        .map_err(|e| match e {
            // Another branch took the space since prepare.
            Error::Zfs {
                kind: ZfsErrorKind::NoSpace,
                message: m,
                ..
            } => Error::NoSpace(format!(
                "no room left for the {} reservation of a new branch ({m}): destroy unused branches or grow the pool",
                human_bytes(bytes)
            )),
            e => e,
        })
}

fn no_space(cfg: &Config, home: &Home, info: &DatasetInfo, limit: u64, reserve: u64) -> Error {
    Error::NoSpace(format!(
        "the branches use {} of the {} they may use together ({}% of the pool is kept for the databases), less than the {} a new branch reserves: destroy unused branches, grow the pool, or lower branch_headroom_percent / branch_reserve in {}",
        human_bytes(info.used),
        human_bytes(limit),
        cfg.branch_headroom_percent,
        human_bytes(reserve),
        home.config_path().display()
    ))
}

/// Space of all branches together, without changing anything (the limit is
/// the one the next branch will set).
pub(crate) async fn usage(storage: &dyn Storage, cfg: &Config) -> Result<BranchSpace> {
    let pool = storage.pool_space(&cfg.dataset).await?;
    let used = storage
        .get(&branches_dataset(&cfg.dataset))
        .await?
        .map_or(0, |i| i.used);
    let limit = branch_space_limit(pool.used, pool.available, used, cfg.branch_headroom_percent);
    let fraction_used = match limit {
        Some(l) if l > 0 => used as f64 / l as f64,
        Some(_) => 1.0,
        None => 0.0,
    };
    Ok(BranchSpace {
        used,
        limit,
        fraction_used,
        warning: fraction_used > BRANCH_SPACE_WARN_FRACTION,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: u64 = 1 << 20;

    #[test]
    fn the_limit_leaves_the_headroom_to_the_databases() {
        // 1000 MiB pool, 200 used (100 of them by branches), 20% headroom:
        // branches may grow by 800 - 200 = 600 MiB, to 700 MiB.
        assert_eq!(
            branch_space_limit(200 * M, 800 * M, 100 * M, 20),
            Some(700 * M)
        );
    }

    #[test]
    fn a_pool_inside_the_headroom_lets_branches_grow_no_more() {
        assert_eq!(
            branch_space_limit(900 * M, 100 * M, 300 * M, 20),
            Some(300 * M)
        );
    }

    #[test]
    fn the_quota_is_rewritten_only_when_it_moved_more_than_the_slack() {
        let pool = 1000 * M; // slack: 10 MiB
        assert!(!quota_needs_update(Some(500 * M), Some(505 * M), pool));
        assert!(!quota_needs_update(Some(500 * M), Some(495 * M), pool));
        assert!(quota_needs_update(Some(500 * M), Some(480 * M), pool));
        assert!(quota_needs_update(Some(500 * M), Some(520 * M), pool));
        assert!(quota_needs_update(None, Some(500 * M), pool));
        assert!(quota_needs_update(Some(500 * M), None, pool));
        assert!(!quota_needs_update(None, None, pool));
    }

    #[test]
    fn a_quota_lagging_within_the_slack_is_written_when_it_would_refuse_the_reserve() {
        // Slack: 10 MiB. Computed limit 700 MiB, 600 used: room for a 64
        // MiB reserve. The quota in force (695 MiB, within the slack)
        // leaves 95 MiB: kept.
        let pool = 1000 * M;
        assert!(!quota_must_be_written(
            Some(695 * M),
            Some(700 * M),
            pool,
            600 * M,
            64 * M
        ));
        // Now 630 used: the computed limit leaves 70 MiB, the quota in
        // force 65: both fit 64, kept; a 68 MiB reserve fits only the
        // computed limit: written.
        assert!(!quota_must_be_written(
            Some(695 * M),
            Some(700 * M),
            pool,
            630 * M,
            64 * M
        ));
        assert!(quota_must_be_written(
            Some(695 * M),
            Some(700 * M),
            pool,
            630 * M,
            68 * M
        ));
        // Neither has room: nothing to gain (the check refuses the branch).
        assert!(!quota_must_be_written(
            Some(695 * M),
            Some(700 * M),
            pool,
            650 * M,
            64 * M
        ));
        // Beyond the slack it is written whatever the room.
        assert!(quota_must_be_written(
            Some(680 * M),
            Some(700 * M),
            pool,
            0,
            64 * M
        ));
        assert!(!quota_must_be_written(None, None, pool, 600 * M, 64 * M));
    }

    #[test]
    fn no_headroom_means_no_limit() {
        assert_eq!(branch_space_limit(1, 2, 3, 0), None);
    }
}
