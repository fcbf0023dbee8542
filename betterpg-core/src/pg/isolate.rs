//! Cutting a clone off from its source (DESIGN.md section 6).
//!
//! A clone carries everything in its source's data directory, including what
//! reaches *out* of it: archiving into the source's archive, a standby's
//! upstream and slot, subscriptions with the source's remote slots, the
//! source's replication slots, settings made with `ALTER SYSTEM` that beat
//! betterpg's own, and the password of betterpg's superuser. Two steps
//! neutralise them, and an [`IsolationReport`] says what was found:
//!
//! - [`prepare_clone`], on the files, before the branch ever starts;
//! - [`detach_private`], in SQL, during the branch's first start, which has
//!   no TCP listener (only a Unix socket in a directory only betterpg can
//!   reach) and no logical replication workers, so nothing can connect in
//!   and no apply worker can connect out before it is done.
//!
//! [`enforce_owned_settings`] also runs before every start of a database:
//! the settings betterpg owns must win there too.

use serde::Serialize;

use super::cluster::SETTINGS_FILE;
use super::conn::ConnInfo;
use super::datadir::{DataDir, EntryType};
use crate::error::{Error, Result};
use crate::osuser::OsUser;

/// The file `ALTER SYSTEM` writes; PostgreSQL reads it after
/// `postgresql.conf` and its includes, so its values win over them.
pub const AUTO_CONF: &str = "postgresql.auto.conf";

/// Settings betterpg owns on every instance: where it listens, and which
/// access rules it reads.
const OWNED_EVERYWHERE: &[&str] = &[
    "port",
    "listen_addresses",
    "unix_socket_directories",
    "hba_file",
    "ident_file",
    "data_directory",
    "config_file",
    "external_pid_file",
];

/// Settings that would make a branch reach its source's systems (archive,
/// upstream, recovery commands) or pose as the source (TLS identity).
const OUTBOUND: &[&str] = &[
    "archive_mode",
    "archive_command",
    "archive_library",
    "archive_cleanup_command",
    "restore_command",
    "recovery_end_command",
    "primary_conninfo",
    "primary_slot_name",
    "promote_trigger_file",
    "recovery_target",
    "recovery_target_name",
    "recovery_target_time",
    "recovery_target_xid",
    "recovery_target_lsn",
    "recovery_target_action",
    "recovery_target_timeline",
    "recovery_target_inclusive",
];

/// Which instance the settings are enforced for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A database: only the settings betterpg owns everywhere.
    Database,
    /// A branch: also everything that reaches out.
    Branch,
    /// A database that keeps its WAL (`retain_wal`): also the archiving
    /// settings, which must be betterpg's (an `ALTER SYSTEM` would
    /// otherwise redirect or stop the archive).
    ArchivingDatabase,
}

fn is_stripped(name: &str, target: Target) -> bool {
    let n = name.to_ascii_lowercase();
    OWNED_EVERYWHERE.contains(&n.as_str())
        || n.starts_with("include")
        || (target == Target::Branch && (OUTBOUND.contains(&n.as_str()) || n.starts_with("ssl")))
        || (target == Target::ArchivingDatabase
            && matches!(
                n.as_str(),
                "archive_mode" | "archive_command" | "archive_library"
            ))
}

/// A setting betterpg removed from the clone's `postgresql.auto.conf`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RemovedSetting {
    /// Setting name (or `include`, `include_dir` ...).
    pub name: String,
    /// Its value as written (passwords in connection strings hidden).
    pub value: String,
}

/// A setting of the source that a branch runs without (betterpg's value
/// wins over it).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct OverriddenSetting {
    /// Setting name.
    pub name: String,
    /// The source's value (passwords in connection strings hidden).
    pub source_value: String,
    /// What the branch runs with.
    pub branch_value: String,
}

