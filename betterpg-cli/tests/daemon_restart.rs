//! !!! THIS TEST STOPS AND RESTARTS THE MACHINE'S zfs-fuse DAEMON !!!
//!
//! Every pool on the machine goes away for a moment: run it ALONE, never
//! next to other tests or other people's work. It is `#[ignore]`d and also
//! refuses to run (FAILS) unless `BPG_ALLOW_DAEMON_RESTART=1` is set, so
//! only a deliberate CI stage runs it:
//!
//! ```text
//! BPG_ALLOW_DAEMON_RESTART=1 cargo test -p betterpg-cli --test daemon_restart -- --ignored --nocapture
//! ```
//!
//! What it does: databases and branches with data on a file-backed pool;
//! stop them all; `zpool export`; stop the zfs-fuse daemon (SIGTERM, then
//! SIGKILL if it lingers); start it again (`zfs-fuse --pidfile
//! /run/zfs-fuse.pid -o max_write=8192`, as scripts/setup.sh does); `zpool import -d DIR
//! POOL`; start them all; every one holds its data. Whatever happens, a
//! guard starts the daemon again before the test ends.
//!
//! Ports: 59920-59959. Pools: bpgsafe*.

use std::process::Command;
use std::time::Duration;

use betterpg_testkit::*;

const PORT_LO: u16 = 59920;
const PORT_HI: u16 = 59959;
const PIDFILE: &str = "/run/zfs-fuse.pid";
/// The daemon's arguments, as scripts/setup.sh gives them (see there for
/// why `max_write`).
const DAEMON_ARGS: [&str; 4] = ["--pidfile", PIDFILE, "-o", "max_write=8192"];
const GUARD_ENV: &str = "BPG_ALLOW_DAEMON_RESTART";

