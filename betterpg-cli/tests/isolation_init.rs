//! Isolation items 12, 13 and 15: what `bpg init` checks and sets before a
//! database exists. Real ZFS (zfs-fuse), real PostgreSQL 15, real file
//! systems and permissions.
//!
//! - 12: a file-backed pool larger than the host's free space is refused
//!   (a real 200M tmpfs, 1G asked), and nothing is made.
//! - 13: a home under a directory the server's OS user cannot search (a real
//!   0700 parent) is refused at init, naming the directory and what to do;
//!   `bpg doctor` finds the same when the parent is closed later.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use betterpg_testkit::*;

fn setup_ports() {
    default_port_base(43100);
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn pool_exists(pool: &str) -> bool {
    Command::new("zpool")
        .args(["list", pool])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// A tmpfs of `size` mounted on a new directory; unmounted and removed on drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = Path::new(POOL_DIR).join(format!("bpghc-tmpfs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .expect("run mount");
        assert!(
            o.status.success(),
            "mounting a {size} tmpfs on {} failed (the test needs root and mount): {}",
            dir.display(),
            String::from_utf8_lossy(&o.stderr)
        );
        Tmpfs { dir }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).output();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Item 12: asked for a 1G pool on a 200M file system, init refuses, says
/// how much is free and what to do, and makes nothing.
#[test]
fn pool_file_larger_than_the_hosts_free_space_is_refused() {
    setup_ports();
    // Declared first, so it is unmounted after the env's pool is gone.
    let fs = Tmpfs::mount("200M");
    let env = TestEnv::plan("bpghc");
    let file = fs.dir.join("pool.img");
    let bpg = Bpg::of(&env);
    let err = bpg.fails(&strs(&init_args(&env, &file, "1G")));
    assert!(
        err.contains("free") && err.contains(&fs.dir.to_string_lossy().to_string()),
        "the error should name the file system and its free space: {err}"
    );
    assert!(
        err.contains("--size"),
        "the error should say what to do: {err}"
    );
    assert!(!file.exists(), "init left the pool file {}", file.display());
    assert!(!pool_exists(&env.pool), "init left the pool {}", env.pool);
    assert!(
        !env.home.join("config.json").exists(),
        "init wrote a config"
    );
    // The free space decides, not the place: a pool that fits is made there.
    bpg.ok(&strs(&init_args(&env, &file, "150M")));
    assert!(
        pool_exists(&env.pool),
        "a 150M pool on 200M free was not made"
    );
    let doctor = |bpg: &Bpg| -> serde_json::Value {
        let o = bpg.run(&["--json", "doctor"]);
        serde_json::from_slice(&o.stdout).expect("doctor --json")
    };
    let d = doctor(&bpg);
    assert_eq!(d["pool_file"]["host_short"], false, "{d}");
    // The host fills up under the pool: doctor warns that the pool file
    // could outgrow what is left.
    let filler = fs.dir.join("filler");
    std::fs::write(&filler, vec![1u8; 150 << 20]).unwrap();
    let d = doctor(&bpg);
    assert_eq!(d["pool_file"]["host_short"], true, "{d}");
    let warned = d["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w.as_str().unwrap_or("").contains("can still grow"));
    assert!(
        warned,
        "doctor should warn that the pool file can outgrow its host: {d}"
    );
    std::fs::remove_file(&filler).unwrap();
}

/// Item 13: a home under a 0700 directory owned by root.
#[test]
fn a_home_the_server_user_cannot_reach_is_refused_at_init_and_found_by_doctor() {
    setup_ports();
    let outer = tempfile::Builder::new()
        .prefix("bpghc-closed-")
        .tempdir()
        .unwrap();
    let closed = outer.path().to_path_buf();
    std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut env = TestEnv::plan("bpghc");
    env.home = closed.join("home");
    let bpg = Bpg::of(&env);
    let args = init_args(&env, &env.pool_file, "1G");
    let err = bpg.fails(&strs(&args));
    assert!(
        err.contains(&closed.to_string_lossy().to_string()),
        "the error should name the directory the server user cannot search: {err}"
    );
    assert!(
        err.contains("postgres") && err.contains("chmod o+x") && err.contains("--home"),
        "the error should name the user and say what to change: {err}"
    );
    assert!(!env.pool_file.exists(), "init left the pool file");
    assert!(!pool_exists(&env.pool), "init left the pool {}", env.pool);
    assert!(
        !env.home.exists(),
        "init made the home {}",
        env.home.display()
    );

    // Opened as the error says: init, create and a query work.
    std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o711)).unwrap();
    bpg.ok(&strs(&args));
    bpg.ok(&["create", "prod"]);
    let doc = bpg.run(&["--json", "doctor"]);
    assert!(
        doc.status.success(),
        "doctor on a reachable home: {}",
        String::from_utf8_lossy(&doc.stderr)
    );

    // Closed again later: doctor says which directory and what to do.
    bpg.ok(&["stop", "prod"]);
    std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
    let err = bpg.fails(&["doctor"]);
    assert!(
        err.contains(&closed.to_string_lossy().to_string()) && err.contains("chmod o+x"),
        "doctor should name the unreachable directory: {err}"
    );
    std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o711)).unwrap();
    bpg.ok(&["destroy", "prod", "--force"]);
}

