//! `betterpg_manager`: the verbs, over `betterpg_core::blocking::BranchManager`.

use std::ffi::{c_char, CString};
use std::sync::Mutex;

use betterpg_core::blocking::BranchManager;
use betterpg_core::{BranchReport, Info};

use crate::gc::{betterpg_gc_report, GcReportC};
use crate::info::{betterpg_branch_report, betterpg_info, betterpg_info_list, InfoC, ReportC};
use crate::options::{
    betterpg_branch_options, betterpg_create_options, betterpg_init_options, branch_options,
    create_options,
};
use crate::result::{
    arg_out, arg_str, betterpg_result, guard, guard_value, to_cstring, write_out, Failure, Opaque,
};

/// A betterpg home opened or initialised: makes, lists, starts, stops and
/// destroys databases and branches. Made by `betterpg_manager_open` or
/// `betterpg_manager_init`; free with `betterpg_manager_free`.
///
/// A manager may be used from several threads at once. Its calls block
/// the calling thread (it runs its own internal runtime); do not call it
/// from a thread of another Rust async runtime.
pub struct betterpg_manager {
    _private: [u8; 0],
}

/// The Rust value behind a `betterpg_manager`.
#[derive(Debug)]
pub(crate) struct Manager {
    pub(crate) inner: BranchManager,
    last_report: Mutex<Option<BranchReport>>,
}

impl Opaque for betterpg_manager {
    type Inner = Manager;
}

impl Manager {
    fn new(inner: BranchManager) -> Manager {
        Manager {
            inner,
            last_report: Mutex::new(None),
        }
    }
}

// A manager handle may be shared between threads (documented above).
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Manager>();
};

/// Write an info to an optional out-parameter (NULL: discard it).
///
/// # Safety
/// `out` is NULL or valid for writes.
pub(crate) unsafe fn write_info_opt(
    out: *mut *mut betterpg_info,
    info: &Info,
) -> Result<(), Failure> {
    if !out.is_null() {
        let c = InfoC::new(info)?;
        // SAFETY: non-NULL and valid for writes per the contract.
        unsafe { write_out(out, betterpg_info::into_handle(c)) };
    }
    Ok(())
}

/// Open the initialised betterpg home directory `home`.
///
/// On success `*out_manager` receives a new manager, owned by the caller.
/// Fails with `BETTERPG_RESULT_NOT_INITIALIZED` when `home` holds no
/// betterpg configuration.
///
/// # Safety
/// `home` is NULL or a NUL-terminated string; `out_manager` is NULL or
/// valid for writes.
#[no_mangle]
pub unsafe extern "C" fn betterpg_manager_open(
    home: *const c_char,
    out_manager: *mut *mut betterpg_manager,
) -> betterpg_result {
    guard("betterpg_manager_open", || {
        // SAFETY: per the contract above.
        let home = unsafe { arg_str(home, "home") }?;
        let out = arg_out(out_manager, "out_manager")?;
        let m = BranchManager::open(home)?;
        // SAFETY: checked non-NULL, valid for writes per the contract.
        unsafe { write_out(out, betterpg_manager::into_handle(Manager::new(m))) };
        Ok(())
    })
}

/// Initialise a new betterpg home directory `home` (created when missing)
/// with `opts`, and open it. With a pool file, the pool is created too.
///
/// On success `*out_manager` receives a new manager, owned by the caller.
/// Fails with `BETTERPG_RESULT_ALREADY_EXISTS` when `home` is already
/// initialised, and with `BETTERPG_RESULT_INVALID_ARGUMENT` when `opts`
/// names no storage. `opts` is not consumed: free it yourself.
///
/// # Safety
/// `home` is NULL or a NUL-terminated string; `opts` is NULL or a live
/// `betterpg_init_options`; `out_manager` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn betterpg_manager_init(
    home: *const c_char,
    opts: *const betterpg_init_options,
    out_manager: *mut *mut betterpg_manager,
) -> betterpg_result {
    guard("betterpg_manager_init", || {
        // SAFETY: per the contract above.
        let home = unsafe { arg_str(home, "home") }?;
        let opts = unsafe { betterpg_init_options::get(opts, "opts") }?.to_core()?;
        let out = arg_out(out_manager, "out_manager")?;
        let m = BranchManager::init(home, opts)?;
        // SAFETY: checked non-NULL, valid for writes per the contract.
        unsafe { write_out(out, betterpg_manager::into_handle(Manager::new(m))) };
        Ok(())
    })
}

