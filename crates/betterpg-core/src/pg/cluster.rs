//! Files of a cluster: `initdb`, betterpg's settings file, and turning a
//! clone of another cluster into a data directory that can start on its own.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tokio::process::Command;

use super::binaries::PgBin;
use crate::error::{Error, Result};
use crate::osuser::OsUser;

/// Name of the settings file betterpg owns inside each data directory.
/// `postgresql.conf` includes it last, so it wins over the file's own values.
pub const SETTINGS_FILE: &str = "betterpg.conf";

/// Run `initdb` as `user` into `data_dir` with a scram-sha-256 superuser
/// `postgres` whose password is `password`. Local (socket) and TCP access
/// both require the password: trust is configured nowhere.
pub async fn initdb(bin: &PgBin, user: &OsUser, data_dir: &Path, password: &str) -> Result<()> {
    let parent = data_dir
        .parent()
        .ok_or_else(|| Error::Internal("data dir has no parent".into()))?;
    fs::create_dir_all(data_dir)
        .map_err(|e| Error::io(format!("creating {}", data_dir.display()), e))?;
    user.chown(data_dir)?;
    set_mode(data_dir, 0o700)?;
    // The password file must be readable by the server user only, and gone
    // right after initdb.
    let pwfile = parent.join(".betterpg-pw");
    {
        use std::io::Write;
        let _ = fs::remove_file(&pwfile);
        let mut f = crate::home::create_private_file(&pwfile)?;
        f.write_all(password.as_bytes())
            .map_err(|e| Error::io(format!("writing {}", pwfile.display()), e))?;
    }
    user.chown(&pwfile)?;
    let mut cmd = Command::new(bin.tool("initdb"));
    cmd.arg("-D")
        .arg(data_dir)
        .args([
            "-U",
            "postgres",
            "-A",
            "scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
            "-k",
        ])
        .arg(format!("--pwfile={}", pwfile.display()))
        .current_dir(parent)
        .kill_on_drop(true);
    user.apply(&mut cmd);
    let out = cmd.output().await;
    let _ = fs::remove_file(&pwfile);
    let out = out.map_err(|e| Error::io(format!("running {}", bin.tool("initdb").display()), e))?;
    if !out.status.success() {
        return Err(Error::Postgres(format!(
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .last()
                .map(|l| format!(" / {l}"))
                .unwrap_or_default()
        )));
    }
    let conf = data_dir.join("postgresql.conf");
    let mut text = fs::read_to_string(&conf)
        .map_err(|e| Error::io(format!("reading {}", conf.display()), e))?;
    text.push_str(&format!(
        "\n# Added by betterpg: per-instance settings (port, listen address).\ninclude_if_exists = '{SETTINGS_FILE}'\n"
    ));
    fs::write(&conf, text).map_err(|e| Error::io(format!("writing {}", conf.display()), e))?;
    Ok(())
}

/// Write `betterpg.conf`: the settings that differ per instance.
pub fn write_settings(data_dir: &Path, user: &OsUser, port: u16, listen: &str) -> Result<()> {
    if listen.contains('\'') || listen.contains('\n') {
        return Err(Error::Config(format!("invalid listen address {listen:?}")));
    }
    let text = format!(
        "# Written by betterpg for this instance; rewritten on every branch.\n\
         port = {port}\n\
         listen_addresses = '{listen}'\n\
         # No Unix socket: every client uses TCP with a password.\n\
         unix_socket_directories = ''\n\
         # Copy-on-write storage: pre-zeroing and recycling WAL files only\n\
         # costs space and time there (see the PostgreSQL docs on both).\n\
         wal_init_zero = off\n\
         wal_recycle = off\n\
         # Before crash or backup recovery, sync the data directory with one\n\
         # syncfs() instead of an fsync() per file: a fresh clone is already\n\
         # durable, and the per-file walk was the largest part of a branch's\n\
         # start (PostgreSQL 14+).\n\
         recovery_init_sync_method = syncfs\n"
    );
    let path = data_dir.join(SETTINGS_FILE);
    fs::write(&path, text).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    user.chown(&path)?;
    set_mode(&path, 0o600)
}

/// Make a cloned data directory independent of its source: drop the
/// source's pid/opts files (the source's pid may be alive, which would make
/// the branch refuse to start) and its replication slots (a branch must not
/// hold WAL for the source's consumers).
pub fn detach_clone(data_dir: &Path) -> Result<()> {
    for f in ["postmaster.pid", "postmaster.opts"] {
        let p = data_dir.join(f);
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("removing {}", p.display()), e)),
        }
    }
    let slots = data_dir.join("pg_replslot");
    if let Ok(rd) = fs::read_dir(&slots) {
        for e in rd.flatten() {
            let p = e.path();
            let r = if p.is_dir() {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
            r.map_err(|e| Error::io(format!("removing slot {}", p.display()), e))?;
        }
    }
    Ok(())
}

/// Write a file into the data directory owned by the server user, 0600.
pub fn write_owned(data_dir: &Path, name: &str, content: &[u8], user: &OsUser) -> Result<()> {
    use std::io::Write;
    let path = data_dir.join(name);
    // Synced: recovery reads backup_label first, and the server's own
    // pre-recovery sync is one syncfs() that betterpg does not rely on.
    let mut f = fs::File::create(&path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    f.write_all(content)
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    user.chown(&path)?;
    set_mode(&path, 0o600)
}

/// chmod helper with a path in the error.
pub fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(format!("chmod {:o} {}", mode, path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_removes_pid_opts_and_slots() {
        let d = tempfile::tempdir().unwrap();
        let dd = d.path();
        fs::write(dd.join("postmaster.pid"), "1").unwrap();
        fs::write(dd.join("postmaster.opts"), "x").unwrap();
        fs::create_dir_all(dd.join("pg_replslot/slot1")).unwrap();
        fs::write(dd.join("pg_replslot/slot1/state"), "s").unwrap();
        fs::write(dd.join("PG_VERSION"), "15").unwrap();
        detach_clone(dd).unwrap();
        assert!(!dd.join("postmaster.pid").exists());
        assert!(!dd.join("postmaster.opts").exists());
        assert_eq!(fs::read_dir(dd.join("pg_replslot")).unwrap().count(), 0);
        assert!(dd.join("PG_VERSION").exists());
        detach_clone(dd).unwrap();
    }
}
