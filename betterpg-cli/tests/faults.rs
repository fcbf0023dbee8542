//! Fault injection: the branch operation stopped at every step, by an
//! injected error and by SIGKILL of the `bpg` process; the source killed in
//! the middle of a branch; a branch server that cannot start. After each:
//! the source is out of backup mode, holds no slot of ours, keeps serving
//! writes; nothing half-made stays (or `bpg gc` removes it); the same branch
//! then succeeds. Real ZFS, real PostgreSQL 15.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use betterpg_testkit::*;

const STEPS: &[&str] = &[
    "after_backup_start",
    "after_snapshot",
    "after_backup_stop",
    "after_clone",
    "after_start",
    "before_catalog",
];

/// `bpg --home HOME ARGS` as a command, to add environment or pipes.
fn bpg_cmd(env: &TestEnv, args: &[&str]) -> Command {
    Bpg::of(env).command(args)
}

fn setup() -> TestEnv {
    require_fault_injection();
    default_port_base(55700);
    let env = TestEnv::plan("bpgt");
    init(&env, "1G");
    env
}

/// The source is out of backup mode (no betterpg session: a non-exclusive
/// backup lives only as long as its session), holds no replication slot and
/// takes writes.
async fn assert_source_healthy(url: &str, tag: &str) {
    let c = connect(url).await;
    let mut ok = false;
    for _ in 0..100 {
        if slots_and_sessions(&c).await == (0, 0) {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        ok,
        "{tag}: the source still holds a betterpg slot or backup session"
    );
    c.execute("INSERT INTO t VALUES (DEFAULT)", &[])
        .await
        .unwrap_or_else(|e| panic!("{tag}: source refuses writes: {e}"));
}

/// Only prod (and the root and the branch space) remain in the pool and
/// the catalog.
fn assert_only_prod(bpg: &Bpg, env: &TestEnv, tag: &str) {
    let names = zfs_tree(&env.pool);
    let expected = vec![
        env.pool.clone(),
        format!("{}/betterpg", env.pool),
        format!("{}/betterpg/_branches", env.pool),
        format!("{}/betterpg/prod", env.pool),
    ];
    assert_eq!(names, expected, "{tag}: leftovers in the pool");
    let st = bpg.status_json(&["status"]);
    let names: Vec<&str> = st
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["prod"], "{tag}: leftovers in the catalog");
}

/// Branch again: it must work now. Then remove it for the next round.
async fn assert_retry_works(bpg: &Bpg<'_>, tag: &str) {
    let r = bpg.json(&["branch", "prod", "dev"]);
    let n: i64 = connect(r["branch"]["url"].as_str().unwrap())
        .await
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap_or_else(|e| panic!("{tag}: retried branch unusable: {e}"))
        .get(0);
    assert!(n >= 100, "{tag}: retried branch lacks rows");
    bpg.ok(&["destroy", "dev"]);
}