/// Free a manager. Servers keep running. NULL does nothing. Do not call it
/// twice, nor while another thread uses the manager.
///
/// # Safety
/// `manager` is NULL or an owned `betterpg_manager`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn betterpg_manager_free(manager: *mut betterpg_manager) {
    // SAFETY: per the contract above.
    guard_value((), || unsafe { betterpg_manager::free(manager) })
}

/// Create a new, empty, started database `name`, as `opts` says (NULL:
/// the defaults, PostgreSQL of the configured version, native runtime; see
/// `betterpg_create_options_new`).
///
/// On success, when `out_info` is not NULL, `*out_info` receives its info,
/// owned by the caller (`betterpg_info_free`). Fails with
/// `BETTERPG_RESULT_INVALID_NAME` for a bad name and
/// `BETTERPG_RESULT_ALREADY_EXISTS` when the name is taken. `opts` is
/// only read: free it yourself (it may serve other calls).
///
/// # Safety
/// `manager` is NULL or a live `betterpg_manager`; `name` is NULL or a
/// NUL-terminated string; `opts` is NULL or a live
/// `betterpg_create_options`; `out_info` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn betterpg_manager_create(
    manager: *const betterpg_manager,
    name: *const c_char,
    opts: *const betterpg_create_options,
    out_info: *mut *mut betterpg_info,
) -> betterpg_result {
    guard("betterpg_manager_create", || {
        // SAFETY: per the contract above.
        let m = unsafe { betterpg_manager::get(manager, "manager") }?;
        let name = unsafe { arg_str(name, "name") }?;
        let opts = unsafe { create_options(opts) };
        let info = m.inner.create(name, opts)?;
        // SAFETY: NULL or valid for writes per the contract.
        unsafe { write_info_opt(out_info, &info) }
    })
}

/// Make branch `name` of the database or branch `source` and start it, as
/// `opts` says (NULL: the defaults, an application-consistent snapshot, no
/// quota, the source's runtime; see `betterpg_branch_options_new`).
///
/// On success, when `out_report` is not NULL, `*out_report` receives the
/// report (the new branch and the time of each step), owned by the caller
/// (`betterpg_branch_report_free`); the manager also keeps a copy for
/// `betterpg_manager_last_branch_report`. Fails with
/// `BETTERPG_RESULT_NOT_FOUND` for an unknown source,
/// `BETTERPG_RESULT_ALREADY_EXISTS` when `name` is taken and
/// `BETTERPG_RESULT_CONFIG` for a quota under 64 MiB. `opts` is only
/// read: free it yourself (it may serve other calls).
///
/// # Safety
/// `manager` is NULL or a live `betterpg_manager`; `source` and `name` are
/// NULL or NUL-terminated strings; `opts` is NULL or a live
/// `betterpg_branch_options`; `out_report` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn betterpg_manager_branch(
    manager: *const betterpg_manager,
    source: *const c_char,
    name: *const c_char,
    opts: *const betterpg_branch_options,
    out_report: *mut *mut betterpg_branch_report,
) -> betterpg_result {
    guard("betterpg_manager_branch", || {
        // SAFETY: per the contract above.
        let m = unsafe { betterpg_manager::get(manager, "manager") }?;
        let source = unsafe { arg_str(source, "source") }?;
        let name = unsafe { arg_str(name, "name") }?;
        let opts = unsafe { branch_options(opts) };
        let report = m.inner.branch(source, name, opts)?;
        // SAFETY: NULL or valid for writes per the contract.
        unsafe { m.keep_report(report, out_report) }
    })
}

impl Manager {
    /// Keep `report` as the last one and hand a copy to an optional
    /// out-parameter (NULL: none).
    ///
    /// # Safety
    /// `out` is NULL or valid for writes.
    unsafe fn keep_report(
        &self,
        report: BranchReport,
        out: *mut *mut betterpg_branch_report,
    ) -> Result<(), Failure> {
        let c = if out.is_null() {
            None
        } else {
            Some(ReportC::new(&report)?)
        };
        *self.last_report.lock().unwrap_or_else(|p| p.into_inner()) = Some(report);
        if let Some(c) = c {
            // SAFETY: non-NULL and valid for writes per the contract.
            unsafe { write_out(out, betterpg_branch_report::into_handle(c)) };
        }
        Ok(())
    }
}

