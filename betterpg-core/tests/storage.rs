//! The storage test suite: ONE set of tests, run against whichever backend
//! `storage::select` gives for `BPG_STORAGE_BACKEND` (`auto` when unset,
//! `cli`, `libzfs`). It runs on this machine against zfs-fuse (CLI backend)
//! and, through `scripts/test-openzfs-vm.sh`, in a guest against the real
//! OpenZFS 2.1 and 2.3 kernel modules with both the CLI and the libzfs backend. Any
//! difference between them is handled in the backends, never here.
//!
//! Every test makes its own file-backed pool (prefix `bpgvm`, file under
//! /tmp/betterpg-test) and destroys it afterwards. A missing prerequisite
//! FAILS the test with what to do; nothing is skipped.
//!
//! `bench_storage_ops` (ignored: a benchmark, run by the VM script) times
//! snapshot, clone, list and destroy with the CLI and the libzfs backend side
//! by side and writes JSON to `BPG_STORAGE_BENCH_OUT`.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use betterpg_core::storage::{self, DatasetType, Storage, ZfsCli};
use betterpg_core::Error;

const POOL_DIR: &str = "/tmp/betterpg-test";
const POOL_SIZE: u64 = 256 << 20;
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The backend the environment asks for.
fn requested() -> Option<String> {
    std::env::var("BPG_STORAGE_BACKEND")
        .ok()
        .filter(|s| !s.is_empty())
}

fn check_prerequisites() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "the storage tests must run as root (they create ZFS pools)"
    );
    match std::process::Command::new("zpool").arg("list").output() {
        Err(e) => panic!(
            "`zpool` not runnable ({e}): run scripts/setup.sh (zfs-fuse) or, for OpenZFS, scripts/test-openzfs-vm.sh"
        ),
        Ok(o) if !o.status.success() => panic!(
            "`zpool list` failed: {} — is the ZFS daemon (zfs-fuse) or kernel module running?",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Ok(_) => {}
    }
}

/// A file-backed pool, destroyed on drop.
struct Pool {
    name: String,
    file: PathBuf,
    mnt: tempfile::TempDir,
}

impl Pool {
    async fn new() -> Pool {
        check_prerequisites();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("bpgvm{}s{n}", std::process::id() % 100_000);
        std::fs::create_dir_all(POOL_DIR).unwrap();
        let file = Path::new(POOL_DIR).join(format!("{name}.img"));
        let _ = std::fs::remove_file(&file);
        let mnt = tempfile::Builder::new()
            .prefix("bpgvm-mnt-")
            .tempdir()
            .unwrap();
        ZfsCli::default()
            .create_file_pool(&name, &file, POOL_SIZE, mnt.path())
            .await
            .unwrap_or_else(|e| panic!("creating test pool {name}: {e}"));
        Pool { name, file, mnt }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for _ in 0..40 {
            let out = std::process::Command::new("zpool")
                .args(["destroy", "-f", &self.name])
                .output();
            match out {
                Ok(o) if o.status.success() => break,
                Ok(o) if String::from_utf8_lossy(&o.stderr).contains("no such pool") => break,
                _ => std::thread::sleep(Duration::from_millis(250)),
            }
        }
        let _ = std::fs::remove_file(&self.file);
    }
}

/// The selected backend; asking for `libzfs` and getting anything else fails.
async fn backend() -> Arc<dyn Storage> {
    let req = requested();
    let (s, sel) = storage::select(req.as_deref())
        .await
        .unwrap_or_else(|e| panic!("selecting storage backend {req:?}: {e}"));
    if let Some(r) = &req {
        if r != "auto" {
            assert_eq!(sel.backend, r.as_str(), "asked for {r}, got {sel:?}");
        }
    }
    eprintln!("storage backend: {} ({})", s.backend_name(), sel.reason);
    s
}

/// Pool, backend and a root dataset `POOL/bpg`.
async fn setup() -> (Pool, Arc<dyn Storage>, String) {
    let pool = Pool::new().await;
    let s = backend().await;
    let root = format!("{}/bpg", pool.name);
    s.create(&root, None, &[("managed", "root")])
        .await
        .expect("create root dataset");
    (pool, s, root)
}

