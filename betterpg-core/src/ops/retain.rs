//! WAL retention of a database or a replica (the setting `retain_wal`): archiving into
//! betterpg's dataset, base snapshots, closing the current segment,
//! pruning, and the window `status` shows. A replica (`bpg follow`)
//! archives every segment it receives (`archive_mode = always`), takes its
//! bases with the standby recipe (its restartpoint), and its window ends at
//! the last transaction it replayed (the tail not yet archived is copied
//! from its `pg_wal`). Used by `start`, `stop`,
//! `status`, `destroy` and a branch `--at`; the policy on plain values is
//! in [`crate::pitr`].
//!
//! When it takes effect: `archive_mode` is read only at server start, so
//! retention set on a running database begins at its next start (`bpg
//! stop` then `bpg start`); until then `status` shows it as pending.
//! Turning it off (`--retain-wal none`) stops archiving at the next start,
//! which also removes the retained WAL and the base snapshots no branch
//! was cloned from.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::catalog::{Entry, Kind};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::pg::backup::server_version_num;
use crate::pg::datadir::{DataDir, EntryType};
use crate::pg::wal::{self, format_lsn, parse_lsn};
use crate::pg::{BackupSession, ConnInfo};
use crate::pitr::{
    archive_dataset, base_due, format_time, now_us, prunable_segments, prune_plan, receiver_slot,
    Base, Meta, Receiver, Sealed, Window, BASE_PREFIX, PARTIAL_SUFFIX, WAL_DATASET,
};
use crate::runtime::{InstanceSpec, RunStatus};
use crate::storage::{create_missing, destroy_with_retry};

/// The retention `status` reports for a database or replica that keeps WAL.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WalRetention {
    /// How long WAL is kept, seconds (the setting `retain_wal`).
    pub retain_secs: u64,
    /// True once archiving runs and a base exists: branches `--at` a
    /// point inside the window work. False while the setting waits for
    /// the database's next start (`archive_mode` needs a restart).
    pub active: bool,
    /// The oldest restorable time (UTC, as PostgreSQL prints it), or
    /// `None` before the first base.
    pub from_time: Option<String>,
    /// The newest point known archived (UTC). A branch `--at` of a running
    /// database first closes the current WAL segment, so it reaches up to
    /// the moment of the call; a replica's ends at the last transaction
    /// it replayed.
    pub to_time: Option<String>,
    /// The oldest restorable WAL location.
    pub from_lsn: Option<String>,
    /// The newest WAL location known archived.
    pub to_lsn: Option<String>,
    /// Pool bytes the retained WAL uses (its dataset's `used`).
    pub wal_bytes: u64,
    /// WAL segments retained.
    pub segments: usize,
    /// Base snapshots replay can start from.
    pub bases: usize,
}

/// The retention setting of `e`, seconds; `None` when it keeps no WAL.
pub(crate) fn retain_secs(e: &Entry) -> Option<u64> {
    e.settings.retain_wal
}

fn home_str(ctx: &Context) -> String {
    ctx.home.root().to_string_lossy().into_owned()
}

/// The archive directory of `name` when its dataset exists.
async fn archive_dir(ctx: &Context, name: &str) -> Result<Option<DataDir>> {
    let ds = archive_dataset(&ctx.config.dataset, name);
    match ctx.storage.get(&ds).await? {
        Some(info) => match info.mountpoint {
            Some(mp) => Ok(Some(DataDir::open(&mp)?)),
            None => Ok(None),
        },
        None => Ok(None),
    }
}

/// Make (or find) `name`'s archive dataset, owned by the server's OS
/// user (the server's `archive_command` writes there), 0700.
async fn ensure_archive(ctx: &Context, name: &str) -> Result<std::path::PathBuf> {
    let home = home_str(ctx);
    let parent = format!("{}/{WAL_DATASET}", ctx.config.dataset);
    create_missing(
        &*ctx.storage,
        &parent,
        &[("managed", "wal"), ("home", &home)],
    )
    .await?;
    let ds = archive_dataset(&ctx.config.dataset, name);
    create_missing(
        &*ctx.storage,
        &ds,
        &[("managed", "wal"), ("home", &home), ("name", name)],
    )
    .await?;
    let mp = ctx.mountpoint(&ds).await?;
    let dir = DataDir::open(&mp)?;
    crate::pg::datadir::give_fd(
        &std::fs::File::open(dir.path())
            .map_err(|e| Error::io(format!("opening {}", mp.display()), e))?,
        &ctx.user,
        &mp.display().to_string(),
    )?;
    crate::pg::cluster::set_mode(&mp, 0o700)?;
    Ok(mp)
}