/// Reset the branch `name` to its parent's current state: its data is
/// thrown away and it is branched again (with the mode and quota of
/// `opts`; NULL: the defaults) under the same name and port, so its URL
/// stays valid.
///
/// On success, when `out_report` is not NULL, `*out_report` receives the
/// report, owned by the caller (`betterpg_branch_report_free`); the manager
/// also keeps a copy for `betterpg_manager_last_branch_report`. Fails with
/// `BETTERPG_RESULT_NOT_FOUND` for an unknown name,
/// `BETTERPG_RESULT_UNSUPPORTED` for a database (not a branch) and for
/// options naming a runtime or an image (a reset keeps the branch's), and
/// `BETTERPG_RESULT_HAS_DEPENDENTS` for a branch with branches of its own.
/// If the new branch cannot be made, the old one is already gone and the
/// message says so. `opts` is only read: free it yourself.
///
/// # Safety
/// `manager` is NULL or a live `betterpg_manager`; `name` is NULL or a
/// NUL-terminated string; `opts` is NULL or a live
/// `betterpg_branch_options`; `out_report` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn betterpg_manager_reset(
    manager: *const betterpg_manager,
    name: *const c_char,
    opts: *const betterpg_branch_options,
    out_report: *mut *mut betterpg_branch_report,
) -> betterpg_result {
    guard("betterpg_manager_reset", || {
        // SAFETY: per the contract above.
        let m = unsafe { betterpg_manager::get(manager, "manager") }?;
        let name = unsafe { arg_str(name, "name") }?;
        let opts = unsafe { branch_options(opts) };
        let report = m.inner.reset(name, opts)?;
        // SAFETY: NULL or valid for writes per the contract.
        unsafe { m.keep_report(report, out_report) }
    })
}

/// Reset the branch `name` to the named snapshot `to` (`"SOURCE@NAME"`)
/// instead of its parent's current state; SOURCE becomes its parent. As
/// `betterpg_manager_reset` otherwise (same name, port and password;
/// `opts` NULL: the defaults; `*out_report` when not NULL, owned by the
/// caller). Fails with `BETTERPG_RESULT_NOT_FOUND` for an unknown
/// snapshot and `BETTERPG_RESULT_CONFIG` when `to` names no snapshot.
///
/// # Safety
/// `manager` is NULL or a live `betterpg_manager`; `name` and `to` are
/// NULL or NUL-terminated strings; `opts` is NULL or a live
/// `betterpg_branch_options`; `out_report` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn betterpg_manager_reset_to(
    manager: *const betterpg_manager,
    name: *const c_char,
    to: *const c_char,
    opts: *const betterpg_branch_options,
    out_report: *mut *mut betterpg_branch_report,
) -> betterpg_result {
    guard("betterpg_manager_reset_to", || {
        // SAFETY: per the contract above.
        let m = unsafe { betterpg_manager::get(manager, "manager") }?;
        let name = unsafe { arg_str(name, "name") }?;
        let to = unsafe { arg_str(to, "to") }?;
        let opts = unsafe { branch_options(opts) };
        let report = m.inner.reset_to(name, to, opts)?;
        // SAFETY: NULL or valid for writes per the contract.
        unsafe { m.keep_report(report, out_report) }
    })
}

/// The report of the last branch made with this manager handle.
///
/// On success `*out_report` receives a new copy, owned by the caller
/// (`betterpg_branch_report_free`). Fails with
/// `BETTERPG_RESULT_NOT_FOUND` when no branch was made with this handle yet.
///
/// # Safety
/// `manager` is NULL or a live `betterpg_manager`; `out_report` is NULL or
/// valid for writes.
#[no_mangle]
pub unsafe extern "C" fn betterpg_manager_last_branch_report(
    manager: *const betterpg_manager,
    out_report: *mut *mut betterpg_branch_report,
) -> betterpg_result {
    guard("betterpg_manager_last_branch_report", || {
        // SAFETY: per the contract above.
        let m = unsafe { betterpg_manager::get(manager, "manager") }?;
        let out = arg_out(out_report, "out_report")?;
        let c = match &*m.last_report.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(r) => ReportC::new(r)?,
            None => {
                return Err(Failure::Core(betterpg_core::Error::NotFound {
                    what: "branch report",
                    name: "last".into(),
                    hint: ": no branch was made with this manager handle yet".into(),
                }))
            }
        };
        // SAFETY: checked non-NULL, valid for writes per the contract.
        unsafe { write_out(out, betterpg_branch_report::into_handle(c)) };
        Ok(())
    })
}

