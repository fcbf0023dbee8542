//! Isolation items 4 and 11 (docs/safety.md, "Isolation from the source").
//!
//! 4. gc and destroy take only what betterpg made: a snapshot an operator
//!    took by hand (or sanoid's `autosnap_…`) of a database, or a child
//!    dataset made under it, inherits the database's `betterpg:*` ZFS
//!    properties, but is never destroyed by `gc` and never makes `gc` stop
//!    the database; `bpg destroy` of a database carrying them is refused
//!    unless `--force`, naming them. A `destroy --force` of a chain of
//!    branches killed midway is finished by `gc` (deepest clone first).
//! 11. A missing password file does not block `stop`, `status` or
//!     `destroy`; what needs to log in says which file is missing.
//!
//! Real ZFS, real PostgreSQL 15, the real `bpg` binary.

use std::process::Command;

use betterpg_testkit::*;
use serde_json::Value;

fn setup() -> TestEnv {
    TestEnv::initialized("bpgha")
}

/// Every dataset and snapshot of the pool.
fn zfs_names(pool: &str) -> Vec<String> {
    let out = Command::new("zfs")
        .args(["list", "-H", "-r", "-t", "all", "-o", "name", pool])
        .output()
        .expect("zfs list");
    assert!(out.status.success(), "zfs list {pool}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

fn zfs(args: &[&str]) {
    let o = Command::new("zfs").args(args).output().expect("run zfs");
    assert!(
        o.status.success(),
        "zfs {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn status_of(bpg: &Bpg, name: &str) -> Value {
    let all = bpg.status_json(&["status"]);
    all.as_array()
        .expect("status array")
        .iter()
        .find(|i| i["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} missing from status: {all}"))
}

/// A pid that no process has (a child that already exited).
fn dead_pid() -> u32 {
    let mut c = Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

#[test]
fn gc_and_destroy_leave_what_an_operator_made() {
    let env = setup();
    let bpg = Bpg::of(&env);
    bpg.ok(&["create", "prod"]);
    bpg.ok(&["branch", "prod", "dev"]);
    let root = format!("{}/betterpg", env.pool);
    let prod = format!("{root}/prod");
    let manual = format!("{prod}@manual");
    let sanoid = format!("{prod}@autosnap_2026-01-01_00:00:00_daily");
    let child = format!("{prod}/extra");
    let dev_snap = format!("{root}/_branches/dev@by-hand");
    zfs(&["snapshot", &manual]);
    zfs(&["snapshot", &sanoid]);
    zfs(&["create", &child]);
    zfs(&["snapshot", &dev_snap]);

    // gc sees nothing of ours to collect: the operator's things inherit
    // betterpg:managed/name/home from prod, but are not betterpg's.
    let dry = bpg.json(&["gc", "--dry-run"]);
    assert_eq!(dry["items"], serde_json::json!([]), "gc --dry-run: {dry}");
    let real = bpg.json(&["gc"]);
    assert_eq!(real["items"], serde_json::json!([]), "gc: {real}");
    let names = zfs_names(&env.pool);
    for n in [&manual, &sanoid, &child, &dev_snap] {
        assert!(names.contains(n), "gc destroyed {n}: {names:?}");
    }
    assert_eq!(
        status_of(&bpg, "prod")["status"],
        "running",
        "gc stopped prod"
    );
    assert_eq!(
        status_of(&bpg, "dev")["status"],
        "running",
        "gc stopped dev"
    );

    // destroy of the branch carrying a hand-made snapshot: refused, named.
    let err = bpg.fails(&["destroy", "dev"]);
    assert!(err.contains(&dev_snap), "destroy dev: {err}");
    assert!(zfs_names(&env.pool).contains(&dev_snap));
    assert_eq!(status_of(&bpg, "dev")["status"], "running");
    // destroy of prod (without --force): refused, naming every foreign
    // thing (and the branch), nothing changed.
    let err = bpg.fails(&["destroy", "prod"]);
    for n in [&manual, &sanoid, &child] {
        assert!(
            err.contains(n.as_str()),
            "destroy prod must name {n}: {err}"
        );
    }
    assert!(err.contains("dev"), "{err}");
    let names = zfs_names(&env.pool);
    for n in [&manual, &sanoid, &child, &dev_snap, &prod] {
        assert!(names.contains(n), "a refused destroy removed {n}");
    }
    assert_eq!(status_of(&bpg, "prod")["status"], "running");
    assert_consistent_ignoring(&env, &[&manual, &sanoid, &child, &dev_snap]);

    // --force: asked for explicitly, everything goes.
    bpg.ok(&["destroy", "prod", "--force"]);
    let names = zfs_names(&env.pool);
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with(&prod) || n.contains("/dev")),
        "left after destroy --force: {names:?}"
    );
    let dry = bpg.json(&["gc", "--dry-run"]);
    assert_eq!(dry["items"], serde_json::json!([]), "{dry}");
}

/// assert_consistent, except for things an operator made on purpose.
fn assert_consistent_ignoring(env: &TestEnv, foreign: &[&String]) {
    let bpg = Bpg::of(env);
    for i in bpg.status_json(&["status"]).as_array().unwrap() {
        assert_eq!(i["state"], "ready", "{i}");
    }
    let zfs = zfs_owned(&env.pool);
    let status = bpg.status_json(&["status"]);
    let infos = status.as_array().unwrap();
    let root = format!("{}/betterpg", env.pool);
    for (name, kind, _, _) in &zfs {
        if name == &env.pool
            || name == &root
            || name == &format!("{root}/_branches")
            || foreign.contains(&name)
        {
            continue;
        }
        assert!(
            infos.iter().any(
                |i| i["dataset"].as_str() == Some(name) || i["snapshot"].as_str() == Some(name)
            ),
            "stray {kind} {name}"
        );
    }
}

#[test]
fn gc_finishes_a_killed_destroy_of_a_branch_chain() {
    let env = setup();
    let bpg = Bpg::of(&env);
    bpg.ok(&["create", "prod"]);
    // A chain of clones whose names sort opposite to the order they must
    // go in: "z2" is a clone of a clone of "a1".
    bpg.ok(&["branch", "prod", "a1"]);
    bpg.ok(&["branch", "a1", "m1"]);
    bpg.ok(&["branch", "m1", "z2"]);
    // The state `bpg destroy prod --force` leaves when killed right after
    // marking its victims: every entry `destroying` by a dead process.
    let cat_path = env.home.join("catalog.json");
    let mut cat: Value =
        serde_json::from_str(&std::fs::read_to_string(&cat_path).unwrap()).unwrap();
    let pid = dead_pid();
    for (_, e) in cat["entries"].as_object_mut().unwrap() {
        e["state"] = "destroying".into();
        e["pid"] = pid.into();
    }
    std::fs::write(&cat_path, serde_json::to_string_pretty(&cat).unwrap()).unwrap();

    let dry = bpg.json(&["gc", "--dry-run"]);
    let datasets: Vec<&str> = dry["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["what"] == "dataset")
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    let root = format!("{}/betterpg", env.pool);
    assert_eq!(
        datasets,
        vec![
            format!("{root}/_branches/z2"),
            format!("{root}/_branches/m1"),
            format!("{root}/_branches/a1"),
            format!("{root}/prod"),
        ],
        "gc must remove clones deepest first: {dry}"
    );
    let real = bpg.json(&["gc"]);
    let removed: Vec<&str> = real["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["what"] == "dataset")
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(removed, datasets, "the dry run listed what gc did: {real}");
    let left: Vec<String> = zfs_names(&env.pool)
        .into_iter()
        .filter(|n| n.starts_with(&format!("{root}/")) && n != &format!("{root}/_branches"))
        .collect();
    assert!(left.is_empty(), "gc left {left:?}");
    assert!(
        catalog_entries(&env).is_empty(),
        "{:?}",
        catalog_entries(&env)
    );
    let (a, b) = env.ports;
    for port in a..=b {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "something still listens on {port}"
        );
    }
    let dry = bpg.json(&["gc", "--dry-run"]);
    assert_eq!(dry["items"], serde_json::json!([]), "{dry}");
}

#[test]
fn destroy_run_again_finishes_a_killed_destroy() {
    let env = setup();
    let bpg = Bpg::of(&env);
    bpg.ok(&["create", "prod"]);
    bpg.ok(&["branch", "prod", "z1"]);
    bpg.ok(&["branch", "z1", "a2"]);
    // Killed after the deepest branch went: a2's entry and clone are gone,
    // z1 and prod are left `destroying` by a dead process.
    bpg.ok(&["destroy", "a2"]);
    let cat_path = env.home.join("catalog.json");
    let mut cat: Value =
        serde_json::from_str(&std::fs::read_to_string(&cat_path).unwrap()).unwrap();
    let pid = dead_pid();
    for (_, e) in cat["entries"].as_object_mut().unwrap() {
        e["state"] = "destroying".into();
        e["pid"] = pid.into();
    }
    std::fs::write(&cat_path, serde_json::to_string_pretty(&cat).unwrap()).unwrap();
    bpg.ok(&["destroy", "prod", "--force"]);
    assert!(catalog_entries(&env).is_empty());
    let root = format!("{}/betterpg", env.pool);
    let left: Vec<String> = zfs_names(&env.pool)
        .into_iter()
        .filter(|n| n.starts_with(&format!("{root}/")) && n != &format!("{root}/_branches"))
        .collect();
    assert!(left.is_empty(), "destroy left {left:?}");
    let dry = bpg.json(&["gc", "--dry-run"]);
    assert_eq!(dry["items"], serde_json::json!([]), "{dry}");
}

#[test]
fn a_missing_password_file_does_not_block_stop_status_or_destroy() {
    let env = setup();
    let bpg = Bpg::of(&env);
    bpg.ok(&["create", "prod"]);
    bpg.ok(&["create", "other"]);
    let secret = env.home.join("secrets").join("prod");
    let other_secret = env.home.join("secrets").join("other");
    std::fs::remove_file(&secret).unwrap();
    std::fs::remove_file(&other_secret).unwrap();

    // status still sees the running server.
    let s = status_of(&bpg, "prod");
    assert_eq!(s["status"], "running", "{s}");
    assert_eq!(s["state"], "ready", "{s}");
    let text = bpg.ok(&["status"]);
    assert!(text.contains("prod") && text.contains("running"), "{text}");
    // stop works and really stops it.
    let port = s["port"].as_u64().unwrap() as u16;
    bpg.ok(&["stop", "prod"]);
    assert_eq!(status_of(&bpg, "prod")["status"], "stopped");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    // What must log in says which file is missing and how to restore it.
    let err = bpg.fails(&["start", "prod"]);
    assert!(
        err.contains(&secret.display().to_string()) && err.to_lowercase().contains("restore"),
        "start without the password file: {err}"
    );

    // destroy of a running server without its password file: gone, port free.
    let o = status_of(&bpg, "other");
    assert_eq!(o["status"], "running", "{o}");
    let oport = o["port"].as_u64().unwrap() as u16;
    bpg.ok(&["destroy", "other"]);
    assert!(std::net::TcpStream::connect(("127.0.0.1", oport)).is_err());
    assert!(!zfs_names(&env.pool).iter().any(|n| n.ends_with("/other")));
    bpg.ok(&["destroy", "prod"]);
    assert!(catalog_entries(&env).is_empty());
    let dry = bpg.json(&["gc", "--dry-run"]);
    assert_eq!(dry["items"], serde_json::json!([]), "{dry}");
}
