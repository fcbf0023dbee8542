//! `bpg destroy`: a database or branch with its dataset, snapshot and server.

use betterpg_core::Error;

use super::Global;
use crate::args::DestroyArgs;
use crate::{output, wire};

pub async fn run(g: &Global, a: DestroyArgs) -> Result<(), Error> {
    let mgr = g.open().await?;
    mgr.destroy(&a.name, a.force).await?;
    if g.json {
        return output::json(&wire::Destroyed { destroyed: &a.name });
    }
    println!("destroyed {}", a.name);
    Ok(())
}
