//! What restarts must not lose: databases and branches with data of their
//! own, every one stopped and started, the pool exported and imported.

use std::process::Command;

use serde_json::Value;

use crate::{connect, Bpg, TestEnv};

/// The URL in `bpg create`'s or `bpg branch`'s JSON answer.
pub fn url_in(v: &Value) -> String {
    v["url"]
        .as_str()
        .or_else(|| v["branch"]["url"].as_str())
        .unwrap()
        .to_string()
}

/// Each server a test seeded: its name, URL and how many rows its `t`
/// holds.
pub type Seeded = Vec<(String, String, i64)>;

/// Two databases and a branch tree, each with data of its own in `t(id)`:
/// `prod` holds ids 1..=`prod`, `db2` 1..=`db2`; `dev`, a branch of prod,
/// adds the next `dev_more` ids; `dev-child`, a `--fast` branch of dev,
/// drops ids 1..=`child_dropped`. In that order (parents first).
pub async fn seed_tree(
    bpg: &Bpg<'_>,
    prod: i64,
    db2: i64,
    dev_more: i64,
    child_dropped: i64,
) -> Seeded {
    let prod_url = url_in(&bpg.json(&["create", "prod"]));
    execute(
        &prod_url,
        &format!("CREATE TABLE t AS SELECT generate_series(1, {prod}) AS id"),
    )
    .await;
    let db2_url = url_in(&bpg.json(&["create", "db2"]));
    execute(
        &db2_url,
        &format!("CREATE TABLE t AS SELECT generate_series(1, {db2}) AS id"),
    )
    .await;
    let dev = url_in(&bpg.json(&["branch", "prod", "dev"]));
    execute(
        &dev,
        &format!(
            "INSERT INTO t SELECT generate_series({}, {})",
            prod + 1,
            prod + dev_more
        ),
    )
    .await;
    let child = url_in(&bpg.json(&["branch", "dev", "dev-child", "--fast"]));
    execute(
        &child,
        &format!("DELETE FROM t WHERE id <= {child_dropped}"),
    )
    .await;
    vec![
        ("prod".into(), prod_url, prod),
        ("db2".into(), db2_url, db2),
        ("dev".into(), dev, prod + dev_more),
        ("dev-child".into(), child, prod + dev_more - child_dropped),
    ]
}

async fn execute(url: &str, sql: &str) {
    connect(url)
        .await
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql} on {url}: {e}"));
}

/// `bpg stop` every one of `servers`, each answering `stopped`.
pub fn stop_all(bpg: &Bpg, servers: &[(String, String, i64)]) {
    for (name, _, _) in servers {
        assert_eq!(bpg.json(&["stop", name])["status"], "stopped", "{name}");
    }
}

/// `bpg start` every one of `servers`, each answering `running`. Children
/// first on purpose: a branch needs its origin snapshot, not its parent's
/// server.
pub fn start_all(bpg: &Bpg, servers: &[(String, String, i64)]) {
    for (name, _, _) in servers.iter().rev() {
        assert_eq!(bpg.json(&["start", name])["status"], "running", "{name}");
    }
}

/// `zpool export` the env's pool; returns a directory holding a link to
/// its file, what [`import_pool`] finds it in.
pub fn export_pool(env: &TestEnv) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(&env.pool_file, dir.path().join("pool.img")).unwrap();
    let o = Command::new("zpool")
        .args(["export", &env.pool])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "zpool export: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    dir
}

/// `zpool import -d DIR POOL` of a pool [`export_pool`] exported.
pub fn import_pool(env: &TestEnv, dir: &tempfile::TempDir) {
    let o = Command::new("zpool")
        .args(["import", "-d"])
        .arg(dir.path())
        .arg(&env.pool)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "zpool import: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}
