//! ZFS through the `zfs` command: the committed interface of OpenZFS, and the
//! only one zfs-fuse offers.
//!
//! Every call is an argument list (never a shell string). Only options that
//! both zfs-fuse 0.7 and OpenZFS 2.x accept are used: `zfs get -H -p -o
//! name,property,value` (no `-t`, no `zfs list -p`). One difference matters:
//! zfs-fuse's `zfs snapshot` takes a single argument, so an atomic snapshot of
//! several datasets uses `zfs snapshot -r` on their common parent there.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use async_trait::async_trait;
use tokio::process::Command;

use super::{DatasetInfo, DatasetType, PoolSpace, SpaceLimit, Storage, PROP_PREFIX};
use crate::error::{Error, Result, ZfsErrorKind};

/// Which `zfs` userland is installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZfsFlavor {
    /// OpenZFS 0.8+ / 2.x: `zfs version` works, multi-argument snapshot.
    OpenZfs,
    /// zfs-fuse 0.7 and other old userlands.
    Legacy,
}

/// Storage backend that runs the `zfs` command.
#[derive(Debug)]
pub struct ZfsCli {
    zfs: PathBuf,
    flavor: OnceLock<ZfsFlavor>,
}

impl Default for ZfsCli {
    fn default() -> Self {
        Self::new("zfs")
    }
}

/// Properties read for every dataset.
const BASE_PROPS: &str = "type,used,referenced,origin,mountpoint,quota";

impl ZfsCli {
    /// A backend running the given `zfs` binary (a name on `PATH` or a path).
    pub fn new(zfs: impl Into<PathBuf>) -> Self {
        ZfsCli {
            zfs: zfs.into(),
            flavor: OnceLock::new(),
        }
    }

    /// Detect (once) which userland this is.
    pub async fn flavor(&self) -> ZfsFlavor {
        if let Some(f) = self.flavor.get() {
            return *f;
        }
        let f = match Command::new(&self.zfs).arg("version").output().await {
            Ok(o) if o.status.success() => ZfsFlavor::OpenZfs,
            _ => ZfsFlavor::Legacy,
        };
        *self.flavor.get_or_init(|| f)
    }

    async fn run(&self, args: &[String]) -> Result<String> {
        tracing::debug!(cmd = ?self.zfs, ?args, "zfs");
        let out = Command::new(&self.zfs)
            .args(args)
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Error::zfs_failure(
                        ZfsErrorKind::Unavailable,
                        format!("zfs {}", args.join(" ")),
                        args.last().cloned().unwrap_or_default(),
                        e.to_string(),
                        format!(
                            "the `{}` command was not found: install ZFS (e.g. `apt-get install zfs-fuse`, then start `zfs-fuse`)",
                            self.zfs.display()
                        ),
                    )
                } else {
                    Error::io(format!("running {}", self.zfs.display()), e)
                }
            })?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        Err(classify_error(args, &stderr))
    }

    fn prop_args(props: &[(&str, &str)]) -> Vec<String> {
        props
            .iter()
            .flat_map(|(k, v)| ["-o".to_string(), format!("{PROP_PREFIX}{k}={v}")])
            .collect()
    }

    /// `zfs create` or `zfs clone` (`verb`) up to its operands: the
    /// mountpoint when one is given, then betterpg's properties.
    fn new_fs_args(verb: &str, mountpoint: Option<&Path>, props: &[(&str, &str)]) -> Vec<String> {
        let mut args: Vec<String> = vec![verb.into()];
        if let Some(mp) = mountpoint {
            args.push("-o".into());
            args.push(format!("mountpoint={}", mp.display()));
        }
        args.extend(Self::prop_args(props));
        args
    }

    async fn get_props(&self, names: &[&str], recursive: bool) -> Result<Vec<DatasetInfo>> {
        // "all" would be the portable way to read user properties, but it is
        // slow on big trees; user properties are asked for by name instead.
        let props = format!("{BASE_PROPS},{}", user_prop_names().join(","));
        let mut args: Vec<String> = vec!["get".into()];
        if recursive {
            args.push("-r".into());
        }
        // `source` says whether a user property is set on the dataset
        // itself or inherited: only local ones say who made it.
        args.extend(["-H", "-p", "-o", "name,property,value,source"].map(String::from));
        args.push(props);
        args.extend(names.iter().map(|s| s.to_string()));
        let out = self.run(&args).await?;
        Ok(parse_get_output(&out))
    }
}

