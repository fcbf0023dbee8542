//! `betterpg_doctor`: what this machine and a home would use, and what is
//! missing, over `betterpg_core::blocking::BranchManager::doctor`.

use std::ffi::{c_char, CString};

use betterpg_core::blocking::BranchManager;
use betterpg_core::storage::ZfsFlavor;
use betterpg_core::DoctorReport;

use crate::result::{arg_out, arg_str, betterpg_result, guard, guard_value, to_cstring, write_out};
use crate::result::{Failure, Opaque};

/// What `betterpg_doctor` found. Free with `betterpg_doctor_report_free`;
/// the strings its getters return are borrowed from it.
pub struct betterpg_doctor_report {
    _private: [u8; 0],
}

/// The Rust value behind a `betterpg_doctor_report`: the report and its
/// strings as C strings.
#[derive(Debug)]
pub(crate) struct DoctorC {
    ok: bool,
    initialised: bool,
    zpool_list_ok: bool,
    postgres_major: u32,
    storage_backend: Option<CString>,
    storage_reason: Option<CString>,
    postgres_bin: Option<CString>,
    os_user: Option<CString>,
    zfs_flavor: CString,
    problems: Vec<CString>,
    warnings: Vec<CString>,
}

impl Opaque for betterpg_doctor_report {
    type Inner = DoctorC;
}

impl DoctorC {
    fn new(r: &DoctorReport) -> Result<DoctorC, Failure> {
        let opt = |s: Option<&str>| s.map(to_cstring).transpose();
        let list = |v: &[String]| {
            v.iter()
                .map(|s| to_cstring(s.as_str()))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(DoctorC {
            ok: r.ok(),
            initialised: r.initialised,
            zpool_list_ok: r.zpool_list_ok,
            postgres_major: r.postgres.ok().map_or(0, |p| p.major),
            storage_backend: opt(r.storage.ok().map(|s| s.backend.as_str()))?,
            storage_reason: opt(r.storage.ok().map(|s| s.reason.as_str()))?,
            postgres_bin: r
                .postgres
                .ok()
                .map(|p| to_cstring(p.bin.to_string_lossy().as_bytes()))
                .transpose()?,
            os_user: opt(r.os_user.ok().map(|u| u.name.as_str()))?,
            zfs_flavor: to_cstring(match r.zfs_flavor {
                ZfsFlavor::OpenZfs => "openzfs",
                ZfsFlavor::Legacy => "legacy",
            })?,
            problems: list(&r.problems)?,
            warnings: list(&r.warnings)?,
        })
    }
}

/// Check this machine and the betterpg home `home` (initialised or not):
/// storage backend, ZFS, PostgreSQL binaries, the servers' OS user and what
/// it can reach, pool file, dataset properties. What is missing is in the
/// report (`betterpg_doctor_report_ok`), not a failure of the call: it
/// fails only when the home's configuration exists but cannot be read.
///
/// On success `*out_report` receives the report, owned by the caller
/// (`betterpg_doctor_report_free`).
///
/// # Safety
/// `home` is NULL or a NUL-terminated string; `out_report` is NULL or
/// valid for writes.
#[no_mangle]
pub unsafe extern "C" fn betterpg_doctor(
    home: *const c_char,
    out_report: *mut *mut betterpg_doctor_report,
) -> betterpg_result {
    guard("betterpg_doctor", || {
        // SAFETY: per the contract above.
        let home = unsafe { arg_str(home, "home") }?;
        let out = arg_out(out_report, "out_report")?;
        let c = DoctorC::new(&BranchManager::doctor(home)?)?;
        // SAFETY: checked non-NULL, valid for writes per the contract.
        unsafe { write_out(out, betterpg_doctor_report::into_handle(c)) };
        Ok(())
    })
}

/// Borrow the report behind `report`, `None` for NULL.
///
/// # Safety
/// `report` is NULL or a live `betterpg_doctor_report`.
unsafe fn get<'a>(report: *const betterpg_doctor_report) -> Option<&'a DoctorC> {
    // SAFETY: per the caller's contract.
    unsafe { betterpg_doctor_report::get_opt(report) }
}

/// True when nothing is missing or broken (no problems); false if `report`
/// is NULL.
///
/// # Safety
/// `report` is NULL or a live `betterpg_doctor_report`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_doctor_report_ok(report: *const betterpg_doctor_report) -> bool {
    // SAFETY: per the contract above.
    guard_value(false, || unsafe { get(report) }.is_some_and(|r| r.ok))
}

/// True when the home is initialised (else only the machine was checked).
///
/// # Safety
/// `report` is NULL or a live `betterpg_doctor_report`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_doctor_report_initialised(
    report: *const betterpg_doctor_report,
) -> bool {
    // SAFETY: per the contract above.
    guard_value(false, || {
        unsafe { get(report) }.is_some_and(|r| r.initialised)
    })
}

/// True when `zpool list` works (a ZFS daemon or module is there).
///
/// # Safety
/// `report` is NULL or a live `betterpg_doctor_report`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_doctor_report_zpool_list_ok(
    report: *const betterpg_doctor_report,
) -> bool {
    // SAFETY: per the contract above.
    guard_value(false, || {
        unsafe { get(report) }.is_some_and(|r| r.zpool_list_ok)
    })
}

