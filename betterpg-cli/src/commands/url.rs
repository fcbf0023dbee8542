//! `bpg url`: the connection URL of a database or branch.

use betterpg_core::Error;

use super::Global;
use crate::args::NameArg;
use crate::{output, wire};

pub async fn run(g: &Global, a: NameArg) -> Result<(), Error> {
    let mgr = g.open().await?;
    let url = mgr.url(&a.name).await?;
    if g.json {
        return output::json(&wire::Url {
            name: &a.name,
            url: &url,
        });
    }
    println!("{url}");
    Ok(())
}