impl ZfsCli {
    /// Path of the `zpool` command next to `zfs`.
    fn zpool(&self) -> PathBuf {
        match self.zfs.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.join("zpool"),
            _ => PathBuf::from("zpool"),
        }
    }

    async fn run_zpool(&self, args: &[&str]) -> Result<()> {
        let out = Command::new(self.zpool())
            .args(args)
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| Error::io("running zpool", e))?;
        if out.status.success() {
            Ok(())
        } else {
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
            let cmd = format!("zpool {}", args.join(" "));
            let message = format!("`{cmd}` failed: {stderr}");
            // (zpool's arguments do not end with a dataset: none is named)
            Err(Error::zfs_failure(
                classify_stderr(&stderr),
                cmd,
                "",
                stderr,
                message,
            ))
        }
    }

    /// Create a pool on a new sparse file of `size` bytes, mounted at
    /// `mountpoint`. Refuses an existing file or pool, and a size the host
    /// does not have free (see [`ZfsCli::check_file_pool`]).
    pub async fn create_file_pool(
        &self,
        pool: &str,
        file: &Path,
        size: u64,
        mountpoint: &Path,
    ) -> Result<()> {
        self.check_file_pool(pool, file, size).await?;
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        }
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(file)
            .map_err(|e| {
                Error::io(
                    format!(
                        "creating the pool file {} (it must not exist yet)",
                        file.display()
                    ),
                    e,
                )
            })?;
        f.set_len(size)
            .map_err(|e| Error::io(format!("sizing {}", file.display()), e))?;
        drop(f);
        let mp = mountpoint.to_string_lossy();
        let fp = file.to_string_lossy();
        if let Err(e) = self.run_zpool(&["create", "-m", &mp, pool, &fp]).await {
            let _ = std::fs::remove_file(file);
            return Err(e);
        }
        Ok(())
    }

    /// Everything [`ZfsCli::create_file_pool`] checks before it makes
    /// anything: an absolute path, a new pool name, at least 64M, and at
    /// least `size` free on the host file system that will hold the file.
    pub async fn check_file_pool(&self, pool: &str, file: &Path, size: u64) -> Result<()> {
        if !file.is_absolute() {
            return Err(Error::Config(format!(
                "--pool-file must be an absolute path, not {}",
                file.display()
            )));
        }
        if self.get(pool).await?.is_some() {
            return Err(Error::AlreadyExists {
                what: "ZFS pool",
                name: pool.to_string(),
            });
        }
        if size < 64 << 20 {
            return Err(Error::Config("a pool needs at least 64M".into()));
        }
        // The file is sparse: ZFS (and betterpg's headroom for databases)
        // would plan for `size` bytes the host may not have, and a pool
        // whose file cannot grow suspends, hanging every database on it.
        let (free, fs_dir) = host_free_space(file)?;
        if free < size {
            return Err(Error::NoSpace(format!(
                "the pool file {} would be {} (--size) but the file system holding {} has only {} free: \
                 the file is sparse, so the pool would plan for space the host does not have and \
                 suspend (every database hanging) when the host fills up. Free space there, give a \
                 --size of at most {}, or put --pool-file on a file system with more room",
                file.display(),
                crate::util::human_bytes(size),
                fs_dir.display(),
                crate::util::human_bytes(free),
                crate::util::human_bytes(free),
            )));
        }
        Ok(())
    }

    /// Create the file system `name` with betterpg's user properties
    /// `props` and the native properties `native` (e.g. `recordsize=8K`)
    /// in ONE `zfs create`, so a value ZFS refuses leaves nothing made.
    pub async fn create_with_native(
        &self,
        name: &str,
        props: &[(&str, &str)],
        native: &[(String, String)],
    ) -> Result<()> {
        let mut args: Vec<String> = vec!["create".into()];
        for (k, v) in native {
            args.push("-o".into());
            args.push(format!("{k}={v}"));
        }
        args.extend(Self::prop_args(props));
        args.push(name.to_string());
        self.run(&args).await.map(drop)
    }

    /// The values of native properties `keys` of `name` as ZFS shows them
    /// (`8K`, `off`, `lz4` ...).
    pub async fn get_native(&self, name: &str, keys: &[&str]) -> Result<BTreeMap<String, String>> {
        if keys.is_empty() {
            return Ok(BTreeMap::new());
        }
        let args: Vec<String> = vec![
            "get".into(),
            "-H".into(),
            "-o".into(),
            "property,value".into(),
            keys.join(","),
            name.to_string(),
        ];
        let out = self.run(&args).await?;
        Ok(out
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect())
    }

    /// Set a native (non-user) property, e.g. `compression=on`.
    pub async fn set_native(&self, name: &str, prop: &str, value: &str) -> Result<()> {
        let args = vec![
            "set".to_string(),
            format!("{prop}={value}"),
            name.to_string(),
        ];
        self.run(&args).await.map(drop)
    }

    /// Destroy a pool (tests and failed inits).
    pub async fn destroy_pool(&self, pool: &str) -> Result<()> {
        self.run_zpool(&["destroy", "-f", pool]).await
    }
}

