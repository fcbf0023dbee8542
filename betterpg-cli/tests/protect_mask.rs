//! Masking that fails closed (docs/safety.md, "Copies of production
//! data"): `bpg branch SRC NAME --mask FILE.sql` runs the masking on the
//! branch's private first start, before it has a TCP port; nothing can
//! connect before it finished; afterwards no original value is left
//! anywhere a superuser of the branch can read (tables, dead tuples,
//! statistics, WAL, any file of the data directory); a failing statement
//! destroys the branch and the error names the file, line and statement; a
//! bpg killed mid-masking leaves a branch that was never reachable and
//! that `gc` removes; `--schema-only` keeps objects and no rows.
//!
//! Real ZFS, real PostgreSQL 15, the real `bpg` binary.

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use betterpg_testkit::*;

/// Rows of the `users` table: real-looking personal data, each value
/// unique and recognisable (`needle(i)` finds it in raw bytes).
const USERS: i64 = 300;

fn needle_email(i: i64) -> String {
    format!("margaret.okafor{i}@gmail.com")
}

/// The source `prod` with `users` (and an index on email, which holds
/// the values too), analysed (so pg_statistic holds values too), and
/// checkpointed once.
async fn source_with_users(bpg: &Bpg<'_>) -> String {
    bpg.ok(&["create", "prod"]);
    let url = bpg.ok(&["url", "prod"]).trim().to_string();
    let c = connect(&url).await;
    c.batch_execute(&format!(
        "CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL, email text NOT NULL UNIQUE, phone text); \
         INSERT INTO users SELECT i, 'Margaret Okafor ' || i, 'margaret.okafor' || i || '@gmail.com', \
                '+44 7700 9' || lpad(i::text, 5, '0') FROM generate_series(1, {USERS}) i; \
         ANALYZE users; CHECKPOINT; \
         UPDATE users SET phone = phone || ' ' WHERE id % 2 = 0; \
         UPDATE users SET phone = rtrim(phone) WHERE id % 2 = 0"
    ))
    .await
    .unwrap();
    url
}

/// The masking used by most tests: every personal column replaced.
const MASK_SQL: &str = "-- masking of users\n\
UPDATE users SET\n  email = 'user' || id || '@example.invalid',\n  name = 'User ' || id,\n  phone = NULL;\n";

fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Tries every port of the home's range (but those already listening)
/// every few milliseconds, from another thread, and records each
/// successful connection with its time.
struct Watcher {
    stop: Arc<AtomicBool>,
    hits: Arc<Mutex<Vec<(Instant, u16)>>>,
    attempts: Arc<Mutex<u64>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    fn start(env: &TestEnv) -> Watcher {
        let (a, b) = env.ports;
        let already: BTreeSet<u16> = (a..=b).filter(|p| listening(*p)).collect();
        let ports: Vec<u16> = (a..=b).filter(|p| !already.contains(p)).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let hits = Arc::new(Mutex::new(Vec::new()));
        let attempts = Arc::new(Mutex::new(0));
        let (s, h, n) = (stop.clone(), hits.clone(), attempts.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                for &p in &ports {
                    if listening(p) {
                        h.lock().unwrap().push((Instant::now(), p));
                    }
                    *n.lock().unwrap() += 1;
                }
                std::thread::sleep(Duration::from_millis(3));
            }
        });
        Watcher {
            stop,
            hits,
            attempts,
            thread: Some(thread),
        }
    }

    /// Stop watching; the successful connections and the number of tries.
    fn finish(mut self) -> (Vec<(Instant, u16)>, u64) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
        let hits = self.hits.lock().unwrap().clone();
        let n = *self.attempts.lock().unwrap();
        (hits, n)
    }
}

/// A TCP connection to 127.0.0.1:port succeeds (a connection to itself,
/// which Linux makes for a probed port in the ephemeral range, does not
/// count).
fn listening(port: u16) -> bool {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    TcpStream::connect_timeout(&addr, Duration::from_millis(50))
        .map(|s| s.local_addr().ok() != s.peer_addr().ok())
        .unwrap_or(false)
}

