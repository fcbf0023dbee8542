//! OpenZFS's libraries, loaded at run time, with the declarations of the
//! release that is loaded.
//!
//! `libzfs`'s ABI changes between OpenZFS releases while parts of it keep
//! their names: `zfs_version_userland`/`zfs_version_kernel` fill a caller's
//! buffer in 2.1 and return a string from 2.2 on (`char *(void)`, the
//! kernel's allocated); the iterators gained `_v2` forms taking flags in 2.2;
//! 2.3 bumped the soname to `libzfs.so.6` (2.1 and 2.2 are both
//! `libzfs.so.4`). Calling a function with the wrong declaration is
//! undefined behaviour, so nothing here is called before the release is
//! known:
//!
//! 1. the kernel module's version (`/sys/module/zfs/version`) says which
//!    soname to try first (`libzfs.so.6` for 2.3, `libzfs.so.4` otherwise;
//!    then the other one);
//! 2. the soname and the symbols the library exports say which
//!    declarations apply: `libzfs.so.6` is 2.3; `libzfs.so.4` exporting
//!    `zfs_iter_filesystems_v2` is 2.2, without it 2.1 (2.0 and older also
//!    lack it and are refused by the version check below);
//! 3. the version functions, called with that release's declarations, must
//!    then report that very release (major.minor) for both the library and
//!    the kernel module; anything else is refused with the reason.
//!
//! `libzfs_core` (`libzfs_core.so.3`) and `libnvpair` (`libnvpair.so.3`)
//! kept their ABI across 2.1-2.3 (same soname, same declarations in the
//! three releases' headers): one set of declarations serves all.
//!
//! The libraries are opened with `dlopen` once per process and never
//! closed. A build needs no OpenZFS headers or libraries at all; a machine
//! without them gets the reason and the `zfs` command backend.

use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int, c_uint, c_void};
use std::sync::OnceLock;

/// The OpenZFS releases whose declarations are written here.
pub const RELEASES: &[&str] = &["2.1", "2.2", "2.3"];

/// An OpenZFS release this module has declarations for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// OpenZFS 2.1 (`libzfs.so.4`; Debian 12).
    V2_1,
    /// OpenZFS 2.2 (`libzfs.so.4`, `_v2` iterators, returned version strings; Ubuntu 24.04).
    V2_2,
    /// OpenZFS 2.3 (`libzfs.so.6`; Debian 13, bookworm-backports).
    V2_3,
}

impl Release {
    /// `"2.1"`, `"2.2"` or `"2.3"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Release::V2_1 => "2.1",
            Release::V2_2 => "2.2",
            Release::V2_3 => "2.3",
        }
    }

    /// The release of a `major.minor`, if declared here.
    pub fn from_major_minor(v: (u32, u32)) -> Option<Release> {
        match v {
            (2, 1) => Some(Release::V2_1),
            (2, 2) => Some(Release::V2_2),
            (2, 3) => Some(Release::V2_3),
            _ => None,
        }
    }

    /// The soname of its libzfs.
    pub fn soname(self) -> &'static str {
        match self {
            Release::V2_1 | Release::V2_2 => "libzfs.so.4",
            Release::V2_3 => "libzfs.so.6",
        }
    }
}

/// `major.minor` of a version string such as `zfs-kmod-2.1.11-1` or `2.1.11`.
pub fn major_minor(v: &str) -> Option<(u32, u32)> {
    let start = v.find(|c: char| c.is_ascii_digit())?;
    let mut it = v[start..].split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

/// The libzfs sonames to try, best first, for a kernel module version (as
/// `/sys/module/zfs/version` gives it; `None` when unreadable).
pub fn sonames_for(kernel: Option<&str>) -> Vec<&'static str> {
    let first = kernel
        .and_then(major_minor)
        .and_then(Release::from_major_minor)
        .map_or("libzfs.so.6", Release::soname);
    let mut v = vec![first];
    for s in ["libzfs.so.6", "libzfs.so.4"] {
        if !v.contains(&s) {
            v.push(s);
        }
    }
    v
}

