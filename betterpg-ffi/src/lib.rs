//! # betterpg-ffi: the C ABI of betterpg
//!
//! A thin layer over [`betterpg_core::blocking::BranchManager`], with no
//! logic of its own. The header `include/betterpg.h` is generated from this
//! crate by cbindgen (see `cbindgen.toml`; `scripts/test-ffi.sh` checks it
//! is up to date). Conventions, as in rustls-ffi:
//!
//! - Opaque handles (`betterpg_manager`, `betterpg_info`,
//!   `betterpg_info_list`, `betterpg_branch_report`, `betterpg_gc_report`,
//!   `betterpg_doctor_report`, `betterpg_rewind_report`, `betterpg_log_follower`,
//!   and the options builders `betterpg_init_options`,
//!   `betterpg_create_options`, `betterpg_branch_options`), made by
//!   `_new`/`_open`/`_init` or returned through out-parameters, released by
//!   their `_free` (NULL is a no-op; never free twice). Ownership is in the
//!   type: a `T *` is owned by the caller and freed by `T`'s `_free`; a
//!   `const T *` returned by a getter is borrowed from its owner and never
//!   freed; a `const T *` argument is only read.
//! - Options are builder handles, never positional parameters: a new
//!   option is a new setter, so no signature changes when betterpg grows.
//! - Every fallible function returns a [`betterpg_result`]; out-parameters
//!   are written only on success; NULL pointers are rejected with
//!   `BETTERPG_RESULT_NULL_PARAMETER`; panics are caught and returned as
//!   `BETTERPG_RESULT_PANIC`.
//! - The message of the last failure is thread-local:
//!   [`betterpg_last_error_message`].
//! - Strings are UTF-8 and NUL-terminated. Strings returned through a
//!   `char **` out-parameter are owned by the caller
//!   ([`betterpg_string_free`]); `const char *` returned by getters are
//!   borrowed from their handle.
//! - `fork()`: fork only while no call runs on another thread, and in the
//!   child never use or free a manager made before the fork (see the
//!   header's conventions and [`betterpg_core::blocking::fork`]).

#![warn(missing_docs)]
#![allow(non_camel_case_types)]

pub mod doctor;
pub mod follow;
pub mod gc;
pub mod info;
pub mod logs;
pub mod manager;
pub mod options;
pub mod protect;
pub mod result;
pub mod rewind;
pub mod snapshot;

use std::ffi::{c_char, CString};

pub use doctor::betterpg_doctor_report;
pub use follow::{betterpg_follow_options, betterpg_follow_progress_fn};
pub use gc::betterpg_gc_report;
pub use info::{betterpg_branch_report, betterpg_info, betterpg_info_list};
pub use logs::betterpg_log_follower;
pub use manager::{betterpg_manager, betterpg_pool_usage};
pub use options::{
    betterpg_branch_options, betterpg_create_options, betterpg_init_options, betterpg_mode,
    BETTERPG_MODE_APPLICATION_CONSISTENT, BETTERPG_MODE_CRASH_CONSISTENT,
};
pub use result::betterpg_result;
pub use rewind::betterpg_rewind_report;

/// Major part of the version (the header also has the string
/// `BETTERPG_VERSION`, e.g. "0.1.0").
pub const BETTERPG_VERSION_MAJOR: u32 = 0;
/// Minor part of `BETTERPG_VERSION`.
pub const BETTERPG_VERSION_MINOR: u32 = 1;
/// Patch part of `BETTERPG_VERSION`.
pub const BETTERPG_VERSION_PATCH: u32 = 0;
/// The version as one comparable number: major * 10000 + minor * 100
/// + patch.
pub const BETTERPG_VERSION_NUMBER: u32 =
    BETTERPG_VERSION_MAJOR * 10000 + BETTERPG_VERSION_MINOR * 100 + BETTERPG_VERSION_PATCH;

/// The version of the loaded library, e.g. "0.1.0" (static string, do not
/// free). Compare it with `BETTERPG_VERSION` to detect a header/library
/// mismatch.
#[no_mangle]
pub extern "C" fn betterpg_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// Short stable name of a result code: "ok", "not_found",
/// "null_parameter", ... (the core's kind names for codes 1-999);
/// "unknown" for a value that is no result code. Static string, do not
/// free.
#[no_mangle]
pub extern "C" fn betterpg_result_name(result: u32) -> *const c_char {
    betterpg_result::from_u32(result).map_or(c"unknown".as_ptr(), |r| r.name().as_ptr())
}

