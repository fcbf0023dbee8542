//! `bpg init`: set up a home.

use betterpg_core::util::parse_size;
use betterpg_core::{BranchManager, Error, InitOptions, InitStorage};

use super::Global;
use crate::args::InitArgs;
use crate::{output, wire};

pub async fn run(g: &Global, a: InitArgs) -> Result<(), Error> {
    // Checked before anything is made, so a bad value changes nothing.
    if let Some(r) = &a.runtime {
        let have = betterpg_core::manager::available_runtimes();
        if !have.contains(&r.as_str()) {
            return Err(Error::Config(format!(
                "unknown --runtime {r:?}: use one of {}",
                have.join(", ")
            )));
        }
        if r == "native" && a.image.is_some() {
            return Err(Error::Config(
                "--image needs a container runtime (--runtime docker)".into(),
            ));
        }
    }
    let storage = match (a.dataset, a.pool_file) {
        (Some(ds), None) => InitStorage::Dataset(ds),
        (None, Some(file)) => InitStorage::PoolFile {
            file,
            size: parse_size(a.size.as_deref().unwrap_or("10G"))?,
            pool: a.pool,
        },
        _ => {
            return Err(Error::Config(
                "give --dataset POOL/PATH, or --pool-file FILE --size SIZE".into(),
            ))
        }
    };
    let port_range = a.ports.as_deref().map(parse_ports).transpose()?;
    let mut zfs_properties = a
        .zfs_property
        .iter()
        .map(|p| betterpg_core::storage::props::parse_assignment(p))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(r) = a.recordsize {
        zfs_properties.push(("recordsize".into(), r));
    }
    let mut mgr = BranchManager::init_with_backend(
        &g.home,
        InitOptions {
            storage,
            pg_bin: a.pg_bin,
            os_user: a.os_user,
            listen_address: Some(a.listen),
            port_range,
            branch_headroom_percent: a.branch_headroom,
            branch_reserve: a.branch_reserve.as_deref().map(parse_size).transpose()?,
            docker_memory: a.docker_memory.as_deref().map(parse_size).transpose()?,
            docker_pids: a.docker_pids,
            zfs_properties,
        },
        a.storage_backend.as_deref(),
    )
    .await?;
    if a.runtime.is_some() {
        mgr.set_default_runtime(a.runtime, a.image)?;
    }
    if g.json {
        return output::json(&wire::Config::from(mgr.config()));
    }
    println!(
        "initialised {} with dataset {} (storage: {}: {})",
        mgr.home().display(),
        mgr.config().dataset,
        mgr.storage_backend(),
        mgr.storage_selection().reason
    );
    println!(
        "dataset properties: {}",
        output::props(&mgr.config().zfs_properties)
    );
    Ok(())
}

fn parse_ports(s: &str) -> Result<(u16, u16), Error> {
    let bad = || {
        Error::Config(format!(
            "invalid --ports {s:?}: use FIRST-LAST, e.g. 54320-54999"
        ))
    };
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    Ok((
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    ))
}
