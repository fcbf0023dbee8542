//! The `bpg` binary end to end: real ZFS pool, real PostgreSQL 15.

use std::process::Command;

use betterpg_testkit::*;

fn setup() -> TestEnv {
    std::env::set_var("BPG_TEST_PORT_BASE", "55500");
    let env = TestEnv::plan("bpgc");
    init(&env, "1G");
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_flow_through_the_cli() {
    let env = setup();
    let bpg = Bpg::of(&env);
    // init twice is refused
    let err = bpg.fails(&["init", "--dataset", &format!("{}/betterpg", env.pool)]);
    assert!(err.contains("already exists"), "{err}");

    let created = bpg.json(&["create", "prod"]);
    assert_eq!(created["status"], "running");
    let url = bpg.ok(&["url", "prod"]).trim().to_string();
    assert_eq!(url, created["url"].as_str().unwrap());
    connect(&url)
        .await
        .batch_execute("CREATE TABLE t AS SELECT generate_series(1, 1000) AS id")
        .await
        .unwrap();

    // Human output names every step with its time and ends with the URL.
    let out = bpg.ok(&["branch", "prod", "dev"]);
    for step in [
        "backup_start",
        "snapshot",
        "backup_stop",
        "clone",
        "start",
        "total",
    ] {
        assert!(out.contains(step), "missing {step} in:\n{out}");
    }
    assert!(
        out.trim_end()
            .lines()
            .last()
            .unwrap()
            .starts_with("postgresql://"),
        "{out}"
    );

    let fast = bpg.json(&["branch", "prod", "quick", "--fast"]);
    assert_eq!(fast["branch"]["mode"], "crash-consistent");
    assert!(fast["total_millis"].as_f64().unwrap() > 0.0);
    // --mode names the mode (--fast is its shorthand), on reset too.
    let named = bpg.json(&["reset", "quick", "--mode", "application-consistent"]);
    assert_eq!(named["branch"]["mode"], "application-consistent");
    let named = bpg.json(&["reset", "quick", "--mode", "crash-consistent"]);
    assert_eq!(named["branch"]["mode"], "crash-consistent");
    // Another name, or both spellings, are usage errors (exit 2) before
    // anything is made.
    for args in [
        &["branch", "prod", "nomode", "--mode", "fast"][..],
        &[
            "branch",
            "prod",
            "nomode",
            "--mode",
            "crash-consistent",
            "--fast",
        ],
    ] {
        let o = bpg.run(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "bpg {args:?}: {err}");
        assert!(err.contains("--mode"), "bpg {args:?}: {err}");
    }
    bpg.fails(&["url", "nomode"]);

    let status = bpg.status_json(&["status"]);
    let rows = status.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for r in rows {
        for key in [
            "name",
            "kind",
            "parent",
            "status",
            "port",
            "used_bytes",
            "referenced_bytes",
            "url",
            "mode",
        ] {
            assert!(r.get(key).is_some(), "missing {key} in {r}");
        }
    }
    let prod = rows.iter().find(|r| r["name"] == "prod").unwrap();
    assert_eq!(prod["kind"], "database");
    assert!(prod["parent"].is_null() && prod["mode"].is_null());
    let dev = rows.iter().find(|r| r["name"] == "dev").unwrap();
    assert_eq!(dev["kind"], "branch");
    assert_eq!(dev["parent"], "prod");
    assert_eq!(dev["mode"], "application-consistent");
    assert_eq!(dev["status"], "running");

    let n: i64 = connect(dev["url"].as_str().unwrap())
        .await
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1000);

    // The text tree shows the branch under its parent and the pool line.
    let text = bpg.ok(&["status"]);
    assert!(text.contains("└─ dev") && text.contains("pool "), "{text}");

    let logs = bpg.ok(&["logs", "dev", "--tail", "3"]);
    assert_eq!(logs.trim_end().lines().count(), 3, "{logs}");
    assert!(bpg
        .ok(&["logs", "dev"])
        .contains("completed backup recovery"));

    assert_eq!(bpg.json(&["stop", "dev"])["status"], "stopped");
    assert_eq!(bpg.status_json(&["status", "dev"])[0]["status"], "stopped");
    assert_eq!(bpg.json(&["start", "dev"])["status"], "running");

    let err = bpg.fails(&["destroy", "prod"]);
    assert!(err.contains("--force") && err.lines().count() == 1, "{err}");
    bpg.ok(&["destroy", "quick"]);
    bpg.ok(&["destroy", "prod", "--force"]);
    assert_eq!(bpg.status_json(&["status"]).as_array().unwrap().len(), 0);
}

#[test]
fn bad_input_fails_with_one_clear_line_and_changes_nothing() {
    let env = setup();
    let bpg = Bpg::of(&env);
    let catalog = || std::fs::read_to_string(env.home.join("catalog.json")).unwrap_or_default();
    let before = catalog();
    for bad in ["a/b", "x y", "..", "a@b", "$(id)", "é"] {
        let err = bpg.fails(&["create", bad]);
        assert!(err.contains("invalid name"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    let err = bpg.fails(&["branch", "ghost", "dev"]);
    assert!(
        err.contains("not found") && err.contains("bpg status"),
        "{err}"
    );
    let err = bpg.fails(&["url", "ghost"]);
    assert!(err.contains("not found"), "{err}");
    assert_eq!(before, catalog());

    // A home that was never initialised says how to fix it.
    let o = Command::new(bpg_exe())
        .args(["--home", "/nonexistent/bpg-home", "status"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bpg init"), "{err}");
    // init on a pool that does not exist
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(bpg_exe())
        .arg("--home")
        .arg(dir.path())
        .args(["init", "--dataset", "no_such_pool_xyz/betterpg"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no_such_pool_xyz") && err.contains("zpool create"),
        "{err}"
    );
    assert!(!dir.path().join("config.json").exists());
}

#[test]
fn init_with_a_bad_option_leaves_no_pool_behind() {
    std::env::set_var("BPG_TEST_PORT_BASE", "55500");
    let env = TestEnv::plan("bpgc");
    let file = env.pool_file.to_string_lossy().into_owned();
    let bad: [(&[&str], &str); 3] = [
        (&["--ports", "60000-50000"], "invalid port range"),
        (&["--runtime", "podman"], "unknown --runtime"),
        (
            &["--runtime", "native", "--image", "x"],
            "--image needs a container runtime",
        ),
    ];
    for (extra, want) in bad {
        let o = Command::new(bpg_exe())
            .arg("--home")
            .arg(&env.home)
            .args([
                "init",
                "--pool-file",
                &file,
                "--size",
                "1G",
                "--pool",
                &env.pool,
            ])
            .args(extra)
            .output()
            .unwrap();
        let err = check_failure(extra, &o);
        assert!(err.contains(want), "{extra:?}: {err}");
        assert!(!env.pool_file.exists(), "{extra:?}: pool file left behind");
        let pools = Command::new("zpool").arg("list").output().unwrap();
        assert!(
            !String::from_utf8_lossy(&pools.stdout).contains(&env.pool),
            "{extra:?}: pool left behind"
        );
        assert!(!env.home.join("config.json").exists());
    }
}
