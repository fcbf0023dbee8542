//! ZFS through its libraries, called in-process: no fork/exec per
//! operation, errors from the library as errno values.
//!
//! The libraries are loaded at run time ([`abi`]: `dlopen` of `libzfs`,
//! `libzfs_core`, `libnvpair`), with the declarations of the OpenZFS release
//! found (2.1, 2.2 or 2.3; see [`abi::RELEASES`]): a build needs neither
//! OpenZFS's headers nor its libraries, and one binary serves every
//! supported release. Changes go through `libzfs_core`, the library
//! OpenZFS keeps stable: `lzc_create`, `lzc_snapshot` (one call for several
//! datasets is atomic: all snapshots are taken in the same transaction
//! group, or none is), `lzc_clone`, `lzc_destroy_snaps`, `lzc_destroy`,
//! `lzc_exists`. libzfs is used where libzfs_core has nothing: the read side
//! (`zfs_open`, `zfs_prop_get`, `zfs_get_user_props`, the iterators),
//! mounting (`zfs_mount`/`zfs_unmount`) and setting properties
//! (`zfs_prop_set_list`).
//!
//! [`Libzfs::open`] checks before use that `/dev/zfs` exists (else
//! `libzfs_init` would try `modprobe zfs` and wait), that the libraries load
//! and are a declared release, that the loaded userland and the kernel module
//! are the same release, and that the property names resolve. Any failure is
//! returned as a reason string; [`super::select`] then falls back to the CLI
//! backend.
//!
//! A libzfs handle is not thread-safe, and making or finalising one touches
//! process-global state: one handle per process, behind a mutex, every call
//! on a blocking thread (`spawn_blocking`).

pub mod abi;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int, c_void};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use abi::{Api, LibzfsHandle, NvlistT, ZfsHandle};

use super::zfs_cli::classify_stderr;
use super::{DatasetInfo, DatasetType, PoolSpace, SpaceLimit, Storage, PROP_PREFIX};
use crate::error::{Error, Result, ZfsErrorKind};

pub use abi::{major_minor, RELEASES};

/// The loaded libraries. Only called where a [`Libzfs`] exists (or a test
/// loaded them), i.e. after [`Api::load`] succeeded.
fn api() -> &'static Api {
    Api::load().expect("libzfs used before it was loaded")
}

/// `zfs_type_t` bits accepted by `zfs_open` for anything betterpg reads.
fn any_type() -> c_int {
    abi::ZFS_TYPE_FILESYSTEM | abi::ZFS_TYPE_SNAPSHOT | abi::ZFS_TYPE_VOLUME
}

fn fs_type() -> c_int {
    abi::ZFS_TYPE_FILESYSTEM
}

/// The dataset properties read, as numbers of the loaded library.
#[derive(Debug, Clone, Copy)]
struct Props {
    used: c_int,
    available: c_int,
    referenced: c_int,
    origin: c_int,
    mountpoint: c_int,
    quota: c_int,
    createtxg: c_int,
}

/// Versions found by [`Libzfs::open`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LibzfsVersions {
    /// The release whose declarations are in use (`"2.3"`).
    pub release: String,
    /// The libzfs soname loaded (`libzfs.so.6`).
    pub library: String,
    /// `zfs_version_userland()` of the loaded libzfs, e.g. `zfs-2.1.11-1`.
    pub userland: String,
    /// `zfs_version_kernel()`, e.g. `zfs-kmod-2.1.11-1`.
    pub kernel: String,
}

struct Handle(*mut LibzfsHandle);

// SAFETY: the handle is only ever used by one thread at a time (behind the
// mutex in `Inner`); libzfs keeps no thread-local state tied to it.
unsafe impl Send for Handle {}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: created by libzfs_init / libzfs_core_init in `open`.
        unsafe {
            (api().libzfs_fini)(self.0);
            (api().libzfs_core_fini)();
        }
    }
}

struct Inner {
    hdl: Mutex<Handle>,
    props: Props,
    versions: LibzfsVersions,
}

/// Storage backend linking libzfs and libzfs_core.
#[derive(Clone)]
pub struct Libzfs {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Libzfs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Libzfs")
            .field("versions", &self.inner.versions)
            .finish()
    }
}

fn cstring(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::zfs(format!("name contains a NUL byte: {s:?}")))
}

fn errno_text(e: c_int) -> String {
    std::io::Error::from_raw_os_error(e).to_string()
}