/// The settings lines that make `e` archive into betterpg's dataset
/// (empty when it keeps no WAL). Run before every start of a database.
pub(crate) async fn archive_settings(ctx: &Context, e: &Entry) -> Result<String> {
    if retain_secs(e).is_none() {
        return Ok(String::new());
    }
    if e.runtime != "native" {
        tracing::warn!(
            "{}: WAL retention needs the native runtime (the archive is a dataset on this machine); {} keeps no WAL",
            e.name,
            e.name
        );
        return Ok(String::new());
    }
    let dir = ensure_archive(ctx, &e.name).await?;
    let cmd = wal::archive_command(&dir)?;
    // A standby archives only with `always`: every segment it receives.
    let mode = if e.kind == Kind::Replica {
        "always"
    } else {
        "on"
    };
    Ok(format!(
        "# WAL retention (retain_wal): each finished segment goes to betterpg's archive.\n\
         archive_mode = {mode}\n\
         archive_command = '{}'\n",
        cmd.replace('\'', "''")
    ))
}

/// Whether the running server archives with betterpg's command.
async fn archiving(conn: &ConnInfo) -> Result<bool> {
    let c = conn.connect().await?;
    let row = c
        .query_one(
            "SELECT current_setting('archive_mode'), current_setting('archive_command')",
            &[],
        )
        .await?;
    let (mode, cmd): (String, String) = (row.get(0), row.get(1));
    Ok(mode != "off" && cmd.contains("sync") && cmd.contains("cmp -s"))
}

/// Commit a transaction of betterpg's on `c`: it assigns a transaction
/// id and changes nothing. Returns the time taken just before it (what
/// the commit is known to come after).
async fn commit_own(c: &tokio_postgres::Client) -> Result<i64> {
    let time_us = now_us();
    let xid_sql = if server_version_num(c).await? >= 130000 {
        "SELECT pg_current_xact_id()::text"
    } else {
        "SELECT txid_current()::text"
    };
    c.query_one(xid_sql, &[]).await?;
    Ok(time_us)
}

/// Record `sealed` as the end of `name`'s window unless a later one is
/// recorded already (under the catalog lock); returns it.
fn record_sealed(ctx: &Context, name: &str, sealed: Sealed) -> Result<Sealed> {
    let _cat = ctx.lock()?;
    let mut meta = Meta::load(&ctx.home, name)?;
    if meta.sealed.is_none_or(|s| s.time_us < sealed.time_us) {
        meta.sealed = Some(sealed);
    }
    meta.save(&ctx.home, name)?;
    Ok(sealed)
}

