//! The scheduler through the real `bpg` binary: `bpg daemon --once`
//! (expiry, idle stop, snapshots by policy), the loop with its lock and
//! signals, and a pass killed half-way then run again. Real ZFS, real
//! PostgreSQL 15 servers, real waits (TTLs and idle times of seconds).

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use betterpg_testkit::*;
use serde_json::Value;

fn setup(prefix: &str) -> TestEnv {
    default_port_base(48600);
    TestEnv::initialized(prefix)
}

/// The status entry `name`, if it exists.
fn find(bpg: &Bpg, name: &str) -> Option<Value> {
    bpg.status_json(&["status"])
        .as_array()
        .expect("status entries")
        .iter()
        .find(|e| e["name"] == name)
        .cloned()
}

/// The actions of a pass report named `action` for `name`.
fn actions<'a>(report: &'a Value, action: &str, name: &str) -> Vec<&'a Value> {
    report["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .filter(|a| a["action"] == action && a["name"] == name)
        .collect()
}

/// The one action `action` of `name` in `report`, with its result.
fn one<'a>(report: &'a Value, action: &str, name: &str) -> &'a Value {
    let v = actions(report, action, name);
    assert_eq!(v.len(), 1, "one {action} of {name} in {report:#}");
    v[0]
}

fn sleep_s(s: u64) {
    std::thread::sleep(Duration::from_secs(s));
}

/// A snapshot policy due now must not become due again by the UTC hour
/// turning between two passes: wait out the last half minute of an hour.
fn away_from_the_hour() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let left = 3600 - now % 3600;
    if left < 90 {
        sleep_s(left + 1);
    }
}