async fn make_prod(bpg: &Bpg<'_>) -> String {
    let prod = bpg.json(&["create", "prod"]);
    let url = prod["url"].as_str().unwrap().to_string();
    connect(&url)
        .await
        .batch_execute("CREATE TABLE t (id serial PRIMARY KEY); INSERT INTO t SELECT FROM generate_series(1, 100)")
        .await
        .unwrap();
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_error_at_every_step_leaves_nothing_behind() {
    let env = setup();
    let bpg = Bpg::of(&env);
    let url = make_prod(&bpg).await;
    for step in STEPS {
        let o = bpg_cmd(&env, &["branch", "prod", "dev"])
            .env("BETTERPG_FAULT", step)
            .output()
            .unwrap();
        assert!(!o.status.success(), "{step}: branch should fail");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(&format!("injected fault at step {step}")),
            "{step}: {err}"
        );
        assert_source_healthy(&url, step).await;
        assert_only_prod(&bpg, &env, step);
        let gc = bpg.json(&["gc", "--dry-run"]);
        assert_eq!(
            gc["items"].as_array().unwrap().len(),
            0,
            "{step}: gc finds {gc}"
        );
        assert_retry_works(&bpg, step).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_every_step_is_cleaned_by_gc() {
    let env = setup();
    let bpg = Bpg::of(&env);
    let url = make_prod(&bpg).await;
    for step in STEPS {
        let mut child = bpg_cmd(&env, &["branch", "prod", "dev"])
            .env("BETTERPG_FAULT", format!("{step}:pause"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let line = lines.next().expect("bpg said nothing").unwrap();
        assert!(
            line.contains(&format!("pausing at {step}")),
            "{step}: {line}"
        );
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        child.wait().unwrap();

        // The server side cleans up the backup and the temporary slot by itself.
        assert_source_healthy(&url, step).await;
        // Status marks the half-made branch instead of hiding it.
        let st = bpg.status_json(&["status"]);
        let dev = st
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "dev")
            .unwrap_or_else(|| panic!("{step}: status hides the half-made branch: {st}"));
        assert_eq!(dev["state"], "incomplete", "{step}: {dev}");
        let catalog_before = std::fs::read_to_string(env.home.join("catalog.json")).unwrap();
        let pool_before = zfs_tree(&env.pool);
        let dry = bpg.json(&["gc", "--dry-run"]);
        let items = dry["items"].as_array().unwrap();
        assert!(
            items
                .iter()
                .any(|i| i["what"] == "catalog-entry" && i["name"] == "dev"),
            "{step}: {dry}"
        );
        if *step != "after_backup_start" {
            assert!(
                items
                    .iter()
                    .any(|i| i["what"] == "snapshot" || i["what"] == "dataset"),
                "{step}: {dry}"
            );
        }
        if matches!(*step, "after_start" | "before_catalog") {
            assert!(items.iter().any(|i| i["what"] == "server"), "{step}: {dry}");
        }
        assert_eq!(
            catalog_before,
            std::fs::read_to_string(env.home.join("catalog.json")).unwrap()
        );
        assert_eq!(
            pool_before,
            zfs_tree(&env.pool),
            "{step}: --dry-run changed the pool"
        );
        let port = dev["port"].as_u64().unwrap() as u16;
        let real = bpg.json(&["gc"]);
        // The dry run listed exactly what the real run removed.
        let what_and_name = |v: &serde_json::Value| {
            let mut l: Vec<(String, String)> = v["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| (i["what"].to_string(), i["name"].to_string()))
                .collect();
            l.sort();
            l
        };
        assert_eq!(
            what_and_name(&dry),
            what_and_name(&real),
            "{step}: gc --dry-run and gc disagree"
        );
        assert_only_prod(&bpg, &env, step);
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "{step}: a server still listens on the half-made branch's port"
        );
        assert_eq!(
            bpg.json(&["gc", "--dry-run"])["items"]
                .as_array()
                .unwrap()
                .len(),
            0
        );
        assert_retry_works(&bpg, step).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_killed_mid_branch_fails_cleanly_and_recovers() {
    let env = setup();
    let bpg = Bpg::of(&env);
    let url = make_prod(&bpg).await;
    let mut child = bpg_cmd(&env, &["branch", "prod", "dev"])
        .env("BETTERPG_FAULT", "after_backup_start:sleep=2")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.contains("pausing at after_backup_start"), "{line}");
    // Kill the source's postmaster and every child of it, as a crash would.
    let data = data_dir_of(&format!("{}/betterpg/prod", env.pool));
    let pid: i32 = std::fs::read_to_string(data.join("postmaster.pid"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    Command::new("pkill")
        .args(["-KILL", "-P", &pid.to_string()])
        .status()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "branch of a crashed source must fail");
    assert!(
        rest.lines()
            .any(|l| l.starts_with("error: ") && l.contains("lost the connection to the source")),
        "one clear error expected: {rest}"
    );
    assert_only_prod(&bpg, &env, "source killed");
    // The source comes back (crash recovery) with its data.
    let mut started = false;
    for _ in 0..50 {
        if bpg.run(&["start", "prod"]).status.success() {
            started = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        started,
        "source did not start again: {}",
        bpg.ok(&["logs", "prod", "--tail", "20"])
    );
    assert_source_healthy(&url, "source killed").await;
    assert_retry_works(&bpg, "source killed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branch_server_that_cannot_start_fails_with_its_log_and_leaves_nothing() {
    let env = setup();
    let bpg = Bpg::of(&env);
    let url = make_prod(&bpg).await;
    // A setting the running source never re-reads, but a branch of it will.
    let c = connect(&url).await;
    let conf: String = c.query_one("SHOW config_file", &[]).await.unwrap().get(0);
    let original = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(
        &conf,
        format!("{original}\nshared_buffers = 'not a size'\n"),
    )
    .unwrap();
    let o = bpg.run(&["branch", "prod", "dev"]);
    std::fs::write(&conf, &original).unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("failed to start"), "{err}");
    assert!(
        err.contains("shared_buffers"),
        "the error should quote the branch log: {err}"
    );
    assert_only_prod(&bpg, &env, "bad config");
    assert_source_healthy(&url, "bad config").await;
    assert_retry_works(&bpg, "bad config").await;
}
