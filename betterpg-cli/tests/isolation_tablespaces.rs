//! Issue 11, item 3: a branch never shares a tablespace with its source.
//!
//! A tablespace outside the data directory is reached through
//! `pg_tblspc/OID` links (and, in backup mode, `tablespace_map`). Before the
//! fix a branch's links pointed at the SOURCE's tablespace directory, so the
//! branch replayed and wrote into production's files. Now a tablespace on a
//! ZFS dataset of the pool is snapshotted with the data directory, cloned
//! under the branch's dataset, and the links point there; a tablespace
//! anywhere else makes `bpg branch` refuse, leaving nothing behind.
//!
//! Real ZFS (zfs-fuse or OpenZFS), real PostgreSQL (15, and 14).

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use betterpg_testkit::*;

/// Pool names of this file's tests start with this (override with
/// `BPG_TEST_POOL_PREFIX` so parallel runs on one machine do not collide).
fn pool_prefix() -> String {
    std::env::var("BPG_TEST_POOL_PREFIX").unwrap_or_else(|_| "bpgts".into())
}

fn setup() -> TestEnv {
    TestEnv::initialized(&pool_prefix())
}

/// An empty directory owned by the server's OS user (a tablespace location).
fn make_location(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    chown_postgres(dir);
}

/// Every file under `dir` (links not followed) with its size and a hash of
/// its content: what a write into these files would change.
fn digest(dir: &Path) -> BTreeMap<PathBuf, (u64, u64)> {
    fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, (u64, u64)>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            if md.is_dir() {
                walk(&p, out);
            } else {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                if md.is_file() {
                    std::fs::read(&p).unwrap().hash(&mut h);
                } else {
                    std::fs::read_link(&p).unwrap().hash(&mut h);
                }
                out.insert(p, (md.size(), h.finish()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, &mut out);
    out
}

/// Where the data directory of `dataset` says tablespace `oid` is.
fn link_of(dataset: &str, oid: u32) -> PathBuf {
    let link = mountpoint(dataset)
        .join("pgdata/pg_tblspc")
        .join(oid.to_string());
    std::fs::read_link(&link).unwrap_or_else(|e| panic!("reading {}: {e}", link.display()))
}

/// Make tablespace `ts1` at `location` with a table `t` of `rows` rows in
/// it; returns the tablespace's OID.
async fn tablespace_with_table(url: &str, location: &Path, rows: i32) -> u32 {
    let c = connect(url).await;
    // A utility statement takes no parameters; the path is the test's own.
    c.batch_execute(&format!(
        "CREATE TABLESPACE ts1 LOCATION '{}'",
        location.display()
    ))
    .await
    .unwrap();
    c.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, pad text) TABLESPACE ts1; \
         CREATE INDEX t_pad ON t (pad) TABLESPACE ts1",
    )
    .await
    .unwrap();
    c.execute(
        "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, $1::int) g",
        &[&rows],
    )
    .await
    .unwrap();
    // Settled: frozen, hint bits and visibility map set, no autovacuum, all
    // on disk, so that nothing the source does itself changes these files
    // while the test watches them.
    for sql in [
        "ALTER TABLE t SET (autovacuum_enabled = off)",
        "VACUUM (FREEZE, ANALYZE) t",
        "CHECKPOINT",
    ] {
        c.batch_execute(sql).await.unwrap();
    }
    let oid: u32 = c
        .query_one("SELECT oid FROM pg_tablespace WHERE spcname = 'ts1'", &[])
        .await
        .unwrap()
        .get(0);
    oid
}

async fn count(url: &str) -> i64 {
    connect(url)
        .await
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0)
}

/// Write into the tablespace's table on `url` and make it reach the files.
async fn write_a_lot(url: &str, from: i32, to: i32) {
    let c = connect(url).await;
    c.execute(
        "INSERT INTO t SELECT g, md5(g::text) FROM generate_series($1::int, $2::int) g",
        &[&from, &to],
    )
    .await
    .unwrap();
    c.batch_execute("UPDATE t SET pad = pad || 'x' WHERE id % 7 = 0")
        .await
        .unwrap();
    c.batch_execute("CHECKPOINT").await.unwrap();
}

