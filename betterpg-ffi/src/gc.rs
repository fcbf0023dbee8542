//! `betterpg_gc_report`: what `gc` found and removed, and what it left alone.

use std::ffi::{c_char, CString};

use betterpg_core::{GcItem, GcReport};

use crate::result::{
    arg_out, betterpg_result, guard, guard_value, to_cstring, write_out, Failure, Opaque,
};

/// What `betterpg_manager_gc_report` found: the things removed (or, in a
/// dry run, that would be) and the things of betterpg's it left alone
/// because an operator made something on or from them. Free with
/// `betterpg_gc_report_free`.
pub struct betterpg_gc_report {
    _private: [u8; 0],
}

/// One found thing as C strings: (what, name, reason).
type ItemC = (CString, CString, CString);

/// The Rust value behind a `betterpg_gc_report`.
#[derive(Debug, Clone)]
pub(crate) struct GcReportC {
    dry_run: bool,
    items: Vec<ItemC>,
    kept: Vec<ItemC>,
}

impl Opaque for betterpg_gc_report {
    type Inner = GcReportC;
}

fn item_c(i: &GcItem) -> Result<ItemC, Failure> {
    Ok((
        to_cstring(i.what.as_str())?,
        to_cstring(i.name.as_str())?,
        to_cstring(i.reason.as_str())?,
    ))
}

impl GcReportC {
    pub(crate) fn new(r: &GcReport) -> Result<GcReportC, Failure> {
        Ok(GcReportC {
            dry_run: r.dry_run,
            items: r.items.iter().map(item_c).collect::<Result<_, _>>()?,
            kept: r.kept.iter().map(item_c).collect::<Result<_, _>>()?,
        })
    }
}

/// Write entry `index` of `list` (called `what` in messages) to the out
/// pointers.
///
/// # Safety
/// The out pointers are NULL or valid for writes.
unsafe fn write_item(
    list: &[ItemC],
    what: &str,
    index: usize,
    out_what: *mut *const c_char,
    out_name: *mut *const c_char,
    out_reason: *mut *const c_char,
) -> Result<(), Failure> {
    let out_what = arg_out(out_what, "out_what")?;
    let out_name = arg_out(out_name, "out_name")?;
    let out_reason = arg_out(out_reason, "out_reason")?;
    let (w, n, r) = list.get(index).ok_or_else(|| {
        Failure::Arg(format!(
            "{what} index {index} is out of range (the report has {})",
            list.len()
        ))
    })?;
    // SAFETY: all checked non-NULL; valid for writes per the contract.
    unsafe {
        write_out(out_what, w.as_ptr());
        write_out(out_name, n.as_ptr());
        write_out(out_reason, r.as_ptr());
    }
    Ok(())
}

/// True when the report is of a dry run (nothing was changed); false if
/// `report` is NULL.
///
/// # Safety
/// `report` is NULL or a live `betterpg_gc_report`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_gc_report_dry_run(report: *const betterpg_gc_report) -> bool {
    guard_value(false, || {
        // SAFETY: per the contract above.
        unsafe { betterpg_gc_report::get_opt(report) }.is_some_and(|r| r.dry_run)
    })
}

/// Number of things found (and removed unless a dry run); 0 if `report` is
/// NULL.
///
/// # Safety
/// `report` is NULL or a live `betterpg_gc_report`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_gc_report_item_count(report: *const betterpg_gc_report) -> usize {
    guard_value(0, || {
        // SAFETY: per the contract above.
        unsafe { betterpg_gc_report::get_opt(report) }.map_or(0, |r| r.items.len())
    })
}

/// Found thing `index` (0-based): what it is ("server", "dataset",
/// "snapshot", "catalog-entry", "snapshot-record", "file", "socket-dir",
/// "container"), its name or path and why it is garbage, borrowed from
/// the report. Fails with `BETTERPG_RESULT_INVALID_ARGUMENT` when out of
/// range.
///
/// # Safety
/// `report` is NULL or a live `betterpg_gc_report`; the out pointers are
/// NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn betterpg_gc_report_item(
    report: *const betterpg_gc_report,
    index: usize,
    out_what: *mut *const c_char,
    out_name: *mut *const c_char,
    out_reason: *mut *const c_char,
) -> betterpg_result {
    guard("betterpg_gc_report_item", || {
        // SAFETY: per the contract above.
        let r = unsafe { betterpg_gc_report::get(report, "report") }?;
        // SAFETY: per the contract above.
        unsafe { write_item(&r.items, "item", index, out_what, out_name, out_reason) }
    })
}

/// Number of things of betterpg's that gc left alone (they hold, or are
/// the origin of, something an operator made); 0 if `report` is NULL.
///
/// # Safety
/// `report` is NULL or a live `betterpg_gc_report`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_gc_report_kept_count(report: *const betterpg_gc_report) -> usize {
    guard_value(0, || {
        // SAFETY: per the contract above.
        unsafe { betterpg_gc_report::get_opt(report) }.map_or(0, |r| r.kept.len())
    })
}

/// Left-alone thing `index` (0-based): what it is ("dataset",
/// "snapshot"), its name and why it was kept (naming what to move or
/// destroy), borrowed from the report. Fails with
/// `BETTERPG_RESULT_INVALID_ARGUMENT` when out of range.
///
/// # Safety
/// `report` is NULL or a live `betterpg_gc_report`; the out pointers are
/// NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn betterpg_gc_report_kept(
    report: *const betterpg_gc_report,
    index: usize,
    out_what: *mut *const c_char,
    out_name: *mut *const c_char,
    out_reason: *mut *const c_char,
) -> betterpg_result {
    guard("betterpg_gc_report_kept", || {
        // SAFETY: per the contract above.
        let r = unsafe { betterpg_gc_report::get(report, "report") }?;
        // SAFETY: per the contract above.
        unsafe { write_item(&r.kept, "kept", index, out_what, out_name, out_reason) }
    })
}

/// Free a gc report. NULL does nothing. Do not call it twice.
///
/// # Safety
/// `report` is NULL or an owned `betterpg_gc_report`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn betterpg_gc_report_free(report: *mut betterpg_gc_report) {
    // SAFETY: per the contract above.
    guard_value((), || unsafe { betterpg_gc_report::free(report) })
}
