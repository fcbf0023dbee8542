//! Tablespaces of a branch: cloned with it, never shared with its source.
//!
//! A tablespace outside the data directory (`CREATE TABLESPACE t LOCATION
//! '/srv/ts'`) is reached through the link `pg_tblspc/OID` and, in a base
//! backup, the `tablespace_map` file. A plain clone of the data directory
//! keeps both pointing at the SOURCE's directory, so the branch would replay
//! and write into production's files. So a branch of a source with
//! tablespaces:
//!
//! 1. finds, before anything is made, the ZFS dataset each tablespace lives
//!    on (from `/proc/self/mountinfo`); one not on a dataset of betterpg's
//!    pool makes the branch refuse, naming the tablespace, its location and
//!    what to do;
//! 2. snapshots those datasets in the same atomic call as the data
//!    directory's dataset;
//! 3. clones each as a child of the branch's dataset (`<branch>/tblspc-OID`,
//!    mounted inside the branch's mountpoint), so destroy, reset and gc
//!    take them with the branch;
//! 4. points `tablespace_map` and every `pg_tblspc` link at the clones
//!    (links are replaced through a directory fd opened without following
//!    links: the data directory belongs to the server's OS user);
//! 5. before any start of a branch, checks that every link (and map entry)
//!    points inside the branch's own dataset, and refuses otherwise.
//!
//! A `pg_wal` that is a link (`initdb --waldir`, an attached cluster's WAL
//! on a dataset of its own) is treated the same way: its dataset is
//! snapshotted in the same call, cloned as `<branch>/wal` (or with the
//! tablespaces sharing its dataset) and the clone's `pg_wal` link points
//! into that clone.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{openat, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::{fchownat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use serde::Serialize;

use crate::catalog::Entry;
use crate::error::{Error, Result};
use crate::osuser::OsUser;
use crate::pg::ConnInfo;
use crate::storage::{destroy_with_retry, mountpoint, DatasetInfo, DatasetType, Storage};

/// A tablespace a branch got its own clone of (listed in the branch report).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TablespaceClone {
    /// The tablespace's OID (the name of its `pg_tblspc` link).
    pub oid: u32,
    /// Its name, when the source was running to say it.
    pub name: Option<String>,
    /// Where the source has it.
    pub source_location: PathBuf,
    /// Where the branch has it.
    pub location: PathBuf,
    /// The branch's dataset holding it (a clone of the source's).
    pub dataset: String,
}

/// One tablespace of a source and the dataset it lives on.
#[derive(Debug, Clone)]
struct SourceTablespace {
    oid: u32,
    name: Option<String>,
    location: PathBuf,
    /// The dataset holding it.
    dataset: String,
    /// Its path below that dataset's mountpoint.
    rel: PathBuf,
}

/// A source's `pg_wal` when it is a link to a directory elsewhere.
#[derive(Debug, Clone)]
pub(crate) struct SourceWal {
    /// Where it is (the link resolved).
    pub location: PathBuf,
    /// The dataset holding it.
    dataset: String,
    /// Its path below that dataset's mountpoint.
    rel: PathBuf,
}

/// What a branch must do about its source's tablespaces (and a `pg_wal`
/// outside its data directory).
#[derive(Debug, Clone, Default)]
pub(crate) struct Plan {
    tablespaces: Vec<SourceTablespace>,
    /// The source's `pg_wal`, when it is a link.
    pub wal: Option<SourceWal>,
    /// Datasets to snapshot and clone besides the source's own, sorted.
    datasets: Vec<String>,
}

/// What was made for the tablespaces of one branch (kept for the report and
/// to undo it).
#[derive(Debug, Clone, Default)]
pub(crate) struct Made {
    /// Snapshots of the tablespace datasets (`DATASET@SNAP`).
    pub snapshots: Vec<String>,
    /// The tablespaces with their new places.
    pub clones: Vec<TablespaceClone>,
    /// Where the branch's `pg_wal` link points, when the source's is a link.
    pub wal: Option<PathBuf>,
}

