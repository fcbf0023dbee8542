//! Named snapshots end to end through `bpg`: real ZFS, real PostgreSQL 15.
//!
//! A snapshot taken under a writer holds exactly what was committed before
//! the call returned and nothing done after it; it branches after the
//! source moved on and after it stopped; `reset --to` goes back to it;
//! `destroy` of the source is refused while it has named snapshots and
//! `--force` takes them; `snapshot destroy` is refused while branches
//! depend on it and `--force` destroys them; bad input changes nothing; a
//! snapshot call killed half-way is cleaned by `gc`.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use betterpg_testkit::*;

fn setup(prefix: &str) -> TestEnv {
    default_port_base(57000);
    TestEnv::initialized(prefix)
}

/// Whether table `t` exists at `url`.
async fn has_table(url: &str, t: &str) -> bool {
    let c = connect(url).await;
    let r: Option<String> = c
        .query_one("SELECT to_regclass($1)::text", &[&t])
        .await
        .unwrap()
        .get(0);
    r.is_some()
}

fn url_of(bpg: &Bpg, name: &str) -> String {
    bpg.ok(&["url", name]).trim().to_string()
}

/// The pool's datasets and snapshots whose names contain `pat`.
fn in_pool(env: &TestEnv, pat: &str) -> Vec<String> {
    zfs_tree(&env.pool)
        .into_iter()
        .filter(|n| n.contains(pat))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_under_a_writer_branches_later_exactly_as_it_was() {
    let env = setup("bpgls");
    let bpg = Bpg::of(&env);
    bpg.json(&["create", "prod"]);
    let prod = url_of(&bpg, "prod");

    // Snapshot under a writer.
    let w = Writer::start(&prod).await;
    let acked_before = w.acked();
    let s = bpg.json(&["snapshot", "prod", "--name", "before"]);
    let acked_after = w.acked();
    let snap = &s["snapshot"];
    assert_eq!(snap["full_name"], "prod@before", "{s}");
    assert_eq!(snap["mode"], "application-consistent");
    assert_eq!(snap["auto"], false);
    assert_eq!(snap["state"], "ready");
    assert_eq!(snap["source_was_running"], true);
    assert!(snap["stop_lsn"].is_string(), "{s}");
    let wal_ds = snap["wal_dataset"].as_str().expect("kept WAL").to_string();
    assert!(snap["wal_bytes"].as_u64().unwrap() > 0, "{s}");
    // The source moves on: more rows, a table made after the call.
    connect(&prod)
        .await
        .batch_execute("CREATE TABLE after_snap AS SELECT 1 AS x")
        .await
        .unwrap();
    let last = w.stop().await;
    assert!(last > acked_after, "the writer went on after the snapshot");

    // Branched after the source moved on: everything acknowledged before
    // the call, a gap-free prefix, nothing done after the call returned
    // (one insert may have been in flight when it returned).
    let b = bpg.json(&["branch", "prod@before", "dev1"]);
    assert_eq!(b["branch"]["parent"], "prod");
    assert_eq!(b["branch"]["mode"], "application-consistent");
    assert!(b["wal_bytes_copied"].as_u64().unwrap() > 0, "{b}");
    let dev1 = b["branch"]["url"].as_str().unwrap().to_string();
    let max = assert_prefix(&dev1, acked_before).await;
    assert!(
        max <= acked_after + 1,
        "the branch holds id {max}, acknowledged after the snapshot call returned ({acked_after})"
    );
    assert!(!has_table(&dev1, "after_snap").await);
    let log = bpg.ok(&["logs", "dev1"]);
    assert!(log.contains("consistent recovery state reached"), "{log}");

    // Listed with its dependent branch.
    let l = bpg.json(&["snapshots", "prod"]);
    let rows = l["snapshots"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{l}");
    assert_eq!(rows[0]["branch_count"], 1);
    assert_eq!(rows[0]["branches"][0], "dev1");
    assert!(rows[0]["used_bytes"].as_u64().unwrap() > 0, "{l}");
    let text = bpg.ok(&["snapshots"]);
    assert!(
        text.contains("prod@before") && text.contains("application-consistent"),
        "{text}"
    );

    // Branched after the source stopped: the same rows.
    bpg.ok(&["stop", "prod"]);
    let dev2 = bpg.json(&["branch", "prod@before", "dev2"])["branch"]["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(count_rows(&dev2, "seq").await, max);
    assert!(!has_table(&dev2, "after_snap").await);

    // A stopped source is snapshotted as it is (crash-consistent, clean).
    let st = bpg.json(&["snapshot", "prod", "--name", "stopped"]);
    assert_eq!(st["snapshot"]["mode"], "crash-consistent");
    assert_eq!(st["snapshot"]["source_was_running"], false);
    assert!(st["snapshot"]["wal_dataset"].is_null());
    bpg.ok(&["start", "prod"]);

    // reset --to: to the later snapshot, and back; same URL.
    let r = bpg.json(&["reset", "dev1", "--to", "prod@stopped"]);
    assert_eq!(r["branch"]["url"].as_str().unwrap(), dev1);
    assert!(has_table(&dev1, "after_snap").await);
    assert_eq!(count_rows(&dev1, "seq").await, last);
    bpg.json(&["reset", "dev1", "--to", "prod@before"]);
    assert!(!has_table(&dev1, "after_snap").await);
    assert_eq!(count_rows(&dev1, "seq").await, max);
    // A plain reset goes to the parent's current state and leaves the
    // named snapshot alone.
    bpg.json(&["reset", "dev2"]);
    assert!(has_table(&dev2, "after_snap").await);
    assert_eq!(in_pool(&env, "@bpgsnap-before-").len(), 1);

    // A default name: the UTC time, sortable; retention may remove it.
    let auto = bpg.json(&["snapshot", "prod", "--fast"]);
    let name = auto["snapshot"]["name"].as_str().unwrap().to_string();
    assert_eq!(auto["snapshot"]["auto"], true);
    assert_eq!(auto["snapshot"]["mode"], "crash-consistent");
    assert!(
        name.len() == 15
            && name.as_bytes()[8] == b'-'
            && name.chars().filter(|c| c.is_ascii_digit()).count() == 14,
        "{name}"
    );
    // Of a branch, too.
    bpg.json(&["snapshot", "dev2", "--name", "s"]);
    let dev3 = bpg.json(&["branch", "dev2@s", "dev3"]);
    assert_eq!(dev3["branch"]["parent"], "dev2");
    assert!(has_table(dev3["branch"]["url"].as_str().unwrap(), "after_snap").await);
    assert_consistent(&env);

    // destroy of the source: refused while it has named snapshots (and
    // branches), naming them, changing nothing.
    let before = state_of(&env);
    let o = bpg.run(&["destroy", "prod"]);
    let err = check_failure(&["destroy", "prod"], &o);
    assert!(
        err.contains("prod@before") && err.contains("prod@stopped"),
        "{err}"
    );
    assert!(err.contains("--force"), "{err}");
    assert_eq!(state_of(&env), before);
    // A branch of a snapshot goes alone: the snapshot stays.
    bpg.ok(&["destroy", "dev3"]);
    assert_eq!(in_pool(&env, "@bpgsnap-s-").len(), 1);
    bpg.ok(&["snapshot", "destroy", "dev2@s"]);
    assert!(in_pool(&env, "@bpgsnap-s-").is_empty());

    // snapshot destroy: refused while branches depend on it.
    let before = state_of(&env);
    let err = bpg.fails(&["snapshot", "destroy", "prod@before"]);
    assert!(err.contains("dev1") && err.contains("--force"), "{err}");
    assert_eq!(state_of(&env), before);
    // --force destroys its branches too.
    let d = bpg.json(&["snapshot", "destroy", "prod@before", "--force"]);
    assert_eq!(d["destroyed"], "prod@before");
    assert_eq!(d["branches_destroyed"], serde_json::json!(["dev1"]));
    bpg.fails(&["url", "dev1"]);
    assert!(in_pool(&env, "@bpgsnap-before-").is_empty());
    assert!(in_pool(&env, &wal_ds).is_empty(), "kept WAL left behind");
    assert_consistent(&env);

    // destroy --force takes the source's named snapshots with it.
    bpg.ok(&["destroy", "prod", "--force"]);
    assert!(
        in_pool(&env, "bpgsnap").is_empty(),
        "{:?}",
        zfs_tree(&env.pool)
    );
    assert!(bpg.json(&["snapshots"])["snapshots"]
        .as_array()
        .unwrap()
        .is_empty());
    assert_consistent(&env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_changes_nothing() {
    let env = setup("bpglb");
    let bpg = Bpg::of(&env);
    bpg.json(&["create", "prod"]);
    bpg.json(&["snapshot", "prod", "--name", "one"]);
    let before = state_of(&env);
    let cases: &[(&[&str], &str)] = &[
        (&["snapshot", "prod", "--name", "bad name"], "invalid name"),
        (&["snapshot", "prod", "--name=-x"], "invalid name"),
        (&["snapshot", "nosuch"], "not found"),
        (&["snapshot", "prod", "--name", "one"], "already exists"),
        (&["branch", "prod@nosuch", "x"], "not found"),
        (&["branch", "prod@bad/name", "x"], "invalid name"),
        (&["branch", "nosuch@one", "x"], "not found"),
        (&["snapshot", "destroy", "prod"], "SOURCE@NAME"),
        (&["snapshot", "destroy", "prod@nosuch"], "not found"),
        (&["snapshots", "nosuch"], "not found"),
        (&["snapshot", "--prune", "nosuch"], "not found"),
        (&["snapshot", "--dry-run", "prod"], "--prune"),
        (&["reset", "nosuch", "--to", "prod@one"], "not found"),
        (&["reset", "prod", "--to", "prod@one"], "not a branch"),
        (&["reset", "prod", "--to", "prod"], "SOURCE@SNAPSHOT"),
    ];
    for (args, says) in cases {
        let err = bpg.fails(args);
        assert!(err.contains(says), "bpg {args:?}: {err}");
        assert_eq!(state_of(&env), before, "bpg {args:?} changed something");
    }
    // A branch with named snapshots is not reset (they live on its data).
    bpg.json(&["branch", "prod", "dev"]);
    bpg.json(&["snapshot", "dev", "--name", "mine"]);
    let before = state_of(&env);
    let err = bpg.fails(&["reset", "dev"]);
    assert!(err.contains("dev@mine"), "{err}");
    assert_eq!(state_of(&env), before);
    assert_consistent(&env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_call_that_fails_or_is_killed_leaves_nothing_after_gc() {
    require_fault_injection();
    let env = setup("bpglg");
    let bpg = Bpg::of(&env);
    bpg.json(&["create", "prod"]);
    bpg.json(&["snapshot", "prod", "--name", "kept"]);
    let before = state_of(&env);
    // An injected failure after the WAL was kept: rolled back at once.
    for step in [
        "after_backup_start",
        "snapshot_after_wal",
        "snapshot_before_catalog",
    ] {
        let o = bpg
            .command(&["snapshot", "prod", "--name", "x"])
            .env("BETTERPG_FAULT", step)
            .output()
            .unwrap();
        assert!(!o.status.success(), "{step}");
        assert_eq!(state_of(&env), before, "{step} left something");
    }
    // Killed with its kept WAL made: the record shows incomplete, gc
    // removes it and what it made, and keeps the complete snapshot.
    let mut child = bpg
        .command(&["snapshot", "prod", "--name", "x"])
        .env("BETTERPG_FAULT", "snapshot_after_wal:pause")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let line = BufReader::new(child.stderr.take().unwrap())
        .lines()
        .next()
        .expect("bpg said nothing")
        .unwrap();
    assert!(line.contains("pausing at snapshot_after_wal"), "{line}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
    let l = bpg.json(&["snapshots", "prod"]);
    let x = l["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "x")
        .cloned()
        .expect("the half-made snapshot is listed");
    assert_eq!(x["state"], "incomplete");
    assert!(!in_pool(&env, "@bpgsnap-x-").is_empty());
    bpg.fails(&["branch", "prod@x", "dev"]);
    let dry = bpg.json(&["gc", "--dry-run"]);
    let g = bpg.json(&["gc"]);
    assert_eq!(
        dry["items"], g["items"],
        "the dry run lists what gc removes"
    );
    let items = g["items"].as_array().unwrap();
    assert!(
        items
            .iter()
            .any(|i| i["what"] == "snapshot-record" && i["name"] == "prod@x"),
        "{g}"
    );
    assert_eq!(state_of(&env), before, "gc left or took something: {g}");
    assert_eq!(bpg.json(&["gc"])["items"], serde_json::json!([]));
    bpg.json(&["branch", "prod@kept", "dev"]);
    assert_consistent(&env);
}

/// The snapshot `name` of `list` (`bpg snapshots --json`), if listed.
fn listed(list: &serde_json::Value, full: &str) -> bool {
    list["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["full_name"] == full)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_what_the_policy_and_the_branches_need() {
    let env = setup("bpglr");
    let bpg = Bpg::of(&env);
    bpg.json(&["create", "prod"]);
    // Four automatic snapshots (real ones, seconds apart at most) and one
    // named by hand.
    let mut auto = Vec::new();
    for _ in 0..4 {
        let s = bpg.json(&["snapshot", "prod", "--fast"]);
        auto.push(s["snapshot"]["full_name"].as_str().unwrap().to_string());
    }
    bpg.json(&["snapshot", "prod", "--name", "mine", "--fast"]);
    // The oldest is pinned by a branch.
    bpg.json(&["branch", &auto[0], "dev"]);

    // No policy: nothing goes.
    let p = bpg.json(&["snapshot", "--prune", "prod"]);
    assert_eq!(p["pruned"], serde_json::json!([]), "{p}");
    assert_eq!(p["kept"].as_array().unwrap().len(), 5);

    // keep_last 2: the two newest automatic ones stay, the pinned one
    // stays, the named one is never a candidate; the dry run says so and
    // changes nothing.
    bpg.ok(&["config", "prod", "--keep-last", "2"]);
    let before = state_of(&env);
    let dry = bpg.json(&["snapshot", "--prune", "--dry-run", "prod"]);
    assert_eq!(state_of(&env), before, "a dry run changed something");
    let pruned: Vec<&str> = dry["pruned"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["snapshot"].as_str().unwrap())
        .collect();
    assert_eq!(pruned, vec![auto[1].as_str()], "{dry}");
    let reasons = |r: &serde_json::Value, full: &str| -> Vec<String> {
        r["kept"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["snapshot"] == full)
            .map(|k| {
                k["reasons"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(reasons(&dry, &auto[0]), vec!["branches"]);
    assert_eq!(reasons(&dry, &auto[2]), vec!["last"]);
    assert_eq!(reasons(&dry, &auto[3]), vec!["last"]);
    assert_eq!(reasons(&dry, "prod@mine"), vec!["named"]);
    let real = bpg.json(&["snapshot", "--prune", "prod"]);
    assert_eq!(real["pruned"], dry["pruned"]);
    let l = bpg.json(&["snapshots", "prod"]);
    assert!(!listed(&l, &auto[1]), "{l}");
    for keep in [&auto[0], &auto[2], &auto[3], &"prod@mine".to_string()] {
        assert!(listed(&l, keep), "{keep} went: {l}");
    }
    assert_consistent(&env);

    // keep_hourly 1 alone: the newest of the newest hour, and the pinned.
    bpg.ok(&[
        "config",
        "prod",
        "--keep-last",
        "none",
        "--keep-hourly",
        "1",
    ]);
    bpg.json(&["snapshot", "--prune"]);
    let l = bpg.json(&["snapshots", "prod"]);
    assert!(
        !listed(&l, &auto[2]) && listed(&l, &auto[3]) && listed(&l, &auto[0]),
        "{l}"
    );
    // Once the branch is gone, the snapshot it pinned goes at the next prune.
    bpg.ok(&["destroy", "dev"]);
    bpg.json(&["snapshot", "--prune", "prod"]);
    let l = bpg.json(&["snapshots", "prod"]);
    assert!(!listed(&l, &auto[0]) && listed(&l, &auto[3]), "{l}");

    // The schedule: a source whose policy has keep_daily and no automatic
    // snapshot today is due; one pass takes it; the next is not due again
    // (unless the UTC day turned in between).
    bpg.ok(&["config", "prod", "--keep-hourly", "none"]);
    bpg.json(&["branch", "prod", "b"]);
    bpg.ok(&["config", "b", "--keep-daily", "1"]);
    let dry = bpg.json(&["snapshot", "--schedule", "--dry-run"]);
    assert_eq!(dry["due"], serde_json::json!(["b"]), "{dry}");
    let pass = bpg.json(&["snapshot", "--schedule"]);
    assert_eq!(pass["taken"].as_array().unwrap().len(), 1, "{pass}");
    assert_eq!(pass["taken"][0]["source"], "b");
    assert_eq!(pass["taken"][0]["auto"], true);
    assert_eq!(pass["failures"], serde_json::json!([]));
    let taken_day = pass["taken"][0]["created_at"].as_u64().unwrap() / 86_400;
    let again = bpg.json(&["snapshot", "--schedule", "--dry-run"]);
    let now_day = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400;
    if now_day == taken_day {
        assert_eq!(again["due"], serde_json::json!([]), "{again}");
    } else {
        assert_eq!(again["due"], serde_json::json!(["b"]), "{again}");
    }
    assert_consistent(&env);
}
