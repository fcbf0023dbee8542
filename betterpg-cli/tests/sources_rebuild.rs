//! A replica whose primary changes under it (issue 13): a failover (a
//! standby promoted to a new timeline at the same address) is followed and
//! branches stay zero-loss; a primary replaced by another cluster makes the
//! replica `diverged` (status, and a waiting branch refuses saying so);
//! `bpg follow NAME --rebuild` takes a new base backup while the old
//! replica's branches keep running, and a failed rebuild leaves the old
//! replica as it was; a rebuild and another rebuild, a branch, a named
//! snapshot or a destroy of the same replica never run at once (the one
//! that comes second is refused, naming the first, and changes nothing).

use betterpg_testkit::*;
use serde_json::Value;

fn env(prefix: &str) -> TestEnv {
    default_port_base(48200);
    TestEnv::initialized(prefix)
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
        query_text(&replica_url, "SHOW recovery_target_timeline").await,
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
        tli = query_text(
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

/// Reads `seq` on `url` until stopped; every read must succeed and see
/// `rows`. Returns how many reads were made.
fn reader(
    url: String,
    rows: i64,
) -> (
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    tokio::task::JoinHandle<u64>,
) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s2 = stop.clone();
    let task = tokio::spawn(async move {
        let c = connect(&url).await;
        let mut reads = 0u64;
        while !s2.load(std::sync::atomic::Ordering::SeqCst) {
            let n = query_i64(&c, "SELECT count(*) FROM seq").await;
            assert_eq!(n, rows, "the branch changed during the rebuild");
            reads += 1;
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        reads
    });
    (stop, task)
}

/// The datasets of the pool whose names contain `part`.
fn datasets_with(env: &TestEnv, part: &str) -> Vec<String> {
    let out = std::process::Command::new("zfs")
        .args([
            "list",
            "-H",
            "-o",
            "name",
            "-r",
            "-t",
            "filesystem",
            &env.pool,
        ])
        .output()
        .expect("zfs list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(part))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_takes_a_new_base_backup_while_branches_keep_running() {
    let env = env("bpgrb");
    let bpg = Bpg::of(&env);
    let mut primary = RemotePrimary::start("bpgrb", 15);
    write_ids(&primary, 1, 300);
    let first = bpg.json(&["follow", "rep1", "--from", &primary.url_for(REPL_USER)]);
    let port = first["replica"]["port"].clone();
    let dataset = first["replica"]["dataset"].as_str().unwrap().to_string();
    wait_streaming(&bpg, "rep1").await;
    let dev = bpg.json(&["branch", "rep1", "dev"]);
    let dev_url = dev["branch"]["url"].as_str().unwrap().to_string();
    assert_prefix(&dev_url, 300).await;

    // Another cluster at the primary's address, with other rows.
    primary.replace_with_new_cluster();
    write_ids(&primary, 1, 40);
    let ok = eventually(30, || {
        replica_status(&bpg, "rep1")["replication"]["state"] == "diverged"
    })
    .await;
    assert!(ok, "never diverged");

    // The rebuild, the stored URL and password, while dev is read.
    let (stop, task) = reader(dev_url.clone(), 300);
    let out = tokio::task::block_in_place(|| bpg.json(&["follow", "rep1", "--rebuild"]));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let reads = task.await.unwrap();
    assert!(reads > 0, "dev was never read during the rebuild");
    assert!(!out.to_string().contains(primary.password()), "{out}");
    assert_eq!(out["replica"]["port"], port, "the replica moved: {out}");
    assert_ne!(out["replica"]["dataset"], dataset.as_str(), "{out}");
    assert_ne!(out["system_id"], first["system_id"], "{out}");
    let retired = out["retired_dataset"]
        .as_str()
        .expect("retired dataset")
        .to_string();
    assert_eq!(retired, dataset, "the old data stays where it was");
    wait_streaming(&bpg, "rep1").await;
    assert_eq!(
        replica_status(&bpg, "rep1")["replication"]["upstream"],
        out["upstream"]
    );
    // The branch of the old replica runs on, a clone of the retired
    // dataset; the status lists no retired entry.
    let st = bpg.status_json(&["status"]);
    let names: Vec<&str> = st
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{st}");
    let dev_st = bpg.status_json(&["status", "dev"])[0].clone();
    assert_eq!(dev_st["status"], "running", "{dev_st}");
    assert!(
        dev_st["snapshot"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{retired}@")),
        "{dev_st}"
    );
    assert_eq!(count_rows(&dev_url, "seq").await, 300);
    assert_consistent(&env);
    // A new branch holds the new cluster's rows, zero loss.
    write_ids(&primary, 41, 60);
    let dev2 = bpg.json(&["branch", "rep1", "dev2"]);
    let dev2_url = dev2["branch"]["url"].as_str().unwrap().to_string();
    assert_eq!(assert_prefix(&dev2_url, 60).await, 60);
    // dev survives a restart (its clone is intact), and gc keeps the
    // retired data while dev lives...
    bpg.ok(&["stop", "dev"]);
    bpg.ok(&["start", "dev"]);
    assert_eq!(count_rows(&dev_url, "seq").await, 300);
    let gc = bpg.json(&["gc"]);
    assert!(
        !gc.to_string().contains(&retired),
        "gc touched the retired data: {gc}"
    );
    assert!(
        datasets_with(&env, "").contains(&retired),
        "the retired dataset is gone"
    );
    // ... and removes it after.
    bpg.ok(&["destroy", "dev"]);
    let gc = bpg.json(&["gc"]);
    assert!(
        gc.to_string().contains(&retired),
        "gc left the retired data: {gc}"
    );
    assert!(!datasets_with(&env, "").contains(&retired));
    assert_eq!(count_rows(&dev2_url, "seq").await, 60);
    assert_consistent(&env);
    bpg.ok(&["destroy", "dev2"]);
    bpg.ok(&["destroy", "rep1"]);
    assert_consistent(&env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_rebuild_leaves_the_old_replica_as_it_was() {
    require_fault_injection();
    let env = env("bpgrx");
    let bpg = Bpg::of(&env);
    let primary = RemotePrimary::start("bpgrx", 15);
    write_ids(&primary, 1, 200);
    let first = bpg.json(&["follow", "rep1", "--from", &primary.url_for(REPL_USER)]);
    wait_streaming(&bpg, "rep1").await;
    let dev = bpg.json(&["branch", "rep1", "dev"]);
    let dev_url = dev["branch"]["url"].as_str().unwrap().to_string();
    let before = replica_status(&bpg, "rep1");
    let dev_before = bpg.status_json(&["status", "dev"])[0].clone();
    let passfile = env.home.join("replicas/rep1/pgpass");
    let pass_before = std::fs::read(&passfile).unwrap();

    // The old replica is as it was: same dataset, port, upstream, system,
    // running and streaming again; dev untouched; nothing left behind.
    let check = |what: &str| {
        let now = replica_status(&bpg, "rep1");
        for k in ["dataset", "port", "status", "pg_version"] {
            assert_eq!(now[k], before[k], "{what}: {k} changed: {now}");
        }
        assert_eq!(
            now["replication"]["upstream"], before["replication"]["upstream"],
            "{what}"
        );
        let d = bpg.status_json(&["status", "dev"])[0].clone();
        assert_eq!(d["snapshot"], dev_before["snapshot"], "{what}: {d}");
        assert_eq!(d["status"], "running", "{what}: {d}");
        assert_eq!(std::fs::read(&passfile).unwrap(), pass_before, "{what}");
        assert!(
            datasets_with(&env, "rep1.r").is_empty(),
            "{what}: left behind: {:?}",
            datasets_with(&env, "rep1.r")
        );
        assert!(
            !env.home.join("replicas/rep1/pgpass.rebuild").exists(),
            "{what}"
        );
        assert!(
            !env.home.join("replicas/rep1/pgpass.old").exists(),
            "{what}"
        );
    };

    // An unreachable primary: nothing is touched.
    let err = bpg.fails(&[
        "follow",
        "rep1",
        "--rebuild",
        "--from",
        &format!("postgresql://{REPL_USER}:x@10.123.254.254:5432/postgres"),
    ]);
    assert!(err.contains("10.123.254.254"), "{err}");
    check("unreachable primary");
    wait_streaming(&bpg, "rep1").await;

    // Failures after the base backup, after the old server stopped, after
    // the datasets were swapped, after the new server started: each is
    // undone, the old replica running again.
    for fault in [
        "rebuild_after_backup",
        "rebuild_after_stop",
        "rebuild_after_swap",
        "rebuild_after_start",
    ] {
        let args = ["follow", "rep1", "--rebuild"];
        let o = bpg
            .command(&args)
            .env("BETTERPG_FAULT", fault)
            .output()
            .unwrap();
        let err = check_failure(&args, &o);
        assert!(err.contains(fault), "{fault}: {err}");
        check(fault);
        wait_streaming(&bpg, "rep1").await;
        assert_eq!(count_rows(&dev_url, "seq").await, 200, "{fault}");
    }
    // The replica still follows: new ids reach a new branch.
    write_ids(&primary, 201, 250);
    let dev2 = bpg.json(&["branch", "rep1", "dev2"]);
    assert_eq!(
        assert_prefix(dev2["branch"]["url"].as_str().unwrap(), 250).await,
        250
    );
    // And a rebuild of a healthy replica (same cluster) works.
    let out = bpg.json(&["follow", "rep1", "--rebuild"]);
    assert_eq!(out["system_id"], first["system_id"], "{out}");
    assert!(
        out["retired_dataset"].is_string(),
        "dev needs the old data: {out}"
    );
    wait_streaming(&bpg, "rep1").await;
    assert_eq!(count_rows(&dev_url, "seq").await, 200);
    for b in ["dev", "dev2", "rep1"] {
        bpg.ok(&["destroy", b]);
    }
    bpg.ok(&["gc"]);
    assert_consistent(&env);
}

/// A held `bpg`, killed when dropped: a failing test must not leave it
/// paused (it would hold whatever it inherited, such as a lock of the
/// test runner, for an hour).
struct Held(std::process::Child);

impl Held {
    fn id(&self) -> u32 {
        self.0.id()
    }

    /// Kill it and wait for it.
    fn kill(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `bpg ARGS` with `BETTERPG_FAULT=<fault>` and wait until it says it
/// is pausing there.
fn paused_at(bpg: &Bpg, args: &[&str], fault: &str) -> Held {
    use std::io::BufRead;
    let mut c = bpg
        .command(args)
        .env("BETTERPG_FAULT", fault)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn bpg");
    let step = fault.split(':').next().unwrap();
    let mut err = std::io::BufReader::new(c.stderr.take().unwrap());
    let c = Held(c);
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = err.read_line(&mut line).unwrap();
        assert!(n > 0, "bpg {args:?} ended before pausing at {step}: {seen}");
        if line.contains(&format!("pausing at {step}")) {
            break;
        }
        seen.push_str(&line);
    }
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_never_runs_with_another_rebuild_or_a_branch_of_the_replica() {
    require_fault_injection();
    let env = env("bpgrl");
    let bpg = Bpg::of(&env);
    let primary = RemotePrimary::start("bpgrl", 15);
    write_ids(&primary, 1, 100);
    bpg.json(&["follow", "rep1", "--from", &primary.url_for(REPL_USER)]);
    wait_streaming(&bpg, "rep1").await;
    let dev = bpg.json(&["branch", "rep1", "dev"]);
    let dev_url = dev["branch"]["url"].as_str().unwrap().to_string();
    let before = replica_status(&bpg, "rep1");
    let names = |bpg: &Bpg| -> Vec<String> {
        let mut v: Vec<String> = bpg
            .status_json(&["status"])
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };

    // A rebuild held after its base backup, before the swap.
    let held = paused_at(
        &bpg,
        &["follow", "rep1", "--rebuild"],
        "rebuild_after_backup:pause",
    );
    let pid = format!("pid {}", held.id());
    assert_eq!(datasets_with(&env, "rep1.r").len(), 1);
    // A second rebuild is refused, naming the first; it made nothing.
    let err = bpg.fails(&["follow", "rep1", "--rebuild"]);
    assert!(
        err.contains("in use by") && err.contains(&pid) && err.contains("--rebuild"),
        "a second rebuild: {err}"
    );
    assert_eq!(datasets_with(&env, "rep1.r").len(), 1, "{err}");
    // A branch, a named snapshot, a destroy of the replica: refused, saying
    // who rebuilds it; nothing made or taken.
    for args in [
        &["branch", "rep1", "dev2"][..],
        &["snapshot", "rep1", "--name", "s1"],
        &["destroy", "rep1", "--force"],
    ] {
        let err = bpg.fails(args);
        assert!(
            err.contains("being rebuilt") && err.contains(&pid),
            "{args:?} during a rebuild: {err}"
        );
    }
    assert_eq!(names(&bpg), ["dev", "rep1"]);
    assert!(bpg.json(&["snapshots"])["snapshots"]
        .as_array()
        .unwrap()
        .is_empty());
    // The old replica and its branch are untouched meanwhile; a branch of
    // the branch is not a branch of the replica: it works.
    let now = replica_status(&bpg, "rep1");
    assert_eq!(now["dataset"], before["dataset"], "{now}");
    assert_eq!(now["status"], "running", "{now}");
    assert_eq!(count_rows(&dev_url, "seq").await, 100);
    bpg.json(&["branch", "dev", "devdev"]);
    bpg.ok(&["destroy", "devdev"]);

    // The held rebuild is killed before its swap: the replica is as it
    // was; the next rebuild removes what the dead one left.
    held.kill();
    wait_streaming(&bpg, "rep1").await;
    assert_eq!(replica_status(&bpg, "rep1")["dataset"], before["dataset"]);

    // The other way round: a branch of the replica is being made (held
    // before it reserves its name) when a rebuild is asked: refused,
    // naming the branch.
    let branching = paused_at(&bpg, &["branch", "rep1", "dev2"], "before_reserve:pause");
    let err = bpg.fails(&["follow", "rep1", "--rebuild"]);
    assert!(
        err.contains("in use by") && err.contains(&format!("pid {}", branching.id())),
        "a rebuild during a branch: {err}"
    );
    // Branches of the replica may run side by side.
    bpg.json(&["branch", "rep1", "dev3"]);
    branching.kill();
    assert_eq!(names(&bpg), ["dev", "dev3", "rep1"]);

    // With nothing else running, the rebuild runs; the branches made
    // before it run on.
    write_ids(&primary, 101, 150);
    let out = bpg.json(&["follow", "rep1", "--rebuild"]);
    assert!(out["retired_dataset"].is_string(), "{out}");
    assert_eq!(datasets_with(&env, "rep1.r").len(), 1, "the new data only");
    wait_streaming(&bpg, "rep1").await;
    assert_eq!(count_rows(&dev_url, "seq").await, 100);
    let dev4 = bpg.json(&["branch", "rep1", "dev4"]);
    assert_eq!(
        assert_prefix(dev4["branch"]["url"].as_str().unwrap(), 150).await,
        150
    );
    for b in ["dev", "dev3", "dev4", "rep1"] {
        bpg.ok(&["destroy", b]);
    }
    bpg.ok(&["gc"]);
    assert_consistent(&env);
}
