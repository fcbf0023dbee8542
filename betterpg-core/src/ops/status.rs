//! `status`: what exists, how it runs, how much it uses.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::catalog::{Entry, EntryState, Kind, Mode};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::runtime::{InstanceSpec, RunStatus};
use crate::space::{BranchSpace, POOL_WARN_FRACTION};
use crate::storage::{DatasetInfo, PoolSpace};

/// A database or branch as `status` reports it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Info {
    /// Name.
    pub name: String,
    /// Database or branch (JSON: "database" or "branch").
    pub kind: Kind,
    /// Parent name (null for a database).
    pub parent: Option<String>,
    /// Running or stopped (JSON: "running" or "stopped").
    pub status: RunStatus,
    /// Ready, creating, destroying or incomplete (left half-made by a
    /// process that died; `bpg destroy` or `gc` removes it). JSON: the
    /// lowercase name.
    pub state: EntryState,
    /// TCP port.
    pub port: u16,
    /// Pool bytes used by its dataset.
    pub used_bytes: u64,
    /// Bytes its dataset refers to.
    pub referenced_bytes: u64,
    /// Connection URL (with the password).
    pub url: String,
    /// How a branch was made; `None` (JSON null) for a database. JSON:
    /// "application-consistent" or "crash-consistent".
    pub mode: Option<Mode>,
    /// Its ZFS dataset.
    pub dataset: String,
    /// For a branch, the snapshot it was cloned from.
    pub snapshot: Option<String>,
    /// Runtime ("native").
    pub runtime: String,
    /// PostgreSQL major version.
    pub pg_version: u32,
    /// Unix time of creation.
    pub created_at: u64,
    /// For a database or replica that keeps WAL (the setting `retain_wal`): the
    /// restorable window, what the WAL uses; `None` (JSON null) otherwise.
    pub wal_retention: Option<super::retain::WalRetention>,
    /// Protected (`bpg protect`): destroy, reset and expiry are refused.
    pub protected: bool,
    /// A branch with a rewind point (`--rewindable`): `bpg rewind` rolls
    /// it back to how it was made.
    pub rewindable: bool,
    /// The process the branch lives for (`--owner-pid`): `bpg gc`
    /// destroys it once that process is gone; `None` (JSON null): none.
    pub owner_pid: Option<u32>,
    /// Unix time after which the daemon destroys it (`--ttl`); `None`
    /// (JSON null): never.
    pub expires_at: Option<u64>,
    /// For a replica, how it follows its primary (JSON null otherwise).
    pub replication: Option<Replication>,
    /// Credentials policy (JSON "rotate", "keep" or null): for a branch,
    /// the one it was made with (rotate: its roles have passwords of
    /// their own, `bpg url NAME --role ROLE`); for a source, what its
    /// branches get by default: its setting `credentials`, else rotate
    /// for a replica or attached cluster; null for a database without
    /// the setting (its branches keep the passwords).
    pub credentials: Option<crate::catalog::Credentials>,
}

/// How a replica follows its primary (JSON: the lowercase name, "catching
/// up" with its space).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ReplicationState {
    /// Receiving the primary's WAL and replayed to within a segment of it.
    #[serde(rename = "streaming")]
    Streaming,
    /// Receiving, but more than a segment behind.
    #[serde(rename = "catching up")]
    CatchingUp,
    /// Not receiving: the primary is unreachable, or the replica is stopped.
    #[serde(rename = "disconnected")]
    Disconnected,
    /// The primary answers as another cluster (another system identifier):
    /// `bpg follow NAME --rebuild` takes a new base backup.
    #[serde(rename = "diverged")]
    Diverged,
}

impl ReplicationState {
    /// "streaming", "catching up", "disconnected" or "diverged".
    pub fn as_str(&self) -> &'static str {
        match self {
            ReplicationState::Streaming => "streaming",
            ReplicationState::CatchingUp => "catching up",
            ReplicationState::Disconnected => "disconnected",
            ReplicationState::Diverged => "diverged",
        }
    }
}

impl std::fmt::Display for ReplicationState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl PartialEq<&str> for ReplicationState {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A replica's upstream and lag, as `status` reports it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Replication {
    /// The primary, `host:port` (never a password).
    pub upstream: String,
    /// The replication slot on the primary, if one is used.
    pub slot: Option<String>,
    /// Streaming, catching up, disconnected or diverged.
    pub state: ReplicationState,
    /// Bytes of the primary's WAL not yet replayed (`None` when the
    /// primary or the replica does not answer).
    pub lag_bytes: Option<u64>,
    /// Seconds since the last replayed transaction's commit while behind,
    /// 0 when caught up (`None` when unknown).
    pub lag_seconds: Option<f64>,
    /// The replica's replay position.
    pub replay_lsn: Option<String>,
    /// The primary's WAL position, when it answered.
    pub primary_lsn: Option<String>,
    /// Commit time of the last replayed transaction.
    pub last_replay_time: Option<String>,
}