/// An owned nvlist (freed on drop).
struct NvList(*mut NvlistT);

impl NvList {
    fn new() -> Result<NvList> {
        let mut p: *mut NvlistT = std::ptr::null_mut();
        // SAFETY: plain allocation, `p` written on success.
        let rc = unsafe { (api().nvlist_alloc)(&mut p, abi::NV_UNIQUE_NAME, 0) };
        if rc != 0 || p.is_null() {
            return Err(Error::zfs(format!("nvlist_alloc: {}", errno_text(rc))));
        }
        Ok(NvList(p))
    }
    fn add_boolean(&mut self, name: &str) -> Result<()> {
        let n = cstring(name)?;
        // SAFETY: valid list and C string.
        match unsafe { (api().nvlist_add_boolean)(self.0, n.as_ptr()) } {
            0 => Ok(()),
            rc => Err(Error::zfs(format!(
                "nvlist_add_boolean: {}",
                errno_text(rc)
            ))),
        }
    }
    fn add_string(&mut self, name: &str, value: &str) -> Result<()> {
        let (n, v) = (cstring(name)?, cstring(value)?);
        // SAFETY: valid list and C strings (copied by the library).
        match unsafe { (api().nvlist_add_string)(self.0, n.as_ptr(), v.as_ptr()) } {
            0 => Ok(()),
            rc => Err(Error::zfs(format!("nvlist_add_string: {}", errno_text(rc)))),
        }
    }
    /// User properties `betterpg:k=v`, plus `mountpoint` when given.
    fn props(mountpoint: Option<&Path>, props: &[(&str, &str)]) -> Result<NvList> {
        let mut l = NvList::new()?;
        if let Some(mp) = mountpoint {
            l.add_string("mountpoint", &mp.to_string_lossy())?;
        }
        for (k, v) in props {
            l.add_string(&format!("{PROP_PREFIX}{k}"), v)?;
        }
        Ok(l)
    }
}

impl Drop for NvList {
    fn drop(&mut self) {
        // SAFETY: allocated by nvlist_alloc or handed to us by the library.
        unsafe { (api().nvlist_free)(self.0) }
    }
}

/// `(name, errno)` pairs of an error list returned by lzc_snapshot /
/// lzc_destroy_snaps.
fn errlist_entries(list: *mut NvlistT) -> Vec<(String, c_int)> {
    let mut out = Vec::new();
    if list.is_null() {
        return out;
    }
    // SAFETY: iterating a valid nvlist the library returned.
    unsafe {
        let mut pair = (api().nvlist_next_nvpair)(list, std::ptr::null_mut());
        while !pair.is_null() {
            let name = CStr::from_ptr((api().nvpair_name)(pair))
                .to_string_lossy()
                .into_owned();
            let mut v: i32 = 0;
            if (api().nvpair_type)(pair) == abi::DATA_TYPE_INT32 {
                (api().nvpair_value_int32)(pair, &mut v);
            }
            out.push((name, v));
            pair = (api().nvlist_next_nvpair)(list, pair);
        }
        (api().nvlist_free)(list);
    }
    out
}

/// An open dataset handle (closed on drop).
struct Zhp(*mut ZfsHandle);

impl Drop for Zhp {
    fn drop(&mut self) {
        // SAFETY: opened by zfs_open or handed to an iterator callback.
        unsafe { (api().zfs_close)(self.0) }
    }
}

