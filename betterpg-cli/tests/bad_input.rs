//! Bad input through the `bpg` binary: every case must fail with a clear
//! one-line error that says what to do, a non-zero exit (never a panic or
//! clap's usage status 2), and change nothing: catalog.json byte-identical
//! and the pool's datasets and snapshots (`zfs get -r -H -o name type POOL`)
//! the same before and after.
//!
//! Ports: 59620-59739 (six homes at most). Pools: bpgsafe*.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use betterpg_testkit::*;

const PORT_LO: u16 = 59620;
const PORT_HI: u16 = 59739;

/// Bad inputs checked in this run (printed per test for docs/safety.md).
static CHECKED: AtomicUsize = AtomicUsize::new(0);

fn env(size: &str) -> TestEnv {
    TestEnv::safe(PORT_LO, PORT_HI, size)
}

/// Run a bad command: it fails cleanly, its error contains every `want`,
/// and the home and pool are unchanged. Returns the error text.
fn refused(env: &TestEnv, args: &[&str], want: &[&str]) -> String {
    let before = state_of(env);
    let err = Bpg::of(env).fails(args);
    for w in want {
        assert!(err.contains(w), "bpg {args:?}: error lacks {w:?}:\n{err}");
    }
    assert_eq!(
        before,
        state_of(env),
        "bpg {args:?} changed the catalog or the pool"
    );
    CHECKED.fetch_add(1, Ordering::SeqCst);
    err
}

