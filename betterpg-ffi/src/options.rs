//! Options handles: `betterpg_init_options` (what `betterpg_manager_init`
//! needs to set up a new home), `betterpg_create_options` (for
//! `betterpg_manager_create`) and `betterpg_branch_options` (for
//! `betterpg_manager_branch` and `_reset`).
//!
//! Each is a builder: made by `_new` with every setting at its default,
//! changed by `_set_*` functions, read (not consumed) by the call it is
//! given to, freed by `_free`. A new option is a new setter, so the
//! functions taking options never change signature when betterpg grows
//! (masking, a time to live, a point in time for branches will be setters
//! of `betterpg_branch_options`).

use std::ffi::c_char;
use std::path::PathBuf;

use betterpg_core::{BranchOptions, CreateOptions, InitOptions, InitStorage, Mode};

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

// --- mode ---------------------------------------------------------------------

/// How a branch snapshots a running source: one of the `BETTERPG_MODE_*`
/// values (the same two modes as `bpg branch --mode` and Python's `mode=`).
#[allow(non_camel_case_types)]
pub type betterpg_mode = u32;

/// Backup mode around the snapshot (the default, and the safe choice): the
/// branch holds every transaction committed before the call, recovered as
/// from a base backup. `bpg branch --mode application-consistent`.
pub const BETTERPG_MODE_APPLICATION_CONSISTENT: betterpg_mode = 0;

/// `CHECKPOINT` then an atomic snapshot; the branch starts with crash
/// recovery. Also holds every committed transaction. `bpg branch --mode
/// crash-consistent` (or `--fast`).
pub const BETTERPG_MODE_CRASH_CONSISTENT: betterpg_mode = 1;

/// The core mode of a C mode value.
pub(crate) fn mode_of(mode: betterpg_mode) -> Result<Mode, Failure> {
    match mode {
        BETTERPG_MODE_APPLICATION_CONSISTENT => Ok(Mode::ApplicationConsistent),
        BETTERPG_MODE_CRASH_CONSISTENT => Ok(Mode::CrashConsistent),
        other => Err(Failure::Arg(format!(
            "unknown mode {other}: use BETTERPG_MODE_APPLICATION_CONSISTENT (0) or BETTERPG_MODE_CRASH_CONSISTENT (1)"
        ))),
    }
}

// --- branch options -------------------------------------------------------------

/// Options of `betterpg_manager_branch` and `betterpg_manager_reset`. Made
/// by `betterpg_branch_options_new` (every setting at its default: the
/// application-consistent mode, no quota, the source's runtime and image),
/// changed by the `betterpg_branch_options_set_*` functions, freed with
/// `betterpg_branch_options_free`. Owned by the caller; the calls it is
/// given to only read it, so one options handle may serve many calls.
pub struct betterpg_branch_options {
    _private: [u8; 0],
}

impl Opaque for betterpg_branch_options {
    type Inner = BranchOptions;
}

/// The options behind an optional handle: NULL gives the defaults.
///
/// # Safety
/// `opts` is NULL or a live `betterpg_branch_options`.
pub(crate) unsafe fn branch_options(opts: *const betterpg_branch_options) -> BranchOptions {
    // SAFETY: per the contract above.
    unsafe { betterpg_branch_options::get_opt(opts) }
        .cloned()
        .unwrap_or_default()
}

/// New branch options, every setting at its default. Never NULL. Free with
/// `betterpg_branch_options_free`.
#[no_mangle]
pub extern "C" fn betterpg_branch_options_new() -> *mut betterpg_branch_options {
    guard_value(std::ptr::null_mut(), || {
        betterpg_branch_options::into_handle(BranchOptions::default())
    })
}

/// Free branch options. NULL does nothing. Do not call it twice.
///
/// # Safety
/// `opts` is NULL or an owned `betterpg_branch_options`, not used
/// afterwards.
#[no_mangle]
pub unsafe extern "C" fn betterpg_branch_options_free(opts: *mut betterpg_branch_options) {
    // SAFETY: per the contract above.
    guard_value((), || unsafe { betterpg_branch_options::free(opts) })
}