/// The branch `name`'s link for `oid` points inside its own dataset, not at
/// the source's directory.
fn assert_link_in_own_clone(bpg: &Bpg<'_>, name: &str, oid: u32, source_location: &Path) {
    let info = bpg.status_json(&["status", name]);
    let ds = info[0]["dataset"].as_str().unwrap().to_string();
    let own = mountpoint(&ds);
    let target = link_of(&ds, oid);
    assert!(
        !target.starts_with(source_location),
        "{name}: pg_tblspc/{oid} points at the source's tablespace {} (it is {})",
        source_location.display(),
        target.display()
    );
    assert!(
        target.starts_with(&own),
        "{name}: pg_tblspc/{oid} -> {} is outside the branch's own dataset {}",
        target.display(),
        own.display()
    );
    assert!(target.is_dir(), "{name}: {} is missing", target.display());
}

/// Every dataset and snapshot of the pool.
fn zfs_names(pool: &str) -> Vec<String> {
    run_ok(
        "zfs",
        &["list", "-H", "-r", "-t", "all", "-o", "name", pool],
    )
    .lines()
    .map(str::to_string)
    .collect()
}

/// The source is out of backup mode, holds no slot and takes writes.
async fn assert_source_healthy(url: &str) {
    let c = connect(url).await;
    assert_eq!(
        slots_and_sessions(&c).await,
        (0, 0),
        "the source holds a slot or backup session"
    );
    c.batch_execute("INSERT INTO t SELECT max(id) + 1, 'after' FROM t")
        .await
        .unwrap();
}