/// Start the database or branch `name` (starting a running one is fine).
///
/// On success, when `out_info` is not NULL, `*out_info` receives its info,
/// owned by the caller (`betterpg_info_free`).
///
/// # Safety
/// `manager` is NULL or a live `betterpg_manager`; `name` is NULL or a
/// NUL-terminated string; `out_info` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn betterpg_manager_start(
    manager: *const betterpg_manager,
    name: *const c_char,
    out_info: *mut *mut betterpg_info,
) -> betterpg_result {
    guard("betterpg_manager_start", || {
        // SAFETY: per the contract above.
        let m = unsafe { betterpg_manager::get(manager, "manager") }?;
        let name = unsafe { arg_str(name, "name") }?;
        let info = m.inner.start(name)?;
        // SAFETY: NULL or valid for writes per the contract.
        unsafe { write_info_opt(out_info, &info) }
    })
}

/// Stop the database or branch `name` (fast shutdown; stopping a stopped
/// one is fine).
///
/// On success, when `out_info` is not NULL, `*out_info` receives its info,
/// owned by the caller (`betterpg_info_free`).
///
/// # Safety
/// `manager` is NULL or a live `betterpg_manager`; `name` is NULL or a
/// NUL-terminated string; `out_info` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn betterpg_manager_stop(
    manager: *const betterpg_manager,
    name: *const c_char,
    out_info: *mut *mut betterpg_info,
) -> betterpg_result {
    guard("betterpg_manager_stop", || {
        // SAFETY: per the contract above.
        let m = unsafe { betterpg_manager::get(manager, "manager") }?;
        let name = unsafe { arg_str(name, "name") }?;
        let info = m.inner.stop(name)?;
        // SAFETY: NULL or valid for writes per the contract.
        unsafe { write_info_opt(out_info, &info) }
    })
}

/// Protect the database or branch `name`: destroy (even forced), reset
/// and expiry then fail with `BETTERPG_RESULT_PROTECTED`, and gc never
/// removes what it owns. Protecting a protected one is fine.
///
/// On success, when `out_info` is not NULL, `*out_info` receives its info,
/// owned by the caller (`betterpg_info_free`).
///
/// # Safety
/// `manager` is NULL or a live `betterpg_manager`; `name` is NULL or a
/// NUL-terminated string; `out_info` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn betterpg_manager_protect(
    manager: *const betterpg_manager,
    name: *const c_char,
    out_info: *mut *mut betterpg_info,
) -> betterpg_result {
    guard("betterpg_manager_protect", || {
        // SAFETY: per the contract above.
        let m = unsafe { betterpg_manager::get(manager, "manager") }?;
        let name = unsafe { arg_str(name, "name") }?;
        let info = m.inner.protect(name)?;
        // SAFETY: NULL or valid for writes per the contract.
        unsafe { write_info_opt(out_info, &info) }
    })
}

/// Lift the protection of the database or branch `name` (unprotecting
/// an unprotected one is fine).
///
/// On success, when `out_info` is not NULL, `*out_info` receives its info,
/// owned by the caller (`betterpg_info_free`).
///
/// # Safety
/// `manager` is NULL or a live `betterpg_manager`; `name` is NULL or a
/// NUL-terminated string; `out_info` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn betterpg_manager_unprotect(
    manager: *const betterpg_manager,
    name: *const c_char,
    out_info: *mut *mut betterpg_info,
) -> betterpg_result {
    guard("betterpg_manager_unprotect", || {
        // SAFETY: per the contract above.
        let m = unsafe { betterpg_manager::get(manager, "manager") }?;
        let name = unsafe { arg_str(name, "name") }?;
        let info = m.inner.unprotect(name)?;
        // SAFETY: NULL or valid for writes per the contract.
        unsafe { write_info_opt(out_info, &info) }
    })
}

/// Destroy the database or branch `name`: stop it, destroy its dataset and
/// the snapshot it came from. One with branches fails with
/// `BETTERPG_RESULT_HAS_DEPENDENTS` unless `force`, which destroys its
/// branches first.
///
/// # Safety
/// `manager` is NULL or a live `betterpg_manager`; `name` is NULL or a
/// NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn betterpg_manager_destroy(
    manager: *const betterpg_manager,
    name: *const c_char,
    force: bool,
) -> betterpg_result {
    guard("betterpg_manager_destroy", || {
        // SAFETY: per the contract above.
        let m = unsafe { betterpg_manager::get(manager, "manager") }?;
        let name = unsafe { arg_str(name, "name") }?;
        m.inner.destroy(name, force)?;
        Ok(())
    })
}

