//! `follow`: a local streaming standby (a replica) of a remote primary, on
//! its own dataset, so that branches are made from it and never from
//! production (DESIGN.md section 7).
//!
//! The steps: reserve the name; write the password into the replica's own
//! passfile (0600, outside the data directory); ask the primary who it is
//! over a replication connection (system identifier, version); pick local
//! binaries of its major version; create or reuse the slot when asked;
//! create `ROOT/NAME`; `pg_basebackup -X stream` into it (progress reported
//! to the caller); make it a standby (`standby.signal`, `primary_conninfo`
//! with the passfile, `primary_slot_name`, `recovery_target_timeline =
//! latest`, in betterpg's own settings file); start it on its own port on
//! the listen address. Any failure undoes every step (the server stopped,
//! the dataset destroyed, a slot it created dropped, the files removed, the
//! reservation dropped); `gc` removes what a killed `follow` left.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::start::start_on_free_port;
use super::status::{self, Info};
use crate::catalog::{Entry, Kind, Settings, State, Upstream, PGDATA_SUBDIR};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::fault;
use crate::name::validate_name;
use crate::pg::cluster;
use crate::pg::datadir::DataDir;
use crate::pg::isolate::{enforce_owned_settings, Target as ConfTarget};
use crate::pg::upstream::{self, Replication, Target};
use crate::pg::PgBin;
use crate::storage::destroy_with_retry;
use crate::util::now_unix;

/// How long a question to the primary may take.
pub(crate) const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(15);

/// Progress of a base backup, as `follow` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FollowProgress {
    /// Bytes received so far.
    pub bytes_done: u64,
    /// Bytes the primary estimated in all.
    pub bytes_total: u64,
    /// Bytes per second since the backup began.
    pub bytes_per_sec: f64,
}

/// A callback receiving base-backup progress.
pub type ProgressFn = Arc<dyn Fn(FollowProgress) + Send + Sync>;

/// Options of [`crate::BranchManager::follow`].
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct FollowOptions {
    /// The primary: a libpq URL or `key=value` string for a role with
    /// `REPLICATION`. The password may be in it; never printed.
    pub from: String,
    /// A file holding the password (its first line), when the URL has none.
    /// Else `PGPASSFILE` (a libpq passfile) is looked up.
    pub password_file: Option<PathBuf>,
    /// A physical replication slot on the primary (created when missing,
    /// else reused): the primary keeps the WAL the replica has not
    /// received, also while it is down.
    pub slot: Option<String>,
    /// Local PostgreSQL bin directory; by default found for the primary's
    /// major version.
    pub pg_bin: Option<PathBuf>,
    /// Called with the base backup's progress (none by default).
    pub progress: Option<ProgressFn>,
    /// Rebuild the existing replica `name` instead of making one: a new
    /// base backup of the current primary (`from`, the password and `slot`
    /// default to the stored ones when empty/`None`) into a new dataset
    /// that takes the replica's place, while the old replica's branches
    /// keep running on its retired dataset (see `docs/sources.md`).
    pub rebuild: bool,
    /// Policies for the replica's branches, set as with
    /// [`crate::BranchManager::configure`] (`mask`, `mask_rules`,
    /// `forbid_unmasked`, `credentials`, ...): parsed (and the files found)
    /// before anything is made, recorded with the replica, so that no branch
    /// of it is ever made without them.
    pub settings: Vec<(String, String)>,
}

impl FollowOptions {
    /// Options following the primary at `from`.
    pub fn new(from: impl Into<String>) -> Self {
        FollowOptions {
            from: from.into(),
            ..Default::default()
        }
    }
}

impl std::fmt::Debug for FollowOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FollowOptions")
            .field("from", &crate::pg::isolate::redact(&self.from))
            .field("password_file", &self.password_file)
            .field("slot", &self.slot)
            .field("pg_bin", &self.pg_bin)
            .field("progress", &self.progress.is_some())
            .field("rebuild", &self.rebuild)
            .finish()
    }
}

