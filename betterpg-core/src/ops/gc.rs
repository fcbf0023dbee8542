//! `gc`: find and remove what betterpg made that no complete database or
//! branch owns.
//!
//! A process killed in the middle of `branch` or `create` can leave a
//! snapshot, a clone, a running server and a catalog entry in state
//! `creating`. Everything betterpg makes carries `betterpg:managed=yes` and
//! `betterpg:home=<home>` ZFS properties (set atomically at creation), so the
//! pool itself says what is ours. ZFS user properties are inherited, so only
//! properties set on the dataset itself that name it count
//! ([`DatasetInfo::made_by_betterpg`]): an operator's snapshot of a database
//! or dataset under it is never taken, and a dataset of ours holding such a
//! thing is left alone (and listed in [`GcReport::kept`]). `gc` keeps what a
//! `ready` entry or a live operation (its process still runs) owns and
//! removes the rest, clones before what they were cloned from.

use std::time::Duration;

use serde::Serialize;

use crate::catalog::{Entry, SnapshotRecord, PGDATA_SUBDIR};
use crate::context::Context;
use crate::error::Result;
use crate::pg::binaries::data_dir_major;
use crate::pg::{ConnInfo, PgBin};
use crate::runtime::{InstanceSpec, RunStatus};
use crate::storage::{destroy_with_retry, DatasetInfo, DatasetType};

/// One thing `gc` found.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GcItem {
    /// "server", "dataset", "snapshot", "catalog-entry",
    /// "snapshot-record" (a named snapshot left half-made), "file",
    /// "socket-dir" (the private socket directory of a branch's first
    /// start), "process" (left by a killed `follow` in its replica's
    /// directory), "slot" (a replication slot on a replica's primary,
    /// `NAME on HOST:PORT`), "branch" (a complete branch whose owner
    /// process, `--owner-pid`, is gone) or what a runtime reports (e.g.
    /// "container").
    pub what: String,
    /// Its name or path.
    pub name: String,
    /// Why it is garbage.
    pub reason: String,
}

/// What `gc` found (and removed unless `dry_run`).
#[derive(Debug, Clone, Serialize)]
pub struct GcReport {
    /// True when nothing was changed.
    pub dry_run: bool,
    /// Everything found (and removed, unless a dry run).
    pub items: Vec<GcItem>,
    /// Garbage of betterpg's that gc left alone, with why (it holds, or a
    /// clone of it is, something betterpg did not make).
    pub kept: Vec<GcItem>,
}

/// True when gc must keep what `e` owns: it is complete, a process that
/// still runs works on it, or it is protected (whatever its state: a
/// protected entry is only ever removed by `bpg destroy` after `bpg
/// unprotect`).
fn is_live(e: &Entry) -> bool {
    e.state.is_live() || e.lifecycle.protected
}

/// How many clones deep `d` is: 0 for a dataset that is no clone, else one
/// more than the file system its origin snapshot is on (when listed).
/// Destroying the deepest first never meets a snapshot that still has a
/// clone.
fn clone_depth(d: &DatasetInfo, all: &[DatasetInfo]) -> usize {
    let mut depth = 0;
    let mut cur = d;
    // Bounded: a listing cannot hold a cycle, but never loop on bad input.
    while depth < all.len() {
        let Some(fs) = cur.origin.as_deref().and_then(|o| o.split('@').next()) else {
            break;
        };
        depth += 1;
        match all.iter().find(|x| x.name == fs) {
            Some(x) => cur = x,
            None => break,
        }
    }
    depth
}