/// Bytes an unprivileged writer may still allocate on the file system
/// holding `path` (statvfs `f_bavail * f_frsize`), measured at `path`'s
/// nearest existing ancestor, which is returned too.
pub fn host_free_space(path: &Path) -> Result<(u64, PathBuf)> {
    let dir = path
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"))
        .to_path_buf();
    let st = nix::sys::statvfs::statvfs(&dir).map_err(|e| {
        Error::io(
            format!("reading the free space of {}", dir.display()),
            std::io::Error::from(e),
        )
    })?;
    #[allow(clippy::unnecessary_cast)] // the field types differ by platform
    let free = (st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64);
    Ok((free, dir))
}

/// A file-backed pool's file: how big it may get and what it holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PoolFileSpace {
    /// Apparent size (the pool's size), bytes.
    pub size: u64,
    /// Bytes the host has allocated to it so far (it is sparse).
    pub allocated: u64,
    /// Free bytes on the host file system holding it.
    pub host_free: u64,
}

impl PoolFileSpace {
    /// Measure `file`.
    pub fn of(file: &Path) -> Result<PoolFileSpace> {
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::metadata(file)
            .map_err(|e| Error::io(format!("reading {}", file.display()), e))?;
        let (host_free, _) = host_free_space(file)?;
        Ok(PoolFileSpace {
            size: md.len(),
            allocated: md.blocks().saturating_mul(512),
            host_free,
        })
    }

    /// Bytes the file can still grow by before it is fully allocated.
    pub fn can_grow(&self) -> u64 {
        self.size.saturating_sub(self.allocated)
    }

    /// True when the host could not hold the pool filled up: the pool would
    /// suspend before ZFS sees it full.
    pub fn host_short(&self) -> bool {
        self.host_free < self.can_grow()
    }
}

/// The user properties betterpg reads back (without prefix).
pub(crate) fn user_prop_names() -> Vec<String> {
    super::ZFS_PROPS
        .iter()
        .map(|p| format!("{PROP_PREFIX}{p}"))
        .collect()
}

/// What kind of failure a `zfs`/`zpool` command's stderr reports.
///
/// The commands say so only in text (OpenZFS documents them, not their
/// messages, as its interface; Incus and Docker's zfs driver read stderr the
/// same way): this is the one place that reads it, and every decision above
/// storage is taken on the kind.
pub(crate) fn classify_stderr(stderr: &str) -> ZfsErrorKind {
    let lower = stderr.to_ascii_lowercase();
    if lower.contains("dataset does not exist") || lower.contains("could not find any snapshots") {
        ZfsErrorKind::NotFound
    } else if lower.contains("dataset already exists") {
        ZfsErrorKind::Exists
    } else if lower.contains("has children")
        || lower.contains("has dependent clones")
        || lower.contains("snapshot is cloned")
    {
        ZfsErrorKind::HasDependents
    } else if lower.contains("is busy") {
        ZfsErrorKind::Busy
    } else if lower.contains("space") || lower.contains("quota exceeded") {
        // "out of space", "size is greater than available space",
        // "no space left on device"
        ZfsErrorKind::NoSpace
    } else if lower.contains("connect") && lower.contains("zfs-fuse") || lower.contains("/dev/zfs")
    {
        ZfsErrorKind::Unavailable
    } else {
        ZfsErrorKind::Other
    }
}

