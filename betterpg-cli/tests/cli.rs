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

/// `bpg config`: settings are shown, changed all or nothing, kept in the
/// catalog, and bad values or names change nothing.
#[test]
fn config_shows_and_changes_settings_and_refuses_bad_values() {
    let env = setup();
    let bpg = Bpg::of(&env);
    bpg.ok(&["create", "prod"]);
    let catalog = || std::fs::read_to_string(env.home.join("catalog.json")).unwrap();

    let shown = bpg.json(&["config", "prod"]);
    assert_eq!(shown["name"], "prod");
    let s = &shown["settings"];
    assert_eq!(s["mask"], serde_json::json!([]), "{shown}");
    assert_eq!(s["forbid_unmasked"], false, "{shown}");
    for k in [
        "credentials",
        "ttl",
        "idle_stop",
        "keep_hourly",
        "keep_daily",
        "keep_last",
        "retain_wal",
        "branch_shared_buffers",
        "branch_max_connections",
    ] {
        assert!(s[k].is_null(), "{k} unset: {shown}");
    }
    assert!(
        !catalog().contains("\"settings\""),
        "nothing set, nothing stored"
    );

    let dir = tempfile::tempdir().unwrap();
    let mask = dir.path().join("users.sql");
    std::fs::write(&mask, "UPDATE users SET email = NULL;\n").unwrap();
    let mask_s = mask.to_str().unwrap();
    let set = bpg.json(&[
        "config",
        "prod",
        "--ttl",
        "8h",
        "--idle-stop",
        "30m",
        "--keep-hourly",
        "24",
        "--keep-daily",
        "7",
        "--keep-last",
        "3",
        "--retain-wal",
        "1d",
        "--credentials",
        "rotate",
        "--mask",
        mask_s,
        "--forbid-unmasked",
        "--branch-shared-buffers",
        "64M",
        "--branch-max-connections",
        "40",
    ]);
    let s = &set["settings"];
    assert_eq!(s["branch_shared_buffers"], 64 << 20, "{set}");
    assert_eq!(s["branch_max_connections"], 40, "{set}");
    assert_eq!(s["ttl"], 8 * 3600, "{set}");
    assert_eq!(s["idle_stop"], 1800, "{set}");
    assert_eq!(
        (
            s["keep_hourly"].clone(),
            s["keep_daily"].clone(),
            s["keep_last"].clone()
        ),
        (24.into(), 7.into(), 3.into()),
        "{set}"
    );
    assert_eq!(s["retain_wal"], 86400, "{set}");
    assert_eq!(s["credentials"], "rotate", "{set}");
    assert_eq!(s["forbid_unmasked"], true, "{set}");
    let stored_mask = std::fs::canonicalize(&mask).unwrap();
    assert_eq!(s["mask"], serde_json::json!([stored_mask]), "{set}");
    // Kept: a new process reads them back; text names each with its value.
    assert_eq!(bpg.json(&["config", "prod"]), set);
    let text = bpg.ok(&["config", "prod"]);
    for want in [
        "ttl",
        "8h",
        "idle_stop",
        "30m",
        "keep_last",
        "rotate",
        "users.sql",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }

    // Bad values, unknown names, missing files: a clear error, nothing changed.
    let before = catalog();
    for (args, want) in [
        (vec!["config", "prod", "--ttl", "soon"], "ttl"),
        (vec!["config", "prod", "--keep-last", "0"], "keep_last"),
        (
            vec!["config", "prod", "--credentials", "share"],
            "credentials",
        ),
        (
            vec![
                "config",
                "prod",
                "--ttl",
                "1h",
                "--mask",
                "/nonexistent/m.sql",
            ],
            "mask",
        ),
        (
            vec!["config", "prod", "--branch-shared-buffers", "64K"],
            "branch_shared_buffers",
        ),
        (
            vec!["config", "prod", "--branch-max-connections", "5"],
            "branch_max_connections",
        ),
        (vec!["config", "ghost", "--ttl", "1h"], "not found"),
        (vec!["config", "a/b", "--ttl", "1h"], "invalid name"),
    ] {
        let err = bpg.fails(&args);
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    }
    assert_eq!(before, catalog(), "a refused change changes nothing");

    // `none` clears; clearing everything stores nothing again.
    let cleared = bpg.json(&[
        "config",
        "prod",
        "--ttl",
        "none",
        "--idle-stop",
        "none",
        "--keep-hourly",
        "none",
        "--keep-daily",
        "none",
        "--keep-last",
        "none",
        "--retain-wal",
        "none",
        "--credentials",
        "none",
        "--mask",
        "none",
        "--allow-unmasked",
        "--branch-shared-buffers",
        "none",
        "--branch-max-connections",
        "none",
    ]);
    assert!(cleared["settings"]["ttl"].is_null(), "{cleared}");
    assert_eq!(
        cleared["settings"]["mask"],
        serde_json::json!([]),
        "{cleared}"
    );
    assert!(!catalog().contains("\"settings\""), "{}", catalog());
    bpg.ok(&["destroy", "prod"]);
}