/// A logical subscription that was disabled and detached from its remote
/// slot on the branch (the publisher still has the slot, for the source).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DetachedSubscription {
    /// Database of the subscription.
    pub database: String,
    /// Subscription name.
    pub name: String,
    /// Whether it was enabled in the source.
    pub was_enabled: bool,
    /// The remote slot it used (now `NONE` on the branch).
    pub slot_name: Option<String>,
}

/// Something in a branch that still points at another system: betterpg
/// cannot know whether it is safe, so it says so.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct IsolationWarning {
    /// `foreign_server` (postgres_fdw, dblink_fdw, ...) or `pg_cron_job`.
    pub kind: String,
    /// Database it lives in.
    pub database: String,
    /// Server name, or the job's name/id.
    pub name: String,
    /// What it points at / runs (passwords hidden).
    pub detail: String,
}

/// What was cut off between a branch and its source, and what could only
/// be reported.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct IsolationReport {
    /// Lines removed from the clone's `postgresql.auto.conf`.
    pub settings_removed: Vec<RemovedSetting>,
    /// Source settings (from `postgresql.conf`) the branch runs without.
    pub settings_overridden: Vec<OverriddenSetting>,
    /// Files removed from the clone: `standby.signal`, `recovery.signal`,
    /// `pg_wal/archive_status/*.ready`.
    pub files_removed: Vec<String>,
    /// The source's replication slots (physical and logical) the clone
    /// carried, dropped.
    pub replication_slots_dropped: Vec<String>,
    /// Subscriptions disabled and detached from their remote slots.
    pub subscriptions_detached: Vec<DetachedSubscription>,
    /// Whether betterpg's superuser got a password of its own (always, for
    /// a new branch: the source's password does not log in).
    pub password_replaced: bool,
    /// Roles that got a new password on the branch (`--credentials
    /// rotate`; empty with `keep`): their source passwords do not log in.
    pub roles_rotated: Vec<String>,
    /// Foreign servers and pg_cron jobs that point at other systems.
    pub warnings: Vec<IsolationWarning>,
}

impl IsolationReport {
    /// One line per thing detached, for people.
    pub fn detached_lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.settings_overridden {
            out.push(format!(
                "{} = {} (source: {})",
                s.name, s.branch_value, s.source_value
            ));
        }
        for s in &self.settings_removed {
            out.push(format!(
                "{} removed from {AUTO_CONF} (was {})",
                s.name, s.value
            ));
        }
        for f in &self.files_removed {
            out.push(format!("{f} removed"));
        }
        if !self.replication_slots_dropped.is_empty() {
            out.push(format!(
                "replication slots dropped: {}",
                self.replication_slots_dropped.join(", ")
            ));
        }
        for s in &self.subscriptions_detached {
            out.push(format!(
                "subscription {} in database {} disabled and detached from slot {}",
                s.name,
                s.database,
                s.slot_name.as_deref().unwrap_or("(none)")
            ));
        }
        if !self.roles_rotated.is_empty() {
            out.push(format!(
                "new passwords for roles: {} (bpg url NAME --role ROLE)",
                self.roles_rotated.join(", ")
            ));
        }
        out
    }
}

/// One `name = value` line of a PostgreSQL configuration file, or `None`
/// for comments and blank lines. Keys are case-insensitive; `=` is optional.
pub fn parse_conf_line(line: &str) -> Option<(String, String)> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') {
        return None;
    }
    let end = t
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(t.len());
    let name = t[..end].to_ascii_lowercase();
    let rest = t[end..].trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest).trim();
    let value = if let Some(q) = rest.strip_prefix('\'') {
        // A quoted value: '' is a quote; stop at the closing quote.
        let mut v = String::new();
        let mut chars = q.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                    v.push('\'');
                }
                '\'' => break,
                '\\' => {
                    if let Some(n) = chars.next() {
                        v.push(n);
                    }
                }
                c => v.push(c),
            }
        }
        v
    } else {
        rest.split('#').next().unwrap_or("").trim().to_string()
    };
    Some((name, value))
}