fn report(test: &str) {
    eprintln!(
        "bad inputs checked so far (after {test}): {}",
        CHECKED.load(Ordering::SeqCst)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_sources_dependents_and_binaries() {
    let env = env("1G");
    let bpg = Bpg::of(&env);
    let prod = bpg.json(&["create", "prod"]);
    connect(prod["url"].as_str().unwrap())
        .await
        .batch_execute("CREATE TABLE t AS SELECT generate_series(1, 1000) AS id")
        .await
        .unwrap();
    // A branch of a branch of a branch works (supported, any depth).
    bpg.ok(&["branch", "prod", "dev"]);
    bpg.ok(&["branch", "dev", "dev2", "--fast"]);
    let deep = bpg.json(&["branch", "dev2", "dev3"]);
    assert_eq!(deep["branch"]["parent"], "dev2");
    assert_eq!(
        count_rows(deep["branch"]["url"].as_str().unwrap(), "t").await,
        1000
    );
    let tree = bpg.ok(&["status"]);
    assert!(
        tree.contains("      └─ dev3"),
        "dev3 shown three levels deep:\n{tree}"
    );

    let long = "a".repeat(64);
    let bad_names = [
        "",
        long.as_str(),
        "a/b",
        "a@b",
        "a b",
        "..",
        ".",
        "-x",
        "--force",
        "a;rm -rf /",
        "$(id)",
        "`id`",
        "a|b",
        "a&&b",
        "a>b",
        "x'y",
        "é",
        "名前",
        "a\tb",
        "a\nb",
    ];
    for bad in bad_names {
        let want: &[&str] = &["invalid name", "ASCII letters"];
        // `--` so that names with a leading dash reach betterpg (without it
        // clap itself refuses them as unknown options).
        let e = refused(&env, &["create", "--", bad], want);
        assert_eq!(e.lines().count(), 1, "{e}");
        refused(&env, &["branch", "prod", "--", bad], want);
        if bad == "a@b" {
            // As a source, `SRC@NAME` names a named snapshot: "a@b" is a
            // well-formed reference to one of a source that does not exist.
            refused(&env, &["branch", "--", bad, "ok"], &["\"a\" not found"]);
        } else {
            refused(&env, &["branch", "--", bad, "ok"], want);
        }
        refused(&env, &["destroy", "--force", "--", bad], want);
        refused(&env, &["start", "--", bad], want);
        refused(&env, &["url", "--", bad], want);
    }
    // A leading dash without `--`: clap's own refusal (usage error).
    let o = bpg.run(&["create", "-rf"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("use '-- -r'"));

    // Taken names, unknown sources and targets.
    refused(
        &env,
        &["create", "prod"],
        &["already exists", "choose another name"],
    );
    refused(&env, &["branch", "prod", "dev"], &["already exists"]);
    refused(&env, &["branch", "dev", "dev3"], &["already exists"]);
    refused(&env, &["branch", "prod", "prod"], &["already exists"]);
    refused(
        &env,
        &["branch", "ghost", "x"],
        &["not found", "bpg status"],
    );
    for verb in ["start", "stop", "url", "logs", "destroy", "status"] {
        refused(&env, &[verb, "ghost"], &["not found", "bpg status"]);
    }
    // Dependents without --force, at every level.
    let e = refused(&env, &["destroy", "prod"], &["dev3, dev2, dev", "--force"]);
    assert_eq!(e.lines().count(), 1, "{e}");
    refused(&env, &["destroy", "dev"], &["dev3, dev2", "--force"]);
    refused(&env, &["destroy", "dev2"], &["dev3", "--force"]);

    // Binaries: nothing there, a directory without a server, a version
    // this machine lacks, a runtime this build lacks.
    refused(
        &env,
        &["create", "x", "--pg-bin", "/nonexistent/pg/bin"],
        &[
            "has no `postgres`",
            "--pg-bin must name a PostgreSQL bin directory",
        ],
    );
    refused(
        &env,
        &["create", "x", "--pg-bin", "/tmp"],
        &["--pg-bin must name"],
    );
    refused(
        &env,
        &["create", "x", "--pg-version", "13"],
        &[
            "no PostgreSQL 13 server binaries",
            "pg-versions.sh 13",
            "--pg-bin",
        ],
    );
    refused(
        &env,
        &[
            "create",
            "x",
            "--pg-bin",
            "/usr/lib/postgresql/15/bin",
            "--pg-version",
            "14",
        ],
        &["version mismatch", "holds PostgreSQL 15, not 14"],
    );
    refused(
        &env,
        &["create", "x", "--runtime", "nosuch"],
        &["runtime \"nosuch\"", "have:"],
    );

    // Everything still works.
    assert_consistent(&env);
    bpg.ok(&["destroy", "prod", "--force"]);
    report("names_sources_dependents_and_binaries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_or_newer_catalog_and_config_are_refused_and_left_byte_identical() {
    let env = env("1G");
    let bpg = Bpg::of(&env);
    bpg.ok(&["create", "prod"]);
    let cat_path = env.home.join("catalog.json");
    let good = std::fs::read(&cat_path).unwrap();
    let half = good[..good.len() / 2].to_vec();
    let contents: Vec<(&str, Vec<u8>, &str)> = vec![
        ("garbage", b"this is not json".to_vec(), "corrupt"),
        ("truncated", half, "corrupt"),
        ("empty", Vec::new(), "corrupt"),
        (
            "newer",
            br#"{"version": 99, "entries": {"future": {"shape": "unknown"}}}"#.to_vec(),
            "upgrade bpg",
        ),
        (
            "wrong shape",
            br#"{"version": 1, "entries": {"prod": {"name": 7}}}"#.to_vec(),
            "not a valid catalog",
        ),
    ];
    let verbs: &[&[&str]] = &[
        &["status"],
        &["create", "x"],
        &["branch", "prod", "x"],
        &["branch", "prod", "x", "--fast"],
        &["stop", "prod"],
        &["start", "prod"],
        &["url", "prod"],
        &["logs", "prod"],
        &["destroy", "prod", "--force"],
    ];
    for (what, bytes, want) in &contents {
        std::fs::write(&cat_path, bytes).unwrap();
        for args in verbs {
            let e = refused(&env, args, &["catalog", want]);
            assert!(
                e.contains("will not overwrite") || e.contains("left untouched"),
                "{what}: {args:?}: {e}"
            );
            assert_eq!(
                &std::fs::read(&cat_path).unwrap(),
                bytes,
                "{what}: {args:?} rewrote it"
            );
        }
    }
    std::fs::write(&cat_path, &good).unwrap();
    // The server was never touched (stop was refused).
    assert_eq!(bpg.status_json(&["status", "prod"])[0]["status"], "running");

    // The config file likewise.
    let cfg_path = env.home.join("config.json");
    let cfg = std::fs::read(&cfg_path).unwrap();
    let mut newer: serde_json::Value = serde_json::from_slice(&cfg).unwrap();
    newer["version"] = 99.into();
    for (bytes, want) in [
        (b"{oops".to_vec(), "not a valid betterpg config"),
        (serde_json::to_vec(&newer).unwrap(), "newer betterpg"),
    ] {
        std::fs::write(&cfg_path, &bytes).unwrap();
        for args in [&["status"][..], &["create", "x"], &["branch", "prod", "x"]] {
            refused(&env, args, &["configuration error", want]);
            assert_eq!(std::fs::read(&cfg_path).unwrap(), bytes);
        }
    }
    std::fs::write(&cfg_path, &cfg).unwrap();
    assert_consistent(&env);
    report("corrupt_or_newer_catalog_and_config");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_refuses_missing_pools_foreign_datasets_and_wrong_homes() {
    let env = env("1G");
    let pool = env.pool.clone();
    let other = tempfile::tempdir().unwrap();
    let h2 = other.path().join("home2");
    let run2 = |args: &[&str]| -> String {
        let before = zfs_tree(&pool);
        let o = Command::new(bpg_exe())
            .arg("--home")
            .arg(&h2)
            .args(args)
            .output()
            .unwrap();
        let err = check_failure(args, &o);
        assert!(!h2.join("config.json").exists(), "{args:?} wrote a config");
        assert_eq!(before, zfs_tree(&pool), "{args:?} changed the pool");
        CHECKED.fetch_add(1, Ordering::SeqCst);
        err
    };
    // A pool that does not exist.
    let e = run2(&["init", "--dataset", "bpgsafe_no_such_pool/betterpg"]);
    assert!(
        e.contains("bpgsafe_no_such_pool") && e.contains("zpool create"),
        "{e}"
    );
    // A parent dataset that does not exist.
    let e = run2(&["init", "--dataset", &format!("{pool}/missing/betterpg")]);
    assert!(e.contains("create the parent dataset first"), "{e}");
    // A dataset that is not ours.
    let foreign = format!("{pool}/foreign");
    let o = Command::new("zfs")
        .args(["create", &foreign])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let e = run2(&["init", "--dataset", &foreign]);
    assert!(
        e.contains("was not made by betterpg") && e.contains("choose a new dataset"),
        "{e}"
    );
    let prop = Command::new("zfs")
        .args(["get", "-H", "-o", "value", "betterpg:managed", &foreign])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&prop.stdout).trim(),
        "-",
        "foreign dataset was labelled"
    );
    // A dataset owned by another home.
    let e = run2(&["init", "--dataset", &format!("{pool}/betterpg")]);
    assert!(
        e.contains("belongs to the betterpg home") && e.contains("--home"),
        "{e}"
    );
    assert!(e.contains(&env.home.to_string_lossy().into_owned()), "{e}");
    // A pool name that is taken, a pool too small, a bad size.
    let img = other.path().join("p.img");
    let img_s = img.to_string_lossy().into_owned();
    for (args, want) in [
        (
            vec!["--size", "256M", "--pool", pool.as_str()],
            "already exists",
        ),
        (
            vec!["--size", "10M", "--pool", "bpgsafe_tiny"],
            "at least 64M",
        ),
        (vec!["--size", "lots", "--pool", "bpgsafe_tiny"], "size"),
    ] {
        let mut a = vec!["init", "--pool-file", img_s.as_str()];
        a.extend(args);
        let e = run2(&a);
        assert!(e.contains(want), "{a:?}: {e}");
        assert!(!img.exists(), "{a:?} left a pool file");
    }
    // A relative pool file, bad dataset names, bad ports, binaries, user.
    for (args, want) in [
        (
            vec![
                "init",
                "--pool-file",
                "rel.img",
                "--size",
                "256M",
                "--pool",
                "bpgsafe_rel",
            ],
            "absolute",
        ),
        (vec!["init", "--dataset", "bad/../name"], "invalid dataset"),
        (vec!["init", "--dataset", "a b/c"], "invalid dataset"),
        (
            vec!["init", "--dataset", &format!("{pool}/x"), "--ports", "lots"],
            "invalid --ports",
        ),
        (
            vec![
                "init",
                "--dataset",
                &format!("{pool}/x"),
                "--pg-bin",
                "/nonexistent",
            ],
            "--pg-bin must name",
        ),
        (
            vec![
                "init",
                "--dataset",
                &format!("{pool}/x"),
                "--os-user",
                "bpgsafe_nobody",
            ],
            "bpgsafe_nobody",
        ),
        (
            vec![
                "init",
                "--dataset",
                &format!("{pool}/x"),
                "--branch-headroom",
                "91",
            ],
            "0 (no limit on branches) to 90",
        ),
        (
            vec![
                "init",
                "--dataset",
                &format!("{pool}/x"),
                "--branch-reserve",
                "lots",
            ],
            "invalid size \"lots\"",
        ),
    ] {
        let e = run2(&args);
        assert!(e.contains(want), "{args:?}: {e}");
    }
    // The same home twice.
    refused(
        &env,
        &["init", "--dataset", &format!("{pool}/betterpg")],
        &["already exists"],
    );
    // Wrong --home: missing, an empty directory, a file.
    let file = other.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let empty = other.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for home in [
        std::path::PathBuf::from("/nonexistent/bpgsafe-home"),
        empty.clone(),
        file.clone(),
    ] {
        for args in [&["status"][..], &["create", "x"], &["branch", "a", "b"]] {
            let o = Command::new(bpg_exe())
                .arg("--home")
                .arg(&home)
                .args(args)
                .output()
                .unwrap();
            let e = check_failure(args, &o);
            assert!(
                e.contains("not initialised") && e.contains("bpg init"),
                "{home:?}: {e}"
            );
            assert!(e.contains("--home"), "{e}");
            CHECKED.fetch_add(1, Ordering::SeqCst);
        }
    }
    assert_eq!(
        std::fs::read_dir(&empty).unwrap().count(),
        0,
        "wrote into a wrong home"
    );
    report("init_refuses");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_with_wrong_password_or_without_superuser_is_refused_cleanly() {
    let env = env("1G");
    let bpg = Bpg::of(&env);
    let prod = bpg.json(&["create", "prod"]);
    let url = prod["url"].as_str().unwrap().to_string();
    connect(&url)
        .await
        .batch_execute("CREATE TABLE t AS SELECT generate_series(1, 100) AS id")
        .await
        .unwrap();
    let secret = env.home.join("secrets/prod");
    let good = std::fs::read(&secret).unwrap();

    // 1. The stored password is wrong (the secret file changed).
    std::fs::write(&secret, "not-the-password").unwrap();
    for fast in [false, true] {
        let mut args = vec!["branch", "prod", "dev"];
        if fast {
            args.push("--fast");
        }
        refused(&env, &args, &["password authentication failed", "postgres"]);
        assert!(!env.home.join("secrets/dev").exists());
    }
    std::fs::write(&secret, &good).unwrap();

    // 2. The role's password changed on the server (ALTER ROLE).
    let c = connect(&url).await;
    c.batch_execute("ALTER ROLE postgres PASSWORD 'changed-by-someone'")
        .await
        .unwrap();
    refused(
        &env,
        &["branch", "prod", "dev"],
        &["password authentication failed"],
    );
    // `start` of a stopped server whose password no longer matches: the
    // server is left stopped, with the reason.
    bpg.ok(&["stop", "prod"]);
    // It is given up on at once (no waiting for the start timeout), with
    // what to do.
    refused(
        &env,
        &["start", "prod"],
        &[
            "password authentication failed",
            "refuses the stored password",
            "ALTER ROLE",
        ],
    );
    assert_eq!(bpg.status_json(&["status", "prod"])[0]["status"], "stopped");
    // Put the password back (as the operator would) and it all works again.
    let port = prod["port"].as_u64().unwrap();
    let pw = String::from_utf8(good.clone()).unwrap();
    let start_by_hand = || {
        let data = data_dir_of(prod["dataset"].as_str().unwrap());
        let o = Command::new("runuser")
            .args([
                "-u",
                "postgres",
                "--",
                "/usr/lib/postgresql/15/bin/pg_ctl",
                "start",
                "-w",
                "-D",
            ])
            .arg(&data)
            .arg("-l")
            .arg("/dev/null")
            .current_dir("/")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    start_by_hand();
    let other_url = format!("postgresql://postgres:changed-by-someone@127.0.0.1:{port}/postgres");
    connect(&other_url)
        .await
        .execute(
            &format!("ALTER ROLE postgres PASSWORD '{}'", pw.trim()),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(bpg.status_json(&["status", "prod"])[0]["status"], "running");
    let dev = bpg.json(&["branch", "prod", "dev"]);
    assert_eq!(
        count_rows(dev["branch"]["url"].as_str().unwrap(), "t").await,
        100
    );
    bpg.ok(&["destroy", "dev"]);

    // 3. The role lost its superuser right (PostgreSQL 15 still allows
    // taking it from the bootstrap superuser; 16+ refuse).
    connect(&url)
        .await
        .batch_execute("ALTER ROLE postgres NOSUPERUSER")
        .await
        .unwrap();
    // The rights are checked up front, and the error says what to grant.
    refused(
        &env,
        &["branch", "prod", "dev"],
        &[
            "lacks what betterpg's backup recipe needs",
            "GRANT pg_read_all_settings TO \"postgres\"",
        ],
    );
    refused(&env, &["branch", "prod", "dev", "--fast"], &["CHECKPOINT"]);
    // No slot, no backup left behind; the source keeps serving writes.
    let c = connect(&url).await;
    let slots: i64 = c
        .query_one("SELECT count(*) FROM pg_replication_slots", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(slots, 0);
    c.execute("INSERT INTO t VALUES (101)", &[]).await.unwrap();
    assert_consistent(&env);
    report("source_with_wrong_password_or_without_superuser");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_taken_by_another_program_is_named_and_skipped() {
    let env = env("1G");
    let bpg = Bpg::of(&env);
    let prod = bpg.json(&["create", "prod"]);
    let port = prod["port"].as_u64().unwrap() as u16;
    bpg.ok(&["stop", "prod"]);
    // Another program takes the stopped database's port.
    let squatter = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let e = refused(
        &env,
        &["start", "prod"],
        &[
            &format!("port {port}"),
            "in use by another program",
            "bpg start prod",
        ],
    );
    assert_eq!(e.lines().count(), 1, "{e}");
    assert_eq!(bpg.status_json(&["status", "prod"])[0]["status"], "stopped");
    // New ports skip one another program holds.
    let next_free = (env.ports.0..=env.ports.1)
        .find(|p| *p != port && std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .unwrap();
    let squatter2 = std::net::TcpListener::bind(("127.0.0.1", next_free)).unwrap();
    let other = bpg.json(&["create", "other"]);
    let other_port = other["port"].as_u64().unwrap() as u16;
    assert!(other_port != port && other_port != next_free, "{other}");
    let br = bpg.json(&["branch", "other", "dev"]);
    let br_port = br["branch"]["port"].as_u64().unwrap() as u16;
    assert!(![port, next_free, other_port].contains(&br_port), "{br}");
    // The program goes away: the database starts on its own port.
    drop(squatter);
    drop(squatter2);
    let started = bpg.json(&["start", "prod"]);
    assert_eq!(started["port"].as_u64(), Some(port as u64));
    assert_consistent(&env);
    CHECKED.fetch_add(1, Ordering::SeqCst);
    a_port_taken_after_reservation_moves_the_branch_to_a_free_one(&env).await;
    report("a_port_taken_by_another_program");
}

/// A port that was free when the branch reserved it but is taken before its
/// server binds it (on Linux any outgoing connection can take a port of the
/// ephemeral range): the branch moves to another free port instead of
/// failing, and the catalog and the clone's ZFS property record the new one.
/// (Part of the test above: this file's port range has room for six homes.)
async fn a_port_taken_after_reservation_moves_the_branch_to_a_free_one(env: &TestEnv) {
    require_fault_injection();
    let bpg = Bpg::of(env);
    let child = Command::new(bpg_exe())
        .arg("--home")
        .arg(&env.home)
        .args(["--json", "branch", "other", "racer"])
        .env("BETTERPG_FAULT", "after_clone:sleep=4")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the reservation, then take its port as another program would.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let reserved = loop {
        if let Some((_, _, p)) = catalog_entries(env).into_iter().find(|e| e.0 == "racer") {
            break p;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no reservation for racer"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let squatter = std::net::TcpListener::bind(("127.0.0.1", reserved))
        .expect("the reserved port is still free until the server starts");
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "the branch failed instead of moving off the taken port: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let made: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let port = made["branch"]["port"].as_u64().unwrap() as u16;
    assert_ne!(port, reserved, "{made}");
    assert!(String::from_utf8_lossy(&o.stderr).contains(&format!("port {reserved}")));
    let status = bpg.status_json(&["status", "racer"]);
    assert_eq!(status[0]["status"], "running", "{status}");
    assert_eq!(status[0]["port"].as_u64(), Some(port as u64));
    let prop = Command::new("zfs")
        .args(["get", "-H", "-o", "value", "betterpg:port"])
        .arg(status[0]["dataset"].as_str().unwrap())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&prop.stdout).trim(),
        port.to_string()
    );
    let url = status[0]["url"].as_str().unwrap();
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let one: i32 = c.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    drop(squatter);
    assert_consistent(env);
    CHECKED.fetch_add(1, Ordering::SeqCst);
}

/// A bad --ports is refused before any storage is touched: no dataset, no
/// pool, no pool file left behind (found by this suite; fixed in `init`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_with_a_bad_port_range_changes_nothing() {
    let env = env("1G");
    let other = tempfile::tempdir().unwrap();
    let h2 = other.path().join("home2");
    let before = zfs_tree(&env.pool);
    let args = [
        "init",
        "--dataset",
        &format!("{}/x", env.pool),
        "--ports",
        "9000-8000",
    ];
    let o = Command::new(bpg_exe())
        .arg("--home")
        .arg(&h2)
        .args(args)
        .output()
        .unwrap();
    let e = check_failure(&args, &o);
    assert!(e.contains("invalid port range"), "{e}");
    assert_eq!(before, zfs_tree(&env.pool), "a refused init left a dataset");
    let img = other.path().join("p.img");
    let args = [
        "init",
        "--pool-file",
        img.to_str().unwrap(),
        "--size",
        "128M",
        "--pool",
        "bpgsafe_ports",
        "--ports",
        "9000-8000",
    ];
    let o = Command::new(bpg_exe())
        .arg("--home")
        .arg(&h2)
        .args(args)
        .output()
        .unwrap();
    let _ = Command::new("zpool")
        .args(["destroy", "-f", "bpgsafe_ports"])
        .output();
    check_failure(&args, &o);
    assert!(!img.exists(), "a refused init left its pool file");
    CHECKED.fetch_add(2, Ordering::SeqCst);
    report("init_with_a_bad_port_range");
}
