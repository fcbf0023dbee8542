//! What the pool holds, read with the `zfs` command (independently of the
//! storage backend under test).

use std::process::Command;

/// Every dataset and snapshot of `pool` (`zfs get -r -H -o name type`).
pub fn zfs_tree(pool: &str) -> Vec<String> {
    let out = Command::new("zfs")
        .args(["get", "-r", "-H", "-o", "name", "type", pool])
        .output()
        .expect("run zfs get");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

/// `zfs list` of the pool: (name, type, betterpg:managed, betterpg:home).
pub fn zfs_owned(pool: &str) -> Vec<(String, String, String, String)> {
    let out = Command::new("zfs")
        .args([
            "list",
            "-H",
            "-r",
            "-t",
            "all",
            "-o",
            "name,type,betterpg:managed,betterpg:home",
            pool,
        ])
        .output()
        .expect("zfs list");
    assert!(
        out.status.success(),
        "zfs list {pool}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() == 4).then(|| {
                (
                    f[0].to_string(),
                    f[1].to_string(),
                    f[2].to_string(),
                    f[3].to_string(),
                )
            })
        })
        .collect()
}