fn is_mounted(path: &Path) -> bool {
    let want = path.to_string_lossy();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(&*want))
}

fn mountpoint_of(info: &storage::DatasetInfo) -> PathBuf {
    info.mountpoint
        .clone()
        .unwrap_or_else(|| panic!("{} has no mountpoint", info.name))
}

/// `createtxg` of each snapshot, read with the `zfs` command.
fn createtxg(names: &[&str]) -> Vec<String> {
    let out = std::process::Command::new("zfs")
        .args(["get", "-H", "-p", "-o", "value", "createtxg"])
        .args(names)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_random(path: &Path, bytes: usize) {
    let mut data = vec![0u8; bytes];
    let mut r = std::fs::File::open("/dev/urandom").unwrap();
    std::io::Read::read_exact(&mut r, &mut data).unwrap();
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(&data).unwrap();
    f.sync_all().unwrap();
}

/// Wait (up to a minute) until `cond` holds for the dataset; ZFS accounts
/// space when a transaction group syncs.
async fn wait_for(
    s: &dyn Storage,
    name: &str,
    what: &str,
    cond: impl Fn(&storage::DatasetInfo) -> bool,
) -> storage::DatasetInfo {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        nix::unistd::sync();
        let info = s.get(name).await.unwrap().expect("dataset exists");
        if cond(&info) {
            return info;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: {what} never held: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn selected_backend_is_the_one_asked_for() {
    let s = backend().await;
    let name = s.backend_name();
    match requested().as_deref() {
        Some("libzfs") => assert!(name.starts_with("libzfs"), "{name}"),
        Some("cli") => assert!(name.starts_with("zfs-cli"), "{name}"),
        _ => assert!(!name.is_empty()),
    }
}

#[tokio::test]
async fn create_sets_props_and_mounts() {
    let (pool, s, root) = setup().await;
    let db = format!("{root}/db");
    let custom = pool.mnt.path().join("custom-db");
    s.create(
        &db,
        Some(&custom),
        &[("kind", "database"), ("port", "5555")],
    )
    .await
    .unwrap();
    let info = s.get(&db).await.unwrap().expect("created");
    assert_eq!(info.kind, DatasetType::Filesystem);
    assert_eq!(info.mountpoint.as_deref(), Some(custom.as_path()));
    assert_eq!(info.props.get("kind").map(String::as_str), Some("database"));
    assert_eq!(info.props.get("port").map(String::as_str), Some("5555"));
    assert_eq!(
        info.props.get("managed").map(String::as_str),
        Some("root"),
        "user properties are inherited from the parent: {info:?}"
    );
    assert_eq!(info.origin, None);
    assert!(is_mounted(&custom), "{} not mounted", custom.display());
    std::fs::write(custom.join("f"), b"x").unwrap();

    // Without a mountpoint: inherited below the parent's.
    let db2 = format!("{root}/db2");
    s.create(&db2, None, &[]).await.unwrap();
    let info2 = s.get(&db2).await.unwrap().unwrap();
    let root_mp = mountpoint_of(&s.get(&root).await.unwrap().unwrap());
    assert_eq!(mountpoint_of(&info2), root_mp.join("db2"));
    assert!(is_mounted(&root_mp.join("db2")));

    let again = s.create(&db, None, &[]).await.unwrap_err();
    assert!(
        matches!(again, Error::AlreadyExists { .. }),
        "create of an existing dataset: {again:?}"
    );
}

#[tokio::test]
async fn snapshot_of_several_datasets_is_atomic() {
    let (_pool, s, root) = setup().await;
    let db = format!("{root}/db");
    let wal = format!("{db}/wal");
    s.create(&db, None, &[]).await.unwrap();
    s.create(&wal, None, &[]).await.unwrap();
    let dbi = s.get(&db).await.unwrap().unwrap();
    std::fs::write(mountpoint_of(&dbi).join("data"), b"data").unwrap();

    s.snapshot(&[&db, &wal], "s1", &[("snapshot", "s1"), ("kind", "snap")])
        .await
        .unwrap();
    let (a, b) = (format!("{db}@s1"), format!("{wal}@s1"));
    for n in [&a, &b] {
        let i = s
            .get(n)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{n} missing"));
        assert_eq!(i.kind, DatasetType::Snapshot);
        assert_eq!(
            i.props.get("snapshot").map(String::as_str),
            Some("s1"),
            "{i:?}"
        );
        assert_eq!(i.mountpoint, None);
    }
    let txgs = createtxg(&[&a, &b]);
    assert_eq!(txgs.len(), 2);
    assert_eq!(txgs[0], txgs[1], "both snapshots in one transaction group");

    let again = s.snapshot(&[&db, &wal], "s1", &[]).await.unwrap_err();
    assert!(matches!(again, Error::AlreadyExists { .. }), "{again:?}");

    // A failing multi-dataset snapshot leaves none behind.
    let missing = format!("{root}/missing");
    assert!(s.snapshot(&[&db, &missing], "s2", &[]).await.is_err());
    assert_eq!(s.get(&format!("{db}@s2")).await.unwrap(), None);
}

#[tokio::test]
async fn clone_with_props_and_mountpoint() {
    let (pool, s, root) = setup().await;
    let db = format!("{root}/db");
    s.create(&db, None, &[("kind", "database")]).await.unwrap();
    let db_mp = mountpoint_of(&s.get(&db).await.unwrap().unwrap());
    std::fs::write(db_mp.join("hello"), b"before").unwrap();
    nix::unistd::sync();
    s.snapshot(&[&db], "s1", &[]).await.unwrap();
    std::fs::write(db_mp.join("after"), b"after").unwrap();

    let br = format!("{root}/br");
    let br_mp = pool.mnt.path().join("branches").join("br");
    s.clone_snapshot(
        &format!("{db}@s1"),
        &br,
        Some(&br_mp),
        &[("kind", "branch"), ("parent", "db")],
    )
    .await
    .unwrap();
    let info = s.get(&br).await.unwrap().expect("clone exists");
    assert_eq!(info.kind, DatasetType::Filesystem);
    assert_eq!(info.origin.as_deref(), Some(format!("{db}@s1").as_str()));
    assert_eq!(info.mountpoint.as_deref(), Some(br_mp.as_path()));
    assert_eq!(info.props.get("kind").map(String::as_str), Some("branch"));
    assert_eq!(info.props.get("parent").map(String::as_str), Some("db"));
    assert!(
        is_mounted(&br_mp),
        "clone not mounted at {}",
        br_mp.display()
    );
    assert_eq!(std::fs::read(br_mp.join("hello")).unwrap(), b"before");
    assert!(
        !br_mp.join("after").exists(),
        "the clone shows the snapshot"
    );
    std::fs::write(br_mp.join("own"), b"branch").unwrap();
    assert!(
        !db_mp.join("own").exists(),
        "writes to the clone stay there"
    );

    let taken = s
        .clone_snapshot(&format!("{db}@s1"), &br, None, &[])
        .await
        .unwrap_err();
    assert!(matches!(taken, Error::AlreadyExists { .. }), "{taken:?}");
    let nosnap = s
        .clone_snapshot(&format!("{db}@nope"), &format!("{root}/x"), None, &[])
        .await
        .unwrap_err();
    assert!(matches!(nosnap, Error::NotFound { .. }), "{nosnap:?}");
    assert_eq!(s.get(&format!("{root}/x")).await.unwrap(), None);
}

#[tokio::test]
async fn destroy_refuses_dependents_and_forces() {
    let (_pool, s, root) = setup().await;
    let db = format!("{root}/db");
    let wal = format!("{db}/wal");
    let snap = format!("{db}@s1");
    let br = format!("{root}/br");
    s.create(&db, None, &[]).await.unwrap();
    s.create(&wal, None, &[]).await.unwrap();
    s.snapshot(&[&db], "s1", &[]).await.unwrap();
    s.clone_snapshot(&snap, &br, None, &[]).await.unwrap();

    let e = s.destroy(&snap, false).await.unwrap_err();
    assert!(
        matches!(e, Error::HasDependents { .. }),
        "snapshot with a clone: {e:?}"
    );
    let e = s.destroy(&db, false).await.unwrap_err();
    assert!(
        matches!(e, Error::HasDependents { .. }),
        "fs with children: {e:?}"
    );
    let e = s.destroy(&db, true).await.unwrap_err();
    assert!(
        matches!(e, Error::HasDependents { .. }),
        "a clone elsewhere blocks even a forced destroy: {e:?}"
    );
    for n in [&db, &wal, &snap, &br] {
        assert!(
            s.get(n).await.unwrap().is_some(),
            "{n} must survive a refused destroy"
        );
    }

    s.destroy(&br, false).await.unwrap();
    assert_eq!(s.get(&br).await.unwrap(), None);
    s.destroy(&db, true).await.unwrap();
    for n in [&db, &wal, &snap] {
        assert_eq!(s.get(n).await.unwrap(), None, "{n} must be gone");
    }

    let e = s
        .destroy(&format!("{root}/missing"), false)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e:?}");
    let e = s
        .destroy(&format!("{root}@missing"), false)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e:?}");
}

#[tokio::test]
async fn list_shows_the_tree() {
    let (_pool, s, root) = setup().await;
    let db = format!("{root}/db");
    let wal = format!("{db}/wal");
    let br = format!("{root}/br");
    s.create(&db, None, &[("kind", "database")]).await.unwrap();
    s.create(&wal, None, &[]).await.unwrap();
    s.snapshot(&[&db], "s1", &[]).await.unwrap();
    s.clone_snapshot(&format!("{db}@s1"), &br, None, &[("kind", "branch")])
        .await
        .unwrap();

    let all = s.list(&root).await.unwrap();
    let names: BTreeSet<String> = all.iter().map(|d| d.name.clone()).collect();
    let want: BTreeSet<String> = [&root, &db, &format!("{db}@s1"), &wal, &br]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(names, want);
    assert_eq!(all[0].name, root, "the root comes first");
    let by = |n: &str| all.iter().find(|d| d.name == n).unwrap();
    assert_eq!(by(&format!("{db}@s1")).kind, DatasetType::Snapshot);
    assert_eq!(by(&br).origin.as_deref(), Some(format!("{db}@s1").as_str()));
    assert_eq!(
        by(&br).props.get("kind").map(String::as_str),
        Some("branch")
    );
    assert_eq!(
        by(&db).props.get("kind").map(String::as_str),
        Some("database")
    );
    assert_eq!(by(&wal).kind, DatasetType::Filesystem);

    let sub = s.list(&wal).await.unwrap();
    assert_eq!(sub.len(), 1);
    let e = s.list(&format!("{root}/missing")).await.unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e:?}");
}