impl Zhp {
    fn name(&self) -> String {
        // SAFETY: valid handle; the name lives as long as the handle.
        unsafe { CStr::from_ptr((api().zfs_get_name)(self.0)) }
            .to_string_lossy()
            .into_owned()
    }
    fn kind(&self) -> DatasetType {
        // SAFETY: valid handle.
        let t = unsafe { (api().zfs_get_type)(self.0) };
        if t & abi::ZFS_TYPE_FILESYSTEM != 0 {
            DatasetType::Filesystem
        } else if t & abi::ZFS_TYPE_SNAPSHOT != 0 {
            DatasetType::Snapshot
        } else {
            DatasetType::Other
        }
    }
    fn int(&self, prop: c_int) -> u64 {
        // SAFETY: valid handle, property number of the loaded library.
        unsafe { (api().zfs_prop_get_int)(self.0, prop) }
    }
    fn string(&self, prop: c_int) -> Option<String> {
        let mut buf = vec![0 as c_char; 4096];
        // SAFETY: buffer and its length; no source output wanted.
        let rc = unsafe {
            (api().zfs_prop_get)(
                self.0,
                prop,
                buf.as_mut_ptr(),
                buf.len(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                0,
                abi::B_TRUE,
            )
        };
        if rc != 0 {
            return None;
        }
        // SAFETY: zfs_prop_get NUL-terminates within the buffer.
        let s = unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        (!s.is_empty() && s != "-").then_some(s)
    }
    /// betterpg's user properties (the names `storage::ZFS_PROPS` lists, as
    /// the CLI backend reads them), local or inherited, without the prefix;
    /// and the names of those set on this dataset itself. Each property's
    /// nvlist holds its `value` and its `source`: the name of the dataset
    /// it is set on, so it is local when that is this handle's own name
    /// (what `zfs get` prints as source `local`).
    fn user_props(&self) -> (BTreeMap<String, String>, BTreeSet<String>) {
        let wanted = super::ZFS_PROPS;
        let own_name = self.name();
        let mut out = BTreeMap::new();
        let mut local = BTreeSet::new();
        // SAFETY: the list belongs to the handle (not freed here).
        unsafe {
            let list = (api().zfs_get_user_props)(self.0);
            if list.is_null() {
                return (out, local);
            }
            let mut pair = (api().nvlist_next_nvpair)(list, std::ptr::null_mut());
            while !pair.is_null() {
                let name = CStr::from_ptr((api().nvpair_name)(pair)).to_string_lossy();
                if let Some(k) = name.strip_prefix(PROP_PREFIX) {
                    let mut inner: *mut NvlistT = std::ptr::null_mut();
                    let mut val: *const c_char = std::ptr::null_mut();
                    let mut src: *const c_char = std::ptr::null_mut();
                    if wanted.contains(&k)
                        && (api().nvpair_value_nvlist)(pair, &mut inner) == 0
                        && (api().nvlist_lookup_string)(inner, c"value".as_ptr(), &mut val) == 0
                        && !val.is_null()
                    {
                        let v = CStr::from_ptr(val).to_string_lossy().into_owned();
                        if !v.is_empty() && v != "-" {
                            // No source entry: treated as inherited (never
                            // counts as betterpg's).
                            if (api().nvlist_lookup_string)(inner, c"source".as_ptr(), &mut src)
                                == 0
                                && !src.is_null()
                                && CStr::from_ptr(src).to_string_lossy() == own_name
                            {
                                local.insert(k.to_string());
                            }
                            out.insert(k.to_string(), v);
                        }
                    }
                }
                pair = (api().nvlist_next_nvpair)(list, pair);
            }
        }
        (out, local)
    }
    fn info(&self, p: &Props) -> DatasetInfo {
        let kind = self.kind();
        let (props, local) = self.user_props();
        DatasetInfo {
            name: self.name(),
            kind,
            used: self.int(p.used),
            referenced: self.int(p.referenced),
            origin: if kind == DatasetType::Filesystem {
                self.string(p.origin)
            } else {
                None
            },
            mountpoint: if kind == DatasetType::Filesystem {
                self.string(p.mountpoint)
                    .filter(|m| m.starts_with('/'))
                    .map(PathBuf::from)
            } else {
                None
            },
            // 0 means no quota.
            quota: if kind == DatasetType::Filesystem {
                Some(self.int(p.quota)).filter(|q| *q > 0)
            } else {
                None
            },
            props,
            local,
        }
    }
}

/// Iterator callback collecting handles into a `Vec<Zhp>`.
unsafe extern "C" fn collect_cb(zhp: *mut ZfsHandle, data: *mut c_void) -> c_int {
    // SAFETY: `data` is the `&mut Vec<Zhp>` passed by `children`/`snapshots`;
    // the handle is ours to close (Zhp's Drop).
    let v = &mut *(data as *mut Vec<Zhp>);
    v.push(Zhp(zhp));
    0
}

/// Open-handle helpers; every method runs with the handle's mutex held.
struct Session<'a> {
    hdl: *mut LibzfsHandle,
    props: &'a Props,
}

