//! `bpg follow` when things go wrong (issue 13): a primary that cannot be
//! reached, that refuses the password or has no `pg_hba.conf` line for
//! replication, a role without `REPLICATION`, binaries of another major
//! version or none of the primary's, a disk that fills during the base
//! backup, a follow killed with SIGKILL in the middle of its base backup
//! (then `bpg gc` removes the half-made replica and the slot it created on
//! the primary). Each is a typed error (exit status and message checked)
//! that leaves nothing: no dataset, no catalog entry, no passfile or
//! secret, no process, no slot on the primary. And a primary that goes
//! away after the follow: status says `disconnected`, `--no-wait` branches
//! still work, the default waits and fails saying so; back, it streams.
//!
//! The primary is a real PostgreSQL in a network namespace of its own,
//! reached over a veth link ([`RemotePrimary`]).

use std::path::Path;
use std::time::Duration;

use betterpg_testkit::*;
use serde_json::Value;

fn env() -> TestEnv {
    default_port_base(47800);
    TestEnv::initialized("bpgff")
}

/// Exit status of a betterpg error of kind `code` (docs/cli-json.md).
fn exit_of(code: i32) -> i32 {
    code + 9
}

/// Run `bpg ARGS` (with `envs`) expecting a betterpg failure with exit
/// status `exit`; returns stderr.
fn fails_with(bpg: &Bpg, args: &[&str], envs: &[(&str, &str)], exit: i32) -> String {
    let mut c = bpg.command(args);
    for (k, v) in envs {
        c.env(k, v);
    }
    let o = c.output().expect("run bpg");
    let err = check_failure(args, &o);
    assert_eq!(o.status.code(), Some(exit), "bpg {args:?}: {err}");
    err
}

/// Command lines of every process on this machine.
fn processes() -> Vec<(i32, String)> {
    let mut out = Vec::new();
    for d in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = d.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(c) = std::fs::read(d.path().join("cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            if !c.is_empty() {
                out.push((pid, c));
            }
        }
    }
    out
}

/// Processes working on the replica `name` of `env` (its server, a
/// `pg_basebackup` into it, a `bpg follow` of it).
fn processes_of(env: &TestEnv, name: &str) -> Vec<String> {
    let dir = env.home.join("replicas").join(name);
    let dataset_dir = format!("{}/betterpg/{name}/", env.pool);
    processes()
        .into_iter()
        .map(|(_, c)| c)
        .filter(|c| {
            c.contains(&*dir.to_string_lossy())
                || c.contains(&dataset_dir)
                || (c.contains("pg_basebackup") && c.contains(&format!("bpg_{name}")))
                || (c.contains(&*env.home.to_string_lossy())
                    && c.contains("follow")
                    && c.contains(name))
        })
        .collect()
}

/// Nothing of the replica `name` anywhere: no catalog entry, no dataset,
/// no file in the home (replica directory, passfile, secret, log), no
/// process, and no slot on the primary; the pool, catalog and ports agree.
fn assert_nothing_left(env: &TestEnv, primary: &RemotePrimary, name: &str) {
    let bpg = Bpg::of(env);
    let entries = bpg.status_json(&["status"]);
    assert!(
        !entries
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == name),
        "{name} is in the catalog: {entries}"
    );
    let tree = zfs_tree(&env.pool);
    assert!(
        !tree
            .iter()
            .any(|d| d.ends_with(&format!("/{name}")) || d.contains(&format!("/{name}@"))),
        "a dataset of {name} is left: {tree:?}"
    );
    for f in [
        env.home.join("replicas").join(name),
        env.home.join("secrets").join(name),
        env.home.join("logs").join(format!("{name}.log")),
    ] {
        assert!(
            std::fs::symlink_metadata(&f).is_err(),
            "{} is left",
            f.display()
        );
    }
    let procs = processes_of(env, name);
    assert!(procs.is_empty(), "processes of {name} left: {procs:?}");
    assert_eq!(
        primary.psql("SELECT count(*) FROM pg_replication_slots"),
        "0",
        "a slot is left on the primary: {}",
        primary.psql("SELECT string_agg(slot_name, ',') FROM pg_replication_slots")
    );
    assert_eq!(
        primary.psql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender'"),
        "0",
        "a replication connection of ours is left on the primary"
    );
    assert_consistent(env);
}

