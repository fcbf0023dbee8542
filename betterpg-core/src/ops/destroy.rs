//! `destroy`: stop a database or branch and remove everything it owns.

use crate::catalog::{Entry, SnapshotRecord, State};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::name::validate_name;
use crate::storage::destroy_with_retry;
use crate::tablespace;

/// Destroy a database or branch: stop it, destroy its dataset and the
/// snapshot it came from, forget it. Refused unless `force` when it has
/// branches (`force` destroys them first, deepest first) or when its
/// dataset (or a branch's) carries snapshots or datasets betterpg did
/// not make (an operator's, sanoid's ...; `force` destroys them too).
/// Always refused while a process that still runs is making or
/// destroying it or one of its branches, and when it or (with `force`)
/// one of its branches is protected.
async fn destroy_inner(ctx: &Context, name: &str, force: bool) -> Result<()> {
    destroy_with(
        ctx,
        name,
        Scope {
            branches: force,
            foreign: force,
            operation: "destroy",
        },
    )
    .await
}

/// What a destroy may take with it besides the entry itself.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scope {
    /// Its branches (deepest first); else having any is refused.
    pub(crate) branches: bool,
    /// Snapshots and datasets under it that betterpg did not make; else
    /// having any is refused.
    pub(crate) foreign: bool,
    /// What is asked ("destroy", "expire"), for a protection error.
    pub(crate) operation: &'static str,
}

/// [`destroy`] with its scope spelled out: expiry takes the branches of
/// an expired branch but never what betterpg did not make.
pub(crate) async fn destroy_with(ctx: &Context, name: &str, scope: Scope) -> Result<()> {
    validate_name(name)?;
    // A replica is not destroyed while it is rebuilt (nor rebuilt while
    // it is destroyed): held to the end.
    let _replica_lock = match ctx.lock()?.get(name) {
        Some(e) => ctx.replica_lock(e, false)?,
        None => None,
    };
    // What betterpg did not make under the datasets that would go,
    // looked up before the lock is taken (a listing per dataset).
    let datasets: Vec<String> = {
        let cat = ctx.lock()?;
        let e = cat.get(name).ok_or_else(|| Error::not_found(name))?;
        e.refuse_if_attached("destroy")?;
        let mut v: Vec<String> = cat
            .descendants_deepest_first(name)
            .iter()
            .filter_map(|d| cat.get(d).map(|x| x.dataset.clone()))
            .collect();
        v.push(e.dataset.clone());
        v
    };
    let foreign = if scope.foreign {
        Vec::new()
    } else {
        not_made_by_betterpg(ctx, &datasets).await?
    };
    let victims = {
        let mut cat = ctx.lock()?;
        let e = cat
            .get(name)
            .cloned()
            .ok_or_else(|| Error::not_found(name))?;
        if e.state.busy_elsewhere() {
            return Err(Error::InvalidState(format!(
                "{name:?} is being changed by process {}; wait for it",
                e.state.worker().unwrap_or_default()
            )));
        }
        if e.lifecycle.protected {
            return Err(Error::Protected {
                name: name.to_string(),
                operation: scope.operation,
            });
        }
        let desc = cat.descendants_deepest_first(name);
        // A branch still being made has a clone of a snapshot of its
        // parent (or soon will): destroying the parent under it would
        // leave the parent half-destroyed and the clone orphaned.
        let busy: Vec<String> = desc
            .iter()
            .filter_map(|d| cat.get(d))
            .filter(|d| d.state.busy_elsewhere())
            .map(|d| {
                format!(
                    "{} ({} by process {})",
                    d.name,
                    d.state.label(),
                    d.state.worker().unwrap_or_default()
                )
            })
            .collect();
        if !busy.is_empty() {
            return Err(Error::InvalidState(format!(
                "{name:?} has a branch that is being made or changed by another bpg process: {}; wait for it to finish, then run destroy again",
                busy.join(", ")
            )));
        }
        // Named snapshots live on the datasets that would go: destroy
        // refuses rather than take them silently (a snapshot is kept on
        // purpose, often as the way back), and --force takes them too.
        let named: Vec<String> = desc
            .iter()
            .map(String::as_str)
            .chain([name])
            .flat_map(|n| cat.snapshots_of(n))
            .map(|r| r.full_name())
            .collect();
        let refused_branches = !desc.is_empty() && !scope.branches;
        let refused_named = !named.is_empty() && !scope.foreign;
        if refused_branches || refused_named || !foreign.is_empty() {
            let mut parts = Vec::new();
            if refused_branches {
                parts.push(format!("branches {}", desc.join(", ")));
            }
            if refused_named {
                parts.push(format!(
                    "named snapshots {} (`bpg snapshot destroy` them, or --force destroys them too)",
                    named.join(", ")
                ));
            }
            if !foreign.is_empty() {
                parts.push(format!(
                    "snapshots or datasets betterpg did not make (--force destroys them too): {}",
                    foreign.join(", ")
                ));
            }
            return Err(Error::HasDependents {
                name: name.to_string(),
                dependents: parts.join("; "),
            });
        }
        // A protected branch is never taken along, whoever asks.
        if let Some(p) = desc
            .iter()
            .filter_map(|d| cat.get(d))
            .find(|d| d.lifecycle.protected)
        {
            return Err(Error::Protected {
                name: p.name.clone(),
                operation: scope.operation,
            });
        }
        let mut victims = desc;
        victims.push(name.to_string());
        for v in &victims {
            if let Some(x) = cat.get_mut(v) {
                x.state = State::destroying();
            }
        }
        cat.save()?;
        victims
            .into_iter()
            .filter_map(|v| cat.get(&v).cloned())
            .collect::<Vec<_>>()
    };
    // Marked, not yet destroyed: a process killed here leaves the
    // entries `destroying` for the next destroy, expiry pass or gc.
    crate::fault::point(&format!("{}_marked", scope.operation)).await?;
    for v in victims {
        destroy_one(ctx, &v).await?;
    }
    Ok(())
}

