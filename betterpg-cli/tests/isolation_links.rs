//! Isolation item 6 (docs/safety.md): whoever holds a branch's URL can act
//! as the server's OS user and plant symbolic links in its data directory;
//! betterpg, running as root, must never follow them on the next branch,
//! reset or start. Real ZFS, real PostgreSQL 15: the links are planted
//! through SQL (`COPY ... TO PROGRAM`), as an attacker would.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;

use betterpg_testkit::*;

/// Files outside every data directory, owned by root: content, owner and
/// mode must never change.
struct Victims {
    dir: tempfile::TempDir,
}

impl Victims {
    fn new() -> Victims {
        let dir = tempfile::Builder::new()
            .prefix("bpg-victim-")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        for f in ["conf", "label", "auto", "map", "signal"] {
            let p = dir.path().join(f);
            std::fs::write(&p, format!("victim {f}\n")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        std::fs::create_dir(dir.path().join("status")).unwrap();
        std::fs::write(dir.path().join("status/keep.ready"), "victim\n").unwrap();
        Victims { dir }
    }

    fn path(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }

    fn assert_untouched(&self, when: &str) {
        for f in ["conf", "label", "auto", "map", "signal"] {
            let p = self.path(f);
            let m = std::fs::metadata(&p).unwrap_or_else(|e| panic!("{when}: {f} gone: {e}"));
            assert_eq!(
                std::fs::read_to_string(&p).unwrap(),
                format!("victim {f}\n"),
                "{when}: {f} was written through a link"
            );
            assert_eq!(m.uid(), 0, "{when}: {f} was chowned through a link");
            assert_eq!(
                m.mode() & 0o7777,
                0o644,
                "{when}: {f} was chmodded through a link"
            );
        }
        assert!(
            self.path("status/keep.ready").exists(),
            "{when}: a file was deleted through a linked directory"
        );
    }
}

/// Plant links in `name`'s data directory as its server's OS user would.
async fn plant(url: &str, v: &Victims) {
    let cmd = format!(
        "ln -sfn {conf} betterpg.conf && ln -sfn {label} backup_label && \
         ln -sfn {auto} postgresql.auto.conf && ln -sfn {map} tablespace_map && \
         ln -sfn {signal} standby.signal && \
         mv pg_wal/archive_status pg_wal/archive_status.real && ln -sfn {status} pg_wal/archive_status",
        conf = v.path("conf").display(),
        label = v.path("label").display(),
        auto = v.path("auto").display(),
        map = v.path("map").display(),
        signal = v.path("signal").display(),
        status = v.path("status").display(),
    );
    connect(url)
        .await
        .batch_execute(&format!("COPY (SELECT 1) TO PROGRAM '{cmd}'"))
        .await
        .unwrap_or_else(|e| panic!("planting links: {e}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn planted_links_are_never_followed() {
    let env = TestEnv::plan("bpgil");
    init(&env, "1G");
    let bpg = Bpg::of(&env);
    let victims = Victims::new();
    bpg.ok(&["create", "prod"]);
    let evil = bpg.json(&["branch", "prod", "evil"]);
    let evil_url = evil["branch"]["url"].as_str().unwrap().to_string();
    plant(&evil_url, &victims).await;
    assert!(
        std::fs::symlink_metadata(Bpg::of(&env).data_dir("evil").join("betterpg.conf"))
            .unwrap()
            .file_type()
            .is_symlink()
    );

    // Branch the planted server (running: backup mode, label, WAL copy).
    let r = bpg.json(&["branch", "evil", "copy"]);
    victims.assert_untouched("branch of a running source");
    let copy_dd = Bpg::of(&env).data_dir("copy");
    for f in ["betterpg.conf", "backup_label.old", "postgresql.auto.conf"] {
        let m = std::fs::symlink_metadata(copy_dd.join(f));
        assert!(
            m.as_ref()
                .map(|m| m.file_type().is_file())
                .unwrap_or(f == "backup_label.old"),
            "{f} in the branch is not a plain file: {m:?}"
        );
    }
    assert!(!copy_dd.join("standby.signal").exists());
    let copy_url = r["branch"]["url"].as_str().unwrap().to_string();
    assert_eq!(
        query_i64(&connect(&copy_url).await, "SELECT 1::bigint").await,
        1
    );
    let removed = r["isolation"]["settings_removed"].to_string();
    assert!(removed.contains("postgresql.auto.conf"), "{removed}");

    // --fast, reset, and a stop/start of the planted server itself.
    bpg.ok(&["branch", "evil", "copy-fast", "--fast"]);
    victims.assert_untouched("--fast branch");
    bpg.ok(&["reset", "copy"]);
    victims.assert_untouched("reset");
    bpg.ok(&["stop", "evil"]);
    victims.assert_untouched("stop");
    // The planted tablespace_map link makes start refuse before it touches
    // anything (the tablespace check); nothing outside was written.
    let o = bpg.run(&["start", "evil"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("tablespace_map is not a regular file"),
        "start of the planted server: {err}"
    );
    victims.assert_untouched("start");
    // And a branch of the stopped, planted server.
    let _ = bpg.run(&["branch", "evil", "copy-stopped"]);
    victims.assert_untouched("branch of a stopped source");

    bpg.ok(&["destroy", "prod", "--force"]);
    victims.assert_untouched("destroy");
}