fn daemon_pid() -> Option<i32> {
    let o = Command::new("pgrep")
        .args(["-x", "zfs-fuse"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
}

fn zpool_answers() -> bool {
    Command::new("zpool")
        .arg("list")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Start the daemon the way scripts/setup.sh does and wait for `zpool list`.
fn start_daemon() -> Result<(), String> {
    if daemon_pid().is_none() {
        eprintln!(
            "daemon_restart: starting zfs-fuse {}",
            DAEMON_ARGS.join(" ")
        );
        let _ = std::fs::remove_file(PIDFILE);
        let _ = std::fs::create_dir_all("/run/lock");
        let o = Command::new("zfs-fuse")
            .args(DAEMON_ARGS)
            .output()
            .map_err(|e| format!("cannot run zfs-fuse: {e}"))?;
        if !o.status.success() {
            return Err(format!(
                "zfs-fuse did not start ({}): {}",
                o.status,
                String::from_utf8_lossy(&o.stderr)
            ));
        }
    }
    for _ in 0..100 {
        if zpool_answers() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err("zfs-fuse runs but `zpool list` does not answer after 20 s".into())
}

/// Stop the daemon: SIGTERM, wait up to 30 s, then SIGKILL.
fn stop_daemon() {
    let pid = daemon_pid().expect("zfs-fuse is not running");
    eprintln!("daemon_restart: stopping zfs-fuse (pid {pid}) with SIGTERM");
    let p = nix::unistd::Pid::from_raw(pid);
    let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGTERM);
    for _ in 0..150 {
        if daemon_pid().is_none() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("daemon_restart: zfs-fuse ignored SIGTERM for 30 s: SIGKILL");
    let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL);
    for _ in 0..50 {
        if daemon_pid().is_none() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("zfs-fuse (pid {pid}) does not exit");
}

/// Makes sure the daemon runs again when the test ends, even on failure.
struct DaemonGuard;

impl Drop for DaemonGuard {
    fn drop(&mut self) {
        if daemon_pid().is_none() {
            eprintln!("daemon_restart: guard: zfs-fuse is down, starting it again");
            if let Err(e) = start_daemon() {
                eprintln!("daemon_restart: guard: COULD NOT START zfs-fuse: {e}");
            }
        }
    }
}

fn url_of(v: &serde_json::Value) -> String {
    v["url"]
        .as_str()
        .or_else(|| v["branch"]["url"].as_str())
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "RESTARTS THE zfs-fuse DAEMON (every pool on the machine): run alone with BPG_ALLOW_DAEMON_RESTART=1 and --ignored"]
async fn zfs_fuse_daemon_restart_loses_nothing() {
    assert_eq!(
        std::env::var(GUARD_ENV).as_deref(),
        Ok("1"),
        "this test restarts the zfs-fuse daemon under every pool on the machine: set {GUARD_ENV}=1 to confirm nothing else is using ZFS"
    );
    eprintln!(
        "\n*** daemon_restart: this test STOPS AND RESTARTS the zfs-fuse daemon; every pool on this machine is affected ***\n"
    );
    set_port_base(PORT_LO);
    let env = TestEnv::plan("bpgsafe");
    assert_ports_within(&env, PORT_LO, PORT_HI);
    init(&env, "1G");
    let bpg = Bpg::of(&env);

    // Databases and branches, each with data of its own.
    let prod = url_of(&bpg.json(&["create", "prod"]));
    connect(&prod)
        .await
        .batch_execute("CREATE TABLE t AS SELECT generate_series(1, 2000) AS id")
        .await
        .unwrap();
    let db2 = url_of(&bpg.json(&["create", "db2"]));
    connect(&db2)
        .await
        .batch_execute("CREATE TABLE t AS SELECT generate_series(1, 20) AS id")
        .await
        .unwrap();
    let dev = url_of(&bpg.json(&["branch", "prod", "dev"]));
    connect(&dev)
        .await
        .batch_execute("INSERT INTO t SELECT generate_series(2001, 2100)")
        .await
        .unwrap();
    let child = url_of(&bpg.json(&["branch", "dev", "dev-child", "--fast"]));
    connect(&child)
        .await
        .batch_execute("DELETE FROM t WHERE id <= 10")
        .await
        .unwrap();
    let expect = [
        ("prod", prod, 2000i64),
        ("db2", db2, 20),
        ("dev", dev, 2100),
        ("dev-child", child, 2090),
    ];

    // Stop everything, export the pool, restart the daemon, import.
    for (name, _, _) in &expect {
        assert_eq!(bpg.json(&["stop", name])["status"], "stopped");
    }
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(&env.pool_file, dir.path().join("pool.img")).unwrap();
    let o = Command::new("zpool")
        .args(["export", &env.pool])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "zpool export: {}",
        String::from_utf8_lossy(&o.stderr)
    );

    let guard = DaemonGuard;
    stop_daemon();
    start_daemon().unwrap();
    drop(guard);

    let imported = Command::new("zpool")
        .args(["list", &env.pool])
        .output()
        .unwrap()
        .status
        .success();
    if !imported {
        let o = Command::new("zpool")
            .args(["import", "-d"])
            .arg(dir.path())
            .arg(&env.pool)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "zpool import: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    // Everything comes back with its data.
    for (name, _, _) in expect.iter().rev() {
        assert_eq!(bpg.json(&["start", name])["status"], "running", "{name}");
    }
    for (name, url, rows) in &expect {
        assert_eq!(
            count_rows(url, "t").await,
            *rows,
            "{name} after the daemon restart"
        );
    }
    assert_consistent(&env);
    let r = bpg.json(&["branch", "dev-child", "after"]);
    assert_eq!(count_rows(&url_of(&r), "t").await, 2090);
    bpg.ok(&["destroy", "prod", "--force"]);
    bpg.ok(&["destroy", "db2", "--force"]);
    eprintln!(
        "daemon_restart: zfs-fuse restarted; 4 databases and branches came back with their data"
    );
}
