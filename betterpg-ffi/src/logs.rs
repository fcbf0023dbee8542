//! `betterpg_log_follower`: a server's log as the server writes it, over
//! `betterpg_core::blocking::LogFollower`.

use std::ffi::{c_char, CString};
use std::sync::Mutex;
use std::time::Duration;

use betterpg_core::blocking::{LogEvent, LogFollower};

use crate::manager::betterpg_manager;
use crate::result::{arg_out, arg_str, betterpg_result, guard, guard_value, write_out};
use crate::result::{Failure, Opaque};

/// A followed server log, made by `betterpg_manager_follow_logs`; free with
/// `betterpg_log_follower_free` (which stops following). Independent of
/// its manager's lifetime. One thread at a time may call
/// `betterpg_log_follower_next` on it (others wait).
pub struct betterpg_log_follower {
    _private: [u8; 0],
}

impl Opaque for betterpg_log_follower {
    type Inner = Mutex<LogFollower>;
}

/// Follow the server log of `name`: its last `tail_lines` lines (0: all)
/// come first, then what the server writes, as it writes it
/// (`betterpg_log_follower_next`). A native server's log never ends; a
/// container's ends when the container stops.
///
/// On success `*out_follower` receives the follower, owned by the caller
/// (`betterpg_log_follower_free`).
///
/// # Safety
/// `manager` is NULL or a live `betterpg_manager`; `name` is NULL or a
/// NUL-terminated string; `out_follower` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn betterpg_manager_follow_logs(
    manager: *const betterpg_manager,
    name: *const c_char,
    tail_lines: usize,
    out_follower: *mut *mut betterpg_log_follower,
) -> betterpg_result {
    guard("betterpg_manager_follow_logs", || {
        // SAFETY: per the contract above.
        let m = unsafe { betterpg_manager::get(manager, "manager") }?;
        let name = unsafe { arg_str(name, "name") }?;
        let out = arg_out(out_follower, "out_follower")?;
        let tail = (tail_lines > 0).then_some(tail_lines);
        let f = m.inner.follow_logs(name, tail)?;
        // SAFETY: checked non-NULL, valid for writes per the contract.
        unsafe { write_out(out, betterpg_log_follower::into_handle(Mutex::new(f))) };
        Ok(())
    })
}

/// The next chunk of the log, waiting at most `timeout_ms` milliseconds.
///
/// On success `*out_chunk` receives the text written (not necessarily
/// whole lines; a NUL byte in it becomes U+FFFD), owned by the caller
/// (`betterpg_string_free`), or NULL when nothing came in time or the log
/// ended; `*out_ended` is true once the log ended (a container stopped:
/// nothing more will come).
///
/// # Safety
/// `follower` is NULL or a live `betterpg_log_follower`; `out_chunk` and
/// `out_ended` are NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn betterpg_log_follower_next(
    follower: *const betterpg_log_follower,
    timeout_ms: u32,
    out_chunk: *mut *mut c_char,
    out_ended: *mut bool,
) -> betterpg_result {
    guard("betterpg_log_follower_next", || {
        // SAFETY: per the contract above.
        let f = unsafe { betterpg_log_follower::get(follower, "follower") }?;
        let out_chunk = arg_out(out_chunk, "out_chunk")?;
        let out_ended = arg_out(out_ended, "out_ended")?;
        let event = f
            .lock()
            .map_err(|_| {
                Failure::Core(betterpg_core::Error::Internal(
                    "the log follower panicked in another thread".into(),
                ))
            })?
            .next_within(Duration::from_millis(timeout_ms.into()))?;
        let (chunk, ended) = match event {
            LogEvent::Chunk(b) => {
                let text = String::from_utf8_lossy(&b).replace('\0', "\u{FFFD}");
                (CString::new(text).unwrap_or_default().into_raw(), false)
            }
            LogEvent::Idle => (std::ptr::null_mut(), false),
            LogEvent::Ended => (std::ptr::null_mut(), true),
        };
        // SAFETY: both checked non-NULL, valid for writes per the contract.
        unsafe {
            write_out(out_chunk, chunk);
            write_out(out_ended, ended);
        }
        Ok(())
    })
}

/// Stop following and free the follower. NULL does nothing. Do not call
/// it twice.
///
/// # Safety
/// `follower` is NULL or an owned `betterpg_log_follower`, not used
/// afterwards.
#[no_mangle]
pub unsafe extern "C" fn betterpg_log_follower_free(follower: *mut betterpg_log_follower) {
    // SAFETY: per the contract above.
    guard_value((), || unsafe { betterpg_log_follower::free(follower) })
}