/// How to snapshot a running source: `BETTERPG_MODE_APPLICATION_CONSISTENT`
/// (the default) or `BETTERPG_MODE_CRASH_CONSISTENT`. Fails with
/// `BETTERPG_RESULT_INVALID_ARGUMENT` for any other value (the options stay
/// as they were).
///
/// # Safety
/// `opts` is NULL or a live `betterpg_branch_options`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_branch_options_set_mode(
    opts: *mut betterpg_branch_options,
    mode: betterpg_mode,
) -> betterpg_result {
    guard("betterpg_branch_options_set_mode", || {
        // SAFETY: per the contract above.
        let o = unsafe { betterpg_branch_options::get_mut(opts, "opts") }?;
        o.mode = mode_of(mode)?;
        Ok(())
    })
}

/// Most pool space the branch may use (a ZFS quota), in bytes; 0 for none
/// (the default). A branch that fills its quota gets PostgreSQL's own
/// disk-full error while its source and the other branches keep writing.
/// A quota under 64 MiB makes the branch fail with `BETTERPG_RESULT_CONFIG`
/// before anything is made.
///
/// # Safety
/// `opts` is NULL or a live `betterpg_branch_options`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_branch_options_set_quota(
    opts: *mut betterpg_branch_options,
    bytes: u64,
) -> betterpg_result {
    guard("betterpg_branch_options_set_quota", || {
        // SAFETY: per the contract above.
        let o = unsafe { betterpg_branch_options::get_mut(opts, "opts") }?;
        o.quota = (bytes > 0).then_some(bytes);
        Ok(())
    })
}

/// Time to live of the new branch in seconds (0: none, the default):
/// `bpg daemon` (or `betterpg_manager_daemon_once`) destroys it, its own
/// branches first, this long after it was made. Not for
/// `betterpg_manager_reset`, which keeps the branch's expiry (it fails
/// with `BETTERPG_RESULT_UNSUPPORTED`); change an expiry with
/// `betterpg_manager_configure` and the key `ttl`.
///
/// # Safety
/// `opts` is NULL or a live `betterpg_branch_options`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_branch_options_set_ttl(
    opts: *mut betterpg_branch_options,
    seconds: u64,
) -> betterpg_result {
    guard("betterpg_branch_options_set_ttl", || {
        // SAFETY: per the contract above.
        let o = unsafe { betterpg_branch_options::get_mut(opts, "opts") }?;
        o.ttl = (seconds > 0).then(|| std::time::Duration::from_secs(seconds));
        Ok(())
    })
}

/// The process the branch lives for (e.g. the test run's own, `getpid()`):
/// once it is gone, `betterpg_manager_gc` and the daemon's pass destroy
/// the branch. It must be running (else the branch call fails with
/// `BETTERPG_RESULT_CONFIG` and makes nothing); 0 clears it. Not for
/// `betterpg_manager_reset` (`BETTERPG_RESULT_UNSUPPORTED`).
///
/// # Safety
/// `opts` is NULL or a live `betterpg_branch_options`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_branch_options_set_owner_pid(
    opts: *mut betterpg_branch_options,
    pid: u32,
) -> betterpg_result {
    guard("betterpg_branch_options_set_owner_pid", || {
        // SAFETY: per the contract above.
        let o = unsafe { betterpg_branch_options::get_mut(opts, "opts") }?;
        o.owner_pid = (pid > 0).then_some(pid);
        Ok(())
    })
}

/// Runtime of the branch ("native" or "docker"); without it, the source's.
/// Branching a native database into a container (or back) works. Not for
/// `betterpg_manager_reset`, which keeps the branch's runtime (it fails
/// with `BETTERPG_RESULT_UNSUPPORTED`).
///
/// # Safety
/// `opts` is NULL or a live `betterpg_branch_options`; `runtime` is NULL
/// or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn betterpg_branch_options_set_runtime(
    opts: *mut betterpg_branch_options,
    runtime: *const c_char,
) -> betterpg_result {
    guard("betterpg_branch_options_set_runtime", || {
        // SAFETY: per the contract above.
        let o = unsafe { betterpg_branch_options::get_mut(opts, "opts") }?;
        let runtime = unsafe { arg_str(runtime, "runtime") }?;
        o.runtime = Some(runtime.to_string());
        Ok(())
    })
}

