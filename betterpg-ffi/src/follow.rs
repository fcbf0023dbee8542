//! `follow` on the C ABI: `betterpg_follow_options` (a builder like the
//! branch options) and `betterpg_manager_follow`, which makes a replica (a
//! local streaming standby) of a remote primary through the blocking
//! facade. No logic here: the options are handed to
//! `BranchManager::follow` as they are.

use std::ffi::{c_char, c_void};
use std::sync::Arc;

use betterpg_core::{FollowOptions, FollowProgress};

use crate::info::betterpg_info;
use crate::manager::{betterpg_manager, write_info_opt};
use crate::result::{arg_str, betterpg_result, guard, guard_value, Opaque};

/// Options of `betterpg_manager_follow`. Made by
/// `betterpg_follow_options_new` (no password file, no slot, binaries of
/// the primary's major version found on this machine, no progress),
/// changed by the `betterpg_follow_options_set_*` functions, freed with
/// `betterpg_follow_options_free`. The call only reads it.
pub struct betterpg_follow_options {
    _private: [u8; 0],
}

/// A base-backup progress callback: bytes received so far, bytes the
/// primary estimated in all, bytes per second since the backup began, and
/// the `user_data` given with it. Called a few times a second, from a
/// thread of the library, while `betterpg_manager_follow` runs; it must
/// not call back into the library with the same manager.
pub type betterpg_follow_progress_fn = Option<
    unsafe extern "C" fn(
        bytes_done: u64,
        bytes_total: u64,
        bytes_per_sec: f64,
        user_data: *mut c_void,
    ),
>;

/// The caller's callback and its data, handed to another thread.
#[derive(Clone, Copy)]
struct Progress {
    f: unsafe extern "C" fn(u64, u64, f64, *mut c_void),
    user_data: *mut c_void,
}

// SAFETY: the contract of `betterpg_follow_options_set_progress` makes
// the callback and its data usable from the library's threads while the
// follow runs.
unsafe impl Send for Progress {}
// SAFETY: as above.
unsafe impl Sync for Progress {}

impl Progress {
    fn call(&self, f: FollowProgress) {
        // SAFETY: per the contract of _set_progress.
        unsafe { (self.f)(f.bytes_done, f.bytes_total, f.bytes_per_sec, self.user_data) }
    }
}

/// The Rust value behind a `betterpg_follow_options`.
#[derive(Default)]
pub(crate) struct FollowOptionsC {
    password_file: Option<std::path::PathBuf>,
    slot: Option<String>,
    pg_bin: Option<std::path::PathBuf>,
    progress: Option<Progress>,
    settings: Vec<(String, String)>,
    rebuild: bool,
}

impl Opaque for betterpg_follow_options {
    type Inner = FollowOptionsC;
}

impl FollowOptionsC {
    fn to_core(&self, from: &str) -> FollowOptions {
        let mut o = FollowOptions::new(from);
        o.password_file = self.password_file.clone();
        o.slot = self.slot.clone();
        o.pg_bin = self.pg_bin.clone();
        o.settings = self.settings.clone();
        o.rebuild = self.rebuild;
        if let Some(p) = self.progress {
            o.progress = Some(Arc::new(move |f: FollowProgress| p.call(f)));
        }
        o
    }
}

/// New follow options, every setting at its default. Never NULL. Free
/// with `betterpg_follow_options_free`.
#[no_mangle]
pub extern "C" fn betterpg_follow_options_new() -> *mut betterpg_follow_options {
    guard_value(std::ptr::null_mut(), || {
        betterpg_follow_options::into_handle(FollowOptionsC::default())
    })
}

/// Free follow options. NULL does nothing. Do not call it twice.
///
/// # Safety
/// `opts` is NULL or an owned `betterpg_follow_options`, not used
/// afterwards.
#[no_mangle]
pub unsafe extern "C" fn betterpg_follow_options_free(opts: *mut betterpg_follow_options) {
    // SAFETY: per the contract above.
    guard_value((), || unsafe { betterpg_follow_options::free(opts) })
}

/// A file whose first line is the password of the URL's role, for a URL
/// without one (else `PGPASSFILE` is looked up). NULL clears it.
///
/// # Safety
/// `opts` is NULL or a live `betterpg_follow_options`; `path` is NULL or a
/// NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn betterpg_follow_options_set_password_file(
    opts: *mut betterpg_follow_options,
    path: *const c_char,
) -> betterpg_result {
    guard("betterpg_follow_options_set_password_file", || {
        // SAFETY: per the contract above.
        let o = unsafe { betterpg_follow_options::get_mut(opts, "opts") }?;
        o.password_file = if path.is_null() {
            None
        } else {
            Some(unsafe { arg_str(path, "path") }?.into())
        };
        Ok(())
    })
}

