//! `bpg rewind`: roll a rewindable branch back to how it was made.

use betterpg_core::Error;

use super::Global;
use crate::args::NameArg;
use crate::{output, wire};

pub async fn run(g: &Global, a: NameArg) -> Result<(), Error> {
    let mgr = g.open().await?;
    let r = mgr.rewind(&a.name).await?;
    if g.json {
        return output::json(&wire::RewindReport::from(&r));
    }
    let steps: Vec<String> = r
        .timings
        .iter()
        .map(|t| format!("{} {:.0}", t.step, t.millis))
        .collect();
    println!(
        "rewound {} to its rewind point in {:.0} ms ({} ms)",
        r.branch.name,
        r.total_millis,
        steps.join(", ")
    );
    println!("{}", r.branch.url);
    Ok(())
}
