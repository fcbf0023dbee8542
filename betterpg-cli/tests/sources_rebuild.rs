//! A replica whose primary changes under it (issue 13): a failover (a
//! standby promoted to a new timeline at the same address) is followed and
//! branches stay zero-loss; a primary replaced by another cluster makes the
//! replica `diverged` (status, and a waiting branch refuses saying so);
//! `bpg follow NAME --rebuild` takes a new base backup while the old
//! replica's branches keep running, and a failed rebuild leaves the old
//! replica as it was.

use betterpg_testkit::*;
use serde_json::Value;

fn env(prefix: &str) -> TestEnv {
    default_port_base(48200);
    TestEnv::initialized(prefix)
}

async fn one(url: &str, sql: &str) -> String {
    let c = connect(url).await;
    let rows = c
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("").to_string()),
            _ => None,
        })
        .unwrap_or_default()
}

/// The replica's row of `bpg status --json`.
fn replica_status(bpg: &Bpg, name: &str) -> Value {
    bpg.status_json(&["status", name])[0].clone()
}

/// Wait until the replica streams; its last status otherwise.
async fn wait_streaming(bpg: &Bpg<'_>, name: &str) {
    let mut st = Value::Null;
    let ok = eventually(60, || {
        st = replica_status(bpg, name);
        st["replication"]["state"] == "streaming"
    })
    .await;
    assert!(ok, "{name} never streamed: {st}");
}

/// Commit ids `from..=to` on the primary, one transaction each; returns `to`.
fn write_ids(primary: &RemotePrimary, from: i64, to: i64) -> i64 {
    primary.psql("CREATE TABLE IF NOT EXISTS seq (id bigint PRIMARY KEY)");
    primary.psql(&format!(
        "DO $$ BEGIN FOR i IN {from}..{to} LOOP INSERT INTO seq VALUES (i); COMMIT; END LOOP; END $$"
    ));
    to
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_of_the_primary_is_followed_and_branches_lose_nothing() {
    let env = env("bpgrf");
    let bpg = Bpg::of(&env);
    let mut primary = RemotePrimary::start("bpgrf", 15);
    write_ids(&primary, 1, 500);
    bpg.json(&["follow", "rep1", "--from", &primary.url_for(REPL_USER)]);
    wait_streaming(&bpg, "rep1").await;
    // The replica's roles are the primary's.
    let replica_url = format!(
        "postgresql://postgres:{}@127.0.0.1:{}/postgres",
        primary.password(),
        replica_status(&bpg, "rep1")["port"]
    );
    // The replica follows whatever timeline comes next: it is written.
    assert_eq!(
        one(&replica_url, "SHOW recovery_target_timeline").await,
        "latest"
    );
    let before = bpg.json(&["branch", "rep1", "before"]);
    assert_prefix(before["branch"]["url"].as_str().unwrap(), 500).await;

    primary.failover();
    assert_eq!(
        primary.psql("SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)"),
        "00000002",
        "the failover did not make a new timeline"
    );
    // Acknowledged by the new primary, before the branch call.
    let acked = write_ids(&primary, 501, 900);
    wait_streaming(&bpg, "rep1").await;
    let st = replica_status(&bpg, "rep1");
    assert_eq!(
        st["replication"]["upstream"],
        format!("{}:{}", primary.addr, primary.port)
    );
    // The replica receives the new timeline.
    let mut tli = String::new();
    for _ in 0..300 {
        tli = one(
            &replica_url,
            "SELECT coalesce((SELECT received_tli::text FROM pg_stat_wal_receiver), '')",
        )
        .await;
        if tli == "2" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(tli, "2", "the replica does not receive the new timeline");
    let after = bpg.json(&["branch", "rep1", "after"]);
    let url = after["branch"]["url"].as_str().unwrap().to_string();
    let max = assert_prefix(&url, acked).await;
    assert_eq!(max, acked, "the branch holds ids the primary never wrote");
    // The branch before the failover still runs, untouched.
    assert_eq!(
        count_rows(before["branch"]["url"].as_str().unwrap(), "seq").await,
        500
    );
    for b in ["before", "after", "rep1"] {
        bpg.ok(&["destroy", b]);
    }
    assert_consistent(&env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_replaced_by_another_cluster_is_diverged() {
    let env = env("bpgrd");
    let bpg = Bpg::of(&env);
    let mut primary = RemotePrimary::start("bpgrd", 15);
    write_ids(&primary, 1, 300);
    bpg.json(&["follow", "rep1", "--from", &primary.url_for(REPL_USER)]);
    wait_streaming(&bpg, "rep1").await;

    primary.replace_with_new_cluster();
    let mut st = Value::Null;
    let diverged = eventually(30, || {
        st = replica_status(&bpg, "rep1");
        st["replication"]["state"] == "diverged"
    })
    .await;
    assert!(diverged, "status never said diverged: {st}");
    assert!(bpg.ok(&["status"]).contains("diverged"));

    // The default (wait) refuses clearly, and leaves nothing.
    let err = bpg.fails(&["branch", "rep1", "dev", "--wait-timeout", "5s"]);
    assert!(
        err.contains("diverged") && err.contains("--rebuild"),
        "the refusal does not say diverged and --rebuild: {err}"
    );
    assert!(
        bpg.status_json(&["status"])
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["name"] != "dev"),
        "a refused branch left an entry"
    );
    // --no-wait branches what the replica has: the old cluster's rows.
    let r = bpg.json(&["branch", "rep1", "dev", "--no-wait"]);
    assert!(r["replica_point"]["primary_lsn"].is_null(), "{r}");
    assert_prefix(r["branch"]["url"].as_str().unwrap(), 300).await;
    bpg.ok(&["destroy", "dev"]);
    bpg.ok(&["destroy", "rep1"]);
    assert_consistent(&env);
}
