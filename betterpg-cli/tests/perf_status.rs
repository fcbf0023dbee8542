//! `bpg status` with many entries: one storage listing and one status pass
//! for all of them (no `pg_ctl` or `zfs` process per entry), and still
//! right about each one.
//!
//! A source and [`BRANCHES`] branches of it; some stopped by `bpg stop`, one
//! whose postmaster was killed (its `postmaster.pid` stays behind, naming a
//! dead process), one whose data directory carries the source's pid file
//! (what a clone would hold before betterpg removes it): `status` must say
//! which run, with each one's own port, dataset, parent and sizes. Its speed
//! is measured by the benchmark harness, never here.
//!
//! Ports: one home of 60 ports from `BPG_TEST_PORT_BASE` (default 44000).
//! Pools: bpgperf*.

use std::collections::BTreeMap;
use std::path::PathBuf;

use betterpg_testkit::*;
use serde_json::Value;

/// Branches of the one source.
const BRANCHES: usize = 20;
/// Ports of the home: the source, the branches, and room to spare.
const PORTS: u16 = 60;

/// The home, initialised with a port range wide enough for every branch.
fn env() -> TestEnv {
    default_port_base(44000);
    let env = TestEnv::plan("bpgperf");
    let (lo, _) = env.ports;
    // Each branch reserves 64 MiB of the branch space (80% of the pool).
    let mut args = init_args(&env, &env.pool_file, "3G");
    let i = args.iter().position(|a| a == "--ports").unwrap();
    args[i + 1] = format!("{lo}-{}", lo + PORTS - 1);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Bpg::of(&env).ok(&args);
    env
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// The data directory of `name` (its dataset's mountpoint + pgdata).
fn data_dir(info: &Value) -> PathBuf {
    data_dir_of(info["dataset"].as_str().unwrap())
}

/// The postmaster's pid from `postmaster.pid`.
fn postmaster_pid(data: &std::path::Path) -> i32 {
    let text = std::fs::read_to_string(data.join("postmaster.pid")).unwrap();
    text.lines().next().unwrap().trim().parse().unwrap()
}

#[tokio::test]
async fn status_of_many_entries_is_right_about_each() {
    let env = env();
    let bpg = Bpg::of(&env);
    let src = bpg.json(&["create", "src"]);
    let src_url = src["url"].as_str().unwrap().to_string();
    let c = connect(&src_url).await;
    c.batch_execute("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g")
        .await
        .unwrap();
    drop(c);
    let names: Vec<String> = (0..BRANCHES).map(|i| format!("b{i:02}")).collect();
    for n in &names {
        // Half of them crash-consistent: the mode must come back per entry.
        let mut args = vec!["branch", "src", n.as_str()];
        if n.ends_with(['1', '3', '5', '7', '9']) {
            args.push("--fast");
        }
        bpg.json(&args);
    }
    // Stopped by betterpg: b00, b05, b10, b15.
    let stopped: Vec<&str> = ["b00", "b05", "b10", "b15"].to_vec();
    for n in &stopped {
        assert_eq!(bpg.json(&["stop", n])["status"], "stopped");
    }
    let before: BTreeMap<String, Value> = bpg
        .status_json(&["status"])
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["name"].as_str().unwrap().to_string(), i.clone()))
        .collect();
    // b03's postmaster dies without cleaning up: its pid file stays.
    let b03 = data_dir(&before["b03"]);
    let pid = postmaster_pid(&b03);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL).unwrap();
    assert!(
        eventually(30, || !listening(
            before["b03"]["port"].as_u64().unwrap() as u16
        ))
        .await,
        "b03 still listening after its postmaster was killed"
    );
    assert!(b03.join("postmaster.pid").exists(), "the pid file stays");
    // b10 (stopped) gets a copy of the source's pid file, naming the
    // source's live postmaster: still not running.
    let src_pid_file = std::fs::read(data_dir(&before["src"]).join("postmaster.pid")).unwrap();
    let b10 = data_dir(&before["b10"]);
    std::fs::write(b10.join("postmaster.pid"), &src_pid_file).unwrap();

    let st = bpg.status_json(&["status"]);
    let st = st.as_array().unwrap();
    assert_eq!(st.len(), BRANCHES + 1, "every entry listed: {st:#?}");
    assert_eq!(st[0]["name"], "src", "the source first (tree order)");
    let mut ports = std::collections::BTreeSet::new();
    for info in st {
        let name = info["name"].as_str().unwrap();
        let port = info["port"].as_u64().unwrap() as u16;
        assert!(ports.insert(port), "port {port} twice");
        let want_running = name == "src" || !(stopped.contains(&name) || name == "b03");
        let want = if want_running { "running" } else { "stopped" };
        assert_eq!(info["status"], want, "{name}: {info:#}");
        assert_eq!(
            listening(port),
            want_running,
            "{name} on port {port}: status says {}",
            info["status"]
        );
        assert_eq!(info["state"], "ready", "{name}");
        assert!(
            info["referenced_bytes"].as_u64().unwrap() > 0,
            "{name}: its dataset's sizes are read: {info:#}"
        );
        assert!(info["used_bytes"].as_u64().is_some(), "{name}");
        if name != "src" {
            assert_eq!(info["parent"], "src", "{name}");
            let fast = name.ends_with(['1', '3', '5', '7', '9']);
            let mode = if fast {
                "crash-consistent"
            } else {
                "application-consistent"
            };
            assert_eq!(info["mode"], mode, "{name}");
            assert_eq!(
                info["dataset"], before[name]["dataset"],
                "{name}: its own dataset"
            );
        }
        // `status NAME` (one entry, its own queries) agrees with the batch.
        let one = bpg.status_json(&["status", name]);
        assert_eq!(one[0]["status"], info["status"], "{name}");
        assert_eq!(one[0]["port"], info["port"], "{name}");
        assert_eq!(one[0]["dataset"], info["dataset"], "{name}");
    }
    // b10 starts again once the copied pid file is gone (PostgreSQL itself
    // refuses a pid file naming a live process). (b03 is left stopped: where
    // nothing reaps the killed postmaster, PostgreSQL takes the zombie its
    // pid file names for a live postmaster and refuses to start.)
    std::fs::remove_file(b10.join("postmaster.pid")).unwrap();
    assert_eq!(bpg.json(&["start", "b10"])["status"], "running");
    let st = bpg.status_json(&["status"]);
    let running = st
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["status"] == "running")
        .count();
    // Stopped: b00, b05, b15 and b03.
    assert_eq!(running, BRANCHES + 1 - stopped.len(), "{st:#}");
    assert_consistent(&env);
}
