//! Issue 13, `bpg attach`: branch a running cluster that betterpg did not
//! create, never touching it.
//!
//! The cluster is made and started by hand (`initdb` + `pg_ctl` as the OS
//! user postgres, not bpg) on a dataset of the test pool, with `pg_wal` on
//! a second dataset and a tablespace on a third. Attached, it is branched
//! under a writer (every acknowledged id in each branch), the branches'
//! links point into their own clones, their writes never reach the source,
//! `start`/`stop`/`destroy` are refused, a branch resets, and `detach`
//! forgets it (refused with branches, `--force` destroys them only). Bad
//! input (not on ZFS, another pool, wrong URL, missing rights) is a typed
//! error that leaves nothing behind.
//!
//! Real ZFS (zfs-fuse or OpenZFS), real PostgreSQL 15.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use betterpg_testkit::*;

/// Pool names of this file's tests start with this (override with
/// `BPG_TEST_POOL_PREFIX` so parallel runs on one machine do not collide).
fn pool_prefix() -> String {
    std::env::var("BPG_TEST_POOL_PREFIX").unwrap_or_else(|_| "bpgat".into())
}

/// Ports of the hand-made servers: past the homes' ranges (20 ports a
/// home, a few homes a binary) within the binary's block.
fn hand_port(n: u16) -> u16 {
    port_base() + 300 + n
}

/// A dataset made by hand (as an operator would), its mountpoint given to
/// the OS user postgres.
fn dataset(name: &str) -> PathBuf {
    run_ok("zfs", &["create", name]);
    let mp = mountpoint(name);
    chown_postgres(&mp);
    mp
}

fn as_postgres(cmd: &mut Command) -> &mut Command {
    let (u, g) = postgres_ids();
    cmd.uid(u).gid(g).current_dir("/")
}

/// A PostgreSQL 15 cluster made and started by hand, stopped on drop.
struct HandCluster {
    data: PathBuf,
    port: u16,
    password: String,
    _log: tempfile::TempDir,
}

impl HandCluster {
    /// `initdb` into `data` (its `pg_wal` at `waldir` when given) and
    /// `pg_ctl start` on `port`, 127.0.0.1 only, as postgres.
    fn start(data: &Path, waldir: Option<&Path>, port: u16) -> HandCluster {
        // Every directory made for it is the server user's.
        let mut made = Vec::new();
        let mut p = data.to_path_buf();
        while !p.exists() {
            made.push(p.clone());
            p = p.parent().unwrap().to_path_buf();
        }
        std::fs::create_dir_all(data).unwrap();
        for d in &made {
            chown_postgres(d);
        }
        std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700)).unwrap();
        let log = tempfile::Builder::new()
            .prefix("bpgat-log-")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(log.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        chown_postgres(log.path());
        let password = format!("hand-{}", std::process::id());
        let pwfile = log.path().join("pw");
        std::fs::write(&pwfile, &password).unwrap();
        chown_postgres(&pwfile);
        let bin = Path::new(PG15_BIN);
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(data)
            .args(["-U", "postgres", "-A", "scram-sha-256", "--locale=C", "-k"])
            .arg(format!("--pwfile={}", pwfile.display()));
        if let Some(w) = waldir {
            initdb.arg("-X").arg(w);
        }
        let o = as_postgres(&mut initdb).output().unwrap();
        assert!(
            o.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        std::fs::remove_file(&pwfile).unwrap();
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).unwrap();
        text.push_str(&format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n"
        ));
        std::fs::write(&conf, text).unwrap();
        let o = as_postgres(
            Command::new(bin.join("pg_ctl"))
                .arg("-D")
                .arg(data)
                .arg("-l")
                .arg(log.path().join("server.log"))
                .args(["-w", "start"]),
        )
        .output()
        .unwrap();
        let c = HandCluster {
            data: data.to_path_buf(),
            port,
            password,
            _log: log,
        };
        assert!(
            o.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&o.stderr),
            std::fs::read_to_string(c._log.path().join("server.log")).unwrap_or_default()
        );
        c
    }

    fn url_as(&self, user: &str, password: &str) -> String {
        format!(
            "postgresql://{user}:{password}@127.0.0.1:{}/postgres",
            self.port
        )
    }

    fn url(&self) -> String {
        self.url_as("postgres", &self.password)
    }
}

impl Drop for HandCluster {
    fn drop(&mut self) {
        stop_immediate(&self.data);
    }
}