/// What [`crate::BranchManager::follow`] returns.
#[derive(Debug, Clone, Serialize)]
pub struct FollowReport {
    /// The replica, started.
    pub replica: Info,
    /// The primary, `host:port`.
    pub upstream: String,
    /// The primary's system identifier.
    pub system_id: String,
    /// The slot used on the primary, if any.
    pub slot: Option<String>,
    /// True when `follow` created that slot (else it existed).
    pub slot_created: bool,
    /// Bytes of the base backup.
    pub backup_bytes: u64,
    /// Whole call, milliseconds.
    pub total_millis: f64,
    /// A rebuild: where the old replica's data went, kept (hidden) while
    /// branches of it run and removed by `gc` after them; `None` when no
    /// branch needed it (then it was destroyed) and for a new replica.
    pub retired_dataset: Option<String>,
}

/// Check a slot name as PostgreSQL does: lower-case letters, digits and
/// underscores, at most 63.
pub(crate) fn validate_slot(slot: &str) -> Result<()> {
    if slot.is_empty()
        || slot.len() > 63
        || !slot
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(Error::Config(format!(
            "invalid slot name {slot:?}: use 1-63 lower-case letters, digits and underscores"
        )));
    }
    Ok(())
}

/// The password for `t`: from the URL, else `--password-file`, else the
/// passfile named by `PGPASSFILE`; `None` when there is none (a primary
/// that trusts the role).
pub(crate) fn password_for(t: &Target, opts: &FollowOptions) -> Result<Option<String>> {
    if let Some(p) = &t.password {
        return Ok(Some(p.clone()));
    }
    if let Some(f) = &opts.password_file {
        let text = std::fs::read_to_string(f)
            .map_err(|e| Error::io(format!("reading the password file {}", f.display()), e))?;
        let pw = text.lines().next().unwrap_or_default().to_string();
        if pw.is_empty() {
            return Err(Error::Config(format!(
                "the password file {} is empty: put the password on its first line",
                f.display()
            )));
        }
        return Ok(Some(pw));
    }
    if let Some(f) = std::env::var_os("PGPASSFILE").filter(|f| !f.is_empty()) {
        let text = std::fs::read_to_string(&f).map_err(|e| {
            Error::io(
                format!("reading PGPASSFILE {}", PathBuf::from(&f).display()),
                e,
            )
        })?;
        return Ok(upstream::password_from_passfile(
            &text, &t.host, t.port, &t.user,
        ));
    }
    Ok(None)
}

/// What has been made, to undo on failure.
#[derive(Default)]
struct Made {
    dir: bool,
    slot: Option<(Replication, String)>,
    dataset: bool,
    started: Option<crate::runtime::InstanceSpec>,
}