/// Hide `password=...` in connection strings and commands.
pub fn redact(value: &str) -> String {
    let lower = value.to_ascii_lowercase();
    let mut out = String::new();
    let mut i = 0;
    while let Some(p) = lower[i..].find("password") {
        let start = i + p;
        let after = &value[start + "password".len()..];
        let eq = after.trim_start();
        if let Some(rest) = eq.strip_prefix('=') {
            let skipped = after.len() - rest.len();
            let rest_trim = rest.trim_start();
            let vlen = if let Some(q) = rest_trim.strip_prefix('\'') {
                q.find('\'').map(|e| e + 2).unwrap_or(rest_trim.len())
            } else {
                rest_trim
                    .find(|c: char| c.is_whitespace() || c == '&' || c == ';')
                    .unwrap_or(rest_trim.len())
            };
            let value_start = start + "password".len() + skipped + (rest.len() - rest_trim.len());
            out.push_str(&value[i..value_start]);
            out.push_str("***");
            i = value_start + vlen;
        } else {
            out.push_str(&value[i..start + "password".len()]);
            i = start + "password".len();
        }
    }
    out.push_str(&value[i..]);
    // URLs: postgresql://user:secret@host
    if let Some(s) = out.find("://") {
        if let Some(at) = out[s + 3..].find('@') {
            let userinfo = &out[s + 3..s + 3 + at];
            if let Some(colon) = userinfo.find(':') {
                let mut r = out[..s + 3 + colon + 1].to_string();
                r.push_str("***");
                r.push_str(&out[s + 3 + at..]);
                return r;
            }
        }
    }
    out
}

/// Remove the settings betterpg owns (and, for a branch, those that reach
/// out) from `postgresql.auto.conf`, and make sure `postgresql.conf`
/// includes `betterpg.conf` last. Returns what was removed from the
/// auto file. Never follows a link: a link in place of the auto file is
/// replaced by a plain file (and reported).
pub fn enforce_owned_settings(
    dd: &DataDir,
    user: &OsUser,
    target: Target,
) -> Result<Vec<RemovedSetting>> {
    let mut removed = Vec::new();
    match dd.entry_type(AUTO_CONF)? {
        None => {}
        Some(EntryType::File) => {
            let text = dd.read_text(AUTO_CONF)?.unwrap_or_default();
            let mut kept = String::new();
            for line in text.lines() {
                match parse_conf_line(line) {
                    Some((name, value)) if is_stripped(&name, target) => {
                        removed.push(RemovedSetting {
                            name,
                            value: redact(&value),
                        });
                    }
                    _ => {
                        kept.push_str(line);
                        kept.push('\n');
                    }
                }
            }
            if !removed.is_empty() {
                dd.write(AUTO_CONF, kept.as_bytes(), Some(user), 0o600)?;
            }
        }
        Some(t) => {
            removed.push(RemovedSetting {
                name: AUTO_CONF.into(),
                value: format!("a {t:?}, replaced by an empty file"),
            });
            dd.write(
                AUTO_CONF,
                b"# Do not edit this file manually!\n# It will be overwritten by the ALTER SYSTEM command.\n",
                Some(user),
                0o600,
            )?;
        }
    }
    ensure_included_last(dd, user)?;
    Ok(removed)
}

/// The include line betterpg appends to `postgresql.conf`.
pub const INCLUDE_LINE: &str = "include_if_exists = 'betterpg.conf'";

/// Append the include of `betterpg.conf` to `postgresql.conf` unless it is
/// already its last setting (a later line would beat betterpg's values).
fn ensure_included_last(dd: &DataDir, user: &OsUser) -> Result<()> {
    let Some(text) = dd.read_text("postgresql.conf")? else {
        return Err(Error::InvalidState(format!(
            "{} has no postgresql.conf",
            dd.path().display()
        )));
    };
    let last = text.lines().filter_map(parse_conf_line).next_back();
    let ok = matches!(&last, Some((k, v)) if k == "include_if_exists" && v == SETTINGS_FILE);
    if ok {
        return Ok(());
    }
    let mut text = text;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!(
        "\n# Added by betterpg: per-instance settings (port, listen address), last so they win.\n{INCLUDE_LINE}\n"
    ));
    dd.write("postgresql.conf", text.as_bytes(), Some(user), 0o600)
}

