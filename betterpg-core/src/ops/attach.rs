//! `attach` and `detach`: register a running PostgreSQL that betterpg did
//! not create (a Debian cluster, a systemd unit, a container with a ZFS
//! volume) so that it can be branched, and forget it again.
//!
//! Everything about the cluster is read from the server itself and
//! checked before anything is recorded: its data directory (the same
//! cluster as `--pgdata`, by system identifier), its `pg_wal` link and its
//! tablespaces must all be on ZFS datasets of the home's pool (a branch
//! snapshots them in one atomic call and clones each), the role of the URL
//! must have what the backup recipe calls (else the error names each
//! GRANT), and the data directory must belong to the home's OS user (the
//! branches' servers run as that user on the clones).
//!
//! betterpg never starts, stops, restarts, reconfigures or destroys an
//! attached cluster: `start`, `stop` and `destroy` refuse it. `detach`
//! forgets it (its branches first, with `force`).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::destroy::destroy_one;
use super::status::{self, Info};
use crate::catalog::{AttachedSource, Entry, Kind, Settings, State};
use crate::context::{absolute, Context};
use crate::error::{Error, Result};
use crate::name::validate_name;
use crate::pg::backup::connect_with_backup_rights;
use crate::pg::datadir::DataDir;
use crate::pg::{ConnInfo, PgBin};
use crate::tablespace;
use crate::util::now_unix;

/// Options of [`crate::BranchManager::attach`].
#[derive(Debug, Clone, Default)]
pub struct AttachOptions {
    /// The cluster's data directory on this machine (for a container: the
    /// host's path of its volume).
    pub pgdata: PathBuf,
    /// libpq URL or `key=value` string of the running cluster, for a role
    /// with what the backup recipe needs (a superuser, or see
    /// `docs/sources.md` for the grants). Its password is stored 0600 in
    /// the home and never printed.
    pub url: String,
    /// The role's password, when not in the URL (it wins over the URL's).
    pub password: Option<String>,
    /// PostgreSQL bin directory for its branches (else the configured
    /// one, or one of the server's major version found on this machine).
    pub pg_bin: Option<PathBuf>,
    /// Policies for its branches, set as with
    /// [`crate::BranchManager::configure`] (`mask`, `mask_rules`,
    /// `forbid_unmasked`, `credentials`, ...): parsed (and the files found)
    /// before anything is recorded, so that no branch of it is ever made
    /// without them.
    pub settings: Vec<(String, String)>,
}

/// The system identifier in a `global/pg_control` file: its first 8
/// bytes, in the machine's byte order.
fn control_system_identifier(control: &[u8]) -> Option<u64> {
    control
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_ne_bytes)
}