#[tokio::test]
async fn sizes_follow_data() {
    let (_pool, s, root) = setup().await;
    let db = format!("{root}/db");
    s.create(&db, None, &[]).await.unwrap();
    let mp = mountpoint_of(&s.get(&db).await.unwrap().unwrap());
    const MB: u64 = 1 << 20;
    write_random(&mp.join("blob"), 8 * MB as usize);
    let info = wait_for(&*s, &db, "referenced >= 8 MiB", |i| i.referenced >= 8 * MB).await;
    assert!(info.used >= 8 * MB, "{info:?}");
    assert!(info.referenced < 12 * MB, "{info:?}");

    s.snapshot(&[&db], "s1", &[]).await.unwrap();
    let br = format!("{root}/br");
    s.clone_snapshot(&format!("{db}@s1"), &br, None, &[])
        .await
        .unwrap();
    let snap = s.get(&format!("{db}@s1")).await.unwrap().unwrap();
    assert!(
        snap.referenced >= 8 * MB,
        "a snapshot refers to the data: {snap:?}"
    );
    assert!(
        snap.used < MB,
        "a fresh snapshot uses almost nothing: {snap:?}"
    );
    let clone = wait_for(&*s, &br, "referenced >= 8 MiB", |i| i.referenced >= 8 * MB).await;
    assert!(
        clone.used < MB,
        "a fresh clone uses almost nothing: {clone:?}"
    );
    let root_used = s.get(&root).await.unwrap().unwrap().used;
    assert!(
        root_used >= 8 * MB,
        "used includes descendants: {root_used}"
    );
}

