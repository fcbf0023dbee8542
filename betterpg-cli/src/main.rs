//! `bpg`: the betterpg command line, a thin layer over `betterpg-core`.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use betterpg_core::runtime::DockerRuntime;
use betterpg_core::util::{human_bytes, parse_size};
use betterpg_core::{
    BranchManager, BranchOptions, CreateOptions, Error, Info, InitOptions, InitStorage,
    SnapshotMode,
};
use clap::{Parser, Subcommand};

/// Production-safe PostgreSQL branching on ZFS.
#[derive(Parser, Debug)]
#[command(name = "bpg", version, about, long_about = None)]
struct Cli {
    /// Directory holding betterpg's config, catalog, secrets and logs.
    #[arg(
        long,
        global = true,
        env = "BPG_HOME",
        default_value = "/var/lib/betterpg"
    )]
    home: PathBuf,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// More log output (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    cmd: Cmd,
}

// Parsed once per process: the size of `Init`'s many options costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Cmd {
    /// Set up a home: use a ZFS dataset, or create a file-backed pool.
    Init {
        /// Existing pool and path for betterpg's datasets (e.g. tank/betterpg).
        #[arg(long, conflicts_with_all = ["pool_file", "size"])]
        dataset: Option<String>,
        /// Create a pool on this (new, sparse) file.
        #[arg(long, requires = "size")]
        pool_file: Option<PathBuf>,
        /// Size of the pool file (e.g. 10G).
        #[arg(long)]
        size: Option<String>,
        /// Name of the pool to create with --pool-file.
        #[arg(long, default_value = "betterpg")]
        pool: String,
        /// PostgreSQL bin directory (default: found on the machine).
        #[arg(long)]
        pg_bin: Option<PathBuf>,
        /// Unprivileged OS user the servers run as (default: postgres when root).
        #[arg(long)]
        os_user: Option<String>,
        /// Address the servers listen on.
        #[arg(long, default_value = "127.0.0.1")]
        listen: String,
        /// Port range to allocate from, e.g. 54320-54999.
        #[arg(long)]
        ports: Option<String>,
        /// Storage backend: auto (the linked libzfs where usable, else the
        /// zfs command), libzfs or cli.
        #[arg(long)]
        storage_backend: Option<String>,
        /// Runtime `create` uses by default: native (processes) or docker.
        #[arg(long)]
        runtime: Option<String>,
        /// Image `create` uses by default with --runtime docker.
        #[arg(long, requires = "runtime")]
        image: Option<String>,
        /// Percent of the pool kept for databases, which branches together
        /// can never use, so a branch filling its space cannot stop a
        /// database (0-90; 0: no limit). Default 20.
        #[arg(long, value_name = "PERCENT")]
        branch_headroom: Option<u8>,
        /// Space guaranteed to every branch, so it can still write when
        /// other branches filled the rest (e.g. 64M; 0: none). Default 64M.
        #[arg(long, value_name = "SIZE")]
        branch_reserve: Option<String>,
        /// Memory limit of every container of the docker runtime (e.g.
        /// 4G; at least 64M; 0: none). Default 2G.
        #[arg(long, value_name = "SIZE")]
        docker_memory: Option<String>,
        /// Most processes/threads in every container of the docker runtime
        /// (at least 32; 0: none). Default 1024.
        #[arg(long, value_name = "N")]
        docker_pids: Option<u64>,
        /// ZFS record size of the datasets (default 8K, PostgreSQL's page:
        /// a branch changing one page copies one record).
        #[arg(long, value_name = "SIZE")]
        recordsize: Option<String>,
        /// A ZFS property of the datasets, replacing betterpg's default
        /// (recordsize=8K, atime=off, compression=lz4 or on); repeatable.
        /// Keys: recordsize, compression, atime, logbias, primarycache,
        /// secondarycache, xattr, redundant_metadata.
        #[arg(long = "zfs-property", value_name = "KEY=VALUE")]
        zfs_property: Vec<String>,
    },
    /// Check this machine and home: storage backend and why, ZFS flavour,
    /// PostgreSQL binaries, OS user. Exits non-zero when something is missing.
    Doctor,
    /// Create a new, started, empty database.
    Create {
        /// Name of the database.
        name: String,
        /// PostgreSQL bin directory for this database.
        #[arg(long)]
        pg_bin: Option<PathBuf>,
        /// Required PostgreSQL major version.
        #[arg(long)]
        pg_version: Option<u32>,
        /// How to run it: native (a process on this machine) or docker (a
        /// container; its branches run as containers too).
        #[arg(long, default_value = "native")]
        runtime: String,
        /// Container image for --runtime docker (default betterpg/postgres:15,
        /// built by scripts/build-image.sh; never pulled).
        #[arg(long)]
        image: Option<String>,
    },
    /// Branch a database (or branch): a new read-write server on a ZFS clone.
    Branch {
        /// Database or branch to branch from.
        source: String,
        /// Name of the new branch.
        name: String,
        /// Crash-consistent: CHECKPOINT + snapshot, no backup mode.
        #[arg(long)]
        fast: bool,
        /// Most pool space the branch may use (e.g. 10G); protects the source
        /// and other branches from a branch that fills the pool.
        #[arg(long)]
        quota: Option<String>,
        /// Runtime of the branch (default: its source's), e.g. docker.
        #[arg(long)]
        runtime: Option<String>,
        /// Container image of the branch (default: its source's, or the
        /// runtime's default image).
        #[arg(long)]
        image: Option<String>,
    },
    /// Throw a branch's changes away: branch its parent again under the same
    /// name and port.
    Reset {
        /// The branch.
        name: String,
        /// Crash-consistent: CHECKPOINT + snapshot, no backup mode.
        #[arg(long)]
        fast: bool,
        /// Most pool space the branch may use (e.g. 10G); protects the source
        /// and other branches from a branch that fills the pool.
        #[arg(long)]
        quota: Option<String>,
    },
    /// Show databases and branches as a tree, with pool usage.
    Status {
        /// Only this database or branch.
        name: Option<String>,
    },
    /// Print the connection URL of a database or branch.
    Url {
        /// Database or branch.
        name: String,
    },
    /// Start a stopped database or branch.
    Start {
        /// Database or branch.
        name: String,
    },
    /// Stop a database or branch (fast shutdown).
    Stop {
        /// Database or branch.
        name: String,
    },
    /// Destroy a database or branch with its dataset, snapshot and server.
    Destroy {
        /// Database or branch.
        name: String,
        /// Also destroy its branches, and snapshots or datasets under it
        /// that betterpg did not make (refused without it, naming them).
        #[arg(long)]
        force: bool,
    },
    /// Find and remove what betterpg made that no complete database or
    /// branch owns (left by a bpg process that was killed mid-way).
    Gc {
        /// Only list what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show the server log.
    Logs {
        /// Database or branch.
        name: String,
        /// Keep printing new lines.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines.
        #[arg(long)]
        tail: Option<usize>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BPG_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let text = e.to_string();
            let mut lines = text.lines();
            eprintln!("error: {}", lines.next().unwrap_or(""));
            for l in lines {
                eprintln!("  {l}");
            }
            // Distinct statuses per kind help scripts; never 0, never 2 (clap usage).
            ExitCode::from(if e.code() == 99 {
                1
            } else {
                (e.code() + 9) as u8
            })
        }
    }
}