/// Register the running PostgreSQL at `url` (a libpq URL or key=value
/// string, for a role with what branching needs: a superuser, or the
/// grants the error message lists), whose data directory `pgdata` (and
/// `pg_wal`, tablespaces) are on ZFS datasets of the home's pool, as
/// `name` of kind "attached", so that it can be branched. betterpg never
/// starts, stops or changes it; its password is stored 0600 and never
/// printed (the info's URL has none).
///
/// On success, when `out_info` is not NULL, `*out_info` receives its info,
/// owned by the caller (`betterpg_info_free`). Everything is checked
/// first and nothing is recorded on a failure: `BETTERPG_RESULT_CONFIG`
/// for a URL that does not parse or names another cluster,
/// `BETTERPG_RESULT_POSTGRES` for a server that refuses (SQLSTATE 42501:
/// missing rights, the message says what to grant),
/// `BETTERPG_RESULT_UNSUPPORTED` for a data directory not on a dataset of
/// the pool, `BETTERPG_RESULT_ALREADY_EXISTS` when the name is taken.
///
/// # Safety
/// `manager` is NULL or a live `betterpg_manager`; `name`, `pgdata` and
/// `url` are NULL or NUL-terminated strings; `out_info` is NULL or valid
/// for writes.
#[no_mangle]
pub unsafe extern "C" fn betterpg_manager_attach(
    manager: *const betterpg_manager,
    name: *const c_char,
    pgdata: *const c_char,
    url: *const c_char,
    out_info: *mut *mut betterpg_info,
) -> betterpg_result {
    // SAFETY: the same contract, with no settings.
    unsafe {
        betterpg_manager_attach_with_settings(
            manager,
            name,
            pgdata,
            url,
            std::ptr::null(),
            std::ptr::null(),
            0,
            out_info,
        )
    }
}

/// [`betterpg_manager_attach`] with policies for the cluster's branches
/// recorded at once (as [`betterpg_manager_configure`] sets them: `count`
/// pairs `keys[i]` = `values[i]`, e.g. `mask`, `mask_rules`,
/// `forbid_unmasked`, `credentials`). A bad key or value, or a masking file
/// that is not there, fails with `BETTERPG_RESULT_CONFIG` before anything
/// is recorded.
///
/// # Safety
/// As [`betterpg_manager_attach`]; `keys` and `values` are NULL (only with
/// `count` 0) or arrays of `count` NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn betterpg_manager_attach_with_settings(
    manager: *const betterpg_manager,
    name: *const c_char,
    pgdata: *const c_char,
    url: *const c_char,
    keys: *const *const c_char,
    values: *const *const c_char,
    count: usize,
    out_info: *mut *mut betterpg_info,
) -> betterpg_result {
    guard("betterpg_manager_attach_with_settings", || {
        // SAFETY: per the contract above.
        let m = unsafe { betterpg_manager::get(manager, "manager") }?;
        let name = unsafe { arg_str(name, "name") }?;
        let pgdata = unsafe { arg_str(pgdata, "pgdata") }?;
        let url = unsafe { arg_str(url, "url") }?;
        let pairs = unsafe { arg_pairs(keys, values, count) }?;
        let opts = betterpg_core::AttachOptions {
            pgdata: pgdata.into(),
            url: url.to_string(),
            password: None,
            pg_bin: None,
            settings: pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let info = m.inner.attach(name, opts)?;
        // SAFETY: NULL or valid for writes per the contract.
        unsafe { write_info_opt(out_info, &info) }
    })
}

/// Forget the attached cluster `name` (the cluster itself is not
/// touched). One with branches fails with `BETTERPG_RESULT_HAS_DEPENDENTS`
/// unless `force`, which destroys them; a database or branch fails with
/// `BETTERPG_RESULT_UNSUPPORTED`. On success, when `out_destroyed` is not
/// NULL, `*out_destroyed` receives how many branches were destroyed.
///
/// # Safety
/// `manager` is NULL or a live `betterpg_manager`; `name` is NULL or a
/// NUL-terminated string; `out_destroyed` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn betterpg_manager_detach(
    manager: *const betterpg_manager,
    name: *const c_char,
    force: bool,
    out_destroyed: *mut usize,
) -> betterpg_result {
    guard("betterpg_manager_detach", || {
        // SAFETY: per the contract above.
        let m = unsafe { betterpg_manager::get(manager, "manager") }?;
        let name = unsafe { arg_str(name, "name") }?;
        let destroyed = m.inner.detach(name, force)?;
        if !out_destroyed.is_null() {
            // SAFETY: non-NULL and valid for writes per the contract.
            unsafe { *out_destroyed = destroyed.len() };
        }
        Ok(())
    })
}