/// Container image of the branch (container runtimes); without it, the
/// source's image when the runtime is the source's, else the runtime's
/// default image. Not for `betterpg_manager_reset` (as the runtime).
///
/// # Safety
/// `opts` is NULL or a live `betterpg_branch_options`; `image` is NULL or
/// a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn betterpg_branch_options_set_image(
    opts: *mut betterpg_branch_options,
    image: *const c_char,
) -> betterpg_result {
    guard("betterpg_branch_options_set_image", || {
        // SAFETY: per the contract above.
        let o = unsafe { betterpg_branch_options::get_mut(opts, "opts") }?;
        let image = unsafe { arg_str(image, "image") }?;
        o.image = Some(image.to_string());
        Ok(())
    })
}

/// Branch the source as it was at `at`, replayed from its retained WAL
/// (the setting `retain_wal`): a timestamp with an offset
/// ("2026-12-03 16:40:00+00", "2026-12-03T16:40:00Z") or an LSN
/// ("0/16B3748"); NULL: the source as it is now (the default). The text is
/// checked by the branch call, which fails with `BETTERPG_RESULT_CONFIG`
/// for one that is neither, and with `BETTERPG_RESULT_OUT_OF_WINDOW` for a
/// point outside the restorable window. Not for `betterpg_manager_reset`
/// (it fails with `BETTERPG_RESULT_UNSUPPORTED`).
///
/// # Safety
/// `opts` is NULL or a live `betterpg_branch_options`; `at` is NULL or a
/// NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn betterpg_branch_options_set_at(
    opts: *mut betterpg_branch_options,
    at: *const c_char,
) -> betterpg_result {
    guard("betterpg_branch_options_set_at", || {
        // SAFETY: per the contract above.
        let o = unsafe { betterpg_branch_options::get_mut(opts, "opts") }?;
        o.at = if at.is_null() {
            None
        } else {
            Some(unsafe { arg_str(at, "at") }?.to_string())
        };
        Ok(())
    })
}

/// Add a masking SQL file (or a directory of `*.sql`, applied in name
/// order) to the branch's masking, after those added before. The masking
/// runs in one transaction on the branch's private first start, before it
/// has a TCP port; a failing statement destroys the branch and the call
/// fails with `BETTERPG_RESULT_MASK` (the message names the file, line and
/// statement). A file that cannot be read fails the call before anything
/// is made.
///
/// # Safety
/// `opts` is NULL or a live `betterpg_branch_options`; `path` is NULL or a
/// NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn betterpg_branch_options_add_mask(
    opts: *mut betterpg_branch_options,
    path: *const c_char,
) -> betterpg_result {
    guard("betterpg_branch_options_add_mask", || {
        // SAFETY: per the contract above.
        let o = unsafe { betterpg_branch_options::get_mut(opts, "opts") }?;
        let path = unsafe { arg_str(path, "path") }?;
        o.mask.push(path.into());
        Ok(())
    })
}

/// Add a masking rules file (TOML, docs/masking.md) to the branch's
/// masking: compiled to SQL that runs after the masking SQL files in the
/// same transaction. A bad file fails the call before anything is made
/// with `BETTERPG_RESULT_MASK` naming the file and key; a rule naming a
/// missing column destroys the branch and fails the same way.
///
/// # Safety
/// `opts` is NULL or a live `betterpg_branch_options`; `path` is NULL or a
/// NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn betterpg_branch_options_add_mask_rules(
    opts: *mut betterpg_branch_options,
    path: *const c_char,
) -> betterpg_result {
    guard("betterpg_branch_options_add_mask_rules", || {
        // SAFETY: per the contract above.
        let o = unsafe { betterpg_branch_options::get_mut(opts, "opts") }?;
        let path = unsafe { arg_str(path, "path") }?;
        o.mask_rules.push(path.into());
        Ok(())
    })
}