/// How long `status` waits for a replica's primary to answer.
const STATUS_UPSTREAM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A segment: a replica less than this behind is streaming, not catching up.
const CAUGHT_UP_BYTES: u64 = 16 << 20;

/// How the replica `e` follows its primary, asking both (each may not
/// answer: then what is known).
pub(crate) async fn replication(ctx: &Context, e: &Entry, running: bool) -> Option<Replication> {
    let u = e.upstream.as_ref()?;
    let mut r = Replication {
        upstream: crate::pg::upstream::address(&u.host, u.port),
        slot: u.slot.clone(),
        state: ReplicationState::Disconnected,
        lag_bytes: None,
        lag_seconds: None,
        replay_lsn: None,
        primary_lsn: None,
        last_replay_time: None,
    };
    let primary = match ctx.replication_of(e) {
        Ok(repl) => repl.identify(STATUS_UPSTREAM_TIMEOUT).await.ok(),
        Err(_) => None,
    };
    if let Some(p) = &primary {
        r.primary_lsn = Some(crate::pg::wal::format_lsn(p.wal_lsn));
        if p.system_id != u.system_id {
            r.state = ReplicationState::Diverged;
        }
    }
    if !running {
        return Some(r);
    }
    let local = async {
        let c = ctx.replica_conn(e).connect().await?;
        let row = c
            .query_one(
                "SELECT pg_last_wal_replay_lsn()::text, pg_last_xact_replay_timestamp()::text,                  extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8,                  (SELECT status FROM pg_stat_wal_receiver LIMIT 1)",
                &[],
            )
            .await?;
        Ok::<_, Error>((
            row.get::<_, Option<String>>(0),
            row.get::<_, Option<String>>(1),
            row.get::<_, Option<f64>>(2),
            row.get::<_, Option<String>>(3),
        ))
    };
    let Ok((replay, time, age, receiver)) = local.await else {
        return Some(r);
    };
    r.replay_lsn = replay.clone();
    r.last_replay_time = time;
    let replayed = replay.and_then(|l| crate::pg::wal::parse_lsn(&l).ok());
    if let (Some(p), Some(l)) = (&primary, replayed) {
        let lag = p.wal_lsn.saturating_sub(l);
        r.lag_bytes = Some(lag);
        r.lag_seconds = if lag == 0 {
            Some(0.0)
        } else {
            age.map(|a| a.max(0.0))
        };
        if r.state != ReplicationState::Diverged && receiver.as_deref() == Some("streaming") {
            r.state = if lag <= CAUGHT_UP_BYTES {
                ReplicationState::Streaming
            } else {
                ReplicationState::CatchingUp
            };
        }
    }
    Some(r)
}

/// Pool usage summary.
#[derive(Debug, Clone, Serialize)]
pub struct PoolUsage {
    /// Pool name.
    pub pool: String,
    /// Bytes used and available.
    #[serde(flatten)]
    pub space: PoolSpace,
    /// Used fraction, 0..1.
    pub fraction_used: f64,
    /// True above [`POOL_WARN_FRACTION`].
    pub warning: bool,
    /// All branches together: what they use and may use.
    pub branches: BranchSpace,
}

/// Connection URL of a database or branch (of an attached cluster:
/// without its password, which betterpg never prints). Handing out a URL
/// hands out the password in it, so it is recorded in the audit log (the
/// URL itself never is).
pub(crate) async fn url(ctx: &Context, name: &str) -> Result<String> {
    let r = ctx.entry(name).and_then(|e| {
        let c = ctx.conn_for(&e)?;
        Ok(match e.kind {
            Kind::Attached => c.url_without_password(),
            _ => c.url(),
        })
    });
    let mut ev = crate::audit::AuditEvent::now("url");
    ev.branch = Some(name.to_string());
    super::audit::record(ctx, ev.outcome(&r));
    r
}

/// Status of one database or branch.
pub(crate) async fn info(ctx: &Context, name: &str) -> Result<Info> {
    let e = ctx.entry(name)?;
    let sizes = ctx.storage.get(&e.dataset).await?;
    info_of(ctx, &e, sizes.as_ref()).await
}