/// The `zfs` userland: "openzfs" or "legacy" (zfs-fuse); NULL if `report`
/// is NULL. Borrowed from the report.
///
/// # Safety
/// `report` is NULL or a live `betterpg_doctor_report`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_doctor_report_zfs_flavor(
    report: *const betterpg_doctor_report,
) -> *const c_char {
    // SAFETY: per the contract above.
    guard_value(std::ptr::null(), || {
        unsafe { get(report) }.map_or(std::ptr::null(), |r| r.zfs_flavor.as_ptr())
    })
}

fn ptr(s: &Option<CString>) -> *const c_char {
    s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr())
}

/// The storage backend the home would use ("libzfs" or "cli"); NULL when
/// none is usable (see the problems). Borrowed from the report.
///
/// # Safety
/// `report` is NULL or a live `betterpg_doctor_report`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_doctor_report_storage_backend(
    report: *const betterpg_doctor_report,
) -> *const c_char {
    // SAFETY: per the contract above.
    guard_value(std::ptr::null(), || {
        unsafe { get(report) }.map_or(std::ptr::null(), |r| ptr(&r.storage_backend))
    })
}

/// Why that storage backend, in one sentence; NULL when none is usable.
/// Borrowed from the report.
///
/// # Safety
/// `report` is NULL or a live `betterpg_doctor_report`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_doctor_report_storage_reason(
    report: *const betterpg_doctor_report,
) -> *const c_char {
    // SAFETY: per the contract above.
    guard_value(std::ptr::null(), || {
        unsafe { get(report) }.map_or(std::ptr::null(), |r| ptr(&r.storage_reason))
    })
}

/// Major version of the PostgreSQL binaries found; 0 when none were.
///
/// # Safety
/// `report` is NULL or a live `betterpg_doctor_report`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_doctor_report_postgres_major(
    report: *const betterpg_doctor_report,
) -> u32 {
    // SAFETY: per the contract above.
    guard_value(0, || unsafe { get(report) }.map_or(0, |r| r.postgres_major))
}

/// Bin directory of the PostgreSQL binaries found; NULL when none were.
/// Borrowed from the report.
///
/// # Safety
/// `report` is NULL or a live `betterpg_doctor_report`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_doctor_report_postgres_bin(
    report: *const betterpg_doctor_report,
) -> *const c_char {
    // SAFETY: per the contract above.
    guard_value(std::ptr::null(), || {
        unsafe { get(report) }.map_or(std::ptr::null(), |r| ptr(&r.postgres_bin))
    })
}

/// The OS user the servers run as; NULL when it cannot be resolved.
/// Borrowed from the report.
///
/// # Safety
/// `report` is NULL or a live `betterpg_doctor_report`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_doctor_report_os_user(
    report: *const betterpg_doctor_report,
) -> *const c_char {
    // SAFETY: per the contract above.
    guard_value(std::ptr::null(), || {
        unsafe { get(report) }.map_or(std::ptr::null(), |r| ptr(&r.os_user))
    })
}

/// Number of problems (what is missing or broken); 0 if `report` is NULL.
///
/// # Safety
/// `report` is NULL or a live `betterpg_doctor_report`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_doctor_report_problem_count(
    report: *const betterpg_doctor_report,
) -> usize {
    // SAFETY: per the contract above.
    guard_value(0, || unsafe { get(report) }.map_or(0, |r| r.problems.len()))
}

/// Problem `index` (0-based), one line; NULL when out of range. Borrowed
/// from the report.
///
/// # Safety
/// `report` is NULL or a live `betterpg_doctor_report`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_doctor_report_problem(
    report: *const betterpg_doctor_report,
    index: usize,
) -> *const c_char {
    // SAFETY: per the contract above.
    guard_value(std::ptr::null(), || {
        unsafe { get(report) }
            .and_then(|r| r.problems.get(index))
            .map_or(std::ptr::null(), |s| s.as_ptr())
    })
}

/// Number of warnings (what works but needs attention); 0 if `report` is
/// NULL.
///
/// # Safety
/// `report` is NULL or a live `betterpg_doctor_report`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_doctor_report_warning_count(
    report: *const betterpg_doctor_report,
) -> usize {
    // SAFETY: per the contract above.
    guard_value(0, || unsafe { get(report) }.map_or(0, |r| r.warnings.len()))
}

/// Warning `index` (0-based), one line; NULL when out of range. Borrowed
/// from the report.
///
/// # Safety
/// `report` is NULL or a live `betterpg_doctor_report`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_doctor_report_warning(
    report: *const betterpg_doctor_report,
    index: usize,
) -> *const c_char {
    // SAFETY: per the contract above.
    guard_value(std::ptr::null(), || {
        unsafe { get(report) }
            .and_then(|r| r.warnings.get(index))
            .map_or(std::ptr::null(), |s| s.as_ptr())
    })
}

/// Free a doctor report. NULL does nothing. Do not call it twice.
///
/// # Safety
/// `report` is NULL or an owned `betterpg_doctor_report`, not used
/// afterwards.
#[no_mangle]
pub unsafe extern "C" fn betterpg_doctor_report_free(report: *mut betterpg_doctor_report) {
    // SAFETY: per the contract above.
    guard_value((), || unsafe { betterpg_doctor_report::free(report) })
}
