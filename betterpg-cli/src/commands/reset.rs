//! `bpg reset`: branch a branch's parent again under the same name and port.

use betterpg_core::Error;

use super::{branch_options, Global};
use crate::args::ResetArgs;
use crate::{output, wire};

pub async fn run(g: &Global, a: ResetArgs) -> Result<(), Error> {
    let mgr = g.open().await?;
    let name = &a.name;
    let opts = betterpg_core::BranchOptions {
        credentials: a.credentials,
        ..branch_options(&a.snapshot)?
    };
    let r = match &a.to {
        Some(to) => mgr.reset_to(name, to, opts).await?,
        None => mgr.reset(name, opts).await?,
    };
    if g.json {
        return output::json(&wire::BranchReport::from(&r));
    }
    println!(
        "reset {name} to {} in {:.0} ms",
        a.to.as_deref()
            .or(r.branch.parent.as_deref())
            .unwrap_or("?"),
        r.total_millis,
    );
    if r.password_changed {
        println!(
            "  new password: {} was missing, so {name} has a new password and a new URL (below)",
            g.home.join("secrets").join(name).display()
        );
    }
    output::isolation(&r.isolation);
    output::credentials(&r);
    println!("{}", r.branch.url);
    Ok(())
}
