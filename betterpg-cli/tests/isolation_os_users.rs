//! A branch's superuser cannot reach its source's files, nor another
//! branch's (docs/safety.md, "Isolation from the source", a server user per
//! branch). Whoever holds a branch's URL can act as its server's OS user
//! (`COPY ... TO PROGRAM`, `pg_read_binary_file`): with every server running
//! as one OS user they could read and write the source's data directory.
//! Each branch's server runs as a uid of its own; the data directories of
//! the others are closed to it (0700).
//!
//! Real ZFS, real PostgreSQL 15, the real `bpg` binary.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use betterpg_testkit::*;
use serde_json::Value;

fn owner(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .uid()
}

/// What a superuser of the server at `url` can do to the files at `dir`
/// (another server's data directory): write a file there through a program
/// run as its server's OS user, and read its control file. Both must fail.
async fn assert_cannot_reach(url: &str, dir: &Path, what: &str) {
    let c = connect(url).await;
    let planted = dir.join("planted_by_a_branch");
    let write = c
        .batch_execute(&format!(
            "COPY (SELECT 1) TO PROGRAM 'touch {}'",
            planted.display()
        ))
        .await;
    assert!(
        write.is_err(),
        "a branch's superuser wrote into {what} ({})",
        dir.display()
    );
    assert!(!planted.exists(), "{} exists", planted.display());
    let read = c
        .simple_query(&format!(
            "SELECT length(pg_read_binary_file('{}'))",
            dir.join("global/pg_control").display()
        ))
        .await;
    assert!(
        read.is_err(),
        "a branch's superuser read {what}'s pg_control ({})",
        dir.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_cannot_reach_its_source_or_another_branch() {
    let env = TestEnv::plan("bpgou");
    init(&env, "1G");
    let bpg = Bpg::of(&env);
    let prod: Value = bpg.json(&["create", "prod"]);
    let prod_url = prod["url"].as_str().unwrap().to_string();
    connect(&prod_url)
        .await
        .batch_execute("CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2), (3)")
        .await
        .unwrap();
    let dev = bpg.json(&["branch", "prod", "dev"]);
    let dev2 = bpg.json(&["branch", "prod", "dev2"]);
    let dev_url = dev["branch"]["url"].as_str().unwrap().to_string();
    let dev2_url = dev2["branch"]["url"].as_str().unwrap().to_string();
    let prod_dir = data_dir_of(prod["dataset"].as_str().unwrap());
    let dev_dir = data_dir_of(dev["branch"]["dataset"].as_str().unwrap());
    let dev2_dir = data_dir_of(dev2["branch"]["dataset"].as_str().unwrap());

    // The hole: as its server's OS user, a branch's superuser could write
    // into its source's data directory.
    assert_cannot_reach(&dev_url, &prod_dir, "its source").await;

    // Three owners, none root.
    let (p, d, d2) = (owner(&prod_dir), owner(&dev_dir), owner(&dev2_dir));
    assert!(p != 0 && d != 0 && d2 != 0, "{p} {d} {d2}");
    assert_ne!(d, p, "the branch's server runs as its source's OS user");
    assert_ne!(d2, p);
    assert_ne!(d, d2, "two branches share an OS user");
    // Every file of the clone is the branch's (none left to the source's
    // user, which the branch's server could not read).
    let mut stack = vec![dev_dir.clone()];
    while let Some(dir) = stack.pop() {
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap();
            let m = std::fs::symlink_metadata(f.path()).unwrap();
            assert_eq!(m.uid(), d, "{} is not the branch's", f.path().display());
            if m.is_dir() {
                stack.push(f.path());
            }
        }
    }

    // The branch works and holds its source's rows.
    let c = connect(&dev_url).await;
    assert_eq!(query_i64(&c, "SELECT count(*) FROM t").await, 3);
    c.batch_execute("INSERT INTO t VALUES (4)").await.unwrap();
    drop(c);

    assert_cannot_reach(&dev_url, &dev2_dir, "another branch").await;
    assert_cannot_reach(&dev2_url, &dev_dir, "another branch").await;

    // A branch of a branch: yet another user, the data carried over.
    let sub = bpg.json(&["branch", "dev", "sub"]);
    let sub_url = sub["branch"]["url"].as_str().unwrap().to_string();
    let sub_dir = data_dir_of(sub["branch"]["dataset"].as_str().unwrap());
    let s = owner(&sub_dir);
    assert!(s != 0 && s != d && s != p && s != d2, "{s}");
    let c = connect(&sub_url).await;
    assert_eq!(query_i64(&c, "SELECT count(*) FROM t").await, 4);
    drop(c);
    assert_cannot_reach(&sub_url, &dev_dir, "its source branch").await;

    // stop/start, reset and --fast keep each branch's server its own.
    bpg.ok(&["stop", "dev"]);
    bpg.ok(&["start", "dev"]);
    assert_eq!(owner(&dev_dir), d);
    let c = connect(&dev_url).await;
    assert_eq!(query_i64(&c, "SELECT count(*) FROM t").await, 4);
    drop(c);
    let r = bpg.json(&["reset", "dev2"]);
    let dev2_url = r["branch"]["url"].as_str().unwrap().to_string();
    assert_eq!(owner(&dev2_dir), d2, "reset keeps the branch's user");
    assert_cannot_reach(&dev2_url, &prod_dir, "its source (after reset)").await;
    let fast = bpg.json(&["branch", "prod", "quick", "--fast"]);
    let quick_url = fast["branch"]["url"].as_str().unwrap().to_string();
    let quick_dir = data_dir_of(fast["branch"]["dataset"].as_str().unwrap());
    assert!(![0, p, d, d2, s].contains(&owner(&quick_dir)));
    assert_cannot_reach(&quick_url, &prod_dir, "its source (--fast)").await;

    // The source was never disturbed.
    let c = connect(&prod_url).await;
    assert_eq!(query_i64(&c, "SELECT count(*) FROM t").await, 3);
    drop(c);
    bpg.ok(&["destroy", "prod", "--force"]);
}
