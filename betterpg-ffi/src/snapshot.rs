//! Named snapshots from C: take one, list them, destroy one, apply
//! retention, run the schedule's pass. Results come as JSON strings of the
//! same shapes as `bpg --json` (docs/cli-json.md), owned by the caller
//! (`betterpg_string_free`). Branch one with `betterpg_manager_branch`
//! and the source `"SRC@NAME"`; reset to one with
//! `betterpg_manager_reset_to`.

use std::ffi::c_char;

use betterpg_core::SnapshotOptions;

use crate::manager::betterpg_manager;
use crate::options::{betterpg_mode, mode_of};
use crate::result::{arg_str, betterpg_result, guard, to_cstring, write_out, Failure, Opaque};

/// `p` as an optional string argument: NULL is `None`.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string valid for `'a`.
unsafe fn opt_str<'a>(p: *const c_char, arg: &'static str) -> Result<Option<&'a str>, Failure> {
    if p.is_null() {
        Ok(None)
    } else {
        // SAFETY: non-NULL and NUL-terminated per the caller's contract.
        unsafe { arg_str(p, arg) }.map(Some)
    }
}

/// Write `v` as JSON to `out` when it is not NULL.
///
/// # Safety
/// `out` is NULL or valid for writes.
unsafe fn write_json(
    out: *mut *mut c_char,
    v: &(impl serde::Serialize + ?Sized),
) -> Result<(), Failure> {
    if out.is_null() {
        return Ok(());
    }
    let s = serde_json::to_string(v)
        .map_err(|e| Failure::Core(betterpg_core::Error::Internal(e.to_string())))?;
    let c = to_cstring(s)?;
    // SAFETY: non-NULL and valid for writes per the caller's contract.
    unsafe { write_out(out, c.into_raw()) };
    Ok(())
}

/// Take a named snapshot of the database or branch `source` with the
/// branch recipe (`mode`: `BETTERPG_MODE_APPLICATION_CONSISTENT`, the
/// default, or `BETTERPG_MODE_CRASH_CONSISTENT`; a stopped source is
/// snapshotted as it is), keeping what a branch of it needs later.
/// `name` NULL: the UTC time, `YYYYMMDD-HHMMSS` (retention may remove
/// such a snapshot).
///
/// On success, when `out_json` is not NULL, `*out_json` receives the
/// snapshot as JSON (the `snapshot` object of `bpg snapshot --json`),
/// owned by the caller (`betterpg_string_free`). Fails with
/// `BETTERPG_RESULT_INVALID_NAME`, `BETTERPG_RESULT_NOT_FOUND` (no such
/// source) or `BETTERPG_RESULT_ALREADY_EXISTS` (the name is taken),
/// having made nothing.
///
/// # Safety
/// `manager` is NULL or a live `betterpg_manager`; `source` and `name`
/// are NULL or NUL-terminated strings; `out_json` is NULL or valid for
/// writes.
#[no_mangle]
pub unsafe extern "C" fn betterpg_manager_snapshot(
    manager: *const betterpg_manager,
    source: *const c_char,
    name: *const c_char,
    mode: betterpg_mode,
    out_json: *mut *mut c_char,
) -> betterpg_result {
    guard("betterpg_manager_snapshot", || {
        // SAFETY: per the contract above.
        let m = unsafe { betterpg_manager::get(manager, "manager") }?;
        let source = unsafe { arg_str(source, "source") }?;
        let name = unsafe { opt_str(name, "name") }?;
        let mut opts = SnapshotOptions::default().with_mode(mode_of(mode)?);
        opts.name = name.map(str::to_string);
        let r = m.inner.snapshot(source, opts)?;
        // SAFETY: NULL or valid for writes per the contract.
        unsafe { write_json(out_json, &r.snapshot) }
    })
}

/// The named snapshots of `source` (NULL: of every database and branch),
/// by source, oldest first, as a JSON array of snapshot objects (as in
/// `bpg snapshots --json`) in `*out_json`, owned by the caller
/// (`betterpg_string_free`).
///
/// # Safety
/// `manager` is NULL or a live `betterpg_manager`; `source` is NULL or a
/// NUL-terminated string; `out_json` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn betterpg_manager_snapshots(
    manager: *const betterpg_manager,
    source: *const c_char,
    out_json: *mut *mut c_char,
) -> betterpg_result {
    guard("betterpg_manager_snapshots", || {
        // SAFETY: per the contract above.
        let m = unsafe { betterpg_manager::get(manager, "manager") }?;
        let source = unsafe { opt_str(source, "source") }?;
        let list = m.inner.snapshots(source)?;
        // SAFETY: NULL or valid for writes per the contract.
        unsafe { write_json(out_json, &list) }
    })
}

