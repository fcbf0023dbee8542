//! `bpg follow` across PostgreSQL majors (the versions stage): a remote
//! primary of PostgreSQL 14 and of 18 is followed with local binaries of
//! its major (found by version), and a branch of the replica holds every
//! id the primary acknowledged before the call.

use betterpg_testkit::*;

async fn follow_and_branch(major: u32, prefix: &str) {
    default_port_base(48200);
    let env = TestEnv::initialized(prefix);
    let bpg = Bpg::of(&env);
    let primary = RemotePrimary::start(prefix, major);
    primary.psql("CREATE TABLE seq (id bigint PRIMARY KEY)");
    primary.psql("INSERT INTO seq SELECT generate_series(1, 50)");
    let out = bpg.json(&["follow", "rep", "--from", &primary.url_for(REPL_USER)]);
    assert_eq!(out["replica"]["pg_version"], major, "{out}");
    assert_eq!(out["replica"]["status"], "running", "{out}");
    // Acknowledged after the follow, before the branch call.
    primary.psql("INSERT INTO seq SELECT generate_series(51, 60)");
    let r = bpg.json(&["branch", "rep", "dev"]);
    let url = r["branch"]["url"].as_str().unwrap().to_string();
    assert_eq!(assert_prefix(&url, 60).await, 60);
    assert_eq!(server_major(&url).await, major);
    // A primary of its own.
    let c = connect(&url).await;
    c.batch_execute("INSERT INTO seq VALUES (-1)")
        .await
        .unwrap();
    assert_eq!(
        primary.psql("SELECT count(*) FROM seq WHERE id < 0"),
        "0",
        "a branch's write reached the primary"
    );
    bpg.ok(&["destroy", "dev"]);
    bpg.ok(&["destroy", "rep"]);
    assert_consistent(&env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_postgresql_14() {
    follow_and_branch(14, "bpgv14").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_postgresql_18() {
    follow_and_branch(18, "bpgv18").await;
}
