//! `bpg branch`: a new read-write server on a ZFS clone of a source.

use betterpg_core::{BranchOptions, Error};

use super::{branch_options, Global};
use crate::args::BranchArgs;
use crate::{output, wire};

pub async fn run(g: &Global, a: BranchArgs) -> Result<(), Error> {
    let mgr = g.open().await?;
    let opts = BranchOptions {
        runtime: a.runtime,
        image: a.image,
        at: a.at,
        mask: a.mask,
        mask_rules: a.mask_rules,
        schema_only: a.schema_only,
        unmasked: a.unmasked,
        credentials: a.credentials,
        wait_timeout: a
            .wait_timeout
            .as_deref()
            .map(super::follow::parse_duration)
            .transpose()?,
        no_wait: a.no_wait,
        ttl: a
            .ttl
            .as_deref()
            .map(|t| betterpg_core::parse_duration("ttl", t))
            .transpose()?
            .map(std::time::Duration::from_secs),
        owner_pid: a.owner_pid,
        ..branch_options(&a.snapshot)?
    };
    let r = mgr.branch(&a.source, &a.name, opts).await?;
    if g.json {
        return output::json(&wire::BranchReport::from(&r));
    }
    println!(
        "branched {} -> {} ({}{})",
        a.source,
        a.name,
        r.branch.mode.map_or("-", |m| m.as_str()),
        if r.source_was_running {
            ""
        } else {
            ", source was stopped"
        }
    );
    if let Some(c) = &r.checkpoint {
        println!(
            "  checkpoint {}: {}",
            if c.done { "done" } else { "skipped" },
            c.reason
        );
    }
    for s in &r.timings {
        println!("  {:<13} {:>8.1} ms", s.step, s.millis);
    }
    println!("  {:<13} {:>8.1} ms", "total", r.total_millis);
    output::isolation(&r.isolation);
    output::masking(r.masking.as_ref());
    output::credentials(&r);
    if let Some(p) = &r.replica_point {
        println!(
            "  reflects the primary up to {}{} (replica replay {}{})",
            p.primary_lsn.as_deref().unwrap_or("what the replica had"),
            if p.primary_lsn.is_some() {
                format!(", waited {:.0} ms", p.waited_millis)
            } else {
                String::new()
            },
            p.replay_lsn,
            p.replay_time
                .as_deref()
                .map(|t| format!(", last commit {t}"))
                .unwrap_or_default()
        );
    }
    println!("{}", r.branch.url);
    Ok(())
}