/// Destroy the named snapshot `snapshot` (`"SOURCE@NAME"`). Fails with
/// `BETTERPG_RESULT_HAS_DEPENDENTS` while branches were cloned from it,
/// unless `force`, which destroys those branches (and theirs) first.
///
/// # Safety
/// `manager` is NULL or a live `betterpg_manager`; `snapshot` is NULL or
/// a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn betterpg_manager_destroy_snapshot(
    manager: *const betterpg_manager,
    snapshot: *const c_char,
    force: bool,
) -> betterpg_result {
    guard("betterpg_manager_destroy_snapshot", || {
        // SAFETY: per the contract above.
        let m = unsafe { betterpg_manager::get(manager, "manager") }?;
        let full = unsafe { arg_str(snapshot, "snapshot") }?;
        let (src, name) = full
            .split_once('@')
            .ok_or_else(|| Failure::Arg(format!("snapshot {full:?}: give SOURCE@NAME")))?;
        m.inner.destroy_snapshot(src, name, force)?;
        Ok(())
    })
}

/// Apply the retention settings (`keep_last`, `keep_hourly`,
/// `keep_daily`) of `source` (NULL: every source): remove the automatic
/// snapshots they do not keep, never one a branch was cloned from;
/// `dry_run` changes nothing. `*out_json` (when not NULL) receives the
/// report as in `bpg snapshot --prune --json`, owned by the caller
/// (`betterpg_string_free`).
///
/// # Safety
/// `manager` is NULL or a live `betterpg_manager`; `source` is NULL or a
/// NUL-terminated string; `out_json` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn betterpg_manager_prune_snapshots(
    manager: *const betterpg_manager,
    source: *const c_char,
    dry_run: bool,
    out_json: *mut *mut c_char,
) -> betterpg_result {
    guard("betterpg_manager_prune_snapshots", || {
        // SAFETY: per the contract above.
        let m = unsafe { betterpg_manager::get(manager, "manager") }?;
        let source = unsafe { opt_str(source, "source") }?;
        let r = m.inner.prune_snapshots(source, dry_run)?;
        // SAFETY: NULL or valid for writes per the contract.
        unsafe { write_json(out_json, &r) }
    })
}

/// One pass of the snapshot schedule (what `bpg daemon` runs) over
/// `source` (NULL: every source): take the snapshots the policies say are
/// due, then prune. `*out_json` (when not NULL) receives the report as in
/// `bpg snapshot --schedule --json` (sources that failed are listed under
/// `failures`; the call itself still succeeds), owned by the caller
/// (`betterpg_string_free`).
///
/// # Safety
/// `manager` is NULL or a live `betterpg_manager`; `source` is NULL or a
/// NUL-terminated string; `out_json` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn betterpg_manager_run_snapshot_policy(
    manager: *const betterpg_manager,
    source: *const c_char,
    dry_run: bool,
    out_json: *mut *mut c_char,
) -> betterpg_result {
    guard("betterpg_manager_run_snapshot_policy", || {
        // SAFETY: per the contract above.
        let m = unsafe { betterpg_manager::get(manager, "manager") }?;
        let source = unsafe { opt_str(source, "source") }?;
        let r = m.inner.run_snapshot_policy(source, dry_run)?;
        // SAFETY: NULL or valid for writes per the contract.
        unsafe { write_json(out_json, &r) }
    })
}

/// One pass of the scheduler (what `bpg daemon --once` runs): snapshots by
/// policy and pruning, expiry (children first; a subtree with a protected
/// entry is skipped), idle stop, watching replicas. `*out_json` (when not
/// NULL) receives the pass report as in `bpg daemon --once --json`
/// (actions that failed have `"result": "failed"`; the call itself still
/// succeeds), owned by the caller (`betterpg_string_free`). Fails with
/// `BETTERPG_RESULT_DAEMON_RUNNING` while a `bpg daemon` runs for the home
/// (one daemon per home), having done nothing.
///
/// # Safety
/// `manager` is NULL or a live `betterpg_manager`; `out_json` is NULL or
/// valid for writes.
#[no_mangle]
pub unsafe extern "C" fn betterpg_manager_daemon_once(
    manager: *const betterpg_manager,
    dry_run: bool,
    out_json: *mut *mut c_char,
) -> betterpg_result {
    guard("betterpg_manager_daemon_once", || {
        // SAFETY: per the contract above.
        let m = unsafe { betterpg_manager::get(manager, "manager") }?;
        let r = m.inner.daemon_once(dry_run)?;
        // SAFETY: NULL or valid for writes per the contract.
        unsafe { write_json(out_json, &r) }
    })
}