/// The declarations that apply to a loaded `soname`, given whether it
/// exports `zfs_iter_filesystems_v2` (see the module documentation).
pub fn release_for(soname: &str, has_v2_iterators: bool) -> Option<Release> {
    match (soname, has_v2_iterators) {
        ("libzfs.so.6", true) => Some(Release::V2_3),
        ("libzfs.so.4", true) => Some(Release::V2_2),
        ("libzfs.so.4", false) => Some(Release::V2_1),
        _ => None,
    }
}

/// libzfs's library handle (opaque).
#[repr(C)]
pub struct LibzfsHandle {
    _private: [u8; 0],
}

/// A dataset handle (opaque `zfs_handle_t`).
#[repr(C)]
pub struct ZfsHandle {
    _private: [u8; 0],
}

/// A name-value list (opaque `nvlist_t`).
#[repr(C)]
pub struct NvlistT {
    _private: [u8; 0],
}

/// One pair of a name-value list (opaque `nvpair_t`).
#[repr(C)]
pub struct NvpairT {
    _private: [u8; 0],
}

/// `boolean_t` (an `int` in the C headers).
pub type BooleanT = c_int;
/// `B_FALSE`.
pub const B_FALSE: BooleanT = 0;
/// `B_TRUE`.
pub const B_TRUE: BooleanT = 1;
/// `zfs_type_t` bits (the same in 2.1-2.3's `sys/fs/zfs.h`).
pub const ZFS_TYPE_FILESYSTEM: c_int = 1;
/// `ZFS_TYPE_SNAPSHOT`.
pub const ZFS_TYPE_SNAPSHOT: c_int = 2;
/// `ZFS_TYPE_VOLUME`.
pub const ZFS_TYPE_VOLUME: c_int = 4;
/// `enum lzc_dataset_type`: `LZC_DATSET_TYPE_ZFS`.
pub const LZC_DATSET_TYPE_ZFS: c_int = 2;
/// `nvlist_alloc` flag `NV_UNIQUE_NAME`.
pub const NV_UNIQUE_NAME: c_uint = 1;
/// `data_type_t`: `DATA_TYPE_INT32`.
pub const DATA_TYPE_INT32: c_int = 5;

/// `zfs_iter_f`: the iterators' callback.
pub type ZfsIterF = unsafe extern "C" fn(*mut ZfsHandle, *mut c_void) -> c_int;

type IterFs1 = unsafe extern "C" fn(*mut ZfsHandle, ZfsIterF, *mut c_void) -> c_int;
type IterSnaps1 =
    unsafe extern "C" fn(*mut ZfsHandle, BooleanT, ZfsIterF, *mut c_void, u64, u64) -> c_int;
type IterDeps1 = unsafe extern "C" fn(*mut ZfsHandle, BooleanT, ZfsIterF, *mut c_void) -> c_int;
type IterFs2 = unsafe extern "C" fn(*mut ZfsHandle, c_int, ZfsIterF, *mut c_void) -> c_int;
type IterSnaps2 =
    unsafe extern "C" fn(*mut ZfsHandle, c_int, ZfsIterF, *mut c_void, u64, u64) -> c_int;
type IterDeps2 =
    unsafe extern "C" fn(*mut ZfsHandle, c_int, BooleanT, ZfsIterF, *mut c_void) -> c_int;

/// The iterators, per release.
enum Iterators {
    /// 2.1: `zfs_iter_filesystems(zhp, func, data)`,
    /// `zfs_iter_snapshots(zhp, simple, func, data, min_txg, max_txg)`,
    /// `zfs_iter_dependents(zhp, allowrecursion, func, data)`.
    V1 {
        filesystems: IterFs1,
        snapshots: IterSnaps1,
        dependents: IterDeps1,
    },
    /// 2.2 and 2.3: the `_v2` forms with an `int flags` argument (the old
    /// names still exist there as wrappers; the current API is used).
    V2 {
        filesystems: IterFs2,
        snapshots: IterSnaps2,
        dependents: IterDeps2,
    },
}

