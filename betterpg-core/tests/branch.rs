//! End-to-end tests of the branch recipe against real ZFS and PostgreSQL 15.

use betterpg_testkit::*;

use betterpg_core::{BranchManager, BranchOptions, CreateOptions, Mode};

fn fast() -> BranchOptions {
    BranchOptions {
        mode: Mode::CrashConsistent,
        ..Default::default()
    }
}

async fn zfs_names(pool: &str) -> Vec<String> {
    let out = tokio::process::Command::new("zfs")
        .args(["get", "-r", "-H", "-o", "name", "type", pool])
        .output()
        .await
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

fn catalog_text(env: &TestEnv) -> String {
    std::fs::read_to_string(env.home.join("catalog.json")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_consistent_branch_under_writer_holds_every_acknowledged_commit() {
    let (_env, mgr) = TestEnv::new("bpgt").await;
    let prod = mgr.create("prod", CreateOptions::default()).await.unwrap();
    let writer = Writer::start(&prod.url).await;
    let acked = writer.acked();
    let report = mgr
        .branch("prod", "dev", BranchOptions::default())
        .await
        .unwrap();
    let written = writer.stop().await;
    assert_eq!(
        report.branch.mode,
        Some(betterpg_core::Mode::ApplicationConsistent)
    );
    assert!(report.source_was_running);
    let steps: Vec<&str> = report.timings.iter().map(|t| t.step).collect();
    // Every part of the call is a named step (the work before the recipe
    // and after the start too), each once.
    for s in [
        "reserve",
        "backup_start",
        "snapshot",
        "backup_stop",
        "clone",
        "chown",
        "prepare_clone",
        "wal_copy",
        "start",
        "catalog",
        "info",
    ] {
        assert!(steps.contains(&s), "missing step {s} in {steps:?}");
    }
    assert_eq!(steps.first(), Some(&"reserve"), "{steps:?}");
    assert_eq!(steps.last(), Some(&"info"), "{steps:?}");
    let unique: std::collections::BTreeSet<&str> = steps.iter().copied().collect();
    assert_eq!(unique.len(), steps.len(), "a step named twice: {steps:?}");
    let max = assert_prefix(&report.branch.url, acked).await;
    assert!(max <= written, "branch holds ids the source never wrote");
    let log = mgr.logs("dev", None).await.unwrap();
    assert!(
        log.contains("completed backup recovery"),
        "branch log:\n{log}"
    );
    assert!(
        log.contains("consistent recovery state reached"),
        "branch log:\n{log}"
    );
    // The source is out of backup mode and holds no slot of ours.
    let c = connect(&prod.url).await;
    let slots: i64 = query_i64(&c, "SELECT count(*) FROM pg_replication_slots").await;
    assert_eq!(slots, 0, "a replication slot was left on the source");
    let in_backup: bool = c
        .query_one(
            "SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'client backend' AND application_name = 'betterpg'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!in_backup, "betterpg's backup connection is still open");
    // The branch itself is writable.
    let b = connect(&report.branch.url).await;
    b.execute("INSERT INTO seq VALUES (-1)", &[]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_branch_under_writer_holds_every_acknowledged_commit() {
    let (_env, mgr) = TestEnv::new("bpgt").await;
    let prod = mgr.create("prod", CreateOptions::default()).await.unwrap();
    let writer = Writer::start(&prod.url).await;
    let acked = writer.acked();
    let report = mgr.branch("prod", "quick", fast()).await.unwrap();
    writer.stop().await;
    assert_eq!(
        report.branch.mode,
        Some(betterpg_core::Mode::CrashConsistent)
    );
    let steps: Vec<&str> = report.timings.iter().map(|t| t.step).collect();
    assert!(steps.contains(&"checkpoint"), "{steps:?}");
    assert!(!steps.contains(&"backup_start"), "{steps:?}");
    // A few hundred small commits since the source's last checkpoint: far
    // below the threshold, so no checkpoint; the branch replays them.
    let cp = report.checkpoint.clone().expect("a --fast report says");
    assert!(!cp.done, "{cp:?}");
    assert!(
        cp.wal_since_checkpoint
            .is_some_and(|w| w > 0 && w <= cp.threshold),
        "{cp:?}"
    );
    assert_eq!(
        cp.threshold,
        betterpg_core::home::DEFAULT_FAST_CHECKPOINT_MAX_WAL
    );
    assert_prefix(&report.branch.url, acked).await;
    let log = mgr.logs("quick", None).await.unwrap();
    assert!(
        log.contains("automatic recovery in progress") || log.contains("not properly shut down"),
        "a crash-consistent branch recovers from a crash image; log:\n{log}"
    );
    assert!(
        !log.contains("backup recovery"),
        "no backup label expected:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_branch_checkpoints_only_after_much_wal() {
    let (env, mgr) = TestEnv::new("bpgt").await;
    let prod = mgr.create("prod", CreateOptions::default()).await.unwrap();
    let c = connect(&prod.url).await;
    c.batch_execute("CHECKPOINT").await.unwrap();
    // A threshold of 4 MiB (the home's config.json), then about 20 MiB of
    // WAL written since the last checkpoint.
    let threshold: u64 = 4 << 20;
    let path = env.home.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    cfg["fast_checkpoint_max_wal"] = threshold.into();
    std::fs::write(&path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    drop(mgr);
    let mgr = BranchManager::open(&env.home).await.unwrap();
    c.batch_execute(
        "CREATE TABLE big AS SELECT g, md5(g::text) AS m FROM generate_series(1, 200000) g",
    )
    .await
    .unwrap();
    let writer = Writer::start(&prod.url).await;
    let acked = writer.acked();
    let first = mgr.branch("prod", "after-much", fast()).await.unwrap();
    let cp = first.checkpoint.clone().expect("a --fast report says");
    assert!(cp.done, "{cp:?}");
    assert_eq!(cp.threshold, threshold);
    assert!(
        cp.wal_since_checkpoint.is_some_and(|w| w > threshold),
        "{cp:?}"
    );
    assert!(cp.reason.contains("more than"), "{cp:?}");
    writer.stop().await;
    assert_prefix(&first.branch.url, acked).await;
    // Right after that checkpoint: little WAL, none asked for.
    c.batch_execute("TRUNCATE seq").await.unwrap();
    let writer = Writer::start(&prod.url).await;
    let acked = writer.acked();
    let second = mgr.branch("prod", "after-little", fast()).await.unwrap();
    writer.stop().await;
    let cp = second.checkpoint.clone().expect("a --fast report says");
    assert!(!cp.done, "{cp:?}");
    assert!(
        cp.wal_since_checkpoint.is_some_and(|w| w <= threshold),
        "{cp:?}"
    );
    assert_prefix(&second.branch.url, acked).await;
    assert_eq!(count_rows(&second.branch.url, "big").await, 200000);
    // Application-consistent: no such decision.
    let app = mgr
        .branch("prod", "app", BranchOptions::default())
        .await
        .unwrap();
    assert!(app.checkpoint.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branch_of_stopped_source_starts_without_recovery() {
    let (_env, mgr) = TestEnv::new("bpgt").await;
    let prod = mgr.create("prod", CreateOptions::default()).await.unwrap();
    connect(&prod.url)
        .await
        .batch_execute("CREATE TABLE t AS SELECT generate_series(1, 5000) AS id")
        .await
        .unwrap();
    let stopped = mgr.stop("prod").await.unwrap();
    assert_eq!(stopped.status, "stopped");
    let report = mgr
        .branch("prod", "cold", BranchOptions::default())
        .await
        .unwrap();
    assert!(!report.source_was_running);
    assert_eq!(
        report.branch.mode,
        Some(betterpg_core::Mode::CrashConsistent)
    );
    let steps: Vec<&str> = report.timings.iter().map(|t| t.step).collect();
    assert!(
        !steps.contains(&"backup_start") && !steps.contains(&"checkpoint"),
        "{steps:?}"
    );
    let n: i64 = query_i64(&connect(&report.branch.url).await, "SELECT count(*) FROM t").await;
    assert_eq!(n, 5000);
    let log = mgr.logs("cold", None).await.unwrap();
    assert!(log.contains("database system was shut down at"), "{log}");
    assert!(!log.contains("recovery"), "no recovery expected:\n{log}");
    assert_eq!(
        mgr.info("prod").await.unwrap().status,
        "stopped",
        "source left stopped"
    );
    // The source starts again with its data.
    let prod = mgr.start("prod").await.unwrap();
    let n: i64 = query_i64(&connect(&prod.url).await, "SELECT count(*) FROM t").await;
    assert_eq!(n, 5000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branches_are_isolated_and_small() {
    let (_env, mgr) = TestEnv::new("bpgt").await;
    let prod = mgr.create("prod", CreateOptions::default()).await.unwrap();
    let p = connect(&prod.url).await;
    p.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, v text); \
         INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 50000) g; CHECKPOINT",
    )
    .await
    .unwrap();
    let report = mgr
        .branch("prod", "dev", BranchOptions::default())
        .await
        .unwrap();
    let fresh = mgr.info("dev").await.unwrap();
    assert!(
        fresh.used_bytes < 1 << 20,
        "a fresh branch should use < 1 MiB of pool, uses {} bytes",
        fresh.used_bytes
    );
    assert!(
        fresh.referenced_bytes > 10 << 20,
        "the branch refers to the source's data"
    );
    let b = connect(&report.branch.url).await;
    b.execute("INSERT INTO t VALUES (-1, 'branch only')", &[])
        .await
        .unwrap();
    b.execute("DELETE FROM t WHERE id = 1", &[]).await.unwrap();
    p.execute("INSERT INTO t VALUES (-2, 'source only')", &[])
        .await
        .unwrap();
    let in_src: i64 = query_i64(&p, "SELECT count(*) FROM t WHERE id IN (-1, 1)").await;
    assert_eq!(in_src, 1, "source sees the branch's writes (or lost row 1)");
    let in_branch: i64 = query_i64(&b, "SELECT count(*) FROM t WHERE id IN (-2, 1)").await;
    assert_eq!(
        in_branch, 0,
        "branch sees the source's later writes (or kept deleted row)"
    );
    assert_ne!(prod.port, report.branch.port);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_removes_everything_and_respects_dependents() {
    let (env, mgr) = TestEnv::new("bpgt").await;
    mgr.create("prod", CreateOptions::default()).await.unwrap();
    let dev = mgr
        .branch("prod", "dev", BranchOptions::default())
        .await
        .unwrap();
    let child = mgr.branch("dev", "dev-child", fast()).await.unwrap();
    assert_eq!(child.branch.parent.as_deref(), Some("dev"));
    let snapshot = dev.branch.snapshot.clone().unwrap();
    let dataset = dev.branch.dataset.clone();
    let names = zfs_names(&env.pool).await;
    assert!(
        names.contains(&snapshot) && names.contains(&dataset),
        "{names:?}"
    );

    // A branch with a branch is refused without force, and nothing changes.
    let before = (catalog_text(&env), zfs_names(&env.pool).await);
    let e = mgr.destroy("dev", false).await.unwrap_err();
    assert_eq!(e.kind_name(), "has_dependents", "{e}");
    assert!(
        e.to_string().contains("dev-child") && e.to_string().contains("--force"),
        "{e}"
    );
    assert_eq!(before, (catalog_text(&env), zfs_names(&env.pool).await));

    // Destroying the leaf removes dataset, snapshot, server and entry.
    let child_port = child.branch.port;
    mgr.destroy("dev-child", false).await.unwrap();
    let names = zfs_names(&env.pool).await;
    assert!(!names.contains(&child.branch.dataset), "{names:?}");
    assert!(
        !names.contains(child.branch.snapshot.as_ref().unwrap()),
        "{names:?}"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", child_port)).is_err(),
        "the branch server still listens"
    );
    assert_eq!(
        mgr.info("dev-child").await.unwrap_err().kind_name(),
        "not_found"
    );
    assert!(!env.home.join("secrets/dev-child").exists());

    // force on the database takes the remaining branch first.
    mgr.branch("dev", "dev-child2", fast()).await.unwrap();
    mgr.destroy("prod", true).await.unwrap();
    assert!(mgr.status().await.unwrap().is_empty());
    let names = zfs_names(&env.pool).await;
    assert_eq!(
        names.len(),
        3,
        "only the pool, the root dataset and the branch space remain: {names:?}"
    );
    // Branches live in the branch space (see betterpg_core::space).
    assert!(dataset.ends_with("/betterpg/_branches/dev"), "{dataset}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_names_and_unknown_sources_fail_clearly_and_change_nothing() {
    let (env, mgr) = TestEnv::new("bpgt").await;
    mgr.create("prod", CreateOptions::default()).await.unwrap();
    let before = (catalog_text(&env), zfs_names(&env.pool).await);
    let long = "a".repeat(64);
    for bad in [
        "",
        "a/b",
        "a@b",
        "a b",
        "..",
        "-x",
        "a;rm -rf /",
        "$(id)",
        "é",
        &long,
    ] {
        let e = mgr.create(bad, CreateOptions::default()).await.unwrap_err();
        assert_eq!(e.kind_name(), "invalid_name", "create {bad:?}: {e}");
        let e = mgr
            .branch("prod", bad, BranchOptions::default())
            .await
            .unwrap_err();
        assert_eq!(e.kind_name(), "invalid_name", "branch {bad:?}: {e}");
        let e = mgr
            .branch(bad, "ok", BranchOptions::default())
            .await
            .unwrap_err();
        // `SRC@NAME` names a named snapshot: "a@b" is a well-formed
        // reference to one that does not exist.
        let want = if bad == "a@b" {
            "not_found"
        } else {
            "invalid_name"
        };
        assert_eq!(e.kind_name(), want, "branch from {bad:?}: {e}");
    }
    let e = mgr
        .branch("nope", "dev", BranchOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind_name(), "not_found");
    assert!(
        e.to_string().contains("nope") && e.to_string().contains("bpg status"),
        "{e}"
    );
    let e = mgr
        .create("prod", CreateOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind_name(), "already_exists", "{e}");
    let e = mgr
        .branch("prod", "prod", BranchOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind_name(), "already_exists", "{e}");
    for verb in ["destroy", "start", "stop", "url", "logs"] {
        let e = match verb {
            "destroy" => mgr.destroy("ghost", false).await.unwrap_err(),
            "start" => mgr.start("ghost").await.unwrap_err(),
            "stop" => mgr.stop("ghost").await.unwrap_err(),
            "url" => mgr.url("ghost").await.unwrap_err(),
            _ => mgr.logs("ghost", None).await.unwrap_err(),
        };
        assert_eq!(e.kind_name(), "not_found", "{verb}: {e}");
    }
    assert_eq!(before, (catalog_text(&env), zfs_names(&env.pool).await));
    assert_eq!(mgr.info("prod").await.unwrap().status, "running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_start_and_reopen_keep_data_and_status() {
    let (env, mgr) = TestEnv::new("bpgt").await;
    let prod = mgr.create("prod", CreateOptions::default()).await.unwrap();
    assert!(prod.url.starts_with("postgresql://postgres:"));
    connect(&prod.url)
        .await
        .batch_execute("CREATE TABLE t AS SELECT 42 AS v")
        .await
        .unwrap();
    let dev = mgr
        .branch("prod", "dev", BranchOptions::default())
        .await
        .unwrap();
    for name in ["dev", "prod"] {
        assert_eq!(mgr.stop(name).await.unwrap().status, "stopped");
    }
    // A second manager (as a second process would) sees the same state.
    let again = BranchManager::open(&env.home).await.unwrap();
    let st = again.status().await.unwrap();
    assert_eq!(
        st.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
        ["prod", "dev"]
    );
    assert!(st.iter().all(|i| i.status == "stopped"));
    assert_eq!(st[1].parent.as_deref(), Some("prod"));
    assert_eq!(st[1].kind, "branch");
    for name in ["prod", "dev"] {
        assert_eq!(again.start(name).await.unwrap().status, "running");
    }
    let v: i32 = connect(&dev.branch.url)
        .await
        .query_one("SELECT v FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, 42);
    // Secrets are private; servers listen on loopback only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(env.home.join("secrets/prod"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o077,
        0,
        "password file readable by others: {mode:o}"
    );
    let c = connect(&prod.url).await;
    let listen: String = c
        .query_one("SHOW listen_addresses", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(listen, "127.0.0.1");
    let hba: i64 = query_i64(
        &c,
        "SELECT count(*) FROM pg_hba_file_rules WHERE auth_method = 'trust'",
    )
    .await;
    assert_eq!(hba, 0, "trust authentication configured somewhere");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_throws_branch_changes_away_and_keeps_name_and_port() {
    let (env, mgr) = TestEnv::new("bpgt").await;
    let prod = mgr.create("prod", CreateOptions::default()).await.unwrap();
    let p = connect(&prod.url).await;
    p.batch_execute("CREATE TABLE t (v text); INSERT INTO t VALUES ('before')")
        .await
        .unwrap();
    let dev = mgr
        .branch("prod", "dev", BranchOptions::default())
        .await
        .unwrap();
    connect(&dev.branch.url)
        .await
        .batch_execute("INSERT INTO t VALUES ('branch change')")
        .await
        .unwrap();
    p.batch_execute("INSERT INTO t VALUES ('after')")
        .await
        .unwrap();
    let old_snapshot = dev.branch.snapshot.clone().unwrap();

    let r = mgr.reset("dev", BranchOptions::default()).await.unwrap();
    assert_eq!(r.branch.port, dev.branch.port);
    assert_eq!(r.branch.url, dev.branch.url);
    assert_ne!(r.branch.snapshot.as_deref(), Some(old_snapshot.as_str()));
    let rows: Vec<String> = connect(&r.branch.url)
        .await
        .query("SELECT v FROM t ORDER BY v", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(rows, ["after", "before"]);
    assert!(
        !zfs_names(&env.pool).await.contains(&old_snapshot),
        "old snapshot kept"
    );

    let e = mgr
        .reset("prod", BranchOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind_name(), "unsupported", "{e}");
    mgr.branch("dev", "dev2", fast()).await.unwrap();
    let before = (catalog_text(&env), zfs_names(&env.pool).await);
    let e = mgr
        .reset("dev", BranchOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind_name(), "has_dependents", "{e}");
    assert_eq!(before, (catalog_text(&env), zfs_names(&env.pool).await));
}
