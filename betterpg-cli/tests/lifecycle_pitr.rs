//! Branch at a point in time (issue 15): a database that keeps its WAL
//! (`bpg config SRC --retain-wal D`) archives it into betterpg's dataset,
//! and `bpg branch SRC NAME --at TIMESTAMP|LSN` replays it from the newest
//! base to exactly that point. Under a writer that records, after each
//! commit returns, the server's clock and WAL position, every branch holds
//! exactly the transactions committed at or before its target: no more,
//! no less. Targets outside the window fail with `out_of_window`, stating
//! the window, and leave nothing behind; pruning drops old bases and WAL,
//! but never a base a branch was cloned from.
//!
//! Real ZFS, real PostgreSQL 15, the real `bpg` binary.

use std::time::Duration;

use betterpg_testkit::*;

fn config_retain(bpg: &Bpg, name: &str, d: &str) {
    bpg.ok(&["config", name, "--retain-wal", d]);
}

fn archived_segments(env: &TestEnv, db: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(wal_archive_dir(env, db))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 24 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect();
    v.sort();
    v
}

fn snapshots(env: &TestEnv) -> Vec<String> {
    zfs_tree(&env.pool)
        .into_iter()
        .filter(|n| n.contains("@bpg-walbase-"))
        .collect()
}