/// The version functions, per release.
enum Versions {
    /// 2.1: `void zfs_version_userland(char *, int)`,
    /// `int zfs_version_kernel(char *, int)`.
    Buffer {
        userland: unsafe extern "C" fn(*mut c_char, c_int),
        kernel: unsafe extern "C" fn(*mut c_char, c_int) -> c_int,
    },
    /// 2.2 and 2.3: `const char *zfs_version_userland(void)` (static),
    /// `char *zfs_version_kernel(void)` (allocated, freed by the caller;
    /// NULL on failure).
    Returned {
        userland: unsafe extern "C" fn() -> *const c_char,
        kernel: unsafe extern "C" fn() -> *mut c_char,
    },
}

/// The functions of the loaded libraries, declared for [`Api::release`].
pub struct Api {
    /// Which declarations apply.
    pub release: Release,
    /// The libzfs soname that was loaded.
    pub soname: &'static str,
    iterators: Iterators,
    versions: Versions,
    // libzfs
    /// `libzfs_handle_t *libzfs_init(void)`.
    pub libzfs_init: unsafe extern "C" fn() -> *mut LibzfsHandle,
    /// `void libzfs_fini(libzfs_handle_t *)`.
    pub libzfs_fini: unsafe extern "C" fn(*mut LibzfsHandle),
    /// `const char *libzfs_error_description(libzfs_handle_t *)`.
    pub libzfs_error_description: unsafe extern "C" fn(*mut LibzfsHandle) -> *const c_char,
    /// `zfs_handle_t *zfs_open(libzfs_handle_t *, const char *, int)`.
    pub zfs_open: unsafe extern "C" fn(*mut LibzfsHandle, *const c_char, c_int) -> *mut ZfsHandle,
    /// `void zfs_close(zfs_handle_t *)`.
    pub zfs_close: unsafe extern "C" fn(*mut ZfsHandle),
    /// `const char *zfs_get_name(const zfs_handle_t *)`.
    pub zfs_get_name: unsafe extern "C" fn(*const ZfsHandle) -> *const c_char,
    /// `zfs_type_t zfs_get_type(const zfs_handle_t *)`.
    pub zfs_get_type: unsafe extern "C" fn(*const ZfsHandle) -> c_int,
    /// `int zfs_prop_get(zfs_handle_t *, zfs_prop_t, char *, size_t,
    /// zprop_source_t *, char *, size_t, boolean_t)`.
    pub zfs_prop_get: unsafe extern "C" fn(
        *mut ZfsHandle,
        c_int,
        *mut c_char,
        usize,
        *mut c_int,
        *mut c_char,
        usize,
        BooleanT,
    ) -> c_int,
    /// `uint64_t zfs_prop_get_int(zfs_handle_t *, zfs_prop_t)`.
    pub zfs_prop_get_int: unsafe extern "C" fn(*mut ZfsHandle, c_int) -> u64,
    /// `zfs_prop_t zfs_name_to_prop(const char *)`.
    pub zfs_name_to_prop: unsafe extern "C" fn(*const c_char) -> c_int,
    /// `nvlist_t *zfs_get_user_props(zfs_handle_t *)` (owned by the handle).
    pub zfs_get_user_props: unsafe extern "C" fn(*mut ZfsHandle) -> *mut NvlistT,
    /// `int zfs_mount(zfs_handle_t *, const char *, int)`.
    pub zfs_mount: unsafe extern "C" fn(*mut ZfsHandle, *const c_char, c_int) -> c_int,
    /// `int zfs_unmount(zfs_handle_t *, const char *, int)`.
    pub zfs_unmount: unsafe extern "C" fn(*mut ZfsHandle, *const c_char, c_int) -> c_int,
    /// `int zfs_prop_set_list(zfs_handle_t *, nvlist_t *)`.
    pub zfs_prop_set_list: unsafe extern "C" fn(*mut ZfsHandle, *mut NvlistT) -> c_int,
    // libzfs_core
    /// `int libzfs_core_init(void)`.
    pub libzfs_core_init: unsafe extern "C" fn() -> c_int,
    /// `void libzfs_core_fini(void)`.
    pub libzfs_core_fini: unsafe extern "C" fn(),
    /// `int lzc_create(const char *, enum lzc_dataset_type, nvlist_t *,
    /// uint8_t *, uint_t)`.
    pub lzc_create:
        unsafe extern "C" fn(*const c_char, c_int, *mut NvlistT, *mut u8, c_uint) -> c_int,
    /// `int lzc_snapshot(nvlist_t *, nvlist_t *, nvlist_t **)`.
    pub lzc_snapshot: unsafe extern "C" fn(*mut NvlistT, *mut NvlistT, *mut *mut NvlistT) -> c_int,
    /// `int lzc_clone(const char *, const char *, nvlist_t *)`.
    pub lzc_clone: unsafe extern "C" fn(*const c_char, *const c_char, *mut NvlistT) -> c_int,
    /// `int lzc_destroy_snaps(nvlist_t *, boolean_t, nvlist_t **)`.
    pub lzc_destroy_snaps: unsafe extern "C" fn(*mut NvlistT, BooleanT, *mut *mut NvlistT) -> c_int,
    /// `int lzc_destroy(const char *)`.
    pub lzc_destroy: unsafe extern "C" fn(*const c_char) -> c_int,
    /// `boolean_t lzc_exists(const char *)`.
    pub lzc_exists: unsafe extern "C" fn(*const c_char) -> BooleanT,
    // libnvpair
    /// `int nvlist_alloc(nvlist_t **, uint_t, int)`.
    pub nvlist_alloc: unsafe extern "C" fn(*mut *mut NvlistT, c_uint, c_int) -> c_int,
    /// `void nvlist_free(nvlist_t *)`.
    pub nvlist_free: unsafe extern "C" fn(*mut NvlistT),
    /// `int nvlist_add_boolean(nvlist_t *, const char *)`.
    pub nvlist_add_boolean: unsafe extern "C" fn(*mut NvlistT, *const c_char) -> c_int,
    /// `int nvlist_add_string(nvlist_t *, const char *, const char *)`.
    pub nvlist_add_string:
        unsafe extern "C" fn(*mut NvlistT, *const c_char, *const c_char) -> c_int,
    /// `int nvlist_exists(const nvlist_t *, const char *)` (boolean_t).
    pub nvlist_exists: unsafe extern "C" fn(*const NvlistT, *const c_char) -> BooleanT,
    /// `int nvlist_lookup_string(const nvlist_t *, const char *, const char **)`.
    pub nvlist_lookup_string:
        unsafe extern "C" fn(*const NvlistT, *const c_char, *mut *const c_char) -> c_int,
    /// `nvpair_t *nvlist_next_nvpair(nvlist_t *, const nvpair_t *)`.
    pub nvlist_next_nvpair: unsafe extern "C" fn(*mut NvlistT, *const NvpairT) -> *mut NvpairT,
    /// `const char *nvpair_name(const nvpair_t *)`.
    pub nvpair_name: unsafe extern "C" fn(*const NvpairT) -> *const c_char,
    /// `data_type_t nvpair_type(const nvpair_t *)`.
    pub nvpair_type: unsafe extern "C" fn(*const NvpairT) -> c_int,
    /// `int nvpair_value_int32(const nvpair_t *, int32_t *)`.
    pub nvpair_value_int32: unsafe extern "C" fn(*const NvpairT, *mut i32) -> c_int,
    /// `int nvpair_value_nvlist(nvpair_t *, nvlist_t **)`.
    pub nvpair_value_nvlist: unsafe extern "C" fn(*mut NvpairT, *mut *mut NvlistT) -> c_int,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("release", &self.release)
            .field("soname", &self.soname)
            .finish()
    }
}

