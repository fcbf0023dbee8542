//! Read-only results: `betterpg_info` (one database or branch),
//! `betterpg_info_list` and `betterpg_branch_report`.
//!
//! Every string a getter returns is owned by the object it was read from and
//! stays valid until that object is freed; do not free it yourself.

use std::ffi::{c_char, CString};
use std::ptr;

use betterpg_core::{BranchReport, Info};

use crate::result::{
    arg_out, betterpg_result, guard, guard_value, to_cstring, write_out, Failure, Opaque,
};

/// The state of one database or branch at the time it was read (a snapshot:
/// it does not change afterwards). Made by `betterpg_manager_info`,
/// `_create`, `_start`, `_stop`; free with `betterpg_info_free`. Handles
/// borrowed from a list or a report are freed with their owner instead.
pub struct betterpg_info {
    _private: [u8; 0],
}

/// The Rust value behind a `betterpg_info`.
#[derive(Debug, Clone)]
pub(crate) struct InfoC {
    name: CString,
    kind: CString,
    parent: Option<CString>,
    status: CString,
    state: CString,
    port: u16,
    url: CString,
    mode: Option<CString>,
    dataset: CString,
    snapshot: Option<CString>,
    runtime: CString,
    pg_version: u32,
    created_at: u64,
    protected: bool,
    rewindable: bool,
    owner_pid: u32,
    expires_at: u64,
    used_bytes: u64,
    referenced_bytes: u64,
    wal: Option<WalC>,
}

/// The WAL retention of a database, for the `betterpg_info_wal_*` getters.
#[derive(Debug, Clone)]
pub(crate) struct WalC {
    retain_secs: u64,
    active: bool,
    from_time: Option<CString>,
    to_time: Option<CString>,
    from_lsn: Option<CString>,
    to_lsn: Option<CString>,
    wal_bytes: u64,
}

impl Opaque for betterpg_info {
    type Inner = InfoC;
}

fn opt(s: Option<&str>) -> Result<Option<CString>, Failure> {
    s.map(to_cstring).transpose()
}

impl InfoC {
    pub(crate) fn new(i: &Info) -> Result<InfoC, Failure> {
        Ok(InfoC {
            name: to_cstring(i.name.as_str())?,
            kind: to_cstring(i.kind.as_str())?,
            parent: opt(i.parent.as_deref())?,
            status: to_cstring(i.status.as_str())?,
            state: to_cstring(i.state.as_str())?,
            port: i.port,
            url: to_cstring(i.url.as_str())?,
            mode: opt(i.mode.map(|m| m.as_str()))?,
            dataset: to_cstring(i.dataset.as_str())?,
            snapshot: opt(i.snapshot.as_deref())?,
            runtime: to_cstring(i.runtime.as_str())?,
            pg_version: i.pg_version,
            created_at: i.created_at,
            protected: i.protected,
            rewindable: i.rewindable,
            owner_pid: i.owner_pid.unwrap_or(0),
            expires_at: i.expires_at.unwrap_or(0),
            used_bytes: i.used_bytes,
            referenced_bytes: i.referenced_bytes,
            wal: match &i.wal_retention {
                Some(w) => Some(WalC {
                    retain_secs: w.retain_secs,
                    active: w.active,
                    from_time: opt(w.from_time.as_deref())?,
                    to_time: opt(w.to_time.as_deref())?,
                    from_lsn: opt(w.from_lsn.as_deref())?,
                    to_lsn: opt(w.to_lsn.as_deref())?,
                    wal_bytes: w.wal_bytes,
                }),
                None => None,
            },
        })
    }
}

fn cstr_ptr(s: &CString) -> *const c_char {
    s.as_ptr()
}

fn opt_ptr(s: &Option<CString>) -> *const c_char {
    s.as_ref().map_or(ptr::null(), |s| s.as_ptr())
}

/// Read a field of an info handle; NULL handle gives `fallback`.
fn info_field<T>(info: *const betterpg_info, fallback: T, f: impl FnOnce(&InfoC) -> T) -> T
where
    T: Copy,
{
    guard_value(fallback, || {
        // SAFETY: the caller passes NULL or a live info handle.
        match unsafe { betterpg_info::get_opt(info) } {
            Some(i) => f(i),
            None => fallback,
        }
    })
}