/// `SHOW what` on the server at `url`.
async fn show(url: &str, what: &str) -> String {
    connect(url)
        .await
        .query_one(&format!("SHOW {what}"), &[])
        .await
        .unwrap()
        .get::<_, String>(0)
}

/// A hundred branches must fit on one machine: a branch's server is small
/// in memory (shared_buffers 32MB, max_connections 25) whatever its
/// source runs with; the source's settings branch_shared_buffers and
/// branch_max_connections raise it for its new branches (and their
/// branches), a branch's own from its next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branches_are_small_in_memory_and_the_settings_raise_it() {
    let env = setup();
    let bpg = Bpg::of(&env);
    bpg.ok(&["create", "prod"]);
    let prod = bpg.ok(&["url", "prod"]).trim().to_string();
    assert_eq!(
        show(&prod, "shared_buffers").await,
        "128MB",
        "a database keeps PostgreSQL's default"
    );
    assert_eq!(show(&prod, "max_connections").await, "100");

    let dev = bpg.json(&["branch", "prod", "dev"]);
    let dev_url = dev["branch"]["url"].as_str().unwrap().to_string();
    assert_eq!(show(&dev_url, "shared_buffers").await, "32MB", "{dev}");
    assert_eq!(show(&dev_url, "max_connections").await, "25");
    assert_eq!(
        show(&dev_url, "wal_buffers").await,
        "1MB",
        "follows shared_buffers"
    );

    bpg.json(&[
        "config",
        "prod",
        "--branch-shared-buffers",
        "48M",
        "--branch-max-connections",
        "40",
    ]);
    let big = bpg.json(&["branch", "prod", "big", "--fast"]);
    let big_url = big["branch"]["url"].as_str().unwrap().to_string();
    assert_eq!(show(&big_url, "shared_buffers").await, "48MB", "{big}");
    assert_eq!(show(&big_url, "max_connections").await, "40");
    assert_eq!(
        show(&prod, "shared_buffers").await,
        "128MB",
        "the source itself is unchanged"
    );
    let kept = bpg.json(&["config", "big"]);
    assert_eq!(
        kept["settings"]["branch_shared_buffers"],
        48 << 20,
        "{kept}"
    );
    // A branch of that branch has it too, and so has the branch after a reset.
    let sub = bpg.json(&["branch", "big", "sub"]);
    let sub_url = sub["branch"]["url"].as_str().unwrap().to_string();
    assert_eq!(show(&sub_url, "shared_buffers").await, "48MB", "{sub}");
    let reset = bpg.json(&["reset", "sub"]);
    let sub_url = reset["branch"]["url"].as_str().unwrap().to_string();
    assert_eq!(show(&sub_url, "max_connections").await, "40", "{reset}");

    // A branch's own setting: from its next start.
    assert_eq!(
        show(&dev_url, "shared_buffers").await,
        "32MB",
        "not before a restart"
    );
    bpg.json(&["config", "dev", "--branch-shared-buffers", "40M"]);
    bpg.ok(&["stop", "dev"]);
    bpg.ok(&["start", "dev"]);
    assert_eq!(show(&dev_url, "shared_buffers").await, "40MB");
    assert_eq!(show(&dev_url, "max_connections").await, "25");
    bpg.ok(&["destroy", "prod", "--force"]);
}
