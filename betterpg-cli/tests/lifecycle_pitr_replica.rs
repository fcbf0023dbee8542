//! Branch a replica at a point in time (issue 15): a replica (`bpg
//! follow`) that keeps its WAL (`bpg config REP --retain-wal D`, effective
//! at its next start) archives every segment it receives
//! (`archive_mode = always`) into betterpg's dataset and takes its bases
//! with the standby recipe; `bpg branch REP NAME --at TIMESTAMP|LSN` replays
//! from the newest base to exactly that point and comes up as a primary of
//! its own on a new timeline. Under a writer on the primary that records,
//! after each commit returns, the primary's clock and WAL position, every
//! branch holds exactly the transactions committed at or before its
//! target: no more, no less, also with the replica stopped. Targets
//! outside the window fail with `out_of_window` and leave nothing behind.
//!
//! Real ZFS, a real PostgreSQL 15 primary in a network namespace, the real
//! `bpg` binary.

use betterpg_testkit::*;
use serde_json::Value;

fn parse_lsn(s: &str) -> u64 {
    let (hi, lo) = s.split_once('/').unwrap();
    (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap()
}

/// Wait until the replica replayed past `lsn` (its status says so).
async fn replayed(bpg: &Bpg<'_>, name: &str, lsn: &str) {
    let want = parse_lsn(lsn);
    let mut st = Value::Null;
    let ok = eventually(60, || {
        st = bpg.status_json(&["status", name])[0].clone();
        st["replication"]["replay_lsn"]
            .as_str()
            .is_some_and(|l| parse_lsn(l) >= want)
    })
    .await;
    assert!(ok, "{name} never replayed {lsn}: {st}");
}

/// A branch of `rep` at `at` holds exactly rows 1..=`expect`, and is a
/// primary of its own on a new timeline, reading no WAL from anywhere and
/// following no one.
async fn check_branch(bpg: &Bpg<'_>, name: &str, at: &str, expect: i64, archive: &str) {
    let r = bpg.json(&["branch", "rep", name, "--at", at]);
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
             current_setting('primary_conninfo'), \
             substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8), \
             (SELECT count(*) FROM pg_stat_wal_receiver), current_setting('data_directory')",
            &[],
        )
        .await
        .unwrap();
    let (rec, restore, archive_mode, rtt, conninfo, tli, receivers, data): (
        bool,
        String,
        String,
        String,
        String,
        String,
        i64,
        String,
    ) = (
        row.get(0),
        row.get(1),
        row.get(2),
        row.get(3),
        row.get(4),
        row.get(5),
        row.get(6),
        row.get(7),
    );
    assert!(!rec, "{name} is promoted");
    assert_eq!(
        (
            restore.as_str(),
            archive_mode.as_str(),
            rtt.as_str(),
            conninfo.as_str(),
            receivers
        ),
        ("", "off", "", "", 0),
        "{name} keeps no recovery, archive or upstream settings"
    );
    assert_ne!(tli, "00000001", "{name} stayed on the primary's timeline");
    c.execute("INSERT INTO t VALUES (-1)", &[]).await.unwrap();
    let data = std::path::Path::new(&data);
    for f in ["recovery.signal", "standby.signal", "betterpg_restore_wal"] {
        assert!(!data.join(f).exists(), "{name} keeps {f}");
    }
    for f in ["postgresql.conf", "postgresql.auto.conf", "betterpg.conf"] {
        let text = std::fs::read_to_string(data.join(f)).unwrap_or_default();
        assert!(
            !text.contains(archive),
            "{name}'s {f} names the archive {archive}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_of_a_replica_at_a_time_or_lsn_holds_exactly_what_was_committed_by_then() {
    default_port_base(49800);
    let env = TestEnv::initialized("bpgpr");
    let bpg = Bpg::of(&env);
    let primary = RemotePrimary::start("bpgpr", 15);
    let purl = primary.url();
    bpg.json(&["follow", "rep", "--from", &primary.url_for(REPL_USER)]);
    bpg.ok(&["config", "rep", "--retain-wal", "1h"]);
    // archive_mode is read at start: pending until the replica restarts.
    let w = wal_retention(&bpg, "rep");
    assert_eq!(
        (w["active"].as_bool(), w["bases"].as_u64()),
        (Some(false), Some(0)),
        "{w}"
    );
    let err = bpg.fails(&["branch", "rep", "early", "--at", "0/1000000"]);
    assert!(err.contains("restart"), "{err}");
    bpg.ok(&["stop", "rep"]);
    bpg.ok(&["start", "rep"]);
    let w = wal_retention(&bpg, "rep");
    assert_eq!(
        (
            w["active"].as_bool(),
            w["bases"].as_u64(),
            w["retain_secs"].as_u64()
        ),
        (Some(true), Some(1), Some(3600)),
        "{w}"
    );
    let archive = wal_archive_dir(&env, "rep").to_string_lossy().into_owned();

    let commits = write_commits(&purl, 1, 35).await;
    replayed(&bpg, "rep", &commits[34].lsn).await;
    // Targets: after-commit times and WAL positions, in archived segments
    // and in the tail the archive lacks yet (the last commits).
    for (name, k, by_lsn) in [
        ("t5", 5, false),
        ("l12", 12, true),
        ("t27", 27, false),
        ("l33", 33, true),
        ("t34", 34, false),
    ] {
        let c = &commits[k as usize - 1];
        assert_eq!(c.id, k);
        let at = if by_lsn { &c.lsn } else { &c.time };
        check_branch(&bpg, name, at, k, &archive).await;
    }
    // The window status shows: from the base to the last replayed commit.
    let w = wal_retention(&bpg, "rep");
    assert_eq!(w["active"], true, "{w}");
    assert!(w["segments"].as_u64().unwrap() >= 3, "{w}");
    assert!(w["wal_bytes"].as_u64().unwrap() > 0, "{w}");
    assert!(w["from_time"].is_string() && w["to_lsn"].is_string(), "{w}");
    let text = bpg.ok(&["status"]);
    assert!(text.contains("restorable from"), "{text}");
    // The primary saw nothing of ours but the replica's walsender.
    assert_eq!(
        primary.psql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender'"),
        "1"
    );

    // Outside the window: each fails stating it, and nothing is left.
    let before = (catalog_bytes(&env), zfs_tree(&env.pool));
    for at in ["2000-01-01 00:00:00+00", "2999-01-01T00:00:00Z", "0/10"] {
        let o = bpg.run(&["branch", "rep", "nope", "--at", at]);
        let err = check_failure(&["branch"], &o);
        assert_eq!(o.status.code(), Some(28), "out_of_window: {err}");
        assert!(
            err.contains("restorable window") && err.contains(".."),
            "{err}"
        );
        assert_eq!(
            (catalog_bytes(&env), zfs_tree(&env.pool)),
            before,
            "a refused --at {at} changed nothing"
        );
    }

    // Stopped: its last replayed transaction was recorded at the stop,
    // and the tail is still in its pg_wal. The window ends at that
    // commit: a time after it is outside (a standby cannot commit one of
    // its own to close the window, as a database's seal does).
    let more = write_commits(&purl, 36, 8).await;
    replayed(&bpg, "rep", &more[7].lsn).await;
    bpg.ok(&["stop", "rep"]);
    check_branch(&bpg, "t42", &more[6].time, 42, &archive).await;
    check_branch(&bpg, "t38", &more[2].time, 38, &archive).await;
    let o = bpg.run(&["branch", "rep", "nope", "--at", &more[7].time]);
    let err = check_failure(&["branch"], &o);
    assert_eq!(o.status.code(), Some(28), "after the last commit: {err}");
    bpg.ok(&["start", "rep"]);
    assert_consistent(&env);

    for b in ["t5", "l12", "t27", "l33", "t34", "t42", "t38"] {
        bpg.ok(&["destroy", b]);
    }
    // Rebuilt (`follow --rebuild`): the old data and its bases are gone,
    // and the window with them; the new replica archives from its next
    // start, takes a base, and is branched exactly again.
    tokio::task::block_in_place(|| bpg.json(&["follow", "rep", "--rebuild"]));
    let w = wal_retention(&bpg, "rep");
    assert_eq!(
        (w["active"].as_bool(), w["bases"].as_u64()),
        (Some(false), Some(0)),
        "{w}"
    );
    bpg.ok(&["stop", "rep"]);
    bpg.ok(&["start", "rep"]);
    let w = wal_retention(&bpg, "rep");
    assert_eq!(
        (w["active"].as_bool(), w["bases"].as_u64()),
        (Some(true), Some(1)),
        "{w}"
    );
    let again = write_commits(&purl, 44, 8).await;
    replayed(&bpg, "rep", &again[7].lsn).await;
    check_branch(&bpg, "t47", &again[3].time, 47, &archive).await;
    bpg.ok(&["destroy", "t47"]);

    // Destroying the replica removes its archive and bases too.
    bpg.ok(&["destroy", "rep"]);
    let left: Vec<String> = zfs_tree(&env.pool)
        .into_iter()
        .filter(|n| n.contains("_wal/") || n.contains("walbase"))
        .collect();
    assert!(left.is_empty(), "left after destroy: {left:?}");
    assert!(!env.home.join("wal").join("rep.json").exists());
}