/// Name of the database or branch. NULL if `info` is NULL.
///
/// # Safety
/// `info` is NULL or a live `betterpg_info`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_info_name(info: *const betterpg_info) -> *const c_char {
    info_field(info, ptr::null(), |i| cstr_ptr(&i.name))
}

/// "database" or "branch". NULL if `info` is NULL.
///
/// # Safety
/// `info` is NULL or a live `betterpg_info`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_info_kind(info: *const betterpg_info) -> *const c_char {
    info_field(info, ptr::null(), |i| cstr_ptr(&i.kind))
}

/// True for a branch, false for a database (or a NULL `info`).
///
/// # Safety
/// `info` is NULL or a live `betterpg_info`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_info_is_branch(info: *const betterpg_info) -> bool {
    info_field(info, false, |i| i.kind.as_bytes() == b"branch")
}

/// Name of the database or branch a branch was made from; NULL for a
/// database (or a NULL `info`).
///
/// # Safety
/// `info` is NULL or a live `betterpg_info`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_info_parent(info: *const betterpg_info) -> *const c_char {
    info_field(info, ptr::null(), |i| opt_ptr(&i.parent))
}

/// "running" or "stopped". NULL if `info` is NULL.
///
/// # Safety
/// `info` is NULL or a live `betterpg_info`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_info_status(info: *const betterpg_info) -> *const c_char {
    info_field(info, ptr::null(), |i| cstr_ptr(&i.status))
}

/// True when the server was running (false for a NULL `info`).
///
/// # Safety
/// `info` is NULL or a live `betterpg_info`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_info_is_running(info: *const betterpg_info) -> bool {
    info_field(info, false, |i| i.status.as_bytes() == b"running")
}

/// Life-cycle state: "ready", "creating", "destroying" or "incomplete".
/// NULL if `info` is NULL.
///
/// # Safety
/// `info` is NULL or a live `betterpg_info`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_info_state(info: *const betterpg_info) -> *const c_char {
    info_field(info, ptr::null(), |i| cstr_ptr(&i.state))
}

/// TCP port of the server; 0 if `info` is NULL.
///
/// # Safety
/// `info` is NULL or a live `betterpg_info`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_info_port(info: *const betterpg_info) -> u16 {
    info_field(info, 0, |i| i.port)
}

/// Connection URL, with the password
/// (`postgresql://postgres:PASSWORD@HOST:PORT/postgres`), usable as a
/// libpq conninfo string. NULL if `info` is NULL.
///
/// # Safety
/// `info` is NULL or a live `betterpg_info`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_info_url(info: *const betterpg_info) -> *const c_char {
    info_field(info, ptr::null(), |i| cstr_ptr(&i.url))
}

/// How a branch was made: "application-consistent" or "crash-consistent";
/// NULL for a database (or a NULL `info`).
///
/// # Safety
/// `info` is NULL or a live `betterpg_info`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_info_mode(info: *const betterpg_info) -> *const c_char {
    info_field(info, ptr::null(), |i| opt_ptr(&i.mode))
}

/// The ZFS dataset holding the cluster. NULL if `info` is NULL.
///
/// # Safety
/// `info` is NULL or a live `betterpg_info`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_info_dataset(info: *const betterpg_info) -> *const c_char {
    info_field(info, ptr::null(), |i| cstr_ptr(&i.dataset))
}

/// For a branch, the ZFS snapshot it was cloned from; NULL for a database
/// (or a NULL `info`).
///
/// # Safety
/// `info` is NULL or a live `betterpg_info`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_info_snapshot(info: *const betterpg_info) -> *const c_char {
    info_field(info, ptr::null(), |i| opt_ptr(&i.snapshot))
}

/// Runtime running the server ("native", ...). NULL if `info` is NULL.
///
/// # Safety
/// `info` is NULL or a live `betterpg_info`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_info_runtime(info: *const betterpg_info) -> *const c_char {
    info_field(info, ptr::null(), |i| cstr_ptr(&i.runtime))
}

/// PostgreSQL major version (e.g. 15); 0 if `info` is NULL.
///
/// # Safety
/// `info` is NULL or a live `betterpg_info`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_info_pg_version(info: *const betterpg_info) -> u32 {
    info_field(info, 0, |i| i.pg_version)
}