/// Values in `postgresql.conf` that a branch runs without, for the report.
fn overridden_settings(dd: &DataDir) -> Result<Vec<OverriddenSetting>> {
    let text = dd.read_text("postgresql.conf")?.unwrap_or_default();
    let mut last: Vec<(String, String)> = Vec::new();
    for (k, v) in text.lines().filter_map(parse_conf_line) {
        last.retain(|(n, _)| *n != k);
        last.push((k, v));
    }
    let mut out = Vec::new();
    for (name, branch_value, active) in [
        (
            "archive_mode",
            "off",
            &["on", "always", "true", "yes", "1"][..],
        ),
        ("ssl", "off", &["on", "true", "yes", "1"][..]),
    ] {
        if let Some((_, v)) = last.iter().find(|(n, _)| n == name) {
            if active.contains(&v.to_ascii_lowercase().as_str()) {
                out.push(OverriddenSetting {
                    name: name.into(),
                    source_value: v.clone(),
                    branch_value: branch_value.into(),
                });
            }
        }
    }
    for name in ["primary_conninfo", "primary_slot_name"] {
        if let Some((_, v)) = last.iter().find(|(n, _)| n == name) {
            if !v.is_empty() {
                out.push(OverriddenSetting {
                    name: name.into(),
                    source_value: redact(v),
                    branch_value: String::new(),
                });
            }
        }
    }
    Ok(out)
}

/// Make a cloned data directory independent of its source, on the files:
/// drop the source's pid/opts files (the source's pid may be alive, which
/// would make the branch refuse to start), its replication slots, the
/// signal files that would make it a standby or an archive recovery of the
/// source's archive, the archiver's pending `.ready` files, and the
/// settings that reach out or beat betterpg's. Nothing here follows a link.
pub fn prepare_clone(dd: &DataDir, user: &OsUser) -> Result<IsolationReport> {
    let mut report = IsolationReport::default();
    // A label or map in the clone is not ours (a running source has none:
    // its backups are non-exclusive); betterpg writes its own below.
    for f in [
        "postmaster.pid",
        "postmaster.opts",
        "backup_label",
        "tablespace_map",
    ] {
        dd.remove(f)?;
    }
    for f in ["standby.signal", "recovery.signal"] {
        if dd.remove(f)? {
            report.files_removed.push(f.to_string());
        }
    }
    match dd.entry_type("pg_replslot")? {
        Some(EntryType::Dir) => {
            // All go; betterpg's own temporary backup slot is not news.
            report.replication_slots_dropped = dd
                .subdir("pg_replslot")?
                .clear()?
                .into_iter()
                .filter(|s| !s.starts_with("betterpg_"))
                .collect();
        }
        None => {}
        // A link where the slots live: remove it, never follow it.
        Some(_) => {
            dd.remove("pg_replslot")?;
            report.files_removed.push("pg_replslot (a link)".into());
            dd.ensure_subdir("pg_replslot", Some(user))?;
        }
    }
    if dd.entry_type("pg_wal")? == Some(EntryType::Dir) {
        forget_pending_archive(&dd.subdir("pg_wal")?, user, &mut report)?;
    }
    report.settings_overridden = overridden_settings(dd)?;
    report.settings_removed = enforce_owned_settings(dd, user, Target::Branch)?;
    Ok(report)
}

/// Remove the archiver's pending `.ready` files from a clone's WAL
/// directory `wal` (a branch must not archive its source's segments),
/// without following links; recorded in `report`.
pub fn forget_pending_archive(
    wal: &DataDir,
    user: &OsUser,
    report: &mut IsolationReport,
) -> Result<()> {
    match wal.entry_type("archive_status")? {
        Some(EntryType::Dir) => {
            let st = wal.subdir("archive_status")?;
            for (name, _) in st.list()? {
                if name.ends_with(".ready") {
                    st.remove(&name)?;
                    report
                        .files_removed
                        .push(format!("pg_wal/archive_status/{name}"));
                }
            }
        }
        None => {}
        Some(_) => {
            wal.remove("archive_status")?;
            report
                .files_removed
                .push("pg_wal/archive_status (a link)".into());
            wal.ensure_subdir("archive_status", Some(user))?;
        }
    }
    Ok(())
}

