//! `betterpg_init_options`: what `betterpg_manager_init` needs to set up a
//! new home.

use std::ffi::c_char;
use std::path::PathBuf;

use betterpg_core::{InitOptions, InitStorage};

use crate::result::{arg_str, betterpg_result, guard, guard_value, Failure, Opaque};

/// Options for `betterpg_manager_init`. Made by `betterpg_init_options_new`,
/// filled by the `betterpg_init_options_set_*` functions (storage is
/// required: `_set_pool_file` or `_set_dataset`), freed with
/// `betterpg_init_options_free`.
pub struct betterpg_init_options {
    _private: [u8; 0],
}

/// The Rust value behind a `betterpg_init_options`.
#[derive(Debug, Clone, Default)]
pub(crate) struct InitOptionsC {
    storage: Option<InitStorage>,
    pg_bin: Option<PathBuf>,
    os_user: Option<String>,
    listen_address: Option<String>,
    port_range: Option<(u16, u16)>,
    branch_headroom_percent: Option<u8>,
    branch_reserve: Option<u64>,
    docker_memory: Option<u64>,
    docker_pids: Option<u64>,
    zfs_properties: Vec<(String, String)>,
}

impl Opaque for betterpg_init_options {
    type Inner = InitOptionsC;
}

impl InitOptionsC {
    /// The core options, or why they are incomplete.
    pub(crate) fn to_core(&self) -> Result<InitOptions, Failure> {
        let storage = self.storage.clone().ok_or_else(|| {
            Failure::Arg(
                "the options name no storage: call betterpg_init_options_set_pool_file or betterpg_init_options_set_dataset first".into(),
            )
        })?;
        Ok(InitOptions {
            storage,
            pg_bin: self.pg_bin.clone(),
            os_user: self.os_user.clone(),
            listen_address: self.listen_address.clone(),
            port_range: self.port_range,
            branch_headroom_percent: self.branch_headroom_percent,
            branch_reserve: self.branch_reserve,
            docker_memory: self.docker_memory,
            docker_pids: self.docker_pids,
            zfs_properties: self.zfs_properties.clone(),
        })
    }
}

/// New empty options (no storage yet; every other setting at its default).
/// Never NULL. Free with `betterpg_init_options_free`.
#[no_mangle]
pub extern "C" fn betterpg_init_options_new() -> *mut betterpg_init_options {
    guard_value(std::ptr::null_mut(), || {
        betterpg_init_options::into_handle(InitOptionsC::default())
    })
}

/// Free options. NULL does nothing. Do not call it twice.
///
/// # Safety
/// `opts` is NULL or an owned `betterpg_init_options`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn betterpg_init_options_free(opts: *mut betterpg_init_options) {
    // SAFETY: per the contract above.
    guard_value((), || unsafe { betterpg_init_options::free(opts) })
}

/// Store databases in a new ZFS pool named `pool` on the file `pool_file`
/// (created sparse, `size_bytes` long; at least 64 MiB). `pool` follows the
/// name rules (ASCII letters, digits, '-', '_'). Replaces any storage set
/// before.
///
/// # Safety
/// `opts` is NULL or a live `betterpg_init_options`; `pool_file` and
/// `pool` are NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn betterpg_init_options_set_pool_file(
    opts: *mut betterpg_init_options,
    pool_file: *const c_char,
    size_bytes: u64,
    pool: *const c_char,
) -> betterpg_result {
    guard("betterpg_init_options_set_pool_file", || {
        // SAFETY: per the contract above.
        let o = unsafe { betterpg_init_options::get_mut(opts, "opts") }?;
        let file = unsafe { arg_str(pool_file, "pool_file") }?;
        let pool = unsafe { arg_str(pool, "pool") }?;
        if size_bytes == 0 {
            return Err(Failure::Arg("size_bytes is 0".into()));
        }
        o.storage = Some(InitStorage::PoolFile {
            file: PathBuf::from(file),
            size: size_bytes,
            pool: pool.to_string(),
        });
        Ok(())
    })
}

/// Store databases in the ZFS dataset `dataset` (e.g. "tank/betterpg") of
/// an existing pool; betterpg creates it when missing. Replaces any
/// storage set before.
///
/// # Safety
/// `opts` is NULL or a live `betterpg_init_options`; `dataset` is NULL or
/// a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn betterpg_init_options_set_dataset(
    opts: *mut betterpg_init_options,
    dataset: *const c_char,
) -> betterpg_result {
    guard("betterpg_init_options_set_dataset", || {
        // SAFETY: per the contract above.
        let o = unsafe { betterpg_init_options::get_mut(opts, "opts") }?;
        let ds = unsafe { arg_str(dataset, "dataset") }?;
        o.storage = Some(InitStorage::Dataset(ds.to_string()));
        Ok(())
    })
}

/// Allocate server ports from `first` to `last` inclusive. Fails with
/// `BETTERPG_RESULT_INVALID_ARGUMENT` when `first` is 0 or above `last`.
///
/// # Safety
/// `opts` is NULL or a live `betterpg_init_options`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_init_options_set_port_range(
    opts: *mut betterpg_init_options,
    first: u16,
    last: u16,
) -> betterpg_result {
    guard("betterpg_init_options_set_port_range", || {
        // SAFETY: per the contract above.
        let o = unsafe { betterpg_init_options::get_mut(opts, "opts") }?;
        if first == 0 || first > last {
            return Err(Failure::Arg(format!(
                "invalid port range {first}-{last}: need 0 < first <= last"
            )));
        }
        o.port_range = Some((first, last));
        Ok(())
    })
}