/// Find, and unless `dry_run` remove, everything of this home that no
/// complete database or branch owns: datasets, snapshots, servers,
/// containers, catalog entries and files left by a process that died in
/// the middle of a `create` or `branch` (the same sweep as `bpg gc`).
/// Work of operations still running is kept.
///
/// On success, when `out_count` is not NULL, `*out_count` receives how many
/// things were found (and removed unless `dry_run`); the detail of each is
/// in `betterpg_manager_gc_report` (and `bpg gc --dry-run`), which also
/// lists what gc left alone.
///
/// # Safety
/// `manager` is NULL or a live `betterpg_manager`; `out_count` is NULL or
/// valid for writes.
#[no_mangle]
pub unsafe extern "C" fn betterpg_manager_gc(
    manager: *const betterpg_manager,
    dry_run: bool,
    out_count: *mut usize,
) -> betterpg_result {
    guard("betterpg_manager_gc", || {
        // SAFETY: per the contract above.
        let m = unsafe { betterpg_manager::get(manager, "manager") }?;
        let report = m.inner.gc(dry_run)?;
        if !out_count.is_null() {
            // SAFETY: non-NULL and valid for writes per the contract.
            unsafe { write_out(out_count, report.items.len()) };
        }
        Ok(())
    })
}

/// `betterpg_manager_gc` with its whole report: each thing found (and
/// removed unless `dry_run`) with what it is, its name and why, and each
/// thing of betterpg's that gc left alone because it holds, or is the
/// origin of, something an operator made (`bpg gc` lists these as kept).
///
/// On success `*out_report` receives the report, owned by the caller
/// (`betterpg_gc_report_free`).
///
/// # Safety
/// `manager` is NULL or a live `betterpg_manager`; `out_report` is NULL or
/// valid for writes.
#[no_mangle]
pub unsafe extern "C" fn betterpg_manager_gc_report(
    manager: *const betterpg_manager,
    dry_run: bool,
    out_report: *mut *mut betterpg_gc_report,
) -> betterpg_result {
    guard("betterpg_manager_gc_report", || {
        // SAFETY: per the contract above.
        let m = unsafe { betterpg_manager::get(manager, "manager") }?;
        let out = arg_out(out_report, "out_report")?;
        let c = GcReportC::new(&m.inner.gc(dry_run)?)?;
        // SAFETY: checked non-NULL, valid for writes per the contract.
        unsafe { write_out(out, betterpg_gc_report::into_handle(c)) };
        Ok(())
    })
}

/// Space of the pool of a home, and of its branches together (all in
/// bytes). Filled by `betterpg_manager_pool_usage`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct betterpg_pool_usage {
    /// Bytes of the pool in use.
    pub used: u64,
    /// Bytes of the pool still available.
    pub available: u64,
    /// True when the pool is more than 90% full.
    pub warning: bool,
    /// Bytes all branches use together, their reservations included.
    pub branches_used: u64,
    /// Most bytes the branches may use together, keeping the configured
    /// headroom of the pool for databases; 0 when there is no limit.
    pub branches_limit: u64,
    /// True when the branches use more than 90% of their limit.
    pub branches_warning: bool,
}

/// The space of the pool this home lives on, and what its branches use.
///
/// On success `*out_usage` is filled.
///
/// # Safety
/// `manager` is NULL or a live `betterpg_manager`; `out_usage` is NULL or
/// valid for writes.
#[no_mangle]
pub unsafe extern "C" fn betterpg_manager_pool_usage(
    manager: *const betterpg_manager,
    out_usage: *mut betterpg_pool_usage,
) -> betterpg_result {
    guard("betterpg_manager_pool_usage", || {
        // SAFETY: per the contract above.
        let m = unsafe { betterpg_manager::get(manager, "manager") }?;
        let out = arg_out(out_usage, "out_usage")?;
        let u = m.inner.pool_usage()?;
        let c = betterpg_pool_usage {
            used: u.space.used,
            available: u.space.available,
            warning: u.warning,
            branches_used: u.branches.used,
            branches_limit: u.branches.limit.unwrap_or(0),
            branches_warning: u.branches.warning,
        };
        // SAFETY: checked non-NULL, valid for writes per the contract.
        unsafe { write_out(out, c) };
        Ok(())
    })
}