/// Register the running cluster at `opts.url`, whose data directory is
/// `opts.pgdata`, as `name` (kind attached). Changes nothing on a
/// refusal.
pub(crate) async fn attach(ctx: &Context, name: &str, opts: AttachOptions) -> Result<Info> {
    validate_name(name)?;
    if let Some(e) = ctx.lock()?.get(name) {
        return Err(Error::AlreadyExists {
            what: e.kind.as_str(),
            name: name.to_string(),
        });
    }
    let settings = Settings::default().apply_all(&opts.settings)?;
    super::config::refuse_wal_retention_of_attached(name, &settings)?;
    if settings.ttl.is_some() {
        return Err(Error::Unsupported(format!(
            "{name:?} would be an attached cluster: betterpg never destroys a cluster it did not create, so it cannot expire (ttl)"
        )));
    }
    let mut conn = ConnInfo::parse(&opts.url)?;
    if let Some(p) = &opts.password {
        conn.password = p.clone();
    }
    let pgdata = absolute(opts.pgdata.clone())?;
    let real = std::fs::canonicalize(&pgdata).map_err(|e| {
        Error::io(
            format!("resolving the data directory {}", pgdata.display()),
            e,
        )
    })?;

    // The server: reachable, with the rights the recipe needs, a primary.
    let (client, version_num) = connect_with_backup_rights(&conn).await?;
    let row = client
        .query_one(
            "SELECT current_setting('data_directory'), current_setting('config_file'), \
             current_setting('hba_file'), pg_is_in_recovery(), current_setting('wal_level'), \
             current_setting('max_replication_slots')::int4, \
             EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'postgres' AND rolsuper), \
             (SELECT system_identifier FROM pg_control_system())::text",
            &[],
        )
        .await
        .map_err(|e| Error::postgres_with(&e, format!("reading the server's settings: {e}")))?;
    let (server_dir, config_file, hba_file): (String, String, String) =
        (row.get(0), row.get(1), row.get(2));
    let (in_recovery, wal_level, slots, has_postgres, sysid): (bool, String, i32, bool, String) =
        (row.get(3), row.get(4), row.get(5), row.get(6), row.get(7));
    let shown = conn.url_without_password();
    if in_recovery {
        return Err(Error::Unsupported(format!(
            "the server at {shown} is a standby in recovery: attach its primary, or follow the primary with `bpg follow`"
        )));
    }
    if wal_level == "minimal" {
        return Err(Error::postgres(
            "wal_level is minimal on the server: set wal_level = replica there and restart it, then attach again",
        ));
    }
    if slots < 1 {
        return Err(Error::postgres(
            "max_replication_slots is 0 on the server: set it to at least 1 there and restart it, then attach again",
        ));
    }
    if !has_postgres {
        return Err(Error::Unsupported(format!(
            "the server at {shown} has no superuser role \"postgres\": betterpg logs in to each branch as postgres with the branch's own password. Create it on the server (CREATE ROLE postgres SUPERUSER; it needs no password there), then attach again"
        )));
    }
    // The same cluster as --pgdata: the system identifier in its
    // pg_control is the server's (a path comparison would not do for a
    // container, whose paths are its own).
    let dd = DataDir::open(&real)?;
    let control = dd.subdir("global")?.read("pg_control")?.ok_or_else(|| {
        Error::Config(format!(
            "{} is not a PostgreSQL data directory (no global/pg_control): give the cluster's data directory as --pgdata",
            pgdata.display()
        ))
    })?;
    let file_sysid = control_system_identifier(&control).map(|v| v.to_string());
    if file_sysid.as_deref() != Some(sysid.as_str()) {
        return Err(Error::Config(format!(
            "the server at {shown} is not the cluster in {} (system identifier {sysid}, the directory's {}): give the data directory of that server, or the URL of the server of that directory",
            pgdata.display(),
            file_sysid.unwrap_or_else(|| "unreadable".into())
        )));
    }
    // Its configuration lives in the data directory, so a branch (a
    // clone of it) has its own and never reads the source's.
    for (what, f) in [("config_file", &config_file), ("hba_file", &hba_file)] {
        let p = Path::new(f);
        let inside = Path::new(&server_dir).join(p.file_name().unwrap_or_default()) == p;
        if !inside {
            return Err(Error::Unsupported(format!(
                "the server's {what} is {f}, outside its data directory {server_dir}: a branch would read the source's file. Keep postgresql.conf and pg_hba.conf in the data directory (as initdb makes them), then attach again"
            )));
        }
    }

    // ZFS: the data directory on a dataset of the home's pool, not one of
    // betterpg's own, mounted where `zfs list` says.
    let root = &ctx.config.dataset;
    let pool = root.split('/').next().unwrap_or_default();
    let (dataset, mountpoint, rel) = match tablespace::zfs_location(&real)? {
        Some(x) => x,
        None => {
            let (fstype, source) = tablespace::mount_of(&real)?.unwrap_or_default();
            return Err(Error::Unsupported(format!(
                "{} is not on ZFS (it is on {fstype} {source}): betterpg branches with ZFS snapshots. Move the cluster onto a dataset of pool {pool}, then attach again",
                real.display()
            )));
        }
    };
    let in_pool = dataset == pool || dataset.starts_with(&format!("{pool}/"));
    if !in_pool {
        return Err(Error::Unsupported(format!(
            "{} is on dataset {dataset}, which is not in the home's pool {pool}: branches are clones, which ZFS makes only within one pool. Move the cluster onto a dataset of {pool}, then attach again",
            real.display()
        )));
    }
    if dataset == *root || dataset.starts_with(&format!("{root}/")) {
        return Err(Error::Unsupported(format!(
            "{} is on {dataset}, inside betterpg's own datasets ({root}): attach a cluster on a dataset of its own",
            real.display()
        )));
    }
    let listed = crate::storage::mountpoint(&*ctx.storage, &dataset).await?;
    if listed != mountpoint {
        return Err(Error::zfs(format!(
            "{} is mounted at {} but zfs says dataset {dataset} is mounted at {}: fix the mount, then attach again",
            real.display(),
            mountpoint.display(),
            listed.display()
        )));
    }
    let owner = std::fs::metadata(&real)
        .map_err(|e| Error::io(format!("inspecting {}", real.display()), e))?
        .uid();
    if owner != ctx.user.uid {
        return Err(Error::Unsupported(format!(
            "{} belongs to uid {owner}, but this home's servers run as {} (uid {}): a branch's server must own its clone's files. Attach a cluster of that OS user (or make a home whose os_user owns it)",
            real.display(),
            ctx.user.name,
            ctx.user.uid
        )));
    }
    let bin = PgBin::choose(
        opts.pg_bin.as_deref(),
        ctx.config.pg_bin.as_deref(),
        Some(version_num / 10000),
    )?;

    let entry = Entry {
        name: name.to_string(),
        kind: Kind::Attached,
        parent: None,
        dataset,
        snapshot: None,
        port: conn.port,
        runtime: "native".into(),
        image: None,
        mode: None,
        pg_bin: bin.dir.clone(),
        pg_major: bin.major,
        created_at: now_unix(),
        upstream: None,
        state: State::Ready,
        settings,
        data_subdir: Some(rel),
        attached: Some(AttachedSource {
            host: conn.host.clone(),
            port: conn.port,
            user: conn.user.clone(),
            dbname: conn.dbname.clone(),
            data_directory: PathBuf::from(&server_dir),
        }),
        lifecycle: Default::default(),
        os_uid: None,
        rewindable: false,
    };
    // pg_wal and the tablespaces: on datasets of the pool, as the branch
    // recipe will find them (the same check, made now).
    let plan = tablespace::plan(root, &entry, &real, Some(&conn)).await?;
    let rows = client
        .query(
            "SELECT oid, spcname::text FROM pg_tablespace WHERE pg_tablespace_location(oid) <> ''",
            &[],
        )
        .await
        .map_err(|e| Error::postgres_with(&e, format!("listing tablespaces: {e}")))?;
    for r in rows {
        let (oid, spc): (u32, String) = (r.get(0), r.get(1));
        if !plan.has_tablespace(oid) {
            return Err(Error::InvalidState(format!(
                "the server lists tablespace {spc:?} (OID {oid}), which has no link in {}/pg_tblspc: is --pgdata the server's data directory?",
                real.display()
            )));
        }
    }
    drop(client);

    // Record it: the password 0600 in the home, the rest in the catalog.
    ctx.home.write_secret(name, &conn.password)?;
    let recorded = ctx.lock().and_then(|mut cat| {
        cat.insert(entry)?;
        cat.save()
    });
    if let Err(e) = recorded {
        ctx.home.remove_secret(name);
        return Err(e);
    }
    status::info(ctx, name).await
}