/// Complete entries whose owner process (`--owner-pid`) is gone: each
/// destroyed as `bpg destroy` would (its branches first when they are
/// owned by a gone process too; never a protected one, never what
/// betterpg did not make), or listed in `left` with why not.
pub(crate) async fn owners_gone(
    ctx: &Context,
    dry_run: bool,
    items: &mut Vec<GcItem>,
    left: &mut Vec<GcItem>,
) -> Result<()> {
    let gone: Vec<(String, u32)> = {
        let cat = ctx.lock()?;
        let mut v: Vec<(usize, String, u32)> = cat
            .entries()
            .filter(|e| e.is_ready() && !e.lifecycle.protected)
            .filter_map(|e| {
                let o = e.lifecycle.owner?;
                (!o.alive()).then(|| (depth_of(&cat, &e.name), e.name.clone(), o.pid))
            })
            .collect();
        // Deepest first: a branch before its parent.
        v.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        v.into_iter().map(|(_, n, p)| (n, p)).collect()
    };
    for (name, pid) in gone {
        let reason = format!("its owner process {pid} is gone");
        if dry_run {
            items.push(GcItem {
                what: "branch".into(),
                name,
                reason,
            });
            continue;
        }
        let scope = super::destroy::Scope {
            branches: false,
            foreign: false,
            operation: "gc",
        };
        match super::destroy::destroy_with(ctx, &name, scope).await {
            Ok(()) => items.push(GcItem {
                what: "branch".into(),
                name,
                reason,
            }),
            Err(e) => left.push(GcItem {
                what: "branch".into(),
                name,
                reason: format!("{reason}, but it was not destroyed: {e}"),
            }),
        }
    }
    Ok(())
}

/// How many ancestors `name` has in the catalog.
fn depth_of(cat: &crate::catalog::Catalog, name: &str) -> usize {
    let mut depth = 0;
    let mut cur = cat.get(name).and_then(|e| e.parent.clone());
    while let Some(p) = cur {
        depth += 1;
        if depth > 1000 {
            break;
        }
        cur = cat.get(&p).and_then(|e| e.parent.clone());
    }
    depth
}