/// The `pg_hba.conf` of a branch of an attached cluster (a cluster
/// betterpg did not create, whose own rules and roles are production's):
/// only betterpg's superuser, with the branch's own password, from
/// anywhere the branch listens (its listen address says where). The
/// source's roles and passwords never log in to the branch.
pub const ATTACHED_BRANCH_HBA: &str =
    "# betterpg: a branch of an attached cluster. Only betterpg's superuser\n\
# logs in, with the branch's own password; the source's roles do not.\n\
host all postgres 0.0.0.0/0 scram-sha-256\n\
host all postgres ::/0 scram-sha-256\n";

/// The `pg_hba.conf` of a branch of an attached cluster whose roles got new
/// passwords (credentials `rotate`): every role logs in with a password,
/// which only the branch's secrets hold (`bpg url NAME --role ROLE`); the
/// source's passwords do not work there, and a role without a password
/// cannot pass `scram-sha-256`.
pub const ATTACHED_ROTATED_BRANCH_HBA: &str =
    "# betterpg: a branch of an attached cluster, its roles' passwords rotated.\n\
# Every role logs in with its new password (bpg url NAME --role ROLE).\n\
host all all 0.0.0.0/0 scram-sha-256\n\
host all all ::/0 scram-sha-256\n";

/// The `pg_hba.conf` of the private start: the private socket only, for the
/// superuser, without a password (the socket's directory is reachable by
/// root and the server's user only, who could read the data anyway).
pub const PRIVATE_HBA: &str = "# betterpg: first start of a branch, private socket only\n\
local all all trust\n";

/// Quote an SQL identifier.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Quote an SQL string literal (standard_conforming_strings on).
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The SQL step, on the branch's private first start (`admin` reaches it
/// through the private socket): give betterpg's superuser `password`,
/// disable every subscription and detach it from its remote slot (so the
/// publisher's slot stays the source's), and list foreign servers and
/// pg_cron jobs as warnings.
pub async fn detach_private(
    admin: &ConnInfo,
    password: &str,
    report: &mut IsolationReport,
) -> Result<()> {
    let c = admin.connect().await?;
    // A SCRAM verifier, not the password: the statement may be logged.
    let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
    c.batch_execute(&format!(
        "ALTER ROLE {} PASSWORD {}",
        quote_ident(&admin.user),
        quote_literal(&verifier)
    ))
    .await
    .map_err(|e| Error::postgres_with(&e, format!("setting the branch's own password: {e}")))?;
    report.password_replaced = true;

    let subs = c
        .query(
            "SELECT d.datname::text, s.subname::text, s.subenabled, s.subslotname::text \
             FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid \
             ORDER BY 1, 2",
            &[],
        )
        .await
        .map_err(|e| Error::postgres_with(&e, format!("listing subscriptions: {e}")))?;
    let dbs = c
        .query(
            "SELECT datname::text FROM pg_database WHERE datallowconn ORDER BY 1",
            &[],
        )
        .await
        .map_err(|e| Error::postgres_with(&e, format!("listing databases: {e}")))?;
    drop(c);
    // Each database on its own connection, all at once (a connection is
    // a new backend: in turn, they add up); reported in database order.
    let per_db = futures_util::future::try_join_all(dbs.iter().map(|row| {
        let db: String = row.get(0);
        detach_database(admin, db, &subs)
    }))
    .await?;
    for (detached, warnings) in per_db {
        report.subscriptions_detached.extend(detached);
        report.warnings.extend(warnings);
    }
    Ok(())
}