/// The message of the last failure on the calling thread: what went wrong
/// and what to do, in English (UTF-8). NULL when the last fallible betterpg
/// call on this thread succeeded (every function returning a
/// `betterpg_result` first clears it; getters and `_free` functions leave it
/// alone).
///
/// The string is owned by the library and stays valid until the next call
/// of a betterpg function returning a `betterpg_result` on the same thread;
/// copy it to keep it. Do not free it.
#[no_mangle]
pub extern "C" fn betterpg_last_error_message() -> *const c_char {
    result::guard_value(std::ptr::null(), result::last_error_ptr)
}

/// The SQLSTATE of the last failure on the calling thread when it was
/// PostgreSQL's answer (a `BETTERPG_RESULT_POSTGRES`, e.g. "28P01": the
/// server refused the password; class "28" is every refused
/// authorization), NULL otherwise. Decide on it, not on the message. Valid
/// as long as `betterpg_last_error_message()`'s string; do not free it.
#[no_mangle]
pub extern "C" fn betterpg_last_error_sqlstate() -> *const c_char {
    result::guard_value(std::ptr::null(), result::last_error_sqlstate_ptr)
}

/// A finer, stable reason within the last failure's result code, NULL when
/// its code has none: for `BETTERPG_RESULT_ZFS` "busy", "no_space",
/// "unavailable" (ZFS not running) or "other"; for `BETTERPG_RESULT_PORT`
/// "taken" or "exhausted" (none free in the range); for
/// `BETTERPG_RESULT_RUNTIME` "port_in_use" (the server could not listen on
/// its port), "resources" (the machine lacks memory, processes or files for
/// another server) or "other". New reasons may be added: treat an unknown one as
/// "other". Valid as long as `betterpg_last_error_message()`'s string; do
/// not free it.
#[no_mangle]
pub extern "C" fn betterpg_last_error_reason() -> *const c_char {
    result::guard_value(std::ptr::null(), result::last_error_reason_ptr)
}