/// What a new branch was cut off from, and what still points elsewhere.
fn print_isolation(iso: &betterpg_core::IsolationReport) {
    let lines = iso.detached_lines();
    if !lines.is_empty() {
        println!("detached from the source:");
        for l in lines {
            println!("  {l}");
        }
    }
    for w in &iso.warnings {
        let what = match w.kind.as_str() {
            "foreign_server" => "foreign server",
            "pg_cron_job" => "pg_cron job",
            other => other,
        };
        println!(
            "warning: {what} {} in database {} still points at another system: {}",
            w.name, w.database, w.detail
        );
    }
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<(), Error> {
    let s = serde_json::to_string_pretty(v).map_err(|e| Error::Internal(e.to_string()))?;
    println!("{s}");
    Ok(())
}

async fn run(cli: Cli) -> Result<(), Error> {
    let json = cli.json;
    match cli.cmd {
        Cmd::Init {
            dataset,
            pool_file,
            size,
            pool,
            pg_bin,
            os_user,
            listen,
            ports,
            storage_backend,
            runtime,
            image,
            branch_headroom,
            branch_reserve,
            docker_memory,
            docker_pids,
            recordsize,
            zfs_property,
        } => {
            // Checked before anything is made, so a bad value changes nothing.
            if let Some(r) = &runtime {
                let have = betterpg_core::manager::available_runtimes();
                if !have.contains(&r.as_str()) {
                    return Err(Error::Config(format!(
                        "unknown --runtime {r:?}: use one of {}",
                        have.join(", ")
                    )));
                }
                if r == "native" && image.is_some() {
                    return Err(Error::Config(
                        "--image needs a container runtime (--runtime docker)".into(),
                    ));
                }
            }
            let storage = match (dataset, pool_file) {
                (Some(ds), None) => InitStorage::Dataset(ds),
                (None, Some(file)) => InitStorage::PoolFile {
                    file,
                    size: parse_size(size.as_deref().unwrap_or("10G"))?,
                    pool,
                },
                _ => {
                    return Err(Error::Config(
                        "give --dataset POOL/PATH, or --pool-file FILE --size SIZE".into(),
                    ))
                }
            };
            let port_range = ports.map(|p| parse_ports(&p)).transpose()?;
            let mut zfs_properties = zfs_property
                .iter()
                .map(|p| betterpg_core::storage::props::parse_assignment(p))
                .collect::<Result<Vec<_>, _>>()?;
            if let Some(r) = recordsize {
                zfs_properties.push(("recordsize".into(), r));
            }
            let mut mgr = BranchManager::init_with_backend(
                &cli.home,
                InitOptions {
                    storage,
                    pg_bin,
                    os_user,
                    listen_address: Some(listen),
                    port_range,
                    branch_headroom_percent: branch_headroom,
                    branch_reserve: branch_reserve.as_deref().map(parse_size).transpose()?,
                    docker_memory: docker_memory.as_deref().map(parse_size).transpose()?,
                    docker_pids,
                    zfs_properties,
                },
                storage_backend.as_deref(),
            )
            .await?;
            if runtime.is_some() {
                mgr.set_default_runtime(runtime, image)?;
            }
            if json {
                print_json(mgr.config())?;
            } else {
                println!(
                    "initialised {} with dataset {} (storage: {}: {})",
                    mgr.home().display(),
                    mgr.config().dataset,
                    mgr.storage_backend(),
                    mgr.storage_selection().reason
                );
                println!(
                    "dataset properties: {}",
                    format_props(&mgr.config().zfs_properties)
                );
            }
        }
        Cmd::Doctor => doctor(&cli.home, json).await?,
        Cmd::Create {
            name,
            pg_bin,
            pg_version,
            runtime,
            image,
        } => {
            let mgr = BranchManager::open(&cli.home).await?;
            let info = mgr
                .create(
                    &name,
                    CreateOptions {
                        pg_bin,
                        pg_version,
                        runtime: Some(runtime),
                        image,
                    },
                )
                .await?;
            if json {
                print_json(&info)?;
            } else {
                println!(
                    "created database {} (PostgreSQL {}, port {}, runtime {})\n{}",
                    info.name, info.pg_version, info.port, info.runtime, info.url
                );
            }
        }
        Cmd::Branch {
            source,
            name,
            fast,
            quota,
            runtime,
            image,
        } => {
            let mgr = BranchManager::open(&cli.home).await?;
            let opts = BranchOptions {
                runtime,
                image,
                ..branch_options(fast, quota)?
            };
            let r = mgr.branch(&source, &name, opts).await?;
            if json {
                print_json(&r)?;
            } else {
                println!(
                    "branched {} -> {} ({}{})",
                    source,
                    name,
                    r.branch.mode.unwrap_or("-"),
                    if r.source_was_running {
                        ""
                    } else {
                        ", source was stopped"
                    }
                );
                for s in &r.timings {
                    println!("  {:<13} {:>8.1} ms", s.step, s.millis);
                }
                println!("  {:<13} {:>8.1} ms", "total", r.total_millis);
                print_isolation(&r.isolation);
                println!("{}", r.branch.url);
            }
        }
        Cmd::Reset { name, fast, quota } => {
            let mgr = BranchManager::open(&cli.home).await?;
            let r = mgr.reset(&name, branch_options(fast, quota)?).await?;
            if json {
                print_json(&r)?;
            } else {
                println!(
                    "reset {name} to {} in {:.0} ms",
                    r.branch.parent.as_deref().unwrap_or("?"),
                    r.total_millis,
                );
                if r.password_changed {
                    println!(
                        "  new password: {} was missing, so {name} has a new password and a new URL (below)",
                        cli.home.join("secrets").join(&name).display()
                    );
                }
                print_isolation(&r.isolation);
                println!("{}", r.branch.url);
            }
        }
        Cmd::Status { name } => {
            let mgr = BranchManager::open(&cli.home).await?;
            let infos = match &name {
                Some(n) => vec![mgr.info(n).await?],
                None => mgr.status().await?,
            };
            let pool = mgr.pool_usage().await?;
            if json {
                print_json(&infos)?;
            } else {
                print_tree(&infos);
                println!(
                    "pool {}: {:.1}% used ({} used, {} available){}",
                    pool.pool,
                    pool.fraction_used * 100.0,
                    human_bytes(pool.space.used),
                    human_bytes(pool.space.available),
                    if pool.warning {
                        "  WARNING: pool above 80% full"
                    } else {
                        ""
                    }
                );
                let b = &pool.branches;
                match b.limit {
                    Some(limit) => println!(
                        "branches: {:.1}% of their space used ({} of {}; {}% of the pool is kept for databases){}",
                        b.fraction_used * 100.0,
                        human_bytes(b.used),
                        human_bytes(limit),
                        mgr.config().branch_headroom_percent,
                        if b.warning {
                            "  WARNING: branch space above 90% full"
                        } else {
                            ""
                        }
                    ),
                    None => println!(
                        "branches: {} used, no limit (branch_headroom_percent is 0)",
                        human_bytes(b.used)
                    ),
                }
                if !mgr.config().zfs_properties.is_empty() {
                    println!(
                        "datasets: {} (set at init; `bpg doctor` shows them live)",
                        format_props(&mgr.config().zfs_properties)
                    );
                }
            }
            if pool.warning {
                eprintln!(
                    "warning: pool {} is {:.0}% full: destroy unused branches or grow the pool",
                    pool.pool,
                    pool.fraction_used * 100.0
                );
            }
            if pool.branches.warning {
                eprintln!(
                    "warning: pool {}: branches use {:.0}% of the space they may take: branches that write more get disk-full errors (databases keep their headroom); destroy unused branches or grow the pool",
                    pool.pool,
                    pool.branches.fraction_used * 100.0
                );
            }
        }
        Cmd::Url { name } => {
            let mgr = BranchManager::open(&cli.home).await?;
            let url = mgr.url(&name).await?;
            if json {
                print_json(&serde_json::json!({ "name": name, "url": url }))?;
            } else {
                println!("{url}");
            }
        }
        Cmd::Start { name } => {
            let mgr = BranchManager::open(&cli.home).await?;
            let info = mgr.start(&name).await?;
            if json {
                print_json(&info)?;
            } else {
                println!("started {} on port {}", info.name, info.port);
            }
        }
        Cmd::Stop { name } => {
            let mgr = BranchManager::open(&cli.home).await?;
            let info = mgr.stop(&name).await?;
            if json {
                print_json(&info)?;
            } else {
                println!("stopped {}", info.name);
            }
        }
        Cmd::Destroy { name, force } => {
            let mgr = BranchManager::open(&cli.home).await?;
            mgr.destroy(&name, force).await?;
            if json {
                print_json(&serde_json::json!({ "destroyed": name }))?;
            } else {
                println!("destroyed {name}");
            }
        }
        Cmd::Gc { dry_run } => {
            let mgr = BranchManager::open(&cli.home).await?;
            let report = mgr.gc(dry_run).await?;
            if json {
                print_json(&report)?;
            } else {
                if report.items.is_empty() {
                    println!("nothing to collect");
                }
                let verb = if dry_run { "would remove" } else { "removed" };
                for i in &report.items {
                    println!("{verb} {} {} ({})", i.what, i.name, i.reason);
                }
                for i in &report.kept {
                    println!("left {} {} alone: {}", i.what, i.name, i.reason);
                }
            }
        }
        Cmd::Logs { name, follow, tail } => {
            let mgr = BranchManager::open(&cli.home).await?;
            let entry = mgr.entry(&name)?;
            if follow && entry.runtime == "docker" {
                // The container's own log stream, until it stops.
                return DockerRuntime::new()
                    .follow_logs(
                        mgr.home(),
                        &name,
                        &mgr.log_path(&name)?,
                        tail,
                        &mut std::io::stdout(),
                    )
                    .await;
            }
            let text = mgr.logs(&name, tail).await?;
            print!("{text}");
            if !text.is_empty() && !text.ends_with('\n') {
                println!();
            }
            if follow {
                follow_file(&mgr.log_path(&name)?).await?;
            }
        }
    }
    Ok(())
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
    let storage = match storage::select(requested.as_deref()).await {
        Ok((s, sel)) => json!({
            "backend": sel.backend,
            "name": s.backend_name(),
            "requested": sel.requested,
            "reason": sel.reason,
            "libzfs_compiled": storage::LIBZFS_COMPILED,
        }),
        Err(e) => {
            problems.push(format!("storage: {e}"));
            json!({ "error": e.to_string(), "libzfs_compiled": storage::LIBZFS_COMPILED })
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
        print_json(&report)?;
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
            println!("dataset:  {}", format_props(&p));
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

/// `--fast` and `--quota` of `branch` and `reset`.
fn branch_options(fast: bool, quota: Option<String>) -> Result<BranchOptions, Error> {
    Ok(BranchOptions {
        runtime: None,
        image: None,
        mode: if fast {
            SnapshotMode::CrashConsistent
        } else {
            SnapshotMode::ApplicationConsistent
        },
        quota: quota.as_deref().map(parse_size).transpose()?,
    })
}

/// `k=v k=v ...` of ZFS properties.
fn format_props(p: &std::collections::BTreeMap<String, String>) -> String {
    if p.is_empty() {
        return "(not recorded)".into();
    }
    p.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
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

/// Print what is appended to `path` until interrupted.
async fn follow_file(path: &std::path::Path) -> Result<(), Error> {
    let mut pos = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Ok(mut f) = std::fs::File::open(path) else {
            continue;
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len < pos {
            pos = 0; // truncated or replaced
        }
        if len > pos {
            let mut buf = Vec::new();
            f.seek(SeekFrom::Start(pos))
                .and_then(|_| f.read_to_end(&mut buf))
                .map_err(|e| Error::Runtime(format!("reading {}: {e}", path.display())))?;
            pos += buf.len() as u64;
            let mut out = std::io::stdout();
            let _ = out.write_all(&buf);
            let _ = out.flush();
        }
    }
}

fn print_tree(infos: &[Info]) {
    if infos.is_empty() {
        println!("no databases yet: `bpg create NAME`");
        return;
    }
    println!(
        "{:<28} {:<8} {:<8} {:>6} {:>10} {:>10}  MODE",
        "NAME", "KIND", "STATUS", "PORT", "USED", "REFER"
    );
    for i in infos {
        let depth = depth_of(infos, i);
        let label = if depth == 0 {
            i.name.clone()
        } else {
            format!("{}└─ {}", "   ".repeat(depth - 1), i.name)
        };
        let status = if i.state == "ready" {
            i.status
        } else {
            i.state
        };
        println!(
            "{:<28} {:<8} {:<8} {:>6} {:>10} {:>10}  {}",
            label,
            i.kind,
            status,
            i.port,
            human_bytes(i.used_bytes),
            human_bytes(i.referenced_bytes),
            i.mode.unwrap_or("-")
        );
    }
}

fn depth_of(all: &[Info], i: &Info) -> usize {
    let mut d = 0;
    let mut cur = i.parent.clone();
    while let Some(p) = cur {
        d += 1;
        cur = all
            .iter()
            .find(|x| x.name == p)
            .and_then(|x| x.parent.clone());
        if d > 64 {
            break;
        }
    }
    d
}