impl Plan {
    /// Every dataset the branch's snapshot must cover, the source's first.
    pub fn snapshot_datasets<'a>(&'a self, source: &'a str) -> Vec<&'a str> {
        let mut v = vec![source];
        v.extend(self.datasets.iter().map(String::as_str));
        v
    }

    /// The snapshots of the tablespace datasets a snapshot named `snap` makes.
    pub fn snapshots(&self, snap: &str) -> Vec<String> {
        self.datasets
            .iter()
            .map(|d| format!("{d}@{snap}"))
            .collect()
    }

    /// Whether the source has neither a tablespace outside its data
    /// directory nor a linked `pg_wal`.
    pub fn is_empty(&self) -> bool {
        self.tablespaces.is_empty() && self.wal.is_none()
    }

    /// Whether the source has the tablespace `oid` outside its data
    /// directory.
    pub fn has_tablespace(&self, oid: u32) -> bool {
        self.tablespaces.iter().any(|t| t.oid == oid)
    }

    /// Say which tablespace blocked an atomic snapshot that this ZFS cannot
    /// take (zfs-fuse: one subtree only), and what to do.
    pub fn explain_snapshot_error(&self, source_dataset: &str, e: Error) -> Error {
        let Error::Unsupported(why) = &e else {
            return e;
        };
        match self
            .tablespaces
            .iter()
            .find(|t| !is_within(&t.dataset, source_dataset))
        {
            Some(t) => Error::Unsupported(format!(
                "tablespace {} at {} is on dataset {}, which this ZFS cannot snapshot in one atomic call with {source_dataset} ({why}): put the tablespace on a child dataset of the database's, e.g. {source_dataset}/{}, or use OpenZFS",
                t.label(),
                t.location.display(),
                t.dataset,
                t.name.as_deref().unwrap_or("ts")
            )),
            None => e,
        }
    }
}

impl SourceTablespace {
    fn label(&self) -> String {
        match &self.name {
            Some(n) => format!("{n:?} (OID {})", self.oid),
            None => format!("with OID {}", self.oid),
        }
    }
}

/// True when `ds` is `parent` or below it.
pub(crate) fn is_within(ds: &str, parent: &str) -> bool {
    ds == parent || ds.strip_prefix(parent).is_some_and(|r| r.starts_with('/'))
}

/// The part of a snapshot name after `@`.
fn snap_suffix(snapshot: &str) -> Option<&str> {
    snapshot.split_once('@').map(|(_, s)| s)
}

