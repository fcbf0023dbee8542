//! `bpg snapshot` (take one, `--prune`, `--schedule`, `destroy SRC@NAME`)
//! and `bpg snapshots` (list them).

use betterpg_core::util::human_bytes;
use betterpg_core::{Error, Mode, SnapshotOptions};

use super::Global;
use crate::args::{SnapshotCmd, SnapshotSub, SnapshotsArgs};
use crate::{output, wire};

pub async fn run(g: &Global, a: SnapshotCmd) -> Result<(), Error> {
    if let Some(SnapshotSub::Destroy(d)) = a.sub {
        let (src, name) = d.snapshot.split_once('@').ok_or_else(|| {
            Error::Config(format!(
                "{:?} names no snapshot: give SOURCE@NAME (`bpg snapshots` lists them)",
                d.snapshot
            ))
        })?;
        let mgr = g.open().await?;
        let r = mgr.destroy_snapshot(src, name, d.force).await?;
        if g.json {
            return output::json(&wire::SnapshotDestroyed::from(&r));
        }
        for b in &r.branches_destroyed {
            println!("destroyed branch {b}");
        }
        println!("destroyed snapshot {}", r.snapshot);
        return Ok(());
    }
    if a.dry_run && !a.prune && !a.schedule {
        return Err(Error::Config(
            "--dry-run goes with --prune or --schedule".into(),
        ));
    }
    let mgr = g.open().await?;
    if a.prune {
        let r = mgr.prune_snapshots(a.source.as_deref(), a.dry_run).await?;
        if g.json {
            return output::json(&wire::PruneReport::from(&r));
        }
        print_prune(&r);
        return Ok(());
    }
    if a.schedule {
        let r = mgr
            .run_snapshot_policy(a.source.as_deref(), a.dry_run)
            .await?;
        if g.json {
            return output::json(&wire::PolicyReport::from(&r));
        }
        for s in &r.due {
            if a.dry_run {
                println!("would snapshot {s}");
            }
        }
        for s in &r.taken {
            println!("took {}", s.full_name);
        }
        print_prune(&r.prune);
        for f in &r.failures {
            println!("failed {}: {}", f.source, f.error);
        }
        if let Some(f) = r.failures.first() {
            return Err(Error::InvalidState(format!(
                "the schedule failed for {} source(s), first {}: {}",
                r.failures.len(),
                f.source,
                f.error
            )));
        }
        return Ok(());
    }
    let source = a.source.ok_or_else(|| {
        Error::Config("name the database or branch to snapshot: bpg snapshot SRC".into())
    })?;
    let mode = if a.fast {
        Mode::CrashConsistent
    } else {
        a.mode.unwrap_or_default()
    };
    let mut opts = SnapshotOptions::default().with_mode(mode);
    opts.name = a.name;
    let r = mgr.snapshot(&source, opts).await?;
    if g.json {
        return output::json(&wire::SnapshotReport::from(&r));
    }
    let s = &r.snapshot;
    println!(
        "snapshot {} ({}{}) in {:.0} ms",
        s.full_name,
        s.mode,
        if s.source_was_running {
            ""
        } else {
            ", source was stopped"
        },
        r.total_millis
    );
    println!("branch it: bpg branch {} NAME", s.full_name);
    Ok(())
}

fn print_prune(r: &betterpg_core::PruneReport) {
    let verb = if r.dry_run { "would prune" } else { "pruned" };
    for p in &r.pruned {
        println!("{verb} {}", p.snapshot);
    }
    for k in &r.kept {
        let why: Vec<&str> = k.reasons.iter().map(|r| r.as_str()).collect();
        println!("kept {} ({})", k.snapshot, why.join(", "));
    }
}

pub async fn list(g: &Global, a: SnapshotsArgs) -> Result<(), Error> {
    let mgr = g.open().await?;
    let list = mgr.snapshots(a.source.as_deref()).await?;
    if g.json {
        return output::json(&wire::Snapshots::from(list.as_slice()));
    }
    if list.is_empty() {
        println!("no snapshots");
        return Ok(());
    }
    println!(
        "{:<40} {:<20} {:<22} {:>9} {:>8}  STATE",
        "SNAPSHOT", "TAKEN (UTC)", "MODE", "USED", "BRANCHES"
    );
    for s in &list {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(s.created_at);
        println!(
            "{:<40} {:<20} {:<22} {:>9} {:>8}  {}",
            s.full_name,
            humantime::format_rfc3339_seconds(t).to_string(),
            s.mode,
            human_bytes(s.used_bytes),
            s.branches.len(),
            s.state
        );
    }
    Ok(())
}