/// `zfs get -H -o value PROP DATASET`.
fn zfs_value(dataset: &str, prop: &str) -> String {
    let o = Command::new("zfs")
        .args(["get", "-H", "-o", "value", prop, dataset])
        .output()
        .expect("zfs get");
    assert!(
        o.status.success(),
        "zfs get {prop} {dataset}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// lz4 where this ZFS has it (OpenZFS), else `on` (zfs-fuse 0.7).
fn default_compression() -> &'static str {
    let openzfs = Command::new("zfs")
        .arg("version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if openzfs {
        "lz4"
    } else {
        "on"
    }
}

/// Item 15: betterpg's ZFS properties for PostgreSQL are on the root
/// dataset and on every database and branch (inherited), recorded in the
/// config and shown by doctor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dataset_properties_for_postgresql_are_set_at_init() {
    setup_ports();
    let env = TestEnv::plan("bpghc");
    let bpg = Bpg::of(&env);
    bpg.ok(&strs(&init_args(&env, &env.pool_file, "1G")));
    bpg.ok(&["create", "prod"]);
    bpg.ok(&["branch", "prod", "dev"]);
    let root = format!("{}/betterpg", env.pool);
    let status = bpg.status_json(&["status"]);
    let mut datasets = vec![root.clone()];
    for i in status.as_array().expect("status is a list") {
        datasets.push(i["dataset"].as_str().unwrap().to_string());
    }
    assert_eq!(datasets.len(), 3, "{status}");
    for ds in &datasets {
        assert_eq!(zfs_value(ds, "recordsize"), "8K", "{ds}");
        assert_eq!(zfs_value(ds, "atime"), "off", "{ds}");
        assert_eq!(zfs_value(ds, "compression"), default_compression(), "{ds}");
    }
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(env.home.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["zfs_properties"]["recordsize"], "8K", "{cfg}");
    assert_eq!(cfg["zfs_properties"]["atime"], "off", "{cfg}");
    let doc = bpg.json(&["doctor"]);
    assert_eq!(
        doc["dataset_properties"]["live"]["recordsize"], "8K",
        "{doc}"
    );
    assert_eq!(
        doc["dataset_properties"]["recorded"], cfg["zfs_properties"],
        "{doc}"
    );
    bpg.ok(&["destroy", "prod", "--force"]);
}

/// Item 15: `--recordsize` and `--zfs-property` override the defaults (on
/// the datasets and in the record); bad keys and values are refused before
/// anything is made.
#[test]
fn dataset_properties_can_be_overridden_and_bad_ones_change_nothing() {
    setup_ports();
    let env = TestEnv::plan("bpghc");
    let bpg = Bpg::of(&env);
    let base = init_args(&env, &env.pool_file, "1G");
    for bad in [
        &["--recordsize", "3K"][..],
        &["--recordsize", "lots"],
        &["--zfs-property", "recordsize=256K"], // above zfs-fuse's 128K, below OpenZFS's 1M
        &["--zfs-property", "atime=sometimes"],
        &["--zfs-property", "sync=disabled"],
        &["--zfs-property", "mountpoint=/tmp/x"],
        &["--zfs-property", "compression"],
    ] {
        if bad[1] == "recordsize=256K" && default_compression() == "lz4" {
            continue; // valid on OpenZFS
        }
        let mut args = strs(&base);
        args.extend_from_slice(bad);
        let err = bpg.fails(&args);
        let key = bad[1].split('=').next().unwrap();
        let key = if bad[0] == "--recordsize" {
            "recordsize"
        } else {
            key
        };
        assert!(
            err.contains(key),
            "{bad:?}: the error should name {key}: {err}"
        );
        assert!(!env.pool_file.exists(), "{bad:?}: init left the pool file");
        assert!(!pool_exists(&env.pool), "{bad:?}: init left the pool");
        assert!(
            !env.home.join("config.json").exists(),
            "{bad:?}: init wrote a config"
        );
    }
    let mut args = strs(&base);
    args.extend_from_slice(&[
        "--recordsize",
        "16K",
        "--zfs-property",
        "atime=on",
        "--zfs-property",
        "compression=gzip",
        "--zfs-property",
        "logbias=throughput",
    ]);
    let cfg = bpg.json(&args);
    let root = format!("{}/betterpg", env.pool);
    for (k, v) in [
        ("recordsize", "16K"),
        ("atime", "on"),
        ("compression", "gzip"),
        ("logbias", "throughput"),
    ] {
        assert_eq!(zfs_value(&root, k), v, "{k}");
        assert_eq!(cfg["zfs_properties"][k], v, "{k} recorded: {cfg}");
    }
    bpg.ok(&["create", "prod"]);
    let prod = bpg.status_json(&["status"])[0]["dataset"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(zfs_value(&prod, "recordsize"), "16K");
    bpg.ok(&["destroy", "prod", "--force"]);
}
