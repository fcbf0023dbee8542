//! Eight `bpg` processes at once, creating and destroying branches of the
//! same running source while a writer commits to it.
//!
//! Every operation must either succeed or be refused cleanly (a name taken,
//! a name already gone, an entry another process is changing); no port is
//! handed out twice; no catalog entry is lost or duplicated; every branch
//! holds every commit acknowledged before its `bpg branch` began; and at the
//! end the catalog, the pool and the listening ports agree exactly.
//!
//! Ports: 59800-59859 (three homes at most). Pools: bpgsafe*.

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier, Mutex};

use betterpg_testkit::*;
use serde_json::Value;

const PORT_LO: u16 = 59800;
const PORT_HI: u16 = 59859;
const WORKERS: usize = 8;
/// Branches each worker makes of its own (the last one is kept).
const ROUNDS: usize = 3;

/// One `bpg` invocation and how it ended.
#[derive(Debug, Clone)]
struct Op {
    worker: usize,
    args: Vec<String>,
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Refusals that are a correct answer to a race, by verb.
fn clean_refusal(verb: &str, stderr: &str) -> bool {
    let ok_for = |msgs: &[&str]| msgs.iter().any(|m| stderr.contains(m));
    stderr.starts_with("error: ")
        && stderr.lines().count() == 1
        && match verb {
            "branch" => ok_for(&["already exists: choose another name"]),
            "destroy" => ok_for(&["not found: `bpg status`", "is being changed by process"]),
            _ => false,
        }
}

fn run(home: &std::path::Path, worker: usize, args: &[&str], log: &Mutex<Vec<Op>>) -> Op {
    let o = std::process::Command::new(bpg_exe())
        .arg("--home")
        .arg(home)
        .args(args)
        .output()
        .expect("run bpg");
    let op = Op {
        worker,
        args: args.iter().map(|s| s.to_string()).collect(),
        ok: o.status.success(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    };
    if !op.ok {
        assert!(
            o.status.code().is_some_and(|c| c != 0 && c != 2),
            "worker {worker}: bpg {args:?} died: {:?}\n{}",
            o.status,
            op.stderr
        );
    }
    log.lock().unwrap().push(op.clone());
    op
}

/// Check a fresh branch from inside a worker: it answers on the port it was
/// given and holds every commit acknowledged before the branch call.
fn verify_branch(report: &Value, acked_before: i64) {
    let url = report["branch"]["url"].as_str().unwrap().to_string();
    let port = report["branch"]["port"].as_u64().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = connect(&url).await;
        let p: String = c.query_one("SHOW port", &[]).await.unwrap().get(0);
        assert_eq!(
            p,
            port.to_string(),
            "branch answers on another port than reported"
        );
        assert_prefix(&url, acked_before).await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_bpg_processes_branch_and_destroy_at_once() {
    let env = TestEnv::safe(PORT_LO, PORT_HI, "1G");
    let bpg = Bpg::of(&env);
    let prod = bpg.json(&["create", "prod"]);
    let writer = Writer::start(prod["url"].as_str().unwrap()).await;

    let log = Arc::new(Mutex::new(Vec::<Op>::new()));
    let barrier = Arc::new(Barrier::new(WORKERS));
    let home = env.home.clone();
    let mut handles = Vec::new();
    for w in 0..WORKERS {
        let (log, barrier, home) = (log.clone(), barrier.clone(), home.clone());
        let acked = writer.acked.clone();
        handles.push(std::thread::spawn(move || {
            // 1. Everyone branches the same name at the same moment.
            barrier.wait();
            let acked_before = *acked.borrow();
            let op = run(&home, w, &["--json", "branch", "prod", "shared"], &log);
            if op.ok {
                verify_branch(&serde_json::from_str(&op.stdout).unwrap(), acked_before);
            }
            // 2. Own branches, alternating modes; all but the last destroyed
            //    again at once (ports are freed and reused meanwhile).
            for r in 0..ROUNDS {
                let name = format!("w{w}-{r}");
                let mut args = vec!["--json", "branch", "prod", name.as_str()];
                if (w + r) % 2 == 1 {
                    args.push("--fast");
                }
                let acked_before = *acked.borrow();
                let op = run(&home, w, &args, &log);
                assert!(op.ok, "worker {w}: bpg {args:?} failed: {}", op.stderr);
                verify_branch(&serde_json::from_str(&op.stdout).unwrap(), acked_before);
                let st = run(&home, w, &["--json", "status"], &log);
                assert!(st.ok, "worker {w}: status failed: {}", st.stderr);
                if r + 1 < ROUNDS {
                    let op = run(&home, w, &["destroy", name.as_str()], &log);
                    assert!(op.ok, "worker {w}: destroy {name} failed: {}", op.stderr);
                }
            }
            // 3. Everyone destroys the shared branch at the same moment.
            barrier.wait();
            run(&home, w, &["destroy", "shared"], &log);
        }));
    }
    let results = tokio::task::spawn_blocking(move || {
        handles.into_iter().map(|h| h.join()).collect::<Vec<_>>()
    })
    .await
    .unwrap();
    writer.stop().await;
    let ops = log.lock().unwrap().clone();
    for (w, r) in results.into_iter().enumerate() {
        if let Err(p) = r {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("worker {w} failed: {msg}");
        }
    }

    // Every operation done or cleanly refused.
    let mut per_name: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut refused = 0;
    for op in &ops {
        let verb = op
            .args
            .iter()
            .find(|a| !a.starts_with("--"))
            .unwrap()
            .as_str();
        if !op.ok {
            assert!(
                clean_refusal(verb, &op.stderr),
                "worker {}: bpg {:?} failed uncleanly:\n{}",
                op.worker,
                op.args,
                op.stderr
            );
            refused += 1;
            continue;
        }
        let name = match verb {
            "branch" => op.args[op.args.iter().position(|a| a == "branch").unwrap() + 2].clone(),
            "destroy" => op.args[1].clone(),
            _ => continue,
        };
        let e = per_name.entry(name).or_default();
        if verb == "branch" {
            e.0 += 1
        } else {
            e.1 += 1
        }
    }
    // The shared name: made exactly once, destroyed exactly once.
    assert_eq!(
        per_name.get("shared"),
        Some(&(1, 1)),
        "shared: {per_name:?}"
    );
    // Nothing lost or duplicated: what exists is exactly what was made and
    // not destroyed.
    let expected: Vec<String> = per_name
        .iter()
        .filter(|(_, (made, gone))| {
            assert!(made >= gone && made - gone <= 1, "{per_name:?}");
            made > gone
        })
        .map(|(n, _)| n.clone())
        .chain(["prod".to_string()])
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut in_catalog: Vec<String> = catalog_entries(&env)
        .into_iter()
        .map(|(n, _, _)| n)
        .collect();
    in_catalog.sort();
    assert_eq!(in_catalog, expected);
    assert_eq!(in_catalog.len(), 1 + WORKERS, "{in_catalog:?}");
    assert_consistent(&env);

    let branches = ops
        .iter()
        .filter(|o| o.args.contains(&"branch".to_string()))
        .count();
    let destroys = ops
        .iter()
        .filter(|o| o.args.contains(&"destroy".to_string()))
        .count();
    eprintln!(
        "concurrency: {} bpg operations by {WORKERS} processes ({branches} branch, {destroys} destroy, {} status), {refused} cleanly refused, {} branches verified under a writer",
        ops.len(),
        ops.len() - branches - destroys,
        1 + WORKERS * ROUNDS
    );
    bpg.ok(&["destroy", "prod", "--force"]);
    // The pool, the root and the branch space.
    assert_eq!(zfs_tree(&env.pool).len(), 3);
}
