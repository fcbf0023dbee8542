//! Isolation item 8: fault injection is compiled only into test builds. A
//! `bpg` built without the cargo feature `fault-injection` (what ships) never
//! reads `BETTERPG_FAULT`: with `BETTERPG_FAULT=after_backup_start:pause` set,
//! a branch still completes at once instead of holding the source in backup
//! mode with a WAL-holding slot for an hour. Real ZFS, real PostgreSQL 15.
//!
//! The test build of `bpg` (with the feature) is the control: it obeys the
//! same variable. Needs `BPG_NO_FAULT_BIN`: a `bpg` built WITHOUT the feature (scripts/test.sh
//! builds one into target/no-fault-injection/bpg); missing, the test fails.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use betterpg_testkit::*;

fn run_ok(exe: &Path, home: &Path, args: &[&str]) -> String {
    let o = Command::new(exe)
        .arg("--home")
        .arg(home)
        .args(args)
        .output()
        .expect("run bpg");
    assert!(
        o.status.success(),
        "{} {args:?} failed: {}",
        exe.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn betterpg_fault_is_ignored_by_a_build_without_the_feature() {
    let exe = no_fault_bin();
    assert!(
        !has_fault_injection(&exe),
        "{} reports fault injection compiled in: it must be built without the fault-injection feature",
        exe.display()
    );
    if std::env::var_os("BPG_TEST_PORT_BASE").is_none() {
        set_port_base(43000);
    }
    let env = TestEnv::plan("bpgfi");
    let home = env.home.clone();
    let init = init_args(&env, &env.pool_file, "1G");
    let init: Vec<&str> = init.iter().map(String::as_str).collect();
    run_ok(&exe, &home, &init);
    run_ok(&exe, &home, &["create", "prod"]);
    let prod_url = run_ok(&exe, &home, &["url", "prod"]).trim().to_string();

    // Control: the test build (with the feature) obeys the variable here.
    require_fault_injection();
    let o = Command::new(bpg_exe())
        .arg("--home")
        .arg(&home)
        .args(["branch", "prod", "control"])
        .env("BETTERPG_FAULT", "after_backup_start")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("injected fault at step after_backup_start"),
        "the test build ignored BETTERPG_FAULT: {err}"
    );

    // A test build would pause here for an hour: the branch must complete.
    let mut child = Command::new(&exe)
        .arg("--home")
        .arg(&home)
        .args(["--json", "branch", "prod", "dev"])
        .env("BETTERPG_FAULT", "after_backup_start:pause")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Not a timing assert: a guard so a paused branch fails the test
    // instead of hanging it for an hour.
    let guard = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > guard {
            // The source is in backup mode right now: say so before killing.
            let c = connect(&prod_url).await;
            let in_backup: i64 = c
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' \
                     AND query ILIKE '%backup_start%'",
                    &[],
                )
                .await
                .map(|r| r.get(0))
                .unwrap_or(-1);
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "bpg branch with BETTERPG_FAULT=after_backup_start:pause did not finish in 300 s \
                 (sessions that started a backup: {in_backup}): the build obeyed fault injection"
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(status.success(), "branch failed: {stderr}");
    assert!(
        !stderr.contains("fault injection"),
        "a build without the feature mentions fault injection: {stderr}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("branch --json");
    let url = report["branch"]["url"].as_str().expect("branch url");
    let n: i32 = connect(url)
        .await
        .query_one("SELECT 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    // The source is out of backup mode and holds no slot of ours.
    let c = connect(&prod_url).await;
    let slots: i64 = c
        .query_one("SELECT count(*) FROM pg_replication_slots", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(slots, 0, "the source still holds a replication slot");
    run_ok(&exe, &home, &["destroy", "prod", "--force"]);
}