/// Creation time, seconds since the Unix epoch; 0 if `info` is NULL.
///
/// # Safety
/// `info` is NULL or a live `betterpg_info`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_info_created_at(info: *const betterpg_info) -> u64 {
    info_field(info, 0, |i| i.created_at)
}

/// True when it is protected (`betterpg_manager_protect`): destroy,
/// reset and expiry fail with `BETTERPG_RESULT_PROTECTED`. False if
/// `info` is NULL.
///
/// # Safety
/// `info` is NULL or a live `betterpg_info`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_info_protected(info: *const betterpg_info) -> bool {
    info_field(info, false, |i| i.protected)
}

/// True for a branch with a rewind point (made or reset with
/// `betterpg_branch_options_set_rewindable`): `betterpg_manager_rewind`
/// rolls it back to how it was made. False for any other branch, a
/// database, or a NULL `info`.
///
/// # Safety
/// `info` is NULL or a live `betterpg_info`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_info_rewindable(info: *const betterpg_info) -> bool {
    info_field(info, false, |i| i.rewindable)
}

/// The process the branch lives for (made with
/// `betterpg_branch_options_set_owner_pid`): once it is gone, gc and the
/// daemon's pass destroy the branch. 0 when it has none (or `info` is NULL).
///
/// # Safety
/// `info` is NULL or a live `betterpg_info`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_info_owner_pid(info: *const betterpg_info) -> u32 {
    info_field(info, 0, |i| i.owner_pid)
}

/// When the daemon destroys it (its time to live ends), seconds since the
/// Unix epoch; 0 when it never expires (or `info` is NULL).
///
/// # Safety
/// `info` is NULL or a live `betterpg_info`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_info_expires_at(info: *const betterpg_info) -> u64 {
    info_field(info, 0, |i| i.expires_at)
}

/// Pool bytes used by its dataset; 0 if `info` is NULL.
///
/// # Safety
/// `info` is NULL or a live `betterpg_info`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_info_used_bytes(info: *const betterpg_info) -> u64 {
    info_field(info, 0, |i| i.used_bytes)
}

/// Bytes its dataset refers to; 0 if `info` is NULL.
///
/// # Safety
/// `info` is NULL or a live `betterpg_info`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_info_referenced_bytes(info: *const betterpg_info) -> u64 {
    info_field(info, 0, |i| i.referenced_bytes)
}

/// How long the database keeps its WAL, seconds (the setting
/// `retain_wal`); 0 when it keeps none, for a branch, or a NULL `info`.
///
/// # Safety
/// `info` is NULL or a live `betterpg_info`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_info_wal_retain_secs(info: *const betterpg_info) -> u64 {
    info_field(info, 0, |i| i.wal.as_ref().map_or(0, |w| w.retain_secs))
}

/// True once the database archives its WAL and has a base, so a branch at
/// a point inside its window works (`betterpg_branch_options_set_at`);
/// false while the setting waits for its next start, or when it keeps no
/// WAL.
///
/// # Safety
/// `info` is NULL or a live `betterpg_info`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_info_wal_active(info: *const betterpg_info) -> bool {
    info_field(info, false, |i| i.wal.as_ref().is_some_and(|w| w.active))
}

/// The oldest restorable time (UTC, as PostgreSQL prints it); NULL when
/// there is none (no WAL kept, or no base yet).
///
/// # Safety
/// `info` is NULL or a live `betterpg_info`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_info_wal_from_time(info: *const betterpg_info) -> *const c_char {
    info_field(info, ptr::null(), |i| {
        i.wal
            .as_ref()
            .map_or(ptr::null(), |w| opt_ptr(&w.from_time))
    })
}

/// The newest point known archived (UTC); NULL when there is none. A
/// branch at a point of a running database reaches up to the moment of
/// the call.
///
/// # Safety
/// `info` is NULL or a live `betterpg_info`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_info_wal_to_time(info: *const betterpg_info) -> *const c_char {
    info_field(info, ptr::null(), |i| {
        i.wal.as_ref().map_or(ptr::null(), |w| opt_ptr(&w.to_time))
    })
}