/// Map a failed `zfs` invocation to a typed error from its stderr.
fn classify_error(args: &[String], stderr: &str) -> Error {
    let cmd = format!("zfs {}", args.join(" "));
    let kind = classify_stderr(stderr);
    let dataset = args.last().cloned().unwrap_or_default();
    let message = match kind {
        ZfsErrorKind::Unavailable => format!(
            "`{cmd}` failed: {stderr}. Is the ZFS daemon/module running? (zfs-fuse: start `zfs-fuse`)"
        ),
        _ => format!("`{cmd}` failed: {stderr}"),
    };
    Error::zfs_failure(kind, cmd, dataset, stderr, message)
}

/// Parse `zfs get -H -p -o name,property,value,source` output into
/// datasets, in the order they first appear. A value may hold tabs; the
/// source (`local`, `default`, `inherited from X`, `-` ...) never does.
pub fn parse_get_output(out: &str) -> Vec<DatasetInfo> {
    let mut order: Vec<String> = Vec::new();
    let mut map: BTreeMap<String, DatasetInfo> = BTreeMap::new();
    for line in out.lines() {
        let mut parts = line.splitn(3, '\t');
        let (Some(name), Some(prop), Some(rest)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let Some((value, source)) = rest.rsplit_once('\t') else {
            continue;
        };
        let entry = map.entry(name.to_string()).or_insert_with(|| {
            order.push(name.to_string());
            DatasetInfo {
                name: name.to_string(),
                kind: if name.contains('@') {
                    DatasetType::Snapshot
                } else {
                    DatasetType::Filesystem
                },
                used: 0,
                referenced: 0,
                origin: None,
                quota: None,
                mountpoint: None,
                props: BTreeMap::new(),
                local: BTreeSet::new(),
            }
        });
        let unset = value == "-" || value.is_empty();
        match prop {
            "type" => {
                entry.kind = match value {
                    "filesystem" => DatasetType::Filesystem,
                    "snapshot" => DatasetType::Snapshot,
                    _ => DatasetType::Other,
                }
            }
            "used" => entry.used = value.parse().unwrap_or(0),
            "referenced" => entry.referenced = value.parse().unwrap_or(0),
            "origin" if !unset => entry.origin = Some(value.to_string()),
            // 0 (or "none") means no quota.
            "quota" => entry.quota = value.parse().ok().filter(|q| *q > 0),
            "mountpoint" if !unset && value.starts_with('/') => {
                entry.mountpoint = Some(PathBuf::from(value))
            }
            p => {
                if let Some(k) = p.strip_prefix(PROP_PREFIX) {
                    if !unset {
                        entry.props.insert(k.to_string(), value.to_string());
                        if source == "local" {
                            entry.local.insert(k.to_string());
                        }
                    }
                }
            }
        }
    }
    order.into_iter().filter_map(|n| map.remove(&n)).collect()
}

/// The deepest dataset that is an ancestor-or-self of all `datasets`.
fn common_parent(datasets: &[&str]) -> Option<String> {
    let first: Vec<&str> = datasets.first()?.split('/').collect();
    let mut len = first.len();
    for d in &datasets[1..] {
        let parts: Vec<&str> = d.split('/').collect();
        len = len.min(parts.len());
        for i in 0..len {
            if parts[i] != first[i] {
                len = i;
                break;
            }
        }
    }
    (len > 0).then(|| first[..len].join("/"))
}

#[async_trait]
impl Storage for ZfsCli {
    fn backend_name(&self) -> String {
        match self.flavor.get() {
            Some(ZfsFlavor::Legacy) => "zfs-cli (zfs-fuse/legacy)".into(),
            Some(ZfsFlavor::OpenZfs) => "zfs-cli (OpenZFS)".into(),
            None => "zfs-cli".into(),
        }
    }

    async fn create(
        &self,
        dataset: &str,
        mountpoint: Option<&Path>,
        props: &[(&str, &str)],
    ) -> Result<()> {
        let mut args = Self::new_fs_args("create", mountpoint, props);
        args.push(dataset.into());
        self.run(&args).await.map(drop)
    }

    async fn snapshot(&self, datasets: &[&str], snap: &str, props: &[(&str, &str)]) -> Result<()> {
        if datasets.is_empty() {
            return Err(Error::Internal("snapshot of no dataset".into()));
        }
        let mut args: Vec<String> = vec!["snapshot".into()];
        args.extend(Self::prop_args(props));
        if datasets.len() == 1 || self.flavor().await == ZfsFlavor::OpenZfs {
            // OpenZFS makes one multi-argument call atomic.
            args.extend(datasets.iter().map(|d| format!("{d}@{snap}")));
            return self.run(&args).await.map(drop);
        }
        // Legacy userland: a recursive snapshot is atomic, so it is used when
        // the datasets are exactly one subtree.
        let parent = common_parent(datasets)
            .ok_or_else(|| Error::Unsupported("datasets in different pools".into()))?;
        let subtree: Vec<String> = self
            .get_props(&[&parent], true)
            .await?
            .into_iter()
            .filter(|d| d.kind == DatasetType::Filesystem)
            .map(|d| d.name)
            .collect();
        let mut wanted: Vec<String> = datasets.iter().map(|s| s.to_string()).collect();
        let mut have = subtree.clone();
        wanted.sort();
        have.sort();
        if wanted != have {
            return Err(Error::Unsupported(format!(
                "this zfs userland cannot snapshot {datasets:?} atomically: they are not exactly the subtree of {parent}"
            )));
        }
        args.push("-r".into());
        args.push(format!("{parent}@{snap}"));
        self.run(&args).await.map(drop)
    }

    async fn clone_snapshot(
        &self,
        snapshot: &str,
        target: &str,
        mountpoint: Option<&Path>,
        props: &[(&str, &str)],
    ) -> Result<()> {
        let mut args = Self::new_fs_args("clone", mountpoint, props);
        args.push(snapshot.into());
        args.push(target.into());
        self.run(&args).await.map(drop)
    }

    async fn destroy(&self, name: &str, force: bool) -> Result<()> {
        let mut args: Vec<String> = vec!["destroy".into()];
        if force && !name.contains('@') {
            args.push("-r".into());
        }
        args.push(name.into());
        // zfs-fuse transiently reports a dataset it just made, cloned or
        // unmounted as busy; OpenZFS does not. Retry briefly there only.
        let mut tries = 0;
        loop {
            match self.run(&args).await {
                Err(Error::Zfs {
                    kind: ZfsErrorKind::Busy,
                    ..
                }) if tries < 20 && self.flavor().await == ZfsFlavor::Legacy => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                }
                r => return r.map(drop),
            }
        }
    }

    async fn rollback(&self, snapshot: &str) -> Result<()> {
        if !snapshot.contains('@') {
            return Err(Error::Internal(format!(
                "rollback to {snapshot:?}: not a snapshot"
            )));
        }
        // No -r: a newer snapshot (and its clones) is never destroyed to
        // make the rollback possible; the caller checks for them first.
        self.run(&["rollback".to_string(), snapshot.to_string()])
            .await
            .map(drop)
    }

    async fn set_space_limit(
        &self,
        dataset: &str,
        limit: SpaceLimit,
        bytes: Option<u64>,
    ) -> Result<()> {
        self.set_native(dataset, limit.property(), &SpaceLimit::value(bytes))
            .await
    }

    async fn set_props(&self, name: &str, props: &[(&str, &str)]) -> Result<()> {
        for (k, v) in props {
            let args = vec![
                "set".to_string(),
                format!("{PROP_PREFIX}{k}={v}"),
                name.to_string(),
            ];
            self.run(&args).await?;
        }
        Ok(())
    }

    async fn get(&self, name: &str) -> Result<Option<DatasetInfo>> {
        match self.get_props(&[name], false).await {
            Ok(mut v) => Ok(v.pop()),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn list(&self, root: &str) -> Result<Vec<DatasetInfo>> {
        self.get_props(&[root], true).await
    }

    async fn pool_space(&self, dataset: &str) -> Result<PoolSpace> {
        let pool = dataset.split('/').next().unwrap_or(dataset);
        let args: Vec<String> = [
            "get",
            "-H",
            "-p",
            "-o",
            "name,property,value",
            "used,available",
            pool,
        ]
        .map(String::from)
        .to_vec();
        let out = self.run(&args).await?;
        let mut space = PoolSpace {
            used: 0,
            available: 0,
        };
        for line in out.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() == 3 {
                let v = f[2].parse().unwrap_or(0);
                match f[1] {
                    "used" => space.used = v,
                    "available" => space.available = v,
                    _ => {}
                }
            }
        }
        Ok(space)
    }

    // The init operations: this backend's own `zfs` binary.

    async fn flavor(&self) -> ZfsFlavor {
        ZfsCli::flavor(self).await
    }

    async fn check_file_pool(&self, pool: &str, file: &Path, size: u64) -> Result<()> {
        ZfsCli::check_file_pool(self, pool, file, size).await
    }

    async fn create_file_pool(
        &self,
        pool: &str,
        file: &Path,
        size: u64,
        mountpoint: &Path,
    ) -> Result<()> {
        ZfsCli::create_file_pool(self, pool, file, size, mountpoint).await
    }

    async fn destroy_pool(&self, pool: &str) -> Result<()> {
        ZfsCli::destroy_pool(self, pool).await
    }

    async fn create_with_native(
        &self,
        name: &str,
        props: &[(&str, &str)],
        native: &[(String, String)],
    ) -> Result<()> {
        ZfsCli::create_with_native(self, name, props, native).await
    }

    async fn get_native(&self, name: &str, keys: &[&str]) -> Result<BTreeMap<String, String>> {
        ZfsCli::get_native(self, name, keys).await
    }

    async fn set_native(&self, name: &str, prop: &str, value: &str) -> Result<()> {
        ZfsCli::set_native(self, name, prop, value).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "tank/b\ttype\tfilesystem\t-\n\
tank/b\tused\t1048576\t-\n\
tank/b\treferenced\t114688\t-\n\
tank/b\torigin\t-\t-\n\
tank/b\tmountpoint\t/tank/b\tdefault\n\
tank/b\tquota\t0\tdefault\n\
tank/b\tbetterpg:kind\t-\t-\n\
tank/b/dev\ttype\tfilesystem\t-\n\
tank/b/dev\tused\t8192\t-\n\
tank/b/dev\treferenced\t40000000\t-\n\
tank/b/dev\torigin\ttank/b/prod@bpg-dev\t-\n\
tank/b/dev\tmountpoint\t/tank/b/dev\tinherited from tank/b\n\
tank/b/dev\tquota\t67108864\tlocal\n\
tank/b/dev\tbetterpg:kind\tbranch\tlocal\n\
tank/b/dev\tbetterpg:parent\tprod\tlocal\n\
tank/b/prod@bpg-dev\ttype\tsnapshot\t-\n\
tank/b/prod@bpg-dev\tused\t0\t-\n\
tank/b/prod@bpg-dev\tmountpoint\t-\t-\n\
tank/b/prod@bpg-dev\tbetterpg:kind\tdatabase\tinherited from tank/b/prod\n\
tank/b/prod@bpg-dev\tbetterpg:note\twith\ttab\tlocal\n";

    #[test]
    fn parses_get_output() {
        let ds = parse_get_output(SAMPLE);
        assert_eq!(ds.len(), 3);
        assert_eq!(ds[0].name, "tank/b");
        assert_eq!(ds[0].used, 1048576);
        assert!(ds[0].props.is_empty(), "unset user props are dropped");
        assert_eq!(ds[0].origin, None);
        assert_eq!(ds[0].quota, None, "quota 0 is no quota");
        assert_eq!(ds[1].quota, Some(64 << 20));
        assert_eq!(ds[1].origin.as_deref(), Some("tank/b/prod@bpg-dev"));
        assert_eq!(ds[1].referenced, 40_000_000);
        assert_eq!(ds[1].props["kind"], "branch");
        assert_eq!(ds[1].props["parent"], "prod");
        assert_eq!(ds[1].mountpoint.as_deref(), Some(Path::new("/tank/b/dev")));
        assert_eq!(ds[2].kind, DatasetType::Snapshot);
        assert_eq!(ds[2].mountpoint, None);
        assert_eq!(ds[2].props["note"], "with\ttab");
        // Where each property comes from: set here, or inherited.
        assert!(ds[1].local.contains("kind") && ds[1].local.contains("parent"));
        assert_eq!(ds[2].props["kind"], "database");
        assert!(!ds[2].local.contains("kind"), "inherited from prod");
        assert!(ds[2].local.contains("note"));
        assert_eq!(ds[1].local_prop("kind"), Some("branch"));
        assert_eq!(ds[2].local_prop("kind"), None);
    }

    #[test]
    fn classifies_errors() {
        let a = vec!["destroy".to_string(), "t/x".to_string()];
        assert_eq!(
            classify_error(&a, "cannot open 't/x': dataset does not exist").code(),
            3
        );
        assert_eq!(
            classify_error(&a, "cannot destroy 't/x': filesystem has children").code(),
            4
        );
        assert_eq!(
            classify_error(&a, "cannot destroy 't/x': filesystem has dependent clones").code(),
            4
        );
        assert_eq!(
            classify_error(&a, "cannot create 't/x': dataset already exists").code(),
            2
        );
        let e = classify_error(&a, "out of space");
        assert_eq!((e.code(), e.zfs_kind()), (7, Some(ZfsErrorKind::NoSpace)));
        let e = classify_error(&a, "cannot destroy 't/x': dataset is busy");
        assert_eq!(e.zfs_kind(), Some(ZfsErrorKind::Busy));
        assert_eq!(
            e.to_string(),
            "zfs: `zfs destroy t/x` failed: cannot destroy 't/x': dataset is busy"
        );
        let Error::Zfs {
            operation,
            dataset,
            stderr,
            ..
        } = e
        else {
            unreachable!()
        };
        assert_eq!(operation, "zfs destroy t/x");
        assert_eq!(dataset, "t/x");
        assert_eq!(stderr, "cannot destroy 't/x': dataset is busy");
        let e = classify_error(&a, "connect: No such file (is zfs-fuse running?)");
        assert_eq!(e.zfs_kind(), Some(ZfsErrorKind::Unavailable));
        assert!(
            e.to_string().contains("Is the ZFS daemon/module running?"),
            "{e}"
        );
        for (stderr, kind) in [
            (
                "cannot set property for 't/x': size is greater than available space",
                ZfsErrorKind::NoSpace,
            ),
            ("cannot create 't/x': out of space", ZfsErrorKind::NoSpace),
            ("cannot open 'nope': no such pool", ZfsErrorKind::Other),
            (
                "cannot unmount '/t/x': pool or dataset is busy",
                ZfsErrorKind::Busy,
            ),
            ("internal error: Invalid argument", ZfsErrorKind::Other),
        ] {
            assert_eq!(classify_stderr(stderr), kind, "{stderr}");
        }
    }

    #[test]
    fn finds_common_parent() {
        assert_eq!(common_parent(&["t/a/b", "t/a/c"]).as_deref(), Some("t/a"));
        assert_eq!(common_parent(&["t/a", "t/a/wal"]).as_deref(), Some("t/a"));
        assert_eq!(common_parent(&["t/a"]).as_deref(), Some("t/a"));
        assert_eq!(common_parent(&["t/a", "u/a"]), None);
    }
}
