//! `bpg start`: start a stopped database or branch.

use betterpg_core::Error;

use super::Global;
use crate::args::NameArg;
use crate::{output, wire};

pub async fn run(g: &Global, a: NameArg) -> Result<(), Error> {
    let mgr = g.open().await?;
    let info = mgr.start(&a.name).await?;
    if g.json {
        return output::json(&wire::Info::from(&info));
    }
    println!("started {} on port {}", info.name, info.port);
    Ok(())
}