/// Free a string returned by betterpg through a `char **` out-parameter
/// (`betterpg_manager_url`, `betterpg_manager_logs`). NULL does nothing. Do
/// not call it twice, nor on strings returned by getters (those are
/// borrowed).
///
/// # Safety
/// `s` is NULL or a string returned through a betterpg `char **`
/// out-parameter, not freed yet and not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn betterpg_string_free(s: *mut c_char) {
    result::guard_value((), || {
        if !s.is_null() {
            // SAFETY: made by `CString::into_raw` in this library, per the
            // contract above; ownership comes back once.
            drop(unsafe { CString::from_raw(s) });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::{guard, Failure};
    use betterpg_core::{Error, ErrorKind};
    use std::collections::HashSet;
    use std::ffi::CStr;
    use std::ptr;

    fn cstr<'a>(p: *const c_char) -> &'a str {
        assert!(!p.is_null());
        unsafe { CStr::from_ptr(p) }.to_str().unwrap()
    }

    fn last_error() -> Option<String> {
        let p = betterpg_last_error_message();
        (!p.is_null()).then(|| cstr(p).to_string())
    }

    #[test]
    fn every_core_code_maps_to_a_distinct_result_with_the_same_value_and_name() {
        let mut seen = HashSet::new();
        for kind in ErrorKind::ALL {
            let code = kind.code();
            let r = betterpg_result::from_core_code(code)
                .unwrap_or_else(|| panic!("core code {code} ({kind:?}) has no betterpg_result"));
            assert!(seen.insert(r), "{r:?} used for two core codes");
            assert_eq!(r as u32, code, "{kind:?}: same number as the core");
            assert_eq!(r.name().to_str().unwrap(), kind.name());
            assert_eq!(cstr(betterpg_result_name(code)), kind.name());
            assert!(code > 0 && code < 1000, "core codes stay in 1-999");
        }
        // Binding codes are distinct from the core's and from each other.
        for r in [
            betterpg_result::Ok,
            betterpg_result::NullParameter,
            betterpg_result::InvalidUtf8,
            betterpg_result::InvalidArgument,
            betterpg_result::Panic,
        ] {
            assert!(seen.insert(r), "{r:?} reused");
            assert_eq!(betterpg_result::from_u32(r as u32), Some(r));
            assert!(r == betterpg_result::Ok || r as u32 >= 1000);
        }
        assert_eq!(cstr(betterpg_result_name(0)), "ok");
        assert_eq!(cstr(betterpg_result_name(1003)), "panic");
        assert_eq!(cstr(betterpg_result_name(424242)), "unknown");
        assert_eq!(cstr(betterpg_result_name(98)), "unknown");
    }

    #[test]
    fn the_header_names_every_core_kind_as_the_core_defines_it() {
        // cbindgen names the constants from the enum's variants; the core's
        // one definition says what each must be called.
        let header = include_str!("../include/betterpg.h");
        for kind in ErrorKind::ALL {
            let line = format!("  {} = {},", kind.c_constant(), kind.code());
            assert!(
                header.lines().any(|l| l == line),
                "include/betterpg.h lacks {line:?}: name the betterpg_result variant after the kind ({:?}) and regenerate the header",
                kind.name()
            );
        }
    }

    #[test]
    fn the_last_error_carries_sqlstate_and_reason_from_the_fields() {
        let sqlstate = || {
            let p = betterpg_last_error_sqlstate();
            (!p.is_null()).then(|| cstr(p).to_string())
        };
        let reason = || {
            let p = betterpg_last_error_reason();
            (!p.is_null()).then(|| cstr(p).to_string())
        };
        let pg = Error::Postgres {
            sqlstate: Some("28P01".into()),
            message: "password authentication failed".into(),
            detail: None,
        };
        assert_eq!(guard("f", || Err(pg.into())), betterpg_result::Postgres);
        assert_eq!(sqlstate().as_deref(), Some("28P01"));
        assert_eq!(reason(), None);
        let busy = Error::zfs_failure(
            betterpg_core::ZfsErrorKind::Busy,
            "zfs destroy t/x",
            "t/x",
            "dataset is busy",
            "m",
        );
        assert_eq!(guard("f", || Err(busy.into())), betterpg_result::Zfs);
        assert_eq!(last_error().as_deref(), Some("zfs: m"));
        assert_eq!((sqlstate(), reason().as_deref()), (None, Some("busy")));
        assert_eq!(guard("f", || Ok(())), betterpg_result::Ok);
        assert_eq!((last_error(), sqlstate(), reason()), (None, None, None));
        assert_eq!(
            guard("f", || Err(Failure::Null("x"))),
            betterpg_result::NullParameter
        );
        assert_eq!((sqlstate(), reason()), (None, None));
    }

    #[test]
    fn version_constants_match_the_crate() {
        // The string macro is written in cbindgen.toml (cbindgen cannot
        // emit string constants).
        let toml = include_str!("../cbindgen.toml");
        let define = format!("#define BETTERPG_VERSION \"{}\"", env!("CARGO_PKG_VERSION"));
        assert!(
            toml.contains(&define),
            "cbindgen.toml must contain {define}"
        );
        assert_eq!(
            BETTERPG_VERSION_MAJOR.to_string(),
            env!("CARGO_PKG_VERSION_MAJOR")
        );
        assert_eq!(
            BETTERPG_VERSION_MINOR.to_string(),
            env!("CARGO_PKG_VERSION_MINOR")
        );
        assert_eq!(
            BETTERPG_VERSION_PATCH.to_string(),
            env!("CARGO_PKG_VERSION_PATCH")
        );
        assert_eq!(cstr(betterpg_version()), env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn guard_maps_failures_and_panics_and_clears_the_last_error() {
        let r = guard("f", || Err(Error::Config("bad".into()).into()));
        assert_eq!(r, betterpg_result::Config);
        assert_eq!(last_error().unwrap(), "configuration error: bad");
        assert_eq!(guard("f", || Ok(())), betterpg_result::Ok);
        assert_eq!(last_error(), None);
        let r = guard("f", || panic!("boom {}", 42));
        assert_eq!(r, betterpg_result::Panic);
        let msg = last_error().unwrap();
        assert!(msg.contains("f: panic") && msg.contains("boom 42"), "{msg}");
        let r = guard("f", || Err(Failure::Null("name")));
        assert_eq!(r, betterpg_result::NullParameter);
        assert_eq!(last_error().unwrap(), "f: argument `name` is NULL");
        let r = guard("f", || Err(Failure::Arg("a\0b".into())));
        assert_eq!(r, betterpg_result::InvalidArgument);
        assert_eq!(last_error().unwrap(), "f: a\u{FFFD}b");
    }

    #[test]
    fn null_arguments_are_rejected_and_outputs_untouched() {
        unsafe {
            let sentinel = ptr::dangling_mut::<betterpg_manager>();
            let mut out = sentinel;
            assert_eq!(
                manager::betterpg_manager_open(ptr::null(), &mut out),
                betterpg_result::NullParameter
            );
            assert_eq!(out, sentinel);
            assert!(last_error().unwrap().contains("`home`"));
            assert_eq!(
                manager::betterpg_manager_open(c"/nonexistent".as_ptr(), ptr::null_mut()),
                betterpg_result::NullParameter
            );
            assert_eq!(
                manager::betterpg_manager_create(
                    ptr::null(),
                    c"x".as_ptr(),
                    ptr::null(),
                    ptr::null_mut()
                ),
                betterpg_result::NullParameter
            );
            assert_eq!(
                manager::betterpg_manager_branch(
                    ptr::null(),
                    c"x".as_ptr(),
                    c"y".as_ptr(),
                    ptr::null(),
                    ptr::null_mut()
                ),
                betterpg_result::NullParameter
            );
            assert_eq!(
                manager::betterpg_manager_destroy(ptr::null(), c"x".as_ptr(), false),
                betterpg_result::NullParameter
            );
            // Getters and frees accept NULL.
            assert!(info::betterpg_info_name(ptr::null()).is_null());
            assert_eq!(info::betterpg_info_port(ptr::null()), 0);
            assert_eq!(info::betterpg_info_list_len(ptr::null()), 0);
            assert!(info::betterpg_info_list_get(ptr::null(), 0).is_null());
            assert_eq!(info::betterpg_branch_report_step_count(ptr::null()), 0);
            assert!(!info::betterpg_info_rewindable(ptr::null()));
            assert_eq!(info::betterpg_info_owner_pid(ptr::null()), 0);
            assert!(rewind::betterpg_rewind_report_branch(ptr::null()).is_null());
            assert!(rewind::betterpg_rewind_report_snapshot(ptr::null()).is_null());
            assert_eq!(rewind::betterpg_rewind_report_step_count(ptr::null()), 0);
            assert_eq!(
                rewind::betterpg_rewind_report_total_millis(ptr::null()),
                0.0
            );
            let (mut step, mut ms) = (ptr::null(), 0.0);
            assert_eq!(
                rewind::betterpg_rewind_report_step(ptr::null(), 0, &mut step, &mut ms),
                betterpg_result::NullParameter
            );
            let mut report = ptr::dangling_mut::<betterpg_rewind_report>();
            assert_eq!(
                rewind::betterpg_manager_rewind(ptr::null(), c"x".as_ptr(), &mut report),
                betterpg_result::NullParameter
            );
            assert_eq!(report, ptr::dangling_mut());
            rewind::betterpg_rewind_report_free(ptr::null_mut());
            manager::betterpg_manager_free(ptr::null_mut());
            info::betterpg_info_free(ptr::null_mut());
            info::betterpg_info_list_free(ptr::null_mut());
            info::betterpg_branch_report_free(ptr::null_mut());
            options::betterpg_init_options_free(ptr::null_mut());
            options::betterpg_branch_options_free(ptr::null_mut());
            options::betterpg_create_options_free(ptr::null_mut());
            betterpg_string_free(ptr::null_mut());
        }
    }

    #[test]
    fn invalid_utf8_is_rejected() {
        let bad = [0xffu8, 0xfe, 0];
        let mut out = ptr::null_mut();
        let r = unsafe { manager::betterpg_manager_open(bad.as_ptr().cast(), &mut out) };
        assert_eq!(r, betterpg_result::InvalidUtf8);
        assert!(out.is_null());
    }

    #[test]
    fn open_of_an_uninitialised_home_fails_with_not_initialized() {
        let dir = std::env::temp_dir().join(format!("betterpg-ffi-unit-{}", std::process::id()));
        let home = CString::new(dir.to_str().unwrap()).unwrap();
        let mut out = ptr::null_mut();
        let r = unsafe { manager::betterpg_manager_open(home.as_ptr(), &mut out) };
        assert_eq!(r, betterpg_result::NotInitialized);
        assert!(out.is_null());
        assert!(last_error().unwrap().contains("not initialised"));
    }

    #[test]
    fn init_options_are_checked() {
        unsafe {
            let o = options::betterpg_init_options_new();
            assert!(!o.is_null());
            assert_eq!(
                options::betterpg_init_options_set_port_range(o, 0, 10),
                betterpg_result::InvalidArgument
            );
            assert_eq!(
                options::betterpg_init_options_set_port_range(o, 11, 10),
                betterpg_result::InvalidArgument
            );
            assert_eq!(
                options::betterpg_init_options_set_port_range(o, 10, 10),
                betterpg_result::Ok
            );
            assert_eq!(
                options::betterpg_init_options_set_pool_file(o, ptr::null(), 1, c"p".as_ptr()),
                betterpg_result::NullParameter
            );
            assert_eq!(
                options::betterpg_init_options_set_pool_file(o, c"/f".as_ptr(), 0, c"p".as_ptr()),
                betterpg_result::InvalidArgument
            );
            // No storage yet: init refuses before touching anything.
            let mut m = ptr::null_mut();
            assert_eq!(
                manager::betterpg_manager_init(c"/nonexistent-home".as_ptr(), o, &mut m),
                betterpg_result::InvalidArgument
            );
            assert!(m.is_null());
            assert!(last_error().unwrap().contains("no storage"));
            options::betterpg_init_options_free(o);
        }
    }

    #[test]
    fn modes() {
        use betterpg_core::{BranchOptions, Mode};
        use options::mode_of;
        assert_eq!(
            mode_of(BETTERPG_MODE_APPLICATION_CONSISTENT).unwrap(),
            Mode::ApplicationConsistent
        );
        assert_eq!(
            mode_of(BETTERPG_MODE_CRASH_CONSISTENT).unwrap(),
            Mode::CrashConsistent
        );
        assert!(matches!(mode_of(2), Err(Failure::Arg(_))));
        // The default of the core is the default of C (0).
        assert_eq!(
            mode_of(0).unwrap(),
            BranchOptions::default().mode,
            "mode 0 must stay the core's default"
        );
    }

    #[test]
    fn branch_options_are_built_checked_and_read_not_consumed() {
        use betterpg_core::{BranchOptions, Mode};
        use options::*;
        unsafe {
            // NULL: the core's defaults.
            let d = branch_options(ptr::null());
            assert_eq!(d.mode, BranchOptions::default().mode);
            assert_eq!((d.quota, d.runtime, d.image), (None, None, None));
            let o = betterpg_branch_options_new();
            assert!(!o.is_null());
            let fresh = branch_options(o);
            assert_eq!(fresh.mode, BranchOptions::default().mode);
            assert_eq!(
                betterpg_branch_options_set_mode(o, BETTERPG_MODE_CRASH_CONSISTENT),
                betterpg_result::Ok
            );
            // A bad mode is refused and changes nothing.
            assert_eq!(
                betterpg_branch_options_set_mode(o, 7),
                betterpg_result::InvalidArgument
            );
            assert!(last_error()
                .unwrap()
                .contains("BETTERPG_MODE_CRASH_CONSISTENT"));
            assert_eq!(
                betterpg_branch_options_set_quota(o, 1 << 30),
                betterpg_result::Ok
            );
            assert_eq!(
                betterpg_branch_options_set_runtime(o, c"docker".as_ptr()),
                betterpg_result::Ok
            );
            assert_eq!(
                betterpg_branch_options_set_image(o, c"postgres:16".as_ptr()),
                betterpg_result::Ok
            );
            assert_eq!(
                betterpg_branch_options_set_image(o, ptr::null()),
                betterpg_result::NullParameter
            );
            assert_eq!(
                betterpg_branch_options_set_runtime(o, [0xffu8, 0].as_ptr().cast()),
                betterpg_result::InvalidUtf8
            );
            assert_eq!(
                betterpg_branch_options_set_mode(ptr::null_mut(), 0),
                betterpg_result::NullParameter
            );
            let b = branch_options(o);
            assert_eq!(b.mode, Mode::CrashConsistent);
            assert_eq!(b.quota, Some(1 << 30));
            assert_eq!(b.runtime.as_deref(), Some("docker"));
            assert_eq!(b.image.as_deref(), Some("postgres:16"));
            // Reading does not consume: the handle still holds them.
            assert_eq!(branch_options(o).quota, Some(1 << 30));
            // 0 clears the quota.
            assert_eq!(betterpg_branch_options_set_quota(o, 0), betterpg_result::Ok);
            assert_eq!(branch_options(o).quota, None);
            // Masking: files in order, schema-only, unmasked.
            for f in [c"a.sql", c"dir"] {
                assert_eq!(
                    betterpg_branch_options_add_mask(o, f.as_ptr()),
                    betterpg_result::Ok
                );
            }
            assert_eq!(
                betterpg_branch_options_add_mask(o, ptr::null()),
                betterpg_result::NullParameter
            );
            assert_eq!(
                betterpg_branch_options_add_mask_rules(o, c"rules.toml".as_ptr()),
                betterpg_result::Ok
            );
            assert_eq!(
                betterpg_branch_options_add_mask_rules(o, ptr::null()),
                betterpg_result::NullParameter
            );
            assert_eq!(
                betterpg_branch_options_set_schema_only(o, true),
                betterpg_result::Ok
            );
            assert_eq!(
                betterpg_branch_options_set_unmasked(o, true),
                betterpg_result::Ok
            );
            assert!(!fresh.rewindable, "not rewindable by default");
            assert_eq!(
                betterpg_branch_options_set_rewindable(o, true),
                betterpg_result::Ok
            );
            assert_eq!(
                betterpg_branch_options_set_rewindable(ptr::null_mut(), true),
                betterpg_result::NullParameter
            );
            assert!(fresh.owner_pid.is_none(), "no owner by default");
            assert_eq!(
                betterpg_branch_options_set_owner_pid(o, 42),
                betterpg_result::Ok
            );
            assert_eq!(
                betterpg_branch_options_set_owner_pid(ptr::null_mut(), 42),
                betterpg_result::NullParameter
            );
            let m = branch_options(o);
            assert!(m.rewindable);
            assert_eq!(m.owner_pid, Some(42));
            assert_eq!(
                m.mask,
                vec![std::path::PathBuf::from("a.sql"), "dir".into()]
            );
            assert!(m.schema_only && m.unmasked);
            assert_eq!(m.mask_rules, vec![std::path::PathBuf::from("rules.toml")]);
            betterpg_branch_options_free(o);
        }
    }

    #[test]
    fn create_options_are_built_and_checked() {
        use options::*;
        unsafe {
            let d = create_options(ptr::null());
            assert_eq!(
                (d.pg_bin, d.pg_version, d.runtime, d.image),
                (None, None, None, None)
            );
            let o = betterpg_create_options_new();
            assert!(!o.is_null());
            assert_eq!(
                betterpg_create_options_set_pg_bin(o, c"/usr/lib/postgresql/16/bin".as_ptr()),
                betterpg_result::Ok
            );
            assert_eq!(
                betterpg_create_options_set_pg_version(o, 16),
                betterpg_result::Ok
            );
            assert_eq!(
                betterpg_create_options_set_runtime(o, c"docker".as_ptr()),
                betterpg_result::Ok
            );
            assert_eq!(
                betterpg_create_options_set_image(o, c"postgres:16".as_ptr()),
                betterpg_result::Ok
            );
            for r in [
                betterpg_create_options_set_pg_bin(o, ptr::null()),
                betterpg_create_options_set_runtime(o, ptr::null()),
                betterpg_create_options_set_image(o, ptr::null()),
                betterpg_create_options_set_pg_version(ptr::null_mut(), 15),
            ] {
                assert_eq!(r, betterpg_result::NullParameter);
            }
            let c = create_options(o);
            assert_eq!(
                c.pg_bin.as_deref(),
                Some(std::path::Path::new("/usr/lib/postgresql/16/bin"))
            );
            assert_eq!(c.pg_version, Some(16));
            assert_eq!(c.runtime.as_deref(), Some("docker"));
            assert_eq!(c.image.as_deref(), Some("postgres:16"));
            assert_eq!(
                betterpg_create_options_set_pg_version(o, 0),
                betterpg_result::Ok
            );
            assert_eq!(create_options(o).pg_version, None);
            betterpg_create_options_free(o);
        }
    }

    #[test]
    fn strings_round_trip() {
        let s = CString::new("postgresql://x").unwrap().into_raw();
        unsafe { betterpg_string_free(s) };
    }
}
