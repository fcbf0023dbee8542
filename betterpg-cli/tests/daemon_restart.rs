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
    let env = TestEnv::safe(PORT_LO, PORT_HI, "1G");
    let bpg = Bpg::of(&env);

    // Databases and branches, each with data of its own.
    let expect = seed_tree(&bpg, 2000, 20, 100, 10).await;

    // Stop everything, export the pool, restart the daemon, import.
    stop_all(&bpg, &expect);
    let dir = export_pool(&env);

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
        import_pool(&env, &dir);
    }

    // Everything comes back with its data.
    start_all(&bpg, &expect);
    for (name, url, rows) in &expect {
        assert_eq!(
            count_rows(url, "t").await,
            *rows,
            "{name} after the daemon restart"
        );
    }
    assert_consistent(&env);
    let r = bpg.json(&["branch", "dev-child", "after"]);
    assert_eq!(count_rows(&url_in(&r), "t").await, 2090);
    bpg.ok(&["destroy", "prod", "--force"]);
    bpg.ok(&["destroy", "db2", "--force"]);
    eprintln!(
        "daemon_restart: zfs-fuse restarted; 4 databases and branches came back with their data"
    );
}