/// The branch space: `headroom_percent` of the pool is kept for the
/// databases (branches together can never use it; 0-90, 0 for no limit;
/// default 20) and every branch reserves `reserve_bytes` (0 for none;
/// default 64 MiB). A headroom above 90 makes `betterpg_manager_init` fail
/// with `BETTERPG_RESULT_CONFIG` before anything is made.
///
/// # Safety
/// `opts` is NULL or a live `betterpg_init_options`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_init_options_set_branch_space(
    opts: *mut betterpg_init_options,
    headroom_percent: u8,
    reserve_bytes: u64,
) -> betterpg_result {
    guard("betterpg_init_options_set_branch_space", || {
        // SAFETY: per the contract above.
        let o = unsafe { betterpg_init_options::get_mut(opts, "opts") }?;
        o.branch_headroom_percent = Some(headroom_percent);
        o.branch_reserve = Some(reserve_bytes);
        Ok(())
    })
}

/// Limits of every container of the docker runtime: memory `memory_bytes`
/// (0 for none, else at least 64 MiB; default 2 GiB) and at most `pids`
/// processes/threads (0 for none, else at least 32; default 1024). Values
/// too small for PostgreSQL make `betterpg_manager_init` fail with
/// `BETTERPG_RESULT_CONFIG` before anything is made.
///
/// # Safety
/// `opts` is NULL or a live `betterpg_init_options`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_init_options_set_docker_limits(
    opts: *mut betterpg_init_options,
    memory_bytes: u64,
    pids: u64,
) -> betterpg_result {
    guard("betterpg_init_options_set_docker_limits", || {
        // SAFETY: per the contract above.
        let o = unsafe { betterpg_init_options::get_mut(opts, "opts") }?;
        o.docker_memory = Some(memory_bytes);
        o.docker_pids = Some(pids);
        Ok(())
    })
}

/// Set the ZFS property `key` to `value` on the datasets (e.g.
/// "recordsize", "16K"), replacing betterpg's default for PostgreSQL
/// (recordsize=8K, atime=off, compression=lz4 or on) or a value set
/// before. Keys: recordsize, compression, atime, logbias, primarycache,
/// secondarycache, xattr, redundant_metadata. A key or value this ZFS does
/// not accept makes `betterpg_manager_init` fail with
/// `BETTERPG_RESULT_CONFIG` before anything is made.
///
/// # Safety
/// `opts` is NULL or a live `betterpg_init_options`; `key` and `value` are
/// NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn betterpg_init_options_set_zfs_property(
    opts: *mut betterpg_init_options,
    key: *const c_char,
    value: *const c_char,
) -> betterpg_result {
    guard("betterpg_init_options_set_zfs_property", || {
        // SAFETY: per the contract above.
        let o = unsafe { betterpg_init_options::get_mut(opts, "opts") }?;
        let key = unsafe { arg_str(key, "key") }?;
        let value = unsafe { arg_str(value, "value") }?;
        o.zfs_properties.retain(|(k, _)| k != key);
        o.zfs_properties.push((key.to_string(), value.to_string()));
        Ok(())
    })
}

/// Default PostgreSQL bin directory (e.g. "/usr/lib/postgresql/15/bin");
/// without it, `init` finds one on the machine.
///
/// # Safety
/// `opts` is NULL or a live `betterpg_init_options`; `dir` is NULL or a
/// NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn betterpg_init_options_set_pg_bin(
    opts: *mut betterpg_init_options,
    dir: *const c_char,
) -> betterpg_result {
    guard("betterpg_init_options_set_pg_bin", || {
        // SAFETY: per the contract above.
        let o = unsafe { betterpg_init_options::get_mut(opts, "opts") }?;
        let dir = unsafe { arg_str(dir, "dir") }?;
        o.pg_bin = Some(PathBuf::from(dir));
        Ok(())
    })
}

/// OS user the servers run as (default: "postgres" when running as root).
///
/// # Safety
/// `opts` is NULL or a live `betterpg_init_options`; `user` is NULL or a
/// NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn betterpg_init_options_set_os_user(
    opts: *mut betterpg_init_options,
    user: *const c_char,
) -> betterpg_result {
    guard("betterpg_init_options_set_os_user", || {
        // SAFETY: per the contract above.
        let o = unsafe { betterpg_init_options::get_mut(opts, "opts") }?;
        let user = unsafe { arg_str(user, "user") }?;
        o.os_user = Some(user.to_string());
        Ok(())
    })
}

/// Address the servers listen on (default "127.0.0.1").
///
/// # Safety
/// `opts` is NULL or a live `betterpg_init_options`; `address` is NULL or
/// a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn betterpg_init_options_set_listen_address(
    opts: *mut betterpg_init_options,
    address: *const c_char,
) -> betterpg_result {
    guard("betterpg_init_options_set_listen_address", || {
        // SAFETY: per the contract above.
        let o = unsafe { betterpg_init_options::get_mut(opts, "opts") }?;
        let address = unsafe { arg_str(address, "address") }?;
        o.listen_address = Some(address.to_string());
        Ok(())
    })
}