/// A physical replication slot on the primary (created when missing, else
/// reused; a slot `follow` created is dropped with the replica). NULL
/// clears it. A name PostgreSQL would refuse (1-63 lower-case letters,
/// digits and underscores) fails with `BETTERPG_RESULT_CONFIG` when the
/// options are used, before anything is made.
///
/// # Safety
/// `opts` is NULL or a live `betterpg_follow_options`; `slot` is NULL or a
/// NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn betterpg_follow_options_set_slot(
    opts: *mut betterpg_follow_options,
    slot: *const c_char,
) -> betterpg_result {
    guard("betterpg_follow_options_set_slot", || {
        // SAFETY: per the contract above.
        let o = unsafe { betterpg_follow_options::get_mut(opts, "opts") }?;
        o.slot = if slot.is_null() {
            None
        } else {
            Some(unsafe { arg_str(slot, "slot") }?.to_string())
        };
        Ok(())
    })
}

/// Add a policy for the replica's branches, recorded with it at once, as
/// `betterpg_manager_configure` sets one (`key` e.g. `mask`, `mask_rules`,
/// `forbid_unmasked`, `credentials`; `value` in its string form; list keys
/// repeat). A bad key or value, or a masking file that is not there, fails
/// with `BETTERPG_RESULT_CONFIG` when the options are used, before
/// anything is made.
///
/// # Safety
/// `opts` is NULL or a live `betterpg_follow_options`; `key` and `value`
/// are NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn betterpg_follow_options_add_setting(
    opts: *mut betterpg_follow_options,
    key: *const c_char,
    value: *const c_char,
) -> betterpg_result {
    guard("betterpg_follow_options_add_setting", || {
        // SAFETY: per the contract above.
        let o = unsafe { betterpg_follow_options::get_mut(opts, "opts") }?;
        let key = unsafe { arg_str(key, "key") }?.to_string();
        let value = unsafe { arg_str(value, "value") }?.to_string();
        o.settings.push((key, value));
        Ok(())
    })
}

/// The local PostgreSQL bin directory to use (of the primary's major
/// version; another fails with `BETTERPG_RESULT_VERSION_MISMATCH`). NULL:
/// found for the primary's version (the default).
///
/// # Safety
/// `opts` is NULL or a live `betterpg_follow_options`; `dir` is NULL or a
/// NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn betterpg_follow_options_set_pg_bin(
    opts: *mut betterpg_follow_options,
    dir: *const c_char,
) -> betterpg_result {
    guard("betterpg_follow_options_set_pg_bin", || {
        // SAFETY: per the contract above.
        let o = unsafe { betterpg_follow_options::get_mut(opts, "opts") }?;
        o.pg_bin = if dir.is_null() {
            None
        } else {
            Some(unsafe { arg_str(dir, "dir") }?.into())
        };
        Ok(())
    })
}

/// Rebuild the existing replica instead of making one (`bpg follow NAME
/// --rebuild`): `betterpg_manager_follow` then takes a new base backup of
/// the current primary into a new dataset that takes the replica's place
/// (same name and port), while the branches of the old replica keep
/// running on its old data (kept until the last of them is destroyed). An
/// empty `from_url`, no password file and no slot: the stored ones. While
/// it runs, another rebuild, a branch or a named snapshot of the replica
/// is refused (`BETTERPG_RESULT_INVALID_STATE`), and it is refused while
/// one of those runs. A failure leaves the old replica as it was. `false`
/// (the default): make a new replica.
///
/// # Safety
/// `opts` is NULL or a live `betterpg_follow_options`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_follow_options_set_rebuild(
    opts: *mut betterpg_follow_options,
    rebuild: bool,
) -> betterpg_result {
    guard("betterpg_follow_options_set_rebuild", || {
        // SAFETY: per the contract above.
        let o = unsafe { betterpg_follow_options::get_mut(opts, "opts") }?;
        o.rebuild = rebuild;
        Ok(())
    })
}

/// Have `callback` called with the base backup's progress (see
/// `betterpg_follow_progress_fn`), with `user_data` as its last argument.
/// NULL `callback`: no progress (the default).
///
/// # Safety
/// `opts` is NULL or a live `betterpg_follow_options`; `callback`, when
/// not NULL, may be called from another thread with `user_data` for as
/// long as a `betterpg_manager_follow` given these options runs.
#[no_mangle]
pub unsafe extern "C" fn betterpg_follow_options_set_progress(
    opts: *mut betterpg_follow_options,
    callback: betterpg_follow_progress_fn,
    user_data: *mut c_void,
) -> betterpg_result {
    guard("betterpg_follow_options_set_progress", || {
        // SAFETY: per the contract above.
        let o = unsafe { betterpg_follow_options::get_mut(opts, "opts") }?;
        o.progress = callback.map(|f| Progress { f, user_data });
        Ok(())
    })
}

