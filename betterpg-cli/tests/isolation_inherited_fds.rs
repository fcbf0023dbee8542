//! A server bpg starts holds none of its caller's open files
//! (docs/safety.md, "Isolation from the source"). Whoever holds a branch's
//! URL can run programs as its server's OS user (`COPY ... TO PROGRAM`); a
//! descriptor the server inherited from whatever ran `bpg` (a root-owned
//! file opened for writing, a lock, a socket) is theirs to use whatever
//! its permissions say. Seen first as `flock LOCK bpg ...`: the servers
//! kept the lock after bpg returned.
//!
//! Real ZFS, real PostgreSQL 15, the real `bpg` binary, run with a
//! descriptor open (not close-on-exec) on a root-only file.

use std::path::Path;

use betterpg_testkit::*;
use serde_json::Value;

/// The descriptor number the caller's file gets in bpg.
const FD: i32 = 9;

/// Run `bpg ARGS --json` with `secret` open for appending as descriptor
/// [`FD`], inherited, as a shell's `9>>file` (or `flock`) passes it.
fn bpg_with_open_file(bpg: &Bpg<'_>, secret: &Path, args: &[&str]) -> Value {
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("exec \"$0\" \"$@\" {FD}>>\"$BPG_TEST_SECRET\""))
        .arg(bpg_exe())
        .arg("--home")
        .arg(bpg.home)
        .arg("--json")
        .args(args)
        .env("BPG_TEST_SECRET", secret)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "bpg {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The postmaster's pid of the server whose data directory is `dir`.
fn postmaster(dir: &Path) -> i32 {
    let pid = std::fs::read_to_string(dir.join("postmaster.pid")).unwrap();
    pid.lines().next().unwrap().trim().parse().unwrap()
}

/// Every descriptor of `pid` and its children that points at `secret`.
fn holders(pid: i32, secret: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pids = vec![pid];
    if let Ok(c) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
        pids.extend(c.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
    }
    for p in pids {
        let Ok(rd) = std::fs::read_dir(format!("/proc/{p}/fd")) else {
            continue;
        };
        for e in rd.flatten() {
            if std::fs::read_link(e.path()).ok().as_deref() == Some(secret) {
                found.push(format!("pid {p} fd {}", e.file_name().to_string_lossy()));
            }
        }
    }
    found
}

/// A superuser of the server at `url` writes to descriptor [`FD`] through a
/// program: it must not reach the caller's file.
async fn try_write_through_fd(url: &str) {
    let c = connect(url).await;
    // The program fails when the descriptor is closed: that is the point.
    let _ = c
        .batch_execute(&format!(
            "COPY (SELECT 1) TO PROGRAM 'echo written-through-an-inherited-fd >&{FD}'"
        ))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_do_not_inherit_the_callers_descriptors() {
    let env = TestEnv::plan("bpgfd");
    init(&env, "1G");
    let bpg = Bpg::of(&env);
    // A root-only file in a root-only directory: no server user may open it.
    let private = env.home.join("caller-private");
    std::fs::create_dir(&private).unwrap();
    std::os::unix::fs::chown(&private, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(
        &private,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let secret = private.join("secret");
    std::fs::write(&secret, "root's\n").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();

    let prod = bpg_with_open_file(&bpg, &secret, &["create", "prod"]);
    let prod_url = prod["url"].as_str().unwrap().to_string();
    let dev = bpg_with_open_file(&bpg, &secret, &["branch", "prod", "dev"]);
    let dev_url = dev["branch"]["url"].as_str().unwrap().to_string();
    let quick = bpg_with_open_file(&bpg, &secret, &["branch", "prod", "quick", "--fast"]);
    let quick_url = quick["branch"]["url"].as_str().unwrap().to_string();
    bpg.ok(&["stop", "dev"]);
    bpg_with_open_file(&bpg, &secret, &["start", "dev"]);

    for (name, url) in [
        ("prod", &prod_url),
        ("dev", &dev_url),
        ("quick", &quick_url),
    ] {
        let dir = bpg.data_dir(name);
        let held = holders(postmaster(&dir), &secret);
        assert!(
            held.is_empty(),
            "{name}'s server holds the caller's file: {held:?}"
        );
        try_write_through_fd(url).await;
    }
    let content = std::fs::read_to_string(&secret).unwrap();
    assert_eq!(
        content, "root's\n",
        "a server's superuser wrote into the caller's root-only file"
    );
    assert_consistent(&env);
}
