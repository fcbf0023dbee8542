//! Isolation items 9 and 10 (docs/safety.md, "Isolation from the source").
//!
//! 9. `bpg destroy prod --force` and `bpg branch prod dev` started together,
//!    many times: each round ends consistent (both exist, or both are gone,
//!    or the branch failed cleanly), never with prod stopped in `destroying`
//!    or an orphaned clone, and `bpg gc --dry-run` finds nothing.
//! 10. A catalog entry whose pid now belongs to another process (pid reuse)
//!     is not taken for a live operation: the process start time is recorded
//!     with the pid.
//!
//! Real ZFS, real PostgreSQL 15, the real `bpg` binary.

use std::process::{Command, Stdio};

use betterpg_testkit::*;
use serde_json::Value;

const ROUNDS: usize = 20;

fn setup() -> TestEnv {
    TestEnv::initialized("bpgha")
}

fn spawn(env: &TestEnv, args: &[&str]) -> std::process::Child {
    Command::new(bpg_exe())
        .arg("--home")
        .arg(&env.home)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn bpg")
}

fn entry_state(bpg: &Bpg, name: &str) -> Option<Value> {
    bpg.status_json(&["status"])
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name)
        .cloned()
}

#[test]
fn destroy_and_branch_of_the_same_source_started_together() {
    let env = setup();
    let bpg = Bpg::of(&env);
    let mut outcomes = std::collections::BTreeMap::<&str, usize>::new();
    for round in 0..ROUNDS {
        bpg.ok(&["create", "prod"]);
        // Alternate which one is started first.
        let (d, b) = if round % 2 == 0 {
            let d = spawn(&env, &["destroy", "prod", "--force"]);
            (d, spawn(&env, &["branch", "prod", "dev"]))
        } else {
            let b = spawn(&env, &["branch", "prod", "dev"]);
            (spawn(&env, &["destroy", "prod", "--force"]), b)
        };
        let d = d.wait_with_output().unwrap();
        let b = b.wait_with_output().unwrap();
        let d_err = String::from_utf8_lossy(&d.stderr).into_owned();
        let b_err = String::from_utf8_lossy(&b.stderr).into_owned();
        let tag = format!(
            "round {round}: destroy {} ({d_err:?}), branch {} ({b_err:?})",
            d.status, b.status
        );
        for (o, args) in [(&d, ["destroy", "prod"]), (&b, ["branch", "prod"])] {
            if !o.status.success() {
                check_failure(&args, o);
            }
        }
        let prod = entry_state(&bpg, "prod");
        let dev = entry_state(&bpg, "dev");
        let outcome = match (&prod, &dev) {
            // destroy refused: a branch of prod was being made.
            (Some(p), Some(v)) => {
                assert!(!d.status.success() && b.status.success(), "{tag}");
                assert!(d_err.contains("being made"), "{tag}");
                assert_eq!(p["status"], "running", "{tag}: {p}");
                assert_eq!(v["status"], "running", "{tag}: {v}");
                "destroy refused, branch made"
            }
            // destroy first (branch refused), or branch first and then
            // destroyed with it by --force.
            (None, None) => {
                assert!(d.status.success(), "{tag}");
                if b.status.success() {
                    "branch made, then destroyed with prod"
                } else {
                    "branch refused, prod destroyed"
                }
            }
            _ => panic!("{tag}: inconsistent outcome prod={prod:?} dev={dev:?}"),
        };
        *outcomes.entry(outcome).or_default() += 1;
        // Everything agrees, nothing is left for gc.
        assert_consistent(&env);
        let dry = bpg.json(&["gc", "--dry-run"]);
        assert_eq!(dry["items"], serde_json::json!([]), "{tag}: gc finds {dry}");
        if prod.is_some() {
            bpg.ok(&["destroy", "prod", "--force"]);
        }
    }
    eprintln!("outcomes over {ROUNDS} rounds: {outcomes:?}");
}

/// Start `bpg branch prod dev` with `BETTERPG_FAULT=<fault>` and wait until
/// it says it is pausing there.
fn branch_paused_at(env: &TestEnv, fault: &str) -> std::process::Child {
    require_fault_injection();
    let mut c = Command::new(bpg_exe())
        .arg("--home")
        .arg(&env.home)
        .args(["branch", "prod", "dev"])
        .env("BETTERPG_FAULT", fault)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn bpg");
    let step = fault.split(':').next().unwrap();
    let mut err = std::io::BufReader::new(c.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        let n = std::io::BufRead::read_line(&mut err, &mut line).unwrap();
        assert!(n > 0, "bpg branch ended before pausing at {step}");
        if line.contains("pausing at") && line.contains(step) {
            break;
        }
    }
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    c
}

#[test]
fn destroy_refuses_while_a_branch_of_it_is_being_made() {
    let env = setup();
    let bpg = Bpg::of(&env);
    bpg.ok(&["create", "prod"]);
    // The branch has its clone and is still working.
    let b = branch_paused_at(&env, "after_clone:sleep=4");
    let err = bpg.fails(&["destroy", "prod", "--force"]);
    assert!(
        err.contains("being made") && err.contains("dev"),
        "destroy while dev is being made: {err}"
    );
    let p = entry_state(&bpg, "prod").expect("prod is still there");
    assert_eq!(p["state"], "ready", "{p}");
    assert_eq!(p["status"], "running", "{p}");
    let b = b.wait_with_output().unwrap();
    assert!(b.status.success(), "the branch finishes: {b:?}");
    assert_eq!(entry_state(&bpg, "dev").unwrap()["status"], "running");
    assert_consistent(&env);
    // Now that it is made, --force takes both.
    bpg.ok(&["destroy", "prod", "--force"]);
    assert!(catalog_entries(&env).is_empty());
    let dry = bpg.json(&["gc", "--dry-run"]);
    assert_eq!(dry["items"], serde_json::json!([]), "{dry}");
}