/// The oldest restorable WAL location ("0/3000028"); NULL when none.
///
/// # Safety
/// `info` is NULL or a live `betterpg_info`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_info_wal_from_lsn(info: *const betterpg_info) -> *const c_char {
    info_field(info, ptr::null(), |i| {
        i.wal.as_ref().map_or(ptr::null(), |w| opt_ptr(&w.from_lsn))
    })
}

/// The newest WAL location known archived; NULL when none.
///
/// # Safety
/// `info` is NULL or a live `betterpg_info`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_info_wal_to_lsn(info: *const betterpg_info) -> *const c_char {
    info_field(info, ptr::null(), |i| {
        i.wal.as_ref().map_or(ptr::null(), |w| opt_ptr(&w.to_lsn))
    })
}

/// Pool bytes the retained WAL uses; 0 when none (or a NULL `info`).
///
/// # Safety
/// `info` is NULL or a live `betterpg_info`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_info_wal_bytes(info: *const betterpg_info) -> u64 {
    info_field(info, 0, |i| i.wal.as_ref().map_or(0, |w| w.wal_bytes))
}

/// Free an info made by this library. NULL does nothing. Do not call it
/// twice, nor on an info borrowed from a list or a report.
///
/// # Safety
/// `info` is NULL or an owned `betterpg_info`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn betterpg_info_free(info: *mut betterpg_info) {
    // SAFETY: per the contract above.
    guard_value((), || unsafe { betterpg_info::free(info) })
}

/// Every database and branch, parents before their branches, siblings by
/// name. Made by `betterpg_manager_list`; free with
/// `betterpg_info_list_free`.
pub struct betterpg_info_list {
    _private: [u8; 0],
}

impl Opaque for betterpg_info_list {
    type Inner = Vec<InfoC>;
}

/// Number of entries; 0 if `list` is NULL.
///
/// # Safety
/// `list` is NULL or a live `betterpg_info_list`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_info_list_len(list: *const betterpg_info_list) -> usize {
    guard_value(0, || {
        // SAFETY: per the contract above.
        unsafe { betterpg_info_list::get_opt(list) }.map_or(0, |l| l.len())
    })
}

/// Entry `index` (0-based), borrowed from the list: valid until the list
/// is freed, and not to be freed itself. NULL if `list` is NULL or `index`
/// is out of range.
///
/// # Safety
/// `list` is NULL or a live `betterpg_info_list`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_info_list_get(
    list: *const betterpg_info_list,
    index: usize,
) -> *const betterpg_info {
    guard_value(ptr::null(), || {
        // SAFETY: per the contract above.
        unsafe { betterpg_info_list::get_opt(list) }
            .and_then(|l| l.get(index))
            .map_or(ptr::null(), betterpg_info::borrowed)
    })
}

/// Free a list and every entry borrowed from it. NULL does nothing. Do not
/// call it twice.
///
/// # Safety
/// `list` is NULL or an owned `betterpg_info_list`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn betterpg_info_list_free(list: *mut betterpg_info_list) {
    // SAFETY: per the contract above.
    guard_value((), || unsafe { betterpg_info_list::free(list) })
}

/// What making a branch did: the new branch and the time each step took.
/// Made by `betterpg_manager_branch` and
/// `betterpg_manager_last_branch_report`; free with
/// `betterpg_branch_report_free`.
pub struct betterpg_branch_report {
    _private: [u8; 0],
}

/// The Rust value behind a `betterpg_branch_report`.
#[derive(Debug, Clone)]
pub(crate) struct ReportC {
    branch: InfoC,
    steps: Vec<(CString, f64)>,
    total_millis: f64,
    source_was_running: bool,
    wal_bytes_copied: u64,
    password_changed: bool,
    /// (oid, source location, branch location) of each cloned tablespace.
    tablespaces: Vec<(u32, CString, CString)>,
    /// The isolation report as JSON (the same text as `bpg --json branch`).
    isolation_json: CString,
    /// One line per thing cut off from the source.
    detached: Vec<CString>,
    /// (kind, database, name, detail) of each isolation warning.
    warnings: Vec<(CString, CString, CString, CString)>,
}

impl Opaque for betterpg_branch_report {
    type Inner = ReportC;
}

/// A report's timed steps as C strings with their milliseconds.
pub(crate) fn steps_of(
    timings: &[betterpg_core::StepTiming],
) -> Result<Vec<(CString, f64)>, Failure> {
    timings
        .iter()
        .map(|t| Ok((to_cstring(t.step)?, t.millis)))
        .collect()
}