/// Follow the primary at `from_url` (a libpq URL or key=value string for a
/// role with `REPLICATION`; the password in it, in the options' password
/// file, or in `PGPASSFILE`, stored 0600 and never printed) as the replica
/// `name`: a base backup into its own dataset, started as a streaming
/// standby on its own port (kind "replica"). `opts` NULL: the defaults.
///
/// On success, when `out_info` is not NULL, `*out_info` receives the
/// replica's info, owned by the caller (`betterpg_info_free`). A failure
/// leaves nothing (no dataset, catalog entry, password file, process, or
/// slot that this call created): `BETTERPG_RESULT_POSTGRES` when the
/// primary is unreachable or refuses (the server's message; SQLSTATE
/// `28P01` password, `28000` pg_hba.conf, `42501` no REPLICATION, none
/// when it did not answer), `BETTERPG_RESULT_VERSION_MISMATCH` when the
/// binaries of its major version are missing here (the message names the
/// version to install), `BETTERPG_RESULT_NO_SPACE` when the pool fills
/// during the base backup, `BETTERPG_RESULT_CONFIG` for a URL or slot
/// name that is not valid, `BETTERPG_RESULT_ALREADY_EXISTS` when the name
/// is taken. With `betterpg_follow_options_set_rebuild`: the replica
/// `name` is rebuilt instead (`from_url` may be "" for the stored URL);
/// `*out_info` is the rebuilt replica.
///
/// # Safety
/// `manager` is NULL or a live `betterpg_manager`; `name` and `from_url`
/// are NULL or NUL-terminated strings; `opts` is NULL or a live
/// `betterpg_follow_options`; `out_info` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn betterpg_manager_follow(
    manager: *const betterpg_manager,
    name: *const c_char,
    from_url: *const c_char,
    opts: *const betterpg_follow_options,
    out_info: *mut *mut betterpg_info,
) -> betterpg_result {
    guard("betterpg_manager_follow", || {
        // SAFETY: per the contract above.
        let m = unsafe { betterpg_manager::get(manager, "manager") }?;
        let name = unsafe { arg_str(name, "name") }?;
        let from = unsafe { arg_str(from_url, "from_url") }?;
        let o = unsafe { betterpg_follow_options::get_opt(opts) };
        let opts = o.map_or_else(|| FollowOptions::new(from), |o| o.to_core(from));
        let report = m.inner.follow(name, opts)?;
        // SAFETY: NULL or valid for writes per the contract.
        unsafe { write_info_opt(out_info, &report.replica) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::sync::atomic::{AtomicU64, Ordering};

    unsafe extern "C" fn count(done: u64, _total: u64, _rate: f64, data: *mut c_void) {
        // SAFETY: the test passes a live AtomicU64.
        unsafe { &*(data as *const AtomicU64) }.store(done, Ordering::SeqCst);
    }

    #[test]
    fn options_are_handed_over_as_set() {
        let o = betterpg_follow_options_new();
        let slot = CString::new("bpg_r").unwrap();
        let pw = CString::new("/pw").unwrap();
        let seen = AtomicU64::new(0);
        unsafe {
            assert_eq!(
                betterpg_follow_options_set_slot(o, slot.as_ptr()),
                betterpg_result::Ok
            );
            assert_eq!(
                betterpg_follow_options_set_password_file(o, pw.as_ptr()),
                betterpg_result::Ok
            );
            assert_eq!(
                betterpg_follow_options_set_progress(
                    o,
                    Some(count),
                    &seen as *const AtomicU64 as *mut c_void
                ),
                betterpg_result::Ok
            );
            let (k, v) = (
                CString::new("mask").unwrap(),
                CString::new("/m.sql").unwrap(),
            );
            assert_eq!(
                betterpg_follow_options_add_setting(o, k.as_ptr(), v.as_ptr()),
                betterpg_result::Ok
            );
            assert_eq!(
                betterpg_follow_options_add_setting(o, std::ptr::null(), v.as_ptr()),
                betterpg_result::NullParameter
            );
            let core = betterpg_follow_options::get(o, "o").unwrap().to_core("u");
            assert_eq!(
                core.settings,
                vec![("mask".to_string(), "/m.sql".to_string())]
            );
            assert_eq!(core.slot.as_deref(), Some("bpg_r"));
            assert_eq!(core.password_file, Some("/pw".into()));
            assert_eq!(core.pg_bin, None);
            assert!(!core.rebuild);
            assert_eq!(
                betterpg_follow_options_set_rebuild(o, true),
                betterpg_result::Ok
            );
            assert!(
                betterpg_follow_options::get(o, "o")
                    .unwrap()
                    .to_core("")
                    .rebuild
            );
            assert_eq!(
                betterpg_follow_options_set_rebuild(std::ptr::null_mut(), true),
                betterpg_result::NullParameter
            );
            (core.progress.unwrap())(FollowProgress {
                bytes_done: 7,
                bytes_total: 9,
                bytes_per_sec: 1.0,
            });
            assert_eq!(seen.load(Ordering::SeqCst), 7);
            assert_eq!(
                betterpg_follow_options_set_slot(o, std::ptr::null()),
                betterpg_result::Ok
            );
            assert!(betterpg_follow_options::get(o, "o").unwrap().slot.is_none());
            assert_eq!(
                betterpg_follow_options_set_slot(std::ptr::null_mut(), slot.as_ptr()),
                betterpg_result::NullParameter
            );
            betterpg_follow_options_free(o);
        }
    }
}