#[test]
fn a_branch_needs_a_ready_parent_when_it_reserves_its_name() {
    let env = setup();
    let bpg = Bpg::of(&env);
    bpg.ok(&["create", "prod"]);
    // The branch has checked its source and not yet reserved its name ...
    let b = branch_paused_at(&env, "before_reserve:sleep=4");
    // ... when a destroy of prod begins (prod `destroying` by a live
    // process: this test's own, which does nothing more).
    let cat_path = env.home.join("catalog.json");
    let mut cat: Value =
        serde_json::from_str(&std::fs::read_to_string(&cat_path).unwrap()).unwrap();
    let me = std::process::id();
    cat["entries"]["prod"]["state"] = "destroying".into();
    cat["entries"]["prod"]["pid"] = me.into();
    cat["entries"]["prod"]["pid_start"] = start_time(me).into();
    std::fs::write(&cat_path, serde_json::to_string_pretty(&cat).unwrap()).unwrap();
    let o = b.wait_with_output().unwrap();
    assert!(
        !o.status.success(),
        "branch of a source being destroyed must fail"
    );
    assert!(entry_state(&bpg, "dev").is_none(), "dev was recorded");
    let names = zfs_owned(&env.pool);
    assert!(
        !names.iter().any(|n| n.0.contains("dev")),
        "the branch left {names:?}"
    );
    // Back to ready: everything consistent, nothing for gc.
    cat["entries"]["prod"]["state"] = "ready".into();
    std::fs::write(&cat_path, serde_json::to_string_pretty(&cat).unwrap()).unwrap();
    assert_consistent(&env);
    let dry = bpg.json(&["gc", "--dry-run"]);
    assert_eq!(dry["items"], serde_json::json!([]), "{dry}");
}

/// Field 22 of /proc/PID/stat: the process start time, in clock ticks
/// since boot.
fn start_time(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &s[s.rfind(')').unwrap() + 2..];
    rest.split_whitespace().nth(19).unwrap().parse().unwrap()
}

/// Kills the child on drop (also when the test fails).
struct Sleeper(std::process::Child);
impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_reused_pid_does_not_keep_an_entry_creating() {
    let env = setup();
    let bpg = Bpg::of(&env);
    bpg.ok(&["create", "prod"]);
    // An unrelated live process: its pid stands for a reused pid.
    let sleeper = Sleeper(Command::new("sleep").arg("600").spawn().unwrap());
    let pid = sleeper.0.id();
    let started = start_time(pid);

    let cat_path = env.home.join("catalog.json");
    let mut cat: Value =
        serde_json::from_str(&std::fs::read_to_string(&cat_path).unwrap()).unwrap();
    let prod = cat["entries"]["prod"].clone();
    let root = format!("{}/betterpg", env.pool);
    let mut add = |name: &str, port: u16, start: Option<u64>| {
        let mut e = prod.clone();
        e["name"] = name.into();
        e["dataset"] = format!("{root}/{name}").into();
        e["port"] = port.into();
        e["state"] = "creating".into();
        e["pid"] = pid.into();
        match start {
            Some(s) => e["pid_start"] = s.into(),
            None => {
                e.as_object_mut().unwrap().remove("pid_start");
            }
        }
        cat["entries"][name] = e;
    };
    let (_, hi) = env.ports;
    // The pid is alive, but it is another process than the one that
    // recorded the entry: its start time differs.
    add("ghost", hi, Some(started + 1000));
    add("ghost2", hi - 1, Some(started + 7));
    // Really that process (the start time matches): a live operation.
    add("alive", hi - 2, Some(started));
    // Written by an older betterpg: no start time, so the pid alone counts.
    add("old", hi - 3, None);
    std::fs::write(&cat_path, serde_json::to_string_pretty(&cat).unwrap()).unwrap();

    assert_eq!(entry_state(&bpg, "ghost").unwrap()["state"], "incomplete");
    assert_eq!(entry_state(&bpg, "alive").unwrap()["state"], "creating");
    assert_eq!(entry_state(&bpg, "old").unwrap()["state"], "creating");

    // destroy (without --force) removes the dead entry ...
    bpg.ok(&["destroy", "ghost"]);
    assert!(entry_state(&bpg, "ghost").is_none());
    // ... and refuses the live one.
    let err = bpg.fails(&["destroy", "alive", "--force"]);
    assert!(err.contains("being changed by process"), "{err}");

    // gc removes the dead entry, keeps the live ones.
    let dry = bpg.json(&["gc", "--dry-run"]);
    let listed: Vec<&str> = dry["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(listed, vec!["ghost2"], "{dry}");
    bpg.json(&["gc"]);
    let names: Vec<String> = catalog_entries(&env).into_iter().map(|e| e.0).collect();
    assert_eq!(names, vec!["alive", "old", "prod"]);

    // Once the process is gone, both are incomplete and go.
    drop(sleeper);
    assert_eq!(entry_state(&bpg, "alive").unwrap()["state"], "incomplete");
    bpg.json(&["gc"]);
    let names: Vec<String> = catalog_entries(&env).into_iter().map(|e| e.0).collect();
    assert_eq!(names, vec!["prod"]);
    assert_consistent(&env);
}