/// Write step `index` of `steps` (its name, borrowed, and milliseconds)
/// to the out-parameters; `BETTERPG_RESULT_INVALID_ARGUMENT` when out of
/// range. The body of every report's `_step` getter.
pub(crate) fn write_step(
    steps: &[(CString, f64)],
    index: usize,
    out_step: *mut *const c_char,
    out_millis: *mut f64,
) -> Result<(), Failure> {
    let out_step = arg_out(out_step, "out_step")?;
    let out_millis = arg_out(out_millis, "out_millis")?;
    let (step, millis) = steps.get(index).ok_or_else(|| {
        Failure::Arg(format!(
            "step index {index} is out of range (the report has {} steps)",
            steps.len()
        ))
    })?;
    // SAFETY: both checked non-NULL; the callers' contracts make them
    // valid for writes.
    unsafe {
        write_out(out_step, step.as_ptr());
        write_out(out_millis, *millis);
    }
    Ok(())
}

impl ReportC {
    pub(crate) fn new(r: &BranchReport) -> Result<ReportC, Failure> {
        Ok(ReportC {
            branch: InfoC::new(&r.branch)?,
            steps: steps_of(&r.timings)?,
            total_millis: r.total_millis,
            source_was_running: r.source_was_running,
            wal_bytes_copied: r.wal_bytes_copied,
            password_changed: r.password_changed,
            tablespaces: r
                .tablespaces
                .iter()
                .map(|t| {
                    Ok((
                        t.oid,
                        to_cstring(t.source_location.to_string_lossy().as_ref())?,
                        to_cstring(t.location.to_string_lossy().as_ref())?,
                    ))
                })
                .collect::<Result<_, Failure>>()?,
            isolation_json: to_cstring(
                serde_json::to_string(&r.isolation)
                    .map_err(|e| Failure::Arg(format!("isolation report: {e}")))?
                    .as_str(),
            )?,
            detached: r
                .isolation
                .detached_lines()
                .iter()
                .map(|l| to_cstring(l.as_str()))
                .collect::<Result<_, Failure>>()?,
            warnings: r
                .isolation
                .warnings
                .iter()
                .map(|w| {
                    Ok((
                        to_cstring(w.kind.as_str())?,
                        to_cstring(w.database.as_str())?,
                        to_cstring(w.name.as_str())?,
                        to_cstring(w.detail.as_str())?,
                    ))
                })
                .collect::<Result<_, Failure>>()?,
        })
    }
}

/// The new branch, borrowed from the report (valid until the report is
/// freed; do not free it). NULL if `report` is NULL.
///
/// # Safety
/// `report` is NULL or a live `betterpg_branch_report`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_branch_report_branch(
    report: *const betterpg_branch_report,
) -> *const betterpg_info {
    guard_value(ptr::null(), || {
        // SAFETY: per the contract above.
        unsafe { betterpg_branch_report::get_opt(report) }
            .map_or(ptr::null(), |r| betterpg_info::borrowed(&r.branch))
    })
}

/// Time the whole branch call took, milliseconds; 0 if `report` is NULL.
///
/// # Safety
/// `report` is NULL or a live `betterpg_branch_report`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_branch_report_total_millis(
    report: *const betterpg_branch_report,
) -> f64 {
    guard_value(0.0, || {
        // SAFETY: per the contract above.
        unsafe { betterpg_branch_report::get_opt(report) }.map_or(0.0, |r| r.total_millis)
    })
}

/// Whether the source was running (a stopped source needs no backup mode);
/// false if `report` is NULL.
///
/// # Safety
/// `report` is NULL or a live `betterpg_branch_report`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_branch_report_source_was_running(
    report: *const betterpg_branch_report,
) -> bool {
    guard_value(false, || {
        // SAFETY: per the contract above.
        unsafe { betterpg_branch_report::get_opt(report) }.is_some_and(|r| r.source_was_running)
    })
}

