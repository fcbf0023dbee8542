//! Issue 11, item 14: the catalog lock is taken with a timeout. A process
//! that holds `HOME/catalog.lock` and does not let go (a hung `bpg`, a forked
//! child that inherited the lock) made every later `bpg` wait forever. Now
//! `bpg status` and `bpg branch` fail after the timeout (`BPG_LOCK_TIMEOUT`,
//! or `lock_timeout_secs` in the home's config) with a timeout error naming
//! the lock file and the holder's pid, and change nothing. Real ZFS, real
//! PostgreSQL 15, a real second process holding the `flock`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use betterpg_testkit::*;

/// Exit status of a `timeout` error (`Error::code` 10 + 9).
const EXIT_TIMEOUT: i32 = 19;

/// Run `bpg --home HOME ARGS` with extra environment; a run still going
/// after `deadline` is killed and fails the test (today's code waited on the
/// lock forever).
fn bpg_within(env: &TestEnv, args: &[&str], vars: &[(&str, &str)], deadline: Duration) -> Output {
    let mut c = Command::new(bpg_exe());
    c.arg("--home").arg(&env.home).args(args);
    c.env_remove("BPG_LOCK_TIMEOUT");
    for (k, v) in vars {
        c.env(k, v);
    }
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bpg");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait for bpg").is_some() {
            return child.wait_with_output().expect("bpg output");
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "bpg {args:?} still waiting for the catalog lock after {deadline:?}: it must give up with a timeout error"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A helper process holding an exclusive `flock` on `path` until killed.
struct Holder(Child);

impl Holder {
    fn start(path: &std::path::Path) -> Holder {
        let mut child = Command::new("python3")
            .args([
                "-c",
                "import fcntl, sys, time\n\
                 f = open(sys.argv[1], 'a')\n\
                 fcntl.flock(f, fcntl.LOCK_EX)\n\
                 print('locked', flush=True)\n\
                 time.sleep(600)\n",
            ])
            .arg(path)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 is needed to hold the lock from another process (scripts/setup.sh)");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "locked", "the helper could not take the lock");
        Holder(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn assert_lock_timeout(o: &Output, args: &[&str], lock: &str, holder: u32, waited: &str) {
    let err = check_failure(args, o);
    assert_eq!(
        o.status.code(),
        Some(EXIT_TIMEOUT),
        "bpg {args:?} should fail with a timeout error: {err}"
    );
    for want in [
        "timed out",
        waited,
        lock,
        &format!("pid {holder} ("),
        "python3 -c import fcntl",
        "BPG_LOCK_TIMEOUT",
        "nothing was changed",
    ] {
        assert!(
            err.contains(want),
            "bpg {args:?}: {want:?} missing in: {err}"
        );
    }
}

#[test]
fn a_held_catalog_lock_times_out_naming_its_holder_and_changes_nothing() {
    let env = TestEnv::plan("bpghd");
    init(&env, "1G");
    let bpg = Bpg::of(&env);
    bpg.ok(&["create", "prod"]);
    let before = state_of(&env);
    let lock = env.home.join("catalog.lock");
    let lock_s = lock.display().to_string();

    let holder = Holder::start(&lock);
    let deadline = Duration::from_secs(60);

    // The environment variable.
    let args = ["status"];
    let o = bpg_within(&env, &args, &[("BPG_LOCK_TIMEOUT", "1")], deadline);
    assert_lock_timeout(&o, &args, &lock_s, holder.pid(), "waited 1 s");
    let args = ["--json", "branch", "prod", "dev"];
    let o = bpg_within(&env, &args, &[("BPG_LOCK_TIMEOUT", "0.5")], deadline);
    assert_lock_timeout(&o, &args, &lock_s, holder.pid(), "waited 0.5 s");
    assert!(o.stdout.is_empty(), "no JSON result on failure");

    // The home's config (no environment variable).
    let cfg_path = env.home.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    assert_eq!(
        cfg["lock_timeout_secs"], 30,
        "the default is recorded at init"
    );
    cfg["lock_timeout_secs"] = 1.into();
    std::fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    let args = ["branch", "prod", "dev"];
    let o = bpg_within(&env, &args, &[], deadline);
    assert_lock_timeout(&o, &args, &lock_s, holder.pid(), "waited 1 s");

    // A bad value is refused as configuration, before any waiting.
    let o = bpg_within(&env, &["status"], &[("BPG_LOCK_TIMEOUT", "soon")], deadline);
    let err = check_failure(&["status"], &o);
    assert!(
        err.contains("BPG_LOCK_TIMEOUT=\"soon\""),
        "bad BPG_LOCK_TIMEOUT: {err}"
    );

    assert_eq!(
        state_of(&env),
        before,
        "a timed-out command changed something"
    );

    // The holder gone, everything works (and nothing was left behind).
    drop(holder);
    let infos = bpg.status_json(&["status"]);
    assert_eq!(infos.as_array().map(|a| a.len()), Some(1), "{infos}");
    bpg.ok(&["branch", "prod", "dev"]);
    assert_eq!(
        std::fs::read_to_string(&lock).unwrap(),
        "",
        "the holder record is cleared when betterpg lets go"
    );
    bpg.ok(&["destroy", "prod", "--force"]);
}