/// A library opened with `dlopen` (never closed: the functions resolved
/// from it live as long as the process).
struct Lib {
    name: &'static str,
    handle: *mut c_void,
}

fn dlerror_text() -> String {
    // SAFETY: dlerror returns NULL or a thread-local message.
    let e = unsafe { libc::dlerror() };
    if e.is_null() {
        "unknown dlopen error".into()
    } else {
        // SAFETY: NUL-terminated message.
        unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
    }
}

impl Lib {
    fn open(name: &'static str) -> Result<Lib, String> {
        let c = CString::new(name).map_err(|e| e.to_string())?;
        // SAFETY: C string; RTLD_NOW resolves every symbol now (a library
        // missing a dependency fails here, not at a later call).
        let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            return Err(dlerror_text());
        }
        Ok(Lib { name, handle })
    }

    fn has(&self, symbol: &str) -> bool {
        let Ok(c) = CString::new(symbol) else {
            return false;
        };
        // SAFETY: valid handle and C string.
        !unsafe { libc::dlsym(self.handle, c.as_ptr()) }.is_null()
    }

    /// The address of `symbol` as a function of type `F`.
    ///
    /// # Safety
    /// `F` must be the function pointer type the release's header declares
    /// for `symbol`.
    unsafe fn sym<F: Copy>(&self, symbol: &str) -> Result<F, String> {
        assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<*mut c_void>());
        let c = CString::new(symbol).map_err(|e| e.to_string())?;
        let p = libc::dlsym(self.handle, c.as_ptr());
        if p.is_null() {
            return Err(format!("{} has no symbol {symbol}", self.name));
        }
        Ok(std::mem::transmute_copy::<*mut c_void, F>(&p))
    }
}