/// WAL copied from the source into the branch, bytes; 0 if `report` is NULL.
///
/// # Safety
/// `report` is NULL or a live `betterpg_branch_report`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_branch_report_wal_bytes_copied(
    report: *const betterpg_branch_report,
) -> u64 {
    guard_value(0, || {
        // SAFETY: per the contract above.
        unsafe { betterpg_branch_report::get_opt(report) }.map_or(0, |r| r.wal_bytes_copied)
    })
}

/// True when `betterpg_manager_reset` gave the branch a new password
/// because its password file (HOME/secrets/NAME) was missing, so its URL
/// changed; false for a new branch, a reset that kept the password, or a
/// NULL `report`.
///
/// # Safety
/// `report` is NULL or a live `betterpg_branch_report`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_branch_report_password_changed(
    report: *const betterpg_branch_report,
) -> bool {
    guard_value(false, || {
        // SAFETY: per the contract above.
        unsafe { betterpg_branch_report::get_opt(report) }.is_some_and(|r| r.password_changed)
    })
}

/// Number of timed steps; 0 if `report` is NULL.
///
/// # Safety
/// `report` is NULL or a live `betterpg_branch_report`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_branch_report_step_count(
    report: *const betterpg_branch_report,
) -> usize {
    guard_value(0, || {
        // SAFETY: per the contract above.
        unsafe { betterpg_branch_report::get_opt(report) }.map_or(0, |r| r.steps.len())
    })
}

/// Step `index` (0-based, in the order the steps ran): its name (e.g.
/// "backup_start", "snapshot", "clone", "start"; borrowed from the report)
/// and its duration in milliseconds. Fails with
/// `BETTERPG_RESULT_INVALID_ARGUMENT` when `index` is out of range.
///
/// # Safety
/// `report` is NULL or a live `betterpg_branch_report`; `out_step` and
/// `out_millis` are NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn betterpg_branch_report_step(
    report: *const betterpg_branch_report,
    index: usize,
    out_step: *mut *const c_char,
    out_millis: *mut f64,
) -> betterpg_result {
    guard("betterpg_branch_report_step", || {
        // SAFETY: per the contract above.
        let r = unsafe { betterpg_branch_report::get(report, "report") }?;
        write_step(&r.steps, index, out_step, out_millis)
    })
}

/// Number of the source's tablespaces the branch got its own clones of; 0
/// if `report` is NULL.
///
/// # Safety
/// `report` is NULL or a live `betterpg_branch_report`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_branch_report_tablespace_count(
    report: *const betterpg_branch_report,
) -> usize {
    guard_value(0, || {
        // SAFETY: per the contract above.
        unsafe { betterpg_branch_report::get_opt(report) }.map_or(0, |r| r.tablespaces.len())
    })
}

/// Cloned tablespace `index` (0-based): its OID, where the source has it and
/// where the branch has it (paths borrowed from the report). Fails with
/// `BETTERPG_RESULT_INVALID_ARGUMENT` when `index` is out of range.
///
/// # Safety
/// `report` is NULL or a live `betterpg_branch_report`; the out pointers
/// are NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn betterpg_branch_report_tablespace(
    report: *const betterpg_branch_report,
    index: usize,
    out_oid: *mut u32,
    out_source_location: *mut *const c_char,
    out_location: *mut *const c_char,
) -> betterpg_result {
    guard("betterpg_branch_report_tablespace", || {
        // SAFETY: per the contract above.
        let r = unsafe { betterpg_branch_report::get(report, "report") }?;
        let out_oid = arg_out(out_oid, "out_oid")?;
        let out_source = arg_out(out_source_location, "out_source_location")?;
        let out_location = arg_out(out_location, "out_location")?;
        let (oid, source, location) = r.tablespaces.get(index).ok_or_else(|| {
            Failure::Arg(format!(
                "tablespace index {index} is out of range (the report has {})",
                r.tablespaces.len()
            ))
        })?;
        // SAFETY: all checked non-NULL; valid for writes per the contract.
        unsafe {
            write_out(out_oid, *oid);
            write_out(out_source, source.as_ptr());
            write_out(out_location, location.as_ptr());
        }
        Ok(())
    })
}

