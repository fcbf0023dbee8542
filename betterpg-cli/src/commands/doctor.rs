//! `bpg doctor`: what this machine and home would use, and what is missing.

use betterpg_core::util::human_bytes;
use betterpg_core::Error;

use super::Global;
use crate::output;

pub async fn run(g: &Global) -> Result<(), Error> {
    doctor(&g.home, g.json).await
}

/// `bpg doctor`: what this machine and home would use, and what is missing.
async fn doctor(home: &std::path::Path, json: bool) -> Result<(), Error> {
    use betterpg_core::home::Home;
    use betterpg_core::osuser::OsUser;
    use betterpg_core::pg::PgBin;
    use betterpg_core::storage::{self, Storage, ZfsCli, ZfsFlavor};
    use serde_json::json;

    let mut problems: Vec<String> = Vec::new();
    let cfg = match Home::new(home).load_config() {
        Ok(c) => Some(c),
        Err(Error::NotInitialized { .. }) => None,
        Err(e) => return Err(e),
    };
    let requested = cfg.as_ref().and_then(|c| c.storage_backend.clone());
    let libzfs_library = tokio::task::spawn_blocking(storage::libzfs_libraries)
        .await
        .unwrap_or_else(|e| format!("library probe failed: {e}"));
    let storage = match storage::select(requested.as_deref()).await {
        Ok((s, sel)) => json!({
            "backend": sel.backend,
            "name": s.backend_name(),
            "requested": sel.requested,
            "reason": sel.reason,
            "libzfs_compiled": storage::LIBZFS_COMPILED,
            "libzfs_library": libzfs_library,
        }),
        Err(e) => {
            problems.push(format!("storage: {e}"));
            json!({ "error": e.to_string(), "libzfs_compiled": storage::LIBZFS_COMPILED,
                    "libzfs_library": libzfs_library })
        }
    };
    let zfs = ZfsCli::default();
    let flavor = match zfs.flavor().await {
        ZfsFlavor::OpenZfs => "openzfs",
        ZfsFlavor::Legacy => "legacy (zfs-fuse)",
    };
    let pools_ok = std::process::Command::new("zpool")
        .arg("list")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !pools_ok {
        problems
            .push("zfs: `zpool list` fails: no ZFS daemon/module (run scripts/setup.sh)".into());
    }
    let pg = match PgBin::discover(cfg.as_ref().and_then(|c| c.pg_bin.as_deref()), None) {
        Ok(b) => json!({ "bin": b.dir, "major": b.major }),
        Err(e) => {
            problems.push(format!("postgres: {e}"));
            json!({ "error": e.to_string() })
        }
    };
    let resolved = OsUser::resolve(cfg.as_ref().and_then(|c| c.os_user.as_deref()));
    let user = match &resolved {
        Ok(u) => json!({ "name": u.name, "uid": u.uid }),
        Err(e) => {
            problems.push(format!("os user: {e}"));
            json!({ "error": e.to_string() })
        }
    };
    // The servers' user must reach the log directory and the datasets'
    // mountpoint through every ancestor (a directory closed after init
    // would fail every start with "Permission denied").
    let mut warnings: Vec<String> = Vec::new();
    if let (Some(c), Ok(u)) = (&cfg, &resolved) {
        let h = Home::new(home);
        let mut targets = vec![(h.logs_dir(), "the log directory")];
        if let Ok(Some(d)) = zfs.get(&c.dataset).await {
            if let Some(mp) = d.mountpoint {
                targets.push((mp, "the datasets' mountpoint"));
            }
        }
        for (path, what) in targets {
            if let Err(e) = betterpg_core::home::check_reachable(u, &path, true, what) {
                problems.push(format!("reach: {e}"));
            }
        }
    }
    // The datasets' ZFS properties: recorded at init, and what ZFS says now.
    let mut dataset_props = serde_json::Value::Null;
    if let Some(c) = &cfg {
        let mut keys: Vec<String> = c.zfs_properties.keys().cloned().collect();
        if keys.is_empty() {
            keys = storage::props::defaults(zfs.flavor().await)
                .into_iter()
                .map(|(k, _)| k)
                .collect();
        }
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        match zfs.get_native(&c.dataset, &keys).await {
            Ok(live) => {
                for (k, v) in &c.zfs_properties {
                    if live.get(k) != Some(v) {
                        warnings.push(format!(
                            "dataset {} has {k}={} but init set {k}={v}",
                            c.dataset,
                            live.get(k).map(String::as_str).unwrap_or("?")
                        ));
                    }
                }
                dataset_props = json!({ "recorded": c.zfs_properties, "live": live });
            }
            Err(e) => problems.push(format!("dataset properties: {e}")),
        }
    }
    // A sparse pool file the host could not hold once the pool fills:
    // the pool would suspend before ZFS reports it full.
    let pool_file = match cfg.as_ref().and_then(|c| c.pool_file.clone()) {
        Some(f) => match storage::PoolFileSpace::of(&f) {
            Ok(sp) => {
                if sp.host_short() {
                    warnings.push(format!(
                        "pool file {} can still grow by {} but its file system has only {} free: free space on the host (or move the pool) before the pool fills, or it suspends",
                        f.display(),
                        human_bytes(sp.can_grow()),
                        human_bytes(sp.host_free)
                    ));
                }
                json!({ "path": f, "space": sp, "host_short": sp.host_short() })
            }
            Err(e) => {
                problems.push(format!("pool file: {e}"));
                json!({ "path": f, "error": e.to_string() })
            }
        },
        None => serde_json::Value::Null,
    };
    // The home's container limits (docker runtime), 0 = no limit.
    let docker = cfg.as_ref().map(|c| {
        json!({
            "network": betterpg_core::runtime::NETWORK,
            "memory": c.docker_memory,
            "pids": c.docker_pids,
        })
    });
    let report = json!({
        "home": home,
        "initialised": cfg.is_some(),
        // Test builds only (cargo feature `fault-injection`); a shipped
        // build never reads BETTERPG_FAULT.
        "fault_injection": betterpg_core::fault::ENABLED,
        "docker": docker,
        "storage": storage,
        "zfs": { "flavor": flavor, "zpool_list_ok": pools_ok },
        "postgres": pg,
        "os_user": user,
        "pool_file": pool_file,
        "dataset_properties": dataset_props,
        "warnings": warnings,
        "problems": problems,
    });
    if json {
        output::json(&report)?;
    } else {
        let field = |v: &serde_json::Value, k: &str| match &v[k] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => "-".into(),
            other => other.to_string(),
        };
        let s = &report["storage"];
        println!(
            "home:     {} ({})",
            home.display(),
            if cfg.is_some() {
                "initialised"
            } else {
                "not initialised"
            }
        );
        match s.get("error") {
            Some(e) => println!("storage:  ERROR {}", e.as_str().unwrap_or_default()),
            None => println!("storage:  {} — {}", field(s, "name"), field(s, "reason")),
        }
        println!("libzfs:   {}", field(s, "libzfs_library"));
        println!(
            "zfs:      {flavor} userland, zpool list {}",
            if pools_ok { "ok" } else { "FAILS" }
        );
        let p = &report["postgres"];
        match p.get("error") {
            Some(e) => println!("postgres: ERROR {}", e.as_str().unwrap_or_default()),
            None => println!("postgres: {} in {}", field(p, "major"), field(p, "bin")),
        }
        let u = &report["os_user"];
        match u.get("error") {
            Some(e) => println!("os user:  ERROR {}", e.as_str().unwrap_or_default()),
            None => println!("os user:  {} (uid {})", field(u, "name"), field(u, "uid")),
        }
        if let Some(live) = report["dataset_properties"]["live"].as_object() {
            let p: std::collections::BTreeMap<String, String> = live
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            println!("dataset:  {}", output::props(&p));
        }
        for w in &warnings {
            println!("WARNING:  {w}");
        }
        if betterpg_core::fault::ENABLED {
            println!("build:    TEST BUILD with fault injection (BETTERPG_FAULT is obeyed)");
        }
        if let Some(c) = &cfg {
            let limit = |v: u64, s: String| if v == 0 { "no limit".into() } else { s };
            println!(
                "docker:   network {} (no inter-container traffic), memory {}, pids {} per container",
                betterpg_core::runtime::NETWORK,
                limit(c.docker_memory, format!("{} MiB", c.docker_memory >> 20)),
                limit(c.docker_pids, c.docker_pids.to_string()),
            );
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "doctor found problems: {}",
            problems.join("; ")
        )))
    }
}