#[tokio::test]
async fn pool_space_is_reported() {
    let (_pool, s, root) = setup().await;
    let space = s.pool_space(&root).await.unwrap();
    assert!(space.used > 0, "{space:?}");
    assert!(space.available > 0, "{space:?}");
    let total = space.used + space.available;
    assert!(
        total <= POOL_SIZE,
        "{space:?} exceeds the {POOL_SIZE}-byte pool"
    );
    // OpenZFS keeps a "slop" reserve (at least 128 MiB in 2.1) out of
    // `available`; zfs-fuse keeps less.
    assert!(
        total >= POOL_SIZE / 4,
        "{space:?} is far below the pool size"
    );
    let f = space.fraction_used();
    assert!(f > 0.0 && f < 0.5, "{f}");
}

#[tokio::test]
async fn get_of_a_missing_dataset_is_none() {
    let (pool, s, root) = setup().await;
    assert_eq!(s.get(&format!("{root}/nope")).await.unwrap(), None);
    assert_eq!(s.get(&format!("{root}/nope/deeper")).await.unwrap(), None);
    assert_eq!(s.get(&format!("{root}@nope")).await.unwrap(), None);
    assert_eq!(
        s.get(&format!("{}nopool/x", pool.name)).await.unwrap(),
        None
    );
    assert!(s.get(&root).await.unwrap().is_some());
}

