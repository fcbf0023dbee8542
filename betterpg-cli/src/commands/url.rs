//! `bpg url`: the connection URL of a database or branch.

use betterpg_core::Error;

use super::Global;
use crate::args::UrlArgs;
use crate::{output, wire};

pub async fn run(g: &Global, a: UrlArgs) -> Result<(), Error> {
    let mgr = g.open().await?;
    let url = match &a.role {
        Some(role) => mgr.url_for_role(&a.name, role).await?,
        None => mgr.url(&a.name).await?,
    };
    if g.json {
        return output::json(&wire::Url {
            name: &a.name,
            role: a.role.as_deref(),
            url: &url,
        });
    }
    println!("{url}");
    Ok(())
}