/// A tablespace on a child dataset of the database's dataset: every kind of
/// branch (backup mode, --fast, of a stopped source, of a branch, reset)
/// gets its own clone of it; writes on a branch never reach the source's
/// files; destroy and gc remove the clones and snapshots.
async fn tablespace_on_a_dataset_is_cloned(major: u32, full: bool) {
    let env = setup();
    let bpg = Bpg::of(&env);
    bpg.ok(&[
        "create",
        "prod",
        "--pg-bin",
        &pg_bin_dir(major).to_string_lossy(),
    ]);
    let prod_ds = format!("{}/betterpg/prod", env.pool);
    let ts_ds = format!("{prod_ds}/ts");
    run_ok("zfs", &["create", &ts_ds]);
    let location = mountpoint(&ts_ds).join("loc");
    make_location(&location);
    let url = bpg.ok(&["url", "prod"]).trim().to_string();
    let oid = tablespace_with_table(&url, &location, 2000).await;
    let before = digest(&location);
    assert!(!before.is_empty(), "the tablespace holds no files");

    let r = bpg.json(&["branch", "prod", "dev"]);
    let dev_url = r["branch"]["url"].as_str().unwrap().to_string();
    assert_link_in_own_clone(&bpg, "dev", oid, &location);
    write_a_lot(&dev_url, 2001, 30000).await;
    assert_eq!(
        digest(&location),
        before,
        "writes on the branch changed the source's tablespace files"
    );
    assert_eq!(count(&dev_url).await, 30000);
    assert_eq!(count(&url).await, 2000, "the source sees the branch's rows");
    let listed = r["tablespaces"]
        .as_array()
        .expect("report lists tablespaces");
    assert_eq!(listed.len(), 1, "{r}");
    assert_eq!(listed[0]["oid"], oid, "{r}");
    assert_eq!(listed[0]["name"], "ts1", "{r}");
    assert_eq!(
        listed[0]["source_location"],
        location.to_string_lossy().as_ref(),
        "{r}"
    );
    if !full {
        bpg.ok(&["destroy", "prod", "--force"]);
        return;
    }

    // Stopped and started again: still its own.
    bpg.ok(&["stop", "dev"]);
    bpg.ok(&["start", "dev"]);
    assert_link_in_own_clone(&bpg, "dev", oid, &location);
    assert_eq!(count(&dev_url).await, 30000);

    // A branch of the branch has a clone of the branch's clone.
    let dev_location = link_of(&format!("{}/betterpg/_branches/dev", env.pool), oid);
    let dev_before = digest(&dev_location);
    let r2 = bpg.json(&["branch", "dev", "dev2"]);
    let dev2_url = r2["branch"]["url"].as_str().unwrap().to_string();
    assert_link_in_own_clone(&bpg, "dev2", oid, &dev_location);
    assert_link_in_own_clone(&bpg, "dev2", oid, &location);
    write_a_lot(&dev2_url, 30001, 40000).await;
    assert_eq!(count(&dev2_url).await, 40000);
    bpg.ok(&["stop", "dev"]);
    assert_eq!(
        digest(&dev_location),
        dev_before,
        "dev2 wrote into dev's tablespace"
    );
    bpg.ok(&["start", "dev"]);

    // Crash-consistent and stopped sources have no tablespace_map: their
    // links are rewritten all the same.
    let rf = bpg.json(&["branch", "prod", "fastb", "--fast"]);
    assert_link_in_own_clone(&bpg, "fastb", oid, &location);
    write_a_lot(rf["branch"]["url"].as_str().unwrap(), 2001, 5000).await;
    bpg.ok(&["stop", "prod"]);
    let rc = bpg.json(&["branch", "prod", "cold"]);
    assert_link_in_own_clone(&bpg, "cold", oid, &location);
    write_a_lot(rc["branch"]["url"].as_str().unwrap(), 2001, 5000).await;
    assert_eq!(
        digest(&location),
        before,
        "a branch changed the source's tablespace files"
    );
    bpg.ok(&["start", "prod"]);

    // Nothing of a live branch is garbage.
    let gc = bpg.json(&["gc", "--dry-run"]);
    assert_eq!(gc["items"].as_array().unwrap().len(), 0, "gc finds {gc}");

    // Reset: a new clone of the tablespace, the old one and its snapshot go.
    let old_snap = r["branch"]["snapshot"].as_str().unwrap().to_string();
    bpg.ok(&["destroy", "dev2"]);
    let rr = bpg.json(&["reset", "dev"]);
    assert_link_in_own_clone(&bpg, "dev", oid, &location);
    assert_eq!(count(rr["branch"]["url"].as_str().unwrap()).await, 2000);
    let old_suffix = old_snap.split_once('@').unwrap().1.to_string();
    let names = zfs_names(&env.pool);
    assert!(
        !names.iter().any(|n| n.ends_with(&format!("@{old_suffix}"))),
        "reset left the old snapshots: {names:?}"
    );

    // A failure after the tablespace was cloned rolls everything back.
    require_fault_injection();
    let before_names = zfs_names(&env.pool);
    let o = Command::new(bpg_exe())
        .arg("--home")
        .arg(&env.home)
        .args(["branch", "prod", "broken"])
        .env("BETTERPG_FAULT", "after_start")
        .output()
        .unwrap();
    assert!(!o.status.success(), "the injected fault did not fail");
    assert_eq!(
        zfs_names(&env.pool),
        before_names,
        "a failed branch left datasets or snapshots"
    );

    // Destroy removes every clone and snapshot of each branch.
    for b in ["dev", "fastb", "cold"] {
        bpg.ok(&["destroy", b]);
    }
    let names = zfs_names(&env.pool);
    let left: Vec<&String> = names
        .iter()
        .filter(|n| n.contains("@bpg-") || n.contains("/_branches/"))
        .collect();
    assert!(left.is_empty(), "destroy left {left:?}");
    let gc = bpg.json(&["gc", "--dry-run"]);
    assert_eq!(gc["items"].as_array().unwrap().len(), 0, "gc finds {gc}");
    assert!(
        names.contains(&ts_ds),
        "the source's tablespace dataset is gone"
    );
    assert_eq!(digest(&location), before);
    assert_source_healthy(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tablespace_on_a_dataset_is_cloned_with_every_branch_pg15() {
    tablespace_on_a_dataset_is_cloned(15, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tablespace_on_a_dataset_is_cloned_pg14() {
    tablespace_on_a_dataset_is_cloned(14, false).await;
}

/// What `bpg branch` must leave when it refuses: the pool, catalog and
/// secrets as before, the source healthy and its tablespace unchanged.
async fn assert_refused_cleanly(
    env: &TestEnv,
    err: &str,
    oid: u32,
    location: &Path,
    before_names: &[String],
    url: &str,
    before: &BTreeMap<PathBuf, (u64, u64)>,
) {
    // A stopped source cannot say a tablespace's name: then its OID.
    assert!(
        err.contains("\"ts1\"") || err.contains(&format!("OID {oid}")),
        "the error names no tablespace: {err}"
    );
    assert!(
        err.contains(&location.display().to_string()),
        "the error names no location: {err}"
    );
    assert!(
        err.contains(&env.pool),
        "the error does not say which pool: {err}"
    );
    assert_eq!(zfs_names(&env.pool), before_names, "left behind in ZFS");
    let entries = catalog_entries(env);
    assert_eq!(entries.len(), 1, "catalog: {entries:?}");
    assert!(
        !env.home.join("secrets/dev").exists(),
        "the refused branch's password file stayed"
    );
    assert_eq!(&digest(location), before, "the source's tablespace changed");
    assert_source_healthy(url).await;
}

/// A tablespace on a plain directory (not a ZFS dataset) cannot be cloned:
/// the branch is refused with what to do, and nothing is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tablespace_outside_the_pool_is_refused() {
    let env = setup();
    let bpg = Bpg::of(&env);
    bpg.ok(&["create", "prod"]);
    let dir = tempfile::Builder::new()
        .prefix("bpg-ts-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let location = dir.path().join("loc");
    make_location(dir.path());
    make_location(&location);
    let url = bpg.ok(&["url", "prod"]).trim().to_string();
    let oid = tablespace_with_table(&url, &location, 100).await;
    let names = zfs_names(&env.pool);
    for args in [
        &["branch", "prod", "dev"][..],
        &["branch", "prod", "dev", "--fast"],
    ] {
        let before = digest(&location);
        let err = bpg.fails(args);
        assert!(
            err.contains("\"ts1\""),
            "the error names no tablespace: {err}"
        );
        assert!(
            err.contains("not on a ZFS dataset"),
            "{args:?}: unclear refusal: {err}"
        );
        assert_refused_cleanly(&env, &err, oid, &location, &names, &url, &before).await;
    }
    bpg.ok(&["stop", "prod"]);
    let before = digest(&location);
    let err = bpg.fails(&["branch", "prod", "dev"]);
    bpg.ok(&["start", "prod"]);
    assert_refused_cleanly(&env, &err, oid, &location, &names, &url, &before).await;
    bpg.ok(&["destroy", "prod"]);
}

/// A tablespace on a dataset of the pool that is not below the database's
/// dataset: OpenZFS snapshots both in one atomic call; zfs-fuse cannot (its
/// `zfs snapshot` takes one argument, atomic only for one subtree), so
/// there the branch is refused, saying to use a child dataset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tablespace_on_another_dataset_of_the_pool() {
    let env = setup();
    let bpg = Bpg::of(&env);
    bpg.ok(&["create", "prod"]);
    let ts_ds = format!("{}/prodts", env.pool);
    run_ok("zfs", &["create", &ts_ds]);
    let location = mountpoint(&ts_ds).join("loc");
    make_location(&location);
    let url = bpg.ok(&["url", "prod"]).trim().to_string();
    let oid = tablespace_with_table(&url, &location, 100).await;
    let openzfs = Command::new("zfs")
        .arg("version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if openzfs {
        let before = digest(&location);
        let r = bpg.json(&["branch", "prod", "dev"]);
        assert_link_in_own_clone(&bpg, "dev", oid, &location);
        write_a_lot(r["branch"]["url"].as_str().unwrap(), 101, 5000).await;
        assert_eq!(digest(&location), before);
        bpg.ok(&["destroy", "dev"]);
        let names = zfs_names(&env.pool);
        assert!(
            !names.iter().any(|n| n.contains("@bpg-")),
            "destroy left {names:?}"
        );
    } else {
        let names = zfs_names(&env.pool);
        let before = digest(&location);
        let err = bpg.fails(&["branch", "prod", "dev"]);
        assert!(
            err.contains(&format!("{}/betterpg/prod/", env.pool)),
            "the refusal does not say to use a child dataset of the database's: {err}"
        );
        assert_refused_cleanly(&env, &err, oid, &location, &names, &url, &before).await;
    }
    bpg.ok(&["destroy", "prod", "--force"]);
}

/// `bpg start` never starts a branch whose tablespace link points outside
/// its own clones (e.g. planted by whoever controls the data directory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_refuses_a_branch_linked_to_another_tablespace() {
    let env = setup();
    let bpg = Bpg::of(&env);
    bpg.ok(&["create", "prod"]);
    let ts_ds = format!("{}/betterpg/prod/ts", env.pool);
    run_ok("zfs", &["create", &ts_ds]);
    let location = mountpoint(&ts_ds).join("loc");
    make_location(&location);
    let url = bpg.ok(&["url", "prod"]).trim().to_string();
    let oid = tablespace_with_table(&url, &location, 100).await;
    bpg.ok(&["branch", "prod", "dev"]);
    bpg.ok(&["stop", "dev"]);
    let dev_ds = format!("{}/betterpg/_branches/dev", env.pool);
    let link = mountpoint(&dev_ds)
        .join("pgdata/pg_tblspc")
        .join(oid.to_string());
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(&location, &link).unwrap();
    let before = digest(&location);
    let err = bpg.fails(&["start", "dev"]);
    assert!(
        err.contains("tablespace") && err.contains(&location.display().to_string()),
        "unclear refusal: {err}"
    );
    let st = bpg.status_json(&["status", "dev"]);
    assert_eq!(st[0]["status"], "stopped", "{st}");
    assert_eq!(digest(&location), before);
    assert_source_healthy(&url).await;
    bpg.ok(&["destroy", "prod", "--force"]);
}