/// A branch at `at` holds exactly rows 1..=`expect`, and is a server of
/// its own: promoted, writable, reading no WAL from anywhere.
async fn check_branch(bpg: &Bpg<'_>, name: &str, at: &str, expect: i64, archive: &str) {
    let r = bpg.json(&["branch", "prod", name, "--at", at]);
    let url = r["branch"]["url"].as_str().unwrap().to_string();
    assert_eq!(
        commit_ids(&url).await,
        (expect, 1, expect),
        "branch {name} at {at} holds exactly the rows committed by then"
    );
    let c = connect(&url).await;
    let row = c
        .query_one(
            "SELECT pg_is_in_recovery(), current_setting('restore_command'), \
             current_setting('archive_mode'), current_setting('recovery_target_time'), \
             current_setting('recovery_target_lsn'), current_setting('data_directory')",
            &[],
        )
        .await
        .unwrap();
    let (rec, restore, archive_mode, rtt, rtl, data): (
        bool,
        String,
        String,
        String,
        String,
        String,
    ) = (
        row.get(0),
        row.get(1),
        row.get(2),
        row.get(3),
        row.get(4),
        row.get(5),
    );
    assert!(!rec, "{name} is promoted");
    assert_eq!(
        (
            restore.as_str(),
            archive_mode.as_str(),
            rtt.as_str(),
            rtl.as_str()
        ),
        ("", "off", "", ""),
        "{name} keeps no recovery or archive settings"
    );
    c.execute("INSERT INTO t VALUES (-1)", &[]).await.unwrap();
    let data = std::path::Path::new(&data);
    assert!(!data.join("recovery.signal").exists());
    assert!(!data.join("betterpg_restore_wal").exists());
    // Nothing in the branch's configuration names the source's archive.
    for f in ["postgresql.conf", "postgresql.auto.conf", "betterpg.conf"] {
        let text = std::fs::read_to_string(data.join(f)).unwrap_or_default();
        assert!(
            !text.contains(archive),
            "{name}'s {f} names the archive {archive}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_at_a_time_or_lsn_holds_exactly_what_was_committed_by_then() {
    let env = TestEnv::initialized("bpgpt");
    let bpg = Bpg::of(&env);
    let prod = bpg.json(&["create", "prod"]);
    let url = prod["url"].as_str().unwrap().to_string();
    config_retain(&bpg, "prod", "1h");
    // archive_mode is read at start: pending until a restart.
    let w = wal_retention(&bpg, "prod");
    assert_eq!(
        (w["active"].as_bool(), w["bases"].as_u64()),
        (Some(false), Some(0)),
        "{w}"
    );
    let err = bpg.fails(&["branch", "prod", "early", "--at", "0/1000000"]);
    assert!(err.contains("restart"), "{err}");
    bpg.ok(&["stop", "prod"]);
    bpg.ok(&["start", "prod"]);
    let w = wal_retention(&bpg, "prod");
    assert_eq!(
        (w["active"].as_bool(), w["bases"].as_u64()),
        (Some(true), Some(1)),
        "{w}"
    );
    assert_eq!(w["retain_secs"], 3600);
    let archive = wal_archive_dir(&env, "prod").to_string_lossy().into_owned();

    let commits = write_commits(&url, 1, 40).await;
    // Targets: after-commit times and WAL positions, spread over segments.
    for (name, k, by_lsn) in [
        ("t5", 5, false),
        ("l12", 12, true),
        ("t27", 27, false),
        ("l33", 33, true),
        ("t40", 40, false),
    ] {
        let c = &commits[k as usize - 1];
        assert_eq!(c.id, k);
        let at = if by_lsn { &c.lsn } else { &c.time };
        check_branch(&bpg, name, at, k, &archive).await;
    }
    // The same instant written as RFC 3339 in UTC.
    let c = &commits[19];
    let utc = {
        let cl = connect(&url).await;
        let r = cl
            .query_one(
                "SELECT to_char($1::text::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
                &[&c.time],
            )
            .await
            .unwrap();
        r.get::<_, String>(0)
    };
    check_branch(&bpg, "t20utc", &utc, 20, &archive).await;

    let w = wal_retention(&bpg, "prod");
    assert!(w["segments"].as_u64().unwrap() >= 4, "{w}");
    assert!(w["wal_bytes"].as_u64().unwrap() > 0, "{w}");
    let text = bpg.ok(&["status"]);
    assert!(text.contains("restorable from"), "{text}");

    // Outside the window: before the first base, after the last archived
    // point, an LSN before the base; each fails stating the window, and
    // nothing is left.
    let before = (catalog_bytes(&env), zfs_tree(&env.pool));
    for at in ["2000-01-01 00:00:00+00", "2999-01-01T00:00:00Z", "0/10"] {
        let o = bpg.run(&["branch", "prod", "nope", "--at", at]);
        let err = check_failure(&["branch"], &o);
        assert_eq!(o.status.code(), Some(28), "out_of_window: {err}");
        assert!(
            err.contains("restorable window") && err.contains(".."),
            "{err}"
        );
        let from = w["from_time"].as_str().unwrap();
        if !at.contains('/') {
            assert!(
                err.contains(from),
                "the error states the window ({from}): {err}"
            );
        }
        assert_eq!(
            (catalog_bytes(&env), zfs_tree(&env.pool)),
            before,
            "a refused --at {at} changed nothing"
        );
    }
    // Bad input: neither a timestamp with an offset nor an LSN.
    for at in ["yesterday", "2026-12-03 10:00:00", "1/zz"] {
        let o = bpg.run(&["branch", "prod", "nope", "--at", at]);
        let err = check_failure(&["branch"], &o);
        assert_eq!(o.status.code(), Some(15), "config: {err}");
    }
    // A branch has no WAL of its own to branch from.
    let err = bpg.fails(&["branch", "t5", "deeper", "--at", &commits[0].time]);
    assert!(err.contains("only a database"), "{err}");

    // The source stopped: `stop` archived everything committed until then.
    let more = write_commits(&url, 41, 5).await;
    bpg.ok(&["stop", "prod"]);
    check_branch(&bpg, "t45", &more[4].time, 45, &archive).await;
    check_branch(&bpg, "t43", &more[2].time, 43, &archive).await;
    bpg.ok(&["start", "prod"]);
    assert_consistent(&env);
    // Turned off: from the next start no archiving, the archive is gone,
    // and only the base the branches were cloned from stays.
    bpg.ok(&["config", "prod", "--retain-wal", "none"]);
    bpg.ok(&["stop", "prod"]);
    bpg.ok(&["start", "prod"]);
    assert!(wal_retention(&bpg, "prod").is_null());
    assert!(
        !zfs_tree(&env.pool).iter().any(|n| n.contains("/_wal/")),
        "the archive went: {:?}",
        zfs_tree(&env.pool)
    );
    assert_eq!(
        snapshots(&env).len(),
        1,
        "the pinned base stays: {:?}",
        snapshots(&env)
    );
    let c = connect(&url).await;
    let mode: String = c
        .query_one("SELECT current_setting('archive_mode')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(mode, "off");
    assert_eq!(
        commit_ids(bpg.json(&["url", "t45"])["url"].as_str().unwrap())
            .await
            .0,
        46
    );
    // Destroying the database removes its archive and bases too.
    bpg.ok(&["destroy", "prod", "--force"]);
    let left: Vec<String> = zfs_tree(&env.pool)
        .into_iter()
        .filter(|n| n.contains("_wal/") || n.contains("walbase"))
        .collect();
    assert!(left.is_empty(), "left after destroy: {left:?}");
    assert!(!env.home.join("wal").join("prod.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_keeps_the_window_and_the_bases_branches_were_cloned_from() {
    let env = TestEnv::initialized("bpgpp");
    let bpg = Bpg::of(&env);
    let prod = bpg.json(&["create", "prod"]);
    let url = prod["url"].as_str().unwrap().to_string();
    config_retain(&bpg, "prod", "6s");
    bpg.ok(&["stop", "prod"]);
    bpg.ok(&["start", "prod"]);
    let first = wal_retention(&bpg, "prod");
    assert_eq!(first["bases"], 1, "{first}");
    let base1 = snapshots(&env);
    assert_eq!(base1.len(), 1, "{base1:?}");
    let early = write_commits(&url, 1, 25).await;
    // A branch cloned from the first base pins it.
    check_branch(
        &bpg,
        "pinned",
        &early[2].time,
        3,
        &wal_archive_dir(&env, "prod").to_string_lossy(),
    )
    .await;
    let segs_before = archived_segments(&env, "prod");

    // Older than half the retention: `start` (of a running database: a
    // maintenance pass) takes a second base.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let later = write_commits(&url, 26, 15).await;
    bpg.ok(&["start", "prod"]);
    assert_eq!(wal_retention(&bpg, "prod")["bases"], 2);
    // Both bases now older than the retention: the first would go, but a
    // branch was cloned from it.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let last = write_commits(&url, 41, 15).await;
    bpg.ok(&["start", "prod"]);
    let w = wal_retention(&bpg, "prod");
    assert_eq!(w["bases"], 3, "the pinned base stays: {w}");
    assert!(snapshots(&env).contains(&base1[0]));
    // Without the branch, the next pass drops it and the WAL only it needed.
    bpg.ok(&["destroy", "pinned"]);
    bpg.ok(&["start", "prod"]);
    let w = wal_retention(&bpg, "prod");
    assert_eq!(w["bases"], 2, "{w}");
    assert!(
        !snapshots(&env).contains(&base1[0]),
        "{:?}",
        snapshots(&env)
    );
    let segs_after = archived_segments(&env, "prod");
    assert!(
        segs_after.first() > segs_before.first(),
        "the oldest segments went: before {segs_before:?}, after {segs_after:?}"
    );
    assert_ne!(w["from_time"], first["from_time"], "the window moved: {w}");
    // Before the new window: refused, stating it; inside: exact.
    let o = bpg.run(&["branch", "prod", "gone", "--at", &early[5].time]);
    let err = check_failure(&["branch"], &o);
    assert_eq!(o.status.code(), Some(28), "{err}");
    assert!(err.contains(w["from_time"].as_str().unwrap()), "{err}");
    assert_eq!(later.len(), 15);
    check_branch(
        &bpg,
        "kept",
        &last[14].time,
        55,
        &wal_archive_dir(&env, "prod").to_string_lossy(),
    )
    .await;
    assert_consistent(&env);
    bpg.ok(&["destroy", "prod", "--force"]);
}