/// Follow the primary at `opts.from` as the replica `name`.
pub(crate) async fn follow(ctx: &Context, name: &str, opts: FollowOptions) -> Result<FollowReport> {
    debug_assert!(!opts.rebuild, "the facade sends --rebuild to ops::rebuild");
    let t0 = Instant::now();
    validate_name(name)?;
    let target = Target::parse(&opts.from)?;
    if let Some(s) = &opts.slot {
        validate_slot(s)?;
    }
    let password = password_for(&target, &opts)?;
    let settings = Settings::default().apply_all(&opts.settings)?;
    // Any local psql speaks to the primary; its version is learnt first.
    let psql_bin = PgBin::discover(ctx.config.pg_bin.as_deref(), None)?;
    let dir = ctx.home.replica_dir(name);
    // The server's Unix socket lives there: its path has ~107 bytes.
    let sock_len = dir.as_os_str().len() + "/.s.PGSQL.65535".len();
    if sock_len > 107 {
        return Err(Error::Config(format!(
            "the replica's socket path {}/.s.PGSQL.PORT would be {sock_len} bytes, over the 107 a Unix socket may have: use a shorter home path or name",
            dir.display()
        )));
    }
    let mut entry = ctx.reserve(Entry {
        name: name.to_string(),
        kind: Kind::Replica,
        parent: None,
        dataset: ctx.dataset_for(name),
        snapshot: None,
        port: 0,
        runtime: "native".into(),
        image: None,
        mode: None,
        pg_bin: psql_bin.dir.clone(),
        pg_major: psql_bin.major,
        created_at: now_unix(),
        upstream: None,
        state: State::Ready,
        settings,
        data_subdir: None,
        attached: None,
        lifecycle: Default::default(),
        os_uid: None,
        rewindable: false,
    })?;
    let mut made = Made::default();
    let result = follow_inner(
        ctx,
        &mut entry,
        &target,
        password.as_deref(),
        &psql_bin,
        &opts,
        &mut made,
    )
    .await;
    match result {
        Ok(bytes) => {
            ctx.mark_ready(name)?;
            let u = entry.upstream.clone().unwrap_or_else(|| unreachable!());
            Ok(FollowReport {
                replica: status::info(ctx, name).await?,
                upstream: target.address(),
                system_id: u.system_id,
                slot: u.slot,
                slot_created: u.slot_created,
                backup_bytes: bytes,
                total_millis: t0.elapsed().as_secs_f64() * 1000.0,
                retired_dataset: None,
            })
        }
        Err(e) => {
            undo(ctx, name, &entry, made).await;
            Err(e)
        }
    }
}

async fn follow_inner(
    ctx: &Context,
    entry: &mut Entry,
    target: &Target,
    password: Option<&str>,
    psql_bin: &PgBin,
    opts: &FollowOptions,
    made: &mut Made,
) -> Result<u64> {
    let name = entry.name.clone();
    let dir = ctx.home.replica_dir(&name);
    make_replica_dir(ctx, &dir)?;
    made.dir = true;
    let passfile = ctx.home.upstream_passfile(&name);
    {
        let dd = DataDir::open(&dir)?;
        let line = password
            .map(|p| upstream::passfile_line(&target.host, target.port, &target.user, p))
            .unwrap_or_default();
        dd.write("pgpass", line.as_bytes(), Some(&ctx.user), 0o600)?;
        // betterpg logs in through the socket in this directory (only root
        // and the server's user can enter it); TCP clients need the
        // primary's passwords.
        dd.write(
            "pg_hba.conf",
            REPLICA_HBA.as_bytes(),
            Some(&ctx.user),
            0o600,
        )?;
    }
    let repl = Replication {
        psql: psql_bin.tool("psql"),
        user: ctx.user.clone(),
        conninfo: upstream::conninfo(
            &target.host,
            target.port,
            &target.user,
            &passfile,
            &format!("bpg_{name}"),
        ),
        address: target.address(),
        cwd: dir.clone(),
    };
    let ident = repl.identify(UPSTREAM_TIMEOUT).await?;
    let major = ident.major();
    let bin = binaries_for(ctx, opts, major, &target.address())?;
    entry.pg_bin = bin.dir.clone();
    entry.pg_major = major;
    entry.upstream = Some(Upstream {
        host: target.host.clone(),
        port: target.port,
        user: target.user.clone(),
        slot: opts.slot.clone(),
        slot_created: false,
        slot_creating: opts.slot.is_some(),
        system_id: ident.system_id.clone(),
    });
    // Recorded before the slot is asked for, and its outcome right after:
    // `gc` drops a slot of a killed follow only when this one made it.
    save_entry(ctx, entry)?;
    if let Some(slot) = &opts.slot {
        let created = repl.create_slot(slot, UPSTREAM_TIMEOUT).await?;
        if created {
            made.slot = Some((repl.clone(), slot.clone()));
        }
        if let Some(u) = entry.upstream.as_mut() {
            u.slot_created = created;
            u.slot_creating = false;
        }
        save_entry(ctx, entry)?;
    }
    fault::point("follow_before_dataset").await?;

    super::create::create_dataset(ctx, entry, "replica").await?;
    made.dataset = true;
    let (data_dir, bytes) = backup_into(
        ctx,
        &repl,
        &bin,
        &entry.dataset,
        opts.slot.as_deref(),
        opts.progress.as_ref(),
    )
    .await?;
    fault::point("follow_after_backup").await?;

    make_standby(ctx, entry, &data_dir)?;
    start_with(ctx, entry, &data_dir, &bin, &mut made.started).await?;
    fault::point("follow_after_start").await?;
    Ok(bytes)
}