/// `true`: the branch keeps every object, role and setting but no rows
/// (every table emptied on its private first start). Default `false`.
///
/// # Safety
/// `opts` is NULL or a live `betterpg_branch_options`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_branch_options_set_schema_only(
    opts: *mut betterpg_branch_options,
    schema_only: bool,
) -> betterpg_result {
    guard("betterpg_branch_options_set_schema_only", || {
        // SAFETY: per the contract above.
        let o = unsafe { betterpg_branch_options::get_mut(opts, "opts") }?;
        o.schema_only = schema_only;
        Ok(())
    })
}

/// `true`: branch without the source's masking policy (its settings
/// `mask`); the call fails with `BETTERPG_RESULT_MASK` when the source
/// forbids it (`forbid_unmasked`). Default `false`.
///
/// # Safety
/// `opts` is NULL or a live `betterpg_branch_options`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_branch_options_set_unmasked(
    opts: *mut betterpg_branch_options,
    unmasked: bool,
) -> betterpg_result {
    guard("betterpg_branch_options_set_unmasked", || {
        // SAFETY: per the contract above.
        let o = unsafe { betterpg_branch_options::get_mut(opts, "opts") }?;
        o.unmasked = unmasked;
        Ok(())
    })
}

/// `true`: take a rewind point as the branch is made (one ZFS snapshot of
/// it, isolated and masked, before its server first listens), so that
/// `betterpg_manager_rewind` can roll it back to it in a fraction of a
/// new branch's time. Default `false`. With `betterpg_manager_reset`:
/// gives the branch a rewind point (a rewindable branch keeps one through
/// a reset anyway, taken again of the new data).
///
/// # Safety
/// `opts` is NULL or a live `betterpg_branch_options`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_branch_options_set_rewindable(
    opts: *mut betterpg_branch_options,
    rewindable: bool,
) -> betterpg_result {
    guard("betterpg_branch_options_set_rewindable", || {
        // SAFETY: per the contract above.
        let o = unsafe { betterpg_branch_options::get_mut(opts, "opts") }?;
        o.rewindable = rewindable;
        Ok(())
    })
}

/// The branch's credentials policy: `"rotate"` (every role with a
/// password gets a new one on the branch; `betterpg_manager_role_url`
/// gives them), `"keep"` (the source's passwords), or NULL / `"none"` for
/// the default (the source's setting `credentials`, else rotate for a
/// branch of a replica or attached cluster, keep for a database). Any
/// other value fails with `BETTERPG_RESULT_CONFIG` and changes nothing.
///
/// # Safety
/// `opts` is NULL or a live `betterpg_branch_options`; `credentials` is
/// NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn betterpg_branch_options_set_credentials(
    opts: *mut betterpg_branch_options,
    credentials: *const c_char,
) -> betterpg_result {
    guard("betterpg_branch_options_set_credentials", || {
        // SAFETY: per the contract above.
        let o = unsafe { betterpg_branch_options::get_mut(opts, "opts") }?;
        let value = if credentials.is_null() {
            None
        } else {
            let v = unsafe { arg_str(credentials, "credentials") }?;
            let mut s = betterpg_core::Settings::default();
            s.apply("credentials", v)?;
            s.credentials
        };
        o.credentials = value;
        Ok(())
    })
}

// --- create options ---------------------------------------------------------------

/// Options of `betterpg_manager_create`. Made by
/// `betterpg_create_options_new` (every setting at its default: the
/// configured PostgreSQL, any version, the native runtime), changed by the
/// `betterpg_create_options_set_*` functions, freed with
/// `betterpg_create_options_free`. Owned by the caller; the calls it is
/// given to only read it.
pub struct betterpg_create_options {
    _private: [u8; 0],
}

impl Opaque for betterpg_create_options {
    type Inner = CreateOptions;
}