/// What [`Api::load`] found, loaded once per process.
static API: OnceLock<Result<Api, String>> = OnceLock::new();

/// The kernel module's version from sysfs (`None` when not loaded).
pub fn kernel_module_version() -> Option<String> {
    std::fs::read_to_string("/sys/module/zfs/version")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

impl Api {
    /// Load the libraries and resolve every function for the release found
    /// (once per process; later calls return the same result). The reason
    /// when they cannot be used.
    pub fn load() -> Result<&'static Api, String> {
        API.get_or_init(Api::load_now)
            .as_ref()
            .map_err(Clone::clone)
    }

    fn load_now() -> Result<Api, String> {
        let kernel = kernel_module_version();
        let mut tried = Vec::new();
        let mut found = None;
        for soname in sonames_for(kernel.as_deref()) {
            match Lib::open(soname) {
                Ok(l) => {
                    found = Some(l);
                    break;
                }
                Err(e) => tried.push(e),
            }
        }
        let zfs = found.ok_or_else(|| {
            format!(
                "no libzfs of an OpenZFS release this build declares ({}) could be loaded ({})",
                RELEASES.join(", "),
                tried.join("; ")
            )
        })?;
        let has_v2 = zfs.has("zfs_iter_filesystems_v2");
        let release = release_for(zfs.name, has_v2).ok_or_else(|| {
            format!(
                "{} {} zfs_iter_filesystems_v2: no declarations for such a libzfs",
                zfs.name,
                if has_v2 { "has" } else { "lacks" }
            )
        })?;
        let core = Lib::open("libzfs_core.so.3")?;
        let nvpair = Lib::open("libnvpair.so.3")?;
        // SAFETY: every type below is the declaration of `release`'s
        // headers (see the field docs; checked against 2.1.11's, 2.2's and
        // 2.3.2's libzfs.h, libzfs_core.h, sys/fs/zfs.h and sys/nvpair.h).
        unsafe {
            let iterators = match release {
                Release::V2_1 => Iterators::V1 {
                    filesystems: zfs.sym("zfs_iter_filesystems")?,
                    snapshots: zfs.sym("zfs_iter_snapshots")?,
                    dependents: zfs.sym("zfs_iter_dependents")?,
                },
                Release::V2_2 | Release::V2_3 => Iterators::V2 {
                    filesystems: zfs.sym("zfs_iter_filesystems_v2")?,
                    snapshots: zfs.sym("zfs_iter_snapshots_v2")?,
                    dependents: zfs.sym("zfs_iter_dependents_v2")?,
                },
            };
            let versions = match release {
                Release::V2_1 => Versions::Buffer {
                    userland: zfs.sym("zfs_version_userland")?,
                    kernel: zfs.sym("zfs_version_kernel")?,
                },
                Release::V2_2 | Release::V2_3 => Versions::Returned {
                    userland: zfs.sym("zfs_version_userland")?,
                    kernel: zfs.sym("zfs_version_kernel")?,
                },
            };
            Ok(Api {
                release,
                soname: zfs.name,
                iterators,
                versions,
                libzfs_init: zfs.sym("libzfs_init")?,
                libzfs_fini: zfs.sym("libzfs_fini")?,
                libzfs_error_description: zfs.sym("libzfs_error_description")?,
                zfs_open: zfs.sym("zfs_open")?,
                zfs_close: zfs.sym("zfs_close")?,
                zfs_get_name: zfs.sym("zfs_get_name")?,
                zfs_get_type: zfs.sym("zfs_get_type")?,
                zfs_prop_get: zfs.sym("zfs_prop_get")?,
                zfs_prop_get_int: zfs.sym("zfs_prop_get_int")?,
                zfs_name_to_prop: zfs.sym("zfs_name_to_prop")?,
                zfs_get_user_props: zfs.sym("zfs_get_user_props")?,
                zfs_mount: zfs.sym("zfs_mount")?,
                zfs_unmount: zfs.sym("zfs_unmount")?,
                zfs_prop_set_list: zfs.sym("zfs_prop_set_list")?,
                libzfs_core_init: core.sym("libzfs_core_init")?,
                libzfs_core_fini: core.sym("libzfs_core_fini")?,
                lzc_create: core.sym("lzc_create")?,
                lzc_snapshot: core.sym("lzc_snapshot")?,
                lzc_clone: core.sym("lzc_clone")?,
                lzc_destroy_snaps: core.sym("lzc_destroy_snaps")?,
                lzc_destroy: core.sym("lzc_destroy")?,
                lzc_exists: core.sym("lzc_exists")?,
                nvlist_alloc: nvpair.sym("nvlist_alloc")?,
                nvlist_free: nvpair.sym("nvlist_free")?,
                nvlist_add_boolean: nvpair.sym("nvlist_add_boolean")?,
                nvlist_add_string: nvpair.sym("nvlist_add_string")?,
                nvlist_exists: nvpair.sym("nvlist_exists")?,
                nvlist_lookup_string: nvpair.sym("nvlist_lookup_string")?,
                nvlist_next_nvpair: nvpair.sym("nvlist_next_nvpair")?,
                nvpair_name: nvpair.sym("nvpair_name")?,
                nvpair_type: nvpair.sym("nvpair_type")?,
                nvpair_value_int32: nvpair.sym("nvpair_value_int32")?,
                nvpair_value_nvlist: nvpair.sym("nvpair_value_nvlist")?,
            })
        }
    }

    /// The loaded libzfs's version (`zfs-2.3.2-2~bpo12+2`).
    pub fn version_userland(&self) -> String {
        match self.versions {
            Versions::Buffer { userland, .. } => {
                let mut buf = vec![0 as c_char; 128];
                // SAFETY: buffer and its length (strlcpy: NUL-terminated).
                unsafe {
                    userland(buf.as_mut_ptr(), buf.len() as c_int);
                    CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned()
                }
            }
            Versions::Returned { userland, .. } => {
                // SAFETY: a static string (ZFS_META_ALIAS).
                let p = unsafe { userland() };
                if p.is_null() {
                    String::new()
                } else {
                    // SAFETY: NUL-terminated, static.
                    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
                }
            }
        }
    }

    /// The kernel module's version as the library reads it
    /// (`zfs-kmod-2.3.2-2~bpo12+2`), or `None` when it cannot.
    pub fn version_kernel(&self) -> Option<String> {
        match self.versions {
            Versions::Buffer { kernel, .. } => {
                let mut buf = vec![0 as c_char; 128];
                // SAFETY: buffer and its length; NUL-terminated on success.
                let rc = unsafe { kernel(buf.as_mut_ptr(), buf.len() as c_int) };
                (rc == 0).then(|| {
                    // SAFETY: as above.
                    unsafe { CStr::from_ptr(buf.as_ptr()) }
                        .to_string_lossy()
                        .into_owned()
                })
            }
            Versions::Returned { kernel, .. } => {
                // SAFETY: NULL or a malloc'd string we free.
                unsafe {
                    let p = kernel();
                    if p.is_null() {
                        return None;
                    }
                    let s = CStr::from_ptr(p).to_string_lossy().into_owned();
                    libc::free(p as *mut c_void);
                    Some(s)
                }
            }
        }
    }

    /// `zfs_iter_filesystems`: every child file system (and volume).
    ///
    /// # Safety
    /// `zhp` is a valid handle; `func` accepts `data`.
    pub unsafe fn iter_filesystems(
        &self,
        zhp: *mut ZfsHandle,
        func: ZfsIterF,
        data: *mut c_void,
    ) -> c_int {
        match self.iterators {
            Iterators::V1 { filesystems, .. } => filesystems(zhp, func, data),
            Iterators::V2 { filesystems, .. } => filesystems(zhp, 0, func, data),
        }
    }

    /// `zfs_iter_snapshots`, not simple (full handles), every txg.
    ///
    /// # Safety
    /// As [`Api::iter_filesystems`].
    pub unsafe fn iter_snapshots(
        &self,
        zhp: *mut ZfsHandle,
        func: ZfsIterF,
        data: *mut c_void,
    ) -> c_int {
        match self.iterators {
            Iterators::V1 { snapshots, .. } => snapshots(zhp, B_FALSE, func, data, 0, 0),
            Iterators::V2 { snapshots, .. } => snapshots(zhp, 0, func, data, 0, 0),
        }
    }

    /// `zfs_iter_dependents` with recursion allowed.
    ///
    /// # Safety
    /// As [`Api::iter_filesystems`].
    pub unsafe fn iter_dependents(
        &self,
        zhp: *mut ZfsHandle,
        func: ZfsIterF,
        data: *mut c_void,
    ) -> c_int {
        match self.iterators {
            Iterators::V1 { dependents, .. } => dependents(zhp, B_TRUE, func, data),
            Iterators::V2 { dependents, .. } => dependents(zhp, 0, B_TRUE, func, data),
        }
    }
}

