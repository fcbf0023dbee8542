//! `follow NAME --rebuild`: a new base backup of the current primary takes
//! the replica's place while the old replica's branches keep running.
//!
//! A branch of the replica is a clone of a snapshot of the replica's
//! dataset: that dataset can be neither destroyed nor renamed while the
//! branch runs (a `zfs rename` unmounts and remounts every clone of its
//! snapshots, which a running server refuses). So the replica moves
//! instead (docs/sources.md, "Rebuilding a replica"):
//!
//! 1. While the old replica still runs: identify the primary, create the
//!    slot when asked, take the base backup into a NEW dataset
//!    `ROOT/NAME.rMILLIS` (a `.` is in no name, so it never meets another
//!    entry's dataset; marked as a rebuild with this process as its
//!    worker, so `gc` leaves it alone while the process lives), make it a
//!    standby. A failure here destroys the new dataset (and a slot made
//!    for it) and leaves the old replica exactly as it was.
//! 2. The swap: stop the old server; mark the old dataset `retired` and
//!    the new one the replica's; record the new dataset and upstream in
//!    the catalog; start the new server on NAME's port. A failure here
//!    undoes the swap in reverse (the old server started again).
//! 3. The old dataset is destroyed at once when no branch is a clone of
//!    it; else it stays where it is (its branches' clones and catalog
//!    records unchanged), hidden (no entry), and `gc` (or `bpg destroy
//!    NAME`) removes it once its last branch is destroyed.
//!
//! While it runs it holds the replica lock exclusively
//! ([`Context::replica_lock`]): another rebuild, a branch, a reset of a
//! branch, a named snapshot or a destroy of the replica is refused, and
//! the rebuild is refused while one of those runs.
//!
//! `zfs promote` of a branch would move the replica's snapshots onto that
//! branch and make every other branch a clone of it: destroying it would
//! then need the reverse promotion. Leaving the old dataset in place
//! changes no dependency at all.

use std::path::PathBuf;
use std::time::Instant;

use super::follow::{
    backup_into, binaries_for, make_standby, password_for, start_with, validate_slot,
    FollowOptions, FollowReport, UPSTREAM_TIMEOUT,
};
use super::status;
use crate::catalog::{process_alive, Entry, Kind, Upstream, PGDATA_SUBDIR};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::fault;
use crate::name::validate_name;
use crate::pg::datadir::DataDir;
use crate::pg::upstream::{self, Replication, Target};
use crate::runtime::{InstanceSpec, RunStatus};
use crate::storage::{destroy_with_retry, DatasetInfo, DatasetType};
use crate::util::now_unix;

/// `ROOT/NAME.rMILLIS`: where a rebuild takes its base backup, and the
/// replica's dataset after it.
fn rebuild_dataset(ctx: &Context, name: &str) -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("{}/{name}.r{millis}", ctx.config.dataset)
}

/// True when `e` is a clone of a snapshot of the dataset `ds`.
fn snapshot_on(e: &Entry, ds: &str) -> bool {
    e.snapshot
        .as_deref()
        .and_then(|s| s.split_once('@'))
        .is_some_and(|(fs, _)| fs == ds)
}

/// What the swap changed, to put back on failure.
#[derive(Default)]
struct Swapped {
    old_stopped: bool,
    marked: bool,
    passfile_swapped: bool,
    catalog: Option<Entry>,
    started: Option<InstanceSpec>,
}

