//! Files of a cluster: `initdb`, betterpg's settings file, and turning a
//! clone of another cluster into a data directory that can start on its own.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tokio::process::Command;

use super::binaries::PgBin;
use super::datadir::DataDir;
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
        let mut f = crate::util::create_private_file(&pwfile)?;
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
        return Err(Error::postgres(format!(
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

/// Which variant of `betterpg.conf` an instance gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Profile {
    /// A database: only port and addresses are betterpg's.
    Database,
    /// A branch: also cut off from its source's archive, upstream and
    /// TLS identity (see [`crate::pg::isolate`]), and small in memory.
    Branch(BranchMemory),
    /// A branch's first, private start: no TCP listener, a Unix socket in
    /// `socket_dir` (which only root and the server user can enter), and
    /// that directory's `pg_hba.conf`, which lets only that socket in.
    Private {
        /// The private socket directory.
        socket_dir: std::path::PathBuf,
        /// The server's major version (which names its WAL-keeping
        /// setting).
        pg_major: u32,
    },
    /// A replica (`follow`): a standby streaming from a remote primary,
    /// reached by betterpg through a Unix socket in `dir` (the replica's
    /// own directory outside the data directory, which holds its
    /// `pg_hba.conf` too), and on TCP by clients with the primary's roles.
    Replica {
        /// The replica's directory (socket, `pg_hba.conf`, passfile).
        dir: std::path::PathBuf,
        /// `primary_conninfo`: where the primary is, with a passfile,
        /// never a password.
        conninfo: String,
        /// `primary_slot_name` (empty: none).
        slot: String,
    },
}

/// The memory settings of a branch's server. Many branches of one source
/// run side by side, so a branch starts small (PostgreSQL's own defaults,
/// 128 MB of shared buffers and 100 connections, would make a hundred idle
/// branches reserve 12.5 GiB of shared memory); the settings
/// `branch_shared_buffers` and `branch_max_connections` of its source (or
/// of the branch itself, from its next start) raise them. A value the
/// source set with `ALTER SYSTEM` still wins (postgresql.auto.conf is read
/// last).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BranchMemory {
    /// `shared_buffers`, bytes (`wal_buffers` follows it: 1/32).
    pub shared_buffers: u64,
    /// `max_connections`.
    pub max_connections: u32,
}

/// A branch's `shared_buffers` unless its settings say otherwise.
pub const DEFAULT_BRANCH_SHARED_BUFFERS: u64 = 32 << 20;
/// A branch's `max_connections` unless its settings say otherwise.
pub const DEFAULT_BRANCH_MAX_CONNECTIONS: u32 = 25;

impl Default for BranchMemory {
    fn default() -> Self {
        BranchMemory {
            shared_buffers: DEFAULT_BRANCH_SHARED_BUFFERS,
            max_connections: DEFAULT_BRANCH_MAX_CONNECTIONS,
        }
    }
}

impl BranchMemory {
    /// The lines of `betterpg.conf` that set them.
    fn conf(&self) -> String {
        format!(
            "# A branch is small in memory (settings branch_shared_buffers,\n\
             # branch_max_connections raise it).\n\
             shared_buffers = '{}kB'\n\
             max_connections = {}\n",
            self.shared_buffers.div_ceil(1024),
            self.max_connections
        )
    }
}

/// A value for a configuration file, single-quoted; refused when it holds
/// a line break (which no setting needs).
fn conf_quote(what: &str, v: &str) -> Result<String> {
    if v.contains('\n') || v.contains('\r') {
        return Err(Error::Config(format!(
            "invalid {what}: a line break in {v:?}"
        )));
    }
    Ok(format!("'{}'", v.replace('\\', "\\\\").replace('\'', "''")))
}

/// Settings every branch runs with whatever its source said: a branch
/// shares its source's system identifier and WAL file names, so if it
/// archived it would write into the source's archive; a `primary_conninfo`
/// would make it follow (and hold a slot on) the source's primary; the
/// source's certificate would let it pose as the source.
const BRANCH_SETTINGS: &str =
    "# A branch is cut off from its source (betterpg's isolation rules).\n\
archive_mode = off\n\
primary_conninfo = ''\n\
primary_slot_name = ''\n\
ssl = off\n";

/// Settings of the private start: nothing its sessions run is logged (a
/// masking script reads and writes personal data) or kept in
/// `pg_stat_statements`; followed by a setting that keeps no WAL beyond
/// what recovery needs, so that a checkpoint after masking removes every
/// segment written before it (DESIGN.md section 8).
const PRIVATE_QUIET: &str = "# Nothing of the private sessions is logged or kept.\n\
log_statement = 'none'\n\
log_min_duration_statement = -1\n\
log_min_error_statement = panic\n\
log_duration = off\n\
log_connections = off\n\
log_disconnections = off\n\
log_lock_waits = off\n\
log_autovacuum_min_duration = -1\n\
pg_stat_statements.track = 'none'\n\
pg_stat_statements.save = off\n";

/// Write `betterpg.conf`: the settings that differ per instance. It is
/// included last by `postgresql.conf`, and the same names are stripped from
/// `postgresql.auto.conf` (see [`crate::pg::isolate::enforce_owned_settings`]),
/// so these values win.
pub fn write_settings(
    dd: &DataDir,
    user: &OsUser,
    port: u16,
    listen: &str,
    profile: &Profile,
) -> Result<()> {
    write_settings_with(dd, user, port, listen, profile, "")
}

/// [`write_settings`] with `more` lines at the end (a database's WAL
/// archiving, a branch's point-in-time recovery): betterpg's own text,
/// never anything a user typed.
pub fn write_settings_with(
    dd: &DataDir,
    user: &OsUser,
    port: u16,
    listen: &str,
    profile: &Profile,
    more: &str,
) -> Result<()> {
    if listen.contains('\'') || listen.contains('\n') {
        return Err(Error::Config(format!("invalid listen address {listen:?}")));
    }
    let (listen, sockets, extra) = match profile {
        Profile::Database => (listen.to_string(), String::new(), String::new()),
        Profile::Branch(memory) => (
            listen.to_string(),
            String::new(),
            format!("{BRANCH_SETTINGS}{}", memory.conf()),
        ),
        Profile::Replica {
            dir,
            conninfo,
            slot,
        } => {
            let d = dir.to_string_lossy();
            if d.contains('\'') || d.contains('\n') {
                return Err(Error::Config(format!(
                    "invalid replica directory {d:?}: use a home path without quotes"
                )));
            }
            (
                listen.to_string(),
                d.to_string(),
                format!(
                    "# A replica of a remote primary (bpg follow): read-only.\n\
                     archive_mode = off\n\
                     ssl = off\n\
                     hot_standby = on\n\
                     hba_file = {}\n\
                     primary_conninfo = {}\n\
                     primary_slot_name = {}\n\
                     recovery_target_timeline = 'latest'\n",
                    conf_quote("directory", &format!("{d}/pg_hba.conf"))?,
                    conf_quote("primary_conninfo", conninfo)?,
                    conf_quote("slot", slot)?,
                ),
            )
        }
        Profile::Private {
            socket_dir,
            pg_major,
        } => {
            let dir = socket_dir.to_string_lossy();
            if dir.contains('\'') || dir.contains('\n') {
                return Err(Error::Config(format!(
                    "invalid socket directory {dir:?}: use a home path without quotes"
                )));
            }
            (
                String::new(),
                dir.to_string(),
                format!(
                    "{BRANCH_SETTINGS}# First, private start: only betterpg can connect.\n\
                     hba_file = '{dir}/pg_hba.conf'\n\
                     {PRIVATE_QUIET}\
                     {keep} = 0\n",
                    keep = if *pg_major < 13 {
                        "wal_keep_segments"
                    } else {
                        "wal_keep_size"
                    }
                ),
            )
        }
    };
    let text = format!(
        "# Written by betterpg for this instance; rewritten on every branch.\n\
         port = {port}\n\
         listen_addresses = '{listen}'\n\
         # No Unix socket: every client uses TCP with a password.\n\
         unix_socket_directories = '{sockets}'\n\
         # Copy-on-write storage: pre-zeroing and recycling WAL files only\n\
         # costs space and time there (see the PostgreSQL docs on both).\n\
         wal_init_zero = off\n\
         wal_recycle = off\n\
         # Before crash or backup recovery, sync the data directory with one\n\
         # syncfs() instead of an fsync() per file: a fresh clone is already\n\
         # durable, and the per-file walk was the largest part of a branch's\n\
         # start (PostgreSQL 14+).\n\
         recovery_init_sync_method = syncfs\n\
         {extra}{more}"
    );
    dd.write(SETTINGS_FILE, text.as_bytes(), Some(user), 0o600)
}

/// Write a file into the data directory owned by the server user, 0600,
/// synced (recovery reads `backup_label` first, and the server's own
/// pre-recovery sync is one syncfs() that betterpg does not rely on).
pub fn write_owned(dd: &DataDir, name: &str, content: &[u8], user: &OsUser) -> Result<()> {
    dd.write(name, content, Some(user), 0o600)
}

/// chmod helper with a path in the error.
pub fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(format!("chmod {:o} {}", mode, path.display()), e))
}