impl Session<'_> {
    fn error(&self, what: &str) -> String {
        // SAFETY: valid handle; returns a static or handle-owned string.
        let d = unsafe { CStr::from_ptr((api().libzfs_error_description)(self.hdl)) };
        format!("{what}: {}", d.to_string_lossy())
    }

    /// The typed error of a failed libzfs call on `name` (what was being
    /// done: `what`), its kind read from libzfs's description as the zfs
    /// command's stderr is.
    fn failure(&self, what: &str, name: &str) -> Error {
        // SAFETY: valid handle; returns a static or handle-owned string.
        let d = unsafe { CStr::from_ptr((api().libzfs_error_description)(self.hdl)) };
        let said = d.to_string_lossy().into_owned();
        let message = format!("{what}: {said}");
        Error::zfs_failure(classify_stderr(&said), what, name, said, message)
    }

    fn exists(&self, name: &str) -> Result<bool> {
        let n = cstring(name)?;
        // SAFETY: C string.
        Ok(unsafe { (api().lzc_exists)(n.as_ptr()) } != 0)
    }

    fn open(&self, name: &str, types: c_int) -> Result<Option<Zhp>> {
        let n = cstring(name)?;
        // SAFETY: valid handle and C string.
        let zhp = unsafe { (api().zfs_open)(self.hdl, n.as_ptr(), types) };
        // Never wrap NULL: a Zhp is closed on drop.
        if zhp.is_null() {
            Ok(None)
        } else {
            Ok(Some(Zhp(zhp)))
        }
    }

    fn open_existing(&self, name: &str, types: c_int) -> Result<Zhp> {
        self.open(name, types)?.ok_or_else(|| Error::NotFound {
            what: "ZFS dataset",
            name: name.to_string(),
            hint: format!(" ({})", self.error("zfs_open")),
        })
    }

    fn children(&self, zhp: &Zhp) -> Vec<Zhp> {
        let mut v: Vec<Zhp> = Vec::new();
        // SAFETY: callback and data match (collect_cb takes &mut Vec<Zhp>).
        unsafe {
            api().iter_filesystems(zhp.0, collect_cb, &mut v as *mut _ as *mut c_void);
        }
        v.sort_by_key(|a| a.name());
        v
    }

    fn snapshots(&self, zhp: &Zhp) -> Vec<Zhp> {
        let mut v: Vec<Zhp> = Vec::new();
        // SAFETY: as in `children`.
        unsafe {
            api().iter_snapshots(zhp.0, collect_cb, &mut v as *mut _ as *mut c_void);
        }
        v.sort_by_key(|s| s.int(self.props.createtxg));
        v
    }

    /// Every dataset depending on `zhp` (children, snapshots, clones of
    /// those snapshots, recursively), by name.
    fn dependents(&self, zhp: &Zhp) -> Vec<String> {
        let mut v: Vec<Zhp> = Vec::new();
        // SAFETY: as in `children`.
        unsafe {
            api().iter_dependents(zhp.0, collect_cb, &mut v as *mut _ as *mut c_void);
        }
        let mut names: Vec<String> = v.iter().map(Zhp::name).collect();
        names.sort();
        names.dedup();
        names
    }

    /// Depth first: the dataset, its snapshots (oldest first), its children.
    fn walk(&self, zhp: &Zhp, out: &mut Vec<DatasetInfo>) {
        out.push(zhp.info(self.props));
        if zhp.kind() != DatasetType::Filesystem {
            return;
        }
        for s in self.snapshots(zhp) {
            out.push(s.info(self.props));
        }
        for c in self.children(zhp) {
            self.walk(&c, out);
        }
    }

    fn mount(&self, name: &str) -> Result<()> {
        let zhp = self.open_existing(name, fs_type())?;
        // SAFETY: valid handle; no extra options.
        if unsafe { (api().zfs_mount)(zhp.0, std::ptr::null(), 0) } != 0 {
            return Err(self.failure(&format!("mounting {name}"), name));
        }
        Ok(())
    }

    fn unmount(&self, zhp: &Zhp) -> Result<()> {
        // SAFETY: valid handle; NULL mountpoint = wherever it is mounted.
        if unsafe { (api().zfs_unmount)(zhp.0, std::ptr::null(), 0) } != 0 {
            return Err(self.failure(&format!("unmounting {}", zhp.name()), &zhp.name()));
        }
        Ok(())
    }

    fn create(
        &self,
        dataset: &str,
        mountpoint: Option<&Path>,
        props: &[(&str, &str)],
    ) -> Result<()> {
        let n = cstring(dataset)?;
        let nvl = NvList::props(mountpoint, props)?;
        // SAFETY: valid C string and list; no encryption key.
        let rc = unsafe {
            (api().lzc_create)(
                n.as_ptr(),
                abi::LZC_DATSET_TYPE_ZFS,
                nvl.0,
                std::ptr::null_mut(),
                0,
            )
        };
        if rc != 0 {
            return Err(map_errno(rc, "lzc_create", dataset));
        }
        if let Err(e) = self.mount(dataset) {
            // Do not leave an unmounted data set behind.
            // SAFETY: valid C string.
            let _ = unsafe { (api().lzc_destroy)(n.as_ptr()) };
            return Err(e);
        }
        Ok(())
    }

    fn snapshot(&self, datasets: &[String], snap: &str, props: &[(&str, &str)]) -> Result<()> {
        let mut snaps = NvList::new()?;
        for d in datasets {
            snaps.add_boolean(&format!("{d}@{snap}"))?;
        }
        let p = NvList::props(None, props)?;
        let mut errs: *mut NvlistT = std::ptr::null_mut();
        // SAFETY: valid lists; `errs` is freed by errlist_entries.
        let rc = unsafe { (api().lzc_snapshot)(snaps.0, p.0, &mut errs) };
        let detail = errlist_entries(errs);
        if rc == 0 {
            return Ok(());
        }
        let (name, e) = detail
            .first()
            .cloned()
            .unwrap_or_else(|| (format!("{}@{snap}", datasets[0]), rc));
        Err(match e {
            libc_errno::EXDEV => Error::Unsupported(format!(
                "cannot snapshot {datasets:?} atomically: they are in different pools"
            )),
            e => map_errno(e, "lzc_snapshot", &name),
        })
    }

    fn clone_snapshot(
        &self,
        snapshot: &str,
        target: &str,
        mountpoint: Option<&Path>,
        props: &[(&str, &str)],
    ) -> Result<()> {
        let (t, o) = (cstring(target)?, cstring(snapshot)?);
        let nvl = NvList::props(mountpoint, props)?;
        // SAFETY: valid C strings and list.
        let rc = unsafe { (api().lzc_clone)(t.as_ptr(), o.as_ptr(), nvl.0) };
        if rc != 0 {
            let name = if rc == libc_errno::ENOENT && !self.exists(snapshot)? {
                snapshot
            } else {
                target
            };
            return Err(map_errno(rc, "lzc_clone", name));
        }
        if let Err(e) = self.mount(target) {
            // SAFETY: valid C string.
            let _ = unsafe { (api().lzc_destroy)(t.as_ptr()) };
            return Err(e);
        }
        Ok(())
    }

    fn destroy_snaps(&self, snaps: &[String]) -> Result<()> {
        if snaps.is_empty() {
            return Ok(());
        }
        let mut l = NvList::new()?;
        for s in snaps {
            l.add_boolean(s)?;
        }
        let mut errs: *mut NvlistT = std::ptr::null_mut();
        // SAFETY: valid list; `errs` freed by errlist_entries.
        let rc = unsafe { (api().lzc_destroy_snaps)(l.0, abi::B_FALSE, &mut errs) };
        let detail = errlist_entries(errs);
        if rc == 0 {
            return Ok(());
        }
        let (name, e) = detail.first().cloned().unwrap_or((snaps[0].clone(), rc));
        Err(match e {
            libc_errno::EEXIST => Error::HasDependents {
                dependents: format!("snapshot {name} has dependent clones"),
                name,
            },
            e => map_errno(e, "lzc_destroy_snaps", &name),
        })
    }

    fn destroy_fs(&self, zhp: &Zhp) -> Result<()> {
        let name = zhp.name();
        let snaps: Vec<String> = self.snapshots(zhp).iter().map(Zhp::name).collect();
        self.destroy_snaps(&snaps)?;
        self.unmount(zhp)?;
        let n = cstring(&name)?;
        // SAFETY: valid C string.
        let rc = unsafe { (api().lzc_destroy)(n.as_ptr()) };
        if rc != 0 {
            // Leave it as it was: mounted.
            let _ = self.mount(&name);
            return Err(match rc {
                libc_errno::EEXIST => Error::HasDependents {
                    name: name.clone(),
                    dependents: "it has children, snapshots or dependent clones".into(),
                },
                e => map_errno(e, "lzc_destroy", &name),
            });
        }
        Ok(())
    }

    fn destroy_tree(&self, zhp: &Zhp) -> Result<()> {
        for c in self.children(zhp) {
            self.destroy_tree(&c)?;
        }
        self.destroy_fs(zhp)
    }

    fn destroy(&self, name: &str, force: bool) -> Result<()> {
        if name.contains('@') {
            if !self.exists(name)? {
                return Err(Error::NotFound {
                    what: "ZFS dataset",
                    name: name.to_string(),
                    hint: String::new(),
                });
            }
            return self.destroy_snaps(&[name.to_string()]);
        }
        let zhp = self.open_existing(name, fs_type())?;
        let deps = self.dependents(&zhp);
        // Like `zfs destroy [-r]`: check everything before changing anything.
        let inside = |d: &String| {
            d.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('/') || rest.starts_with('@'))
        };
        let blocking: Vec<&String> = if force {
            deps.iter().filter(|d| !inside(d)).collect()
        } else {
            deps.iter().collect()
        };
        if !blocking.is_empty() {
            let list = blocking
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(Error::HasDependents {
                name: name.to_string(),
                dependents: if force {
                    format!("dependent clones outside it: {list}")
                } else {
                    format!("children, snapshots or clones: {list}")
                },
            });
        }
        self.destroy_tree(&zhp)
    }

    fn set_props(&self, name: &str, props: &[(&str, &str)]) -> Result<()> {
        if props.is_empty() {
            return Ok(());
        }
        let zhp = self.open_existing(name, any_type())?;
        let nvl = NvList::props(None, props)?;
        // SAFETY: valid handle and list (not consumed).
        if unsafe { (api().zfs_prop_set_list)(zhp.0, nvl.0) } != 0 {
            return Err(self.failure(&format!("setting properties on {name}"), name));
        }
        Ok(())
    }

    /// Set one native property (its value as text, parsed by libzfs the
    /// way `zfs set` does).
    fn set_native(&self, name: &str, prop: &str, value: &str) -> Result<()> {
        let zhp = self.open_existing(name, any_type())?;
        let mut nvl = NvList::new()?;
        nvl.add_string(prop, value)?;
        // SAFETY: valid handle and list (not consumed).
        if unsafe { (api().zfs_prop_set_list)(zhp.0, nvl.0) } != 0 {
            return Err(self.failure(&format!("setting {prop}={value} on {name}"), name));
        }
        Ok(())
    }

    fn get(&self, name: &str) -> Result<Option<DatasetInfo>> {
        if !self.exists(name)? {
            return Ok(None);
        }
        Ok(self.open(name, any_type())?.map(|z| z.info(self.props)))
    }

    fn list(&self, root: &str) -> Result<Vec<DatasetInfo>> {
        let zhp = self.open_existing(root, any_type())?;
        let mut out = Vec::new();
        self.walk(&zhp, &mut out);
        Ok(out)
    }

    fn pool_space(&self, dataset: &str) -> Result<PoolSpace> {
        let pool = dataset.split('/').next().unwrap_or(dataset);
        let zhp = self.open_existing(pool, fs_type())?;
        Ok(PoolSpace {
            used: zhp.int(self.props.used),
            available: zhp.int(self.props.available),
        })
    }
}