/// Find the tablespaces of the source `src` (a database or branch under
/// the root dataset `root`) and the datasets they live on; refuse (changing
/// nothing) when one cannot be cloned.
pub(crate) async fn plan(
    root: &str,
    src: &Entry,
    data_dir: &Path,
    conn: Option<&ConnInfo>,
) -> Result<Plan> {
    let links = read_links(data_dir)?;
    let wal_link = read_wal_link(data_dir)?;
    if links.is_empty() && wal_link.is_none() {
        return Ok(Plan::default());
    }
    let pool = root.split('/').next().unwrap_or_default();
    let mounts = read_mounts()?;
    let mut plan = Plan::default();
    if let Some(target) = wal_link {
        let refuse = |why: String| {
            Error::Unsupported(format!(
                "the pg_wal of {:?} is a link to {}, {why}: a branch would share the source's WAL. Put pg_wal on a ZFS dataset of pool {pool} (e.g. a child of {}), then branch again",
                src.name,
                target.display(),
                src.dataset
            ))
        };
        let real = std::fs::canonicalize(&target)
            .map_err(|e| refuse(format!("which cannot be resolved ({e})")))?;
        let (dataset, rel) =
            dataset_of(&mounts, &real, pool, root, &src.dataset).map_err(refuse)?;
        if dataset != src.dataset && !plan.datasets.contains(&dataset) {
            plan.datasets.push(dataset.clone());
        }
        plan.wal = Some(SourceWal {
            location: real,
            dataset,
            rel,
        });
    }
    if links.is_empty() {
        plan.datasets.sort();
        return Ok(plan);
    }
    let names = match conn {
        Some(c) => tablespace_names(c).await.unwrap_or_else(|e| {
            tracing::warn!("reading tablespace names of {}: {e}", src.name);
            BTreeMap::new()
        }),
        None => BTreeMap::new(),
    };
    for (oid, location) in links {
        let mut t = SourceTablespace {
            oid,
            name: names.get(&oid).cloned(),
            location,
            dataset: String::new(),
            rel: PathBuf::new(),
        };
        let refuse = |t: &SourceTablespace, why: String| {
            Error::Unsupported(format!(
                    "tablespace {} of {:?} is at {}, {why}: a branch would share the source's files. Put it on a ZFS dataset of pool {pool} (e.g. a child of {}: `zfs create {}/ts`, then `CREATE TABLESPACE ... LOCATION` there and `ALTER TABLE ... SET TABLESPACE`), then branch again",
                    t.label(),
                    src.name,
                    t.location.display(),
                    src.dataset,
                    src.dataset
                ))
        };
        let real = std::fs::canonicalize(&t.location)
            .map_err(|e| refuse(&t, format!("which cannot be resolved ({e})")))?;
        let (dataset, rel) =
            dataset_of(&mounts, &real, pool, root, &src.dataset).map_err(|why| refuse(&t, why))?;
        t.rel = rel;
        t.dataset = dataset;
        if t.dataset != src.dataset && !plan.datasets.contains(&t.dataset) {
            plan.datasets.push(t.dataset.clone());
        }
        plan.tablespaces.push(t);
    }
    plan.datasets.sort();
    Ok(plan)
}

/// The ZFS dataset of pool `pool` holding the existing path `real` (links
/// resolved) and the path below its mountpoint; why not when it is on no
/// such dataset, or on a dataset of another betterpg entry (under `root`
/// but not under `own`).
fn dataset_of(
    mounts: &[Mount],
    real: &Path,
    pool: &str,
    root: &str,
    own: &str,
) -> std::result::Result<(String, PathBuf), String> {
    let mount = mounts
        .iter()
        .filter(|m| real.starts_with(&m.point))
        .max_by_key(|m| m.point.components().count())
        .ok_or_else(|| "which is on no mounted file system".to_string())?;
    let on_pool =
        matches!(mount.fstype.as_str(), "zfs" | "fuse.zfs") && is_within(&mount.source, pool);
    if !on_pool {
        return Err(format!(
            "which is not on a ZFS dataset of pool {pool} (it is on {} {})",
            mount.fstype, mount.source
        ));
    }
    if is_within(&mount.source, root) && !is_within(&mount.source, own) {
        return Err(format!(
            "on dataset {} of another betterpg database or branch",
            mount.source
        ));
    }
    let rel = real
        .strip_prefix(&mount.point)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    Ok((mount.source.clone(), rel))
}

/// Where an existing path (links resolved) is: the ZFS dataset holding
/// it, that dataset's mountpoint, and the path below it; `None` when it
/// is on no ZFS file system.
pub(crate) fn zfs_location(real: &Path) -> Result<Option<(String, PathBuf, PathBuf)>> {
    let mounts = read_mounts()?;
    Ok(mounts
        .iter()
        .filter(|m| real.starts_with(&m.point))
        .max_by_key(|m| m.point.components().count())
        .filter(|m| matches!(m.fstype.as_str(), "zfs" | "fuse.zfs"))
        .map(|m| {
            (
                m.source.clone(),
                m.point.clone(),
                real.strip_prefix(&m.point)
                    .map(Path::to_path_buf)
                    .unwrap_or_default(),
            )
        }))
}