/// What the branch was cut off from (archiving, upstream, slots,
/// subscriptions, settings, password) and its warnings, as JSON text
/// borrowed from the report (the `isolation` object of `bpg --json
/// branch`). NULL if `report` is NULL.
///
/// # Safety
/// `report` is NULL or a live `betterpg_branch_report`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_branch_report_isolation_json(
    report: *const betterpg_branch_report,
) -> *const c_char {
    guard_value(ptr::null(), || {
        // SAFETY: per the contract above.
        unsafe { betterpg_branch_report::get_opt(report) }
            .map_or(ptr::null(), |r| r.isolation_json.as_ptr())
    })
}

/// Number of things the branch was cut off from its source (lines for
/// people, as `bpg branch` prints them); 0 if `report` is NULL.
///
/// # Safety
/// `report` is NULL or a live `betterpg_branch_report`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_branch_report_detached_count(
    report: *const betterpg_branch_report,
) -> usize {
    guard_value(0, || {
        // SAFETY: per the contract above.
        unsafe { betterpg_branch_report::get_opt(report) }.map_or(0, |r| r.detached.len())
    })
}

/// Line `index` (0-based) of what was cut off, borrowed from the report.
/// Fails with `BETTERPG_RESULT_INVALID_ARGUMENT` when out of range.
///
/// # Safety
/// `report` is NULL or a live `betterpg_branch_report`; `out_line` is NULL
/// or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn betterpg_branch_report_detached(
    report: *const betterpg_branch_report,
    index: usize,
    out_line: *mut *const c_char,
) -> betterpg_result {
    guard("betterpg_branch_report_detached", || {
        // SAFETY: per the contract above.
        let r = unsafe { betterpg_branch_report::get(report, "report") }?;
        let out_line = arg_out(out_line, "out_line")?;
        let line = r.detached.get(index).ok_or_else(|| {
            Failure::Arg(format!(
                "detached index {index} is out of range (the report has {})",
                r.detached.len()
            ))
        })?;
        // SAFETY: checked non-NULL; valid for writes per the contract.
        unsafe { write_out(out_line, line.as_ptr()) };
        Ok(())
    })
}

/// Number of isolation warnings (foreign servers, pg_cron jobs that still
/// point at other systems); 0 if `report` is NULL.
///
/// # Safety
/// `report` is NULL or a live `betterpg_branch_report`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_branch_report_warning_count(
    report: *const betterpg_branch_report,
) -> usize {
    guard_value(0, || {
        // SAFETY: per the contract above.
        unsafe { betterpg_branch_report::get_opt(report) }.map_or(0, |r| r.warnings.len())
    })
}

/// Isolation warning `index` (0-based): its kind (`foreign_server`,
/// `pg_cron_job`), database, name and detail, borrowed from the report.
/// Fails with `BETTERPG_RESULT_INVALID_ARGUMENT` when out of range.
///
/// # Safety
/// `report` is NULL or a live `betterpg_branch_report`; the out pointers
/// are NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn betterpg_branch_report_warning(
    report: *const betterpg_branch_report,
    index: usize,
    out_kind: *mut *const c_char,
    out_database: *mut *const c_char,
    out_name: *mut *const c_char,
    out_detail: *mut *const c_char,
) -> betterpg_result {
    guard("betterpg_branch_report_warning", || {
        // SAFETY: per the contract above.
        let r = unsafe { betterpg_branch_report::get(report, "report") }?;
        let out_kind = arg_out(out_kind, "out_kind")?;
        let out_database = arg_out(out_database, "out_database")?;
        let out_name = arg_out(out_name, "out_name")?;
        let out_detail = arg_out(out_detail, "out_detail")?;
        let (kind, db, name, detail) = r.warnings.get(index).ok_or_else(|| {
            Failure::Arg(format!(
                "warning index {index} is out of range (the report has {})",
                r.warnings.len()
            ))
        })?;
        // SAFETY: all checked non-NULL; valid for writes per the contract.
        unsafe {
            write_out(out_kind, kind.as_ptr());
            write_out(out_database, db.as_ptr());
            write_out(out_name, name.as_ptr());
            write_out(out_detail, detail.as_ptr());
        }
        Ok(())
    })
}

/// Free a report and the info borrowed from it. NULL does nothing. Do not
/// call it twice.
///
/// # Safety
/// `report` is NULL or an owned `betterpg_branch_report`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn betterpg_branch_report_free(report: *mut betterpg_branch_report) {
    // SAFETY: per the contract above.
    guard_value((), || unsafe { betterpg_branch_report::free(report) })
}
