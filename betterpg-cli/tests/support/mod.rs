//! Running the real `bpg` binary from the safety tests (bad_input,
//! concurrency, capacity, daemon_restart). Needs `common` (the core crate's
//! test module) declared next to it in the test crate.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::common::TestEnv;

/// Path of the `bpg` binary under test.
pub fn bpg_exe() -> &'static str {
    env!("CARGO_BIN_EXE_bpg")
}

/// `bpg --home HOME ...` runner.
pub struct Bpg<'a> {
    pub home: &'a Path,
}

impl<'a> Bpg<'a> {
    pub fn of(env: &'a TestEnv) -> Self {
        Bpg { home: &env.home }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(bpg_exe())
            .arg("--home")
            .arg(self.home)
            .args(args)
            .output()
            .expect("run bpg")
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

/// `bpg init` on the env's pool file with its port range and `size`.
pub fn init(env: &TestEnv, size: &str) {
    let (a, b) = env.ports;
    Bpg::of(env).ok(&[
        "init",
        "--pool-file",
        &env.pool_file.to_string_lossy(),
        "--size",
        size,
        "--pool",
        &env.pool,
        "--ports",
        &format!("{a}-{b}"),
        "--pg-bin",
        "/usr/lib/postgresql/15/bin",
    ]);
}

/// Names of the catalog's entries with their state and port.
pub fn catalog_entries(env: &TestEnv) -> Vec<(String, String, u16)> {
    let text = std::fs::read_to_string(env.home.join("catalog.json")).unwrap_or_default();
    if text.is_empty() {
        return Vec::new();
    }
    let v: Value = serde_json::from_str(&text).expect("catalog is JSON");
    v["entries"]
        .as_object()
        .expect("entries")
        .iter()
        .map(|(k, e)| {
            (
                k.clone(),
                e["state"].as_str().unwrap_or("?").to_string(),
                e["port"].as_u64().unwrap_or(0) as u16,
            )
        })
        .collect()
}

/// `zfs list` of the pool: (name, type, betterpg:managed, betterpg:home).
pub fn zfs_owned(pool: &str) -> Vec<(String, String, String, String)> {
    let out = Command::new("zfs")
        .args([
            "list",
            "-H",
            "-r",
            "-t",
            "all",
            "-o",
            "name,type,betterpg:managed,betterpg:home",
            pool,
        ])
        .output()
        .expect("zfs list");
    assert!(
        out.status.success(),
        "zfs list {pool}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() == 4).then(|| {
                (
                    f[0].to_string(),
                    f[1].to_string(),
                    f[2].to_string(),
                    f[3].to_string(),
                )
            })
        })
        .collect()
}

/// The pool and the catalog agree: every entry is ready and has its
/// dataset (and a branch its snapshot); every betterpg dataset and snapshot
/// belongs to an entry; the servers listening in the home's port range are
/// exactly the entries' that are running, each on its own port.
pub fn assert_consistent(env: &TestEnv) {
    let bpg = Bpg::of(env);
    let status = bpg.json(&["status"]);
    let infos = status.as_array().expect("status array");
    let zfs = zfs_owned(&env.pool);
    let names: Vec<&str> = zfs.iter().map(|z| z.0.as_str()).collect();
    let root = format!("{}/betterpg", env.pool);
    let branches = format!("{root}/_branches");
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
        if name == &env.pool || name == &root || name == &branches {
            continue;
        }
        let owned = infos.iter().any(|i| {
            i["dataset"].as_str() == Some(name.as_str())
                || i["snapshot"].as_str() == Some(name.as_str())
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