/// The file system type and source of the mount holding `real` (for
/// messages).
pub(crate) fn mount_of(real: &Path) -> Result<Option<(String, String)>> {
    Ok(read_mounts()?
        .into_iter()
        .filter(|m| real.starts_with(&m.point))
        .max_by_key(|m| m.point.components().count())
        .map(|m| (m.fstype, m.source)))
}

/// Clone the tablespace datasets of `plan` (snapshot `snap`) under the
/// branch's dataset and point the clone's `pg_tblspc` links at them, owned
/// by `user`. What was made is recorded in `made` as it is made (for the
/// undo).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn clone_all(
    storage: &dyn Storage,
    home: &Path,
    user: &OsUser,
    plan: &Plan,
    entry: &Entry,
    snap: &str,
    branch_mountpoint: &Path,
    made: &mut Made,
) -> Result<()> {
    if plan.is_empty() {
        return Ok(());
    }
    made.snapshots = plan.snapshots(snap);
    let home = home.to_string_lossy().into_owned();
    let created = entry.created_at.to_string();
    // One clone per dataset, named after its first tablespace (`wal`
    // when it holds only the WAL).
    let mut mounted: BTreeMap<&str, (String, PathBuf)> = BTreeMap::new();
    for ds in &plan.datasets {
        let first = plan
            .tablespaces
            .iter()
            .filter(|t| &t.dataset == ds)
            .map(|t| t.oid)
            .min();
        let target = match first {
            Some(oid) => format!("{}/tblspc-{oid}", entry.dataset),
            None => format!("{}/wal", entry.dataset),
        };
        storage
            .clone_snapshot(
                &format!("{ds}@{snap}"),
                &target,
                None,
                &[
                    ("managed", "yes"),
                    ("kind", "tablespace"),
                    ("name", &entry.name),
                    ("dataset", &target),
                    ("home", &home),
                    ("created", &created),
                ],
            )
            .await?;
        let mp = mountpoint(storage, &target).await?;
        // The clone holds the source's files: the branch's server owns them.
        user.chown_tree(&mp)?;
        mounted.insert(ds, (target, mp));
    }
    let place = |ds: &str, rel: &Path| -> (String, PathBuf) {
        match mounted.get(ds) {
            Some((d, mp)) => (d.clone(), mp.join(rel)),
            None => (entry.dataset.clone(), branch_mountpoint.join(rel)),
        }
    };
    let subdir = entry.data_subdir();
    if let Some(w) = &plan.wal {
        let (_, location) = place(&w.dataset, &w.rel);
        check_inside(&location, branch_mountpoint)?;
        std::os::unix::fs::lchown(&location, Some(user.uid), Some(user.gid))
            .map_err(|e| Error::io(format!("chown {}", location.display()), e))?;
        relink_wal(branch_mountpoint, &subdir, &location, user.uid, user.gid)?;
        made.wal = Some(location);
    }
    for t in &plan.tablespaces {
        let (dataset, location) = place(&t.dataset, &t.rel);
        check_inside(&location, branch_mountpoint)?;
        std::os::unix::fs::lchown(&location, Some(user.uid), Some(user.gid))
            .map_err(|e| Error::io(format!("chown {}", location.display()), e))?;
        made.clones.push(TablespaceClone {
            oid: t.oid,
            name: t.name.clone(),
            source_location: t.location.clone(),
            location,
            dataset,
        });
    }
    relink(branch_mountpoint, &subdir, &made.clones, user.uid, user.gid)
}