/// A base backup of the primary into the data directory of `dataset`
/// (made here, the server's user's, 0700), streaming through `slot` when
/// one is given; its progress handed to `progress` with the rate so far.
/// Returns the data directory and the bytes copied.
pub(crate) async fn backup_into(
    ctx: &Context,
    repl: &Replication,
    bin: &PgBin,
    dataset: &str,
    slot: Option<&str>,
    progress: Option<&ProgressFn>,
) -> Result<(PathBuf, u64)> {
    let mp = ctx.mountpoint(dataset).await?;
    let data_dir = mp.join(PGDATA_SUBDIR);
    std::fs::create_dir(&data_dir)
        .map_err(|e| Error::io(format!("creating {}", data_dir.display()), e))?;
    ctx.user.chown(&data_dir)?;
    cluster::set_mode(&data_dir, 0o700)?;
    let t = Instant::now();
    let last = std::sync::Mutex::new(0u64);
    let report = |done: u64, total: u64| {
        *last.lock().unwrap_or_else(|p| p.into_inner()) = done;
        if let Some(cb) = progress {
            let secs = t.elapsed().as_secs_f64().max(0.001);
            cb(FollowProgress {
                bytes_done: done,
                bytes_total: total,
                bytes_per_sec: done as f64 / secs,
            });
        }
    };
    repl.base_backup(bin, &data_dir, slot, &report).await?;
    let bytes = *last.lock().unwrap_or_else(|p| p.into_inner());
    Ok((data_dir, bytes))
}

/// Start the replica `entry` on a free port with the binaries `bin` (its
/// primary's major version); `started` records it for the rollback.
pub(crate) async fn start_with(
    ctx: &Context,
    entry: &Entry,
    data_dir: &std::path::Path,
    bin: &PgBin,
    started: &mut Option<crate::runtime::InstanceSpec>,
) -> Result<()> {
    let bin = bin.clone();
    start_on_free_port(
        ctx,
        entry,
        data_dir,
        move |s| s.pg_bin = bin.clone(),
        started,
    )
    .await
}

/// Local server binaries of the primary's major version `major`.
pub(crate) fn binaries_for(
    ctx: &Context,
    opts: &FollowOptions,
    major: u32,
    address: &str,
) -> Result<PgBin> {
    let bin = PgBin::choose(
        opts.pg_bin.as_deref(),
        ctx.config.pg_bin.as_deref(),
        Some(major),
    )
    .map_err(|e| {
        Error::VersionMismatch(format!(
            "the primary at {address} runs PostgreSQL {major}, and the replica needs the server binaries of PostgreSQL {major} here: install them (e.g. `apt-get install postgresql-{major}`, or `scripts/pg-versions.sh {major}`) or pass --pg-bin DIR of version {major} ({e})"
        ))
    })?;
    if !bin.tool("pg_basebackup").is_file() {
        return Err(Error::Config(format!(
            "{} has no pg_basebackup: name a complete PostgreSQL {major} bin directory",
            bin.dir.display()
        )));
    }
    Ok(bin)
}