async fn query_one_i64(url: &str, sql: &str) -> i64 {
    query_i64(&connect(url).await, sql).await
}

fn secret_path(env: &TestEnv, name: &str) -> PathBuf {
    env.home.join("secrets").join(name)
}

/// Snapshots under `dataset` (recursively).
fn snapshots_under(dataset: &str) -> Vec<String> {
    run_ok(
        "zfs",
        &["list", "-H", "-o", "name", "-t", "snapshot", "-r", dataset],
    )
    .lines()
    .map(String::from)
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attached_cluster_branches_without_loss_and_is_never_touched() {
    default_port_base(56400);
    let env = TestEnv::initialized(&pool_prefix());
    let bpg = Bpg::of(&env);
    let prod = format!("{}/prod", env.pool);
    let mp = dataset(&prod);
    let wal_mp = dataset(&format!("{prod}/wal"));
    let ts_mp = dataset(&format!("{prod}/ts"));
    // A layout of its own (not betterpg's `pgdata`): 15/main, as Debian's.
    let data = mp.join("15/main");
    let cluster = HandCluster::start(&data, Some(&wal_mp.join("pg_wal")), hand_port(0));
    let url = cluster.url();
    let loc = ts_mp.join("loc");
    std::fs::create_dir_all(&loc).unwrap();
    chown_postgres(&loc);
    let c = connect(&url).await;
    c.batch_execute(&format!(
        "CREATE TABLESPACE ts1 LOCATION '{}'",
        loc.display()
    ))
    .await
    .unwrap();
    c.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY) TABLESPACE ts1; \
         INSERT INTO t SELECT generate_series(1, 1000); \
         CREATE ROLE app LOGIN PASSWORD 'app-secret'",
    )
    .await
    .unwrap();
    let oid: u32 = c
        .query_one("SELECT oid FROM pg_tablespace WHERE spcname = 'ts1'", &[])
        .await
        .unwrap()
        .get(0);

    // Attach: kind attached, running, its URL never with the password.
    let info = bpg.json(&[
        "attach",
        "prod",
        "--pgdata",
        data.to_str().unwrap(),
        "--url",
        &url,
    ]);
    assert_eq!(info["kind"], "attached", "{info}");
    assert_shape("attach", &doc_block("<!-- check: create -->"), &info);
    assert_eq!(info["status"], "running", "{info}");
    assert_eq!(info["dataset"], prod.as_str(), "{info}");
    assert_eq!(info["pg_version"], 15, "{info}");
    let shown = info["url"].as_str().unwrap();
    assert!(!shown.contains(&cluster.password), "{shown}");
    assert_eq!(
        shown,
        format!("postgresql://postgres@127.0.0.1:{}/postgres", cluster.port)
    );
    let secret = secret_path(&env, "prod");
    let md = std::fs::metadata(&secret).unwrap();
    assert_eq!(md.permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), cluster.password);
    for args in [
        vec!["status"],
        vec!["--json", "status"],
        vec!["url", "prod"],
        vec!["status", "prod"],
    ] {
        let out = bpg.ok(&args);
        assert!(
            out.contains("prod") || out.contains(&cluster.port.to_string()),
            "{args:?}: {out}"
        );
        assert!(
            !out.contains(&cluster.password),
            "{args:?} printed the password: {out}"
        );
    }
    let entries = bpg.status_json(&["status"]);
    assert_eq!(entries[0]["kind"], "attached", "{entries}");

    // Zero-loss branches under a writer committing sequential ids.
    let writer = Writer::start(&url).await;
    let mut branches = Vec::new();
    for name in ["dev0", "dev1"] {
        let acked = writer.acked();
        let r = bpg.json(&["branch", "prod", name]);
        assert_eq!(r["source_was_running"], true, "{r}");
        let burl = r["branch"]["url"].as_str().unwrap().to_string();
        let max = assert_prefix(&burl, acked).await;
        assert!(max >= acked, "{name}: {max} < {acked}");
        branches.push((name, burl, r));
    }
    let last = writer.stop().await;

    // The branch's pg_wal and tablespace are its own clones.
    let (_, dev_url, report) = &branches[0];
    let dev_ds = report["branch"]["dataset"].as_str().unwrap();
    let dev_mp = mountpoint(dev_ds);
    let dev_data = dev_mp.join("15/main");
    let wal_link = std::fs::read_link(dev_data.join("pg_wal")).unwrap();
    assert_eq!(
        wal_link,
        mountpoint(&format!("{dev_ds}/wal")).join("pg_wal"),
        "the branch's pg_wal must be its own clone"
    );
    assert!(wal_link.starts_with(&dev_mp), "{}", wal_link.display());
    let ts_link = std::fs::read_link(dev_data.join("pg_tblspc").join(oid.to_string())).unwrap();
    assert!(ts_link.starts_with(&dev_mp), "{}", ts_link.display());
    assert_eq!(report["tablespaces"][0]["oid"], oid, "{report}");
    assert_eq!(query_one_i64(dev_url, "SELECT count(*) FROM t").await, 1000);

    // The branch's writes never reach the source; production's roles do
    // not log in to the branch.
    let b = connect(dev_url).await;
    b.batch_execute(
        "INSERT INTO seq VALUES (-1); INSERT INTO t VALUES (-1); CHECKPOINT; SELECT pg_switch_wal()",
    )
    .await
    .unwrap();
    assert_eq!(
        query_one_i64(&url, "SELECT count(*) FROM seq WHERE id = -1").await,
        0
    );
    assert_eq!(
        query_one_i64(&url, "SELECT count(*) FROM t WHERE id = -1").await,
        0
    );
    let port = report["branch"]["port"].as_u64().unwrap();
    let app = tokio_postgres::connect(
        &format!("postgresql://app:app-secret@127.0.0.1:{port}/postgres"),
        tokio_postgres::NoTls,
    )
    .await;
    let err = app
        .err()
        .expect("production's role logged in to the branch");
    // Credentials rotate by default for an attached source: the role's
    // production password fails; its new one (bpg url --role) logs in.
    assert_eq!(
        err.as_db_error().map(|d| d.code().code()),
        Some("28P01"),
        "{err}"
    );
    let app_url = bpg.json(&[
        "url",
        report["branch"]["name"].as_str().unwrap(),
        "--role",
        "app",
    ]);
    let app_url = app_url["url"].as_str().unwrap().to_string();
    assert!(!app_url.contains("app-secret"), "{app_url}");
    assert_eq!(query_one_i64(&app_url, "SELECT 1::bigint").await, 1);

    // bpg never starts, stops or destroys an attached cluster.
    for verb in ["start", "stop", "destroy"] {
        let err = bpg.fails(&[verb, "prod"]);
        assert!(
            err.contains("attached cluster") && err.contains("never starts"),
            "{verb}: {err}"
        );
    }
    let err = bpg.fails(&["destroy", "prod", "--force"]);
    assert!(err.contains("attached cluster"), "{err}");
    assert_eq!(
        query_one_i64(&url, "SELECT count(*) FROM seq").await,
        last,
        "the source keeps running with all its rows"
    );

    // Reset: the branch again from the source's current state.
    c.batch_execute("INSERT INTO seq VALUES (-2)")
        .await
        .unwrap();
    let r = bpg.json(&["reset", "dev0"]);
    let dev_url = r["branch"]["url"].as_str().unwrap();
    assert_eq!(
        query_one_i64(dev_url, "SELECT count(*) FROM seq WHERE id IN (-1, -2)").await,
        1,
        "after reset the branch has the source's -2 and not its own -1"
    );
    assert_eq!(
        query_one_i64(dev_url, "SELECT count(*) FROM seq WHERE id = -2").await,
        1
    );

    // Detach: refused while it has branches; --force destroys them only.
    let err = bpg.fails(&["detach", "prod"]);
    assert!(
        err.contains("dev0") && err.contains("dev1") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(bpg.status_json(&["status"]).as_array().unwrap().len(), 3);
    let out = bpg.json(&["detach", "prod", "--force"]);
    assert_eq!(out["detached"], "prod", "{out}");
    assert_shape("detach", &doc_block("<!-- sources-check: detach -->"), &out);
    let mut gone: Vec<&str> = out["branches_destroyed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    gone.sort();
    assert_eq!(gone, ["dev0", "dev1"]);
    assert_eq!(bpg.status_json(&["status"]), serde_json::json!([]));
    assert!(!secret.exists(), "the stored password is gone");
    assert_eq!(snapshots_under(&prod), Vec::<String>::new());
    let left: Vec<String> = zfs_tree(&env.pool)
        .into_iter()
        .filter(|d| d.contains("/_branches/"))
        .collect();
    assert_eq!(left, Vec::<String>::new());
    // The cluster itself is untouched and still serving.
    assert_eq!(
        query_one_i64(&url, "SELECT count(*) FROM seq").await,
        last + 1
    );
    assert!(data.join("postmaster.pid").exists());

    // Attached again and detached without branches.
    bpg.ok(&[
        "attach",
        "prod",
        "--pgdata",
        data.to_str().unwrap(),
        "--url",
        &url,
    ]);
    let out = bpg.json(&["detach", "prod"]);
    assert_eq!(out["branches_destroyed"], serde_json::json!([]));
    assert_eq!(bpg.status_json(&["status"]), serde_json::json!([]));
    drop(cluster);
}

/// Everything `attach` could change, to compare before and after a refusal.
fn state(env: &TestEnv) -> (Vec<u8>, Vec<String>, Vec<String>) {
    let secrets: Vec<String> = std::fs::read_dir(env.home.join("secrets"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    (catalog_bytes(env), zfs_tree(&env.pool), secrets)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_attach_input_is_a_typed_error_that_changes_nothing() {
    default_port_base(56400);
    let env = TestEnv::initialized(&pool_prefix());
    let bpg = Bpg::of(&env);
    let prod = format!("{}/prod", env.pool);
    let data = dataset(&prod).join("data");
    let cluster = HandCluster::start(&data, None, hand_port(10));
    let url = cluster.url();
    let data_s = data.to_str().unwrap().to_string();
    // A cluster not on ZFS.
    let plain = tempfile::Builder::new()
        .prefix("bpgat-plain-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(plain.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let plain_data = plain.path().join("data");
    let plain_cluster = HandCluster::start(&plain_data, None, hand_port(11));
    // A cluster on another pool.
    let other = TestEnv::plan(&format!("{}o", pool_prefix()));
    let other_mnt = tempfile::Builder::new()
        .prefix("bpgat-other-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(other_mnt.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    run_ok(
        "truncate",
        &["-s", "256M", other.pool_file.to_str().unwrap()],
    );
    run_ok(
        "zpool",
        &[
            "create",
            "-m",
            other_mnt.path().to_str().unwrap(),
            &other.pool,
            other.pool_file.to_str().unwrap(),
        ],
    );
    let other_data = dataset(&format!("{}/pg", other.pool)).join("data");
    let other_cluster = HandCluster::start(&other_data, None, hand_port(12));

    let before = state(&env);
    let attach = |name: &str, pgdata: &str, url: &str| -> (String, i32) {
        let args = ["attach", name, "--pgdata", pgdata, "--url", url];
        let o = bpg.run(&args);
        let err = check_failure(&args, &o);
        (err, o.status.code().unwrap())
    };
    // Exit statuses are the error kind's code plus 9 (docs/cli-json.md).
    const CONFIG: i32 = 6 + 9;
    const POSTGRES: i32 = 8 + 9;
    const UNSUPPORTED: i32 = 15 + 9;
    const INVALID_NAME: i32 = 1 + 9;
    let dead_port = hand_port(13).to_string();
    let cases: Vec<(&str, String, String, i32, Vec<&str>)> = vec![
        (
            "not on ZFS",
            plain_data.display().to_string(),
            plain_cluster.url(),
            UNSUPPORTED,
            vec!["is not on ZFS"],
        ),
        (
            "another pool",
            other_data.display().to_string(),
            other_cluster.url(),
            UNSUPPORTED,
            vec!["not in the home's pool", &other.pool],
        ),
        (
            "wrong password",
            data_s.clone(),
            cluster.url_as("postgres", "wrong"),
            POSTGRES,
            vec!["password authentication failed"],
        ),
        (
            "nothing listening",
            data_s.clone(),
            format!(
                "postgresql://postgres:x@127.0.0.1:{}/postgres",
                hand_port(13)
            ),
            POSTGRES,
            vec!["cannot connect", &dead_port],
        ),
        (
            "another server's URL",
            data_s.clone(),
            plain_cluster.url(),
            CONFIG,
            vec!["is not the cluster in"],
        ),
        (
            "an unreadable URL",
            data_s.clone(),
            "postgresql://127.0.0.1:5432/postgres".into(),
            CONFIG,
            vec!["names no user"],
        ),
    ];
    for (what, pgdata, u, code, needles) in &cases {
        let (err, got) = attach("prod", pgdata, u);
        assert_eq!(got, *code, "{what}: {err}");
        for n in needles {
            assert!(err.contains(n), "{what}: {err:?} lacks {n:?}");
        }
        assert!(!err.contains(&cluster.password), "{what}: {err}");
        assert_eq!(state(&env), before, "{what} changed something");
    }
    let (err, got) = attach("Bad Name", &data_s, &url);
    assert_eq!(got, INVALID_NAME, "{err}");
    assert_eq!(state(&env), before);
    let err = bpg.fails(&["detach", "prod"]);
    assert!(err.contains("not found"), "{err}");

    // Missing rights: the error names each statement, and running exactly
    // those makes attach and branch work.
    let c = connect(&url).await;
    c.batch_execute(
        "CREATE ROLE bk LOGIN PASSWORD 'bk-pw'; CREATE TABLE r (x int); INSERT INTO r VALUES (7)",
    )
    .await
    .unwrap();
    let bk = cluster.url_as("bk", "bk-pw");
    let (err, got) = attach("prod", &data_s, &bk);
    assert_eq!(got, POSTGRES, "{err}");
    for n in [
        "ALTER ROLE \"bk\" REPLICATION;",
        "GRANT EXECUTE ON FUNCTION pg_backup_start(text, boolean) TO \"bk\";",
        "GRANT EXECUTE ON FUNCTION pg_backup_stop(boolean) TO \"bk\";",
        "GRANT pg_read_all_settings TO \"bk\";",
        "GRANT pg_checkpoint TO \"bk\";",
    ] {
        assert!(err.contains(n), "{err:?} lacks {n:?}");
    }
    assert_eq!(state(&env), before, "missing rights changed something");
    let grants = err
        .split("run: ")
        .nth(1)
        .expect("the statements to run")
        .trim();
    c.batch_execute(grants).await.unwrap();
    let info = bpg.json(&["attach", "prod", "--pgdata", &data_s, "--url", &bk]);
    assert_eq!(info["kind"], "attached", "{info}");
    for mode in ["application-consistent", "crash-consistent"] {
        let name = if mode == "crash-consistent" {
            "fast"
        } else {
            "dev"
        };
        let r = bpg.json(&["branch", "prod", name, "--mode", mode]);
        let burl = r["branch"]["url"].as_str().unwrap();
        assert_eq!(
            query_one_i64(burl, "SELECT x::int8 FROM r").await,
            7,
            "{mode}"
        );
    }
    // Destroying a branch of it is an ordinary destroy.
    bpg.ok(&["destroy", "fast"]);
    bpg.ok(&["detach", "prod", "--force"]);
    assert_eq!(bpg.status_json(&["status"]), serde_json::json!([]));
    assert_eq!(snapshots_under(&prod), Vec::<String>::new());
    drop(other_cluster);
    drop(plain_cluster);
    drop(cluster);
    drop(other);
}

/// The receiver's pid recorded in `HOME/wal/NAME.json`.
fn receiver_pid(env: &TestEnv, name: &str) -> Option<i32> {
    let text = std::fs::read_to_string(env.home.join("wal").join(format!("{name}.json"))).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["receiver"]["pid"].as_i64().map(|p| p as i32)
}

fn alive(pid: i32) -> bool {
    // A zombie is not alive: /proc/PID/stat's state is Z.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| !r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// `--retain-wal` on an attached cluster (issue 15): betterpg never
/// reconfigures it, so its WAL is pulled over the replication protocol by
/// a `pg_receivewal` of betterpg's on a slot. A role without REPLICATION
/// is refused up front, saying what to grant, and nothing is made; with
/// it, the branch `--at` a time or an LSN under a writer that recorded
/// its commit times holds exactly the rows committed at or before the
/// target; a target before the window is `out_of_window`; a receiver
/// killed is started again by `bpg daemon --once`, which loses nothing;
/// `detach --force` stops it, drops its slot and removes its archive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attached_cluster_keeps_its_wal_and_branches_at_a_point_in_time() {
    default_port_base(56400);
    let env = TestEnv::initialized(&format!("{}w", pool_prefix()));
    let bpg = Bpg::of(&env);
    let prod = format!("{}/prod", env.pool);
    let data = dataset(&prod).join("15/main");
    let cluster = HandCluster::start(&data, None, hand_port(7));
    let url = cluster.url();
    let c = connect(&url).await;
    // A role of its own with the documented grants; REPLICATION is
    // revoked once it is attached.
    c.batch_execute(
        "CREATE ROLE bk LOGIN REPLICATION PASSWORD 'bk-pw'; \
         GRANT EXECUTE ON FUNCTION pg_backup_start(text, boolean) TO bk; \
         GRANT EXECUTE ON FUNCTION pg_backup_stop(boolean) TO bk; \
         GRANT pg_read_all_settings TO bk; GRANT pg_checkpoint TO bk;",
    )
    .await
    .unwrap();
    let bk = cluster.url_as("bk", "bk-pw");
    bpg.ok(&[
        "attach",
        "prod",
        "--pgdata",
        data.to_str().unwrap(),
        "--url",
        &bk,
    ]);
    c.batch_execute("ALTER ROLE bk NOREPLICATION")
        .await
        .unwrap();
    let before = (catalog_bytes(&env), zfs_tree(&env.pool));
    let o = bpg.run(&["config", "prod", "--retain-wal", "1h"]);
    let err = check_failure(&["config"], &o);
    assert_eq!(o.status.code(), Some(8 + 9), "postgres: {err}");
    assert!(
        err.contains("ALTER ROLE \"bk\" REPLICATION") && err.contains("pg_hba.conf"),
        "{err}"
    );
    assert_eq!(
        (catalog_bytes(&env), zfs_tree(&env.pool)),
        before,
        "a refused --retain-wal changed nothing"
    );
    let slot_count = query_one_i64(
        &url,
        "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'bpg_wal_prod'",
    )
    .await;
    assert_eq!(slot_count, 0, "no slot made");
    assert!(wal_retention(&bpg, "prod").is_null());

    // Granted: the receiver streams on its slot, a first base is taken.
    c.batch_execute("ALTER ROLE bk REPLICATION").await.unwrap();
    bpg.ok(&["config", "prod", "--retain-wal", "1h"]);
    let w = wal_retention(&bpg, "prod");
    assert_eq!(
        (w["active"].as_bool(), w["bases"].as_u64()),
        (Some(true), Some(1)),
        "{w}"
    );
    assert_eq!(
        query_one_i64(
            &url,
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'bpg_wal_prod' AND active"
        )
        .await,
        1,
        "the receiver streams on its slot"
    );
    let pid = receiver_pid(&env, "prod").expect("the receiver is recorded");
    assert!(alive(pid));

    let commits = write_commits(&url, 1, 40).await;
    let w = wal_retention(&bpg, "prod");
    let from = w["from_time"].as_str().unwrap().to_string();
    // By time, by LSN, through the last commit (its segment partial).
    for (name, at, expect) in [
        ("t10", commits[9].time.clone(), 10),
        ("l25", commits[24].lsn.clone(), 25),
        ("t40", commits[39].time.clone(), 40),
    ] {
        let r = bpg.json(&["branch", "prod", name, "--at", &at]);
        let burl = r["branch"]["url"].as_str().unwrap().to_string();
        assert_eq!(
            commit_ids(&burl).await,
            (expect, 1, expect),
            "branch {name} at {at} holds exactly the rows committed by then"
        );
        let b = connect(&burl).await;
        let rec: bool = b
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .unwrap()
            .get(0);
        assert!(!rec, "{name} is promoted");
        b.execute("INSERT INTO t VALUES (-1)", &[]).await.unwrap();
    }
    assert_eq!(
        commit_ids(&url).await,
        (40, 1, 40),
        "the branches never wrote to prod"
    );
    // Before the window: out_of_window, stating it, nothing made.
    let before = (catalog_bytes(&env), zfs_tree(&env.pool));
    let o = bpg.run(&["branch", "prod", "early", "--at", "2000-01-01 00:00:00+00"]);
    let err = check_failure(&["branch"], &o);
    assert_eq!(o.status.code(), Some(28), "out_of_window: {err}");
    assert!(err.contains(&from), "{err} states the window from {from}");
    assert_eq!((catalog_bytes(&env), zfs_tree(&env.pool)), before);

    // The receiver killed: the next daemon pass starts it again, and the
    // WAL written meanwhile (kept by the slot) is not lost.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while alive(pid) {
        assert!(
            std::time::Instant::now() < deadline,
            "the receiver did not die"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let more = write_commits(&url, 41, 10).await;
    let r = bpg.json(&["daemon", "--once"]);
    let restarted: Vec<&serde_json::Value> = r["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "restart_receiver" && a["name"] == "prod")
        .collect();
    assert_eq!(restarted.len(), 1, "{r:#}");
    assert_eq!(restarted[0]["result"], "done", "{r:#}");
    let pid2 = receiver_pid(&env, "prod").unwrap();
    assert!(pid2 != pid && alive(pid2));
    let r = bpg.json(&["branch", "prod", "t45", "--at", &more[4].time]);
    let burl = r["branch"]["url"].as_str().unwrap().to_string();
    assert_eq!(commit_ids(&burl).await, (45, 1, 45), "{}", more[4].id);

    // Detach: branches destroyed, the receiver stopped, its slot dropped,
    // the archive and bases gone; the cluster runs on untouched.
    bpg.ok(&["detach", "prod", "--force"]);
    assert!(!alive(pid2), "the receiver stopped");
    assert_eq!(
        query_one_i64(
            &url,
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'bpg_wal_prod'"
        )
        .await,
        0,
        "the slot is dropped"
    );
    assert!(
        !zfs_tree(&env.pool)
            .iter()
            .any(|d| d.contains("_wal/prod") || d.contains("walbase")),
        "{:?}",
        zfs_tree(&env.pool)
    );
    assert_eq!(commit_ids(&url).await, (50, 1, 50));
    drop(cluster);
}

/// `bpg attach --mask FILE --forbid-unmasked --credentials rotate`: the
/// policies are recorded with the attached cluster at once, so its very
/// first branch is masked (issue 14: a source's policy "also at
/// follow/attach"); `--unmasked` is refused; a missing masking file is a
/// typed error that records nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_records_its_branches_policies_at_once() {
    default_port_base(56400);
    let env = TestEnv::initialized(&pool_prefix());
    let bpg = Bpg::of(&env);
    let prod = format!("{}/prod", env.pool);
    let data = dataset(&prod).join("data");
    let cluster = HandCluster::start(&data, None, hand_port(20));
    let url = cluster.url();
    let c = connect(&url).await;
    c.batch_execute(
        "CREATE TABLE users (id int PRIMARY KEY, email text);
         INSERT INTO users VALUES (1, 'ada@example.org'), (2, 'alan@example.org')",
    )
    .await
    .unwrap();
    drop(c);
    let dir = tempfile::tempdir().unwrap();
    let mask = dir.path().join("users.sql");
    std::fs::write(
        &mask,
        "UPDATE users SET email = 'user' || id || '@masked.test';\n",
    )
    .unwrap();
    let data_s = data.to_str().unwrap();

    // A masking file that is not there: refused, nothing recorded.
    let before = state(&env);
    let args = [
        "attach",
        "prod",
        "--pgdata",
        data_s,
        "--url",
        &url,
        "--mask",
        "/nonexistent/mask.sql",
    ];
    let o = bpg.run(&args);
    let err = check_failure(&args, &o);
    assert!(err.contains("/nonexistent/mask.sql"), "{err}");
    assert_eq!(state(&env), before, "a refused attach changed something");

    let mask_s = mask.to_str().unwrap();
    bpg.ok(&[
        "attach",
        "prod",
        "--pgdata",
        data_s,
        "--url",
        &url,
        "--mask",
        mask_s,
        "--forbid-unmasked",
        "--credentials",
        "rotate",
    ]);
    let cfg = bpg.json(&["config", "prod"]);
    let settings = &cfg["settings"];
    assert_eq!(settings["mask"][0], mask_s, "{cfg}");
    assert_eq!(settings["forbid_unmasked"], true, "{cfg}");
    assert_eq!(settings["credentials"], "rotate", "{cfg}");

    let dev = bpg.json(&["branch", "prod", "dev"]);
    let dev_url = dev["branch"]["url"].as_str().unwrap().to_string();
    let c = connect(&dev_url).await;
    let rows = c
        .query("SELECT email FROM users ORDER BY id", &[])
        .await
        .unwrap();
    let emails: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(emails, ["user1@masked.test", "user2@masked.test"]);
    drop(c);
    let o = bpg.run(&["branch", "prod", "raw", "--unmasked"]);
    assert!(
        !o.status.success(),
        "--unmasked of a forbidding source was made"
    );
    // The cluster itself still holds its own rows.
    assert_eq!(
        query_one_i64(
            &url,
            "SELECT count(*) FROM users WHERE email LIKE '%@example.org'"
        )
        .await,
        2
    );
    bpg.ok(&["detach", "prod", "--force"]);
}