/// A child process killed (SIGKILL) and reaped on drop, so a failing
/// test leaves no daemon behind.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Expiry by `daemon --once`: an expired branch goes with its branches
/// (children first), a protected child blocks its whole subtree (skipped,
/// the reason logged, nothing of it destroyed), an unexpired one stays;
/// `config --ttl` sets expiry from now and `none` clears it; a dry run
/// changes nothing; the snapshot policy is taken once per pass schedule.
#[test]
fn daemon_once_expires_children_first_and_spares_protected_subtrees() {
    let env = setup("bpgdx");
    let bpg = Bpg::of(&env);
    away_from_the_hour();
    bpg.ok(&["create", "prod"]);
    // Bad input: a clear error, nothing made.
    let state = state_of(&env);
    for bad in ["soon", "0s", "1x"] {
        let err = bpg.fails(&["branch", "prod", "x", "--ttl", bad]);
        assert!(err.contains("ttl"), "{bad}: {err}");
        assert_eq!(state_of(&env), state, "--ttl {bad} changed something");
    }
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let dev = bpg.json(&["branch", "prod", "dev", "--ttl", "2s"]);
    let exp = dev["branch"]["expires_at"].as_u64().expect("expires_at");
    assert!(exp >= before + 2, "{dev:#}");
    bpg.ok(&["branch", "dev", "feat"]);
    bpg.ok(&["branch", "prod", "keep", "--ttl", "1h"]);
    bpg.ok(&["branch", "prod", "guarded", "--ttl", "2s"]);
    bpg.ok(&["branch", "guarded", "gchild"]);
    bpg.ok(&["protect", "gchild"]);
    bpg.ok(&["config", "prod", "--keep-hourly", "24"]);
    // `config --ttl` counts from now; `none` clears.
    bpg.ok(&["config", "keep", "--ttl", "2h"]);
    let keep = find(&bpg, "keep").unwrap();
    let at = keep["expires_at"].as_u64().unwrap();
    assert!(at >= before + 7200, "{keep:#}");
    bpg.ok(&["config", "keep", "--ttl", "none"]);
    assert!(find(&bpg, "keep").unwrap()["expires_at"].is_null());
    assert!(bpg.ok(&["config", "keep"]).contains("ttl"));
    sleep_s(3);

    // A dry run says what it would do and changes nothing.
    let state = state_of(&env);
    let dry = bpg.json(&["daemon", "--once", "--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(one(&dry, "expire", "dev")["result"], "dry_run");
    assert_eq!(one(&dry, "snapshot", "prod")["result"], "dry_run");
    assert_eq!(state_of(&env), state, "a dry run changed something");

    let r = bpg.json(&["daemon", "--once"]);
    let doc = doc_block("<!-- daemon-check: daemon-once -->");
    assert_shape("daemon --once", &doc, &r);
    assert_shape("daemon --once --dry-run", &doc, &dry);
    assert_eq!(r["dry_run"], false);
    assert_eq!(r["interrupted"], false);
    let d = one(&r, "expire", "dev");
    assert_eq!(d["result"], "done", "{r:#}");
    assert!(
        d["reason"].as_str().unwrap().contains("feat"),
        "the reason names the branches taken along: {d}"
    );
    let g = one(&r, "expire", "guarded");
    assert_eq!(g["result"], "skipped", "{r:#}");
    assert!(
        g["reason"].as_str().unwrap().contains("gchild"),
        "the reason names the protected branch: {g}"
    );
    assert!(actions(&r, "expire", "feat").is_empty(), "went with dev");
    assert!(actions(&r, "expire", "keep").is_empty(), "not expired");
    for gone in ["dev", "feat"] {
        assert!(find(&bpg, gone).is_none(), "{gone} expired");
    }
    for kept in ["prod", "keep", "guarded", "gchild"] {
        assert_eq!(find(&bpg, kept).unwrap()["state"], "ready", "{kept}");
    }
    // The policy's snapshot, once: the next pass finds it taken.
    let snaps = bpg.json(&["snapshots", "prod"]);
    assert_eq!(snaps["snapshots"].as_array().unwrap().len(), 1, "{snaps:#}");
    let taken = snaps["snapshots"][0]["full_name"].as_str().unwrap();
    assert_eq!(one(&r, "snapshot", taken)["result"], "done");
    let again = bpg.json(&["daemon", "--once"]);
    assert!(
        !again["actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "snapshot" || a["action"] == "expire" && a["name"] == "dev"),
        "nothing done twice: {again:#}"
    );
    assert_eq!(one(&again, "expire", "guarded")["result"], "skipped");
    let snaps = bpg.json(&["snapshots", "prod"]);
    assert_eq!(snaps["snapshots"].as_array().unwrap().len(), 1);
    let audit = bpg.json(&["audit"]);
    assert!(
        audit["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["operation"] == "expire" && e["branch"] == "dev"),
        "expiry is audited: {audit:#}"
    );
    assert_consistent(&env);

    // Unprotected, the subtree expires (children first).
    bpg.ok(&["unprotect", "gchild"]);
    let r = bpg.json(&["daemon", "--once"]);
    assert_eq!(one(&r, "expire", "guarded")["result"], "done", "{r:#}");
    assert!(find(&bpg, "gchild").is_none());
    assert!(find(&bpg, "keep").is_some());
    assert_consistent(&env);

    // Without --json, --once logs one JSON line per action.
    bpg.ok(&["branch", "prod", "short", "--ttl", "1s"]);
    sleep_s(2);
    let text = bpg.ok(&["daemon", "--once"]);
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let l = lines
        .iter()
        .find(|l| l["action"] == "expire" && l["name"] == "short")
        .unwrap_or_else(|| panic!("no expire line: {text}"));
    for l in &lines {
        assert_shape("a log line", &doc["actions"][0], l);
    }
    assert_eq!(l["result"], "done");
}

/// Idle stop: a server without clients for its `idle_stop` is stopped (not
/// destroyed); one with an open client connection is not (and its
/// activity is recorded); `bpg start` brings the stopped one back with its
/// data, and a pass right after does not stop it again; a stopped server
/// is not idle.
#[test]
fn idle_stop_stops_idle_servers_only() {
    let env = setup("bpgdi");
    let bpg = Bpg::of(&env);
    bpg.ok(&["create", "prod"]);
    bpg.ok(&["branch", "prod", "idle"]);
    bpg.ok(&["branch", "prod", "busy"]);
    bpg.ok(&["branch", "prod", "off"]);
    bpg.ok(&["stop", "off"]);
    for n in ["idle", "busy", "off"] {
        bpg.ok(&["config", n, "--idle-stop", "6s"]);
    }
    let idle_url = bpg.ok(&["url", "idle"]).trim().to_string();
    let busy_url = bpg.ok(&["url", "busy"]).trim().to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = rt.block_on(connect(&idle_url));
    rt.block_on(c.batch_execute("CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)"))
        .unwrap();
    drop(c);
    let client = rt.block_on(connect(&busy_url));
    sleep_s(7);

    let r = bpg.json(&["daemon", "--once"]);
    let a = one(&r, "idle_stop", "idle");
    assert_eq!(a["result"], "done", "{r:#}");
    assert!(
        a["reason"].as_str().unwrap().contains("bpg start idle"),
        "{a}"
    );
    assert!(actions(&r, "idle_stop", "busy").is_empty(), "{r:#}");
    assert!(actions(&r, "idle_stop", "off").is_empty(), "{r:#}");
    assert_eq!(find(&bpg, "idle").unwrap()["status"], "stopped");
    assert_eq!(find(&bpg, "busy").unwrap()["status"], "running");
    assert_eq!(find(&bpg, "off").unwrap()["status"], "stopped");
    let cat: Value =
        serde_json::from_str(&std::fs::read_to_string(env.home.join("catalog.json")).unwrap())
            .unwrap();
    assert!(
        cat["entries"]["busy"]["lifecycle"]["active_at"].is_u64(),
        "activity recorded: {:#}",
        cat["entries"]["busy"]
    );
    // The client is still served.
    rt.block_on(client.simple_query("SELECT 1")).unwrap();

    // Back with its data; a server just started is not idle from before.
    bpg.ok(&["start", "idle"]);
    let r = bpg.json(&["daemon", "--once"]);
    assert!(actions(&r, "idle_stop", "idle").is_empty(), "{r:#}");
    assert_eq!(find(&bpg, "idle").unwrap()["status"], "running");
    let c = rt.block_on(connect(&idle_url));
    let row = rt.block_on(c.query_one("SELECT v FROM kept", &[])).unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    drop(c);

    // The busy one's client leaves: it goes idle from then.
    drop(client);
    sleep_s(7);
    let r = bpg.json(&["daemon", "--once"]);
    assert_eq!(one(&r, "idle_stop", "busy")["result"], "done", "{r:#}");
    assert_eq!(find(&bpg, "busy").unwrap()["status"], "stopped");
    assert_consistent(&env);
}

/// The loop: one daemon per home (a second one, or a pass, fails with
/// `daemon_running`, exit 31, while it runs), JSON lines on stdout as it
/// acts, a clean exit 0 on SIGTERM that releases the lock.
#[test]
fn one_daemon_per_home_and_a_clean_sigterm() {
    let env = setup("bpgdl");
    let bpg = Bpg::of(&env);
    bpg.ok(&["create", "prod"]);
    bpg.ok(&["branch", "prod", "dev", "--ttl", "1s"]);
    let mut child = bpg.command(&["daemon", "--interval", "1s"]);
    child.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut daemon = Reaped(child.spawn().expect("start bpg daemon"));
    let out = daemon.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    // It expires dev and says so.
    let deadline = Instant::now() + Duration::from_secs(60);
    let line = loop {
        let l = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the daemon logs the expiry of dev");
        let v: Value = serde_json::from_str(&l).unwrap_or_else(|e| panic!("{l}: {e}"));
        if v["action"] == "expire" {
            break v;
        }
    };
    assert_eq!(line["name"], "dev");
    assert_eq!(line["result"], "done", "{line}");
    assert!(find(&bpg, "dev").is_none());

    for args in [&["daemon", "--interval", "1s"][..], &["daemon", "--once"]] {
        let o = bpg.run(args);
        let err = check_failure(args, &o);
        assert_eq!(o.status.code(), Some(31), "daemon_running: {err}");
        assert!(err.contains("already runs"), "{err}");
        assert!(
            err.contains(&daemon.0.id().to_string()),
            "names the running daemon's pid: {err}"
        );
    }

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = daemon.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon did not exit on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(0), "SIGTERM: a clean exit");
    // The lock is free again.
    bpg.ok(&["daemon", "--once"]);
    assert_consistent(&env);
}

/// `bpg daemon --once` stops cleanly on SIGTERM (and SIGINT) mid-pass,
/// as the loop does: the step under way finishes, the pass ends before
/// the next step (the report says `interrupted`; an expired branch is
/// left for the next pass), exit status 0, the lock released; the next
/// pass does the rest.
#[test]
fn daemon_once_stops_cleanly_on_sigterm_and_sigint_mid_pass() {
    require_fault_injection();
    let env = setup("bpgds");
    let bpg = Bpg::of(&env);
    bpg.ok(&["create", "prod"]);
    for (sig, branch) in [
        (nix::sys::signal::Signal::SIGTERM, "dev"),
        (nix::sys::signal::Signal::SIGINT, "dev2"),
    ] {
        bpg.ok(&["branch", "prod", branch, "--ttl", "1s"]);
        sleep_s(2);
        let mut cmd = bpg.command(&["--json", "daemon", "--once"]);
        // The step after the snapshots is held for a while, so that the
        // signal arrives mid-pass.
        cmd.env("BETTERPG_FAULT", "daemon_after_snapshots:sleep=4")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut pass = Reaped(cmd.spawn().expect("start bpg daemon --once"));
        let err = pass.0.stderr.take().unwrap();
        let mut lines = BufReader::new(err).lines();
        loop {
            let l = lines
                .next()
                .expect("the pass reaches the fault point")
                .unwrap();
            if l.contains("pausing at daemon_after_snapshots") {
                break;
            }
        }
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pass.0.id() as i32), sig).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = pass.0.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "--once did not end on {sig}");
            std::thread::sleep(Duration::from_millis(100));
        };
        let mut out = String::new();
        std::io::Read::read_to_string(&mut pass.0.stdout.take().unwrap(), &mut out).unwrap();
        assert_eq!(status.code(), Some(0), "{sig}: a clean exit, stdout {out}");
        let r: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{out}: {e}"));
        assert_eq!(r["interrupted"], true, "{sig}: {r:#}");
        assert!(
            actions(&r, "expire", branch).is_empty(),
            "{sig}: the pass ended before the expiry: {r:#}"
        );
        assert_eq!(
            find(&bpg, branch).expect("left for the next pass")["state"],
            "ready"
        );
        // The lock is free; the next pass expires it.
        let r = bpg.json(&["daemon", "--once"]);
        assert_eq!(r["interrupted"], false, "{r:#}");
        assert_eq!(one(&r, "expire", branch)["result"], "done", "{r:#}");
        assert!(find(&bpg, branch).is_none());
    }
    assert_consistent(&env);
}

