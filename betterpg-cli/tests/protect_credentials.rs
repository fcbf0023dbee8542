//! Credentials that differ from production (docs/safety.md, "Protecting
//! copies of production"): `bpg branch --credentials rotate` gives every
//! role with a password a new one on the branch's private first start;
//! the source's passwords do not log in (real TCP logins), the new ones
//! are stored 0600 in `HOME/secrets/NAME.roles` and handed out by
//! `bpg url NAME --role ROLE`; the old password hashes are gone from the
//! branch's data directory; `keep` keeps them; branches of a rotated
//! branch rotate; a reset rotates again; destroy removes the passwords;
//! every branch and reset audit line carries the policy and the masking
//! files' hashes.
//!
//! Real ZFS, real PostgreSQL 15, the real `bpg` binary.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use betterpg_testkit::*;
use serde_json::Value;

/// Roles of the source with a password (name, password), and one that
/// may not log in but has a password too.
const ROLES: &[(&str, &str)] = &[
    ("app", "app-source-password"),
    ("readonly", "readonly-source-password"),
    ("batch", "batch-source-password"),
];

/// The source `prod`: roles `app` and `readonly` (LOGIN, password),
/// `batch` (NOLOGIN, password), `nopw` (LOGIN, no password), a table they
/// may read. Returns the source's stored password hashes.
async fn source_with_roles(bpg: &Bpg<'_>) -> Vec<(String, String)> {
    bpg.ok(&["create", "prod"]);
    let url = bpg.ok(&["url", "prod"]).trim().to_string();
    let c = connect(&url).await;
    c.batch_execute(
        "CREATE ROLE app LOGIN PASSWORD 'app-source-password'; \
         CREATE ROLE readonly LOGIN PASSWORD 'readonly-source-password'; \
         CREATE ROLE batch NOLOGIN PASSWORD 'batch-source-password'; \
         CREATE ROLE nopw LOGIN; \
         CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 10) g; \
         GRANT SELECT ON t TO app, readonly; CHECKPOINT",
    )
    .await
    .unwrap();
    c.query(
        "SELECT rolname::text, rolpassword FROM pg_authid \
         WHERE rolname IN ('app', 'readonly', 'batch') ORDER BY 1",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// Log in over TCP as `role` with `password` to the server on `port`.
async fn login(port: u64, role: &str, password: &str) -> Result<(), tokio_postgres::Error> {
    let (c, conn) = tokio_postgres::connect(
        &format!("postgresql://{role}:{password}@127.0.0.1:{port}/postgres"),
        tokio_postgres::NoTls,
    )
    .await?;
    tokio::spawn(conn);
    let who: String = c.query_one("SELECT current_user::text", &[]).await?.get(0);
    assert_eq!(who, role);
    Ok(())
}

/// Logging in as `role` with `password` on `port` is refused as a wrong
/// password (SQLSTATE 28P01).
async fn refused(port: u64, role: &str, password: &str) {
    let err = login(port, role, password)
        .await
        .expect_err(&format!("{role} logged in with the source's password"));
    assert_eq!(
        err.as_db_error().map(|d| d.code().code()),
        Some("28P01"),
        "{role}: {err}"
    );
}

fn sha256_of(p: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(p)
        .output()
        .expect("sha256sum (coreutils) must be installed");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn role_url(bpg: &Bpg<'_>, name: &str, role: &str) -> String {
    let v = bpg.json(&["url", name, "--role", role]);
    assert_eq!(v["role"], role, "{v}");
    v["url"].as_str().unwrap().to_string()
}

/// The password in a `postgresql://role:password@...` URL.
fn password_of(url: &str) -> String {
    let rest = url.strip_prefix("postgresql://").unwrap();
    let userinfo = &rest[..rest.rfind('@').unwrap()];
    userinfo.split_once(':').unwrap().1.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_credentials_replace_every_source_password_and_keep_keeps_them() {
    default_port_base(47400);
    let env = TestEnv::initialized("bpgcr");
    let bpg = Bpg::of(&env);
    let hashes = source_with_roles(&bpg).await;
    assert_eq!(hashes.len(), 3, "{hashes:?}");
    assert!(
        bpg.entry("prod")["credentials"].is_null(),
        "a database without the setting has no policy"
    );
    let dir = tempfile::tempdir().unwrap();
    let mask = dir.path().join("mask.sql");
    std::fs::write(&mask, "UPDATE t SET id = id;\n").unwrap();
    let mask_s = mask.to_str().unwrap();

    // rotate: every role with a password got a new one.
    let r = bpg.json(&[
        "branch",
        "prod",
        "dev",
        "--credentials",
        "rotate",
        "--mask",
        mask_s,
    ]);
    assert_eq!(r["credentials"], "rotate", "{r}");
    assert_eq!(
        r["isolation"]["roles_rotated"],
        serde_json::json!(["app", "batch", "readonly"]),
        "{r}"
    );
    assert!(
        r["timings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["step"] == "rotate_credentials"),
        "{r}"
    );
    let port = r["branch"]["port"].as_u64().unwrap();
    for (role, pw) in &ROLES[..2] {
        refused(port, role, pw).await;
    }
    let app_url = role_url(&bpg, "dev", "app");
    let c = connect(&app_url).await;
    assert_eq!(query_i64(&c, "SELECT count(*) FROM t").await, 10);
    drop(c);
    let ro_url = role_url(&bpg, "dev", "readonly");
    login(port, "readonly", &password_of(&ro_url))
        .await
        .expect("the rotated password of readonly logs in");
    assert_ne!(password_of(&app_url), password_of(&ro_url));
    // batch may not log in, but its hash was replaced too.
    role_url(&bpg, "dev", "batch");
    let err = bpg.fails(&["url", "dev", "--role", "nopw"]);
    assert!(err.contains("not found") && err.contains("app"), "{err}");
    let err = bpg.fails(&["url", "dev", "--role", "ghost"]);
    assert!(err.contains("\"ghost\" not found"), "{err}");
    // The source is untouched: its passwords still log in there.
    let prod_port = bpg.entry("prod")["port"].as_u64().unwrap();
    login(prod_port, "app", "app-source-password")
        .await
        .expect("the source's own password still works on the source");

    // The secrets file: 0600, the roles and their passwords.
    let secrets = env.home.join("secrets").join("dev.roles");
    let mode = std::fs::metadata(&secrets).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let stored: Value = serde_json::from_slice(&std::fs::read(&secrets).unwrap()).unwrap();
    assert_eq!(stored["roles"]["app"], password_of(&app_url).as_str());
    assert_eq!(stored["roles"].as_object().unwrap().len(), 3, "{stored}");

    // status shows it, in JSON and in text.
    assert_eq!(bpg.entry("dev")["credentials"], "rotate");
    let text = bpg.ok(&["status"]);
    assert!(
        text.lines()
            .any(|l| l.contains("dev") && l.contains("credentials rotate")),
        "{text}"
    );

    // The source's old password hashes are nowhere in the branch's data
    // directory (pg_authid rewritten, the WAL that held them removed),
    // while the source's own data directory holds them (the search finds).
    let dev_dd = bpg.data_dir("dev");
    let prod_dd = bpg.data_dir("prod");
    for (role, hash) in &hashes {
        let f = files_containing(&dev_dd, hash.as_bytes());
        assert!(f.is_empty(), "{role}'s source hash is still in {f:?}");
        assert!(
            !files_containing(&prod_dd, hash.as_bytes()).is_empty(),
            "the search finds {role}'s hash not even in the source"
        );
    }

    // keep (a database's default): the source's passwords log in.
    let k = bpg.json(&["branch", "prod", "kept", "--fast"]);
    assert_eq!(k["credentials"], "keep", "{k}");
    assert_eq!(k["isolation"]["roles_rotated"], serde_json::json!([]));
    let kport = k["branch"]["port"].as_u64().unwrap();
    for (role, pw) in &ROLES[..2] {
        login(kport, role, pw)
            .await
            .unwrap_or_else(|e| panic!("{role} with keep: {e}"));
    }
    assert_eq!(bpg.entry("kept")["credentials"], "keep");
    let err = bpg.fails(&["url", "kept", "--role", "app"]);
    assert!(
        err.contains("keeps its source's role passwords") && err.contains("does not know"),
        "{err}"
    );
    assert!(!env.home.join("secrets").join("kept.roles").exists());

    // A source configured to rotate: its branches rotate by default.
    bpg.ok(&["config", "prod", "--credentials", "rotate"]);
    assert_eq!(bpg.entry("prod")["credentials"], "rotate");
    let cfg = bpg.json(&["branch", "prod", "cfg", "--fast"]);
    assert_eq!(cfg["credentials"], "rotate", "{cfg}");
    refused(
        cfg["branch"]["port"].as_u64().unwrap(),
        "app",
        "app-source-password",
    )
    .await;
    bpg.ok(&["destroy", "cfg"]);

    // A branch of a rotated branch rotates too (and keep is refused there).
    let dev_app_pw = password_of(&app_url);
    let err = bpg.fails(&["branch", "dev", "sub", "--credentials", "keep"]);
    assert!(err.contains("rotate"), "{err}");
    assert!(!env.home.join("secrets").join("sub").exists());
    let s = bpg.json(&["branch", "dev", "sub", "--fast"]);
    assert_eq!(s["credentials"], "rotate", "{s}");
    let sport = s["branch"]["port"].as_u64().unwrap();
    refused(sport, "app", &dev_app_pw).await;
    refused(sport, "app", "app-source-password").await;
    let sub_app = role_url(&bpg, "sub", "app");
    login(sport, "app", &password_of(&sub_app))
        .await
        .expect("sub's own app password");
    bpg.ok(&["destroy", "sub"]);
    assert!(!env.home.join("secrets").join("sub.roles").exists());

    // A reset rotates again: the old branch password no longer logs in.
    let rr = bpg.json(&["reset", "dev"]);
    assert_eq!(rr["credentials"], "rotate", "{rr}");
    let port = rr["branch"]["port"].as_u64().unwrap();
    refused(port, "app", &dev_app_pw).await;
    refused(port, "app", "app-source-password").await;
    let new_app = role_url(&bpg, "dev", "app");
    assert_ne!(password_of(&new_app), dev_app_pw);
    login(port, "app", &password_of(&new_app))
        .await
        .expect("the new password after reset");

    // destroy removes the role passwords.
    bpg.ok(&["destroy", "dev"]);
    assert!(
        !secrets.exists(),
        "{} outlived its branch",
        secrets.display()
    );

    // Every branch and reset line carries the policy, and the masking
    // files with their hashes; url lines name the role.
    let events = bpg.json(&["audit"])["events"].as_array().unwrap().clone();
    let line = |op: &str, branch: &str| -> Vec<Value> {
        events
            .iter()
            .filter(|e| e["operation"] == op && e["branch"] == branch)
            .cloned()
            .collect()
    };
    let want_mask = serde_json::json!([{ "file": mask_s, "sha256": sha256_of(&mask) }]);
    for (op, b) in [("branch", "dev"), ("reset", "dev")] {
        let l = line(op, b);
        assert_eq!(l.len(), 1, "{op} {b}: {events:?}");
        assert_eq!(l[0]["credentials"], "rotate", "{}", l[0]);
        assert_eq!(l[0]["masking"], want_mask, "{}", l[0]);
    }
    // sub inherits dev's masking and rotates; the refused keep is
    // recorded with the policy asked for.
    let subs = line("branch", "sub");
    assert_eq!(subs.len(), 2, "{subs:?}");
    assert_eq!(subs[0]["result"], "error");
    assert_eq!(subs[0]["credentials"], Value::Null, "{}", subs[0]);
    assert_eq!(subs[1]["credentials"], "rotate");
    assert_eq!(subs[1]["masking"], want_mask);
    let kept = line("branch", "kept");
    assert_eq!(kept[0]["credentials"], "keep");
    assert_eq!(kept[0]["masking"], serde_json::json!([]));
    assert!(
        line("url", "dev")
            .iter()
            .any(|e| e["role"] == "app" && e["result"] == "ok"),
        "{events:?}"
    );
    assert!(line("url", "kept")
        .iter()
        .any(|e| e["role"] == "app" && e["result"] == "error"));
    let log = std::fs::read_to_string(env.home.join("audit.log")).unwrap();
    assert!(
        !log.contains(&dev_app_pw) && !log.contains("app-source-password"),
        "a password in the audit log"
    );
    assert_consistent(&env);
}