/// errno values used here (Linux, x86_64 and aarch64 alike).
mod libc_errno {
    pub const ENOENT: i32 = 2;
    pub const EBUSY: i32 = 16;
    pub const EEXIST: i32 = 17;
    pub const EXDEV: i32 = 18;
    pub const ENOSPC: i32 = 28;
}

/// Map an errno from libzfs_core to the crate's typed error.
fn map_errno(e: c_int, call: &str, name: &str) -> Error {
    match e {
        libc_errno::ENOENT => Error::NotFound {
            what: "ZFS dataset",
            name: name.to_string(),
            hint: format!(" ({call}: {})", errno_text(e)),
        },
        libc_errno::EEXIST => Error::AlreadyExists {
            what: "ZFS dataset",
            name: name.to_string(),
        },
        libc_errno::EBUSY => Error::zfs_failure(
            ZfsErrorKind::Busy,
            call,
            name,
            errno_text(e),
            format!("{call} {name}: dataset is busy"),
        ),
        libc_errno::ENOSPC => Error::zfs_failure(
            ZfsErrorKind::NoSpace,
            call,
            name,
            errno_text(e),
            format!("{call} {name}: out of space in the pool"),
        ),
        e => Error::zfs_failure(
            ZfsErrorKind::Other,
            call,
            name,
            errno_text(e),
            format!("{call} {name}: {}", errno_text(e)),
        ),
    }
}

