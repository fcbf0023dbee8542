//! The example end to end on real parts: a throwaway ZFS pool on a file,
//! PostgreSQL 15, a database with rows, and rehearsals on branches of it.
//!
//! Needs root, a running ZFS (zfs-fuse or OpenZFS), the OS user `postgres`
//! and PostgreSQL 15 (the repository's `scripts/setup.sh` installs them). A
//! missing one fails the test with what to do; nothing is skipped. Ports:
//! 20 from `BPG_TEST_PORT_BASE` (default 55900).

use std::path::PathBuf;
use std::process::Command;

use betterpg_core::{BranchManager, CreateOptions, InitOptions, InitStorage};
use betterpg_example::rehearse;
use tokio_postgres::NoTls;

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A pool on a sparse file, destroyed (with its servers' data) on drop.
struct ThrowawayPool {
    name: String,
    file: PathBuf,
}

impl Drop for ThrowawayPool {
    fn drop(&mut self) {
        // Servers still running on it (a failed test) go with the pool:
        // `zpool destroy -f` unmounts under them.
        let _ = Command::new("zpool")
            .args(["destroy", "-f", &self.name])
            .output();
        let _ = std::fs::remove_file(&self.file);
    }
}

fn check_prerequisites() {
    assert!(
        is_root(),
        "run as root: the test makes a ZFS pool and runs PostgreSQL as `postgres`"
    );
    let zpool = Command::new("zpool").arg("list").output();
    assert!(
        zpool.as_ref().is_ok_and(|o| o.status.success()),
        "`zpool list` fails ({zpool:?}): start ZFS (scripts/setup.sh starts zfs-fuse)"
    );
    assert!(
        std::path::Path::new(PG_BIN).join("postgres").exists(),
        "PostgreSQL 15 missing in {PG_BIN}: run scripts/setup.sh"
    );
}

/// The effective user is root (`/proc/self` belongs to it).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

async fn query_one(url: &str, sql: &str) -> i64 {
    let (c, conn) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(conn);
    c.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_is_rehearsed_on_a_branch_and_the_source_is_untouched() {
    check_prerequisites();
    let base: u16 = std::env::var("BPG_TEST_PORT_BASE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(55900);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all("/tmp/betterpg-test").unwrap();
    let pool = ThrowawayPool {
        name: format!("bpgexrs{}", std::process::id() % 100_000),
        file: PathBuf::from(format!(
            "/tmp/betterpg-test/bpgexrs{}.img",
            std::process::id() % 100_000
        )),
    };

    // A home on a 1 GiB pool file, and a database with 1000 items.
    let mut opts = InitOptions::dataset(format!("{}/betterpg", pool.name));
    opts.storage = InitStorage::PoolFile {
        file: pool.file.clone(),
        size: 1 << 30,
        pool: pool.name.clone(),
    };
    opts.pg_bin = Some(PG_BIN.into());
    opts.port_range = Some((base, base + 19));
    let home = dir.path().join("home");
    let mgr = BranchManager::init(&home, opts).await.expect("init");
    let prod = mgr.create("prod", CreateOptions::default()).await.unwrap();
    let (c, conn) = tokio_postgres::connect(&prod.url, NoTls).await.unwrap();
    tokio::spawn(conn);
    c.batch_execute(
        "CREATE TABLE items (id int PRIMARY KEY, name text);
         INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 1000) g;",
    )
    .await
    .unwrap();

    // A migration that works: it ran on the branch, which is gone again.
    let r = rehearse(
        &mgr,
        "prod",
        "ALTER TABLE items ADD COLUMN price int; UPDATE items SET price = id * 10;",
        false,
    )
    .await
    .expect("rehearsal");
    assert_eq!((r.statements, r.rows), (2, 1000), "{r:?}");
    assert!(!r.kept);
    let names: Vec<String> = mgr
        .status()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, ["prod"], "the branch was not destroyed");
    let cols = "SELECT count(*) FROM information_schema.columns WHERE table_name = 'items'";
    assert_eq!(query_one(&prod.url, cols).await, 2, "prod was changed");

    // Kept: the branch has the new column and prod still does not.
    let r = rehearse(&mgr, "prod", "ALTER TABLE items ADD COLUMN price int", true)
        .await
        .unwrap();
    assert!(r.kept);
    assert_eq!(query_one(&r.url, cols).await, 3);
    assert_eq!(query_one(&prod.url, cols).await, 2);
    mgr.destroy(&r.branch, false).await.unwrap();

    // A migration that fails: an error, no branch left, prod untouched.
    let err = rehearse(&mgr, "prod", "ALTER TABLE no_such_table ADD x int", false)
        .await
        .expect_err("a failing migration fails");
    assert!(
        err.to_string().contains("no_such_table") || format!("{err:?}").contains("no_such_table"),
        "{err:?}"
    );
    let names: Vec<String> = mgr
        .status()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, ["prod"], "a failed rehearsal left its branch");
    assert_eq!(
        query_one(&prod.url, "SELECT count(*) FROM items").await,
        1000
    );

    drop(c);
    mgr.destroy("prod", false).await.unwrap();
}