/// The options behind an optional handle: NULL gives the defaults.
///
/// # Safety
/// `opts` is NULL or a live `betterpg_create_options`.
pub(crate) unsafe fn create_options(opts: *const betterpg_create_options) -> CreateOptions {
    // SAFETY: per the contract above.
    unsafe { betterpg_create_options::get_opt(opts) }
        .cloned()
        .unwrap_or_default()
}

/// New create options, every setting at its default. Never NULL. Free with
/// `betterpg_create_options_free`.
#[no_mangle]
pub extern "C" fn betterpg_create_options_new() -> *mut betterpg_create_options {
    guard_value(std::ptr::null_mut(), || {
        betterpg_create_options::into_handle(CreateOptions::default())
    })
}

/// Free create options. NULL does nothing. Do not call it twice.
///
/// # Safety
/// `opts` is NULL or an owned `betterpg_create_options`, not used
/// afterwards.
#[no_mangle]
pub unsafe extern "C" fn betterpg_create_options_free(opts: *mut betterpg_create_options) {
    // SAFETY: per the contract above.
    guard_value((), || unsafe { betterpg_create_options::free(opts) })
}

/// PostgreSQL bin directory of this database (e.g.
/// "/usr/lib/postgresql/16/bin"); without it, the home's configured one.
///
/// # Safety
/// `opts` is NULL or a live `betterpg_create_options`; `dir` is NULL or a
/// NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn betterpg_create_options_set_pg_bin(
    opts: *mut betterpg_create_options,
    dir: *const c_char,
) -> betterpg_result {
    guard("betterpg_create_options_set_pg_bin", || {
        // SAFETY: per the contract above.
        let o = unsafe { betterpg_create_options::get_mut(opts, "opts") }?;
        let dir = unsafe { arg_str(dir, "dir") }?;
        o.pg_bin = Some(PathBuf::from(dir));
        Ok(())
    })
}

/// The PostgreSQL major version the database must have (e.g. 15); 0 for
/// any (the default). With no server binaries of that version on the
/// machine, the create fails with `BETTERPG_RESULT_CONFIG`, and with
/// `betterpg_create_options_set_pg_bin` naming binaries of another version
/// with `BETTERPG_RESULT_VERSION_MISMATCH`, before anything is made.
///
/// # Safety
/// `opts` is NULL or a live `betterpg_create_options`.
#[no_mangle]
pub unsafe extern "C" fn betterpg_create_options_set_pg_version(
    opts: *mut betterpg_create_options,
    major: u32,
) -> betterpg_result {
    guard("betterpg_create_options_set_pg_version", || {
        // SAFETY: per the contract above.
        let o = unsafe { betterpg_create_options::get_mut(opts, "opts") }?;
        o.pg_version = (major > 0).then_some(major);
        Ok(())
    })
}

/// Runtime of the database ("native", the default, or "docker").
///
/// # Safety
/// `opts` is NULL or a live `betterpg_create_options`; `runtime` is NULL
/// or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn betterpg_create_options_set_runtime(
    opts: *mut betterpg_create_options,
    runtime: *const c_char,
) -> betterpg_result {
    guard("betterpg_create_options_set_runtime", || {
        // SAFETY: per the contract above.
        let o = unsafe { betterpg_create_options::get_mut(opts, "opts") }?;
        let runtime = unsafe { arg_str(runtime, "runtime") }?;
        o.runtime = Some(runtime.to_string());
        Ok(())
    })
}

/// Container image of the database (container runtimes); without it, the
/// runtime's default image.
///
/// # Safety
/// `opts` is NULL or a live `betterpg_create_options`; `image` is NULL or
/// a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn betterpg_create_options_set_image(
    opts: *mut betterpg_create_options,
    image: *const c_char,
) -> betterpg_result {
    guard("betterpg_create_options_set_image", || {
        // SAFETY: per the contract above.
        let o = unsafe { betterpg_create_options::get_mut(opts, "opts") }?;
        let image = unsafe { arg_str(image, "image") }?;
        o.image = Some(image.to_string());
        Ok(())
    })
}