/// The process's one libzfs handle. `libzfs_init`/`libzfs_fini` also set up
/// and tear down process-global state (property tables, fletcher-4
/// implementations), so handles are never made or finalised concurrently:
/// the first successful open is kept for the life of the process and every
/// [`Libzfs`] shares it (and its mutex).
static SHARED: Mutex<Option<Arc<Inner>>> = Mutex::new(None);

impl Libzfs {
    /// Open the libraries if they are usable here; otherwise the reason they
    /// are not (never panics). Blocking: call from a blocking thread. The
    /// handle is opened once per process and shared.
    pub fn open() -> std::result::Result<Libzfs, String> {
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(inner) = shared.as_ref() {
            return Ok(Libzfs {
                inner: inner.clone(),
            });
        }
        let inner = Arc::new(Self::open_handle()?);
        *shared = Some(inner.clone());
        Ok(Libzfs { inner })
    }

    /// In a forked child: drop the shared handle from [`SHARED`] without
    /// finalising it (leaked: `libzfs_fini` would close descriptors the
    /// parent still uses through its own copy), so [`Libzfs::open`] makes a
    /// new one. Managers made before the fork keep the old one and must not
    /// be used (see [`crate::blocking::fork`]).
    pub fn forget_after_fork() {
        // Not waiting: a fork prepared by the gate happens while no call
        // holds this mutex; if one did anyway, leave it (and say nothing).
        if let Ok(mut shared) = SHARED.try_lock() {
            if let Some(old) = shared.take() {
                std::mem::forget(old);
            }
        }
    }