/// Close the current WAL segment of the running `e` and wait until it is
/// archived, after a commit of its own: everything committed before the
/// returned time is then in the archive, and a replay to a time after the
/// last real commit still finds a commit record later than the target
/// (replay stops only at commit records; running out of WAL first is an
/// error). The commit assigns a transaction id and changes nothing.
pub(crate) async fn seal(ctx: &Context, e: &Entry, conn: &ConnInfo) -> Result<Sealed> {
    if e.kind == Kind::Attached {
        return seal_attached(ctx, e, conn).await;
    }
    if !archiving(conn).await? {
        return Err(Error::InvalidState(format!(
            "{n:?} is set to keep WAL but does not archive yet: archive_mode is read at server start; restart it (bpg stop {n} && bpg start {n})",
            n = e.name
        )));
    }
    if e.kind == Kind::Replica {
        return seal_replica(ctx, e, conn).await;
    }
    let dir = archive_dir(ctx, &e.name).await?.ok_or_else(|| {
        Error::InvalidState(format!(
            "the WAL archive of {:?} is missing: restart it (bpg stop, bpg start) to make it anew",
            e.name
        ))
    })?;
    let c = conn.connect().await?;
    let time_us = commit_own(&c).await?;
    let row = c
        .query_one(
            "SELECT s::text, pg_walfile_name(s) FROM pg_switch_wal() AS s",
            &[],
        )
        .await?;
    let lsn = parse_lsn(&row.get::<_, String>(0))?;
    let file: String = row.get(1);
    let deadline = Instant::now() + Duration::from_secs(ctx.config.start_timeout_secs.max(30));
    loop {
        if dir.entry_type(&file)? == Some(EntryType::File) {
            break;
        }
        let failed: Option<String> = c
            .query_one("SELECT last_failed_wal FROM pg_stat_archiver", &[])
            .await?
            .get(0);
        if Instant::now() > deadline {
            return Err(Error::Timeout(format!(
                "WAL segment {file} of {:?} was not archived in time{}: see its log (bpg logs {})",
                e.name,
                failed
                    .map(|f| format!(" (the archive_command failed for {f})"))
                    .unwrap_or_default(),
                e.name
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    record_sealed(ctx, &e.name, Sealed { time_us, lsn })
}

/// The end of a replica's window: a standby cannot close a segment (nor
/// commit), so the newest restorable point is the last transaction it
/// replayed: its commit time (the primary's clock) and the replay position.
/// The segments after the archive's end are in its `pg_wal` (received
/// before replayed); a branch `--at` copies them from there.
async fn seal_replica(ctx: &Context, e: &Entry, conn: &ConnInfo) -> Result<Sealed> {
    let c = conn.connect().await?;
    let row = c
        .query_one(
            "SELECT pg_last_wal_replay_lsn()::text, \
             (extract(epoch FROM pg_last_xact_replay_timestamp()) * 1000000)::int8",
            &[],
        )
        .await?;
    let (lsn, time_us): (Option<String>, Option<i64>) = (row.get(0), row.get(1));
    let _cat = ctx.lock()?;
    let mut meta = Meta::load(&ctx.home, &e.name)?;
    if let (Some(lsn), Some(time_us)) = (lsn, time_us) {
        let lsn = parse_lsn(&lsn)?;
        if meta.sealed.is_none_or(|s| s.lsn < lsn) {
            meta.sealed = Some(Sealed { time_us, lsn });
        }
        meta.save(&ctx.home, &e.name)?;
    }
    meta.sealed.ok_or_else(|| {
        Error::InvalidState(format!(
            "replica {:?} has replayed no transaction since it started keeping WAL: nothing to branch at yet",
            e.name
        ))
    })
}

/// The segments of a replica's base (its start through the one before
/// its stop's, all complete) that its archive lacks, copied there from its
/// `pg_wal`: the restartpoint a standby's backup starts at may lie in a
/// segment it received before it archived. Identical bytes are what its
/// `archive_command` accepts if it archives the same segment later.
async fn backfill_base(
    ctx: &Context,
    e: &Entry,
    spec: &InstanceSpec,
    label: &wal::BackupLabel,
    stop_lsn: u64,
    seg: u64,
) -> Result<()> {
    let Some(dir) = archive_dir(ctx, &e.name).await? else {
        return Ok(());
    };
    let live = DataDir::open(&spec.data_dir)?.subdir("pg_wal")?;
    let stop_seg = stop_lsn / seg;
    let missing: Vec<String> =
        wal::segments_between(label.timeline, label.start_lsn, stop_lsn, seg)
            .into_iter()
            .filter(|n| {
                wal::parse_segment_name(n, seg).is_some_and(|(_, s)| s < stop_seg)
                    && dir.entry_type(n).ok().flatten().is_none()
            })
            .collect();
    if !missing.is_empty() {
        wal::copy_segments(&live, &dir, &missing, seg, &ctx.user)?;
    }
    Ok(())
}

/// Take a base of the running `e`: a snapshot of its dataset in backup
/// mode, its label kept in the retention record.
async fn take_base(ctx: &Context, e: &Entry, spec: &InstanceSpec) -> Result<Base> {
    let plan =
        crate::tablespace::plan(&ctx.config.dataset, e, &spec.data_dir, Some(&spec.conn)).await?;
    if plan.snapshot_datasets(&e.dataset).len() > 1 {
        return Err(Error::Unsupported(format!(
            "{:?} has tablespaces outside its data directory: WAL retention does not take base snapshots of those yet",
            e.name
        )));
    }
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let snap = format!("{BASE_PREFIX}{millis}");
    let full = format!("{}@{snap}", e.dataset);
    let home = home_str(ctx);
    let replica = e.kind == Kind::Replica;
    let mut session = if replica {
        // On the standby: its restartpoint is the start.
        BackupSession::start_on_standby(&spec.conn, "betterpg wal base").await?
    } else {
        BackupSession::start(&spec.conn, "betterpg wal base").await?
    };
    if let Err(err) = ctx
        .storage
        .snapshot(
            &[&e.dataset],
            &snap,
            &[
                ("managed", "yes"),
                ("home", &home),
                ("dataset", &full),
                ("walbase", "yes"),
            ],
        )
        .await
    {
        let _ = session.finish().await;
        return Err(err);
    }
    let stop = match session.stop().await {
        Ok(s) => s,
        Err(err) => {
            let _ = session.finish().await;
            let _ = destroy_with_retry(&*ctx.storage, &full, false).await;
            return Err(err);
        }
    };
    let time_us = now_us();
    let seg = session.wal_segment_size;
    let _ = session.finish().await;
    let label = wal::parse_backup_label(&stop.labelfile)?;
    if replica {
        if let Err(err) = backfill_base(ctx, e, spec, &label, stop.stop_lsn, seg).await {
            let _ = destroy_with_retry(&*ctx.storage, &full, false).await;
            return Err(err);
        }
    }
    let base = Base {
        snapshot: full,
        time_us,
        start_lsn: label.start_lsn,
        stop_lsn: stop.stop_lsn,
        timeline: label.timeline,
        label: stop.labelfile,
    };
    let _cat = ctx.lock()?;
    let mut meta = Meta::load(&ctx.home, &e.name)?;
    meta.segment_size = seg;
    meta.bases.push(base.clone());
    meta.save(&ctx.home, &e.name)?;
    Ok(base)
}

/// Drop the bases and WAL the retention no longer needs. A base a branch
/// was cloned from stays (ZFS would refuse, and that branch may be reset
/// from its source later); WAL before the oldest kept base goes.
pub(crate) async fn prune(ctx: &Context, e: &Entry) -> Result<()> {
    let Some(secs) = retain_secs(e) else {
        return Ok(());
    };
    let meta = Meta::load(&ctx.home, &e.name)?;
    let datasets = ctx.storage.list(&ctx.config.dataset).await?;
    let pinned = |b: &Base| {
        datasets
            .iter()
            .any(|d| d.origin.as_deref() == Some(b.snapshot.as_str()))
    };
    // A base whose snapshot is gone (a replica's rebuild destroyed its old
    // data, or someone else did) can start no replay: forgotten. (An
    // attached cluster's snapshots are outside betterpg's root: asked
    // one by one.)
    let mut present: Vec<Base> = Vec::new();
    for b in &meta.bases {
        if datasets.iter().any(|d| d.name == b.snapshot)
            || ctx.storage.get(&b.snapshot).await?.is_some()
        {
            present.push(b.clone());
        }
    }
    let (mut kept, dropped) = prune_plan(&present, now_us(), secs, pinned);
    for b in dropped {
        if let Err(err) = destroy_with_retry(&*ctx.storage, &b.snapshot, false).await {
            tracing::warn!("keeping base {}: {err}", b.snapshot);
            kept.push(b);
        }
    }
    kept.sort_by_key(|b| b.time_us);
    let meta = {
        let _cat = ctx.lock()?;
        let mut now = Meta::load(&ctx.home, &e.name)?;
        // Bases taken meanwhile stay.
        now.bases
            .retain(|b| kept.contains(b) || !meta.bases.contains(b));
        now.save(&ctx.home, &e.name)?;
        now
    };
    if let Some(dir) = archive_dir(ctx, &e.name).await? {
        let names: Vec<String> = dir
            .list()?
            .into_iter()
            .filter(|(_, t)| *t == EntryType::File)
            .map(|(n, _)| n)
            .collect();
        for n in prunable_segments(names.iter().map(String::as_str), &meta) {
            dir.remove(&n)?;
        }
    }
    Ok(())
}

/// After a start (and before a branch `--at`): prune, then take a base
/// when one is due, if `e` runs and archives with betterpg's command.
/// When retention was turned off, remove what it kept.
pub(crate) async fn maintain(ctx: &Context, e: &Entry) -> Result<()> {
    if retain_secs(e).is_none() {
        if e.kind == Kind::Attached {
            return stop_attached(ctx, e).await;
        }
        return remove_all(ctx, e, false).await;
    }
    if e.runtime != "native" {
        return Ok(());
    }
    if e.kind == Kind::Attached {
        // Always running (betterpg never stops it); its receiver instead
        // of an archive_command.
        ensure_receiver(ctx, e).await?;
        prune(ctx, e).await?;
        let meta = Meta::load(&ctx.home, &e.name)?;
        if base_due(&meta, now_us(), retain_secs(e).unwrap_or(0)) {
            take_base(ctx, e, &ctx.spec(e).await?).await?;
        }
        return Ok(());
    }
    prune(ctx, e).await?;
    let spec = ctx.spec(e).await?;
    if ctx.runtime(&e.runtime)?.status(&spec).await? != RunStatus::Running
        || !archiving(&spec.conn).await?
    {
        return Ok(());
    }
    let meta = Meta::load(&ctx.home, &e.name)?;
    if base_due(&meta, now_us(), retain_secs(e).unwrap_or(0)) {
        take_base(ctx, e, &spec).await?;
    }
    Ok(())
}

/// Before `stop` of a database that keeps WAL: close the segment so the
/// archive holds everything committed until the stop.
pub(crate) async fn before_stop(ctx: &Context, e: &Entry) {
    if retain_secs(e).is_none() || e.runtime != "native" {
        return;
    }
    let res = async {
        let spec = ctx.spec(e).await?;
        if ctx.runtime(&e.runtime)?.status(&spec).await? == RunStatus::Running
            && archiving(&spec.conn).await?
        {
            seal(ctx, e, &spec.conn).await?;
        }
        Ok::<_, Error>(())
    }
    .await;
    if let Err(err) = res {
        tracing::warn!(
            "{}: could not archive the last WAL before stopping ({err}); the window ends earlier",
            e.name
        );
    }
}

/// Remove `e`'s retained WAL, record and the bases no branch was cloned
/// from (retention turned off, or the database destroyed: then `force`,
/// as its branches are gone first).
pub(crate) async fn remove_all(ctx: &Context, e: &Entry, force: bool) -> Result<()> {
    let ds = archive_dataset(&ctx.config.dataset, &e.name);
    let meta = Meta::load(&ctx.home, &e.name)?;
    if meta == Meta::default() && ctx.storage.get(&ds).await?.is_none() {
        return Ok(());
    }
    let mut left = Vec::new();
    for b in &meta.bases {
        if let Err(err) = destroy_with_retry(&*ctx.storage, &b.snapshot, false).await {
            if force {
                return Err(err);
            }
            tracing::warn!(
                "keeping base {} (a branch was cloned from it): {err}",
                b.snapshot
            );
            left.push(b.clone());
        }
    }
    if ctx.storage.get(&ds).await?.is_some() {
        destroy_with_retry(&*ctx.storage, &ds, true).await?;
    }
    let _cat = ctx.lock()?;
    if left.is_empty() {
        Meta::remove(&ctx.home, &e.name);
    } else {
        Meta {
            bases: left,
            ..Meta::default()
        }
        .save(&ctx.home, &e.name)?;
    }
    Ok(())
}

/// What `status` shows of `e`'s retention (`None` when it keeps none).
pub(crate) async fn report(ctx: &Context, e: &Entry) -> Result<Option<WalRetention>> {
    let Some(secs) = retain_secs(e) else {
        return Ok(None);
    };
    let mut meta = Meta::load(&ctx.home, &e.name)?;
    // Only bases whose snapshot exists (see `prune`).
    let mut present = Vec::new();
    for b in meta.bases {
        if ctx.storage.get(&b.snapshot).await?.is_some() {
            present.push(b);
        }
    }
    meta.bases = present;
    let ds = archive_dataset(&ctx.config.dataset, &e.name);
    let info = ctx.storage.get(&ds).await?;
    let mut segments = 0;
    if let Some(mp) = info.as_ref().and_then(|i| i.mountpoint.clone()) {
        segments = DataDir::open(&mp)?
            .list()?
            .into_iter()
            .filter(|(n, t)| *t == EntryType::File && wal::is_segment_name(n))
            .count();
    }
    // The newest point betterpg saw archived: the last segment it
    // closed itself (before a branch `--at`, before `stop`).
    let to = meta.sealed.map(|s| (s.time_us, s.lsn)).unwrap_or((0, 0));
    let window = Window::of(&meta, to.0, to.1);
    Ok(Some(WalRetention {
        retain_secs: secs,
        active: window.is_some(),
        from_time: window.map(|w| format_time(w.from_us)),
        to_time: window.map(|w| format_time(w.to_us)),
        from_lsn: window.map(|w| format_lsn(w.from_lsn)),
        to_lsn: window.map(|w| format_lsn(w.to_lsn)),
        wal_bytes: info.map(|i| i.used).unwrap_or(0),
        segments,
        bases: meta.bases.len(),
    }))
}

/// Before a branch `--at` of `src`: close the current segment (when it
/// runs), prune, and return the record and the window.
pub(crate) async fn prepare_branch_at(
    ctx: &Context,
    src: &Entry,
    spec: &InstanceSpec,
    running: bool,
) -> Result<(Meta, Option<Window>, DataDir)> {
    if retain_secs(src).is_none() {
        return Err(Error::InvalidState(format!(
            "{n:?} keeps no WAL, so it has no past to branch from: bpg config {n} --retain-wal 7d, then restart it (bpg stop {n} && bpg start {n})",
            n = src.name
        )));
    }
    if src.runtime != "native" {
        return Err(Error::Unsupported(format!(
            "{:?} runs in a container: WAL retention (and so --at) needs the native runtime",
            src.name
        )));
    }
    if running {
        seal(ctx, src, &spec.conn).await?;
    }
    prune(ctx, src).await?;
    let meta = Meta::load(&ctx.home, &src.name)?;
    let to = meta.sealed.map(|s| (s.time_us, s.lsn)).unwrap_or((0, 0));
    let window = Window::of(&meta, to.0, to.1);
    let dir = archive_dir(ctx, &src.name).await?.ok_or_else(|| {
        Error::InvalidState(format!(
            "the WAL archive of {:?} is missing: restart it (bpg stop, bpg start) to make it anew",
            src.name
        ))
    })?;
    Ok((meta, window, dir))
}

// ---------------------------------------------------------------------
// Attached clusters: betterpg never reconfigures them (no archive_command
// of its own there), so their WAL is pulled over the replication protocol:
// a `pg_receivewal` on a physical slot of their own (`bpg_wal_NAME`),
// run as the home's server OS user (who owns the attached cluster's data
// directory anyway), writing into the same archive dataset as a
// database's. Its process is recorded in the retention record; `bpg
// daemon` starts it again when it died (the slot kept the WAL meanwhile),
// and turning retention off or `detach` stops it and drops its slot.

/// How long a new receiver has to start streaming (its slot active).
const RECEIVER_START_TIMEOUT: Duration = Duration::from_secs(20);

/// `HOME/logs/NAME.receivewal.log`: what the receiver says.
fn receiver_log(ctx: &Context, name: &str) -> std::path::PathBuf {
    ctx.home.logs_dir().join(format!("{name}.receivewal.log"))
}

/// Whether process `pid` (started at `start`) runs: alive and not a
/// zombie (a receiver whose parent `bpg` exited is reaped by init, which
/// may take its time, or never).
fn running(pid: u32, start: Option<u64>) -> bool {
    if !crate::catalog::process_alive(pid, start) {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name's closing parenthesis.
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// Whether the recorded receiver process runs.
fn receiver_alive(r: &Receiver) -> bool {
    r.pid.is_some_and(|p| running(p, r.pid_start))
}

/// Whether the WAL receiver of the attached `e` runs.
pub(crate) fn receiver_running(ctx: &Context, e: &Entry) -> Result<bool> {
    Ok(Meta::load(&ctx.home, &e.name)?
        .receiver
        .as_ref()
        .is_some_and(receiver_alive))
}

/// The last lines of the receiver's log (for an error).
fn receiver_log_tail(ctx: &Context, name: &str) -> String {
    let text = std::fs::read_to_string(receiver_log(ctx, name)).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

/// Refuse an attached cluster whose WAL cannot be received or based: the
/// role needs `REPLICATION` (the slot and the stream), and the cluster
/// must be one dataset (no linked `pg_wal`, no tablespaces elsewhere).
async fn check_attached(ctx: &Context, e: &Entry, spec: &InstanceSpec) -> Result<()> {
    let c = spec.conn.connect().await?;
    let row = c
        .query_one(
            "SELECT r.rolname::text, r.rolsuper OR r.rolreplication FROM pg_roles r WHERE r.rolname = current_user",
            &[],
        )
        .await?;
    let (role, ok): (String, bool) = (row.get(0), row.get(1));
    if !ok {
        return Err(Error::Postgres {
            sqlstate: Some("42501".into()),
            message: format!(
                "role {role:?} of {:?} cannot stream its WAL (keeping it needs a replication slot and pg_receivewal): as a superuser of the cluster run: ALTER ROLE {} REPLICATION; and let it in for replication in pg_hba.conf (host replication {role} ADDRESS scram-sha-256), then configure again",
                e.name,
                crate::pg::isolate::quote_ident(&role)
            ),
            detail: None,
        });
    }
    drop(c);
    let plan =
        crate::tablespace::plan(&ctx.config.dataset, e, &spec.data_dir, Some(&spec.conn)).await?;
    if plan.wal.is_some() || plan.snapshot_datasets(&e.dataset).len() > 1 {
        return Err(Error::Unsupported(format!(
            "{:?} has its pg_wal or tablespaces outside its data directory's dataset: WAL retention of an attached cluster takes its bases from that one dataset only (not built yet for the others)",
            e.name
        )));
    }
    Ok(())
}

/// Make the slot `slot` on the attached cluster unless it exists
/// (reserving WAL at once).
async fn ensure_slot(conn: &ConnInfo, slot: &str) -> Result<()> {
    let c = conn.connect().await?;
    c.execute(
        "SELECT pg_create_physical_replication_slot($1, true) \
         WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
        &[&slot],
    )
    .await
    .map_err(|err| {
        Error::postgres_with(&err, format!("creating the replication slot {slot}: {err}"))
    })?;
    Ok(())
}

/// Drop the slot (waiting a little for its walsender to go once the
/// receiver stopped). A missing slot is fine.
async fn drop_slot(conn: &ConnInfo, slot: &str) -> Result<()> {
    let c = conn.connect().await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let row = c
            .query_opt(
                "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await?;
        match row.map(|r| r.get::<_, bool>(0)) {
            None => return Ok(()),
            Some(false) => {
                c.execute("SELECT pg_drop_replication_slot($1)", &[&slot])
                    .await
                    .map_err(|err| {
                        Error::postgres_with(&err, format!("dropping the replication slot {slot}: {err}"))
                    })?;
                return Ok(());
            }
            Some(true) if Instant::now() > deadline => {
                return Err(Error::InvalidState(format!(
                    "the replication slot {slot} is still in use: stop what streams from it, then drop it (SELECT pg_drop_replication_slot('{slot}'))"
                )))
            }
            Some(true) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Start `pg_receivewal` for `e` into `dir` on `slot`, as the home's
/// server OS user, in a process group of its own (a Ctrl-C of the `bpg`
/// that started it does not reach it); its output goes to its log.
/// Returns its pid and start time once its slot is active (it streams).
async fn spawn_receiver(
    ctx: &Context,
    e: &Entry,
    conn: &ConnInfo,
    dir: &std::path::Path,
    slot: &str,
) -> Result<(u32, Option<u64>)> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::process::CommandExt;
    let logs = ctx.home.logs_dir();
    std::fs::create_dir_all(&logs)
        .map_err(|err| Error::io(format!("creating {}", logs.display()), err))?;
    let log_path = receiver_log(ctx, &e.name);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&log_path)
        .map_err(|err| Error::io(format!("opening {}", log_path.display()), err))?;
    let log2 = log
        .try_clone()
        .map_err(|err| Error::io(format!("opening {}", log_path.display()), err))?;
    let bin = crate::pg::PgBin {
        dir: e.pg_bin.clone(),
        major: e.pg_major,
    }
    .tool("pg_receivewal");
    let mut cmd = std::process::Command::new(&bin);
    cmd.arg("-D")
        .arg(dir)
        .args(["-S", slot, "--synchronous", "-s", "1", "-w", "-v"])
        .arg("-h")
        .arg(&conn.host)
        .arg("-p")
        .arg(conn.port.to_string())
        .arg("-U")
        .arg(&conn.user)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", &ctx.user.home)
        .env("PGPASSWORD", &conn.password)
        .env("PGAPPNAME", slot)
        .current_dir("/")
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log2)
        .process_group(0);
    if ctx.user.needs_switch() {
        cmd.uid(ctx.user.uid).gid(ctx.user.gid);
    }
    // SAFETY: the closure runs in the forked child before exec and only
    // makes system calls.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, crate::osuser::close_inherited_fds);
    }
    let mut child = cmd
        .spawn()
        .map_err(|err| Error::io(format!("starting {}", bin.display()), err))?;
    let pid = child.id();
    let start = crate::catalog::process_start_time(pid);
    // Reaped when it exits (a long-running daemon would otherwise keep a
    // zombie that still looks alive).
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    let c = conn.connect().await?;
    let deadline = Instant::now() + RECEIVER_START_TIMEOUT;
    loop {
        let active: Option<bool> = c
            .query_opt(
                "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await?
            .map(|r| r.get(0));
        if active == Some(true) {
            return Ok((pid, start));
        }
        let alive = running(pid, start);
        if !alive || Instant::now() > deadline {
            stop_process(pid, start).await;
            return Err(Error::postgres(format!(
                "pg_receivewal for {:?} did not start streaming from slot {slot} (does pg_hba.conf of the cluster let role {:?} in for replication?): {}",
                e.name,
                conn.user,
                receiver_log_tail(ctx, &e.name)
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// SIGTERM `pid` (if it is still the process started at `start`), then
/// SIGKILL after 10 s.
async fn stop_process(pid: u32, start: Option<u64>) {
    use nix::sys::signal::{kill, Signal};
    let p = nix::unistd::Pid::from_raw(pid as i32);
    if !running(pid, start) {
        return;
    }
    let _ = kill(p, Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    while running(pid, start) {
        if Instant::now() > deadline {
            let _ = kill(p, Signal::SIGKILL);
            tokio::time::sleep(Duration::from_millis(200)).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Record `r` as `name`'s receiver.
fn save_receiver(ctx: &Context, name: &str, r: Option<Receiver>) -> Result<()> {
    let _cat = ctx.lock()?;
    let mut meta = Meta::load(&ctx.home, name)?;
    meta.receiver = r;
    meta.save(&ctx.home, name)
}

/// Make sure the receiver of the attached `e` (which keeps WAL) runs:
/// its slot made if missing, the process started when none runs. True
/// when it was (re)started.
pub(crate) async fn ensure_receiver(ctx: &Context, e: &Entry) -> Result<bool> {
    let meta = Meta::load(&ctx.home, &e.name)?;
    if meta.receiver.as_ref().is_some_and(receiver_alive) {
        return Ok(false);
    }
    let spec = ctx.spec(e).await?;
    let slot = receiver_slot(&e.name);
    let dir = ensure_archive(ctx, &e.name).await?;
    // Recorded before the slot is made: whatever happens next, the slot
    // is known (to drop it).
    save_receiver(
        ctx,
        &e.name,
        Some(Receiver {
            slot: slot.clone(),
            pid: None,
            pid_start: None,
        }),
    )?;
    ensure_slot(&spec.conn, &slot).await?;
    let (pid, pid_start) = spawn_receiver(ctx, e, &spec.conn, &dir, &slot).await?;
    save_receiver(
        ctx,
        &e.name,
        Some(Receiver {
            slot,
            pid: Some(pid),
            pid_start,
        }),
    )?;
    Ok(true)
}

/// Begin keeping the WAL of the attached `e` (its settings name the
/// retention): check the role and layout, start the receiver, take the
/// first base. On a failure everything made is undone.
pub(crate) async fn start_attached(ctx: &Context, e: &Entry) -> Result<()> {
    let spec = ctx.spec(e).await?;
    check_attached(ctx, e, &spec).await?;
    let res = async {
        ensure_receiver(ctx, e).await?;
        take_base(ctx, e, &spec).await?;
        Ok::<_, Error>(())
    }
    .await;
    if let Err(err) = res {
        if let Err(undo) = stop_attached(ctx, e).await {
            tracing::warn!("undoing the WAL retention of {}: {undo}", e.name);
        }
        return Err(err);
    }
    Ok(())
}

/// Stop keeping the WAL of the attached `e`: stop its receiver, drop its
/// slot, remove the archive and the bases no branch was cloned from
/// (`force`: all of them, its branches being gone).
pub(crate) async fn stop_attached(ctx: &Context, e: &Entry) -> Result<()> {
    let meta = Meta::load(&ctx.home, &e.name)?;
    if let Some(r) = &meta.receiver {
        if let Some(pid) = r.pid {
            stop_process(pid, r.pid_start).await;
        }
        drop_slot(&ctx.conn_for(e)?, &r.slot).await?;
        save_receiver(ctx, &e.name, None)?;
    }
    remove_all(ctx, e, false).await
}

/// The end of an attached cluster's window: a transaction of betterpg's
/// is committed there (it assigns a transaction id and changes nothing),
/// and once the receiver has flushed past it everything committed until
/// the call is in the archive (the last segment as `NAME.partial`).
async fn seal_attached(ctx: &Context, e: &Entry, conn: &ConnInfo) -> Result<Sealed> {
    ensure_receiver(ctx, e).await?;
    let slot = receiver_slot(&e.name);
    let c = conn.connect().await?;
    let time_us = commit_own(&c).await?;
    let lsn = parse_lsn(
        &c.query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await?
            .get::<_, String>(0),
    )?;
    let deadline = Instant::now() + Duration::from_secs(ctx.config.start_timeout_secs.max(30));
    loop {
        let got: Option<String> = c
            .query_opt(
                "SELECT restart_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await?
            .and_then(|r| r.get(0));
        if got
            .as_deref()
            .and_then(|s| parse_lsn(s).ok())
            .is_some_and(|g| g >= lsn)
        {
            break;
        }
        if Instant::now() > deadline {
            return Err(Error::Timeout(format!(
                "the WAL receiver of {:?} did not receive up to {} in time: {}",
                e.name,
                format_lsn(lsn),
                receiver_log_tail(ctx, &e.name)
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    record_sealed(ctx, &e.name, Sealed { time_us, lsn })
}

/// Copy the tail of an attached cluster's WAL a replay needs and the
/// archive lacks as complete segments: each from its `NAME.partial`
/// (full-size; complete up to what was received) unless it was completed
/// meanwhile. A segment with neither is left out (nothing was written
/// there yet).
pub(crate) fn copy_attached_tail(
    archive: &DataDir,
    restore: &DataDir,
    tail: &[String],
    seg: u64,
    owner: &crate::osuser::OsUser,
) -> Result<u64> {
    let mut written = 0;
    for n in tail {
        let partial = format!("{n}{PARTIAL_SUFFIX}");
        let from = if archive.entry_type(n)? == Some(EntryType::File) {
            n.clone()
        } else if archive.entry_type(&partial)? == Some(EntryType::File) {
            partial
        } else {
            continue;
        };
        written += wal::copy_segment_as(archive, &from, restore, n, seg, owner)?;
    }
    Ok(written)
}
