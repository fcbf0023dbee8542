//! The real `bpg` binary from a test: a runner, `bpg init` of a
//! [`TestEnv`], and the check that the pool, the catalog and the listening
//! ports agree.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

use crate::{zfs_owned, TestEnv, PG15_BIN};

/// Path of the `bpg` binary under test.
///
/// `CARGO_BIN_EXE_bpg` when set at run time (cargo-nextest sets it), else
/// the `bpg` that Cargo built next to the running test binary
/// (`<target>/<profile>/deps/<test>` -> `<target>/<profile>/bpg`): the
/// path `env!("CARGO_BIN_EXE_bpg")` names in `betterpg-cli`'s own tests.
/// Fails when there is none (build it with `cargo build -p betterpg-cli`).
pub fn bpg_exe() -> &'static str {
    static EXE: OnceLock<String> = OnceLock::new();
    EXE.get_or_init(|| {
        let path = match std::env::var_os("CARGO_BIN_EXE_bpg") {
            Some(p) => PathBuf::from(p),
            None => {
                let me = std::env::current_exe().expect("path of the test binary");
                let profile_dir = me
                    .parent()
                    .and_then(Path::parent)
                    .expect("the test binary lives in <target>/<profile>/deps");
                profile_dir.join("bpg")
            }
        };
        assert!(
            path.is_file(),
            "the bpg binary under test is missing at {}: build it (`cargo build -p betterpg-cli`; `cargo test -p betterpg-cli` and `cargo nextest run` do)",
            path.display()
        );
        path.to_string_lossy().into_owned()
    })
}

/// `bpg --home HOME ...` runner.
pub struct Bpg<'a> {
    /// The home every command gets as `--home`.
    pub home: &'a Path,
}

impl<'a> Bpg<'a> {
    /// A runner for `env`'s home.
    pub fn of(env: &'a TestEnv) -> Self {
        Bpg { home: &env.home }
    }

    /// The command `bpg --home HOME ARGS...`, not started.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bpg_exe());
        c.arg("--home").arg(self.home).args(args);
        c
    }

    /// Run to completion; whatever the outcome.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run bpg")
    }

    /// Run expecting success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "bpg {args:?} failed ({}): {}\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr),
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    /// Run with `--json` expecting success.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        serde_json::from_str(&self.ok(&a)).expect("valid JSON")
    }

    /// `bpg --json status ARGS...`'s entries (the list under `entries`).
    pub fn status_json(&self, args: &[&str]) -> Value {
        self.json(args)["entries"].clone()
    }

    /// `name`'s entry in `bpg --json status NAME`.
    pub fn entry(&self, name: &str) -> Value {
        let s = self.status_json(&["status", name]);
        s.as_array().map(|a| a[0].clone()).unwrap_or(s)
    }

    /// The data directory of `name`: its dataset's mountpoint, `pgdata`.
    pub fn data_dir(&self, name: &str) -> PathBuf {
        let e = self.entry(name);
        let ds = e["dataset"].as_str().expect("dataset in status");
        crate::zfs::data_dir_of(ds)
    }

    /// Run expecting failure: a non-zero exit other than clap's usage error
    /// (2), stderr starting with `error: `; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let o = self.run(args);
        check_failure(args, &o)
    }
}

/// Assert `o` is a clean betterpg failure; returns its stderr.
pub fn check_failure(args: &[&str], o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let code = o.status.code();
    assert!(
        !o.status.success() && code.is_some() && code != Some(2),
        "bpg {args:?} should fail with a betterpg error, got {:?}\nstderr: {err}\nstdout: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(err.starts_with("error: "), "bpg {args:?} stderr: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "bpg {args:?} panicked: {err}"
    );
    err
}

