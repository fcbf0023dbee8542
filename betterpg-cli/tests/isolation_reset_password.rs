//! `bpg reset` of a branch whose password file (HOME/secrets/NAME) is gone
//! (docs/safety.md, "Isolation from the source", item 11): the old server
//! is stopped and its data destroyed without the file; the reset branch gets
//! a new generated password (its URL changes, and `reset` says so:
//! `password_changed` in `--json`, a line in the text output), stored 0600.
//! With the file there, the password and URL stay as they were.
//!
//! Real ZFS, real PostgreSQL 15, the real `bpg` binary.

use std::os::unix::fs::PermissionsExt;

use betterpg_testkit::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_without_the_password_file_makes_a_new_one_and_says_so() {
    let env = TestEnv::plan("bpghf");
    init(&env, "1G");
    let bpg = Bpg::of(&env);
    bpg.ok(&["create", "prod"]);
    let dev = bpg.json(&["branch", "prod", "dev"]);
    let old_url = dev["branch"]["url"].as_str().unwrap().to_string();
    let port = dev["branch"]["port"].as_u64().unwrap();
    let old_snapshot = dev["branch"]["snapshot"].as_str().unwrap().to_string();
    {
        let c = connect(&old_url).await;
        c.batch_execute("CREATE TABLE thrown_away (x int); INSERT INTO thrown_away VALUES (1)")
            .await
            .unwrap();
    }
    let secret = env.home.join("secrets").join("dev");
    std::fs::remove_file(&secret).unwrap();

    // Before the fix: "password file … not found" and the branch left as it was.
    let r = bpg.json(&["reset", "dev"]);
    assert_eq!(r["password_changed"], true, "{r}");
    let new_url = r["branch"]["url"].as_str().unwrap().to_string();
    assert_eq!(r["branch"]["port"].as_u64().unwrap(), port, "{r}");
    assert_ne!(new_url, old_url, "a new password, so a new URL");
    assert_ne!(r["branch"]["snapshot"].as_str().unwrap(), old_snapshot);
    // The new password is stored, 0600, and logs in; the old data is gone.
    let meta = std::fs::metadata(&secret).expect("reset wrote a new password file");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let stored = std::fs::read_to_string(&secret).unwrap();
    assert!(
        new_url.contains(stored.trim()),
        "the URL carries the stored password"
    );
    let c = connect(&new_url).await;
    assert_eq!(
        query_i64(
            &c,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'thrown_away'"
        )
        .await,
        0
    );
    drop(c);
    // The old password no longer logs in.
    assert!(
        tokio_postgres::connect(&old_url, tokio_postgres::NoTls)
            .await
            .is_err(),
        "the old URL still logs in after the password changed"
    );
    // One server on the port, one branch dataset: the old one was stopped
    // and destroyed, not left running beside the new one.
    let tree = zfs_tree(&env.pool);
    assert_eq!(
        tree.iter().filter(|n| n.ends_with("/dev")).count(),
        1,
        "{tree:?}"
    );
    assert_eq!(
        tree.iter().filter(|n| n.contains("@bpg-dev-")).count(),
        1,
        "only the new snapshot: {tree:?}"
    );

    // The text output says the password changed.
    std::fs::remove_file(&secret).unwrap();
    let text = bpg.ok(&["reset", "dev"]);
    assert!(text.contains("new password"), "{text}");

    // With the file there, reset keeps the password (and the URL).
    let url = bpg.json(&["url", "dev"]);
    let again = bpg.json(&["reset", "dev"]);
    assert_eq!(again["password_changed"], false, "{again}");
    assert_eq!(again["branch"]["url"], url["url"], "{again} vs {url}");
    let text = bpg.ok(&["reset", "dev"]);
    assert!(!text.contains("new password"), "{text}");

    bpg.ok(&["destroy", "prod", "--force"]);
}