/// A pass killed (SIGKILL) half-way through an expiry, after it took the
/// policy's snapshot: the entries are left `destroying` by a process that
/// is gone, and the next pass finishes the expiry without taking the
/// snapshot again.
#[test]
fn a_pass_killed_mid_expiry_is_finished_by_the_next_without_repeats() {
    require_fault_injection();
    let env = setup("bpgdk");
    let bpg = Bpg::of(&env);
    away_from_the_hour();
    bpg.ok(&["create", "prod"]);
    bpg.ok(&["config", "prod", "--keep-hourly", "24"]);
    bpg.ok(&["branch", "prod", "exp", "--ttl", "1s"]);
    bpg.ok(&["branch", "exp", "expc"]);
    sleep_s(2);
    let mut cmd = bpg.command(&["daemon", "--once"]);
    cmd.env("BETTERPG_FAULT", "expire_marked:pause")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut pass = Reaped(cmd.spawn().expect("start bpg daemon --once"));
    let err = pass.0.stderr.take().unwrap();
    let mut lines = BufReader::new(err).lines();
    loop {
        let l = lines
            .next()
            .expect("the pass reaches the fault point")
            .unwrap();
        if l.contains("pausing at expire_marked") {
            break;
        }
    }
    pass.0.kill().unwrap();
    pass.0.wait().unwrap();
    let snaps = bpg.json(&["snapshots", "prod"]);
    assert_eq!(snaps["snapshots"].as_array().unwrap().len(), 1, "{snaps:#}");
    for n in ["exp", "expc"] {
        assert_eq!(
            find(&bpg, n).unwrap()["state"],
            "incomplete",
            "{n} was marked for the expiry"
        );
    }

    let r = bpg.json(&["daemon", "--once"]);
    assert_eq!(one(&r, "expire", "exp")["result"], "done", "{r:#}");
    assert!(
        !r["actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "snapshot"),
        "the snapshot is not taken twice: {r:#}"
    );
    let snaps = bpg.json(&["snapshots", "prod"]);
    assert_eq!(snaps["snapshots"].as_array().unwrap().len(), 1);
    assert!(find(&bpg, "exp").is_none() && find(&bpg, "expc").is_none());
    assert_eq!(find(&bpg, "prod").unwrap()["state"], "ready");
    assert!(bpg.json(&["gc", "--dry-run"])["items"]
        .as_array()
        .unwrap()
        .is_empty());
    assert_consistent(&env);
}

/// Watching replicas: each pass logs a replica's state (with the
/// `replication` object); a replica whose server died (SIGKILL, its pid
/// file left behind) is started again by the next pass; one stopped with
/// `bpg stop` stays stopped.
#[test]
fn a_replica_whose_server_died_is_started_again() {
    let env = setup("bpgdr");
    let bpg = Bpg::of(&env);
    let primary = RemotePrimary::start("bpgdr", 15);
    bpg.json(&["follow", "rep", "--from", &primary.url_for(REPL_USER)]);
    let r = bpg.json(&["daemon", "--once"]);
    let w = one(&r, "watch_replica", "rep");
    assert_eq!(w["result"], "done", "{r:#}");
    assert!(w["replication"]["state"].is_string(), "{w}");

    let ds = find(&bpg, "rep").unwrap()["dataset"]
        .as_str()
        .unwrap()
        .to_string();
    let pid_file = data_dir_of(&ds).join("postmaster.pid");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while find(&bpg, "rep").unwrap()["status"] != "stopped" {
        assert!(Instant::now() < deadline, "the replica did not die");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(pid_file.exists(), "a killed server leaves its pid file");
    // Its backends notice the postmaster's death and exit.
    sleep_s(2);

    let r = bpg.json(&["daemon", "--once"]);
    assert_eq!(one(&r, "restart_replica", "rep")["result"], "done", "{r:#}");
    assert_eq!(find(&bpg, "rep").unwrap()["status"], "running");

    bpg.ok(&["stop", "rep"]);
    let r = bpg.json(&["daemon", "--once"]);
    assert_eq!(
        one(&r, "watch_replica", "rep")["result"],
        "skipped",
        "{r:#}"
    );
    assert!(actions(&r, "restart_replica", "rep").is_empty());
    assert_eq!(find(&bpg, "rep").unwrap()["status"], "stopped");
    bpg.ok(&["destroy", "rep"]);
    assert_consistent(&env);
}