/// Find (and unless `dry_run`, remove) every dataset, snapshot, server,
/// catalog entry and file of this home that no complete database or
/// branch, and no operation still running, owns.
async fn gc_inner(ctx: &Context, dry_run: bool) -> Result<GcReport> {
    let mut items = Vec::new();
    let mut left = Vec::new();
    owners_gone(ctx, dry_run, &mut items, &mut left).await?;
    let (entries, records): (Vec<Entry>, Vec<SnapshotRecord>) = {
        let cat = ctx.lock()?;
        (
            cat.entries().cloned().collect(),
            cat.snapshots().cloned().collect(),
        )
    };
    let (kept, mut dead): (Vec<Entry>, Vec<Entry>) = entries.into_iter().partition(is_live);
    // Named snapshots: a complete one (or one a live process is taking)
    // keeps its ZFS snapshots and kept WAL; one left half-made by a
    // process that died goes, record and all.
    let (live_snaps, dead_snaps): (Vec<SnapshotRecord>, Vec<SnapshotRecord>) =
        records.into_iter().partition(|r| r.is_live());
    let named_keeps = |name: &str| {
        live_snaps.iter().any(|r| {
            r.zfs_snapshot == name
                || r.tablespace_snapshots.iter().any(|t| t == name)
                || r.wal_dataset.as_deref() == Some(name)
        })
    };
    // Password and log files of names no live entry owns, listed before
    // anything is removed: removing a dead server also removes its log,
    // and a dry run must list exactly what the real run removes.
    let stray = stray_files(ctx, &kept);
    let home = ctx.home.root().to_string_lossy().into_owned();
    let ours = |d: &DatasetInfo| d.made_by_betterpg(&home);
    let datasets = ctx.storage.list(&ctx.config.dataset).await?;

    // File systems first (a snapshot cannot go while a clone of it
    // lives): clones before what they were cloned from, however deep
    // the chain, then children before parents.
    let mut filesystems: Vec<&DatasetInfo> = datasets
        .iter()
        .filter(|d| d.kind == DatasetType::Filesystem && d.name != ctx.config.dataset)
        .filter(|d| ours(d))
        .filter(|d| !kept.iter().any(|e| e.dataset == d.name))
        .filter(|d| !named_keeps(&d.name))
        .filter(|d| !crate::tablespace::inside_kept(d, &kept))
        .filter(|d| !rebuild_under_way(d))
        .collect();
    filesystems.sort_by_cached_key(|d| {
        (
            std::cmp::Reverse(clone_depth(d, &datasets)),
            std::cmp::Reverse(d.name.matches('/').count()),
            d.name.clone(),
        )
    });
    // What gc will destroy, to tell a clone that goes first from one
    // that stays.
    let mut going: Vec<String> = Vec::new();
    for d in &filesystems {
        let inside = |x: &DatasetInfo| {
            x.name.starts_with(&format!("{}@", d.name))
                || x.name.starts_with(&format!("{}/", d.name))
        };
        let foreign: Vec<&str> = datasets
            .iter()
            .filter(|x| inside(x) && !ours(x))
            .map(|x| x.name.as_str())
            .collect();
        let clones: Vec<&str> = datasets
            .iter()
            .filter(|x| {
                x.origin
                    .as_deref()
                    .is_some_and(|o| o.starts_with(&format!("{}@", d.name)))
                    && !going.contains(&x.name)
                    && !inside(x)
            })
            .map(|x| x.name.as_str())
            .collect();
        // A rebuilt replica's old data (`follow --rebuild`) waits for its
        // branches quietly: that is what it is kept for.
        if foreign.is_empty() && !clones.is_empty() && d.local_prop("kind") == Some("retired") {
            continue;
        }
        if !foreign.is_empty() || !clones.is_empty() {
            let mut why = Vec::new();
            if !foreign.is_empty() {
                why.push(format!(
                    "it holds what betterpg did not make: {}",
                    foreign.join(", ")
                ));
            }
            if !clones.is_empty() {
                why.push(format!("{} are clones of its snapshots", clones.join(", ")));
            }
            left.push(GcItem {
                what: "dataset".into(),
                name: d.name.clone(),
                reason: format!(
                    "{}: move or destroy them, then run gc again",
                    why.join("; ")
                ),
            });
            continue;
        }
        going.push(d.name.clone());
    }
    // A dead entry whose dataset stays keeps its catalog entry (and
    // files), so `bpg destroy NAME --force` can still finish it.
    let mut held: Vec<String> = dead
        .iter()
        .filter(|e| left.iter().any(|l| l.name == e.dataset))
        .map(|e| e.name.clone())
        .collect();
    dead.retain(|e| !held.contains(&e.name));
    // What a killed `follow` started works in its replica's directory
    // (pg_basebackup, its WAL streamer): stopped first, so the dataset is
    // not busy and the slot not active.
    for e in dead
        .iter()
        .filter(|e| e.kind == crate::catalog::Kind::Replica)
    {
        let dir = ctx.home.replica_dir(&e.name);
        for (pid, cmd) in processes_in(&dir) {
            items.push(GcItem {
                what: "process".into(),
                name: format!("{pid} ({cmd})"),
                reason: format!(
                    "left running in {} by the follow of {:?} (process {}) that is gone",
                    dir.display(),
                    e.name,
                    e.state.worker().unwrap_or_default()
                ),
            });
            if !dry_run {
                kill_and_wait(pid).await;
            }
        }
    }
    // Slots on a primary that a killed `follow` created (its passfile is
    // still in the replica's directory, removed below).
    for e in &dead {
        match slot_of_dead_replica(ctx, e, dry_run).await {
            SlotOutcome::None => {}
            SlotOutcome::Dropped(item) => items.push(item),
            SlotOutcome::Left(item, keep_entry) => {
                left.push(item);
                if keep_entry {
                    held.push(e.name.clone());
                }
            }
        }
    }
    dead.retain(|e| !held.contains(&e.name));
    // Names whose private socket directories may be left (see below).
    let mut socket_names: Vec<String> = dead.iter().map(|e| e.name.clone()).collect();
    for d in filesystems.into_iter().filter(|d| going.contains(&d.name)) {
        if let Some(n) = d.props.get("name") {
            socket_names.push(n.clone());
        }
        let reason = match dead.iter().find(|e| e.dataset == d.name) {
            Some(e) => format!(
                "left {} by a bpg process (pid {}) that is gone",
                match e.state {
                    crate::catalog::State::Destroying { .. } => "half-destroyed",
                    _ => "half-made",
                },
                e.state.worker().unwrap_or_default()
            ),
            None => "no catalog entry owns it".to_string(),
        };
        if let Some(spec) = orphan_spec(ctx, d, &dead).await {
            let rt = ctx.runtime(&spec.runtime)?;
            if rt.status(&spec).await.ok() == Some(RunStatus::Running) {
                items.push(GcItem {
                    what: "server".into(),
                    name: format!("{} (port {})", spec.name, spec.conn.port),
                    reason: format!("runs on orphaned dataset {}", d.name),
                });
                if !dry_run {
                    rt.stop_discarding(&spec).await?;
                }
            }
            if !dry_run {
                rt.remove(&spec).await?;
            }
        }
        items.push(GcItem {
            what: "dataset".into(),
            name: d.name.clone(),
            reason,
        });
        if !dry_run {
            destroy_with_retry(&*ctx.storage, &d.name, true).await?;
        }
    }

    for d in datasets
        .iter()
        .filter(|d| d.kind == DatasetType::Snapshot && ours(d))
        .filter(|d| {
            !kept
                .iter()
                .any(|e| e.snapshot.as_deref() == Some(d.name.as_str()))
        })
        .filter(|d| !crate::tablespace::snapshot_kept(d, &kept))
        .filter(|d| !named_keeps(&d.name))
        // A rewindable branch's rewind point (on it and its tablespace
        // clones) is the branch's.
        .filter(|d| {
            !(d.local_prop("rewind").is_some()
                && kept.iter().any(|e| {
                    e.rewindable
                        && d.local_prop("rewind") == Some(e.name.as_str())
                        && crate::tablespace::is_within(
                            d.name.split('@').next().unwrap_or_default(),
                            &e.dataset,
                        )
                }))
        })
        // A base snapshot of a database that keeps WAL is retention's
        // (pruning removes it).
        .filter(|d| {
            !(d.local_prop("walbase") == Some("yes")
                && kept
                    .iter()
                    .any(|e| d.name.starts_with(&format!("{}@", e.dataset))))
        })
    {
        // A snapshot on a dataset gc just destroyed went with it.
        let fs = d.name.split('@').next().unwrap_or_default();
        if !dry_run && ctx.storage.get(fs).await?.is_none() {
            continue;
        }
        let clones: Vec<&str> = datasets
            .iter()
            .filter(|x| x.origin.as_deref() == Some(d.name.as_str()))
            .filter(|x| !going.contains(&x.name))
            .map(|x| x.name.as_str())
            .collect();
        if !clones.is_empty() {
            left.push(GcItem {
                what: "snapshot".into(),
                name: d.name.clone(),
                reason: format!(
                    "{} are clones of it: destroy them, then run gc again",
                    clones.join(", ")
                ),
            });
            continue;
        }
        items.push(GcItem {
            what: "snapshot".into(),
            name: d.name.clone(),
            reason: "no branch was cloned from it".into(),
        });
        if !dry_run {
            destroy_with_retry(&*ctx.storage, &d.name, false).await?;
        }
    }

    for r in &dead_snaps {
        items.push(GcItem {
            what: "snapshot-record".into(),
            name: r.full_name(),
            reason: format!(
                "left {} by process {} that no longer runs",
                match r.state {
                    crate::catalog::State::Destroying { .. } => "half-destroyed",
                    _ => "half-made",
                },
                r.state.worker().unwrap_or_default()
            ),
        });
    }
    if !dry_run && !dead_snaps.is_empty() {
        let mut cat = ctx.lock()?;
        for r in &dead_snaps {
            if cat
                .snapshot(&r.source, &r.name)
                .is_some_and(|x| !x.is_live())
            {
                cat.remove_snapshot(&r.source, &r.name);
            }
        }
        cat.save()?;
    }

    for e in &dead {
        items.push(GcItem {
            what: "catalog-entry".into(),
            name: e.name.clone(),
            reason: format!(
                "{} by process {} that no longer runs",
                match e.state {
                    crate::catalog::State::Destroying { .. } => "destroying",
                    _ => "creating",
                },
                e.state.worker().unwrap_or_default()
            ),
        });
    }
    if !dry_run && !dead.is_empty() {
        let mut cat = ctx.lock()?;
        for e in &dead {
            // Re-check under the lock: only remove what is still dead.
            if cat.get(&e.name).is_some_and(|x| !is_live(x)) {
                cat.remove(&e.name);
            }
        }
        cat.save()?;
    }

    // Passwords and logs of names no live entry has (listed at the
    // start, see above).
    let live_now: Vec<String> = ctx
        .lock()?
        .entries()
        .filter(|e| is_live(e))
        .map(|e| e.name.clone())
        .collect();
    for (name, path) in stray {
        // An operation that started since owns its files: keep them.
        if live_now.contains(&name) || held.contains(&name) {
            continue;
        }
        if !dry_run {
            // A replica's directory (passfile, socket) or a file; never
            // following a link.
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => {
                    let _ = std::fs::remove_dir_all(&path);
                }
                _ => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        items.push(GcItem {
            what: "file".into(),
            name: path.display().to_string(),
            reason: "belongs to no database or branch".into(),
        });
    }

    // The private socket directory of a branch's first start, left by a
    // process killed during its private phase (the server on it was
    // stopped above with its dataset). Found by the home's and name's own
    // prefix, never by anything the data directory says.
    socket_names.sort();
    socket_names.dedup();
    for name in socket_names {
        if live_now.contains(&name) || held.contains(&name) {
            continue;
        }
        for dir in super::private::socket_dirs_of(ctx.home.root(), &name) {
            if !dry_run {
                std::fs::remove_dir_all(&dir).map_err(|e| {
                    crate::error::Error::io(format!("removing {}", dir.display()), e)
                })?;
            }
            items.push(GcItem {
                what: "socket-dir".into(),
                name: dir.display().to_string(),
                reason: format!(
                    "private socket directory of {name}'s first start, left by a bpg process that is gone"
                ),
            });
        }
    }

    let names: Vec<String> = ctx.lock()?.entries().map(|e| e.name.clone()).collect();
    // Containers of names the catalog does not have (a dead entry's
    // container went with its dataset above, in the real run).
    for rt in &ctx.runtimes {
        for found in rt.sweep(ctx.home.root(), &names, dry_run).await? {
            items.push(GcItem {
                what: rt.name().to_string(),
                name: found,
                reason: "made by betterpg for no existing database or branch".into(),
            });
        }
    }
    Ok(GcReport {
        dry_run,
        items,
        kept: left,
    })
}

/// Processes whose working directory is `dir` or under it (pid, command
/// line), read from `/proc` (links there are read, never followed into).
fn processes_in(dir: &std::path::Path) -> Vec<(i32, String)> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for d in rd.flatten() {
        let Ok(pid) = d.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cwd) = std::fs::read_link(d.path().join("cwd")) else {
            continue;
        };
        if !cwd.starts_with(dir) {
            continue;
        }
        let cmd = std::fs::read(d.path().join("cmdline"))
            .map(|c| {
                String::from_utf8_lossy(&c)
                    .split('\0')
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
            .unwrap_or_default();
        out.push((pid, cmd));
    }
    out.sort();
    out
}

/// SIGKILL `pid` and wait (up to 10 s) until it is gone.
async fn kill_and_wait(pid: i32) {
    let p = nix::unistd::Pid::from_raw(pid);
    if nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL).is_err() {
        return;
    }
    for _ in 0..100 {
        // Gone, or a zombie of a parent that will reap it.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.is_empty()
            || stat
                .rsplit_once(") ")
                .is_some_and(|(_, r)| r.starts_with('Z'))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tracing::warn!("process {pid} did not exit after SIGKILL");
}

/// What gc did about the slot of a dead replica entry.
enum SlotOutcome {
    /// No slot of ours.
    None,
    /// Dropped (or, in a dry run, would be).
    Dropped(GcItem),
    /// Left on the primary (an item for `kept`), and whether the entry and
    /// its passfile stay so that a later gc can retry.
    Left(GcItem, bool),
}

/// Drop the slot the dead replica entry `e`'s `follow` created on its
/// primary (none in a dry run). A slot it was still creating when it died
/// may not be its own: it is left and reported.
async fn slot_of_dead_replica(ctx: &Context, e: &Entry, dry_run: bool) -> SlotOutcome {
    let Some(u) = &e.upstream else {
        return SlotOutcome::None;
    };
    let Some(slot) = &u.slot else {
        return SlotOutcome::None;
    };
    let primary = crate::pg::upstream::address(&u.host, u.port);
    let name = format!("{slot} on {primary}");
    if u.slot_creating {
        return SlotOutcome::Left(
            GcItem {
                what: "slot".into(),
                name,
                reason: format!(
                    "the follow of {:?} died while creating it, so it may be someone else's: if nothing uses it, drop it on the primary (SELECT pg_drop_replication_slot('{slot}'))",
                    e.name
                ),
            },
            false,
        );
    }
    if !u.slot_created {
        return SlotOutcome::None;
    }
    let reason = format!(
        "created on the primary by the follow of {:?} (process {}) that is gone; it would keep the primary's WAL",
        e.name,
        e.state.worker().unwrap_or_default()
    );
    if dry_run {
        return SlotOutcome::Dropped(GcItem {
            what: "slot".into(),
            name,
            reason,
        });
    }
    let mut dropped = Err(crate::error::Error::Internal("not tried".into()));
    for attempt in 0..5 {
        dropped = match ctx.replication_of(e) {
            Ok(r) => r.drop_slot(slot, super::follow::UPSTREAM_TIMEOUT).await,
            Err(err) => Err(err),
        };
        // A slot still active (55006): the primary has not yet seen the
        // killed streamer's connection close.
        match &dropped {
            Err(crate::error::Error::Postgres {
                sqlstate: Some(s), ..
            }) if s == "55006" && attempt < 4 => {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            _ => break,
        }
    }
    match dropped {
        Ok(()) => SlotOutcome::Dropped(GcItem {
            what: "slot".into(),
            name,
            reason,
        }),
        Err(err) => SlotOutcome::Left(
            GcItem {
                what: "slot".into(),
                name,
                reason: format!(
                    "{reason}, and dropping it failed ({err}): run gc again when the primary answers, or drop it there (SELECT pg_drop_replication_slot('{slot}'))"
                ),
            },
            true,
        ),
    }
}

/// Password (and role password) and log files (name, path) of names no
/// entry in `kept` has.
fn stray_files(ctx: &Context, kept: &[Entry]) -> Vec<(String, std::path::PathBuf)> {
    let mut out = Vec::new();
    for (dir, suffix) in [
        (ctx.home.secrets_dir(), ""),
        (ctx.home.logs_dir(), ".log"),
        (ctx.home.replicas_dir(), ""),
    ] {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for f in rd.flatten() {
            let file = f.file_name().to_string_lossy().into_owned();
            let Some(name) = file.strip_suffix(suffix) else {
                continue;
            };
            // A source's masking key belongs to the source, a rotated
            // branch's role passwords to the branch.
            let name = name
                .strip_suffix(super::mask_rules::KEY_SUFFIX)
                .or_else(|| name.strip_suffix(crate::home::ROLES_SUFFIX))
                .unwrap_or(name);
            if file.starts_with('.') || kept.iter().any(|e| e.name == name) {
                continue;
            }
            out.push((name.to_string(), f.path()));
        }
    }
    out.sort();
    out
}

/// A spec good enough to stop and remove a server on an orphaned
/// dataset (the catalog entry may be gone, so facts come from the
/// dataset's properties and its data directory).
async fn orphan_spec(ctx: &Context, d: &DatasetInfo, dead: &[Entry]) -> Option<InstanceSpec> {
    // A rebuild's new data never ran a server of its own, and a retired
    // replica's was stopped: their `name` and `port` are the replica's,
    // whose server and log must not be touched.
    if matches!(d.local_prop("kind"), Some("rebuild" | "retired")) {
        return None;
    }
    let mp = d.mountpoint.clone()?;
    let name = d.props.get("name")?.clone();
    let entry = dead.iter().find(|e| e.dataset == d.name);
    let data_dir = entry.map_or_else(|| mp.join(PGDATA_SUBDIR), |e| e.data_dir(&mp));
    let pg_bin = match entry {
        Some(e) => PgBin {
            dir: e.pg_bin.clone(),
            major: e.pg_major,
        },
        None => {
            let major = data_dir_major(&data_dir).ok()?;
            PgBin::discover(ctx.config.pg_bin.as_deref(), Some(major)).ok()?
        }
    };
    let port = d
        .props
        .get("port")
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    // The server's own user: the entry's, else whoever owns the data
    // directory (a branch's uid of its own), else the home's.
    let user = match entry {
        Some(e) => ctx.user_of(e),
        None => match std::fs::symlink_metadata(&data_dir) {
            Ok(m) if m.is_dir() && std::os::unix::fs::MetadataExt::uid(&m) != 0 => {
                let uid = std::os::unix::fs::MetadataExt::uid(&m);
                if uid == ctx.user.uid {
                    ctx.user.clone()
                } else {
                    crate::osuser::OsUser::branch(uid)
                }
            }
            _ => ctx.user.clone(),
        },
    };
    Some(InstanceSpec {
        name: name.clone(),
        data_dir,
        pg_bin,
        log_file: ctx.home.log_path(&name),
        runtime: d
            .props
            .get("runtime")
            .cloned()
            .unwrap_or_else(|| "native".into()),
        image: entry.and_then(|e| e.image.clone()),
        home: ctx.home.root().to_path_buf(),
        parent: d.props.get("parent").cloned(),
        user,
        conn: ConnInfo {
            host: "127.0.0.1".into(),
            port,
            user: "postgres".into(),
            password: ctx.home.read_secret(&name).unwrap_or_default(),
            dbname: "postgres".into(),
        },
        start_timeout: Duration::from_secs(ctx.config.start_timeout_secs),
        limits: ctx.config.container_limits(),
        private_socket_dir: None,
    })
}

/// True for the new data of a `follow --rebuild` whose process still runs.
fn rebuild_under_way(d: &DatasetInfo) -> bool {
    d.local_prop("kind") == Some("rebuild")
        && d.local_prop("worker")
            .and_then(|p| p.parse().ok())
            .is_some_and(|pid| crate::catalog::process_alive(pid, None))
}

/// [`gc_inner`], each removal recorded in the audit log (a dry run
/// removes nothing and records nothing; a failure is recorded once).
pub(crate) async fn gc(ctx: &Context, dry_run: bool) -> Result<GcReport> {
    let r = gc_inner(ctx, dry_run).await;
    match &r {
        Ok(report) if !dry_run => {
            for item in &report.items {
                let mut ev = crate::audit::AuditEvent::now("gc");
                ev.branch = Some(item.name.clone());
                ev.detail = Some(format!("{}: {}", item.what, item.reason));
                super::audit::record(ctx, ev);
            }
        }
        Ok(_) => {}
        Err(_) => super::audit::record(ctx, crate::audit::AuditEvent::now("gc").outcome(&r)),
    }
    r
}
