//! `bpg gc`: remove what no complete database or branch owns.

use betterpg_core::Error;

use super::Global;
use crate::args::GcArgs;
use crate::{output, wire};

pub async fn run(g: &Global, a: GcArgs) -> Result<(), Error> {
    let mgr = g.open().await?;
    let report = mgr.gc(a.dry_run).await?;
    if g.json {
        return output::json(&wire::GcReport::from(&report));
    }
    if report.items.is_empty() {
        println!("nothing to collect");
    }
    let verb = if a.dry_run { "would remove" } else { "removed" };
    for i in &report.items {
        println!("{verb} {} {} ({})", i.what, i.name, i.reason);
    }
    for i in &report.kept {
        println!("left {} {} alone: {}", i.what, i.name, i.reason);
    }
    Ok(())
}
