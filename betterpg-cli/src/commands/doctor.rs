//! `bpg doctor`: what this machine and home would use, and what is missing.

use betterpg_core::storage::ZfsFlavor;
use betterpg_core::{BranchManager, Error};

use super::Global;
use crate::{output, wire};

pub async fn run(g: &Global) -> Result<(), Error> {
    let report = BranchManager::doctor(&g.home).await?;
    if g.json {
        output::json(&wire::Doctor::from(&report))?;
    } else {
        text(&report);
    }
    report.into_result().map(|_| ())
}

/// The report for people.
fn text(r: &betterpg_core::DoctorReport) {
    println!(
        "home:     {} ({})",
        r.home.display(),
        if r.initialised {
            "initialised"
        } else {
            "not initialised"
        }
    );
    match &r.storage.ok() {
        Some(s) => println!("storage:  {} — {}", s.name, s.reason),
        None => println!("storage:  ERROR {}", r.storage.error().unwrap_or_default()),
    }
    println!("libzfs:   {}", r.libzfs_library);
    println!(
        "zfs:      {} userland, zpool list {}",
        flavor(r.zfs_flavor),
        if r.zpool_list_ok { "ok" } else { "FAILS" }
    );
    match r.postgres.ok() {
        Some(p) => println!("postgres: {} in {}", p.major, p.bin.display()),
        None => println!("postgres: ERROR {}", r.postgres.error().unwrap_or_default()),
    }
    match r.os_user.ok() {
        Some(u) => println!("os user:  {} (uid {})", u.name, u.uid),
        None => println!("os user:  ERROR {}", r.os_user.error().unwrap_or_default()),
    }
    if let Some(p) = &r.dataset_properties {
        println!("dataset:  {}", output::props(&p.live));
    }
    for w in &r.warnings {
        println!("WARNING:  {w}");
    }
    if r.fault_injection {
        println!("build:    TEST BUILD with fault injection (BETTERPG_FAULT is obeyed)");
    }
    if let Some(d) = &r.docker {
        let limit = |v: u64, s: String| if v == 0 { "no limit".into() } else { s };
        println!(
            "docker:   network {} (no inter-container traffic), memory {}, pids {} per container",
            d.network,
            limit(d.memory, format!("{} MiB", d.memory >> 20)),
            limit(d.pids, d.pids.to_string()),
        );
    }
}

/// The ZFS userland as `doctor` names it.
pub fn flavor(f: ZfsFlavor) -> &'static str {
    match f {
        ZfsFlavor::OpenZfs => "openzfs",
        ZfsFlavor::Legacy => "legacy (zfs-fuse)",
    }
}