/// The data directory of the branch `name` from the pool alone (the
/// catalog may not say yet), once its clone is mounted.
fn branch_data_dir(env: &TestEnv, name: &str) -> Option<PathBuf> {
    let ds = zfs_tree(&env.pool)
        .into_iter()
        .find(|n| n.ends_with(&format!("/_branches/{name}")))?;
    let out = std::process::Command::new("zfs")
        .args(["get", "-H", "-o", "value", "mountpoint", &ds])
        .output()
        .ok()?;
    let dd = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("pgdata");
    dd.is_dir().then_some(dd)
}

/// As a superuser of the branch would look: every file of the data
/// directory read through `pg_ls_dir`/`pg_read_binary_file` (recursively),
/// searched for each needle (bound, never in the query text); and every
/// tuple of `users`, live or dead, read with pageinspect.
async fn superuser_finds(url: &str, needles: &[String]) -> Vec<String> {
    let c = connect(url).await;
    let mut found = files_holding(&c, needles).await;
    c.batch_execute("CREATE EXTENSION IF NOT EXISTS pageinspect")
        .await
        .unwrap();
    for n in needles {
        let hits: i64 = c
            .query_one(
                "SELECT count(*) FROM generate_series(0, pg_relation_size('users') / 8192 - 1) b, \
                 LATERAL heap_page_items(get_raw_page('users', b::int)) t \
                 WHERE position(convert_to($1, 'UTF8') IN t.t_data) > 0",
                &[n],
            )
            .await
            .unwrap()
            .get(0);
        if hits > 0 {
            found.push(format!("pageinspect: {hits} tuples of users hold {n}"));
        }
    }
    found
}

