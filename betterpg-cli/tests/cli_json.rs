//! `docs/cli-json.md` against real output: every `--json` shape it shows is
//! what the command prints (same keys at every level, same JSON types), and
//! its exit-status table is the error kinds' (so the page cannot drift).

use std::collections::BTreeMap;

use serde_json::Value;

use betterpg_testkit::*;

/// The examples of the page by their `<!-- check: NAME -->` mark.
fn examples() -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let mut rest = CLI_JSON;
    while let Some(i) = rest.find("<!-- check: ") {
        rest = &rest[i + "<!-- check: ".len()..];
        let name = rest[..rest.find(" -->").expect("mark ends")].to_string();
        let start = rest.find("```json\n").expect("a json block after the mark") + 8;
        let end = start + rest[start..].find("```").expect("block ends");
        let v: Value = serde_json::from_str(&rest[start..end])
            .unwrap_or_else(|e| panic!("example {name} is not JSON: {e}"));
        assert!(out.insert(name.clone(), v).is_none(), "{name} twice");
        rest = &rest[end..];
    }
    out
}

#[test]
fn the_shape_check_catches_drift() {
    let doc: Value = serde_json::json!({"a": 1, "b": [{"c": "x"}], "d": null});
    let same = serde_json::json!({"a": 2, "b": [{"c": "y"}, {"c": "z"}], "d": {"e": 1}});
    assert_eq!(shape_mismatch("", &doc, &same), None);
    let renamed = serde_json::json!({"a": 2, "b": [], "dd": null});
    assert!(shape_mismatch("", &doc, &renamed).unwrap().contains("keys"));
    let retyped = serde_json::json!({"a": "2", "b": [], "d": null});
    assert!(shape_mismatch("", &doc, &retyped).unwrap().contains(".a"));
    let inner = serde_json::json!({"a": 1, "b": [{"c": "x", "new": 1}], "d": null});
    assert!(shape_mismatch("", &doc, &inner).unwrap().contains(".b[0]"));
}

#[test]
fn the_exit_status_table_is_the_error_kinds() {
    let rows: Vec<(String, u32, u8)> = CLI_JSON
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let c: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            (
                c[0].trim_matches('`').to_string(),
                c[1].parse().unwrap(),
                c[2].parse().unwrap(),
            )
        })
        .collect();
    let kinds: Vec<(String, u32, u8)> = betterpg_core::Error::KINDS
        .iter()
        .map(|&(code, name)| {
            let exit = if code == 99 { 1 } else { (code + 9) as u8 };
            (name.to_string(), code, exit)
        })
        .collect();
    assert_eq!(rows, kinds, "docs/cli-json.md's exit status table");
}

