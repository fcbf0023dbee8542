//! `bpg follow`: a replica of a remote primary (a PostgreSQL server in a
//! network namespace of its own, reached across a veth link, not on ZFS),
//! and branches of the replica under a writer on the primary: every id the
//! primary acknowledged before each `bpg branch` call is in the branch,
//! gap-free; the branch's writes reach neither the primary nor the
//! replica; the primary's requested checkpoints do not move and it sees
//! no backup session of ours.

use betterpg_testkit::*;
use serde_json::Value;

fn env() -> TestEnv {
    default_port_base(56000);
    TestEnv::initialized("bpgfo")
}

/// The replica's row of `bpg status --json`.
fn replica_status(bpg: &Bpg, name: &str) -> Value {
    bpg.status_json(&["status", name])[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_then_branch_under_writes_holds_every_acknowledged_id() {
    let env = env();
    let bpg = Bpg::of(&env);
    let primary = RemotePrimary::start("bpgfo", 15);
    let writer = Writer::start(&primary.url()).await;

    let out = bpg.json(&["follow", "rep1", "--from", &primary.url_for(REPL_USER)]);
    let text = out.to_string();
    assert!(
        !text.contains(primary.password()),
        "the password is printed: {text}"
    );
    assert_eq!(out["replica"]["kind"], "replica", "{out}");
    assert_eq!(out["replica"]["status"], "running", "{out}");
    assert_eq!(
        out["upstream"],
        format!("{}:{}", primary.addr, primary.port)
    );
    assert!(out["backup_bytes"].as_u64().unwrap() > 1 << 20, "{out}");
    // The passfile is the replica's, 0600, and nowhere in its data directory.
    let passfile = env.home.join("replicas/rep1/pgpass");
    let meta = std::fs::metadata(&passfile).expect("the replica's passfile");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
    let replica_url = out["replica"]["url"].as_str().unwrap().to_string();
    assert!(!replica_url.contains(primary.password()), "{replica_url}");

    // Status: streaming, with its upstream and lag.
    let mut st = Value::Null;
    let streaming = eventually(30, || {
        st = replica_status(&bpg, "rep1");
        st["replication"]["state"] == "streaming"
    })
    .await;
    assert!(streaming, "the replica never streamed: {st}");
    let r = &st["replication"];
    assert_eq!(r["upstream"], format!("{}:{}", primary.addr, primary.port));
    assert!(r["lag_bytes"].is_u64(), "{r}");
    assert!(r["lag_seconds"].is_number(), "{r}");
    assert!(r["replay_lsn"].is_string(), "{r}");
    assert!(!st.to_string().contains(primary.password()));
    let text = bpg.ok(&["status"]);
    assert!(
        text.contains("replica") && text.contains("streaming"),
        "{text}"
    );

    // Branches during the writes: every id acknowledged before the call.
    let checkpoints = primary.requested_checkpoints();
    for i in 0..3 {
        let acked = writer.acked();
        let name = format!("dev{i}");
        let r = bpg.json(&["branch", "rep1", &name]);
        let point = &r["replica_point"];
        assert!(point["primary_lsn"].is_string(), "{r}");
        assert!(point["replay_lsn"].is_string(), "{r}");
        let url = r["branch"]["url"].as_str().unwrap().to_string();
        let max = assert_prefix(&url, acked).await;
        // A primary of its own, on a new timeline.
        assert_eq!(
            query_text(&url, "SELECT pg_is_in_recovery()::text").await,
            "false"
        );
        let tli = query_text(
            &url,
            "SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)",
        )
        .await;
        assert_ne!(
            tli, "00000001",
            "the branch stayed on the primary's timeline"
        );
        // Its writes stay its own.
        query_text(&url, &format!("INSERT INTO seq VALUES ({})", -(i + 1))).await;
        assert_eq!(
            query_text(&url, "SELECT count(*)::text FROM seq WHERE id < 0").await,
            "1"
        );
        assert!(max >= acked);
        // No upstream in its configuration, and it connects to nothing.
        assert_eq!(query_text(&url, "SHOW primary_conninfo").await, "");
        assert_eq!(
            query_text(&url, "SELECT count(*)::text FROM pg_stat_wal_receiver").await,
            "0"
        );
    }
    let last = writer.stop().await;
    assert!(last > 0);
    assert_eq!(
        primary.psql("SELECT count(*) FROM seq WHERE id < 0"),
        "0",
        "a branch's write reached the primary"
    );
    assert_eq!(
        primary.requested_checkpoints(),
        checkpoints,
        "branching the replica requested a checkpoint on the primary"
    );
    // The primary saw no backup session of ours: only the replica's
    // walsender, no backup in progress, no slot of betterpg.
    assert_eq!(
        primary.psql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender'"),
        "1"
    );
    assert_eq!(
        primary.psql("SELECT count(*) FROM pg_replication_slots"),
        "0"
    );
    assert_eq!(
        primary.psql("SELECT count(*) FROM pg_stat_progress_basebackup"),
        "0"
    );
    // The replica did not get the branch's writes either.
    let c = bpg.json(&["status", "rep1"]);
    assert_eq!(c["entries"][0]["status"], "running");

    // Destroy the branches, then the replica: nothing left.
    for i in 0..3 {
        bpg.ok(&["destroy", &format!("dev{i}")]);
    }
    bpg.ok(&["destroy", "rep1"]);
    assert!(!env.home.join("replicas/rep1").exists());
    assert_consistent(&env);
}