#[tokio::test]
async fn user_props_round_trip() {
    let (_pool, s, root) = setup().await;
    let db = format!("{root}/db");
    s.create(&db, None, &[("name", "db"), ("port", "1")])
        .await
        .unwrap();
    s.set_props(&db, &[("port", "2"), ("mode", "fast")])
        .await
        .unwrap();
    let odd = "a b=c:d, ünï/\"q\"";
    s.set_props(&db, &[("parent", odd)]).await.unwrap();
    let p = s.get(&db).await.unwrap().unwrap().props;
    assert_eq!(p.get("name").map(String::as_str), Some("db"));
    assert_eq!(p.get("port").map(String::as_str), Some("2"));
    assert_eq!(p.get("mode").map(String::as_str), Some("fast"));
    assert_eq!(p.get("parent").map(String::as_str), Some(odd));

    s.snapshot(&[&db], "s1", &[("snapshot", "first")])
        .await
        .unwrap();
    let snap = format!("{db}@s1");
    s.set_props(&snap, &[("branch", "dev")]).await.unwrap();
    let sp = s.get(&snap).await.unwrap().unwrap().props;
    assert_eq!(sp.get("snapshot").map(String::as_str), Some("first"));
    assert_eq!(sp.get("branch").map(String::as_str), Some("dev"));
    let listed = s.list(&db).await.unwrap();
    let from_list = listed.iter().find(|d| d.name == db).unwrap();
    assert_eq!(from_list.props, p, "list and get agree");

    let e = s
        .set_props(&format!("{root}/missing"), &[("port", "3")])
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e:?}");
}

/// Both backends say which user properties are set on a dataset itself and
/// which are inherited (by a child dataset or a snapshot): betterpg's
/// ownership test (gc, destroy) rests on it.
#[tokio::test]
async fn props_say_whether_they_are_local_or_inherited() {
    let (_pool, s, root) = setup().await;
    let db = format!("{root}/db");
    let home = "/some/home";
    s.create(
        &db,
        None,
        &[
            ("managed", "yes"),
            ("home", home),
            ("name", "db"),
            ("dataset", &db),
        ],
    )
    .await
    .unwrap();
    let child = format!("{db}/extra");
    s.create(&child, None, &[]).await.unwrap();
    s.snapshot(&[&db], "manual", &[]).await.unwrap();
    s.snapshot(
        &[&db],
        "bpg-dev-1",
        &[("managed", "yes"), ("home", home), ("branch", "dev")],
    )
    .await
    .unwrap();
    let listed = s.list(&db).await.unwrap();
    let by = |n: &str| {
        listed
            .iter()
            .find(|d| d.name == n)
            .unwrap_or_else(|| panic!("{n} not listed: {listed:?}"))
            .clone()
    };
    let d = by(&db);
    assert_eq!(d.local_prop("name"), Some("db"), "{d:?}");
    assert!(d.made_by_betterpg(home), "{d:?}");
    assert_eq!(
        s.get(&db).await.unwrap().unwrap().local,
        d.local,
        "get and list agree"
    );
    for n in [child.clone(), format!("{db}@manual")] {
        let x = by(&n);
        assert_eq!(
            x.props.get("name").map(String::as_str),
            Some("db"),
            "inherited: {x:?}"
        );
        assert_eq!(x.local_prop("name"), None, "{x:?}");
        assert_eq!(x.local_prop("managed"), None, "{x:?}");
        assert!(!x.made_by_betterpg(home), "{x:?}");
    }
    let snap = by(&format!("{db}@bpg-dev-1"));
    assert_eq!(snap.local_prop("branch"), Some("dev"), "{snap:?}");
    assert!(snap.made_by_betterpg(home), "{snap:?}");
}

