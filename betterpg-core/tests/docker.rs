//! End-to-end tests of the docker runtime against the running Docker engine,
//! real ZFS and PostgreSQL 15 in the local image `betterpg/postgres:15`.
//!
//! Where no engine answers, or the image cannot be built, the tests FAIL
//! with the reason; nothing is skipped. Pools are named `bpgdk*` (files in
//! /tmp/betterpg-test/), ports come from 58000-58499, and every container
//! carries `betterpg.test=true`. A guard destroys the pool and removes the
//! home's containers even when a test fails.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use betterpg_core::osuser::OsUser;
use betterpg_core::pg::{ConnInfo, PgBin};
use betterpg_core::runtime::{
    DockerRuntime, InstanceSpec, Runtime, DEFAULT_IMAGE, ICC_OPTION, LABEL_HOME, LABEL_MANAGED,
    LABEL_NAME, LABEL_PARENT, NETWORK,
};
use betterpg_core::{BranchManager, BranchOptions, CreateOptions, InitOptions, InitStorage, Mode};
use betterpg_testkit::{assert_prefix, connect, Writer, POOL_DIR};
use bollard::Docker;

/// First port of these tests (50 per test slot); `BPG_TEST_PORT_BASE`
/// overrides it so runs of several people on one machine do not collide.
fn port_base() -> u16 {
    std::env::var("BPG_TEST_PORT_BASE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(58000)
}
const PORTS_PER_TEST: u16 = 50;
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

fn docker_opts() -> CreateOptions {
    CreateOptions {
        runtime: Some("docker".into()),
        ..Default::default()
    }
}

/// The engine answers and the default image exists (built with
/// scripts/build-image.sh when missing). Panics with the reason otherwise.
async fn check_docker() {
    betterpg_testkit::check_prerequisites();
    let unreachable = |e: bollard::errors::Error| -> ! {
        panic!(
            "the Docker engine is not reachable ({e}): start dockerd (or set DOCKER_HOST); the docker runtime tests need a running engine"
        )
    };
    let d = Docker::connect_with_defaults().unwrap_or_else(|e| unreachable(e));
    let d = d
        .negotiate_version()
        .await
        .unwrap_or_else(|e| unreachable(e));
    if d.inspect_image(DEFAULT_IMAGE).await.is_ok() {
        return;
    }
    static BUILD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _g = BUILD.lock().await;
    if d.inspect_image(DEFAULT_IMAGE).await.is_ok() {
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-image.sh");
    let out = tokio::process::Command::new("bash")
        .arg(&script)
        .output()
        .await
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "image {DEFAULT_IMAGE} is missing and {} failed:\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A betterpg home on its own pool; the guard cleans everything up.
struct DockerEnv {
    home: PathBuf,
    pool: String,
    pool_file: PathBuf,
    ports: (u16, u16),
    _dir: tempfile::TempDir,
}

impl DockerEnv {
    /// `slot` picks this test's ports (50 each) and pool name.
    async fn new(slot: u16) -> (DockerEnv, BranchManager) {
        Self::with_limits(slot, None, None).await
    }

    /// [`DockerEnv::new`] with `bpg init --docker-memory/--docker-pids`.
    async fn with_limits(
        slot: u16,
        docker_memory: Option<u64>,
        docker_pids: Option<u64>,
    ) -> (DockerEnv, BranchManager) {
        check_docker().await;
        std::fs::create_dir_all(POOL_DIR).unwrap();
        let pool = format!("bpgdk{}x{slot}", std::process::id() % 100_000);
        let dir = tempfile::Builder::new()
            .prefix("bpgdk-home-")
            .tempdir()
            .unwrap();
        let start = port_base() + slot * PORTS_PER_TEST;
        let env = DockerEnv {
            home: dir.path().join("home"),
            pool_file: Path::new(POOL_DIR).join(format!("{pool}.img")),
            pool,
            ports: (start, start + PORTS_PER_TEST - 1),
            _dir: dir,
        };
        let mgr = BranchManager::init(
            &env.home,
            InitOptions {
                storage: InitStorage::PoolFile {
                    file: env.pool_file.clone(),
                    size: 1 << 30,
                    pool: env.pool.clone(),
                },
                pg_bin: Some(PG_BIN.into()),
                os_user: None,
                listen_address: None,
                port_range: Some(env.ports),
                branch_headroom_percent: None,
                branch_reserve: None,
                docker_memory,
                docker_pids,
                zfs_properties: Vec::new(),
            },
        )
        .await
        .expect("bpg init on a file-backed pool");
        let mgr = mgr.with_runtime(Arc::new(
            DockerRuntime::new().with_label("betterpg.test", "true"),
        ));
        (env, mgr)
    }

    /// Names of this home's containers, found by label through the API.
    async fn containers(&self) -> Vec<String> {
        let mut v = DockerRuntime::new()
            .containers_of_home(&self.home)
            .await
            .unwrap();
        v.sort();
        v
    }

    /// Every dataset and snapshot in the pool.
    fn zfs_names(&self) -> Vec<String> {
        let out = std::process::Command::new("zfs")
            .args(["get", "-r", "-H", "-o", "name", "type", &self.pool])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect()
    }

    fn mountpoint(&self, dataset: &str) -> PathBuf {
        let out = std::process::Command::new("zfs")
            .args(["get", "-H", "-o", "value", "mountpoint", dataset])
            .output()
            .unwrap();
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    }
}

impl Drop for DockerEnv {
    fn drop(&mut self) {
        // Containers first (they hold the bind mounts), through the API on a
        // runtime of our own: Drop may run inside the test's runtime or
        // during a panic.
        let home = self.home.clone();
        let removed = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?
                .block_on(DockerRuntime::new().remove_all_of_home(&home))
                .map_err(|e| e.to_string())
        })
        .join();
        match removed {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => eprintln!(
                "cleanup: removed {n} container(s) of {}",
                self.home.display()
            ),
            Ok(Err(e)) => eprintln!(
                "warning: removing containers of {}: {e}",
                self.home.display()
            ),
            Err(_) => eprintln!("warning: the container cleanup thread panicked"),
        }
        betterpg_testkit::destroy_pool(&self.pool, &self.pool_file);
    }
}

async fn inspect(name: &str) -> Option<bollard::models::ContainerInspectResponse> {
    let d = Docker::connect_with_defaults()
        .unwrap()
        .negotiate_version()
        .await
        .unwrap();
    d.inspect_container(name, None).await.ok()
}

async fn count(url: &str, sql: &str) -> i64 {
    betterpg_testkit::query_i64(&connect(url).await, sql).await
}

async fn show(url: &str, setting: &str) -> String {
    let rows = connect(url)
        .await
        .simple_query(&format!("SHOW {setting}"))
        .await
        .unwrap();
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(String::from),
            _ => None,
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerised_database_lifecycle() {
    let (env, mgr) = DockerEnv::new(0).await;
    let db = mgr.create("db", docker_opts()).await.unwrap();
    assert_eq!(db.runtime, "docker");
    assert_eq!(db.status, "running");
    assert_eq!(
        mgr.entry("db").unwrap().image.as_deref(),
        Some(DEFAULT_IMAGE),
        "the default image is recorded in the catalog"
    );

    // The container: labels, user, port published on 127.0.0.1 only, the
    // clone's data directory bind-mounted as PGDATA.
    let cname = DockerRuntime::container_name(&env.home, "db");
    assert_eq!(env.containers().await, vec![cname.clone()]);
    let c = inspect(&cname).await.expect("container of db");
    let cfg = c.config.clone().unwrap();
    let labels = cfg.labels.clone().unwrap();
    assert_eq!(labels[LABEL_MANAGED], "true");
    assert_eq!(labels[LABEL_NAME], "db");
    assert_eq!(labels[LABEL_PARENT], "");
    assert_eq!(labels[LABEL_HOME], env.home.to_string_lossy());
    assert_eq!(labels["betterpg.test"], "true");
    let pg = nix::unistd::User::from_name("postgres").unwrap().unwrap();
    assert_eq!(
        cfg.user.as_deref(),
        Some(&*format!("{}:{}", pg.uid, pg.gid))
    );
    let hc = c.host_config.clone().unwrap();
    let bindings = hc.port_bindings.clone().unwrap();
    let b = bindings["5432/tcp"].clone().unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].host_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(b[0].host_port.as_deref(), Some(&*db.port.to_string()));
    // The default limits of a home.
    assert_eq!(
        hc.memory,
        Some(betterpg_core::home::DEFAULT_DOCKER_MEMORY as i64)
    );
    assert_eq!(
        hc.pids_limit,
        Some(betterpg_core::home::DEFAULT_DOCKER_PIDS as i64)
    );
    let data_dir = env.mountpoint(&db.dataset).join("pgdata");
    let mounts = hc.mounts.clone().unwrap();
    assert!(
        mounts.iter().any(
            |m| m.source.as_deref() == Some(&*data_dir.to_string_lossy())
                && m.target.as_deref() == Some("/var/lib/postgresql/data")
        ),
        "{mounts:?}"
    );

    // The cluster has the properties of a native one.
    assert_eq!(show(&db.url, "data_checksums").await, "on");
    assert_eq!(show(&db.url, "password_encryption").await, "scram-sha-256");
    assert_eq!(
        show(&db.url, "wal_recycle").await,
        "off",
        "betterpg.conf included"
    );
    assert_eq!(
        count(
            &db.url,
            "SELECT count(*) FROM pg_hba_file_rules WHERE auth_method <> 'scram-sha-256'"
        )
        .await,
        0,
        "trust (or anything but scram-sha-256) configured somewhere"
    );
    let conf = std::fs::read_to_string(data_dir.join("postgresql.conf")).unwrap();
    assert!(conf.contains("include_if_exists = 'betterpg.conf'"));
    let host_settings = std::fs::read_to_string(data_dir.join("betterpg.conf")).unwrap();
    assert!(
        host_settings.contains(&format!("port = {}", db.port)),
        "the host betterpg.conf keeps the native port: {host_settings}"
    );
    let wrong = format!("postgresql://postgres:wrong@127.0.0.1:{}/postgres", db.port);
    assert!(
        tokio_postgres::connect(&wrong, tokio_postgres::NoTls)
            .await
            .is_err(),
        "a wrong password was accepted"
    );
    // A reload does not trip over the host's port/address (no pending restart).
    let cl = connect(&db.url).await;
    cl.batch_execute(
        "SELECT pg_reload_conf(); CREATE TABLE t AS SELECT generate_series(1, 5000) AS id",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        count(
            &db.url,
            "SELECT count(*) FROM pg_settings WHERE pending_restart"
        )
        .await,
        0
    );

    // Logs come from the Docker API.
    let log = mgr.logs("db", None).await.unwrap();
    assert!(
        log.contains("database system is ready to accept connections"),
        "{log}"
    );
    assert_eq!(mgr.logs("db", Some(1)).await.unwrap().lines().count(), 1);

    // Stop: no container left, the log is kept.
    let stopped = mgr.stop("db").await.unwrap();
    assert_eq!(stopped.status, "stopped");
    assert!(inspect(&cname).await.is_none(), "stop leaves no container");
    let log = mgr.logs("db", None).await.unwrap();
    assert!(log.contains("database system is shut down"), "{log}");

    // The port is taken: a typed port error, and no container is left.
    let spec = InstanceSpec {
        name: "db".into(),
        data_dir: data_dir.clone(),
        pg_bin: PgBin {
            dir: PG_BIN.into(),
            major: 15,
        },
        log_file: env.home.join("logs/db.log"),
        runtime: "docker".into(),
        image: Some(DEFAULT_IMAGE.into()),
        home: env.home.clone(),
        parent: None,
        user: OsUser::resolve(None).unwrap(),
        conn: ConnInfo {
            host: "127.0.0.1".into(),
            port: env.ports.1,
            user: "postgres".into(),
            password: "unused".into(),
            dbname: "postgres".into(),
        },
        start_timeout: Duration::from_secs(30),
        limits: Default::default(),
        private_socket_dir: None,
    };
    let blocker = std::net::TcpListener::bind(("127.0.0.1", env.ports.1)).unwrap();
    let e = DockerRuntime::new().start(&spec).await.unwrap_err();
    assert_eq!(e.kind_name(), "port", "{e}");
    drop(blocker);
    assert!(
        inspect(&cname).await.is_none(),
        "a failed start leaves no container"
    );

    // Start again: a new container on the same data.
    let started = mgr.start("db").await.unwrap();
    assert_eq!(started.status, "running");
    assert_eq!(count(&db.url, "SELECT count(*) FROM t").await, 5000);

    // Branch of a stopped containerised source: crash-consistent, no
    // recovery needed, the branch runs in its own container, the source
    // stays stopped.
    mgr.stop("db").await.unwrap();
    let r = mgr
        .branch("db", "cold", BranchOptions::default())
        .await
        .unwrap();
    assert!(!r.source_was_running);
    assert_eq!(r.branch.mode, Some(betterpg_core::Mode::CrashConsistent));
    assert_eq!(r.branch.runtime, "docker");
    assert_eq!(count(&r.branch.url, "SELECT count(*) FROM t").await, 5000);
    let cold = inspect(&DockerRuntime::container_name(&env.home, "cold"))
        .await
        .expect("container of the branch");
    assert_eq!(cold.config.unwrap().labels.unwrap()[LABEL_PARENT], "db");
    assert_eq!(mgr.info("db").await.unwrap().status, "stopped");
    let log = mgr.logs("cold", None).await.unwrap();
    assert!(log.contains("database system was shut down at"), "{log}");

    // A server that never becomes ready: the start fails with its last log
    // lines and leaves no container; a branch of it is rolled back whole.
    mgr.stop("cold").await.unwrap();
    let cold_data = env.mountpoint(&r.branch.dataset).join("pgdata");
    let conf_path = cold_data.join("postgresql.conf");
    let mut conf = std::fs::read_to_string(&conf_path).unwrap();
    conf.push_str("\nbetterpg_test_no_such_setting = 1\n");
    std::fs::write(&conf_path, conf).unwrap();
    let e = mgr.start("cold").await.unwrap_err();
    assert_eq!(e.kind_name(), "runtime", "{e}");
    assert!(
        e.to_string().contains("betterpg_test_no_such_setting"),
        "the error quotes the container log: {e}"
    );
    assert!(inspect(&DockerRuntime::container_name(&env.home, "cold"))
        .await
        .is_none());
    let before = env.zfs_names();
    let e = mgr
        .branch("cold", "broken", BranchOptions::default())
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("betterpg_test_no_such_setting"),
        "{e}"
    );
    assert!(inspect(&DockerRuntime::container_name(&env.home, "broken"))
        .await
        .is_none());
    assert_eq!(
        env.zfs_names(),
        before,
        "the failed branch left datasets or snapshots"
    );
    assert!(
        mgr.entry("broken").is_err(),
        "the failed branch is in the catalog"
    );

    // Destroy: no container, dataset or catalog entry is left.
    mgr.start("db").await.unwrap();
    mgr.destroy("db", true).await.unwrap();
    assert_eq!(env.containers().await, Vec::<String>::new());
    assert!(mgr.status().await.unwrap().is_empty());
    let left: Vec<String> = env
        .zfs_names()
        .into_iter()
        .filter(|n| (n.contains("/betterpg/") && !n.ends_with("/_branches")) || n.contains('@'))
        .collect();
    assert!(left.is_empty(), "datasets left: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerised_branches_under_writer_hold_every_acknowledged_commit() {
    let (env, mgr) = DockerEnv::new(1).await;
    let prod = mgr.create("prod", docker_opts()).await.unwrap();
    let writer = Writer::start(&prod.url).await;

    // Application-consistent: backup mode over the published port.
    let acked = writer.acked();
    let app = mgr
        .branch("prod", "app", BranchOptions::default())
        .await
        .unwrap();
    assert_eq!(
        app.branch.mode,
        Some(betterpg_core::Mode::ApplicationConsistent)
    );
    assert_eq!(app.branch.runtime, "docker");
    assert!(app.wal_bytes_copied > 0);
    assert_prefix(&app.branch.url, acked).await;
    let log = mgr.logs("app", None).await.unwrap();
    assert!(
        log.contains("completed backup recovery"),
        "branch log:\n{log}"
    );
    assert!(
        log.contains("consistent recovery state reached"),
        "branch log:\n{log}"
    );

    // Crash-consistent (--fast), the writer still running.
    let acked = writer.acked();
    let fast = mgr
        .branch(
            "prod",
            "quick",
            BranchOptions {
                mode: Mode::CrashConsistent,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let written = writer.stop().await;
    assert_eq!(fast.branch.mode, Some(betterpg_core::Mode::CrashConsistent));
    let max = assert_prefix(&fast.branch.url, acked).await;
    assert!(
        max <= written,
        "the branch holds ids the source never wrote"
    );

    // The source holds no slot and no backup session of ours.
    assert_eq!(
        count(&prod.url, "SELECT count(*) FROM pg_replication_slots").await,
        0
    );
    // Branches are writable and independent of the source.
    connect(&fast.branch.url)
        .await
        .execute("INSERT INTO seq VALUES (-1)", &[])
        .await
        .unwrap();
    assert_eq!(
        count(&prod.url, "SELECT count(*) FROM seq WHERE id = -1").await,
        0
    );
    let mut names = env.containers().await;
    names.sort();
    let mut want: Vec<String> = ["app", "prod", "quick"]
        .iter()
        .map(|n| DockerRuntime::container_name(&env.home, n))
        .collect();
    want.sort();
    assert_eq!(names, want);

    // The gc sweep finds (and removes) containers of names it is not told
    // to keep, and only those.
    let rt = DockerRuntime::new();
    let keep = vec!["prod".to_string(), "app".to_string()];
    let found = rt.sweep(&env.home, &keep, true).await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("quick"), "{found:?}");
    assert_eq!(env.containers().await.len(), 3, "a dry run removes nothing");
    rt.sweep(&env.home, &keep, false).await.unwrap();
    assert_eq!(mgr.info("quick").await.unwrap().status, "stopped");
    assert_eq!(mgr.info("app").await.unwrap().status, "running");

    mgr.destroy("prod", true).await.unwrap();
    assert_eq!(env.containers().await, Vec::<String>::new());
    assert!(mgr.status().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_image_fails_cleanly_and_leaves_nothing() {
    let (env, mgr) = DockerEnv::new(2).await;
    let before = env.zfs_names();
    let e = mgr
        .create(
            "db",
            CreateOptions {
                runtime: Some("docker".into()),
                image: Some("betterpg/no-such-image:0".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind_name(), "docker", "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("betterpg/no-such-image:0") && msg.contains("scripts/build-image.sh"),
        "the error says how to get an image: {msg}"
    );
    assert_eq!(env.containers().await, Vec::<String>::new());
    assert_eq!(env.zfs_names(), before, "datasets left behind");
    assert!(mgr.entry("db").is_err(), "catalog entry left behind");
    assert!(mgr.status().await.unwrap().is_empty());
    assert!(
        !env.home.join("secrets/db").exists(),
        "password left behind"
    );

    // An image of another PostgreSQL major version is refused up front: a
    // local image derived from the default one that says PG_MAJOR=16.
    let fake = "betterpg-test/pg-major-16:bpgdk";
    let mut build = std::process::Command::new("docker")
        .args(["build", "-q", "-t", fake, "-"])
        .env("DOCKER_BUILDKIT", "0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("docker CLI");
    {
        use std::io::Write;
        let mut stdin = build.stdin.take().unwrap();
        writeln!(stdin, "FROM {DEFAULT_IMAGE}\nENV PG_MAJOR=16").unwrap();
    }
    let out = build.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "docker build of {fake}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let e = mgr
        .create(
            "db",
            CreateOptions {
                runtime: Some("docker".into()),
                image: Some(fake.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    let _ = std::process::Command::new("docker")
        .args(["image", "rm", "-f", fake])
        .output();
    assert_eq!(e.kind_name(), "version_mismatch", "{e}");
    assert_eq!(env.zfs_names(), before, "datasets left behind");
    assert!(mgr.entry("db").is_err(), "catalog entry left behind");

    let e = mgr
        .create(
            "db",
            CreateOptions {
                image: Some(DEFAULT_IMAGE.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.kind_name(),
        "config",
        "--image without a container runtime: {e}"
    );
    let e = mgr
        .create(
            "db",
            CreateOptions {
                runtime: Some("podman-or-typo".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind_name(), "unsupported", "{e}");

    // The same name works right after, with the good image.
    let db = mgr.create("db", docker_opts()).await.unwrap();
    assert_eq!(db.status, "running");
    mgr.destroy("db", false).await.unwrap();
    assert_eq!(env.containers().await, Vec::<String>::new());
}

#[tokio::test]
async fn unreachable_engine_is_reported_as_such() {
    let rt = DockerRuntime::with_host("unix:///tmp/betterpg-test/bpgdk-no-engine.sock");
    let e = rt
        .containers_of_home(Path::new("/nonexistent"))
        .await
        .unwrap_err();
    assert_eq!(e.kind_name(), "docker", "{e}");
    assert!(e.to_string().contains("not reachable"), "{e}");
}

/// A branch can change runtime (a native database branched into a
/// container), and `set_default_runtime` (`bpg init --runtime`) makes
/// `create` use containers without asking each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branch_runtime_override_and_home_default_runtime() {
    let (env, mut mgr) = DockerEnv::new(5).await;
    let prod = mgr.create("prod", CreateOptions::default()).await.unwrap();
    assert_eq!(prod.runtime, "native");
    connect(&prod.url)
        .await
        .batch_execute("CREATE TABLE t AS SELECT generate_series(1, 500) AS id")
        .await
        .unwrap();
    let boxed = mgr
        .branch(
            "prod",
            "boxed",
            BranchOptions {
                runtime: Some("docker".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(boxed.branch.runtime, "docker");
    assert!(
        inspect(&DockerRuntime::container_name(&env.home, "boxed"))
            .await
            .is_some(),
        "the branch runs in a container"
    );
    assert_eq!(
        count(&boxed.branch.url, "SELECT count(*) FROM t").await,
        500
    );
    // An image for a native branch is refused, and nothing is made.
    let e = mgr
        .branch(
            "prod",
            "nope",
            BranchOptions {
                image: Some(DEFAULT_IMAGE.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind_name(), "config", "{e}");
    assert_eq!(mgr.info("nope").await.unwrap_err().kind_name(), "not_found");

    mgr.set_default_runtime(Some("docker".into()), None)
        .unwrap();
    let again = BranchManager::open(&env.home).await.unwrap();
    let db2 = again.create("db2", CreateOptions::default()).await.unwrap();
    assert_eq!(db2.runtime, "docker");
    assert!(inspect(&DockerRuntime::container_name(&env.home, "db2"))
        .await
        .is_some());
    again.destroy("db2", false).await.unwrap();
    again.destroy("prod", true).await.unwrap();
    assert!(inspect(&DockerRuntime::container_name(&env.home, "boxed"))
        .await
        .is_none());
    let e = mgr
        .set_default_runtime(Some("podman".into()), None)
        .unwrap_err();
    assert_eq!(e.kind_name(), "unsupported", "{e}");
}

/// Exit code and output of `pg_isready -h ip -p 5432` run in a throw-away
/// container of the local image on Docker network `network`: 0 = a server
/// answered, 2 = no response (nothing reachable at that address).
fn probe_from_network(network: &str, ip: &str) -> (i32, String) {
    let out = std::process::Command::new("docker")
        .args([
            "run",
            "--rm",
            "--label",
            "betterpg.test=true",
            "--network",
            network,
            "--entrypoint",
            "pg_isready",
            DEFAULT_IMAGE,
            "-h",
            ip,
            "-p",
            "5432",
            "-t",
            "5",
        ])
        .output()
        .expect("running the docker CLI");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Issue 11 item 7: a branch container must not be reachable from other
/// containers (on the default bridge, or on the network betterpg puts its
/// own containers on), only through the port published on the host's
/// 127.0.0.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_containers_cannot_reach_a_branch() {
    // Limits other than the defaults, to see the home's values applied.
    let memory: u64 = 768 << 20;
    let pids: u64 = 300;
    let (env, mgr) = DockerEnv::with_limits(6, Some(memory), Some(pids)).await;
    mgr.create("prod", docker_opts()).await.unwrap();
    let dev = mgr
        .branch("prod", "dev", BranchOptions::default())
        .await
        .unwrap();
    let cname = DockerRuntime::container_name(&env.home, "dev");
    let c = inspect(&cname).await.expect("container of the branch");
    let networks = c
        .network_settings
        .clone()
        .and_then(|n| n.networks)
        .unwrap_or_default();
    assert!(!networks.is_empty(), "the branch container has no network");

    // A container on the default bridge, and one on every network the
    // branch is on, try its PostgreSQL port directly.
    let mut probes: Vec<String> = networks.keys().cloned().collect();
    if !probes.iter().any(|n| n == "bridge") {
        probes.push("bridge".into());
    }
    let ip = networks
        .values()
        .find_map(|e| e.ip_address.clone().filter(|a| !a.is_empty()))
        .expect("an IP address of the branch container");
    for net in &probes {
        let (code, text) = probe_from_network(net, &ip);
        assert_eq!(
            code, 2,
            "a container on network {net:?} reached the branch at {ip}:5432 (pg_isready exit {code}): {text}"
        );
        assert!(text.contains("no response"), "{net}: {text}");
    }
    // The published 127.0.0.1 port still works.
    assert_eq!(count(&dev.branch.url, "SELECT 1::bigint").await, 1);

    // On betterpg's network, which has inter-container traffic off.
    assert_eq!(
        networks.keys().collect::<Vec<_>>(),
        vec![NETWORK],
        "the branch is on betterpg's network only"
    );
    let d = Docker::connect_with_defaults()
        .unwrap()
        .negotiate_version()
        .await
        .unwrap();
    let net = d.inspect_network(NETWORK, None).await.unwrap();
    assert_eq!(
        net.options
            .unwrap_or_default()
            .get(ICC_OPTION)
            .map(String::as_str),
        Some("false")
    );
    assert_eq!(net.labels.unwrap_or_default()[LABEL_MANAGED], "true");

    // Hardening and limits, as Docker recorded them ...
    let hc = c.host_config.clone().unwrap();
    let secopt = hc.security_opt.clone().unwrap_or_default();
    assert!(
        secopt.iter().any(|o| o.starts_with("no-new-privileges")),
        "{secopt:?}"
    );
    assert_eq!(
        hc.cap_drop.clone().unwrap_or_default(),
        vec!["ALL".to_string()]
    );
    assert!(
        hc.cap_add.clone().unwrap_or_default().is_empty(),
        "{:?}",
        hc.cap_add
    );
    assert_eq!(hc.memory, Some(memory as i64));
    assert_eq!(hc.pids_limit, Some(pids as i64));
    // ... and as the kernel applies them to the running server (PID 1 is
    // postgres; cgroup v2 or v1 paths).
    let out = std::process::Command::new("docker")
        .args([
            "exec",
            &cname,
            "sh",
            "-c",
            "cat /proc/1/status; echo pids=$(cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max); echo mem=$(cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes)",
        ])
        .output()
        .expect("docker exec");
    let st = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{st}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |k: &str| {
        st.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {k} in:\n{st}"))
    };
    assert!(field("Name:").starts_with("postgres"), "{st}");
    assert_eq!(field("NoNewPrivs:"), "1");
    assert_eq!(field("CapEff:"), "0000000000000000");
    assert_eq!(field("CapBnd:"), "0000000000000000");
    assert_eq!(field("pids="), pids.to_string());
    assert_eq!(field("mem="), memory.to_string());

    mgr.destroy("prod", true).await.unwrap();
    assert_eq!(env.containers().await, Vec::<String>::new());
    // gc removes the network once no container (of any home) uses it.
    mgr.gc(false).await.unwrap();
    match d.inspect_network(NETWORK, None).await {
        Err(_) => {}
        Ok(n) => assert!(
            !n.containers.unwrap_or_default().is_empty(),
            "gc left the unused network {NETWORK}"
        ),
    }
}

/// Container limits are checked at init: too small is a config error and
/// nothing is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_limits_too_small_are_refused_at_init() {
    check_docker().await;
    let dir = tempfile::tempdir().unwrap();
    for (m, p) in [(Some(1 << 20), None), (None, Some(5))] {
        let mut opts = InitOptions::dataset("bpgdk-never-made/x");
        opts.docker_memory = m;
        opts.docker_pids = p;
        let e = BranchManager::init(dir.path().join("h"), opts)
            .await
            .unwrap_err();
        assert_eq!(e.kind_name(), "config", "{e}");
        assert!(e.to_string().contains("0 for no limit"), "{e}");
        assert!(!dir.path().join("h/config.json").exists());
    }
}

/// A Docker network named `betterpg` that betterpg did not make (here: one
/// with inter-container traffic on) is refused, never used: the start
/// fails with what to do and leaves nothing; without it the next start
/// makes betterpg's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_network_of_that_name_is_refused() {
    let (env, mgr) = DockerEnv::new(7).await;
    let rt = DockerRuntime::new();
    rt.remove_network_if_unused().await.unwrap();
    let d = Docker::connect_with_defaults()
        .unwrap()
        .negotiate_version()
        .await
        .unwrap();
    assert!(
        d.inspect_network(NETWORK, None).await.is_err(),
        "network {NETWORK} is in use by containers of another home: run this test when no betterpg container runs"
    );
    let out = std::process::Command::new("docker")
        .args([
            "network",
            "create",
            "--label",
            "betterpg.test=true",
            NETWORK,
        ])
        .output()
        .expect("docker CLI");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = env.zfs_names();
    let e = mgr.create("db", docker_opts()).await.unwrap_err();
    let _ = std::process::Command::new("docker")
        .args(["network", "rm", NETWORK])
        .output();
    assert_eq!(e.kind_name(), "docker", "{e}");
    assert!(
        e.to_string()
            .contains(&format!("docker network rm {NETWORK}")),
        "{e}"
    );
    assert_eq!(env.containers().await, Vec::<String>::new());
    assert!(mgr.entry("db").is_err(), "catalog entry left behind");
    assert_eq!(env.zfs_names(), before, "datasets left behind");

    let db = mgr.create("db", docker_opts()).await.unwrap();
    assert_eq!(db.status, "running");
    let net = d.inspect_network(NETWORK, None).await.unwrap();
    assert_eq!(
        net.options
            .unwrap_or_default()
            .get(ICC_OPTION)
            .map(String::as_str),
        Some("false")
    );
    mgr.destroy("db", false).await.unwrap();
}

/// A containerised branch rewinds like a native one, and the container is
/// stopped immediately (SIGQUIT: no shutdown checkpoint writing buffers
/// that the rollback throws away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerised_rewind_stops_the_server_immediately() {
    let (_env, mgr) = DockerEnv::new(8).await;
    let db = mgr.create("db", docker_opts()).await.unwrap();
    connect(&db.url)
        .await
        .batch_execute("CREATE TABLE t AS SELECT generate_series(1, 300) AS id")
        .await
        .unwrap();
    let made = mgr
        .branch(
            "db",
            "dev",
            BranchOptions {
                rewindable: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(made.branch.runtime, "docker");
    let url = made.branch.url.clone();
    connect(&url)
        .await
        .batch_execute("DELETE FROM t WHERE id > 7")
        .await
        .unwrap();
    let before = mgr.logs("dev", None).await.unwrap();
    assert!(!before.contains("immediate shutdown"), "{before}");
    let r = mgr.rewind("dev").await.unwrap();
    assert_eq!(r.branch.url, url);
    assert_eq!(count(&url, "SELECT count(*) FROM t").await, 300);
    let log = mgr.logs("dev", None).await.unwrap();
    assert!(
        log.contains("received immediate shutdown request"),
        "the container was stopped immediately: {log}"
    );
    mgr.destroy("db", true).await.unwrap();
}