/// The current state of the database or branch `name`.
///
/// On success `*out_info` receives it, owned by the caller
/// (`betterpg_info_free`). Fails with `BETTERPG_RESULT_NOT_FOUND` for an
/// unknown name.
///
/// # Safety
/// `manager` is NULL or a live `betterpg_manager`; `name` is NULL or a
/// NUL-terminated string; `out_info` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn betterpg_manager_info(
    manager: *const betterpg_manager,
    name: *const c_char,
    out_info: *mut *mut betterpg_info,
) -> betterpg_result {
    guard("betterpg_manager_info", || {
        // SAFETY: per the contract above.
        let m = unsafe { betterpg_manager::get(manager, "manager") }?;
        let name = unsafe { arg_str(name, "name") }?;
        let out = arg_out(out_info, "out_info")?;
        let c = InfoC::new(&m.inner.info(name)?)?;
        // SAFETY: checked non-NULL, valid for writes per the contract.
        unsafe { write_out(out, betterpg_info::into_handle(c)) };
        Ok(())
    })
}

/// Every database and branch, parents before their branches.
///
/// On success `*out_list` receives the list, owned by the caller
/// (`betterpg_info_list_free`).
///
/// # Safety
/// `manager` is NULL or a live `betterpg_manager`; `out_list` is NULL or
/// valid for writes.
#[no_mangle]
pub unsafe extern "C" fn betterpg_manager_list(
    manager: *const betterpg_manager,
    out_list: *mut *mut betterpg_info_list,
) -> betterpg_result {
    guard("betterpg_manager_list", || {
        // SAFETY: per the contract above.
        let m = unsafe { betterpg_manager::get(manager, "manager") }?;
        let out = arg_out(out_list, "out_list")?;
        let list = m
            .inner
            .status()?
            .iter()
            .map(InfoC::new)
            .collect::<Result<Vec<_>, _>>()?;
        // SAFETY: checked non-NULL, valid for writes per the contract.
        unsafe { write_out(out, betterpg_info_list::into_handle(list)) };
        Ok(())
    })
}

/// Connection URL of the database or branch `name`, with the password
/// (`postgresql://postgres:PASSWORD@HOST:PORT/postgres`; a libpq conninfo).
///
/// On success `*out_url` receives a new string, owned by the caller
/// (`betterpg_string_free`).
///
/// # Safety
/// `manager` is NULL or a live `betterpg_manager`; `name` is NULL or a
/// NUL-terminated string; `out_url` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn betterpg_manager_url(
    manager: *const betterpg_manager,
    name: *const c_char,
    out_url: *mut *mut c_char,
) -> betterpg_result {
    guard("betterpg_manager_url", || {
        // SAFETY: per the contract above.
        let m = unsafe { betterpg_manager::get(manager, "manager") }?;
        let name = unsafe { arg_str(name, "name") }?;
        let out = arg_out(out_url, "out_url")?;
        let url = to_cstring(m.inner.url(name)?)?;
        // SAFETY: checked non-NULL, valid for writes per the contract.
        unsafe { write_out(out, url.into_raw()) };
        Ok(())
    })
}

/// Connection URL of `role` on the branch `name`, with the password its
/// credentials rotation gave it (`HOME/secrets/NAME.roles`). A branch
/// that kept its source's passwords (credentials keep) or a database
/// fails with `BETTERPG_RESULT_UNSUPPORTED`; a role that got no password
/// with `BETTERPG_RESULT_NOT_FOUND`. Audited (`url`, with the role).
///
/// On success `*out_url` receives a new string, owned by the caller
/// (`betterpg_string_free`).
///
/// # Safety
/// `manager` is NULL or a live `betterpg_manager`; `name` and `role` are
/// NULL or NUL-terminated strings; `out_url` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn betterpg_manager_role_url(
    manager: *const betterpg_manager,
    name: *const c_char,
    role: *const c_char,
    out_url: *mut *mut c_char,
) -> betterpg_result {
    guard("betterpg_manager_role_url", || {
        // SAFETY: per the contract above.
        let m = unsafe { betterpg_manager::get(manager, "manager") }?;
        let name = unsafe { arg_str(name, "name") }?;
        let role = unsafe { arg_str(role, "role") }?;
        let out = arg_out(out_url, "out_url")?;
        let url = to_cstring(m.inner.url_for_role(name, role)?)?;
        // SAFETY: checked non-NULL, valid for writes per the contract.
        unsafe { write_out(out, url.into_raw()) };
        Ok(())
    })
}