/// Rebuild the replica `name` from its (current) primary.
pub(crate) async fn rebuild(
    ctx: &Context,
    name: &str,
    opts: FollowOptions,
) -> Result<FollowReport> {
    let t0 = Instant::now();
    validate_name(name)?;
    let old = ctx.ready_entry(name)?;
    if old.kind != Kind::Replica {
        return Err(Error::InvalidState(format!(
            "{name:?} is not a replica: --rebuild remakes a replica that `bpg follow` made"
        )));
    }
    // Held to the end: no other rebuild, and no branch, snapshot or
    // destroy of the replica, runs meanwhile (each is refused, and this
    // is refused while one runs). The entry is read again under it: a
    // rebuild that just ended changed it.
    let _lock = ctx.replica_lock(&old, true)?;
    fault::point("rebuild_locked").await?;
    let old = ctx.ready_entry(name)?;
    let Some(u) = old.upstream.clone().filter(|_| old.kind == Kind::Replica) else {
        return Err(Error::InvalidState(format!(
            "{name:?} is not a replica: --rebuild remakes a replica that `bpg follow` made"
        )));
    };
    if let Some(s) = &opts.slot {
        validate_slot(s)?;
    }
    {
        let cat = ctx.lock()?;
        let named = cat.snapshots_of(name);
        if !named.is_empty() {
            return Err(Error::InvalidState(format!(
                "the replica {name:?} has named snapshots ({}): a rebuild cannot carry them over; destroy them first (`bpg snapshot destroy`)",
                named
                    .iter()
                    .map(|r| r.full_name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    // The primary: as given again, else as stored.
    let given = !opts.from.trim().is_empty();
    let target = if given {
        Target::parse(&opts.from)?
    } else {
        Target {
            host: u.host.clone(),
            port: u.port,
            user: u.user.clone(),
            password: None,
        }
    };
    let dir = ctx.home.replica_dir(name);
    let passfile = ctx.home.upstream_passfile(name);
    // The replica's directory is its server user's: its files are read
    // without following links.
    let ddir = DataDir::open(&dir)?;
    let line = if given || opts.password_file.is_some() {
        password_for(&target, &opts)?
            .map(|p| upstream::passfile_line(&target.host, target.port, &target.user, &p))
            .unwrap_or_default()
    } else {
        let file = passfile
            .file_name()
            .ok_or_else(|| Error::Internal(format!("no file name in {}", passfile.display())))?;
        let bytes = ddir
            .read(&file.to_string_lossy())?
            .ok_or_else(|| Error::Config(format!("{} is missing", passfile.display())))?;
        String::from_utf8(bytes)
            .map_err(|_| Error::Config(format!("{} is not UTF-8", passfile.display())))?
    };
    ddir.write("pgpass.rebuild", line.as_bytes(), Some(&ctx.user), 0o600)?;
    let new_pass = dir.join("pgpass.rebuild");
    let slot = opts.slot.clone().or_else(|| u.slot.clone());
    let repl = Replication {
        psql: crate::pg::PgBin {
            dir: old.pg_bin.clone(),
            major: old.pg_major,
        }
        .tool("psql"),
        user: ctx.user.clone(),
        conninfo: upstream::conninfo(
            &target.host,
            target.port,
            &target.user,
            &new_pass,
            &format!("bpg_{name}"),
        ),
        address: target.address(),
        cwd: dir.clone(),
    };
    let new_ds = rebuild_dataset(ctx, name);
    let mut slot_made: Option<String> = None;
    let mut new_made = false;
    let backup = async {
        let ident = repl.identify(UPSTREAM_TIMEOUT).await?;
        let bin = binaries_for(ctx, &opts, ident.major(), &target.address())?;
        let mut slot_created = false;
        if let Some(s) = &slot {
            slot_created = repl.create_slot(s, UPSTREAM_TIMEOUT).await?;
            if slot_created {
                slot_made = Some(s.clone());
            } else {
                // Reused: it was ours when follow made it on this cluster.
                slot_created = u.slot.as_deref() == Some(s.as_str())
                    && u.slot_created
                    && u.system_id == ident.system_id;
            }
        }
        remove_stale_rebuilds(ctx, name).await?;
        let home = ctx.home.root().to_string_lossy().into_owned();
        let pid = std::process::id().to_string();
        let port = old.port.to_string();
        ctx.storage
            .create(
                &new_ds,
                None,
                &[
                    ("managed", "yes"),
                    ("name", name),
                    ("dataset", &new_ds),
                    ("kind", "rebuild"),
                    ("worker", &pid),
                    ("port", &port),
                    ("runtime", &old.runtime),
                    ("home", &home),
                ],
            )
            .await?;
        new_made = true;
        // No -S: the old replica may stream through that very slot now
        // (a slot serves one walsender); pg_basebackup holds a temporary
        // slot of its own, and the slot (made before, RESERVE_WAL) keeps
        // the WAL from the backup's end until the new standby connects.
        let (data_dir, bytes) =
            backup_into(ctx, &repl, &bin, &new_ds, None, opts.progress.as_ref()).await?;
        let mut entry = old.clone();
        entry.pg_bin = bin.dir.clone();
        entry.pg_major = ident.major();
        entry.upstream = Some(Upstream {
            host: target.host.clone(),
            port: target.port,
            user: target.user.clone(),
            slot: slot.clone(),
            slot_created,
            slot_creating: false,
            system_id: ident.system_id.clone(),
        });
        make_standby(ctx, &entry, &data_dir)?;
        fault::point("rebuild_after_backup").await?;
        Ok::<_, Error>((entry, bin, bytes))
    }
    .await;
    let (entry, bin, bytes) = match backup {
        Ok(x) => x,
        Err(e) => {
            undo_backup(
                ctx,
                &repl,
                &new_ds,
                new_made,
                slot_made.as_deref(),
                &new_pass,
            )
            .await;
            return Err(e);
        }
    };

    // The swap.
    let retired = old.dataset.clone();
    let mut entry = entry;
    entry.dataset = new_ds.clone();
    let mut sw = Swapped::default();
    let swap = swap(ctx, &old, &entry, &bin, &mut sw).await;
    if let Err(e) = swap {
        unswap(ctx, &old, &new_ds, sw).await;
        undo_backup(ctx, &repl, &new_ds, true, slot_made.as_deref(), &new_pass).await;
        return Err(e);
    }
    // The old data: kept while a branch depends on it.
    let depends = ctx.lock()?.entries().any(|e| snapshot_on(e, &retired));
    let retired_dataset = if depends {
        Some(retired)
    } else {
        if let Err(e) = destroy_with_retry(&*ctx.storage, &retired, true).await {
            tracing::warn!("destroying the old replica's data {retired}: {e} (gc removes it)");
        }
        None
    };
    let _ = std::fs::remove_file(dir.join("pgpass.old"));
    let u = entry.upstream.clone().unwrap_or_else(|| unreachable!());
    Ok(FollowReport {
        replica: status::info(ctx, name).await?,
        upstream: upstream::address(&u.host, u.port),
        system_id: u.system_id,
        slot: u.slot,
        slot_created: u.slot_created,
        backup_bytes: bytes,
        total_millis: t0.elapsed().as_secs_f64() * 1000.0,
        retired_dataset,
    })
}

/// True for a rebuild's new data (`kind` = rebuild) of `name`.
fn is_rebuild_of(d: &DatasetInfo, home: &str, name: &str) -> bool {
    d.kind == DatasetType::Filesystem
        && d.made_by_betterpg(home)
        && d.local_prop("kind") == Some("rebuild")
        && d.local_prop("name") == Some(name)
}

/// A rebuild's dataset left by a process that is gone is removed; one of
/// a live rebuild of the same replica refuses this one.
async fn remove_stale_rebuilds(ctx: &Context, name: &str) -> Result<()> {
    let home = ctx.home.root().to_string_lossy().into_owned();
    for d in ctx.storage.list(&ctx.config.dataset).await? {
        if !is_rebuild_of(&d, &home, name) {
            continue;
        }
        if let Some(pid) = d.local_prop("worker").and_then(|p| p.parse().ok()) {
            if process_alive(pid, None) && pid != std::process::id() {
                return Err(Error::InvalidState(format!(
                    "another rebuild of {name:?} (process {pid}) is under way in {}: wait for it",
                    d.name
                )));
            }
        }
        destroy_with_retry(&*ctx.storage, &d.name, true).await?;
    }
    Ok(())
}

/// Destroy the retired datasets of the replica `name` that no clone needs
/// any more (`bpg destroy NAME`, after its branches). Best effort: `gc`
/// removes what stays.
pub(crate) async fn destroy_retired(ctx: &Context, name: &str) {
    let home = ctx.home.root().to_string_lossy().into_owned();
    let Ok(all) = ctx.storage.list(&ctx.config.dataset).await else {
        return;
    };
    for d in all.iter().filter(|d| {
        d.kind == DatasetType::Filesystem
            && d.made_by_betterpg(&home)
            && d.local_prop("kind") == Some("retired")
            && d.local_prop("name") == Some(name)
    }) {
        let prefix = format!("{}@", d.name);
        if all
            .iter()
            .any(|x| x.origin.as_deref().is_some_and(|o| o.starts_with(&prefix)))
        {
            continue;
        }
        if let Err(e) = destroy_with_retry(&*ctx.storage, &d.name, true).await {
            tracing::warn!(
                "destroying {}, the old data of {name}: {e} (gc removes it)",
                d.name
            );
        }
    }
}

/// Stop the old server, mark the datasets, record the new replica, start
/// it on the replica's port.
async fn swap(
    ctx: &Context,
    old: &Entry,
    entry: &Entry,
    bin: &crate::pg::PgBin,
    sw: &mut Swapped,
) -> Result<()> {
    let name = &old.name;
    let spec = ctx.control_spec(old).await?;
    let rt = ctx.runtime(&old.runtime)?;
    if rt.status(&spec).await? == RunStatus::Running {
        rt.stop(&spec).await?;
        sw.old_stopped = true;
    }
    fault::point("rebuild_after_stop").await?;
    sw.marked = true;
    ctx.storage
        .set_props(&old.dataset, &[("kind", "retired")])
        .await?;
    let created = now_unix().to_string();
    ctx.storage
        .set_props(
            &entry.dataset,
            &[("kind", "replica"), ("created", &created)],
        )
        .await?;
    fault::point("rebuild_after_swap").await?;
    let dir = ctx.home.replica_dir(name);
    let passfile = ctx.home.upstream_passfile(name);
    std::fs::rename(&passfile, dir.join("pgpass.old"))
        .map_err(|e| Error::io(format!("moving {} aside", passfile.display()), e))?;
    sw.passfile_swapped = true;
    std::fs::rename(dir.join("pgpass.rebuild"), &passfile)
        .map_err(|e| Error::io(format!("installing {}", passfile.display()), e))?;
    {
        let mut cat = ctx.lock()?;
        let x = cat
            .get_mut(name)
            .ok_or_else(|| Error::Internal(format!("catalog entry {name} vanished")))?;
        let before = x.clone();
        x.dataset = entry.dataset.clone();
        x.upstream = entry.upstream.clone();
        x.pg_bin = entry.pg_bin.clone();
        x.pg_major = entry.pg_major;
        cat.save()?;
        sw.catalog = Some(before);
    }
    let mp = ctx.mountpoint(&entry.dataset).await?;
    let data_dir = mp.join(PGDATA_SUBDIR);
    start_with(ctx, entry, &data_dir, bin, &mut sw.started).await?;
    fault::point("rebuild_after_start").await?;
    Ok(())
}

/// Undo what [`swap`] did, in reverse. Best effort: each step is tried.
async fn unswap(ctx: &Context, old: &Entry, new_ds: &str, sw: Swapped) {
    let name = &old.name;
    if let Some(spec) = &sw.started {
        if let Ok(rt) = ctx.runtime(&spec.runtime) {
            if let Err(e) = rt.stop(spec).await {
                tracing::warn!("stopping the rebuilt replica {name}: {e}");
            }
        }
    }
    if let Some(before) = sw.catalog {
        let restored = ctx.lock().and_then(|mut cat| {
            if let Some(x) = cat.get_mut(name) {
                x.dataset = before.dataset;
                x.upstream = before.upstream;
                x.pg_bin = before.pg_bin;
                x.pg_major = before.pg_major;
                x.port = before.port;
            }
            cat.save()
        });
        if let Err(e) = restored {
            tracing::warn!("restoring the catalog of {name}: {e}");
        }
    }
    if sw.passfile_swapped {
        let dir = ctx.home.replica_dir(name);
        let passfile = ctx.home.upstream_passfile(name);
        let _ = std::fs::rename(&passfile, dir.join("pgpass.rebuild"));
        if let Err(e) = std::fs::rename(dir.join("pgpass.old"), &passfile) {
            tracing::warn!("restoring {}: {e}", passfile.display());
        }
    }
    if sw.marked {
        if let Err(e) = ctx
            .storage
            .set_props(&old.dataset, &[("kind", "replica")])
            .await
        {
            tracing::warn!("restoring the properties of {}: {e}", old.dataset);
        }
        let _ = ctx.storage.set_props(new_ds, &[("kind", "rebuild")]).await;
    }
    if sw.old_stopped {
        let restart = async {
            let spec = ctx.spec(old).await?;
            ctx.runtime(&old.runtime)?.start(&spec).await
        };
        if let Err(e) = restart.await {
            tracing::warn!("starting the old replica {name} again: {e}");
        }
    }
}

/// Undo the backup phase: the new dataset, a slot made for it, the new
/// passfile.
async fn undo_backup(
    ctx: &Context,
    repl: &Replication,
    new_ds: &str,
    made: bool,
    slot: Option<&str>,
    new_pass: &PathBuf,
) {
    if made {
        if let Err(e) = destroy_with_retry(&*ctx.storage, new_ds, true).await {
            tracing::warn!("destroying {new_ds}: {e}");
        }
    }
    if let Some(s) = slot {
        if let Err(e) = repl.drop_slot(s, UPSTREAM_TIMEOUT).await {
            tracing::warn!("dropping the slot {s} this rebuild created on the primary: {e}");
        }
    }
    let _ = std::fs::remove_file(new_pass);
}
