//! The home's catalog file, read and edited as bytes and JSON (what a
//! damaged or hand-edited catalog would hold).

use serde_json::Value;

use crate::{zfs_tree, TestEnv};

/// The exact bytes of the home's catalog (empty when there is none).
pub fn catalog_bytes(env: &TestEnv) -> Vec<u8> {
    std::fs::read(env.home.join("catalog.json")).unwrap_or_default()
}

/// What "nothing changed" compares: the catalog's bytes and the pool's
/// datasets and snapshots.
pub fn state_of(env: &TestEnv) -> (Vec<u8>, Vec<String>) {
    (catalog_bytes(env), zfs_tree(&env.pool))
}

/// Rewrite one field of one catalog entry. Only while no bpg operation runs
/// on the home.
pub fn edit_catalog_entry(env: &TestEnv, name: &str, field: &str, value: Value) {
    let path = env.home.join("catalog.json");
    let mut v: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read catalog")).expect("catalog JSON");
    v["entries"][name][field] = value;
    std::fs::write(&path, serde_json::to_vec_pretty(&v).unwrap()).expect("write catalog");
}

/// Names of the catalog's entries with their state and port.
pub fn catalog_entries(env: &TestEnv) -> Vec<(String, String, u16)> {
    let text = std::fs::read_to_string(env.home.join("catalog.json")).unwrap_or_default();
    if text.is_empty() {
        return Vec::new();
    }
    let v: Value = serde_json::from_str(&text).expect("catalog is JSON");
    v["entries"]
        .as_object()
        .expect("entries")
        .iter()
        .map(|(k, e)| {
            (
                k.clone(),
                e["state"].as_str().unwrap_or("?").to_string(),
                e["port"].as_u64().unwrap_or(0) as u16,
            )
        })
        .collect()
}