/// The server log of `name`, or its last `tail_lines` lines (0: all).
///
/// On success `*out_log` receives a new string, owned by the caller
/// (`betterpg_string_free`).
///
/// # Safety
/// `manager` is NULL or a live `betterpg_manager`; `name` is NULL or a
/// NUL-terminated string; `out_log` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn betterpg_manager_logs(
    manager: *const betterpg_manager,
    name: *const c_char,
    tail_lines: usize,
    out_log: *mut *mut c_char,
) -> betterpg_result {
    guard("betterpg_manager_logs", || {
        // SAFETY: per the contract above.
        let m = unsafe { betterpg_manager::get(manager, "manager") }?;
        let name = unsafe { arg_str(name, "name") }?;
        let out = arg_out(out_log, "out_log")?;
        let tail = (tail_lines > 0).then_some(tail_lines);
        let log = m.inner.logs(name, tail)?;
        // A log is text from the server; a stray NUL must not fail the call.
        let log = CString::new(log.replace('\0', "\u{FFFD}")).unwrap_or_default();
        // SAFETY: checked non-NULL, valid for writes per the contract.
        unsafe { write_out(out, log.into_raw()) };
        Ok(())
    })
}

/// Change settings of `name` (the policies of `bpg config`): `count` pairs
/// `keys[i]` = `values[i]`, each in its string form (keys: `mask`,
/// `mask_rules`, `forbid_unmasked`, `credentials`, `ttl`, `idle_stop`,
/// `keep_hourly`, `keep_daily`, `keep_last`, `retain_wal`; durations such as
/// "8h"; "none" clears). All or nothing: a bad key or value fails with
/// `BETTERPG_RESULT_CONFIG` and changes nothing. `count` 0 changes nothing
/// and only reads.
///
/// When `out_settings_json` is not NULL it receives the settings after the
/// change as a JSON object (the `settings` of `bpg config --json`), owned by
/// the caller (`betterpg_string_free`).
///
/// # Safety
/// `manager` is NULL or a live `betterpg_manager`; `name` is NULL or a
/// NUL-terminated string; `keys` and `values` are NULL (only with `count`
/// 0) or arrays of `count` NUL-terminated strings; `out_settings_json` is
/// NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn betterpg_manager_configure(
    manager: *const betterpg_manager,
    name: *const c_char,
    keys: *const *const c_char,
    values: *const *const c_char,
    count: usize,
    out_settings_json: *mut *mut c_char,
) -> betterpg_result {
    guard("betterpg_manager_configure", || {
        // SAFETY: per the contract above.
        let m = unsafe { betterpg_manager::get(manager, "manager") }?;
        let name = unsafe { arg_str(name, "name") }?;
        // SAFETY: per the contract above.
        let pairs = unsafe { arg_pairs(keys, values, count) }?;
        let settings = if pairs.is_empty() {
            m.inner.settings(name)?
        } else {
            m.inner.configure(name, &pairs)?
        };
        if !out_settings_json.is_null() {
            let json = to_cstring(settings.to_json().to_string())?;
            // SAFETY: non-NULL, valid for writes per the contract.
            unsafe { write_out(out_settings_json, json.into_raw()) };
        }
        Ok(())
    })
}

/// The `count` pairs `keys[i]` = `values[i]` of a settings call.
///
/// # Safety
/// `keys` and `values` are NULL (only with `count` 0) or arrays of `count`
/// NUL-terminated strings.
unsafe fn arg_pairs<'a>(
    keys: *const *const c_char,
    values: *const *const c_char,
    count: usize,
) -> Result<Vec<(&'a str, &'a str)>, Failure> {
    let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(count);
    if count > 0 {
        let keys = arg_in_array(keys, "keys")?;
        let values = arg_in_array(values, "values")?;
        for i in 0..count {
            // SAFETY: both arrays hold `count` valid strings per the contract.
            let (k, v) = unsafe { (*keys.add(i), *values.add(i)) };
            pairs.push((unsafe { arg_str(k, "keys[i]") }?, unsafe {
                arg_str(v, "values[i]")
            }?));
        }
    }
    Ok(pairs)
}

/// Check that an input array is not NULL.
fn arg_in_array<T>(p: *const T, arg: &'static str) -> Result<*const T, Failure> {
    if p.is_null() {
        Err(Failure::Null(arg))
    } else {
        Ok(p)
    }
}
