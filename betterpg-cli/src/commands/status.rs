//! `bpg status`: databases and branches as a tree, with pool usage.

use betterpg_core::util::human_bytes;
use betterpg_core::Error;

use super::Global;
use crate::args::StatusArgs;
use crate::{output, wire};

pub async fn run(g: &Global, a: StatusArgs) -> Result<(), Error> {
    let mgr = g.open().await?;
    let infos = match &a.name {
        Some(n) => vec![mgr.info(n).await?],
        None => mgr.status().await?,
    };
    let pool = mgr.pool_usage().await?;
    if g.json {
        output::json(&wire::Status {
            entries: infos.iter().map(wire::Info::from).collect(),
            pool: wire::Pool::new(&pool, mgr.config()),
        })?;
    } else {
        output::tree(&infos);
        println!(
            "pool {}: {:.1}% used ({} used, {} available){}",
            pool.pool,
            pool.fraction_used * 100.0,
            human_bytes(pool.space.used),
            human_bytes(pool.space.available),
            if pool.warning {
                "  WARNING: pool above 80% full"
            } else {
                ""
            }
        );
        let b = &pool.branches;
        match b.limit {
            Some(limit) => println!(
                "branches: {:.1}% of their space used ({} of {}; {}% of the pool is kept for databases){}",
                b.fraction_used * 100.0,
                human_bytes(b.used),
                human_bytes(limit),
                mgr.config().branch_headroom_percent,
                if b.warning {
                    "  WARNING: branch space above 90% full"
                } else {
                    ""
                }
            ),
            None => println!(
                "branches: {} used, no limit (branch_headroom_percent is 0)",
                human_bytes(b.used)
            ),
        }
        if !mgr.config().zfs_properties.is_empty() {
            println!(
                "datasets: {} (set at init; `bpg doctor` shows them live)",
                output::props(&mgr.config().zfs_properties)
            );
        }
    }
    if pool.warning {
        eprintln!(
            "warning: pool {} is {:.0}% full: destroy unused branches or grow the pool",
            pool.pool,
            pool.fraction_used * 100.0
        );
    }
    if pool.branches.warning {
        eprintln!(
            "warning: pool {}: branches use {:.0}% of the space they may take: branches that write more get disk-full errors (databases keep their headroom); destroy unused branches or grow the pool",
            pool.pool,
            pool.branches.fraction_used * 100.0
        );
    }
    Ok(())
}
