//! `bpg branch --owner-pid PID` and `bpg gc`: real ZFS, real PostgreSQL
//! 15, the real `bpg` binary, real processes as owners.
//!
//! While its owner runs, a branch is kept like any other; once the owner
//! is gone, `gc` destroys it (its owned branches first) as `destroy`
//! would, lists it with `--dry-run` without touching it, never takes a
//! protected one, and keeps (with why) one whose branches live on. A pid
//! that names no process is refused before anything is made.

use std::process::{Child, Command};

use betterpg_testkit::*;

fn owner() -> Child {
    Command::new("sleep")
        .arg("600")
        .spawn()
        .expect("spawn sleep")
}

fn end(mut c: Child) {
    c.kill().unwrap();
    c.wait().unwrap();
}

fn names(items: &serde_json::Value) -> Vec<String> {
    items
        .as_array()
        .expect("a list")
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_destroys_the_branches_whose_owner_is_gone() {
    default_port_base(51200);
    let env = TestEnv::initialized("bpgow");
    let bpg = Bpg::of(&env);
    bpg.ok(&["create", "prod"]);

    // Refused before anything is made: no such process, pid 0.
    let before = state_of(&env);
    let err = bpg.fails(&["branch", "prod", "x", "--owner-pid", "999999999"]);
    assert!(err.contains("999999999"), "{err}");
    bpg.fails(&["branch", "prod", "x", "--owner-pid", "0"]);
    assert_eq!(state_of(&env), before);

    let run = owner();
    let pid = run.id().to_string();
    let a = bpg.json(&["branch", "prod", "a", "--owner-pid", &pid]);
    assert_eq!(
        a["branch"]["owner_pid"].as_u64(),
        Some(run.id() as u64),
        "{a}"
    );
    let a_port = a["branch"]["port"].as_u64().unwrap() as u16;
    bpg.ok(&["branch", "a", "a2", "--owner-pid", &pid]);
    bpg.ok(&["branch", "prod", "prot", "--owner-pid", &pid]);
    bpg.ok(&["protect", "prot"]);
    bpg.ok(&["branch", "prod", "plain"]);
    assert_eq!(bpg.entry("plain")["owner_pid"], serde_json::Value::Null);
    let text = bpg.ok(&["status"]);
    assert!(text.contains(&format!("owner pid {pid}")), "{text}");
    let run2 = owner();
    let pid2 = run2.id().to_string();
    bpg.ok(&["branch", "prod", "b", "--owner-pid", &pid2]);
    bpg.ok(&["branch", "b", "bchild"]);

    // Owners alive: gc keeps everything.
    let gc = bpg.json(&["gc"]);
    assert!(names(&gc["items"]).is_empty(), "{gc}");
    for n in ["a", "a2", "prot", "plain", "b", "bchild"] {
        assert_eq!(bpg.entry(n)["status"], "running", "{n}");
    }

    end(run);
    end(run2);
    // A dry run lists what goes, changes nothing.
    let before = state_of(&env);
    let dry = bpg.json(&["gc", "--dry-run"]);
    let listed = names(&dry["items"]);
    for n in ["a", "a2", "b"] {
        assert!(listed.contains(&n.to_string()), "{n} not listed: {dry}");
    }
    assert!(!listed.contains(&"prot".to_string()), "{dry}");
    assert!(!listed.contains(&"plain".to_string()), "{dry}");
    assert_eq!(state_of(&env), before);

    let gc = bpg.json(&["gc"]);
    let gone = names(&gc["items"]);
    assert!(gone.contains(&"a".to_string()), "{gc}");
    assert!(gone.contains(&"a2".to_string()), "{gc}");
    let item = gc["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "a")
        .unwrap();
    assert_eq!(item["what"], "branch", "{gc}");
    assert!(
        item["reason"].as_str().unwrap().contains(&pid),
        "the reason names the owner: {gc}"
    );
    // b has a branch that lives on: kept, and gc says why.
    let kept = gc["kept"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "b")
        .unwrap_or_else(|| panic!("b not in kept: {gc}"));
    assert!(kept["reason"].as_str().unwrap().contains("bchild"), "{gc}");

    let status = bpg.status_json(&["status"]);
    let left: Vec<&str> = status
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["name"].as_str()).collect())
        .unwrap_or_default();
    for n in ["a", "a2"] {
        assert!(!left.contains(&n), "{n} still listed: {status}");
    }
    for n in ["prot", "plain", "b", "bchild"] {
        assert_eq!(bpg.entry(n)["status"], "running", "{n}");
    }
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", a_port)).is_err(),
        "a's server still listens"
    );
    let tree = zfs_tree(&env.pool);
    assert!(
        !tree.iter().any(|d| d.ends_with("/a") || d.ends_with("/a2")),
        "{tree:?}"
    );
    assert_consistent(&env);

    // Once b's branch is gone, the next gc takes b.
    bpg.ok(&["destroy", "bchild"]);
    let gc = bpg.json(&["gc"]);
    assert_eq!(names(&gc["items"]), ["b"], "{gc}");
    bpg.ok(&["unprotect", "prot"]);
    let gc = bpg.json(&["gc"]);
    assert_eq!(names(&gc["items"]), ["prot"], "{gc}");
    assert_consistent(&env);

    // The daemon's pass does the same (action owner_gone): a dry run
    // first, which changes nothing.
    let run3 = owner();
    let pid3 = run3.id().to_string();
    bpg.ok(&["branch", "prod", "c", "--owner-pid", &pid3]);
    let pass = bpg.json(&["daemon", "--once"]);
    assert!(
        !pass.to_string().contains("owner_gone"),
        "owner alive: {pass}"
    );
    end(run3);
    let dry = bpg.json(&["daemon", "--once", "--dry-run"]);
    let acted = |p: &serde_json::Value, result: &str| {
        p["actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "owner_gone" && a["name"] == "c" && a["result"] == result)
    };
    assert!(acted(&dry, "dry_run"), "{dry}");
    assert_eq!(bpg.entry("c")["status"], "running");
    let pass = bpg.json(&["daemon", "--once"]);
    assert!(acted(&pass, "done"), "{pass}");
    let left = bpg.json(&["status"]);
    assert!(
        !left["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "c"),
        "{left}"
    );
    assert_consistent(&env);
}