/// Branch `prod` into `dev` with the masking, the watcher running during
/// the whole call; then: no connection before the private phase ended,
/// masked values, no original anywhere.
async fn masked_branch_is_closed_until_masked_and_leaves_no_original(fast: bool) {
    let env = TestEnv::plan(if fast { "bpgmkf" } else { "bpgmk" });
    init(&env, "1G");
    let bpg = Bpg::of(&env);
    let prod_url = source_with_users(&bpg).await;
    let dir = tempfile::tempdir().unwrap();
    // Masking that takes seconds: the watcher has time to find an open port.
    // Its text names an original value: no log may keep it.
    let slow = write_file(
        dir.path(),
        "00-slow.sql",
        &format!(
            "SELECT pg_sleep(3) WHERE '{}' IS NOT NULL;\n",
            needle_email(150)
        ),
    );
    let mask = write_file(dir.path(), "10-users.sql", MASK_SQL);

    let watcher = Watcher::start(&env);
    let spawned = Instant::now();
    let mut args = vec!["branch", "prod", "dev", "--json"];
    if fast {
        args.push("--fast");
    }
    let slow_s = slow.to_str().unwrap();
    let mask_s = mask.to_str().unwrap();
    args.extend(["--mask", slow_s, "--mask", mask_s]);
    let r = bpg.json(&args);
    let returned = Instant::now();
    let (hits, attempts) = watcher.finish();
    assert!(attempts > 500, "the watcher tried only {attempts} times");

    // The private phase (masking included) ended before this point of the
    // call: the timings up to the real start, counted from the spawn
    // (earlier than the operation's own start, so the bound is lenient).
    let timings = r["timings"].as_array().unwrap();
    let before_start: f64 = timings
        .iter()
        .take_while(|t| t["step"] != "start")
        .map(|t| t["millis"].as_f64().unwrap())
        .sum();
    assert!(
        timings.iter().any(|t| t["step"] == "mask") && before_start > 3000.0,
        "masking (with its 3 s sleep) ran before the start: {r}"
    );
    let opened = spawned + Duration::from_secs_f64(before_start / 1000.0);
    let early: Vec<_> = hits.iter().filter(|(t, _)| *t < opened).collect();
    assert!(
        early.is_empty(),
        "{} successful connections before the masking had finished (ports {:?}); the call took {:?}",
        early.len(),
        early.iter().map(|(_, p)| *p).collect::<BTreeSet<_>>(),
        returned - spawned
    );

    // The report says what was masked.
    let m = &r["masking"];
    assert_eq!(m["files"].as_array().unwrap().len(), 2, "{r}");
    assert_eq!(m["statements"], 2, "{r}");
    assert!(
        m["tables_rewritten"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "users"),
        "{r}"
    );
    assert!(m["wal_files_removed"].as_u64().unwrap() >= 1, "{r}");

    // Masked values everywhere on the branch; the source untouched.
    let url = r["branch"]["url"].as_str().unwrap().to_string();
    let c = connect(&url).await;
    assert_eq!(
        query_i64(
            &c,
            "SELECT count(*) FROM users WHERE email LIKE '%@example.invalid' AND name LIKE 'User %' AND phone IS NULL"
        )
        .await,
        USERS
    );
    assert_eq!(
        query_i64(&c, "SELECT count(*) FROM users WHERE email LIKE '%gmail%'").await,
        0
    );
    drop(c);
    let p = connect(&prod_url).await;
    assert_eq!(
        query_i64(
            &p,
            "SELECT count(*) FROM users WHERE email LIKE '%@gmail.com'"
        )
        .await,
        USERS
    );
    drop(p);

    // No original value anywhere a superuser of the branch can read.
    let needles: Vec<String> = [1, 150, USERS]
        .iter()
        .map(|i| needle_email(*i))
        .chain([
            "Margaret Okafor 7".to_string(),
            "+44 7700 900042".to_string(),
        ])
        .collect();
    let found = superuser_finds(&url, &needles).await;
    assert!(found.is_empty(), "originals left in the branch: {found:?}");
    // And in the files themselves (read as root, links not followed).
    let dd = bpg.data_dir("dev");
    for n in &needles {
        let f = files_containing(&dd, n.as_bytes());
        assert!(f.is_empty(), "{n} is still in {f:?}");
    }
    // The search can find: the source's own data directory holds them.
    let src_dd = bpg.data_dir("prod");
    assert!(
        !files_containing(&src_dd, needle_email(150).as_bytes()).is_empty(),
        "the search finds nothing even in the source: it proves nothing"
    );
    // Nor in the branch's server log (the private session logs nothing of
    // its statements), read as the file and through `bpg logs`.
    let log = env.home.join("logs").join("dev.log");
    let logged = |n: &str| {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains(n)
            || bpg.ok(&["logs", "dev"]).contains(n)
    };
    assert!(log.is_file(), "no log file {}", log.display());
    for n in &needles {
        assert!(!logged(n), "{n} is in the branch's log {}", log.display());
    }
    // The log check can find: an error naming the value is logged.
    let c = connect(&url).await;
    let e = c
        .batch_execute(&format!("SELECT '{}'::int", needle_email(150)))
        .await;
    assert!(e.is_err());
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !logged(&needle_email(150)) {
        assert!(
            Instant::now() < deadline,
            "an error naming the value never reached {}: the log check proves nothing",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_consistent(&env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masking_ends_before_any_connection_and_leaves_no_original() {
    masked_branch_is_closed_until_masked_and_leaves_no_original(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_branch_carries_the_sources_wal_and_is_scrubbed_too() {
    masked_branch_is_closed_until_masked_and_leaves_no_original(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_masking_names_file_line_and_statement_and_leaves_nothing() {
    let env = TestEnv::plan("bpgmke");
    init(&env, "1G");
    let bpg = Bpg::of(&env);
    source_with_users(&bpg).await;
    let before = state_of(&env);
    let dir = tempfile::tempdir().unwrap();
    let good = write_file(
        dir.path(),
        "a.sql",
        "SELECT pg_sleep(2);\nUPDATE users SET name = 'x';\n",
    );
    let bad = write_file(
        dir.path(),
        "b.sql",
        "-- second file\nUPDATE users SET email = 'a' || id || '@example.invalid';\n\nUPDATE users\n   SET emial = NULL;\n",
    );
    let watcher = Watcher::start(&env);
    let o = bpg.run(&[
        "branch",
        "prod",
        "dev",
        "--mask",
        good.to_str().unwrap(),
        "--mask",
        bad.to_str().unwrap(),
    ]);
    let (hits, attempts) = watcher.finish();
    let err = check_failure(&["branch"], &o);
    assert_eq!(
        o.status.code(),
        Some(betterpg_core::ErrorKind::Mask.code() as i32 + 9),
        "the mask kind's exit status: {err}"
    );
    assert!(attempts > 200, "the watcher tried only {attempts} times");
    assert!(hits.is_empty(), "the branch was reachable: {hits:?}");
    assert!(
        err.contains(&bad.display().to_string()) && err.contains("line 5"),
        "the error names the file and line: {err}"
    );
    assert!(
        err.contains("SET emial = NULL") && err.contains("emial"),
        "the error names the statement: {err}"
    );
    // Nothing stays behind: catalog, pool, secrets and logs as before.
    assert_eq!(state_of(&env), before, "the failed branch left something");
    assert!(!env.home.join("secrets").join("dev").exists());
    assert_consistent(&env);

    // A missing file fails before anything is made.
    let missing = dir.path().join("nope.sql");
    let err = bpg.fails(&["branch", "prod", "dev", "--mask", missing.to_str().unwrap()]);
    assert!(err.contains("nope.sql"), "{err}");
    assert_eq!(state_of(&env), before);
}

/// The postmaster serving `data_dir`, by its command line.
fn postmaster_of(data_dir: &Path) -> Option<u32> {
    let want = data_dir.to_string_lossy().into_owned();
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.first().is_some_and(|a| a.ends_with("postgres")) && args.contains(&want) {
            return Some(pid);
        }
    }
    None
}

/// A backend (child of `postmaster`) whose title shows a running statement
/// on the private socket.
fn busy_private_backend(postmaster: u32) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            return false;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let ppid = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        let title = String::from_utf8_lossy(
            &std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default(),
        )
        .into_owned();
        ppid == Some(postmaster) && title.contains("[local] SELECT")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bpg_killed_mid_masking_leaves_nothing_reachable_and_gc_removes_it() {
    let env = TestEnv::plan("bpgmkk");
    init(&env, "1G");
    let bpg = Bpg::of(&env);
    source_with_users(&bpg).await;
    let dir = tempfile::tempdir().unwrap();
    let mask = write_file(
        dir.path(),
        "m.sql",
        &format!("{MASK_SQL}SELECT pg_sleep(120);\n"),
    );
    let watcher = Watcher::start(&env);
    let mut child = bpg
        .command(&["branch", "prod", "dev", "--mask", mask.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the masking's sleep runs on the private socket.
    let deadline = Instant::now() + Duration::from_secs(90);
    let dd = loop {
        assert!(
            Instant::now() < deadline,
            "the masking never started on a private backend"
        );
        assert!(child.try_wait().unwrap().is_none(), "bpg ended early");
        if let Some(s) = branch_data_dir(&env, "dev") {
            if let Some(pm) = postmaster_of(&s) {
                if busy_private_backend(pm) {
                    break s;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // The private server's socket directory (line 5 of its pid file: read
    // here as root, the test's own look).
    let pid_file = std::fs::read_to_string(dd.join("postmaster.pid")).unwrap();
    let sock_dir = PathBuf::from(pid_file.lines().nth(4).expect("socket line").trim());
    assert!(
        sock_dir.is_dir() && sock_dir.is_absolute(),
        "the private start has a socket directory: {pid_file}"
    );
    let pm = postmaster_of(&dd).expect("the private server runs");
    // Only betterpg reaches the private socket: the directory is closed
    // to everyone but its owner, so another OS user cannot connect (its
    // pg_hba.conf trusts every local connection); root can.
    let port = pid_file
        .lines()
        .nth(3)
        .expect("port line")
        .trim()
        .to_string();
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&sock_dir).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the private socket directory is open to others: {mode:o}"
        );
    }
    let psql = |as_user: Option<&str>| {
        let psql = format!("{PG15_BIN}/psql");
        let args = [
            "-X",
            "-h",
            sock_dir.to_str().unwrap(),
            "-p",
            &port,
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-Atc",
            "SELECT 1",
        ];
        let mut c = match as_user {
            Some(u) => {
                let mut c = std::process::Command::new("runuser");
                c.args(["-u", u, "--", &psql]).args(args);
                c
            }
            None => {
                let mut c = std::process::Command::new(&psql);
                c.args(args);
                c
            }
        };
        c.output().unwrap()
    };
    let root = psql(None);
    assert!(
        root.status.success(),
        "root reaches the private socket (the probe works): {}",
        String::from_utf8_lossy(&root.stderr)
    );
    let other = psql(Some("nobody"));
    assert!(
        !other.status.success()
            && String::from_utf8_lossy(&other.stderr).contains("Permission denied"),
        "another OS user reached the private server: {} {}",
        String::from_utf8_lossy(&other.stdout),
        String::from_utf8_lossy(&other.stderr)
    );
    // SIGKILL: no handler, no cleanup of its own.
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let (hits, attempts) = watcher.finish();
    assert!(attempts > 200, "the watcher tried only {attempts} times");
    assert!(
        hits.is_empty(),
        "the half-masked branch was reachable: {hits:?}"
    );
    // What the killed process left: a half-made entry, its clone, the
    // private server, its socket directory.
    let status = bpg.status_json(&["status"]);
    assert!(
        status.to_string().contains("\"dev\""),
        "the half-made entry is listed: {status}"
    );
    assert!(postmaster_of(&dd) == Some(pm) && sock_dir.is_dir());

    // gc removes all of it: the private server, its socket directory, the
    // dataset, the catalog entry.
    let gc = bpg.json(&["gc", "--json"]);
    let items = gc["items"].as_array().unwrap();
    let found = |what: &str| {
        items
            .iter()
            .any(|i| i["what"] == what && i["name"].as_str().unwrap_or("").contains("dev"))
    };
    for what in ["server", "dataset", "catalog-entry"] {
        assert!(found(what), "gc did not remove dev's {what}: {gc}");
    }
    assert!(
        items.iter().any(|i| i["what"] == "socket-dir"
            && i["name"].as_str() == Some(&*sock_dir.to_string_lossy())),
        "gc did not remove the private socket directory {}: {gc}",
        sock_dir.display()
    );
    assert!(
        postmaster_of(&dd).is_none() && !pid_alive(pm),
        "the private server still runs"
    );
    assert!(
        !sock_dir.exists(),
        "the private socket directory {} is left",
        sock_dir.display()
    );
    let tree = zfs_tree(&env.pool);
    assert!(
        !tree.iter().any(|n| n.contains("dev")),
        "dev is still in the pool: {tree:?}"
    );
    let status = bpg.status_json(&["status"]);
    assert!(
        !status.to_string().contains("\"dev\""),
        "dev is still in the catalog: {status}"
    );
    // A second gc finds nothing left.
    let again = bpg.json(&["gc", "--json"]);
    assert_eq!(again["items"], serde_json::json!([]), "{again}");
    assert_consistent(&env);
}

/// The process `pid` exists (and is no zombie).
fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next())
                != Some("Z")
        })
        .unwrap_or(false)
}

/// A source with `pg_stat_statements` loaded keeps statement texts that
/// name original values (a utility statement's text is kept verbatim, its
/// constants not replaced): a masked branch of it has none of them, in
/// the view or in any file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_texts_of_the_source_are_gone_from_a_masked_branch() {
    let env = TestEnv::plan("bpgmkt");
    init(&env, "1G");
    let bpg = Bpg::of(&env);
    let prod_url = source_with_users(&bpg).await;
    {
        let c = connect(&prod_url).await;
        c.batch_execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
            .await
            .unwrap();
    }
    bpg.ok(&["stop", "prod"]);
    bpg.ok(&["start", "prod"]);
    let needle = needle_email(150);
    let texts = |n: &str| {
        format!("SELECT count(*) FROM pg_stat_statements WHERE position('{n}' IN query) > 0")
    };
    {
        let c = connect(&prod_url).await;
        c.batch_execute("CREATE EXTENSION pg_stat_statements")
            .await
            .unwrap();
        c.batch_execute(&format!(
            "DO $$BEGIN PERFORM 1 FROM users WHERE email = '{needle}'; END$$"
        ))
        .await
        .unwrap();
        // The source keeps it (the check can find it); a restart saves
        // the statistics into pg_stat too.
        assert!(query_i64(&c, &texts(&needle)).await >= 1);
    }
    bpg.ok(&["stop", "prod"]);
    bpg.ok(&["start", "prod"]);
    {
        let c = connect(&prod_url).await;
        assert!(
            query_i64(&c, &texts(&needle)).await >= 1,
            "the source's texts did not survive its restart"
        );
        // And once more while running, after the restart.
        c.batch_execute(&format!(
            "DO $$BEGIN PERFORM 2 FROM users WHERE email = '{needle}'; END$$"
        ))
        .await
        .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let mask = write_file(dir.path(), "users.sql", MASK_SQL);
    let r = bpg.json(&["branch", "prod", "dev", "--mask", mask.to_str().unwrap()]);
    let url = r["branch"]["url"].as_str().unwrap().to_string();
    let c = connect(&url).await;
    let loaded: String = c
        .query_one("SHOW shared_preload_libraries", &[])
        .await
        .unwrap()
        .get(0);
    // The clone keeps the source's settings: the module is loaded there
    // too, and its view shows none of the source's texts.
    assert!(
        loaded.contains("pg_stat_statements"),
        "the branch does not load pg_stat_statements: {loaded:?}"
    );
    assert_eq!(
        query_i64(&c, &texts(&needle)).await,
        0,
        "the branch's pg_stat_statements holds the source's texts"
    );
    drop(c);
    let found = superuser_finds(&url, std::slice::from_ref(&needle)).await;
    assert!(found.is_empty(), "originals left in the branch: {found:?}");
    let dd = bpg.data_dir("dev");
    let f = files_containing(&dd, needle.as_bytes());
    assert!(f.is_empty(), "{needle} is still in {f:?}");
    // The search can find: the source's statement files hold it.
    let src_dd = bpg.data_dir("prod");
    let in_source = files_containing(&src_dd, needle.as_bytes());
    assert!(
        in_source
            .iter()
            .any(|p| p.to_string_lossy().contains("pg_stat")),
        "the source's statement files do not hold it: {in_source:?}"
    );
    assert_consistent(&env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_only_keeps_every_object_and_no_row() {
    let env = TestEnv::plan("bpgmks");
    init(&env, "1G");
    let bpg = Bpg::of(&env);
    let prod_url = source_with_users(&bpg).await;
    {
        let c = connect(&prod_url).await;
        c.batch_execute(
            "CREATE ROLE app LOGIN; GRANT SELECT ON users TO app; \
             CREATE TABLE orders (id int PRIMARY KEY, user_id bigint REFERENCES users); \
             INSERT INTO orders SELECT i, i FROM generate_series(1, 50) i; \
             CREATE MATERIALIZED VIEW big_spenders AS SELECT user_id FROM orders; \
             CREATE VIEW v AS SELECT email FROM users; \
             ALTER DATABASE postgres SET work_mem = '7MB'",
        )
        .await
        .unwrap();
        c.batch_execute("CREATE DATABASE other").await.unwrap();
    }
    {
        let other = prod_url.rsplit_once('/').unwrap().0.to_string() + "/other";
        let c = connect(&other).await;
        c.batch_execute("CREATE TABLE t AS SELECT 'margaret.okafor9@gmail.com' AS e")
            .await
            .unwrap();
    }
    let r = bpg.json(&["branch", "prod", "dev", "--schema-only", "--json"]);
    assert_eq!(r["masking"]["schema_only"], true, "{r}");
    let url = r["branch"]["url"].as_str().unwrap().to_string();
    let c = connect(&url).await;
    for (sql, want) in [
        ("SELECT count(*) FROM users", 0),
        ("SELECT count(*) FROM orders", 0),
        (
            "SELECT count(*) FROM pg_matviews WHERE matviewname = 'big_spenders' AND NOT ispopulated",
            1,
        ),
        ("SELECT count(*) FROM pg_views WHERE viewname = 'v'", 1),
        ("SELECT count(*) FROM pg_roles WHERE rolname = 'app'", 1),
        (
            "SELECT count(*) FROM information_schema.role_table_grants WHERE grantee = 'app' AND table_name = 'users'",
            1,
        ),
        (
            "SELECT count(*) FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase WHERE 'work_mem=7MB' = ANY(s.setconfig)",
            1,
        ),
        ("SELECT count(*) FROM pg_indexes WHERE tablename = 'users'", 2),
    ] {
        assert_eq!(query_i64(&c, sql).await, want, "{sql}");
    }
    drop(c);
    let other = url.rsplit_once('/').unwrap().0.to_string() + "/other";
    let c = connect(&other).await;
    assert_eq!(query_i64(&c, "SELECT count(*) FROM t").await, 0);
    drop(c);
    // The rows are gone from the files too.
    let needles = vec![needle_email(1), needle_email(9)];
    let found = superuser_finds(&url, &needles).await;
    assert!(
        found.is_empty(),
        "rows left in a schema-only branch: {found:?}"
    );
    assert_consistent(&env);
}

/// Rows of `users` on `url` that still hold an original e-mail address.
async fn originals(url: &str) -> i64 {
    let c = connect(url).await;
    query_i64(
        &c,
        "SELECT count(*) FROM users WHERE email LIKE '%@gmail.com'",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_policy_masks_its_branches_their_branches_and_resets() {
    let env = TestEnv::plan("bpgmkp");
    init(&env, "1G");
    let bpg = Bpg::of(&env);
    let prod_url = source_with_users(&bpg).await;
    let dir = tempfile::tempdir().unwrap();
    let mask = write_file(dir.path(), "users.sql", MASK_SQL);
    bpg.ok(&["config", "prod", "--mask", mask.to_str().unwrap()]);

    // A branch of the source is masked without being asked.
    let dev = bpg.json(&["branch", "prod", "dev", "--json"]);
    assert_eq!(dev["masking"]["files"][0], mask.to_str().unwrap(), "{dev}");
    let dev_url = dev["branch"]["url"].as_str().unwrap().to_string();
    assert_eq!(originals(&dev_url).await, 0);
    // A branch of that branch is masked too (a row written on dev since).
    {
        let c = connect(&dev_url).await;
        c.batch_execute(
            "INSERT INTO users VALUES (100000, 'New Person', 'new.person@gmail.com', NULL)",
        )
        .await
        .unwrap();
    }
    let dev2 = bpg.json(&["branch", "dev", "dev2", "--json"]);
    assert!(dev2["masking"].is_object(), "{dev2}");
    assert_eq!(originals(dev2["branch"]["url"].as_str().unwrap()).await, 0);
    // A reset of a masked branch masks again.
    bpg.ok(&["destroy", "dev2"]);
    let r = bpg.json(&["reset", "dev", "--json"]);
    assert!(r["masking"].is_object(), "{r}");
    assert_eq!(originals(&dev_url).await, 0);
    assert_eq!(originals(&prod_url).await, USERS, "the source is untouched");

    // --unmasked branches it as it is, unless the policy forbids it.
    let raw = bpg.json(&["branch", "prod", "raw", "--unmasked", "--json"]);
    assert!(raw["masking"].is_null(), "{raw}");
    assert_eq!(
        originals(raw["branch"]["url"].as_str().unwrap()).await,
        USERS
    );
    bpg.ok(&["config", "prod", "--forbid-unmasked"]);
    let before = state_of(&env);
    let o = bpg.run(&["branch", "prod", "raw2", "--unmasked"]);
    let err = check_failure(&["branch"], &o);
    assert_eq!(
        o.status.code(),
        Some(betterpg_core::ErrorKind::Mask.code() as i32 + 9),
        "{err}"
    );
    assert!(err.contains("forbid"), "{err}");
    assert_eq!(state_of(&env), before, "a refused branch changed something");

    // A schema-only branch stays schema-only through a reset.
    let so = bpg.json(&["branch", "prod", "so", "--schema-only", "--json"]);
    let so_url = so["branch"]["url"].as_str().unwrap().to_string();
    {
        let c = connect(&so_url).await;
        c.batch_execute("INSERT INTO users VALUES (1, 'a', 'a@example.invalid', NULL)")
            .await
            .unwrap();
    }
    bpg.ok(&["reset", "so"]);
    let c = connect(&so_url).await;
    assert_eq!(query_i64(&c, "SELECT count(*) FROM users").await, 0);
    drop(c);
    assert_consistent(&env);
}