/// Forget the attached cluster `name`. Refused while it has branches,
/// unless `force`, which destroys the branches (only them: the cluster
/// itself is never touched). Returns the branches destroyed, deepest
/// first.
pub(crate) async fn detach(ctx: &Context, name: &str, force: bool) -> Result<Vec<String>> {
    validate_name(name)?;
    let (victims, attached) = {
        let mut cat = ctx.lock()?;
        let e = cat
            .get(name)
            .cloned()
            .ok_or_else(|| Error::not_found(name))?;
        if e.kind != Kind::Attached {
            return Err(Error::Unsupported(format!(
                "{name:?} is a {}, not an attached cluster: detach forgets only attached clusters (`bpg destroy {name}` removes a database or branch)",
                e.kind
            )));
        }
        let desc = cat.descendants_deepest_first(name);
        let busy: Vec<String> = desc
            .iter()
            .filter_map(|d| cat.get(d))
            .filter(|d| d.state.busy_elsewhere())
            .map(|d| format!("{} ({})", d.name, d.state.label()))
            .collect();
        if !busy.is_empty() {
            return Err(Error::InvalidState(format!(
                "{name:?} has a branch that another bpg process is working on: {}; wait for it, then detach again",
                busy.join(", ")
            )));
        }
        if !desc.is_empty() && !force {
            return Err(Error::HasDependents {
                name: name.to_string(),
                dependents: format!(
                    "branches {} (--force destroys them; the attached cluster itself is never touched)",
                    desc.join(", ")
                ),
            });
        }
        for v in &desc {
            if let Some(x) = cat.get_mut(v) {
                x.state = State::destroying();
            }
        }
        cat.save()?;
        (
            desc.into_iter()
                .filter_map(|v| cat.get(&v).cloned())
                .collect::<Vec<_>>(),
            e,
        )
    };
    let mut destroyed = Vec::new();
    for v in victims {
        destroy_one(ctx, &v).await?;
        destroyed.push(v.name);
    }
    // Its WAL receiver stops and its slot goes (a slot left behind would
    // keep the cluster's WAL forever); the archive and bases go too. A
    // cluster that cannot be reached fails the detach, unless `force`.
    if let Err(err) = super::retain::stop_attached(ctx, &attached).await {
        if !force {
            return Err(Error::InvalidState(format!(
                "{name:?} keeps WAL and its receiver's slot could not be dropped ({err}): make the cluster reachable and detach again, or `--force` (then drop the slot {} on the cluster yourself)",
                crate::pitr::receiver_slot(name)
            )));
        }
        tracing::warn!(
            "{name}: its WAL receiver's slot {} could not be dropped ({err}): drop it on the cluster (SELECT pg_drop_replication_slot(...)), it keeps the cluster's WAL",
            crate::pitr::receiver_slot(name)
        );
    }
    let mut cat = ctx.lock()?;
    cat.remove(name);
    cat.save()?;
    drop(cat);
    ctx.home.remove_secret(name);
    Ok(destroyed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_system_identifier_of_pg_control() {
        let id: u64 = 7_301_234_567_890_123_456;
        let mut control = id.to_ne_bytes().to_vec();
        control.extend([0u8; 32]);
        assert_eq!(control_system_identifier(&control), Some(id));
        assert_eq!(control_system_identifier(&[1, 2, 3]), None);
    }
}
