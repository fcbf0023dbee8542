//! `bpg protect` / `bpg unprotect`: refuse (or allow again) destroy, reset
//! and expiry of a database or branch, even forced.

use betterpg_core::Error;

use super::Global;
use crate::args::NameArg;
use crate::{output, wire};

pub async fn run(g: &Global, a: NameArg, on: bool) -> Result<(), Error> {
    let mgr = g.open().await?;
    let info = if on {
        mgr.protect(&a.name).await?
    } else {
        mgr.unprotect(&a.name).await?
    };
    if g.json {
        return output::json(&wire::Info::from(&info));
    }
    if on {
        println!(
            "protected {}: destroy, reset and expiry are refused until `bpg unprotect {}`",
            info.name, info.name
        );
    } else {
        println!("unprotected {}", info.name);
    }
    Ok(())
}