/// The arguments of `bpg init` for `env`'s pool (backed by `file`, of
/// `size`), its port range and PostgreSQL 15.
pub fn init_args(env: &TestEnv, file: &Path, size: &str) -> Vec<String> {
    let (a, b) = env.ports;
    [
        "init",
        "--pool-file",
        &file.to_string_lossy(),
        "--size",
        size,
        "--pool",
        &env.pool,
        "--ports",
        &format!("{a}-{b}"),
        "--pg-bin",
        PG15_BIN,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `bpg init` on the env's pool file with its port range and `size`.
pub fn init(env: &TestEnv, size: &str) {
    let args = init_args(env, &env.pool_file, size);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Bpg::of(env).ok(&args);
}

impl TestEnv {
    /// A planned env whose home `bpg init` made (1 GiB pool).
    pub fn initialized(prefix: &str) -> TestEnv {
        let env = TestEnv::plan(prefix);
        init(&env, "1G");
        env
    }

    /// A `bpgsafe` home on a pool of `size` whose ports stay within
    /// `lo..=hi` (a binary's fixed range, away from other people's), `bpg
    /// init` made.
    pub fn safe(lo: u16, hi: u16, size: &str) -> TestEnv {
        crate::set_port_base(lo);
        let env = TestEnv::plan("bpgsafe");
        crate::assert_ports_within(&env, lo, hi);
        init(&env, size);
        env
    }
}

/// The pool and the catalog agree: every entry is ready and has its
/// dataset (and a branch its snapshot), every named snapshot is ready and
/// has its ZFS snapshot and kept WAL; every betterpg dataset and snapshot
/// belongs to an entry or a named snapshot; the servers listening in the home's port range are
/// exactly the entries' that are running, each on its own port.
pub fn assert_consistent(env: &TestEnv) {
    let bpg = Bpg::of(env);
    let status = bpg.status_json(&["status"]);
    let infos = status.as_array().expect("status array");
    let zfs = zfs_owned(&env.pool);
    let names: Vec<&str> = zfs.iter().map(|z| z.0.as_str()).collect();
    let root = format!("{}/betterpg", env.pool);
    let branches = format!("{root}/_branches");
    let snapshots_root = format!("{root}/_snapshots");
    // Named snapshots own their ZFS snapshot and kept-WAL dataset.
    let snaps = bpg.json(&["snapshots"]);
    let snaps = snaps["snapshots"].as_array().expect("snapshots array");
    for s in snaps {
        assert_eq!(s["state"], "ready", "snapshot not ready: {s}");
        for key in ["zfs_snapshot", "wal_dataset"] {
            if let Some(n) = s[key].as_str() {
                assert!(names.contains(&n), "{key} {n} missing: {names:?}");
            }
        }
    }
    let mut ports = std::collections::BTreeSet::new();
    for i in infos {
        let name = i["name"].as_str().unwrap();
        assert_eq!(i["state"], "ready", "{name} is not ready: {i}");
        let ds = i["dataset"].as_str().unwrap();
        assert!(
            names.contains(&ds),
            "{name}: dataset {ds} missing from the pool: {names:?}"
        );
        if let Some(snap) = i["snapshot"].as_str() {
            assert!(
                names.contains(&snap),
                "{name}: snapshot {snap} missing: {names:?}"
            );
        }
        let port = i["port"].as_u64().unwrap() as u16;
        assert!(
            ports.insert(port),
            "port {port} held by two entries: {status}"
        );
    }
    for (name, kind, managed, _home) in &zfs {
        if name == &env.pool || name == &root || name == &branches || name == &snapshots_root {
            continue;
        }
        // A rebuilt replica's old data (`follow --rebuild`) is kept while
        // a branch is a clone of one of its snapshots.
        let owned = infos.iter().any(|i| {
            i["dataset"].as_str() == Some(name.as_str())
                || i["snapshot"].as_str() == Some(name.as_str())
                || i["snapshot"]
                    .as_str()
                    .is_some_and(|s| s.starts_with(&format!("{name}@")))
                // A rewindable branch's rewind point, on its dataset.
                || i["rewindable"] == true
                    && i["dataset"].as_str().is_some_and(|d| {
                        name == &format!("{d}@bpgrewind-{}", i["name"].as_str().unwrap_or(""))
                    })
        }) || wal_retention_owns(infos, &root, name)
            || snaps.iter().any(|s| {
                s["zfs_snapshot"].as_str() == Some(name.as_str())
                    || s["wal_dataset"].as_str() == Some(name.as_str())
            });
        assert!(
            owned,
            "stray {kind} {name} (betterpg:managed={managed}) owned by no entry"
        );
    }
    let (a, b) = env.ports;
    for port in a..=b {
        // A connection to itself (Linux picks the probed port as the
        // ephemeral source port: these ports are in the ephemeral range)
        // succeeds with nothing listening: not a listener.
        let listening = std::net::TcpStream::connect(("127.0.0.1", port))
            .map(|s| s.local_addr().ok() != s.peer_addr().ok())
            .unwrap_or(false);
        let running = infos
            .iter()
            .any(|i| i["port"].as_u64() == Some(port as u64) && i["status"] == "running");
        assert_eq!(
            listening, running,
            "port {port}: listening={listening} but an entry running there={running}: {status}"
        );
    }
}

/// Whether `name` is what WAL retention keeps for a database of `infos`
/// that keeps WAL: the archives' parent `ROOT/_wal`, its archive
/// `ROOT/_wal/NAME`, or a base snapshot `DATASET@bpg-walbase-…`.
fn wal_retention_owns(infos: &[serde_json::Value], root: &str, name: &str) -> bool {
    if name == format!("{root}/_wal") {
        return true;
    }
    infos.iter().any(|i| {
        let db = i["name"].as_str().unwrap_or_default();
        let ds = i["dataset"].as_str().unwrap_or_default();
        name == format!("{root}/_wal/{db}")
            || name.starts_with(&format!("{ds}@bpg-walbase-")) && !i["wal_retention"].is_null()
    })
}

/// Whether the `bpg` at `exe` obeys `BETTERPG_FAULT` (built with the cargo
/// feature `fault-injection`), as its `doctor --json` says.
pub fn has_fault_injection(exe: &Path) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(exe)
        .arg("--home")
        .arg(dir.path().join("none"))
        .args(["--json", "doctor"])
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", exe.display()));
    // doctor exits non-zero when the machine lacks something, but still
    // prints its report.
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{} doctor --json printed no JSON ({e}): {}",
            exe.display(),
            String::from_utf8_lossy(&o.stderr)
        )
    });
    v["fault_injection"]
        .as_bool()
        .unwrap_or_else(|| panic!("doctor --json has no boolean fault_injection: {v}"))
}