/// The snapshots of tablespace datasets cloned for the branch on `dataset`:
/// the origins of its children that carry the branch's snapshot name. Read
/// before the branch's dataset is destroyed, destroyed after.
pub(crate) async fn snapshots_of(
    storage: &dyn Storage,
    dataset: &str,
    snapshot: Option<&str>,
) -> Result<Vec<String>> {
    let Some(suffix) = snapshot.and_then(snap_suffix) else {
        return Ok(Vec::new());
    };
    let list = match storage.list(dataset).await {
        Ok(l) => l,
        Err(Error::NotFound { .. }) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(list
        .into_iter()
        .filter(|d| d.kind == DatasetType::Filesystem && d.name != dataset)
        .filter_map(|d| d.origin)
        .filter(|o| snap_suffix(o) == Some(suffix))
        .collect())
}

/// Destroy tablespace snapshots (already gone is fine).
pub(crate) async fn destroy_snapshots(storage: &dyn Storage, snapshots: &[String]) -> Result<()> {
    for s in snapshots {
        destroy_with_retry(storage, s, false).await?;
    }
    Ok(())
}

/// For gc: a dataset inside a kept entry's dataset (its tablespace clones)
/// belongs to that entry.
pub(crate) fn inside_kept(d: &DatasetInfo, kept: &[Entry]) -> bool {
    kept.iter()
        .any(|e| d.name != e.dataset && is_within(&d.name, &e.dataset))
}

/// For gc: a snapshot with a kept branch's snapshot name is that branch's
/// (the snapshots of its tablespace datasets carry the same name).
pub(crate) fn snapshot_kept(d: &DatasetInfo, kept: &[Entry]) -> bool {
    let Some(suffix) = snap_suffix(&d.name) else {
        return false;
    };
    kept.iter()
        .filter_map(|e| e.snapshot.as_deref())
        .any(|s| snap_suffix(s) == Some(suffix))
}

/// `tablespace_map` as `pg_backup_stop` returned it, with each path
/// replaced by the branch's clone of it.
pub(crate) fn rewrite_map(map: &str, clones: &[TablespaceClone]) -> Result<String> {
    let mut out = String::new();
    for (oid, _) in parse_map(map)? {
        let c = clones.iter().find(|c| c.oid == oid).ok_or_else(|| {
            Error::postgres(format!(
                "tablespace_map names tablespace {oid}, which was not there when the branch began: branch again"
            ))
        })?;
        out.push_str(&format!("{oid} {}\n", escape_map_path(&c.location)));
    }
    Ok(out)
}

/// `(oid, path)` of each line of a `tablespace_map` (paths unescaped: the
/// server writes `\` before a newline, carriage return or backslash).
fn parse_map(map: &str) -> Result<Vec<(u32, PathBuf)>> {
    let mut out = Vec::new();
    let mut chars = map.chars().peekable();
    while chars.peek().is_some() {
        let mut oid = String::new();
        for c in chars.by_ref() {
            if c == ' ' {
                break;
            }
            oid.push(c);
        }
        let oid: u32 = oid
            .parse()
            .map_err(|_| Error::postgres(format!("unreadable tablespace_map: {map:?}")))?;
        let mut path = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => path.extend(chars.next()),
                '\n' => break,
                c => path.push(c),
            }
        }
        out.push((oid, PathBuf::from(path)));
    }
    Ok(out)
}

fn escape_map_path(p: &Path) -> String {
    let mut s = String::new();
    for c in p.to_string_lossy().chars() {
        if matches!(c, '\n' | '\r' | '\\') {
            s.push('\\');
        }
        s.push(c);
    }
    s
}

/// Before a branch starts: every `pg_tblspc` link and `tablespace_map`
/// entry of `data_dir` must point inside `own` (the branch's dataset, which
/// holds its tablespace clones), through real directories only.
pub fn check_links(name: &str, data_dir: &Path, own: &Path) -> Result<()> {
    if let Some(target) = read_wal_link(data_dir)? {
        check_inside(&target, own).map_err(|_| {
            Error::InvalidState(format!(
                "branch {name:?}: its pg_wal points to {}, outside its own clones under {}: refusing to start it (it would use another server's WAL); destroy the branch and branch again",
                target.display(),
                own.display()
            ))
        })?;
    }
    let mut targets = read_links(data_dir)?;
    let map = data_dir.join("tablespace_map");
    match std::fs::symlink_metadata(&map) {
        Ok(md) if md.is_file() => {
            let text = std::fs::read_to_string(&map)
                .map_err(|e| Error::io(format!("reading {}", map.display()), e))?;
            targets.extend(parse_map(&text)?);
        }
        Ok(_) => {
            return Err(Error::InvalidState(format!(
                "{name:?}: {} is not a regular file: refusing to start the branch",
                map.display()
            )))
        }
        Err(_) => {}
    }
    for (oid, target) in targets {
        check_inside(&target, own).map_err(|_| {
            Error::InvalidState(format!(
                "branch {name:?}: its tablespace {oid} points to {}, outside its own clones under {}: refusing to start it (it would use another server's files); destroy the branch and branch again",
                target.display(),
                own.display()
            ))
        })?;
    }
    Ok(())
}