#[test]
fn every_documented_shape_is_what_bpg_prints() {
    let env = TestEnv::plan("bpgj");
    let bpg = Bpg::of(&env);
    let mut got: BTreeMap<String, Value> = BTreeMap::new();
    let init = init_args(&env, &env.pool_file, "1G");
    let init: Vec<&str> = init.iter().map(String::as_str).collect();
    got.insert("init".into(), bpg.json(&init));
    got.insert("create".into(), bpg.json(&["create", "prod"]));
    got.insert("branch".into(), bpg.json(&["branch", "prod", "dev"]));
    got.insert("reset".into(), bpg.json(&["reset", "dev", "--fast"]));
    bpg.ok(&["branch", "prod", "rw", "--rewindable"]);
    got.insert("rewind".into(), bpg.json(&["rewind", "rw"]));
    bpg.ok(&["destroy", "rw"]);
    got.insert("status".into(), bpg.json(&["status"]));
    got.insert("status-name".into(), bpg.json(&["status", "dev"]));
    got.insert("url".into(), bpg.json(&["url", "dev"]));
    got.insert(
        "config".into(),
        bpg.json(&["config", "dev", "--ttl", "8h", "--keep-last", "3"]),
    );
    got.insert("stop".into(), bpg.json(&["stop", "dev"]));
    got.insert("start".into(), bpg.json(&["start", "dev"]));
    got.insert(
        "snapshot".into(),
        bpg.json(&["snapshot", "prod", "--name", "before"]),
    );
    got.insert("snapshots".into(), bpg.json(&["snapshots"]));
    got.insert(
        "snapshot-prune".into(),
        bpg.json(&["snapshot", "--prune", "--dry-run"]),
    );
    got.insert(
        "snapshot-schedule".into(),
        bpg.json(&["snapshot", "--schedule", "--dry-run"]),
    );
    got.insert(
        "snapshot-destroy".into(),
        bpg.json(&["snapshot", "destroy", "prod@before"]),
    );
    got.insert("gc".into(), bpg.json(&["gc", "--dry-run"]));
    got.insert("doctor".into(), bpg.json(&["doctor"]));
    got.insert("protect".into(), bpg.json(&["protect", "dev"]));
    assert_eq!(got["protect"]["protected"], true);
    let refused = bpg.run(&["destroy", "dev", "--force"]);
    assert_eq!(refused.status.code(), Some(30), "protected");
    got.insert("unprotect".into(), bpg.json(&["unprotect", "dev"]));
    assert_eq!(got["unprotect"]["protected"], false);
    got.insert("destroy".into(), bpg.json(&["destroy", "dev"]));
    // A database that keeps its WAL (from its next start).
    bpg.ok(&["config", "prod", "--retain-wal", "1h"]);
    bpg.ok(&["stop", "prod"]);
    bpg.ok(&["start", "prod"]);
    got.insert("status-wal".into(), bpg.json(&["status", "prod"]));
    got.insert("audit".into(), bpg.json(&["audit"]));
    got.insert("mask-check".into(), bpg.json(&["mask-check", "prod"]));
    // A replica of a remote primary (in a network namespace), its status
    // and a branch of it.
    let primary = RemotePrimary::start("bpgj", 15);
    got.insert(
        "follow".into(),
        bpg.json(&[
            "follow",
            "rep",
            "--from",
            &primary.url_for(REPL_USER),
            "--slot",
            "bpgj_rep",
        ]),
    );
    got.insert("status-replica".into(), bpg.json(&["status", "rep"]));
    got.insert(
        "branch-replica".into(),
        bpg.json(&["branch", "rep", "repdev"]),
    );
    bpg.json(&["destroy", "repdev"]);
    bpg.json(&["destroy", "rep"]);
    assert_eq!(
        primary.psql("SELECT count(*) FROM pg_replication_slots"),
        "0",
        "destroy drops the slot follow created"
    );

    let doc = examples();
    assert_eq!(
        doc.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>(),
        "every documented shape is checked, and every checked output documented"
    );
    for (name, d) in &doc {
        if let Some(m) = shape_mismatch(name, d, &got[name]) {
            panic!(
                "docs/cli-json.md is out of date for {name}: {m}\nprinted: {:#}",
                got[name]
            );
        }
    }
    // `status` holds every entry and the pool of the text; `status NAME`
    // that entry only, with the same pool.
    assert_eq!(got["status"]["entries"].as_array().unwrap().len(), 2);
    assert_eq!(got["status-name"]["entries"].as_array().unwrap().len(), 1);
    assert_eq!(got["status-name"]["entries"][0]["name"], "dev");
    assert_eq!(
        got["status-name"]["pool"]["name"],
        got["status"]["pool"]["name"]
    );
    let text = bpg.ok(&["status"]);
    let pool = &got["status"]["pool"];
    assert!(
        text.contains(&format!("pool {}:", pool["name"].as_str().unwrap())),
        "{text}"
    );
    assert_eq!(
        pool["branches"]["headroom_percent"], 20,
        "the default headroom: {pool}"
    );

    // Exit statuses: the kind's code plus 9.
    let o = bpg.run(&["status", "nope"]);
    assert_eq!(o.status.code(), Some(12), "not_found");
    let o = Bpg {
        home: &env.home.join("none"),
    }
    .run(&["status"]);
    assert_eq!(o.status.code(), Some(14), "not_initialized");
    let o = bpg.run(&["create", "bad name"]);
    assert_eq!(o.status.code(), Some(10), "invalid_name");
    let o = bpg.run(&["--no-such-flag"]);
    assert_eq!(o.status.code(), Some(2), "usage");

    // `logs -f`: the tail, then what the server writes (here: its shutdown).
    let mut follow = std::process::Command::new(bpg_exe())
        .arg("--home")
        .arg(&env.home)
        .args(["logs", "prod", "-f", "--tail", "1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run bpg logs -f");
    let out = follow.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    let first = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the last line first");
    assert!(!first.is_empty());
    bpg.ok(&["stop", "prod"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut seen = Vec::new();
    while std::time::Instant::now() < deadline {
        match rx.recv_timeout(std::time::Duration::from_millis(500)) {
            Ok(l) if l.contains("database system is shut down") => {
                seen.push(l);
                break;
            }
            Ok(l) => seen.push(l),
            Err(_) => {}
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(
        seen.iter()
            .any(|l| l.contains("database system is shut down")),
        "bpg logs -f printed after the tail: {seen:?}"
    );
    bpg.ok(&["destroy", "prod", "--force"]);
}
