//! What the pool holds, read with the `zfs` command (independently of the
//! storage backend under test).

use std::path::{Path, PathBuf};
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

/// The mountpoint of dataset `ds` (`zfs get mountpoint`).
pub fn mountpoint(ds: &str) -> PathBuf {
    let out = Command::new("zfs")
        .args(["get", "-H", "-o", "value", "mountpoint", ds])
        .output()
        .expect("run zfs get mountpoint");
    assert!(
        out.status.success(),
        "zfs get mountpoint {ds}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// The data directory of the database or branch on dataset `ds`: its
/// mountpoint's `pgdata`.
pub fn data_dir_of(ds: &str) -> PathBuf {
    mountpoint(ds).join("pgdata")
}

/// Every regular file under `dir` (links not followed, unreadable
/// directories skipped) whose bytes contain `needle`: how the tests look
/// for an original value left in a branch's files.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                let bytes = std::fs::read(e.path()).unwrap_or_default();
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(e.path());
                }
            }
        }
    }
    found
}
