//! `bpg branch --rewindable` and `bpg rewind` end to end: real ZFS, real
//! PostgreSQL 15, the real `bpg` binary.
//!
//! A rewindable branch carries a rewind point (a snapshot taken as it was
//! made); `rewind` rolls it back to it under the same name, port, URL and
//! password, whatever was written since, running or stopped, as often as
//! asked. Refused (nothing changed) for a branch without a point, a
//! database, a protected branch and one with a named snapshot or a branch
//! of its own; `gc` keeps the point, `destroy` takes it, `reset` takes a
//! new one; the home stays consistent throughout.

use betterpg_testkit::*;

async fn count(url: &str, sql: &str) -> i64 {
    let c = connect(url).await;
    query_i64(&c, sql).await
}

async fn exec(url: &str, sql: &str) {
    connect(url).await.batch_execute(sql).await.unwrap();
}

fn steps(report: &serde_json::Value) -> Vec<String> {
    report["timings"]
        .as_array()
        .expect("timings")
        .iter()
        .map(|t| t["step"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewindable_branch_rewinds_to_how_it_was_made() {
    default_port_base(50200);
    let env = TestEnv::initialized("bpgrw");
    let bpg = Bpg::of(&env);
    bpg.ok(&["create", "prod"]);
    let prod_url = bpg.entry("prod")["url"].as_str().unwrap().to_string();
    exec(
        &prod_url,
        "CREATE TABLE t (x int); INSERT INTO t SELECT generate_series(1, 100)",
    )
    .await;

    let made = bpg.json(&["branch", "prod", "dev", "--rewindable"]);
    assert_eq!(made["branch"]["rewindable"], true, "{made}");
    assert!(
        steps(&made).contains(&"rewind_point".to_string()),
        "the report times the rewind point: {made}"
    );
    let url = made["branch"]["url"].as_str().unwrap().to_string();
    let port = made["branch"]["port"].as_u64().unwrap();
    let dataset = made["branch"]["dataset"].as_str().unwrap().to_string();
    assert!(
        zfs_tree(&env.pool).contains(&format!("{dataset}@bpgrewind-dev")),
        "{:?}",
        zfs_tree(&env.pool)
    );
    // A plain branch has none.
    bpg.ok(&["branch", "prod", "plain"]);
    assert_eq!(bpg.entry("plain")["rewindable"], false);
    assert_eq!(bpg.entry("dev")["rewindable"], true);
    assert_consistent(&env);

    // Written after the point: thrown away by the rewind.
    exec(
        &url,
        "DELETE FROM t WHERE x > 10; CREATE TABLE junk (y int); INSERT INTO junk VALUES (1)",
    )
    .await;
    assert_eq!(count(&url, "SELECT count(*) FROM t").await, 10);
    let log = bpg.ok(&["logs", "dev"]);
    assert!(!log.contains("immediate shutdown"), "{log}");
    let r = bpg.json(&["rewind", "dev"]);
    assert_eq!(r["branch"]["name"], "dev", "{r}");
    assert_eq!(r["branch"]["status"], "running", "{r}");
    assert_eq!(r["branch"]["port"].as_u64().unwrap(), port, "same port");
    assert_eq!(r["branch"]["url"].as_str().unwrap(), url, "same URL");
    assert_eq!(r["snapshot"], "bpgrewind-dev", "{r}");
    assert_eq!(steps(&r), ["check", "stop", "rollback", "start"], "{r}");
    // The server's data is rolled back, so it is stopped without a
    // shutdown checkpoint (immediate shutdown), not a fast one that writes
    // every dirty buffer first.
    let log = bpg.ok(&["logs", "dev"]);
    assert!(
        log.contains("received immediate shutdown request"),
        "the rewind stops the server immediately: {log}"
    );
    let sum: f64 = r["timings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["millis"].as_f64().unwrap())
        .sum();
    let total = r["total_millis"].as_f64().unwrap();
    assert!(
        (sum - total).abs() <= total * 0.05 + 1.0,
        "steps {sum} vs total {total}"
    );
    assert_eq!(count(&url, "SELECT count(*) FROM t").await, 100);
    assert_eq!(
        count(
            &url,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'junk'"
        )
        .await,
        0
    );
    // The source was not touched.
    assert_eq!(count(&prod_url, "SELECT count(*) FROM t").await, 100);

    // Again, from a stopped server, and with the text output.
    exec(&url, "TRUNCATE t").await;
    bpg.ok(&["stop", "dev"]);
    let out = bpg.ok(&["rewind", "dev"]);
    assert!(out.contains("rewound dev"), "{out}");
    assert!(out.contains(&url), "{out}");
    assert_eq!(count(&url, "SELECT count(*) FROM t").await, 100);
    assert_eq!(bpg.entry("dev")["status"], "running");

    // Refused, changing nothing: no rewind point, a database, a missing
    // name, a bad name.
    exec(
        bpg.entry("plain")["url"].as_str().unwrap(),
        "INSERT INTO t VALUES (0)",
    )
    .await;
    let before = state_of(&env);
    let err = bpg.fails(&["rewind", "plain"]);
    assert!(err.contains("--rewindable"), "{err}");
    let err = bpg.fails(&["rewind", "prod"]);
    assert!(err.contains("not a branch"), "{err}");
    let err = bpg.fails(&["rewind", "nosuch"]);
    assert!(err.contains("nosuch"), "{err}");
    bpg.fails(&["rewind", "../dev"]);
    assert_eq!(state_of(&env), before);
    assert_eq!(
        count(
            bpg.entry("plain")["url"].as_str().unwrap(),
            "SELECT count(*) FROM t"
        )
        .await,
        101
    );

    // Protected: refused.
    exec(&url, "INSERT INTO t VALUES (0)").await;
    bpg.ok(&["protect", "dev"]);
    let err = bpg.fails(&["rewind", "dev"]);
    assert!(err.contains("protected"), "{err}");
    bpg.ok(&["unprotect", "dev"]);
    // A named snapshot of it (newer than the point): refused, says what
    // to do; after the snapshot is gone it works.
    bpg.ok(&["snapshot", "dev", "--name", "keep"]);
    let err = bpg.fails(&["rewind", "dev"]);
    assert!(err.contains("dev@keep"), "{err}");
    assert_eq!(count(&url, "SELECT count(*) FROM t").await, 101);
    assert_eq!(bpg.entry("dev")["status"], "running");
    bpg.ok(&["snapshot", "destroy", "dev@keep"]);
    // A branch of it: refused the same way.
    bpg.ok(&["branch", "dev", "child"]);
    let err = bpg.fails(&["rewind", "dev"]);
    assert!(err.contains("child"), "{err}");
    bpg.ok(&["destroy", "child"]);
    bpg.ok(&["rewind", "dev"]);
    assert_eq!(count(&url, "SELECT count(*) FROM t").await, 100);

    // gc keeps the point; the home is consistent.
    let gc = bpg.json(&["gc"]);
    assert!(
        !gc.to_string().contains("bpgrewind"),
        "gc must keep the rewind point: {gc}"
    );
    assert!(zfs_tree(&env.pool).contains(&format!("{dataset}@bpgrewind-dev")));
    assert_consistent(&env);

    // reset: a new rewind point, of the parent's current state.
    exec(&prod_url, "INSERT INTO t VALUES (1000)").await;
    let reset = bpg.json(&["reset", "dev"]);
    assert_eq!(reset["branch"]["rewindable"], true, "{reset}");
    assert!(
        steps(&reset).contains(&"rewind_point".to_string()),
        "{reset}"
    );
    exec(&url, "TRUNCATE t").await;
    bpg.ok(&["rewind", "dev"]);
    assert_eq!(count(&url, "SELECT count(*) FROM t").await, 101);
    // reset --rewindable gives a plain branch a point.
    let reset = bpg.json(&["reset", "plain", "--rewindable"]);
    assert_eq!(reset["branch"]["rewindable"], true, "{reset}");
    assert_consistent(&env);

    // Every rewind is in the audit log, failures too.
    let audit = bpg.json(&["audit"]);
    let rewinds: Vec<&serde_json::Value> = audit["events"]
        .as_array()
        .unwrap_or_else(|| panic!("{audit}"))
        .iter()
        .filter(|e| e["operation"] == "rewind")
        .collect();
    assert!(
        rewinds
            .iter()
            .any(|e| e["branch"] == "dev" && e["result"] == "ok"),
        "{audit}"
    );
    assert!(
        rewinds
            .iter()
            .any(|e| e["branch"] == "plain" && e["result"] == "error"),
        "{audit}"
    );

    // A rewind point destroyed outside betterpg: refused, the branch is
    // neither stopped nor changed.
    let plain_ds = bpg.entry("plain")["dataset"].as_str().unwrap().to_string();
    let plain_url = bpg.entry("plain")["url"].as_str().unwrap().to_string();
    exec(&plain_url, "INSERT INTO t VALUES (-1)").await;
    let zfs = std::process::Command::new("zfs")
        .args(["destroy", &format!("{plain_ds}@bpgrewind-plain")])
        .status()
        .unwrap();
    assert!(zfs.success());
    let err = bpg.fails(&["rewind", "plain"]);
    assert!(err.contains("missing"), "{err}");
    assert_eq!(bpg.entry("plain")["status"], "running");
    assert_eq!(
        count(&plain_url, "SELECT count(*) FROM t WHERE x = -1").await,
        1
    );

    // destroy takes the point with the branch.
    bpg.ok(&["destroy", "dev"]);
    bpg.ok(&["destroy", "plain"]);
    let tree = zfs_tree(&env.pool);
    assert!(
        !tree.iter().any(|n| n.contains("bpgrewind")),
        "rewind point left behind: {tree:?}"
    );
    assert_consistent(&env);
}
