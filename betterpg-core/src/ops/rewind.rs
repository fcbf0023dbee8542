//! `rewind`: roll a branch made with `--rewindable` back to how it was
//! when it was made (its rewind point), under the same name, port and
//! password, without branching again.
//!
//! The rewind point is a ZFS snapshot of the branch's datasets taken by
//! the branch recipe after the private first start (isolated, masked,
//! shut down cleanly) and before the branch's server ever listened on
//! TCP ([`super::branch::take_rewind_point`]). A rewind stops the server, rolls every dataset
//! back to that snapshot and starts it again: no backup, no clone, no
//! ownership walk, no recovery and no private start, which is why it is
//! much cheaper than `reset` (which branches the parent's *current*
//! state again) or a destroy and a new branch. The pytest plugin's warm
//! pool recycles its branches this way.

use std::time::Instant;

use serde::Serialize;

use super::branch::{filesystems_of, StepTiming, Timer};
use super::status::Info;
use crate::catalog::{rewind_snapshot_name, Entry, Kind, State};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::name::validate_name;
use crate::runtime::RunStatus;

/// What [`crate::BranchManager::rewind`] did.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RewindReport {
    /// The branch as it is now (running, same name, port and URL).
    pub branch: Info,
    /// The rewind point's ZFS snapshot name (after the `@`).
    pub snapshot: String,
    /// Milliseconds per step: `check`, `stop`, `rollback`, `start`.
    pub timings: Vec<StepTiming>,
    /// Milliseconds of the whole call (the steps add up to it).
    pub total_millis: f64,
}

/// Roll branch `name` back to its rewind point and start it again;
/// recorded in the audit log (operation `rewind`), as a reset is.
pub(crate) async fn rewind(ctx: &Context, name: &str) -> Result<RewindReport> {
    let parent = ctx.entry(name).ok().and_then(|e| e.parent);
    let r = rewind_unaudited(ctx, name).await;
    let mut ev = crate::audit::AuditEvent::now("rewind");
    ev.source = parent;
    ev.branch = Some(name.to_string());
    super::audit::record(ctx, ev.outcome(&r));
    r
}

async fn rewind_unaudited(ctx: &Context, name: &str) -> Result<RewindReport> {
    let t0 = Instant::now();
    let mut timer = Timer::since(t0);
    validate_name(name)?;
    let entry = claim(ctx, name)?;
    let snap = rewind_snapshot_name(name);
    timer.lap("check");
    let r = roll_back(ctx, &entry, &snap, &mut timer).await;
    // Ready again whatever happened: a failed rewind leaves the branch
    // intact, or stopped and partly rolled back, and rewinding again
    // finishes it (a rollback to the same snapshot is idempotent).
    let released = release(ctx, name);
    let mp = r?;
    released?;
    // The branch's own start (as `bpg start`: checks, betterpg's settings
    // written anew, never trusting the data directory; the server
    // started and waited for), and meanwhile the listing for the report.
    let (started, listed) = tokio::join!(
        super::start::start_entry(ctx, &entry, &mp, Some(RunStatus::Stopped)),
        ctx.storage.get(&entry.dataset)
    );
    started?;
    let branch = match listed {
        Ok(Some(ds)) => {
            super::status::info_with(ctx, &entry, Some(&ds), RunStatus::Running).await?
        }
        _ => super::status::info(ctx, name).await?,
    };
    timer.lap("start");
    Ok(RewindReport {
        branch,
        snapshot: snap,
        timings: timer.steps,
        total_millis: t0.elapsed().as_secs_f64() * 1000.0,
    })
}

/// Check that `name` can be rewound and mark it busy (as a reset does),
/// under the catalog lock.
fn claim(ctx: &Context, name: &str) -> Result<Entry> {
    let mut cat = ctx.lock()?;
    let e = cat
        .get(name)
        .cloned()
        .ok_or_else(|| Error::not_found(name))?;
    if e.kind != Kind::Branch {
        return Err(Error::Unsupported(format!(
            "{name:?} is a {}, not a branch: only a branch made with --rewindable can be rewound",
            e.kind
        )));
    }
    if !e.is_ready() {
        return Err(Error::InvalidState(format!(
            "{name:?} is not ready (it is being created, changed or destroyed)"
        )));
    }
    if !e.rewindable {
        return Err(Error::Unsupported(format!(
            "{name:?} has no rewind point: it was not made with --rewindable; `bpg reset {name}` branches it again from its parent instead"
        )));
    }
    if e.lifecycle.protected {
        return Err(Error::Protected {
            name: name.to_string(),
            operation: "rewind",
        });
    }
    // A rollback destroys nothing newer: snapshots taken of the branch
    // since (its branches' and named ones) would block it. Refused here,
    // with what to do, instead of a ZFS error.
    super::reset::refuse_dependents(&cat, name)?;
    let x = cat.get_mut(name).expect("read above");
    x.state = State::creating();
    cat.save()?;
    Ok(e)
}

fn release(ctx: &Context, name: &str) -> Result<()> {
    let mut cat = ctx.lock()?;
    if let Some(x) = cat.get_mut(name) {
        x.state = State::Ready;
    }
    cat.save()
}

/// Stop the branch and roll its datasets back; where it is mounted.
async fn roll_back(
    ctx: &Context,
    entry: &Entry,
    snap: &str,
    timer: &mut Timer,
) -> Result<std::path::PathBuf> {
    // One listing: the branch's file systems, their snapshots and its
    // mountpoint.
    let listing = ctx.storage.list(&entry.dataset).await?;
    let datasets = filesystems_of(&listing, entry);
    // Every dataset must have the point before anything is changed.
    for ds in &datasets {
        let full = format!("{ds}@{snap}");
        if !listing.iter().any(|d| d.name == full) {
            return Err(Error::InvalidState(format!(
                "the rewind point {full} of {:?} is missing (destroyed outside betterpg?): the branch was not changed; `bpg reset {}` branches it again",
                entry.name, entry.name
            )));
        }
    }
    let mp = listing
        .iter()
        .find(|d| d.name == entry.dataset)
        .and_then(|d| d.mountpoint.clone())
        .ok_or_else(|| {
            Error::zfs(format!(
                "dataset {} of {:?} is missing or not mounted",
                entry.dataset, entry.name
            ))
        })?;
    // Stopping never logs in (a lost password file must not keep it
    // running); what the server writes on its way down is thrown away.
    let spec = ctx.control_spec_for(entry, entry.data_dir(&mp));
    ctx.runtime(&entry.runtime)?.stop_discarding(&spec).await?;
    timer.lap("stop");
    for ds in &datasets {
        ctx.storage
            .rollback(&format!("{ds}@{snap}"))
            .await
            .inspect_err(|e| {
                tracing::warn!(
                    "rolling {ds} back to its rewind point: {e}; {:?} is stopped: run `bpg rewind {}` again",
                    entry.name,
                    entry.name
                )
            })?;
    }
    timer.lap("rollback");
    Ok(mp)
}
