//! Capacity and restarts, through the `bpg` binary:
//!
//! - a pool too small for what is asked: a branch writes until it cannot;
//!   the writer gets PostgreSQL's own disk-full error, the source and
//!   another branch keep reading and writing without a restart, `bpg
//!   status` warns, a further branch is refused, and destroying the branch
//!   gives the space back (with no quota of its own, and with `--quota`);
//! - stopping and starting every database and branch, and exporting and
//!   importing the pool, lose nothing.
//!
//! (The zfs-fuse daemon restart is tests/daemon_restart.rs, run alone.)
//! The tests here run one at a time (see [`SERIAL`]).
//!
//! Ports: 59860-59919 (three homes at most). Pools: bpgsafe*.

use std::process::Command;

use betterpg_testkit::*;

const PORT_LO: u16 = 59860;
const PORT_HI: u16 = 59919;

/// The tests of this file run one at a time, whatever --test-threads says:
/// two pools filling up at once (one hitting ENOSPC, one a quota) crashed
/// the zfs-fuse daemon twice on the development machine (every pool on the
/// machine lost its mounts). See docs/safety.md.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn env(size: &str) -> TestEnv {
    TestEnv::safe(PORT_LO, PORT_HI, size)
}

/// A byte-valued ZFS property (`zfs get -Hp PROP NAME`).
fn zfs_bytes(name: &str, prop: &str) -> u64 {
    let o = Command::new("zfs")
        .args(["get", "-H", "-p", "-o", "value", prop, name])
        .output()
        .unwrap();
    let v = String::from_utf8_lossy(&o.stdout);
    v.trim().parse().unwrap_or_else(|_| {
        panic!(
            "zfs get {prop} {name}: {v:?} {}",
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

/// Bytes allocated in the pool.
fn pool_used(pool: &str) -> u64 {
    zfs_bytes(pool, "used")
}

/// Fill the pool from `url` with incompressible data, 8 MiB per statement,
/// until PostgreSQL refuses (bounded: 64 statements). Returns the error the
/// client saw.
async fn fill(url: &str) -> String {
    let f = connect(url).await;
    f.batch_execute(
        "CREATE TABLE big (b bytea); ALTER TABLE big ALTER COLUMN b SET STORAGE EXTERNAL",
    )
    .await
    .unwrap();
    for _ in 0..64 {
        let r = f
            .batch_execute(
                "INSERT INTO big SELECT (SELECT decode(string_agg(md5(random()::text || i || j), ''), 'hex') \
                 FROM generate_series(1, 65536) j) FROM generate_series(1, 8) i",
            )
            .await;
        if let Err(e) = r {
            return e
                .as_db_error()
                .map(|d| format!("{}: {}", d.severity(), d.message()))
                .unwrap_or_else(|| e.to_string());
        }
    }
    panic!("64 x 8 MiB fitted: the pool or quota is not small");
}

/// The writer got PostgreSQL's own out-of-space error: as the statement's
/// error (`could not extend file ...: No space left on device`), or, when
/// the WAL writer hit it first, as a PANIC in the server log (the client
/// then sees its connection closed).
fn assert_pg_disk_full(bpg: &Bpg, name: &str, client_error: &str, reason: &str) {
    let log = bpg.ok(&["logs", name]);
    let in_client = client_error.contains(reason);
    let in_log = log
        .lines()
        .any(|l| (l.contains("ERROR") || l.contains("PANIC")) && l.contains(reason));
    assert!(
        in_client || in_log,
        "{name}: no PostgreSQL '{reason}' error; client saw {client_error:?}; log:\n{log}"
    );
}

/// When the pool began this server's life (a restart changes it).
async fn started_at(url: &str) -> String {
    connect(url)
        .await
        .query_one("SELECT pg_postmaster_start_time()::text", &[])
        .await
        .unwrap()
        .get(0)
}

/// The source and `others` read and write (100 rows each, then a
/// CHECKPOINT), without a restart since `started`.
async fn keep_working(servers: &[(&str, String, String)], rows_before: i64) {
    for (name, url, started) in servers {
        let c = connect(url).await;
        for i in 0..100 {
            c.execute(
                "INSERT INTO t VALUES ($1, 'while a branch is full')",
                &[&(-1 - i - rows_before as i32)],
            )
            .await
            .unwrap_or_else(|e| panic!("{name} cannot write: {e:?}"));
        }
        c.batch_execute("CHECKPOINT")
            .await
            .unwrap_or_else(|e| panic!("{name} cannot checkpoint: {e:?}"));
        assert_eq!(count_rows(url, "t").await, rows_before + 100, "{name}");
        assert_eq!(&started_at(url).await, started, "{name} restarted");
    }
}

/// A database `prod` with 10,000 rows in `t`, a branch `bystander`, and a
/// branch `filler` made with `filler_args`; returns the filler's `bpg branch
/// --json` report, and the source's and the bystander's names, URLs and
/// server start times.
async fn source_and_two_branches(
    bpg: &Bpg<'_>,
    filler_args: &[&str],
) -> (serde_json::Value, [(&'static str, String, String); 2]) {
    let prod = url_in(&bpg.json(&["create", "prod"]));
    connect(&prod)
        .await
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, v text); \
             INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 10000) g; CHECKPOINT",
        )
        .await
        .unwrap();
    let bystander = url_in(&bpg.json(&["branch", "prod", "bystander"]));
    let mut args = vec!["branch", "prod", "filler"];
    args.extend_from_slice(filler_args);
    let filler = bpg.json(&args);
    let servers = [
        ("prod", prod.clone(), started_at(&prod).await),
        ("bystander", bystander.clone(), started_at(&bystander).await),
    ];
    (filler, servers)
}

/// A branch without any quota of its own writes until it cannot: it gets
/// PostgreSQL's own disk-full error, because all branches together may only
/// use the pool minus the databases' headroom (see betterpg_core::space).
/// The source keeps reading and writing (its headroom), so does another
/// branch (its reservation), with no restart; `bpg status` warns; and
/// destroying the branch gives the space back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_filling_its_space_fails_alone_and_destroy_gives_the_space_back() {
    let _serial = SERIAL.lock().await;
    let env = env("512M");
    let bpg = Bpg::of(&env);
    let (filler, servers) = source_and_two_branches(&bpg, &[]).await;

    let err = fill(&url_in(&filler)).await;
    eprintln!("the filling branch got: {err}");
    assert_pg_disk_full(&bpg, "filler", &err, "Disk quota exceeded");
    // The pool itself is not full: about the databases' 20% headroom is
    // still free (less the 1% the quota may lag, and pool metadata).
    let free = zfs_bytes(&env.pool, "available");
    let total = free + pool_used(&env.pool);
    eprintln!("pool after the fill: {free} of {total} bytes free");
    assert!(
        free >= total / 100 * 15,
        "only {free} of {total} bytes left in the pool: the headroom was not kept"
    );

    keep_working(&servers, 10000).await;

    // `bpg status` warns, on stdout and stderr.
    let o = bpg.run(&["status"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        out.contains("WARNING: branch space above 90% full"),
        "{out}"
    );
    assert!(
        err.contains(&format!("warning: pool {}: branches use", env.pool))
            && err.contains("destroy unused branches"),
        "{err}"
    );
    // No room for another branch: refused, nothing made.
    let before = (catalog_bytes(&env), zfs_tree(&env.pool));
    let e = bpg.fails(&["branch", "prod", "one-more"]);
    assert!(
        e.contains("no space") && e.contains("destroy unused branches"),
        "{e}"
    );
    assert!(
        before == (catalog_bytes(&env), zfs_tree(&env.pool)),
        "the refused branch changed the catalog or the pool"
    );

    // Destroying the branch gives the space back.
    let used_full = pool_used(&env.pool);
    bpg.ok(&["destroy", "filler"]);
    let freed = eventually(120, || pool_used(&env.pool) < used_full / 2).await;
    assert!(
        freed,
        "pool use stayed at {} after destroying the branch (was {used_full})",
        pool_used(&env.pool)
    );
    let st = bpg.run(&["status"]);
    assert!(!String::from_utf8_lossy(&st.stdout).contains("WARNING"));
    keep_working(&servers, 10100).await;
    let again = bpg.json(&["branch", "prod", "one-more"]);
    assert_eq!(count_rows(&url_in(&again), "t").await, 10200);
    assert_consistent(&env);
}

/// With `bpg branch --quota`, the branch hits its quota, not the pool, and
/// the source and the other branch keep reading AND writing, with no server
/// restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_on_the_branch_keeps_the_source_writing() {
    let _serial = SERIAL.lock().await;
    let env = env("512M");
    let bpg = Bpg::of(&env);
    let (filler, servers) = source_and_two_branches(&bpg, &["--quota", "64M"]).await;
    assert_eq!(
        zfs_bytes(filler["branch"]["dataset"].as_str().unwrap(), "quota"),
        64 << 20,
        "bpg branch --quota did not set the ZFS quota"
    );
    let err = fill(&url_in(&filler)).await;
    eprintln!("the branch with a quota got: {err}");
    assert_pg_disk_full(&bpg, "filler", &err, "Disk quota exceeded");

    // The source and the other branch read and write, without a restart.
    keep_working(&servers, 10000).await;
    bpg.ok(&["destroy", "filler"]);
    assert_consistent(&env);
}

/// Every database and branch with its own data, to check after restarts:
/// the tree of [`seed_tree`], a fast branch of prod and a branch of db2,
/// and writes to the sources after their branches.
async fn seed(env: &TestEnv) -> Seeded {
    let bpg = Bpg::of(env);
    let mut out = seed_tree(&bpg, 3000, 200, 500, 100).await;
    let quick = url_in(&bpg.json(&["branch", "prod", "quick", "--fast"]));
    let db2b = url_in(&bpg.json(&["branch", "db2", "db2-b"]));
    connect(&db2b)
        .await
        .batch_execute("INSERT INTO t SELECT generate_series(201, 250)")
        .await
        .unwrap();
    // Writes after the branches, to the sources.
    let (name, prod, rows) = &mut out[0];
    assert_eq!(name.as_str(), "prod");
    connect(prod)
        .await
        .batch_execute("INSERT INTO t SELECT generate_series(3001, 3010)")
        .await
        .unwrap();
    *rows = 3010;
    out.push(("quick".into(), quick, 3000));
    out.push(("db2-b".into(), db2b, 250));
    out
}

async fn check_all(env: &TestEnv, expect: &[(String, String, i64)], when: &str) {
    let bpg = Bpg::of(env);
    for (name, url, rows) in expect {
        assert_eq!(
            bpg.status_json(&["status", name])[0]["status"],
            "running",
            "{name} after {when}"
        );
        assert_eq!(count_rows(url, "t").await, *rows, "{name} after {when}");
    }
    assert_consistent(env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_start_and_pool_export_import_lose_nothing() {
    let _serial = SERIAL.lock().await;
    let env = env("1G");
    let bpg = Bpg::of(&env);
    let expect = seed(&env).await;
    check_all(&env, &expect, "creation").await;

    // 1. Stop and start everything, twice.
    for round in 0..2 {
        stop_all(&bpg, &expect);
        let st = bpg.status_json(&["status"]);
        assert!(
            st.as_array()
                .unwrap()
                .iter()
                .all(|i| i["status"] == "stopped"),
            "{st}"
        );
        start_all(&bpg, &expect);
        check_all(&env, &expect, &format!("stop/start round {round}")).await;
    }

    // 2. Export and import the pool (what a reboot or a move does).
    stop_all(&bpg, &expect);
    let dir = export_pool(&env);
    // While the pool is away, betterpg says so instead of guessing.
    let o = bpg.run(&["status"]);
    eprintln!(
        "bpg status with the pool exported: {:?}\n{}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let e = bpg.fails(&["start", "prod"]);
    assert!(e.contains(&env.pool), "start without the pool: {e}");
    import_pool(&env, &dir);
    start_all(&bpg, &expect);
    check_all(&env, &expect, "pool export + import").await;

    // Everything still branches and destroys afterwards.
    let r = bpg.json(&["branch", "dev-child", "after"]);
    assert_eq!(count_rows(&url_in(&r), "t").await, 3400);
    bpg.ok(&["destroy", "prod", "--force"]);
    bpg.ok(&["destroy", "db2", "--force"]);
    // The pool, the root and the branch space.
    assert_eq!(zfs_tree(&env.pool).len(), 3, "{:?}", zfs_tree(&env.pool));
}
