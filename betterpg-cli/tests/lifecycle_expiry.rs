//! Protection, expiry and idle stop through the real `bpg` binary: a real
//! ZFS pool, real PostgreSQL 15 servers, real waits (TTLs and idle times
//! of seconds). The daemon itself (one pass, the loop, its lock, signals,
//! a kill mid-pass) is in `lifecycle_daemon.rs`.

use betterpg_testkit::*;
use serde_json::Value;

fn setup(prefix: &str) -> TestEnv {
    default_port_base(46400);
    TestEnv::initialized(prefix)
}

fn entry<'a>(status: &'a Value, name: &str) -> &'a Value {
    status
        .as_array()
        .expect("status entries")
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("{name} missing from status: {status:#}"))
}

/// `bpg protect` refuses destroy (even forced, and through a forced
/// destroy of its parent), reset, and gc's removal; each refusal is the
/// typed error (exit 28) and changes nothing; `unprotect` allows them again.
#[test]
fn protect_refuses_destroy_reset_and_gc() {
    let env = setup("bpglp");
    let bpg = Bpg::of(&env);
    bpg.ok(&["create", "prod"]);
    bpg.ok(&["branch", "prod", "dev"]);
    bpg.ok(&["branch", "dev", "feature"]);

    let before = bpg.status_json(&["status"]);
    assert_eq!(entry(&before, "dev")["protected"], false);
    let info = bpg.json(&["protect", "dev"]);
    assert_eq!(info["name"], "dev");
    assert_eq!(info["protected"], true);
    assert_eq!(bpg.status_json(&["status"])[1]["protected"], true);
    assert!(bpg.ok(&["status"]).contains("protected"));
    // Idempotent.
    assert_eq!(bpg.json(&["protect", "dev"])["protected"], true);

    let state = state_of(&env);
    for args in [
        &["destroy", "dev"][..],
        &["destroy", "dev", "--force"],
        &["destroy", "prod", "--force"],
        &["reset", "dev"],
    ] {
        let o = bpg.run(args);
        let err = check_failure(args, &o);
        assert_eq!(o.status.code(), Some(30), "bpg {args:?}: {err}");
        assert!(err.contains("\"dev\" is protected"), "bpg {args:?}: {err}");
        assert!(err.contains("bpg unprotect dev"), "bpg {args:?}: {err}");
        assert_eq!(state_of(&env), state, "bpg {args:?} changed something");
    }
    // The branch under the protected one is not protected itself.
    bpg.ok(&["destroy", "feature"]);
    assert_consistent(&env);

    // gc keeps a protected entry's resources even when its record says a
    // process that is gone was working on it (pid 1's start time is
    // never this one, so the entry looks dead to every check).
    edit_catalog_entry(&env, "dev", "state", "destroying".into());
    edit_catalog_entry(&env, "dev", "pid", 1.into());
    edit_catalog_entry(&env, "dev", "pid_start", 1.into());
    assert_eq!(
        entry(&bpg.status_json(&["status"]), "dev")["state"],
        "incomplete"
    );
    let tree = zfs_tree(&env.pool);
    let gc = bpg.json(&["gc"]);
    assert!(
        gc["items"].as_array().unwrap().is_empty(),
        "gc removed a protected entry's resources: {gc:#}"
    );
    assert_eq!(zfs_tree(&env.pool), tree);
    assert!(catalog_entries(&env).iter().any(|(n, _, _)| n == "dev"));
    edit_catalog_entry(&env, "dev", "state", "ready".into());

    // Unprotected, everything is allowed again.
    assert_eq!(bpg.json(&["unprotect", "dev"])["protected"], false);
    bpg.ok(&["reset", "dev", "--fast"]);
    bpg.ok(&["destroy", "prod", "--force"]);
    assert!(catalog_entries(&env).is_empty());
    assert_consistent(&env);

    // Bad input: a clear error, nothing made.
    let err = bpg.fails(&["protect", "nope"]);
    assert!(err.contains("not found"), "{err}");
    let err = bpg.fails(&["protect", "bad name"]);
    assert!(err.contains("invalid name"), "{err}");
}