    fn open_handle() -> std::result::Result<Inner, String> {
        if !Path::new("/dev/zfs").exists() {
            return Err(
                "no /dev/zfs: the OpenZFS kernel module is not loaded (zfs-fuse has none)".into(),
            );
        }
        let api = Api::load()?;
        let release = api.release.as_str();
        let userland = api.version_userland();
        if major_minor(&userland) != major_minor(release) {
            return Err(format!(
                "the loaded {} reports version {userland:?}, not OpenZFS {release} whose declarations its soname and symbols select (declared: {})",
                api.soname,
                RELEASES.join(", ")
            ));
        }
        let kernel = api.version_kernel().unwrap_or_default();
        if major_minor(&kernel) != major_minor(release) {
            return Err(format!(
                "the ZFS kernel module is {kernel:?}, the loaded libzfs is {userland:?} (OpenZFS {release}): userland and module must be the same release"
            ));
        }
        // SAFETY: no arguments; NULL on failure.
        let hdl = unsafe { (api.libzfs_init)() };
        if hdl.is_null() {
            return Err(format!(
                "libzfs_init() failed: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: reference-counted global init.
        let rc = unsafe { (api.libzfs_core_init)() };
        if rc != 0 {
            // SAFETY: from libzfs_init above.
            unsafe { (api.libzfs_fini)(hdl) };
            return Err(format!("libzfs_core_init() failed: {}", errno_text(rc)));
        }
        let handle = Handle(hdl);
        let prop = |n: &str| -> std::result::Result<c_int, String> {
            let c = CString::new(n).map_err(|e| e.to_string())?;
            // SAFETY: C string.
            let p = unsafe { (api.zfs_name_to_prop)(c.as_ptr()) };
            if p < 0 {
                return Err(format!("the loaded libzfs has no property {n:?}"));
            }
            Ok(p)
        };
        let props = Props {
            used: prop("used")?,
            available: prop("available")?,
            referenced: prop("referenced")?,
            origin: prop("origin")?,
            mountpoint: prop("mountpoint")?,
            quota: prop("quota")?,
            createtxg: prop("createtxg")?,
        };
        Ok(Inner {
            hdl: Mutex::new(handle),
            props,
            versions: LibzfsVersions {
                release: release.to_string(),
                library: api.soname.to_string(),
                userland,
                kernel,
            },
        })
    }

    /// Versions checked by [`Libzfs::open`].
    pub fn versions(&self) -> &LibzfsVersions {
        &self.inner.versions
    }

    /// Run `f` with the handle locked, on a blocking thread.
    async fn with<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Session<'_>) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let guard = inner
                .hdl
                .lock()
                .map_err(|_| Error::Internal("libzfs handle mutex poisoned".into()))?;
            let s = Session {
                hdl: guard.0,
                props: &inner.props,
            };
            f(&s)
        })
        .await
        .map_err(|e| Error::Internal(format!("libzfs task failed: {e}")))?
    }
}

#[async_trait]
impl Storage for Libzfs {
    fn backend_name(&self) -> String {
        format!("libzfs ({})", self.inner.versions.userland)
    }