// SAFETY: only function pointers and plain data; the libraries stay loaded.
unsafe impl Send for Api {}
// SAFETY: as above (callers serialise libzfs handle use themselves).
unsafe impl Sync for Api {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        assert_eq!(major_minor("zfs-2.1.11-1"), Some((2, 1)));
        assert_eq!(major_minor("zfs-kmod-2.1.11-1+deb12u1"), Some((2, 1)));
        assert_eq!(major_minor("zfs-kmod-2.3.2-2~bpo12+2"), Some((2, 3)));
        assert_eq!(major_minor("2.2.0"), Some((2, 2)));
        assert_eq!(major_minor("zfs"), None);
        for r in RELEASES {
            assert!(major_minor(r)
                .and_then(Release::from_major_minor)
                .is_some_and(|rel| rel.as_str() == *r));
        }
        assert_eq!(Release::from_major_minor((2, 0)), None);
        assert_eq!(Release::from_major_minor((2, 4)), None);
    }

    #[test]
    fn picks_declarations_by_soname_and_symbols() {
        assert_eq!(release_for("libzfs.so.4", false), Some(Release::V2_1));
        assert_eq!(release_for("libzfs.so.4", true), Some(Release::V2_2));
        assert_eq!(release_for("libzfs.so.6", true), Some(Release::V2_3));
        // A libzfs.so.6 without the v2 iterators is nothing declared here.
        assert_eq!(release_for("libzfs.so.6", false), None);
        assert_eq!(release_for("libzfs.so.7", true), None);
    }

    #[test]
    fn tries_the_kernel_modules_soname_first() {
        assert_eq!(
            sonames_for(Some("2.3.2-2~bpo12+2")),
            ["libzfs.so.6", "libzfs.so.4"]
        );
        assert_eq!(
            sonames_for(Some("2.1.11-1+deb12u1")),
            ["libzfs.so.4", "libzfs.so.6"]
        );
        assert_eq!(
            sonames_for(Some("2.2.2-0ubuntu9")),
            ["libzfs.so.4", "libzfs.so.6"]
        );
        assert_eq!(sonames_for(None), ["libzfs.so.6", "libzfs.so.4"]);
    }
}