/// [`detach_private`] in one database `db`: its subscriptions (of
/// `subs`, every database's) detached, its foreign servers and pg_cron
/// jobs as warnings.
async fn detach_database(
    admin: &ConnInfo,
    db: String,
    subs: &[tokio_postgres::Row],
) -> Result<(Vec<DetachedSubscription>, Vec<IsolationWarning>)> {
    let mut detached = Vec::new();
    let mut warnings = Vec::new();
    let mut conn = admin.clone();
    conn.dbname = db.clone();
    let c = conn.connect().await?;
    for s in subs.iter().filter(|s| s.get::<_, String>(0) == db) {
        let name: String = s.get(1);
        let q = quote_ident(&name);
        // DISABLE first: a slot can only be detached from a disabled
        // subscription, and NONE means the branch will never drop or
        // use the publisher's slot, which is the source's.
        c.batch_execute(&format!(
            "ALTER SUBSCRIPTION {q} DISABLE; ALTER SUBSCRIPTION {q} SET (slot_name = NONE)"
        ))
        .await
        .map_err(|e| {
            Error::postgres_with(
                &e,
                format!("detaching subscription {name:?} in database {db:?}: {e}"),
            )
        })?;
        detached.push(DetachedSubscription {
            database: db.clone(),
            name,
            was_enabled: s.get(2),
            slot_name: s.get(3),
        });
    }
    let servers = c
        .query(
            "SELECT s.srvname::text, w.fdwname::text, \
                    coalesce(array_to_string(s.srvoptions, ' '), '') \
             FROM pg_foreign_server s JOIN pg_foreign_data_wrapper w ON w.oid = s.srvfdw \
             ORDER BY 1",
            &[],
        )
        .await
        .map_err(|e| Error::postgres_with(&e, format!("listing foreign servers in {db:?}: {e}")))?;
    for s in servers {
        let (srv, fdw, opts): (String, String, String) = (s.get(0), s.get(1), s.get(2));
        warnings.push(IsolationWarning {
            kind: "foreign_server".into(),
            database: db.clone(),
            name: srv,
            detail: redact(format!("{fdw} {opts}").trim()),
        });
    }
    let has_cron: bool = c
        .query_one("SELECT to_regclass('cron.job') IS NOT NULL", &[])
        .await
        .map_err(|e| Error::postgres_with(&e, format!("looking for pg_cron in {db:?}: {e}")))?
        .get(0);
    if has_cron {
        let jobs = c
            .query(
                "SELECT jobid::text, coalesce(jobname::text, ''), schedule::text, \
                        command::text, database::text, active \
                 FROM cron.job ORDER BY jobid",
                &[],
            )
            .await
            .map_err(|e| {
                Error::postgres_with(&e, format!("listing pg_cron jobs in {db:?}: {e}"))
            })?;
        for j in jobs {
            let (id, name, sched, cmd, jdb, active): (
                String,
                String,
                String,
                String,
                String,
                bool,
            ) = (j.get(0), j.get(1), j.get(2), j.get(3), j.get(4), j.get(5));
            warnings.push(IsolationWarning {
                kind: "pg_cron_job".into(),
                database: jdb,
                name: if name.is_empty() { id } else { name },
                detail: redact(&format!(
                    "{sched}: {cmd}{}",
                    if active { "" } else { " (inactive)" }
                )),
            });
        }
    }
    Ok((detached, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_lines() {
        assert_eq!(
            parse_conf_line("listen_addresses = '*'  # all"),
            Some(("listen_addresses".into(), "*".into()))
        );
        assert_eq!(
            parse_conf_line("Port 5433"),
            Some(("port".into(), "5433".into()))
        );
        assert_eq!(
            parse_conf_line("archive_command = 'cp %p ''/a b''/%f'"),
            Some(("archive_command".into(), "cp %p '/a b'/%f".into()))
        );
        assert_eq!(parse_conf_line("  # x = 1"), None);
        assert_eq!(parse_conf_line(""), None);
        assert!(is_stripped("ssl_cert_file", Target::Branch));
        assert!(!is_stripped("ssl_cert_file", Target::Database));
        assert!(is_stripped("include_dir", Target::Database));
        assert!(is_stripped("PORT", Target::Database));
        assert!(!is_stripped("shared_buffers", Target::Branch));
        assert!(!is_stripped("archive_mode", Target::Database));
        assert!(is_stripped("archive_command", Target::ArchivingDatabase));
        assert!(is_stripped("port", Target::ArchivingDatabase));
        assert!(!is_stripped("restore_command", Target::ArchivingDatabase));
    }

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            redact("host=p port=5432 user=r password=s3cr3t sslmode=x"),
            "host=p port=5432 user=r password=*** sslmode=x"
        );
        assert_eq!(
            redact("host=p password = 'a b' x=1"),
            "host=p password = *** x=1"
        );
        assert_eq!(
            redact("postgresql://u:pw@h:5/db"),
            "postgresql://u:***@h:5/db"
        );
        assert_eq!(redact("cp %p /a/%f"), "cp %p /a/%f");
    }

    #[test]
    fn clone_preparation_strips_and_removes_without_following() {
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("v.ready");
        std::fs::write(&victim, "keep").unwrap();
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::write(p.join("postmaster.pid"), "1").unwrap();
        std::fs::write(p.join("standby.signal"), "").unwrap();
        std::fs::create_dir_all(p.join("pg_replslot/s1")).unwrap();
        std::fs::create_dir_all(p.join("pg_wal/archive_status")).unwrap();
        std::fs::write(p.join("pg_wal/archive_status/0001.ready"), "").unwrap();
        std::fs::write(p.join("pg_wal/archive_status/0000.done"), "").unwrap();
        std::os::unix::fs::symlink(&victim, p.join("pg_wal/archive_status/0002.ready")).unwrap();
        std::fs::write(
            p.join("postgresql.conf"),
            "archive_mode = on\narchive_command = 'cp %p /x/%f'\ninclude_if_exists = 'betterpg.conf'\n",
        )
        .unwrap();
        std::fs::write(
            p.join(AUTO_CONF),
            "# Do not edit\nlisten_addresses = '*'\nwork_mem = '8MB'\nprimary_conninfo = 'host=a password=b'\n",
        )
        .unwrap();
        let me = OsUser {
            name: "me".into(),
            uid: nix::unistd::Uid::effective().as_raw(),
            gid: nix::unistd::Gid::effective().as_raw(),
            home: "/".into(),
        };
        let dd = DataDir::open(p).unwrap();
        let r = prepare_clone(&dd, &me).unwrap();
        assert!(!p.join("postmaster.pid").exists());
        assert!(!p.join("standby.signal").exists());
        assert_eq!(r.replication_slots_dropped, vec!["s1".to_string()]);
        assert!(p.join("pg_wal/archive_status/0000.done").exists());
        assert!(!p.join("pg_wal/archive_status/0001.ready").exists());
        assert!(std::fs::symlink_metadata(p.join("pg_wal/archive_status/0002.ready")).is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        let auto = std::fs::read_to_string(p.join(AUTO_CONF)).unwrap();
        assert!(auto.contains("work_mem") && !auto.contains("listen") && !auto.contains("primary"));
        assert_eq!(r.settings_removed.len(), 2);
        assert_eq!(r.settings_removed[1].value, "host=a password=***");
        assert_eq!(r.settings_overridden[0].name, "archive_mode");
        // Already included last: postgresql.conf untouched.
        assert!(!std::fs::read_to_string(p.join("postgresql.conf"))
            .unwrap()
            .contains("Added by betterpg"));
        std::fs::write(
            p.join("postgresql.conf"),
            "include_if_exists = 'betterpg.conf'\nport = 1\n",
        )
        .unwrap();
        enforce_owned_settings(&dd, &me, Target::Database).unwrap();
        let conf = std::fs::read_to_string(p.join("postgresql.conf")).unwrap();
        assert!(conf.trim_end().ends_with(INCLUDE_LINE));
    }
}
