//! Isolation items 1, 2 and 5 (docs/safety.md, "Isolation from the source"):
//! what reaches out of a clone (archiving, a standby's upstream and slots,
//! subscriptions, `ALTER SYSTEM` settings that beat betterpg's) is cut off
//! before the branch can run, the branch report says so, foreign servers and
//! pg_cron jobs are listed as warnings, and the branch has a password of its
//! own. Real ZFS, real PostgreSQL 15 servers: a publisher, a source that
//! subscribes to it and archives, and its branches.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use betterpg_testkit::*;
use serde_json::Value;

fn setup() -> TestEnv {
    assert!(
        Path::new("/usr/share/postgresql/15/extension/pg_cron.control").exists()
            && Path::new("/usr/share/postgresql/15/extension/postgres_fdw.control").exists(),
        "pg_cron and postgres_fdw for PostgreSQL 15 are missing: run scripts/setup.sh (installs postgresql-15-cron)"
    );
    TestEnv::initialized("bpgio")
}

/// Run each `; `-separated statement on its own (ALTER SYSTEM refuses to
/// run inside the implicit transaction of a multi-statement query).
async fn exec(url: &str, sql: &str) {
    let c = connect(url).await;
    for stmt in sql.split("; ") {
        c.batch_execute(stmt).await.unwrap_or_else(|e| {
            panic!(
                "{stmt}: {e} {}",
                e.as_db_error().map(|d| d.message()).unwrap_or("")
            )
        });
    }
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn password_of(url: &str) -> String {
    url.split("postgres:")
        .nth(1)
        .unwrap()
        .split('@')
        .next()
        .unwrap()
        .to_string()
}

fn names(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
        .iter()
        .map(|x| match x {
            Value::String(s) => s.clone(),
            o => o["name"].as_str().unwrap_or_default().to_string(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_branch_reaches_nothing_its_source_reached() {
    let env = setup();
    let bpg = Bpg::of(&env);
    bpg.ok(&["create", "pub"]);
    bpg.ok(&["create", "prod"]);
    let pub_url = bpg.ok(&["url", "pub"]).trim().to_string();
    let prod_url = bpg.ok(&["url", "prod"]).trim().to_string();

    // The publisher: a real second server at its own port.
    exec(&pub_url, "ALTER SYSTEM SET wal_level = logical").await;
    bpg.ok(&["stop", "pub"]);
    bpg.ok(&["start", "pub"]);
    exec(
        &pub_url,
        "CREATE TABLE items (id int PRIMARY KEY); CREATE PUBLICATION p FOR TABLE items",
    )
    .await;

    // The source archives into a directory, subscribes to the publisher,
    // holds slots, and was told by ALTER SYSTEM to follow an upstream and
    // to listen everywhere.
    let archive = tempfile::Builder::new()
        .prefix("bpg-archive-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(archive.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let arch = archive.path().display().to_string();
    exec(
        &prod_url,
        &format!(
            "ALTER SYSTEM SET wal_level = logical; \
             ALTER SYSTEM SET archive_mode = on; \
             ALTER SYSTEM SET archive_command = 'test ! -f {arch}/STOP && cp %p {arch}/%f'; \
             ALTER SYSTEM SET shared_preload_libraries = 'pg_cron'; \
             ALTER SYSTEM SET primary_slot_name = 'standby_slot'; \
             ALTER SYSTEM SET primary_conninfo = 'host=127.0.0.1 port={} user=postgres password=upstreamsecret'; \
             ALTER SYSTEM SET listen_addresses = '*'",
            port_of(&pub_url)
        ),
    )
    .await;
    bpg.ok(&["stop", "prod"]);
    bpg.ok(&["start", "prod"]);
    // Item 2 on a database: the ALTER SYSTEM listen address lost.
    assert_eq!(
        query_text(&prod_url, "SHOW listen_addresses").await,
        "127.0.0.1"
    );
    assert_eq!(query_text(&prod_url, "SHOW archive_mode").await, "on");
    exec(
        &prod_url,
        &format!(
            "CREATE TABLE items (id int PRIMARY KEY); \
             CREATE SUBSCRIPTION s CONNECTION 'host=127.0.0.1 port={} user=postgres password={} dbname=postgres' PUBLICATION p; \
             SELECT pg_create_logical_replication_slot('prod_logical', 'pgoutput'); \
             SELECT pg_create_physical_replication_slot('standby_slot'); \
             CREATE EXTENSION postgres_fdw; \
             CREATE SERVER reporting FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'reporting.internal', port '5432', dbname 'app'); \
             CREATE EXTENSION pg_cron; \
             SELECT cron.schedule('nightly', '0 3 * * *', 'DELETE FROM items'); \
             COPY (SELECT 1) TO PROGRAM 'touch standby.signal'",
            port_of(&pub_url),
            password_of(&pub_url)
        ),
    )
    .await;
    exec(&pub_url, "INSERT INTO items SELECT generate_series(1, 10)").await;
    assert!(
        eventually(30, || {
            let out = std::process::Command::new("psql")
                .args([&prod_url, "-Atc", "SELECT count(*) FROM items"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim() == "10"
        })
        .await,
        "the source's subscription never replicated"
    );
    // Listen addresses and ports set later by ALTER SYSTEM are for the branch
    // to ignore (the source is not restarted again).
    exec(&prod_url, "ALTER SYSTEM SET port = 5999; ALTER SYSTEM SET ssl_cert_file = '/etc/ssl/certs/ssl-cert-snakeoil.pem'").await;

    // An archiving backlog: the archive refuses for a while, so the source
    // has segments marked .ready.
    std::fs::write(archive.path().join("STOP"), "").unwrap();
    exec(
        &prod_url,
        "INSERT INTO items VALUES (100); SELECT pg_switch_wal()",
    )
    .await;
    let status_dir = Bpg::of(&env).data_dir("prod").join("pg_wal/archive_status");
    let ready = |dir: &Path| {
        std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".ready"))
                    .count()
            })
            .unwrap_or(0)
    };
    assert!(ready(&status_dir) > 0, "no archiving backlog on the source");

    let report = bpg.json(&["branch", "prod", "dev"]);
    let iso = &report["isolation"];
    let dev_url = report["branch"]["url"].as_str().unwrap().to_string();

    // Item 1: a read-write primary of its own, no archiving, no upstream.
    assert_eq!(
        query_text(&dev_url, "SELECT pg_is_in_recovery()").await,
        "f"
    );
    assert_eq!(query_text(&dev_url, "SHOW archive_mode").await, "off");
    assert_eq!(query_text(&dev_url, "SHOW primary_conninfo").await, "");
    assert_eq!(query_text(&dev_url, "SHOW primary_slot_name").await, "");
    assert_eq!(query_text(&dev_url, "SHOW ssl").await, "off");
    assert_eq!(
        query_text(&dev_url, "SELECT count(*) FROM pg_replication_slots").await,
        "0"
    );
    assert_eq!(
        query_text(&dev_url, "SELECT subenabled::text || '/' || coalesce(subslotname::text, 'NONE') FROM pg_subscription WHERE subname = 's'").await,
        "false/NONE"
    );
    let dd = Bpg::of(&env).data_dir("dev");
    assert!(!dd.join("standby.signal").exists());
    assert_eq!(ready(&dd.join("pg_wal/archive_status")), 0);
    // Item 2: betterpg's address and port won over ALTER SYSTEM.
    assert_eq!(
        query_text(&dev_url, "SHOW listen_addresses").await,
        "127.0.0.1"
    );
    assert_eq!(
        query_text(&dev_url, "SHOW port").await,
        port_of(&dev_url).to_string()
    );

    // The report says what was detached, with no password in it.
    let removed = names(iso, "settings_removed");
    for s in [
        "primary_conninfo",
        "primary_slot_name",
        "archive_mode",
        "archive_command",
        "port",
        "ssl_cert_file",
    ] {
        assert!(removed.contains(&s.to_string()), "{s} not in {removed:?}");
    }
    assert!(
        !report.to_string().contains("upstreamsecret"),
        "a password in the report: {report}"
    );
    let slots = names(iso, "replication_slots_dropped");
    assert!(
        slots.contains(&"prod_logical".into()) && slots.contains(&"standby_slot".into()),
        "{slots:?}"
    );
    let files = names(iso, "files_removed");
    assert!(files.contains(&"standby.signal".into()), "{files:?}");
    assert!(files.iter().any(|f| f.ends_with(".ready")), "{files:?}");
    let subs = &iso["subscriptions_detached"];
    assert_eq!(subs[0]["name"], "s");
    assert_eq!(subs[0]["database"], "postgres");
    assert_eq!(subs[0]["slot_name"], "s");
    assert_eq!(iso["password_replaced"], true);
    let warnings = iso["warnings"].as_array().unwrap();
    assert!(
        warnings.iter().any(|w| w["kind"] == "foreign_server"
            && w["name"] == "reporting"
            && w["detail"].as_str().unwrap().contains("reporting.internal")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w["kind"] == "pg_cron_job" && w["name"] == "nightly"),
        "{warnings:?}"
    );

    // Human output says the same.
    let text = bpg.ok(&["branch", "prod", "dev2"]);
    assert!(text.contains("detached from the source:"), "{text}");
    assert!(
        text.contains("subscription s in database postgres disabled and detached from slot s"),
        "{text}"
    );
    assert!(text.contains("warning: foreign server reporting"), "{text}");
    assert!(text.contains("warning: pg_cron job nightly"), "{text}");

    // The publisher still serves only the source: one walsender for s.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        query_text(&pub_url, "SELECT count(*) FROM pg_stat_replication").await,
        "1"
    );
    exec(&pub_url, "INSERT INTO items VALUES (11)").await;
    // (the source now has 10 replicated rows, its own row 100 and row 11)
    assert!(
        eventually(30, || {
            let out = std::process::Command::new("psql")
                .args([&prod_url, "-Atc", "SELECT count(*) FROM items"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim() == "12"
        })
        .await,
        "the source's subscription broke after branching"
    );
    assert_eq!(
        query_text(&dev_url, "SELECT count(*) FROM items").await,
        "11"
    );

    // The source's archive works again and catches up; then the branch
    // writes and switches WAL: nothing of it reaches the archive.
    std::fs::remove_file(archive.path().join("STOP")).unwrap();
    assert!(
        eventually(60, || ready(&status_dir) == 0).await,
        "the source did not catch up with its archive"
    );
    let before: Vec<_> = std::fs::read_dir(archive.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    for _ in 0..3 {
        exec(&dev_url, "CREATE TABLE IF NOT EXISTS w AS SELECT 1 AS x; INSERT INTO w SELECT generate_series(1, 1000); SELECT pg_switch_wal()").await;
    }
    exec(&dev_url, "CHECKPOINT").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut after: Vec<_> = std::fs::read_dir(archive.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    after.retain(|f| !before.contains(f));
    assert!(
        after.is_empty(),
        "the branch archived into the source's archive: {after:?}"
    );

    // Item 5: a password of its own; the source's does not log in.
    let prod_pw = password_of(&prod_url);
    let dev_pw = password_of(&dev_url);
    assert_ne!(prod_pw, dev_pw);
    let with_source_pw = dev_url.replace(&dev_pw, &prod_pw);
    let err = tokio_postgres::connect(&with_source_pw, tokio_postgres::NoTls)
        .await
        .err()
        .expect("the source's password must not open the branch");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD),
        "{err}"
    );
    // ... while it still opens the source, and the branch's own opens the branch.
    assert_eq!(query_text(&prod_url, "SELECT 1").await, "1");
    assert_eq!(query_text(&dev_url, "SELECT 1").await, "1");
    // Reset keeps the URL (password included); a branch of a branch gets
    // yet another password.
    let reset = bpg.json(&["reset", "dev"]);
    assert_eq!(reset["branch"]["url"].as_str().unwrap(), dev_url);
    assert_eq!(query_text(&dev_url, "SELECT 1").await, "1");
    assert_eq!(reset["isolation"]["password_replaced"], true);
    let r2 = bpg.json(&["branch", "dev", "dev-child"]);
    let child_url = r2["branch"]["url"].as_str().unwrap().to_string();
    assert_ne!(password_of(&child_url), dev_pw);
    // (dev was reset to the source's current 12 rows)
    assert_eq!(
        query_text(&child_url, "SELECT count(*) FROM items").await,
        "12"
    );

    // Item 2 on later starts: ALTER SYSTEM on the branch itself loses too.
    exec(
        &dev_url,
        "ALTER SYSTEM SET listen_addresses = '*'; ALTER SYSTEM SET archive_mode = on",
    )
    .await;
    // ... and so does its superuser editing betterpg.conf (the server
    // user's file): it is written anew at every start.
    exec(
        &dev_url,
        "COPY (SELECT $$listen_addresses = '*'$$) TO PROGRAM 'cat >> betterpg.conf'",
    )
    .await;
    bpg.ok(&["stop", "dev"]);
    bpg.ok(&["start", "dev"]);
    assert_eq!(
        query_text(&dev_url, "SHOW listen_addresses").await,
        "127.0.0.1"
    );
    assert_eq!(query_text(&dev_url, "SHOW archive_mode").await, "off");

    // Clean the source's planted standby.signal before anything restarts it.
    let _ = std::fs::remove_file(Bpg::of(&env).data_dir("prod").join("standby.signal"));
    bpg.ok(&["destroy", "prod", "--force"]);
    bpg.ok(&["destroy", "pub", "--force"]);
}