/// `path` is absolute, below `root`, without `..`, and every component
/// below `root` is a real directory (no link).
fn check_inside(path: &Path, root: &Path) -> Result<()> {
    let bad = || {
        Error::InvalidState(format!(
            "{} is not a directory inside {}",
            path.display(),
            root.display()
        ))
    };
    let rel = path.strip_prefix(root).map_err(|_| bad())?;
    if !path.is_absolute() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(bad());
    }
    let mut p = root.to_path_buf();
    for c in rel.components() {
        p.push(c);
        match std::fs::symlink_metadata(&p) {
            Ok(md) if md.is_dir() => {}
            _ => return Err(bad()),
        }
    }
    Ok(())
}

/// Where the `pg_wal` of a data directory points when it is a link
/// (read, never followed); `None` when it is a directory (or absent).
fn read_wal_link(data_dir: &Path) -> Result<Option<PathBuf>> {
    let p = data_dir.join("pg_wal");
    match std::fs::symlink_metadata(&p) {
        Ok(md) if md.file_type().is_symlink() => std::fs::read_link(&p)
            .map(Some)
            .map_err(|e| Error::io(format!("reading {}", p.display()), e)),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", p.display()), e)),
    }
}

/// The `pg_tblspc` links of a data directory: `(oid, target)`. Links are
/// read, never followed; anything else there is refused.
fn read_links(data_dir: &Path) -> Result<Vec<(u32, PathBuf)>> {
    let dir = data_dir.join("pg_tblspc");
    match std::fs::symlink_metadata(&dir) {
        Ok(md) if md.is_dir() => {}
        Ok(_) => {
            return Err(Error::InvalidState(format!(
                "{} is not a directory",
                dir.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("reading {}", dir.display()), e)),
    }
    let rd =
        std::fs::read_dir(&dir).map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
    let mut out = Vec::new();
    for f in rd {
        let f = f.map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
        let p = f.path();
        let oid: u32 = f.file_name().to_string_lossy().parse().map_err(|_| {
            Error::InvalidState(format!("unexpected file {} in pg_tblspc", p.display()))
        })?;
        let md = std::fs::symlink_metadata(&p)
            .map_err(|e| Error::io(format!("reading {}", p.display()), e))?;
        if !md.file_type().is_symlink() {
            // PostgreSQL's in-place tablespaces (a directory here, for tests
            // only) live inside the data directory: the clone has them.
            if md.is_dir() {
                continue;
            }
            return Err(Error::InvalidState(format!(
                "{} is neither a tablespace link nor a directory",
                p.display()
            )));
        }
        let target =
            std::fs::read_link(&p).map_err(|e| Error::io(format!("reading {}", p.display()), e))?;
        out.push((oid, target));
    }
    out.sort();
    Ok(out)
}

fn nix_io(what: String, e: nix::Error) -> Error {
    Error::io(what, std::io::Error::from(e))
}

/// Open the directory `root/rel` through directory fds, following no
/// link on the way below `root` (a mountpoint of betterpg's): the
/// directories of a clone are the server user's.
fn open_below(root: &Path, rel: &Path) -> Result<OwnedFd> {
    let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
    let open = |dir: Option<&OwnedFd>, name: &Path| -> Result<OwnedFd> {
        let fd = openat(dir.map(|d| d.as_raw_fd()), name, flags, Mode::empty())
            .map_err(|e| nix_io(format!("opening {} (no links followed)", name.display()), e))?;
        // SAFETY: openat returned a new descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    };
    let mut fd = open(None, root)?;
    for c in rel.components() {
        match c {
            Component::Normal(n) => fd = open(Some(&fd), Path::new(n))?,
            Component::CurDir => {}
            _ => {
                return Err(Error::InvalidState(format!(
                    "data directory path {} leaves {}",
                    rel.display(),
                    root.display()
                )))
            }
        }
    }
    Ok(fd)
}

/// Replace the link `name` in the directory `dir` by a link to `target`
/// owned by `uid:gid`.
/// (`shown` prefixes the name in messages).
fn replace_link(
    dir: &OwnedFd,
    shown: &str,
    name: &str,
    target: &Path,
    uid: u32,
    gid: u32,
) -> Result<()> {
    match unlinkat(Some(dir.as_raw_fd()), name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(nix::Error::ENOENT) => {}
        Err(e) => return Err(nix_io(format!("removing {shown}{name}"), e)),
    }
    symlinkat(target, Some(dir.as_raw_fd()), name)
        .map_err(|e| nix_io(format!("linking {shown}{name}"), e))?;
    fchownat(
        Some(dir.as_raw_fd()),
        name,
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| nix_io(format!("chown {shown}{name}"), e))
}

/// Point the clone's `pg_wal` link (data directory `mountpoint/subdir`)
/// at `target`, without following links.
fn relink_wal(mountpoint: &Path, subdir: &Path, target: &Path, uid: u32, gid: u32) -> Result<()> {
    let pgdata = open_below(mountpoint, subdir)?;
    replace_link(&pgdata, "", "pg_wal", target, uid, gid)
}

/// Replace the clone's `pg_tblspc` links with links to the clones, through
/// directory fds opened without following links (the data directory is
/// the server user's: a planted link must not send root elsewhere).
fn relink(
    mountpoint: &Path,
    subdir: &Path,
    clones: &[TablespaceClone],
    uid: u32,
    gid: u32,
) -> Result<()> {
    if clones.is_empty() {
        return Ok(());
    }
    let pgdata = open_below(mountpoint, subdir)?;
    let tblspc = open_below_fd(&pgdata, "pg_tblspc")?;
    for c in clones {
        let name = c.oid.to_string();
        replace_link(&tblspc, "pg_tblspc/", &name, &c.location, uid, gid)?;
    }
    Ok(())
}

/// Open the subdirectory `name` of `dir` without following a link.
fn open_below_fd(dir: &OwnedFd, name: &str) -> Result<OwnedFd> {
    let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
    let fd = openat(Some(dir.as_raw_fd()), name, flags, Mode::empty())
        .map_err(|e| nix_io(format!("opening {name} (no links followed)"), e))?;
    // SAFETY: openat returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Names of the tablespaces by OID, from the running source.
async fn tablespace_names(conn: &ConnInfo) -> Result<BTreeMap<u32, String>> {
    let c = conn.connect().await?;
    let rows = c
        .query("SELECT oid, spcname::text FROM pg_tablespace", &[])
        .await
        .map_err(|e| Error::postgres_with(&e, format!("listing tablespaces: {e}")))?;
    Ok(rows
        .iter()
        .map(|r| (r.get::<_, u32>(0), r.get::<_, String>(1)))
        .collect())
}

/// One mounted file system.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    point: PathBuf,
    fstype: String,
    source: String,
}

fn read_mounts() -> Result<Vec<Mount>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::io("reading /proc/self/mountinfo", e))?;
    Ok(parse_mountinfo(&text))
}

/// Parse `/proc/self/mountinfo`: field 5 is the mount point, and after the
/// ` - ` separator come the file system type and the source (for ZFS, the
/// dataset). Octal escapes (`\040` for a space) are decoded.
fn parse_mountinfo(text: &str) -> Vec<Mount> {
    fn unescape(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'\\' && i + 4 <= b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
                let v = u8::from_str_radix(&s[i + 1..i + 4], 8).unwrap_or(b'?');
                out.push(v);
                i += 4;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let point = left.split(' ').nth(4)?;
            let mut r = right.split(' ');
            let fstype = r.next()?;
            let source = r.next()?;
            Some(Mount {
                point: PathBuf::from(unescape(point)),
                fstype: fstype.to_string(),
                source: unescape(source),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_is_parsed() {
        let text = "46 27 0:40 / /tmp/p-mnt rw,relatime - fuse.zfs pool rw,user_id=0\n\
                    47 46 0:41 / /tmp/p-mnt/a\\040b rw,relatime shared:5 - zfs pool/a rw\n\
                    22 57 0:21 / /proc rw - proc proc rw\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].point, PathBuf::from("/tmp/p-mnt"));
        assert_eq!(m[0].fstype, "fuse.zfs");
        assert_eq!(m[1].point, PathBuf::from("/tmp/p-mnt/a b"));
        assert_eq!(m[1].source, "pool/a");
    }

    #[test]
    fn map_is_rewritten_with_escapes() {
        let map = "16384 /srv/ts\n16390 /srv/odd\\\nname\n";
        assert_eq!(
            parse_map(map).unwrap(),
            vec![
                (16384, PathBuf::from("/srv/ts")),
                (16390, PathBuf::from("/srv/odd\nname"))
            ]
        );
        let clone = |oid, loc: &str| TablespaceClone {
            oid,
            name: None,
            source_location: PathBuf::new(),
            location: PathBuf::from(loc),
            dataset: String::new(),
        };
        let out = rewrite_map(map, &[clone(16384, "/b/t1"), clone(16390, "/b/t\\2")]).unwrap();
        assert_eq!(out, "16384 /b/t1\n16390 /b/t\\\\2\n");
        assert!(rewrite_map(map, &[clone(16384, "/b/t1")]).is_err());
        assert!(parse_map("x /a\n").is_err());
    }

    #[test]
    fn datasets_within() {
        assert!(is_within("p/a", "p"));
        assert!(is_within("p", "p"));
        assert!(!is_within("p/ab", "p/a"));
        assert!(is_within("p/a/b", "p/a"));
    }

    #[test]
    fn links_must_stay_inside_real_directories() {
        let d = tempfile::tempdir().unwrap();
        let own = d.path().join("own");
        std::fs::create_dir_all(own.join("tblspc-1/loc")).unwrap();
        let other = d.path().join("other");
        std::fs::create_dir_all(&other).unwrap();
        std::os::unix::fs::symlink(&other, own.join("tblspc-1/planted")).unwrap();
        check_inside(&own.join("tblspc-1/loc"), &own).unwrap();
        assert!(check_inside(&other, &own).is_err());
        assert!(check_inside(&own.join("tblspc-1/planted"), &own).is_err());
        assert!(check_inside(&own.join("tblspc-1/../../other"), &own).is_err());
        assert!(check_inside(&own.join("missing"), &own).is_err());

        let data = own.join("pgdata");
        std::fs::create_dir_all(data.join("pg_tblspc")).unwrap();
        std::os::unix::fs::symlink(own.join("tblspc-1/loc"), data.join("pg_tblspc/16384")).unwrap();
        check_links("b", &data, &own).unwrap();
        std::fs::write(
            data.join("tablespace_map"),
            format!("16384 {}\n", other.display()),
        )
        .unwrap();
        let e = check_links("b", &data, &own).unwrap_err().to_string();
        assert!(e.contains("16384") && e.contains("other"), "{e}");
        std::fs::remove_file(data.join("tablespace_map")).unwrap();
        std::os::unix::fs::symlink(&other, data.join("pg_tblspc/16385")).unwrap();
        assert!(check_links("b", &data, &own).is_err());
    }
}