/// Median of `v` (milliseconds).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[tokio::test]
#[ignore = "benchmark: run by scripts/test-openzfs-vm.sh (needs both backends)"]
async fn bench_storage_ops() {
    let pool = Pool::new().await;
    let iters: usize = std::env::var("BPG_STORAGE_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    let mut backends: Vec<(&str, Arc<dyn Storage>)> = Vec::new();
    for b in ["cli", "libzfs"] {
        let (s, _) = storage::select(Some(b))
            .await
            .unwrap_or_else(|e| panic!("the benchmark needs backend {b}: {e}"));
        backends.push((b, s));
    }
    let root = format!("{}/bpg", pool.name);
    let s0 = &backends[0].1;
    s0.create(&root, None, &[]).await.unwrap();
    let db = format!("{root}/db");
    s0.create(&db, None, &[]).await.unwrap();
    for i in 0..8 {
        s0.create(&format!("{root}/other{i}"), None, &[])
            .await
            .unwrap();
    }
    let ops = [
        "snapshot",
        "clone",
        "list",
        "destroy_clone",
        "destroy_snapshot",
    ];
    let mut times: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); ops.len()]; backends.len()];
    for i in 0..iters {
        for (bi, (b, s)) in backends.iter().enumerate() {
            let snap = format!("{b}{i}");
            let clone = format!("{root}/c{b}{i}");
            let mut t = Instant::now();
            let mut lap = |k: usize, t: &mut Instant| {
                times[bi][k].push(t.elapsed().as_secs_f64() * 1000.0);
                *t = Instant::now();
            };
            s.snapshot(&[&db], &snap, &[("snapshot", "bench")])
                .await
                .unwrap();
            lap(0, &mut t);
            s.clone_snapshot(&format!("{db}@{snap}"), &clone, None, &[("kind", "branch")])
                .await
                .unwrap();
            lap(1, &mut t);
            let n = s.list(&root).await.unwrap().len();
            lap(2, &mut t);
            assert!(n >= 11);
            s.destroy(&clone, false).await.unwrap();
            lap(3, &mut t);
            s.destroy(&format!("{db}@{snap}"), false).await.unwrap();
            lap(4, &mut t);
        }
    }
    let mut rows = serde_json::Map::new();
    for (k, op) in ops.iter().enumerate() {
        let cli = median(times[0][k].clone());
        let lib = median(times[1][k].clone());
        rows.insert(
            op.to_string(),
            serde_json::json!({
                "cli_median_ms": (cli * 100.0).round() / 100.0,
                "libzfs_median_ms": (lib * 100.0).round() / 100.0,
                "cli_over_libzfs": (cli / lib * 100.0).round() / 100.0,
            }),
        );
        eprintln!(
            "{op:<17} cli {cli:>9.2} ms  libzfs {lib:>9.2} ms  ratio {:.1}x",
            cli / lib
        );
    }
    let report = serde_json::json!({
        "iterations": iters,
        "backends": backends.iter().map(|(_, s)| s.backend_name()).collect::<Vec<_>>(),
        "ops": rows,
    });
    let text = serde_json::to_string_pretty(&report).unwrap();
    println!("{text}");
    if let Ok(out) = std::env::var("BPG_STORAGE_BENCH_OUT") {
        std::fs::write(&out, text + "\n").unwrap_or_else(|e| panic!("writing {out}: {e}"));
    }
}
