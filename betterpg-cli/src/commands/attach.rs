//! `bpg attach` and `bpg detach`: register a running cluster betterpg did
//! not create, and forget it.

use betterpg_core::{AttachOptions, Error};

use super::Global;
use crate::args::{AttachArgs, DetachArgs};
use crate::{output, wire};

pub async fn run(g: &Global, a: AttachArgs) -> Result<(), Error> {
    let password = match &a.password_file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .map_err(|e| {
                    Error::Config(format!("cannot read --password-file {}: {e}", f.display()))
                })?
                .trim_end_matches(['\n', '\r'])
                .to_string(),
        ),
        None => None,
    };
    let mgr = g.open().await?;
    let info = mgr
        .attach(
            &a.name,
            AttachOptions {
                pgdata: a.pgdata,
                url: a.url,
                password,
                pg_bin: a.pg_bin,
                settings: a.policy.pairs(),
            },
        )
        .await?;
    if g.json {
        return output::json(&wire::Info::from(&info));
    }
    println!(
        "attached {} (PostgreSQL {}, {}, dataset {})\n{}\nbetterpg branches it but never starts, stops or changes it: `bpg branch {} NAME`",
        info.name, info.pg_version, info.status, info.dataset, info.url, info.name
    );
    Ok(())
}

pub async fn detach(g: &Global, a: DetachArgs) -> Result<(), Error> {
    let mgr = g.open().await?;
    let destroyed = mgr.detach(&a.name, a.force).await?;
    if g.json {
        return output::json(&wire::Detached {
            detached: &a.name,
            branches_destroyed: &destroyed,
        });
    }
    for b in &destroyed {
        println!("destroyed branch {b}");
    }
    println!("detached {} (the cluster itself was not touched)", a.name);
    Ok(())
}