/// Fail (never skip) a test that injects faults when the `bpg` under test
/// was built without them: it would test nothing.
pub fn require_fault_injection() {
    assert!(
        has_fault_injection(Path::new(bpg_exe())),
        "{} was built without fault injection: run the tests with `--features betterpg-cli/fault-injection` (scripts/test.sh does)",
        bpg_exe()
    );
}

/// The `bpg` built WITHOUT fault injection (what ships), from
/// `BPG_NO_FAULT_BIN`, or a failure saying how to get one.
pub fn no_fault_bin() -> PathBuf {
    let p = std::env::var_os("BPG_NO_FAULT_BIN")
        .map(PathBuf::from)
        .expect(
            "BPG_NO_FAULT_BIN is not set: build bpg without fault injection \
             (`cargo build -p betterpg-cli --target-dir target/no-fault-injection`) and set \
             BPG_NO_FAULT_BIN=target/no-fault-injection/debug/bpg (scripts/test.sh does)",
        );
    assert!(
        p.is_file(),
        "BPG_NO_FAULT_BIN={} is not a file: build it first",
        p.display()
    );
    p
}

/// `bpg status NAME`'s `wal_retention` (null when it keeps no WAL).
pub fn wal_retention(bpg: &Bpg, name: &str) -> Value {
    bpg.status_json(&["status", name])[0]["wal_retention"].clone()
}

/// The WAL archive directory of `name` in `env` (its dataset's
/// mountpoint); fails when the dataset is missing.
pub fn wal_archive_dir(env: &TestEnv, name: &str) -> PathBuf {
    crate::zfs::mountpoint(&format!("{}/betterpg/_wal/{name}", env.pool))
}
