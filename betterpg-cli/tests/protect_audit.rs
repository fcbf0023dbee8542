//! The audit log (`HOME/audit.log`, `bpg audit`): every operation that
//! creates, exposes, resets or destroys a copy appends one JSON line with
//! who, what, how and how it ended; the file is 0600, holds no password,
//! and survives destroy and gc. Real ZFS and PostgreSQL.

use std::os::unix::fs::PermissionsExt;

use betterpg_testkit::*;
use serde_json::Value;

fn events(bpg: &Bpg, args: &[&str]) -> Vec<Value> {
    let mut a = vec!["audit"];
    a.extend_from_slice(args);
    let v = bpg.json(&a);
    v["events"].as_array().expect("events").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_copy_operation_is_audited_and_the_log_survives() {
    default_port_base(57200);
    let env = TestEnv::initialized("bpgpa");
    let bpg = Bpg::of(&env);
    let log = env.home.join("audit.log");

    bpg.ok(&["create", "prod"]);
    let prod_url = bpg.ok(&["url", "prod"]).trim().to_string();
    connect(&prod_url)
        .await
        .batch_execute("CREATE TABLE t AS SELECT 1 AS id")
        .await
        .unwrap();
    bpg.ok(&["branch", "prod", "dev", "--fast"]);
    bpg.ok(&["url", "dev"]);
    bpg.ok(&["reset", "dev"]);
    // A failing branch is recorded with its error kind.
    bpg.fails(&["branch", "nosuch", "x"]);
    // Something for gc to remove: a password file no entry owns.
    std::fs::write(env.home.join("secrets").join("ghost"), "pw").unwrap();
    bpg.ok(&["gc"]);
    bpg.ok(&["destroy", "dev"]);

    let mode = std::fs::metadata(&log).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "audit.log is private");
    let all = events(&bpg, &[]);
    let ops: Vec<(&str, &str)> = all
        .iter()
        .map(|e| {
            (
                e["operation"].as_str().unwrap(),
                // gc names the path it removed: its file name here.
                e["branch"]
                    .as_str()
                    .unwrap_or("")
                    .rsplit('/')
                    .next()
                    .unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ops,
        vec![
            ("create", "prod"),
            ("url", "prod"),
            ("branch", "dev"),
            ("url", "dev"),
            ("reset", "dev"),
            ("branch", "x"),
            ("gc", "ghost"),
            ("destroy", "dev"),
        ],
        "{all:#?}"
    );
    let me = nix::unistd::getuid().as_raw();
    for e in &all {
        assert_eq!(e["uid"], me, "{e}");
        assert!(!e["user"].as_str().unwrap().is_empty());
        assert!(e["time"].as_str().unwrap().ends_with('Z'), "{e}");
    }
    let branch = &all[2];
    assert_eq!(branch["source"], "prod");
    assert_eq!(branch["mode"], "crash-consistent");
    assert_eq!(branch["result"], "ok");
    assert!(branch["error"].is_null());
    let reset = &all[4];
    assert_eq!(reset["source"], "prod");
    assert_eq!(reset["mode"], "application-consistent");
    let failed = &all[5];
    assert_eq!(failed["result"], "error");
    assert_eq!(failed["error"]["kind"], "not_found");
    assert!(failed["error"]["message"]
        .as_str()
        .unwrap()
        .contains("nosuch"));
    assert_eq!(
        all[6]["detail"].as_str().unwrap().split(':').next(),
        Some("file")
    );

    // No password of any entry (nor the one gc removed) is in the log.
    let text = std::fs::read_to_string(&log).unwrap();
    let prod_pw = std::fs::read_to_string(env.home.join("secrets").join("prod")).unwrap();
    assert!(prod_pw.trim().len() >= 16);
    assert!(
        !text.contains(prod_pw.trim()),
        "a password in the audit log"
    );
    assert!(!text.contains("postgresql://"), "a URL in the audit log");
    assert_eq!(text.lines().count(), all.len(), "one line per event");

    // --since: a duration, a time; a bad value is a clear error.
    assert_eq!(events(&bpg, &["--since", "1h"]).len(), all.len());
    let future = audit_time(now() + 3600);
    assert!(events(&bpg, &["--since", &future]).is_empty());
    let last = all.last().unwrap()["unix"].as_u64().unwrap();
    let since_last = events(&bpg, &["--since", &last.to_string()]);
    assert!(since_last.iter().any(|e| e["operation"] == "destroy"));
    let err = bpg.fails(&["audit", "--since", "yesterday"]);
    assert!(err.contains("--since"), "{err}");
    // The text form: one line per event, with the operation and result.
    let human = bpg.ok(&["audit"]);
    assert_eq!(human.lines().count(), all.len());
    assert!(human.contains("branch x from nosuch"), "{human}");
    assert!(human.lines().nth(5).unwrap().contains("error not_found"));

    // The log outlives everything it describes.
    bpg.ok(&["destroy", "prod", "--force"]);
    bpg.ok(&["gc"]);
    let after = events(&bpg, &[]);
    assert_eq!(after.len(), all.len() + 1);
    assert_eq!(after.last().unwrap()["operation"], "destroy");
    assert_eq!(after.last().unwrap()["detail"], "force: its branches too");
    assert_consistent(&env);

    // The Rust API reads the same log.
    let mgr = betterpg_core::BranchManager::open(&env.home).await.unwrap();
    let rust = mgr.audit(None).unwrap();
    assert_eq!(rust.len(), after.len());
    assert_eq!(rust[0].operation, "create");
    assert_eq!(
        mgr.audit(Some("nonsense")).unwrap_err().kind_name(),
        "config"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_never_tear_a_line() {
    // Many processes appending at once (url calls): every line parses and
    // none is lost.
    default_port_base(57200);
    let env = TestEnv::initialized("bpgpb");
    let bpg = Bpg::of(&env);
    bpg.ok(&["create", "prod"]);
    let mut kids = Vec::new();
    for _ in 0..8 {
        let mut c = bpg.command(&["url", "prod"]);
        c.stdout(std::process::Stdio::null());
        kids.push(c.spawn().unwrap());
    }
    for mut k in kids {
        assert!(k.wait().unwrap().success());
    }
    let all = events(&bpg, &[]);
    assert_eq!(all.len(), 9, "create and eight urls");
    assert_eq!(all.iter().filter(|e| e["operation"] == "url").count(), 8);
    bpg.ok(&["destroy", "prod"]);
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn audit_time(unix: u64) -> String {
    betterpg_core::audit::format_time(unix)
}
