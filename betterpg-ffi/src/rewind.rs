//! `rewind` on the C ABI: `betterpg_manager_rewind`, which rolls a branch
//! made with `betterpg_branch_options_set_rewindable` back to its rewind
//! point through the blocking facade, and its report,
//! `betterpg_rewind_report`. No logic here: the call is
//! `BranchManager::rewind` as it is.

use std::ffi::{c_char, CString};
use std::ptr;

use betterpg_core::RewindReport;

use crate::info::{betterpg_info, steps_of, write_step, InfoC};
use crate::manager::betterpg_manager;
use crate::result::{
    arg_str, betterpg_result, guard, guard_value, to_cstring, write_out, Failure, Opaque,
};

/// What a rewind did: the branch as it is now (running, same name, port
/// and URL), the rewind point's snapshot and the time each step took.
/// Made by `betterpg_manager_rewind`; free with
/// `betterpg_rewind_report_free`.
pub struct betterpg_rewind_report {
    _private: [u8; 0],
}

/// The Rust value behind a `betterpg_rewind_report`.
#[derive(Debug, Clone)]
pub(crate) struct RewindReportC {
    branch: InfoC,
    snapshot: CString,
    steps: Vec<(CString, f64)>,
    total_millis: f64,
}

impl Opaque for betterpg_rewind_report {
    type Inner = RewindReportC;
}

impl RewindReportC {
    pub(crate) fn new(r: &RewindReport) -> Result<RewindReportC, Failure> {
        Ok(RewindReportC {
            branch: InfoC::new(&r.branch)?,
            snapshot: to_cstring(r.snapshot.as_str())?,
            steps: steps_of(&r.timings)?,
            total_millis: r.total_millis,
        })
    }
}

/// Roll the branch `name` back to its rewind point (how it was when it
/// was made, or last reset: isolated, masked, before its server first
/// listened) and start it again, under the same name, port, URL and
/// password: a stop, a ZFS rollback and a start, much cheaper than
/// `betterpg_manager_reset` (which branches the parent's current state
/// again). Everything written to the branch since is gone.
///
/// On success, when `out_report` is not NULL, `*out_report` receives the
/// report, owned by the caller (`betterpg_rewind_report_free`). Refused,
/// with nothing changed: `BETTERPG_RESULT_NOT_FOUND` for an unknown name,
/// `BETTERPG_RESULT_UNSUPPORTED` for a branch made without a rewind point
/// (`betterpg_info_rewindable` false; `betterpg_manager_reset` with
/// `betterpg_branch_options_set_rewindable` gives it one) and for a
/// database, `BETTERPG_RESULT_PROTECTED` for a protected branch and
/// `BETTERPG_RESULT_HAS_DEPENDENTS` for one with branches or named
/// snapshots of its own (the rollback would destroy them; the message
/// names them). A rewind that fails after the stop leaves the branch
/// stopped; rewinding again finishes it.
///
/// # Safety
/// `manager` is NULL or a live `betterpg_manager`; `name` is NULL or a
/// NUL-terminated string; `out_report` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn betterpg_manager_rewind(
    manager: *const betterpg_manager,
    name: *const c_char,
    out_report: *mut *mut betterpg_rewind_report,
) -> betterpg_result {
    guard("betterpg_manager_rewind", || {
        // SAFETY: per the contract above.
        let m = unsafe { betterpg_manager::get(manager, "manager") }?;
        let name = unsafe { arg_str(name, "name") }?;
        let report = m.inner.rewind(name)?;
        if !out_report.is_null() {
            let c = RewindReportC::new(&report)?;
            // SAFETY: non-NULL and valid for writes per the contract.
            unsafe { write_out(out_report, betterpg_rewind_report::into_handle(c)) };
        }
        Ok(())
    })
}

/// The branch as the rewind left it (running, `betterpg_info_rewindable`
/// true), borrowed from the report (valid until the report is freed; do
/// not free it). NULL if `report` is NULL.
///
/// # Safety
/// `report` is NULL or a live `betterpg_rewind_report`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_rewind_report_branch(
    report: *const betterpg_rewind_report,
) -> *const betterpg_info {
    guard_value(ptr::null(), || {
        // SAFETY: per the contract above.
        unsafe { betterpg_rewind_report::get_opt(report) }
            .map_or(ptr::null(), |r| betterpg_info::borrowed(&r.branch))
    })
}

/// The rewind point's ZFS snapshot name, after the `@` (e.g.
/// "bpgrewind-dev"), borrowed from the report. NULL if `report` is NULL.
///
/// # Safety
/// `report` is NULL or a live `betterpg_rewind_report`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_rewind_report_snapshot(
    report: *const betterpg_rewind_report,
) -> *const c_char {
    guard_value(ptr::null(), || {
        // SAFETY: per the contract above.
        unsafe { betterpg_rewind_report::get_opt(report) }
            .map_or(ptr::null(), |r| r.snapshot.as_ptr())
    })
}

/// Time the whole rewind call took, milliseconds (the steps add up to
/// it); 0 if `report` is NULL.
///
/// # Safety
/// `report` is NULL or a live `betterpg_rewind_report`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_rewind_report_total_millis(
    report: *const betterpg_rewind_report,
) -> f64 {
    guard_value(0.0, || {
        // SAFETY: per the contract above.
        unsafe { betterpg_rewind_report::get_opt(report) }.map_or(0.0, |r| r.total_millis)
    })
}

/// Number of timed steps; 0 if `report` is NULL.
///
/// # Safety
/// `report` is NULL or a live `betterpg_rewind_report`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_rewind_report_step_count(
    report: *const betterpg_rewind_report,
) -> usize {
    guard_value(0, || {
        // SAFETY: per the contract above.
        unsafe { betterpg_rewind_report::get_opt(report) }.map_or(0, |r| r.steps.len())
    })
}

/// Step `index` (0-based, in the order the steps ran: "check", "stop",
/// "rollback", "start"): its name (borrowed from the report) and its
/// duration in milliseconds. Fails with `BETTERPG_RESULT_INVALID_ARGUMENT`
/// when `index` is out of range.
///
/// # Safety
/// `report` is NULL or a live `betterpg_rewind_report`; `out_step` and
/// `out_millis` are NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn betterpg_rewind_report_step(
    report: *const betterpg_rewind_report,
    index: usize,
    out_step: *mut *const c_char,
    out_millis: *mut f64,
) -> betterpg_result {
    guard("betterpg_rewind_report_step", || {
        // SAFETY: per the contract above.
        let r = unsafe { betterpg_rewind_report::get(report, "report") }?;
        write_step(&r.steps, index, out_step, out_millis)
    })
}

/// Free a rewind report and the info borrowed from it. NULL does nothing.
/// Do not call it twice.
///
/// # Safety
/// `report` is NULL or an owned `betterpg_rewind_report`, not used
/// afterwards.
#[no_mangle]
pub unsafe extern "C" fn betterpg_rewind_report_free(report: *mut betterpg_rewind_report) {
    // SAFETY: per the contract above.
    guard_value((), || unsafe { betterpg_rewind_report::free(report) })
}