/// A table of about `mb` MiB of barely compressible data on the primary,
/// so a base backup takes a while and needs room.
fn fill(primary: &RemotePrimary, mb: u32) {
    primary.psql(&format!(
        "CREATE TABLE big AS SELECT g, (SELECT string_agg(md5(random()::text || g || x), '') \
         FROM generate_series(1, 30) x) AS pad FROM generate_series(1, {}) g; CHECKPOINT",
        mb * 1024
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_typed_quote_the_server_and_leave_nothing() {
    let env = env();
    let bpg = Bpg::of(&env);
    let primary = RemotePrimary::start("bpgff", 15);
    let postgres = 8; // error kind postgres
    let pw = primary.password();

    // Unreachable: nothing listens on that port of the primary's host.
    let url = format!(
        "postgresql://{REPL_USER}:{pw}@{}:{}/postgres",
        primary.addr,
        primary.port + 7
    );
    let err = fails_with(
        &bpg,
        &["follow", "rep", "--from", &url, "--slot", "s1"],
        &[],
        exit_of(postgres),
    );
    assert!(err.contains("Connection refused"), "{err}");
    assert!(err.contains("check that the primary runs"), "{err}");
    assert!(!err.contains(pw), "the password is printed: {err}");
    assert_nothing_left(&env, &primary, "rep");

    // A wrong password: the server's words, and what to check.
    let url = format!(
        "postgresql://{REPL_USER}:wrong@{}:{}/postgres",
        primary.addr, primary.port
    );
    let err = fails_with(
        &bpg,
        &["follow", "rep", "--from", &url, "--slot", "s1"],
        &[],
        exit_of(postgres),
    );
    assert!(
        err.contains(&format!(
            "password authentication failed for user \"{REPL_USER}\""
        )),
        "{err}"
    );
    assert!(err.contains("check the password"), "{err}");
    assert!(!err.contains("wrong"), "the password is printed: {err}");
    assert_nothing_left(&env, &primary, "rep");

    // No pg_hba.conf line for replication.
    let err = fails_with(
        &bpg,
        &[
            "follow",
            "rep",
            "--from",
            &primary.url_for(NO_HBA_USER),
            "--slot",
            "s1",
        ],
        &[],
        exit_of(postgres),
    );
    assert!(err.contains("no pg_hba.conf entry"), "{err}");
    assert!(err.contains("replication"), "{err}");
    assert!(
        err.contains("pg_hba.conf (database `replication`)"),
        "{err}"
    );
    assert_nothing_left(&env, &primary, "rep");

    // A role without REPLICATION.
    let err = fails_with(
        &bpg,
        &[
            "follow",
            "rep",
            "--from",
            &primary.url_for(PLAIN_USER),
            "--slot",
            "s1",
        ],
        &[],
        exit_of(postgres),
    );
    assert!(
        err.contains("permission denied to start WAL sender")
            || err.contains("must be superuser or replication role"),
        "{err}"
    );
    assert!(err.contains("ALTER ROLE ... REPLICATION"), "{err}");
    assert_nothing_left(&env, &primary, "rep");

    // --pg-bin of another major version than the primary's.
    let other = pg_bin_dir(16);
    let err = fails_with(
        &bpg,
        &[
            "follow",
            "rep",
            "--from",
            &primary.url_for(REPL_USER),
            "--slot",
            "s1",
            "--pg-bin",
            &other.to_string_lossy(),
        ],
        &[],
        exit_of(14),
    );
    assert!(err.contains("runs PostgreSQL 15"), "{err}");
    assert!(err.contains("of version 15"), "{err}");
    assert_nothing_left(&env, &primary, "rep");

    // The right role works afterwards (nothing of the failures is in the way).
    bpg.json(&[
        "follow",
        "rep",
        "--from",
        &primary.url_for(REPL_USER),
        "--slot",
        "s1",
    ]);
    assert_eq!(
        primary.psql("SELECT string_agg(slot_name, ',') FROM pg_replication_slots"),
        "s1"
    );
    bpg.ok(&["destroy", "rep"]);
    assert_nothing_left(&env, &primary, "rep");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_of_a_major_with_no_binaries_here_names_the_version_to_install() {
    let env = env();
    let bpg = Bpg::of(&env);
    let primary = RemotePrimary::start("bpgff", 16);
    // No version cache: this machine has no PostgreSQL 16 for bpg.
    let empty = tempfile::tempdir().unwrap();
    let empty = empty.path().to_string_lossy().into_owned();
    let err = fails_with(
        &bpg,
        &[
            "follow",
            "rep",
            "--from",
            &primary.url_for(REPL_USER),
            "--slot",
            "s1",
        ],
        &[("BPG_PG_CACHE", &empty)],
        exit_of(14),
    );
    assert!(err.contains("runs PostgreSQL 16"), "{err}");
    assert!(err.contains("install them"), "{err}");
    assert!(err.contains("postgresql-16"), "{err}");
    assert_nothing_left(&env, &primary, "rep");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_full_during_the_base_backup_is_no_space_and_leaves_nothing() {
    let env = env();
    let bpg = Bpg::of(&env);
    let primary = RemotePrimary::start("bpgff", 15);
    fill(&primary, 120);
    // The home's root dataset may hold 40 MiB more than now: the base
    // backup (over 120 MiB) runs into the quota (EDQUOT) midway.
    let root = format!("{}/betterpg", env.pool);
    let used: u64 = std::process::Command::new("zfs")
        .args(["get", "-Hp", "-o", "value", "used", &root])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().parse().unwrap())
        .unwrap();
    let quota = used + (40 << 20);
    let set = std::process::Command::new("zfs")
        .args(["set", &format!("quota={quota}"), &root])
        .status()
        .unwrap();
    assert!(set.success(), "zfs set quota on {root}");
    let err = fails_with(
        &bpg,
        &[
            "follow",
            "rep",
            "--from",
            &primary.url_for(REPL_USER),
            "--slot",
            "s1",
        ],
        &[],
        exit_of(18),
    );
    assert!(err.contains("ran out of space"), "{err}");
    assert!(err.contains("make room in the pool"), "{err}");
    assert_nothing_left(&env, &primary, "rep");
    let unset = std::process::Command::new("zfs")
        .args(["set", "quota=none", &root])
        .status()
        .unwrap();
    assert!(unset.success());
}

/// The pid of a `pg_basebackup` whose parent is `parent`, once one runs
/// and has reported progress.
async fn basebackup_of(parent: u32) -> Option<i32> {
    for _ in 0..600 {
        for (pid, cmd) in processes() {
            if !cmd.contains("pg_basebackup") {
                continue;
            }
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(") ")
                .and_then(|(_, r)| r.split(' ').nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid == Some(parent) {
                return Some(pid);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_killed_during_its_base_backup_is_collected_by_gc_with_its_slot() {
    let env = env();
    let bpg = Bpg::of(&env);
    let primary = RemotePrimary::start("bpgff", 15);
    fill(&primary, 120);
    let mut child = bpg
        .command(&[
            "follow",
            "rep",
            "--from",
            &primary.url_for(REPL_USER),
            "--slot",
            "killed_slot",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let backup = basebackup_of(child.id()).await;
    assert!(backup.is_some(), "no pg_basebackup of the follow started");
    // Well into the backup: some data is in the replica's dataset.
    let data = env.home.join("replicas/rep");
    let grew = eventually(60, || {
        processes_of(&env, "rep")
            .iter()
            .any(|c| c.contains("pg_basebackup"))
            && std::fs::read_dir(&data).is_ok()
            && std::process::Command::new("zfs")
                .args([
                    "get",
                    "-Hp",
                    "-o",
                    "value",
                    "used",
                    &format!("{}/betterpg/rep", env.pool),
                ])
                .output()
                .ok()
                .and_then(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
                .is_some_and(|u| u > 8 << 20)
    })
    .await;
    assert!(grew, "the base backup never got going");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
    // The slot the follow created is on the primary, and recorded.
    assert_eq!(
        primary.psql("SELECT string_agg(slot_name, ',') FROM pg_replication_slots"),
        "killed_slot"
    );
    // Its pg_basebackup died with it (parent-death signal); the WAL
    // streamer it forked may still run: gc stops it.
    let main_gone = eventually(10, || {
        std::fs::read_to_string(format!("/proc/{}/stat", backup.unwrap()))
            .map(|s| s.contains(") Z"))
            .unwrap_or(true)
    })
    .await;
    assert!(main_gone, "pg_basebackup outlived the killed follow");
    let st = bpg.status_json(&["status"]);
    assert_eq!(st[0]["name"], "rep", "{st}");
    assert_ne!(st[0]["state"], "ready", "{st}");

    // A dry run lists the slot and removes nothing.
    let dry = bpg.json(&["gc", "--dry-run"]);
    let has_slot = |r: &Value| {
        r["items"].as_array().unwrap().iter().any(|i| {
            i["what"] == "slot"
                && i["name"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("killed_slot on {}:", primary.addr))
        })
    };
    assert!(has_slot(&dry), "{dry}");
    assert_eq!(
        primary.psql("SELECT count(*) FROM pg_replication_slots"),
        "1"
    );
    let r = bpg.json(&["gc"]);
    assert!(has_slot(&r), "{r}");
    for what in ["dataset", "catalog-entry", "file"] {
        assert!(
            r["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["what"] == what),
            "gc removed no {what}: {r}"
        );
    }
    assert_eq!(r["kept"], serde_json::json!([]), "{r}");
    assert_nothing_left(&env, &primary, "rep");
}

/// `bpg status rep`'s replication state, once it is `want` (else the
/// last one seen).
async fn state_becomes(bpg: &Bpg<'_>, want: &str, secs: u64) -> Value {
    let mut st = Value::Null;
    eventually(secs, || {
        st = bpg.status_json(&["status", "rep"])[0]["replication"].clone();
        st["state"] == want
    })
    .await;
    st
}

/// The default branch of a replica whose primary is gone: a typed error
/// saying so and pointing at `--no-wait`, and nothing made.
fn default_branch_fails(env: &TestEnv, bpg: &Bpg, name: &str) -> String {
    let args = ["branch", "rep", name, "--wait-timeout", "3"];
    let o = bpg.run(&args);
    let err = check_failure(&args, &o);
    assert!(
        err.contains("cannot read the primary's WAL position") && err.contains("--no-wait"),
        "{err}"
    );
    assert!(err.contains("unreachable"), "{err}");
    let tree = zfs_tree(&env.pool);
    assert!(
        !tree.iter().any(|d| d.contains(name)),
        "{name} left a dataset: {tree:?}"
    );
    assert!(
        !bpg.status_json(&["status"])
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == name),
        "{name} is in the catalog"
    );
    assert!(!Path::new(&env.home.join("secrets").join(name)).exists());
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_that_goes_away_is_disconnected_branches_need_no_wait_and_it_comes_back() {
    let env = env();
    let bpg = Bpg::of(&env);
    let primary = RemotePrimary::start("bpgff", 15);
    primary.psql("CREATE TABLE t (id int); INSERT INTO t VALUES (1)");
    bpg.json(&["follow", "rep", "--from", &primary.url_for(REPL_USER)]);
    let st = state_becomes(&bpg, "streaming", 30).await;
    assert_eq!(st["state"], "streaming", "{st}");

    // Stopped: the replica cannot reach it.
    primary.stop();
    let st = state_becomes(&bpg, "disconnected", 30).await;
    assert_eq!(st["state"], "disconnected", "{st}");
    assert!(st["lag_bytes"].is_null(), "{st}");
    let err = default_branch_fails(&env, &bpg, "dev1");
    assert!(err.contains("Connection refused"), "{err}");
    let r = bpg.json(&["branch", "rep", "dev1", "--no-wait"]);
    assert!(r["replica_point"]["primary_lsn"].is_null(), "{r}");
    assert!(r["replica_point"]["replay_lsn"].is_string(), "{r}");
    let url = r["branch"]["url"].as_str().unwrap().to_string();
    assert_eq!(query_text(&url, "SELECT count(*)::text FROM t").await, "1");
    primary.restart();
    let st = state_becomes(&bpg, "streaming", 60).await;
    assert_eq!(st["state"], "streaming", "{st}");

    // Cut off (the link down, the primary running): the same.
    primary.psql("INSERT INTO t VALUES (2)");
    let st = state_becomes(&bpg, "streaming", 30).await;
    assert_eq!(st["lag_bytes"], 0, "{st}");
    primary.disconnect();
    let st = state_becomes(&bpg, "disconnected", 30).await;
    assert_eq!(st["state"], "disconnected", "{st}");
    default_branch_fails(&env, &bpg, "dev2");
    let r = bpg.json(&["branch", "rep", "dev2", "--no-wait"]);
    let url = r["branch"]["url"].as_str().unwrap().to_string();
    assert_eq!(query_text(&url, "SELECT count(*)::text FROM t").await, "2");
    primary.reconnect();
    primary.psql("INSERT INTO t VALUES (3)");
    let st = state_becomes(&bpg, "streaming", 90).await;
    assert_eq!(st["state"], "streaming", "{st}");
    // And branches wait again, with every acknowledged row.
    let r = bpg.json(&["branch", "rep", "dev3"]);
    assert!(r["replica_point"]["primary_lsn"].is_string(), "{r}");
    let url = r["branch"]["url"].as_str().unwrap().to_string();
    assert_eq!(query_text(&url, "SELECT count(*)::text FROM t").await, "3");
    for b in ["dev1", "dev2", "dev3", "rep"] {
        bpg.ok(&["destroy", b]);
    }
    assert_consistent(&env);
}