    async fn create(
        &self,
        dataset: &str,
        mountpoint: Option<&Path>,
        props: &[(&str, &str)],
    ) -> Result<()> {
        let (d, m, p) = owned(dataset, mountpoint, props);
        self.with(move |s| s.create(&d, m.as_deref(), &borrow(&p)))
            .await
    }

    async fn snapshot(&self, datasets: &[&str], snap: &str, props: &[(&str, &str)]) -> Result<()> {
        if datasets.is_empty() {
            return Err(Error::Internal("snapshot of no dataset".into()));
        }
        let ds: Vec<String> = datasets.iter().map(|s| s.to_string()).collect();
        let snap = snap.to_string();
        let p = owned_props(props);
        self.with(move |s| s.snapshot(&ds, &snap, &borrow(&p)))
            .await
    }

    async fn clone_snapshot(
        &self,
        snapshot: &str,
        target: &str,
        mountpoint: Option<&Path>,
        props: &[(&str, &str)],
    ) -> Result<()> {
        let (t, m, p) = owned(target, mountpoint, props);
        let snap = snapshot.to_string();
        self.with(move |s| s.clone_snapshot(&snap, &t, m.as_deref(), &borrow(&p)))
            .await
    }

    async fn destroy(&self, name: &str, force: bool) -> Result<()> {
        let n = name.to_string();
        self.with(move |s| s.destroy(&n, force)).await
    }

    async fn set_space_limit(
        &self,
        dataset: &str,
        limit: SpaceLimit,
        bytes: Option<u64>,
    ) -> Result<()> {
        let n = dataset.to_string();
        self.with(move |s| s.set_native(&n, limit.property(), &SpaceLimit::value(bytes)))
            .await
    }

    async fn set_props(&self, name: &str, props: &[(&str, &str)]) -> Result<()> {
        let n = name.to_string();
        let p = owned_props(props);
        self.with(move |s| s.set_props(&n, &borrow(&p))).await
    }

    async fn get(&self, name: &str) -> Result<Option<DatasetInfo>> {
        let n = name.to_string();
        self.with(move |s| s.get(&n)).await
    }

    async fn list(&self, root: &str) -> Result<Vec<DatasetInfo>> {
        let n = root.to_string();
        self.with(move |s| s.list(&n)).await
    }

    async fn pool_space(&self, dataset: &str) -> Result<PoolSpace> {
        let n = dataset.to_string();
        self.with(move |s| s.pool_space(&n)).await
    }
}

type OwnedProps = Vec<(String, String)>;

fn owned_props(props: &[(&str, &str)]) -> OwnedProps {
    props
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn owned(
    name: &str,
    mp: Option<&Path>,
    props: &[(&str, &str)],
) -> (String, Option<PathBuf>, OwnedProps) {
    (
        name.to_string(),
        mp.map(Path::to_path_buf),
        owned_props(props),
    )
}

fn borrow(p: &OwnedProps) -> Vec<(&str, &str)> {
    p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs OpenZFS's libraries (not its module): run by
    /// scripts/test-openzfs-vm.sh on the host, where they are installed.
    #[test]
    #[ignore = "needs OpenZFS's libzfs/libnvpair installed (scripts/test-openzfs-vm.sh runs it)"]
    fn builds_prop_lists() {
        let api = Api::load().unwrap_or_else(|why| panic!("OpenZFS's libraries: {why}"));
        // The version function, called with the declarations its soname and
        // symbols selected, reports that release (no module needed).
        let userland = api.version_userland();
        // One write (stderr is unbuffered): the VM script greps this line.
        let line = format!(
            "loaded {} ({userland}, OpenZFS {} declarations)\n",
            api.soname,
            api.release.as_str()
        );
        std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes()).unwrap();
        assert_eq!(major_minor(&userland), major_minor(api.release.as_str()));
        let l = NvList::props(Some(Path::new("/tmp/x")), &[("kind", "branch")]).unwrap();
        // SAFETY: valid list and C strings.
        unsafe {
            assert_ne!((api.nvlist_exists)(l.0, c"mountpoint".as_ptr()), 0);
            assert_ne!((api.nvlist_exists)(l.0, c"betterpg:kind".as_ptr()), 0);
            assert_eq!((api.nvlist_exists)(l.0, c"kind".as_ptr()), 0);
        }
        assert!(NvList::props(None, &[("a", "nul\0byte")]).is_err());
    }
}
