//! `reset`: throw a branch's data away and branch it again from its
//! parent's current state (or from a named snapshot, `--to SRC@NAME`),
//! under the same name, port and password.

use std::time::Instant;

use super::branch::{
    check_quota, complete_branch, private_plan, ready_snapshot, snapshot_name, BranchOptions,
    BranchReport,
};
use super::credentials::{policy_for, Audited};
use crate::catalog::{split_snapshot_ref, Credentials, Entry, Kind, State};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::name::validate_name;
use crate::storage::destroy_with_retry;
use crate::tablespace;
use crate::util::{now_unix, random_token};

/// Reset a branch to its parent's current state: its data is thrown
/// away and it is branched again under the same name and port (so
/// connection URLs stay valid). A branch with branches of its own is
/// refused. If the new branch cannot be made, the old one is already
/// gone and the error says so.
///
/// With `to` = `SRC@NAME` the branch is made again from that named
/// snapshot instead, and SRC becomes its parent.
pub(crate) async fn reset(
    ctx: &Context,
    name: &str,
    to: Option<&str>,
    opts: BranchOptions,
) -> Result<BranchReport> {
    let source = match to {
        Some(t) => t.to_string(),
        None => ctx
            .entry(name)
            .ok()
            .and_then(|e| e.parent)
            .unwrap_or_default(),
    };
    let requested = opts.mode;
    let mut audited = Audited::default();
    let r = reset_unaudited(ctx, name, to, opts, &mut audited).await;
    super::branch::record(ctx, "reset", &source, name, requested, &audited, &r);
    r
}

