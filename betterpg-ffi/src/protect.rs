//! Protecting copies of production: the audit log, mask-check.

use std::ffi::c_char;

use crate::manager::betterpg_manager;
use crate::result::{arg_out, arg_str, betterpg_result, guard, to_cstring, write_out, Opaque};

/// The home's audit log (what created, exposed, reset or destroyed a
/// copy, by whom, when, how it ended) as a JSON array of events, oldest
/// first, each as one line of `HOME/audit.log` (fields `time`, `unix`,
/// `user`, `uid`, `operation`, `source`, `branch`, `mode`, `masking`,
/// `credentials`, `result`, `error`, and when set `sudo_user`, `role`,
/// `detail`).
///
/// `since` is NULL (every event) or a duration back from now ("30m",
/// "8h", "7d"), a time ("2026-12-03T16:00:00Z"), a date or Unix seconds;
/// anything else is `BETTERPG_RESULT_CONFIG`.
///
/// On success `*out_json` receives a new string, owned by the caller
/// (`betterpg_string_free`).
///
/// # Safety
/// `manager` is NULL or a live `betterpg_manager`; `since` is NULL or a
/// NUL-terminated string; `out_json` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn betterpg_manager_audit_json(
    manager: *const betterpg_manager,
    since: *const c_char,
    out_json: *mut *mut c_char,
) -> betterpg_result {
    guard("betterpg_manager_audit_json", || {
        // SAFETY: per the contract above.
        let m = unsafe { betterpg_manager::get(manager, "manager") }?;
        let since = if since.is_null() {
            None
        } else {
            // SAFETY: non-NULL, NUL-terminated per the contract.
            Some(unsafe { arg_str(since, "since") }?)
        };
        let out = arg_out(out_json, "out_json")?;
        let events = m.inner.audit(since)?;
        let json = serde_json::to_string(&events)
            .map_err(|e| betterpg_core::Error::Internal(format!("audit events: {e}")))?;
        let json = to_cstring(json)?;
        // SAFETY: checked non-NULL, valid for writes per the contract.
        unsafe { write_out(out, json.into_raw()) };
        Ok(())
    })
}

/// The SQL the masking rules file `path` compiles to, as the JSON object
/// of `bpg mask-sql --json` (`file`, `key_source`, `needs_key`, `rules`,
/// `sql`); the key is a placeholder naming whose it is (`source`'s root
/// source when `source` is not NULL). Contacts no server, makes no key. A
/// bad file fails with `BETTERPG_RESULT_MASK` naming the file and key.
///
/// On success `*out_json` receives a new string, owned by the caller
/// (`betterpg_string_free`).
///
/// # Safety
/// `manager` is NULL or a live `betterpg_manager`; `path` and `source` are
/// NULL or NUL-terminated strings; `out_json` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn betterpg_manager_mask_sql_json(
    manager: *const betterpg_manager,
    path: *const c_char,
    source: *const c_char,
    out_json: *mut *mut c_char,
) -> betterpg_result {
    guard("betterpg_manager_mask_sql_json", || {
        // SAFETY: per the contract above.
        let m = unsafe { betterpg_manager::get(manager, "manager") }?;
        let path = unsafe { arg_str(path, "path") }?;
        let source = if source.is_null() {
            None
        } else {
            // SAFETY: non-NULL, NUL-terminated per the contract.
            Some(unsafe { arg_str(source, "source") }?)
        };
        let out = arg_out(out_json, "out_json")?;
        let r = m.inner.mask_sql(std::path::Path::new(path), source)?;
        let json = serde_json::to_string(&r)
            .map_err(|e| betterpg_core::Error::Internal(format!("mask-sql: {e}")))?;
        let json = to_cstring(json)?;
        // SAFETY: checked non-NULL, valid for writes per the contract.
        unsafe { write_out(out, json.into_raw()) };
        Ok(())
    })
}

/// List the columns of `source` (a running database or branch; every
/// database of its server) whose name or sampled values look personal and
/// that the masking rules file `rules` does not cover, as a JSON object:
/// `source`, `databases`, `columns_checked`, `sample_rows`, `rules`,
/// `uncovered` and `covered` (each a list of columns: `database`,
/// `schema`, `table`, `column`, `data_type`, `kinds`, `reasons`). Reads
/// only. A policy is complete when `uncovered` is empty.
///
/// `rules` is NULL (nothing covered) or a path to a TOML rules file;
/// `sample_rows` is the rows sampled per table (0: 200; at most 10000).
///
/// On success `*out_json` receives a new string, owned by the caller
/// (`betterpg_string_free`).
///
/// # Safety
/// `manager` is NULL or a live `betterpg_manager`; `source` and `rules`
/// are NULL or NUL-terminated strings; `out_json` is NULL or valid for
/// writes.
#[no_mangle]
pub unsafe extern "C" fn betterpg_manager_mask_check_json(
    manager: *const betterpg_manager,
    source: *const c_char,
    rules: *const c_char,
    sample_rows: u32,
    out_json: *mut *mut c_char,
) -> betterpg_result {
    guard("betterpg_manager_mask_check_json", || {
        // SAFETY: per the contract above.
        let m = unsafe { betterpg_manager::get(manager, "manager") }?;
        let source = unsafe { arg_str(source, "source") }?;
        let rules = if rules.is_null() {
            None
        } else {
            // SAFETY: non-NULL, NUL-terminated per the contract.
            Some(std::path::PathBuf::from(unsafe {
                arg_str(rules, "rules")
            }?))
        };
        let out = arg_out(out_json, "out_json")?;
        let mut opts = betterpg_core::MaskCheckOptions::with_rules(rules);
        opts.sample_rows = sample_rows;
        let report = m.inner.mask_check(source, opts)?;
        let json = serde_json::to_string(&report)
            .map_err(|e| betterpg_core::Error::Internal(format!("mask-check report: {e}")))?;
        let json = to_cstring(json)?;
        // SAFETY: checked non-NULL, valid for writes per the contract.
        unsafe { write_out(out, json.into_raw()) };
        Ok(())
    })
}