/// Status of every database and branch, parents before their branches.
/// One storage listing for all of them and one status pass per runtime
/// (not a query per entry), so that it stays quick with many entries.
pub(crate) async fn status(ctx: &Context) -> Result<Vec<Info>> {
    let entries: Vec<Entry> = ctx.lock()?.entries().cloned().collect();
    let datasets = match ctx.storage.list(&ctx.config.dataset).await {
        Err(Error::NotFound { .. }) => return Err(root_missing(ctx)),
        other => other?,
    };
    // An attached cluster's dataset may be outside the root.
    let mut outside = Vec::new();
    for e in entries.iter().filter(|e| e.kind == Kind::Attached) {
        if !datasets.iter().any(|d| d.name == e.dataset) {
            outside.extend(ctx.storage.get(&e.dataset).await?);
        }
    }
    let by_name: HashMap<&str, &DatasetInfo> = datasets
        .iter()
        .chain(&outside)
        .map(|d| (d.name.as_str(), d))
        .collect();
    let ordered = tree_order(&entries);
    let listed: Vec<Option<&DatasetInfo>> = ordered
        .iter()
        .map(|e| by_name.get(e.dataset.as_str()).copied())
        .collect();
    // The specs of the mounted entries, grouped by runtime.
    let mut groups: BTreeMap<&str, (Vec<usize>, Vec<InstanceSpec>)> = BTreeMap::new();
    for (i, (e, ds)) in ordered.iter().zip(&listed).enumerate() {
        if e.kind == Kind::Attached {
            continue;
        }
        if let Some(mp) = ds.and_then(|d| d.mountpoint.as_ref()) {
            let g = groups.entry(e.runtime.as_str()).or_default();
            g.0.push(i);
            g.1.push(ctx.control_spec_for(e, e.data_dir(mp)));
        }
    }
    let mut run = vec![RunStatus::Stopped; ordered.len()];
    for (i, e) in ordered.iter().enumerate() {
        if e.kind == Kind::Attached {
            run[i] = attached_status(ctx, e).await;
        }
    }
    for (rt, (idx, specs)) in groups {
        let got = ctx.runtime(rt)?.status_all(&specs).await?;
        for (i, st) in idx.into_iter().zip(got) {
            run[i] = st;
        }
    }
    let mut out = Vec::with_capacity(ordered.len());
    for ((e, ds), st) in ordered.into_iter().zip(listed).zip(run) {
        out.push(info_with(ctx, e, ds, st).await?);
    }
    Ok(out)
}

/// The [`Info`] of `e`, with its dataset's listing `ds`.
pub(crate) async fn info_of(ctx: &Context, e: &Entry, ds: Option<&DatasetInfo>) -> Result<Info> {
    let status = match ds.and_then(|d| d.mountpoint.clone()) {
        Some(_) if e.kind == Kind::Attached => attached_status(ctx, e).await,
        Some(mp) => {
            let spec = ctx.control_spec_for(e, e.data_dir(&mp));
            ctx.runtime(&e.runtime)?.status(&spec).await?
        }
        None => RunStatus::Stopped,
    };
    info_with(ctx, e, ds, status).await
}

/// An attached cluster is not betterpg's server: running when it answers.
async fn attached_status(ctx: &Context, e: &Entry) -> RunStatus {
    match ctx.conn_for(e) {
        Ok(c) if c.answers(std::time::Duration::from_secs(3)).await => RunStatus::Running,
        _ => RunStatus::Stopped,
    }
}

/// The [`Info`] of `e`, its dataset's listing `ds` and its run status known.
/// (A database that retains WAL adds what its archive holds.)
pub(crate) async fn info_with(
    ctx: &Context,
    e: &Entry,
    ds: Option<&DatasetInfo>,
    status: RunStatus,
) -> Result<Info> {
    // An attached cluster's URL never carries its password.
    let url = match e.kind {
        Kind::Attached => ctx
            .conn_for(e)
            .map(|c| c.url_without_password())
            .unwrap_or_default(),
        // A replica's roles are the primary's: its URL has no credentials.
        Kind::Replica => format!(
            "postgresql://{}/postgres",
            crate::pg::upstream::address(
                &crate::ports::connect_host(&ctx.config.listen_address),
                e.port
            )
        ),
        _ => ctx.conn_for(e).map(|c| c.url()).unwrap_or_default(),
    };
    let replication = if e.kind == Kind::Replica {
        replication(ctx, e, status == RunStatus::Running).await
    } else {
        None
    };
    Ok(Info {
        name: e.name.clone(),
        kind: e.kind,
        parent: e.parent.clone(),
        status,
        state: e.state.summary(),
        port: e.port,
        used_bytes: ds.map(|d| d.used).unwrap_or(0),
        referenced_bytes: ds.map(|d| d.referenced).unwrap_or(0),
        url,
        mode: e.mode,
        dataset: e.dataset.clone(),
        snapshot: e.snapshot.clone(),
        runtime: e.runtime.clone(),
        pg_version: e.pg_major,
        created_at: e.created_at,
        wal_retention: match e.kind {
            Kind::Database | Kind::Replica | Kind::Attached => {
                super::retain::report(ctx, e).await?
            }
            Kind::Branch => None,
        },
        protected: e.lifecycle.protected,
        rewindable: e.rewindable,
        owner_pid: e.lifecycle.owner.map(|o| o.pid),
        expires_at: e.lifecycle.expires_at,
        replication,
        credentials: super::credentials::status_policy(e),
    })
}