/// Snapshots and datasets under `datasets` (each included) that
/// betterpg did not make for this home, by full name.
pub(crate) async fn not_made_by_betterpg(
    ctx: &Context,
    datasets: &[String],
) -> Result<Vec<String>> {
    let home = ctx.home.root().to_string_lossy().into_owned();
    let mut out = Vec::new();
    for ds in datasets {
        let list = match ctx.storage.list(ds).await {
            Ok(l) => l,
            Err(Error::NotFound { .. }) => continue,
            Err(e) => return Err(e),
        };
        out.extend(
            list.into_iter()
                .filter(|d| d.name != *ds && !d.made_by_betterpg(&home))
                .map(|d| d.name),
        );
    }
    Ok(out)
}

/// Remove one entry and everything it owns; tolerant of parts already gone
/// (so a destroy interrupted half-way can simply be run again).
pub(crate) async fn destroy_one(ctx: &Context, e: &Entry) -> Result<()> {
    // A branch of a named snapshot leaves the snapshot (it outlives its
    // branches); the entry's own named snapshots go with its dataset.
    let (named_origin, own) = {
        let cat = ctx.lock()?;
        let origin = e
            .snapshot
            .as_deref()
            .is_some_and(|s| cat.named_by_zfs(s).is_some());
        let own: Vec<SnapshotRecord> = cat.snapshots_of(&e.name).into_iter().cloned().collect();
        (origin, own)
    };
    let tablespace_snapshots = if named_origin {
        Vec::new()
    } else {
        tablespace::snapshots_of(&*ctx.storage, &e.dataset, e.snapshot.as_deref()).await?
    };
    if let Some(ds) = ctx.storage.get(&e.dataset).await? {
        if let Some(mp) = ds.mountpoint {
            let spec = ctx.control_spec_for(e, e.data_dir(&mp));
            let rt = ctx.runtime(&e.runtime)?;
            rt.stop_discarding(&spec).await?;
            rt.remove(&spec).await?;
        }
        destroy_with_retry(&*ctx.storage, &e.dataset, true).await?;
    }
    if let Some(snap) = e.snapshot.as_ref().filter(|_| !named_origin) {
        // Already gone is fine (destroy_with_retry says so): no `get`
        // first, one zfs call fewer per destroy.
        destroy_with_retry(&*ctx.storage, snap, false).await?;
    }
    tablespace::destroy_snapshots(&*ctx.storage, &tablespace_snapshots).await?;
    for r in &own {
        destroy_kept(ctx, r).await?;
    }
    if matches!(
        e.kind,
        crate::catalog::Kind::Database | crate::catalog::Kind::Replica
    ) {
        // Its retained WAL and record (the base snapshots went with its
        // dataset).
        super::retain::remove_all(ctx, e, true).await?;
    }
    if let Some(u) = &e.upstream {
        // A slot this replica's follow created would keep the primary's
        // WAL for ever: drop it (the primary may be gone: then say so).
        if let (true, Some(slot)) = (u.slot_created, &u.slot) {
            let dropped = match ctx.replication_of(e) {
                Ok(r) => r.drop_slot(slot, super::follow::UPSTREAM_TIMEOUT).await,
                Err(err) => Err(err),
            };
            if let Err(err) = dropped {
                tracing::warn!(
                    "could not drop the slot {slot:?} on the primary {}:{} ({err}): drop it there (SELECT pg_drop_replication_slot('{slot}')), or it keeps WAL on the primary",
                    u.host,
                    u.port
                );
            }
        }
        let _ = std::fs::remove_dir_all(ctx.home.replica_dir(&e.name));
        // Its data before a `follow --rebuild`, now that its branches
        // (destroyed first) need it no more.
        super::rebuild::destroy_retired(ctx, &e.name).await;
    }
    let _ = std::fs::remove_file(ctx.home.log_path(&e.name));
    ctx.home.remove_secret(&e.name);
    let mut cat = ctx.lock()?;
    cat.remove(&e.name);
    for r in &own {
        cat.remove_snapshot(&r.source, &r.name);
    }
    cat.save()
}

/// Destroy what a named snapshot holds in the pool (its ZFS snapshots and
/// kept WAL; already gone is fine), leaving its record to the caller.
pub(crate) async fn destroy_kept(ctx: &Context, r: &SnapshotRecord) -> Result<()> {
    if let Some(ds) = &r.wal_dataset {
        destroy_with_retry(&*ctx.storage, ds, true).await?;
    }
    destroy_with_retry(&*ctx.storage, &r.zfs_snapshot, false).await?;
    tablespace::destroy_snapshots(&*ctx.storage, &r.tablespace_snapshots).await
}

/// [`destroy_inner`], recorded in the audit log (with the parent of a
/// branch as its source, and `force` in the detail).
pub(crate) async fn destroy(ctx: &Context, name: &str, force: bool) -> Result<()> {
    let parent = ctx.entry(name).ok().and_then(|e| e.parent);
    let r = destroy_inner(ctx, name, force).await;
    let mut ev = crate::audit::AuditEvent::now("destroy");
    ev.source = parent;
    ev.branch = Some(name.to_string());
    ev.detail = force.then(|| "force: its branches too".to_string());
    super::audit::record(ctx, ev.outcome(&r));
    r
}
