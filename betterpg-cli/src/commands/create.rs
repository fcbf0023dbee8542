//! `bpg create`: a new, started, empty database.

use betterpg_core::{CreateOptions, Error};

use super::Global;
use crate::args::CreateArgs;
use crate::{output, wire};

pub async fn run(g: &Global, a: CreateArgs) -> Result<(), Error> {
    let mgr = g.open().await?;
    let info = mgr
        .create(
            &a.name,
            CreateOptions {
                pg_bin: a.pg_bin,
                pg_version: a.pg_version,
                runtime: Some(a.runtime),
                image: a.image,
            },
        )
        .await?;
    if g.json {
        return output::json(&wire::Info::from(&info));
    }
    println!(
        "created database {} (PostgreSQL {}, port {}, runtime {})\n{}",
        info.name, info.pg_version, info.port, info.runtime, info.url
    );
    Ok(())
}