/// The error for a root dataset that is not there (pool not imported).
fn root_missing(ctx: &Context) -> Error {
    let pool = ctx.config.dataset.split('/').next().unwrap_or_default();
    let how = match &ctx.config.pool_file {
        Some(f) => format!(
            "`zpool import -d {} {pool}`",
            f.parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        ),
        None => format!("`zpool import {pool}`"),
    };
    Error::NotFound {
        what: "ZFS dataset",
        name: ctx.config.dataset.clone(),
        hint: format!(": is the pool {pool} imported? Import it with {how}"),
    }
}

/// Space of the pool holding the datasets.
pub(crate) async fn pool_usage(ctx: &Context) -> Result<PoolUsage> {
    let space = ctx.storage.pool_space(&ctx.config.dataset).await?;
    let f = space.fraction_used();
    Ok(PoolUsage {
        pool: ctx
            .config
            .dataset
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string(),
        space,
        fraction_used: f,
        warning: f > POOL_WARN_FRACTION,
        branches: branch_space(ctx).await?,
    })
}

/// Parents before children, siblings by name.
fn tree_order(entries: &[Entry]) -> Vec<&Entry> {
    fn walk<'a>(all: &'a [Entry], parent: Option<&str>, out: &mut Vec<&'a Entry>) {
        let mut kids: Vec<&Entry> = all
            .iter()
            .filter(|e| e.parent.as_deref() == parent)
            .collect();
        kids.sort_by(|a, b| a.name.cmp(&b.name));
        for k in kids {
            out.push(k);
            walk(all, Some(&k.name), out);
        }
    }
    let mut out = Vec::new();
    walk(entries, None, &mut out);
    // Orphans (parent missing from the catalog) still show.
    let shown: HashSet<&str> = out.iter().map(|e| e.name.as_str()).collect();
    let orphans: Vec<&Entry> = entries
        .iter()
        .filter(|e| !shown.contains(e.name.as_str()))
        .collect();
    out.extend(orphans);
    out
}

/// Space of all branches together, without changing anything (the limit is
/// the one the next branch will set).
pub(crate) async fn branch_space(ctx: &Context) -> Result<BranchSpace> {
    crate::space::usage(&*ctx.storage, &ctx.config).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_json_keeps_its_strings() {
        let mut i = Info {
            name: "dev".into(),
            kind: Kind::Branch,
            parent: Some("prod".into()),
            status: RunStatus::Running,
            state: EntryState::Incomplete,
            port: 54321,
            used_bytes: 1,
            referenced_bytes: 2,
            url: "postgresql://x".into(),
            mode: Some(Mode::CrashConsistent),
            dataset: "t/b/_branches/dev".into(),
            snapshot: Some("t/b/prod@bpg-dev-1".into()),
            runtime: "native".into(),
            pg_version: 16,
            created_at: 7,
            wal_retention: None,
            protected: true,
            rewindable: true,
            owner_pid: Some(4),
            expires_at: Some(9),
            replication: None,
            credentials: Some(crate::catalog::Credentials::Rotate),
        };
        assert_eq!(
            serde_json::to_string(&i).unwrap(),
            r#"{"name":"dev","kind":"branch","parent":"prod","status":"running","state":"incomplete","port":54321,"used_bytes":1,"referenced_bytes":2,"url":"postgresql://x","mode":"crash-consistent","dataset":"t/b/_branches/dev","snapshot":"t/b/prod@bpg-dev-1","runtime":"native","pg_version":16,"created_at":7,"wal_retention":null,"protected":true,"rewindable":true,"owner_pid":4,"expires_at":9,"replication":null,"credentials":"rotate"}"#
        );
        i.kind = Kind::Database;
        i.parent = None;
        i.status = RunStatus::Stopped;
        i.state = EntryState::Ready;
        i.mode = None;
        let v = serde_json::to_value(&i).unwrap();
        assert_eq!(v["kind"], "database");
        assert_eq!(v["status"], "stopped");
        assert_eq!(v["state"], "ready");
        assert!(v["mode"].is_null());
        // The enums compare with the strings too.
        assert_eq!(i.kind, "database");
        assert_eq!(Mode::ApplicationConsistent, "application-consistent");
        assert_eq!(EntryState::Creating.to_string(), "creating");
        assert_eq!(format!("{:<6}|", RunStatus::Running), "running|");
        assert_eq!(format!("{:<8}|", Kind::Branch), "branch  |");
    }
}