async fn reset_unaudited(
    ctx: &Context,
    name: &str,
    to: Option<&str>,
    opts: BranchOptions,
    audited: &mut Audited,
) -> Result<BranchReport> {
    let t0 = Instant::now();
    validate_name(name)?;
    check_quota(opts.quota)?;
    let to = match to {
        None => None,
        Some(t) => {
            let (src, snap) = split_snapshot_ref(t).ok_or_else(|| {
                Error::Config(format!(
                    "--to {t:?} names no snapshot: give SOURCE@SNAPSHOT (`bpg snapshots` lists them)"
                ))
            })?;
            validate_name(src)?;
            validate_name(snap)?;
            Some(ready_snapshot(ctx, src, snap)?)
        }
    };
    if opts.runtime.is_some() || opts.image.is_some() {
        return Err(Error::Unsupported(
            "reset keeps the branch's runtime and image: destroy it and branch again to change them".into(),
        ));
    }
    if opts.at.is_some() {
        return Err(Error::Unsupported(
            "reset makes a branch its source as it is now: to branch from a point in time, destroy it and branch again with --at".into(),
        ));
    }
    if opts.owner_pid.is_some() {
        return Err(Error::Unsupported(
            "reset keeps the branch's owner process: destroy it and branch again to change it"
                .into(),
        ));
    }
    if opts.ttl.is_some() {
        return Err(Error::Unsupported(
            "reset keeps the branch's expiry: set a new one with `bpg config NAME --ttl`".into(),
        ));
    }
    let (src, entry, plan, _replica_lock) = {
        let mut cat = ctx.lock()?;
        let e = cat
            .get(name)
            .cloned()
            .ok_or_else(|| Error::not_found(name))?;
        if !e.is_ready() {
            return Err(Error::InvalidState(format!(
                "{name:?} is not ready (it is being created or destroyed)"
            )));
        }
        if e.lifecycle.protected {
            return Err(Error::Protected {
                name: name.to_string(),
                operation: "reset",
            });
        }
        let parent = match (e.kind, &e.parent, &to) {
            (Kind::Branch, _, Some(rec)) => rec.source.clone(),
            (Kind::Branch, Some(p), None) => p.clone(),
            _ => {
                return Err(Error::Unsupported(format!(
                "{name:?} is a database, not a branch: only branches can be reset to their parent"
            )))
            }
        };
        let src = cat
            .get(&parent)
            .cloned()
            .filter(|p| p.is_ready())
            .ok_or_else(|| {
                Error::InvalidState(format!("the parent {parent:?} of {name:?} is not ready"))
            })?;
        // A replica is not rebuilt under the reset (its entry, read under
        // the catalog lock, stays what it is): held to the end.
        let replica_lock = ctx.replica_lock(&src, false)?;
        // Its named snapshots live on the dataset reset throws away.
        refuse_dependents(&cat, name)?;
        // The branch is masked again as it was made (its own settings)
        // and as its parent's policy says now; the files are read before
        // anything is thrown away.
        let (mut plan, keep) = private_plan(&src, Some(&e.settings), &opts)?;
        audited.masking = plan.audit_files();
        // Rotated again (new passwords) when its policy says so.
        let policy = policy_for(
            &|n| cat.get(n).cloned(),
            &src,
            Some(&e.settings),
            opts.credentials,
        )?;
        audited.credentials = Some(policy);
        plan.rotate = policy == Credentials::Rotate;
        let x = cat.get_mut(name).expect("checked above");
        x.state = State::creating();
        // Only the masking it keeps changes; the rest is the branch's.
        x.settings.mask = keep.mask;
        x.settings.forbid_unmasked = keep.forbid_unmasked;
        x.settings.schema_only = keep.schema_only;
        x.settings.credentials = Some(policy);
        // A rewindable branch stays one (its rewind point goes with the
        // old data and is taken again of the new).
        x.rewindable |= opts.rewindable;
        let e = Entry {
            rewindable: x.rewindable,
            ..e
        };
        cat.save()?;
        (src, e, plan, replica_lock)
    };
    // Throw the old data away (server, clone, its snapshot on the parent).
    let old = entry.clone();
    let old_ts =
        tablespace::snapshots_of(&*ctx.storage, &old.dataset, old.snapshot.as_deref()).await?;
    if let Some(ds) = ctx.storage.get(&old.dataset).await? {
        if let Some(mp) = ds.mountpoint {
            // Stopping never logs in: a lost password file must not
            // keep the old server running (item 11).
            let spec = ctx.control_spec_for(&old, old.data_dir(&mp));
            ctx.runtime(&old.runtime)?.stop_discarding(&spec).await?;
        }
        destroy_with_retry(&*ctx.storage, &old.dataset, true).await?;
    }
    // The snapshot it was cloned from goes with it, unless it is a
    // named snapshot (which outlives its branches).
    let named = old
        .snapshot
        .as_deref()
        .is_some_and(|s| ctx.lock().is_ok_and(|c| c.named_by_zfs(s).is_some()));
    if !named {
        if let Some(snap) = &old.snapshot {
            destroy_with_retry(&*ctx.storage, snap, false).await?;
        }
        tablespace::destroy_snapshots(&*ctx.storage, &old_ts).await?;
    }
    // The branch keeps its password (so its URL stays valid) unless its
    // file is gone: then it gets a new one, and the report says so.
    let password_changed = match std::fs::symlink_metadata(ctx.home.secret_path(name)) {
        Ok(_) => false,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            ctx.home.write_secret(name, &random_token(32))?;
            true
        }
        Err(e) => {
            return Err(Error::io(
                format!("reading {}", ctx.home.secret_path(name).display()),
                e,
            ))
        }
    };
    let created_at = now_unix();
    let mut entry = entry;
    entry.snapshot = Some(match &to {
        Some(rec) => rec.zfs_snapshot.clone(),
        None => snapshot_name(&src.dataset, name),
    });
    entry.parent = Some(src.name.clone());
    entry.created_at = created_at;
    // A branch made before the branch space existed moves into it.
    entry.dataset = ctx.branch_dataset_for(name);
    {
        let mut cat = ctx.lock()?;
        if let Some(x) = cat.get_mut(name) {
            x.snapshot = entry.snapshot.clone();
            x.parent = entry.parent.clone();
            x.created_at = created_at;
            x.dataset = entry.dataset.clone();
        }
        cat.save()?;
    }
    let again = match &to {
        Some(rec) => rec.full_name(),
        None => src.name.clone(),
    };
    complete_branch(ctx, &src, &entry, opts, to.as_ref(), plan, t0, "discard", password_changed)
        .await
        .map_err(|e| {
            Error::InvalidState(format!(
                "resetting {name:?} failed after its old data was removed, so it no longer exists ({e}); make it again with `bpg branch {again} {name}`"
            ))
        })
}

/// Refused ([`Error::HasDependents`], naming them) when `name` has
/// branches or named snapshots of its own: they live on the data a reset
/// or a rewind throws away.
pub(crate) fn refuse_dependents(cat: &crate::catalog::Catalog, name: &str) -> Result<()> {
    let mut kids: Vec<String> = cat.children(name).iter().map(|c| c.name.clone()).collect();
    kids.extend(cat.snapshots_of(name).iter().map(|r| {
        format!(
            "snapshot {} (`bpg snapshot destroy` it first)",
            r.full_name()
        )
    }));
    if kids.is_empty() {
        return Ok(());
    }
    Err(Error::HasDependents {
        name: name.to_string(),
        dependents: kids.join(", "),
    })
}