/// Make the base backup in `data_dir` a standby of `entry`'s primary,
/// with betterpg's settings (port, listen address, `primary_conninfo`
/// with the replica's passfile, slot, `standby.signal`).
pub(crate) fn make_standby(ctx: &Context, entry: &Entry, data_dir: &std::path::Path) -> Result<()> {
    let name = &entry.name;
    let dd = DataDir::open(data_dir)?;
    if dd.read_text("postgresql.conf")?.is_none() {
        // A primary whose configuration lives elsewhere (/etc/postgresql).
        dd.write(
            "postgresql.conf",
            b"# Written by betterpg: the primary keeps its configuration outside its data directory.\n",
            Some(&ctx.user),
            0o600,
        )?;
    }
    for removed in enforce_owned_settings(&dd, &ctx.user, ConfTarget::Branch)? {
        tracing::info!(
            "{name}: removed {} = {} from postgresql.auto.conf (betterpg's settings win)",
            removed.name,
            removed.value
        );
    }
    dd.write("standby.signal", b"", Some(&ctx.user), 0o600)?;
    cluster::write_settings(
        &dd,
        &ctx.user,
        entry.port,
        &ctx.config.listen_address,
        &ctx.profile_for(entry),
    )
}

/// `pg_hba.conf` of a replica: betterpg through the socket in the
/// replica's own directory; clients on TCP with their passwords (the
/// primary's roles).
const REPLICA_HBA: &str = "# betterpg: a replica (bpg follow)\n\
local all all trust\n\
host all all 127.0.0.1/32 scram-sha-256\n\
host all all ::1/128 scram-sha-256\n";

/// `HOME/replicas` (0711, root's) and `HOME/replicas/NAME` (0700, the
/// server's OS user's, fresh).
fn make_replica_dir(ctx: &Context, dir: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let parent = ctx.home.replicas_dir();
    std::fs::create_dir_all(&parent)
        .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
    std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o711))
        .map_err(|e| Error::io(format!("chmod {}", parent.display()), e))?;
    // Left by a killed follow of the same name (the name was free).
    if std::fs::symlink_metadata(dir).is_ok() {
        std::fs::remove_dir_all(dir)
            .map_err(|e| Error::io(format!("removing {}", dir.display()), e))?;
    }
    std::fs::create_dir(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io(format!("chmod {}", dir.display()), e))?;
    ctx.user.chown(dir)
}

/// Record `entry`'s facts (binaries, upstream) in the catalog.
fn save_entry(ctx: &Context, entry: &Entry) -> Result<()> {
    let mut cat = ctx.lock()?;
    let e = cat
        .get_mut(&entry.name)
        .ok_or_else(|| Error::Internal(format!("catalog entry {} vanished", entry.name)))?;
    e.pg_bin = entry.pg_bin.clone();
    e.pg_major = entry.pg_major;
    e.upstream = entry.upstream.clone();
    e.port = entry.port;
    cat.save()
}

/// Undo a failed follow, in reverse. Best effort: each step is tried.
async fn undo(ctx: &Context, name: &str, entry: &Entry, made: Made) {
    if let Some(spec) = &made.started {
        if let Ok(rt) = ctx.runtime(&spec.runtime) {
            if let Err(e) = rt.stop(spec).await {
                tracing::warn!("stopping the half-made replica {name}: {e}");
            }
        }
    }
    if made.dataset {
        if let Err(e) = destroy_with_retry(&*ctx.storage, &entry.dataset, true).await {
            tracing::warn!("destroying {}: {e}", entry.dataset);
        }
    }
    if let Some((repl, slot)) = &made.slot {
        if let Err(e) = repl.drop_slot(slot, UPSTREAM_TIMEOUT).await {
            tracing::warn!("dropping the slot {slot} this follow created on the primary: {e}");
        }
    }
    if made.dir {
        let _ = std::fs::remove_dir_all(ctx.home.replica_dir(name));
    }
    let _ = std::fs::remove_file(ctx.home.log_path(name));
    if let Err(e) = ctx.unreserve(name) {
        tracing::warn!("removing the catalog reservation of {name}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names_are_checked() {
        assert!(validate_slot("bpg_replica_1").is_ok());
        for bad in ["", "Upper", "a-b", "x;drop", &"a".repeat(64)] {
            assert_eq!(
                validate_slot(bad).unwrap_err().kind_name(),
                "config",
                "{bad}"
            );
        }
    }
}
