//! The private phase of a branch: everything done on its first start,
//! before it has a TCP listener (DESIGN.md sections 6 and 8).
//!
//! The first start of a branch listens on no TCP port: its only socket is
//! a Unix socket in a fresh directory that only root and the server's user
//! can enter, and its `pg_hba.conf` lets only that socket in. The
//! [`PrivatePlan`] of a branch, decided before anything is made, lists the
//! [`PrivateStep`]s run there, in order:
//!
//! 1. [`PrivateStep::Isolate`]: cut off from the source in SQL (password,
//!    subscriptions; [`isolate::detach_private`]). Always.
//! 2. [`PrivateStep::PrepareWal`]: when the branch will be masked, make
//!    sure no WAL file after the current one holds the source's old WAL
//!    (a restart that removes them), so the segments written from here on
//!    are new files.
//! 3. [`PrivateStep::SchemaOnly`]: every table emptied (`--schema-only`).
//! 4. [`PrivateStep::Mask`]: the masking SQL (files, then compiled rules)
//!    in ONE transaction; the tables it changed rewritten.
//! 5. [`PrivateStep::RotateCredentials`]: with `--credentials rotate`,
//!    every role with a password gets a new one
//!    ([`super::credentials::rotate`]), stored in `HOME/secrets/NAME.roles`.
//!    New steps that change the branch before anyone may reach it go here,
//!    before the scrub: add a variant, its place in
//!    [`PrivatePlan::steps`], and its arm in [`run`].
//! 6. [`PrivateStep::Scrub`]: what the data held before these steps gone
//!    from what a superuser of the branch can read (statement statistics,
//!    WAL: switch, checkpoint, every older segment removed).
//!
//! Then the server stops, and only then does the branch get its TCP port
//! (`ops/branch.rs`). Any failure fails the branch, which is rolled back:
//! it was never reachable.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::catalog::Entry;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::pg::cluster::{self, Profile};
use crate::pg::datadir::DataDir;
use crate::pg::isolate::{self, IsolationReport};
use crate::pg::mask::{self, MaskFile};
use crate::pg::mask_rules;
use crate::pg::ConnInfo;
use crate::runtime::{InstanceSpec, Runtime};

/// What the private phase does to one branch, decided (and its files read)
/// before anything is made.
#[derive(Debug, Clone, Default)]
pub(crate) struct PrivatePlan {
    /// Masking SQL files, in order.
    pub mask: Vec<MaskFile>,
    /// Masking rules compiled to SQL, run after the files in the same
    /// transaction (the key, when they need one, is the root source's).
    pub rules: Vec<mask_rules::Compiled>,
    /// Empty every table.
    pub schema_only: bool,
    /// Give every role with a password a new one (`--credentials rotate`).
    pub rotate: bool,
}

/// One step of the private phase; [`PrivatePlan::steps`] orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PrivateStep {
    /// Cut the branch off from its source in SQL.
    Isolate,
    /// Remove WAL files after the current one (a restart), so that every
    /// segment written from here on is a new file.
    PrepareWal,
    /// Empty every table.
    SchemaOnly,
    /// Run the masking SQL in one transaction; rewrite what it changed.
    Mask,
    /// New passwords for the roles (their old hashes scrubbed next).
    RotateCredentials,
    /// Remove what the data held before (statistics texts, WAL).
    Scrub,
}

impl PrivatePlan {
    /// The masking of this plan as the audit log records it: each SQL file's
    /// path and the SHA-256 of the bytes applied, then each rules file's path
    /// and the SHA-256 of its bytes (of the SQL compiled from it, should the
    /// file have become unreadable since it was compiled).
    pub(crate) fn audit_files(&self) -> Vec<crate::audit::AuditMaskFile> {
        use sha2::Digest;
        let hex = |bytes: &[u8]| -> String {
            sha2::Sha256::digest(bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        };
        let files = self.mask.iter().map(|f| crate::audit::AuditMaskFile {
            file: f.path.display().to_string(),
            sha256: hex(f.sql.as_bytes()),
        });
        let rules = self.rules.iter().map(|r| crate::audit::AuditMaskFile {
            file: r.path.display().to_string(),
            sha256: std::fs::read(&r.path)
                .map(|b| hex(&b))
                .unwrap_or_else(|_| hex(r.sql.as_bytes())),
        });
        files.chain(rules).collect()
    }

    /// Whether the branch's data is changed so that what it held before
    /// must be scrubbed.
    pub(crate) fn changes_data(&self) -> bool {
        self.schema_only || self.masks()
    }

    /// Whether there is masking SQL (files or rules) to run.
    pub(crate) fn masks(&self) -> bool {
        !self.mask.is_empty() || !self.rules.is_empty()
    }

    /// Whether what the branch held before must be scrubbed (changed
    /// data, or the old password hashes of rotated roles).
    pub(crate) fn scrubs(&self) -> bool {
        self.changes_data() || self.rotate
    }

    /// The steps, in the order they run.
    pub(crate) fn steps(&self) -> Vec<PrivateStep> {
        let mut s = vec![PrivateStep::Isolate];
        if self.scrubs() {
            s.push(PrivateStep::PrepareWal);
        }
        if self.schema_only {
            s.push(PrivateStep::SchemaOnly);
        }
        if self.masks() {
            s.push(PrivateStep::Mask);
        }
        if self.rotate {
            s.push(PrivateStep::RotateCredentials);
        }
        if self.scrubs() {
            s.push(PrivateStep::Scrub);
        }
        s
    }
}

/// What masking (and making a branch schema-only) did, in a branch's
/// report.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct MaskingReport {
    /// The masking SQL files applied, in order (compiled rules appear as
    /// their rules file).
    pub files: Vec<PathBuf>,
    /// Statements run in the masking transaction.
    pub statements: usize,
    /// Tables the masking changed, rewritten so no old row version is left.
    pub tables_rewritten: Vec<String>,
    /// Whether the branch was made schema-only (every table emptied).
    pub schema_only: bool,
    /// Tables emptied for a schema-only branch (`database: table`).
    pub tables_emptied: Vec<String>,
    /// WAL segment files removed after the masking (the source's WAL and
    /// the masking's own, which carry the old values).
    pub wal_files_removed: usize,
}

/// Start the clone privately, run the plan's steps, and stop it again.
/// `recovery` is extra settings of the private start (a point-in-time
/// branch's replay; empty for none): then the steps wait until the branch
/// has replayed and promoted. Each step's time is pushed onto `steps`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run(
    ctx: &Context,
    entry: &Entry,
    dd: &DataDir,
    wal: &DataDir,
    data_dir: &Path,
    recovery: &str,
    plan: &PrivatePlan,
    isolation: &mut IsolationReport,
    masking: &mut Option<MaskingReport>,
    started: &mut Option<InstanceSpec>,
    steps: &mut Vec<(&'static str, f64)>,
) -> Result<()> {
    let mut t = Instant::now();
    let mut lap = |step: &'static str, steps: &mut Vec<(&'static str, f64)>| {
        let now = Instant::now();
        steps.push((step, (now - t).as_secs_f64() * 1000.0));
        t = now;
    };
    // A fresh directory of its own for the socket: short (a socket path
    // has ~100 bytes), reachable only by root and the server's user (mode
    // 0700 from its creation: its pg_hba.conf trusts every local
    // connection, and the socket itself is open to all), and gone when
    // this returns. Its name starts with the home's and branch's own
    // prefix, so `gc` finds it when this process was killed.
    let sock = tempfile::Builder::new()
        .prefix(&socket_dir_prefix(ctx.home.root(), &entry.name))
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir()
        .map_err(|e| Error::io("creating a private socket directory", e))?;
    let sock_dd = DataDir::open(sock.path())?;
    let user = ctx.user_of(entry);
    sock_dd.write(
        "pg_hba.conf",
        isolate::PRIVATE_HBA.as_bytes(),
        Some(&user),
        0o600,
    )?;
    crate::pg::datadir::give_fd(
        &std::fs::File::open(sock.path())
            .map_err(|e| Error::io("opening the socket directory", e))?,
        &user,
        &sock.path().display().to_string(),
    )?;
    cluster::write_settings_with(
        dd,
        &user,
        entry.port,
        &ctx.config.listen_address,
        &Profile::Private {
            socket_dir: sock.path().to_path_buf(),
            pg_major: entry.pg_major,
        },
        recovery,
    )?;
    let mut spec = ctx.spec_for(entry, data_dir.to_path_buf())?;
    spec.private_socket_dir = Some(sock.path().to_path_buf());
    let rt = ctx.runtime(&entry.runtime)?;
    *started = Some(spec.clone());
    rt.start(&spec).await?;
    lap("private_start", steps);
    let admin = rt
        .private_conn(&spec)
        .ok_or_else(|| Error::Internal("private start without a private connection".into()))?;
    if !recovery.is_empty() {
        wait_promoted(&admin, &entry.name, ctx.config.start_timeout_secs).await?;
        lap("replay", steps);
    }
    let mut report = plan.changes_data().then(|| MaskingReport {
        files: plan
            .mask
            .iter()
            .map(|f| f.path.clone())
            .chain(plan.rules.iter().map(|r| r.path.clone()))
            .collect(),
        schema_only: plan.schema_only,
        ..MaskingReport::default()
    });
    for step in plan.steps() {
        match step {
            PrivateStep::Isolate => {
                let password = ctx.home.read_secret(&entry.name)?;
                isolate::detach_private(&admin, &password, isolation).await?;
                lap("isolate_sql", steps);
            }
            PrivateStep::PrepareWal => {
                if prepare_wal(&admin, &*rt, &spec, wal).await? {
                    lap("wal_restart", steps);
                }
            }
            PrivateStep::SchemaOnly => {
                let r = report.get_or_insert_with(MaskingReport::default);
                for db in mask::databases(&admin).await? {
                    let c = ConnInfo {
                        dbname: db.clone(),
                        ..admin.clone()
                    }
                    .connect()
                    .await?;
                    for t in mask::truncate_all(&c).await? {
                        r.tables_emptied.push(format!("{db}: {t}"));
                    }
                }
                lap("schema_only", steps);
            }
            PrivateStep::Mask => {
                // The rules' key: the root source's (made on first need).
                let key = match plan.rules.iter().any(|r| r.needs_key) {
                    true => {
                        let from = entry.parent.as_deref().unwrap_or(&entry.name);
                        let root = super::mask_rules::root_source(ctx, from)?;
                        let hex = super::mask_rules::source_key(ctx, &root)?;
                        Some(mask_rules::key_setting(&hex)?)
                    }
                    false => None,
                };
                let c = admin.connect().await?;
                let applied =
                    mask::apply_files(&c, &plan.mask, &plan.rules, key.as_deref()).await?;
                lap("mask", steps);
                mask::rewrite_tables(&c, &applied.changed_tables).await?;
                let r = report.get_or_insert_with(MaskingReport::default);
                r.statements = applied.statements;
                r.tables_rewritten = applied.changed_tables;
                lap("mask_rewrite", steps);
            }
            PrivateStep::RotateCredentials => {
                let secrets = super::credentials::rotate(&admin).await?;
                ctx.home.write_roles(&entry.name, &secrets)?;
                isolation.roles_rotated = secrets.roles.into_keys().collect();
                lap("rotate_credentials", steps);
            }
            PrivateStep::Scrub => {
                for db in mask::databases(&admin).await? {
                    let c = ConnInfo {
                        dbname: db,
                        ..admin.clone()
                    }
                    .connect()
                    .await?;
                    mask::reset_statement_stats(&c).await?;
                }
                let c = admin.connect().await?;
                let before = wal_files(wal)?;
                let state = mask::switch_and_checkpoint(&c).await?;
                drop(c);
                let after = wal_files(wal)?;
                if let Some(r) = report.as_mut() {
                    r.wal_files_removed = before.iter().filter(|f| !after.contains(f)).count();
                }
                lap("scrub_wal", steps);
                // Stop before touching pg_wal from outside; then what
                // lies after the current segment (none expected: the
                // prepare step removed them) goes too.
                rt.stop(&spec).await?;
                *started = None;
                remove_after(wal, &state.current)?;
                remove_statement_files(dd)?;
                lap("private_stop", steps);
            }
        }
    }
    if !plan.rotate {
        // A reset that keeps the credentials now: no stale passwords.
        ctx.home.remove_roles(&entry.name);
    }
    if started.is_some() {
        rt.stop(&spec).await?;
        *started = None;
        lap("private_stop", steps);
    }
    *masking = report;
    Ok(())
}

/// The name prefix of the private socket directories of `name`'s first
/// starts in the home `home`: `bpg-sock-`, then a stable hash (64-bit
/// FNV-1a) of the home and the name, then `-`. `gc` finds the directory a
/// killed process left in the temporary directory by it, without reading
/// anything from the branch's data directory.
pub(crate) fn socket_dir_prefix(home: &Path, name: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let home = home.as_os_str().as_encoded_bytes();
    for b in home.iter().chain(&[0u8]).chain(name.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("bpg-sock-{h:016x}-")
}

/// The private socket directories of `name`'s first starts in the home
/// `home` that exist in the temporary directory (directories only, never
/// a link): left by a process killed during a branch's private phase.
pub(crate) fn socket_dirs_of(home: &Path, name: &str) -> Vec<PathBuf> {
    let prefix = socket_dir_prefix(home, name);
    let Ok(rd) = std::fs::read_dir(std::env::temp_dir()) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = rd
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// Wait until a replaying branch has reached its target and promoted.
async fn wait_promoted(admin: &crate::pg::ConnInfo, name: &str, timeout_secs: u64) -> Result<()> {
    let deadline = Instant::now() + std::time::Duration::from_secs(timeout_secs.max(30));
    loop {
        let c = admin.connect().await?;
        let in_recovery: bool = c.query_one("SELECT pg_is_in_recovery()", &[]).await?.get(0);
        if !in_recovery {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Timeout(format!(
                "branch {name:?} did not finish replaying to its point in time within {timeout_secs} s (start_timeout_secs in config.json)"
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The WAL segment files in the branch's WAL directory `wal` (its
/// `pg_wal`, or the clone a linked `pg_wal` points at): 24 hex digits, or
/// `.partial`.
fn wal_files(wal: &DataDir) -> Result<Vec<String>> {
    Ok(wal
        .list()?
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| is_segment_name(n))
        .collect())
}

fn is_segment_name(n: &str) -> bool {
    let base = n.strip_suffix(".partial").unwrap_or(n);
    base.len() == 24 && base.bytes().all(|c| c.is_ascii_hexdigit())
}

/// Remove every segment file after `current` (the server is stopped).
fn remove_after(wal: &DataDir, current: &str) -> Result<usize> {
    let mut n = 0;
    for f in wal_files(wal)? {
        if mask::is_later(&f, current) {
            wal.remove(&f)?;
            n += 1;
        }
    }
    Ok(n)
}

/// `pg_stat_statements`' saved statistics and query texts from the
/// source (when the module is not loaded, nothing else removes them).
fn remove_statement_files(dd: &DataDir) -> Result<()> {
    for (dir, file) in [
        ("pg_stat", "pg_stat_statements.stat"),
        ("pg_stat_tmp", "pgss_query_texts.stat"),
    ] {
        if let Some(d) = dd.subdir_if_exists(dir)? {
            d.remove(file)?;
        }
    }
    Ok(())
}

/// When WAL files after the current one exist (the source's recycled
/// segments keep their old content under future names), stop the server,
/// remove them and start it again privately, so that every segment
/// written from now on is a new file. Returns whether it restarted.
async fn prepare_wal(
    admin: &ConnInfo,
    rt: &dyn Runtime,
    spec: &InstanceSpec,
    wal: &DataDir,
) -> Result<bool> {
    let c = admin.connect().await?;
    let current: String = c
        .query_one("SELECT pg_walfile_name(pg_current_wal_lsn())", &[])
        .await
        .map_err(|e| Error::postgres_with(&e, format!("reading the WAL position: {e}")))?
        .get(0);
    drop(c);
    if !wal_files(wal)?.iter().any(|f| mask::is_later(f, &current)) {
        return Ok(false);
    }
    rt.stop(spec).await?;
    remove_after(wal, &current)?;
    rt.start(spec).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_follow_the_plan() {
        let mut p = PrivatePlan::default();
        assert_eq!(p.steps(), vec![PrivateStep::Isolate]);
        p.rotate = true;
        assert_eq!(
            p.steps(),
            vec![
                PrivateStep::Isolate,
                PrivateStep::PrepareWal,
                PrivateStep::RotateCredentials,
                PrivateStep::Scrub
            ]
        );
        assert!(!p.changes_data() && p.scrubs());
        p.rotate = false;
        p.schema_only = true;
        p.mask.push(MaskFile {
            path: "a.sql".into(),
            sql: "SELECT 1".into(),
        });
        assert_eq!(
            p.steps(),
            vec![
                PrivateStep::Isolate,
                PrivateStep::PrepareWal,
                PrivateStep::SchemaOnly,
                PrivateStep::Mask,
                PrivateStep::Scrub
            ]
        );
        assert!(is_segment_name("000000010000000000000003"));
        assert!(is_segment_name("000000010000000000000003.partial"));
        assert!(!is_segment_name("00000002.history"));
    }

    #[test]
    fn socket_dir_prefix_is_stable_and_per_home_and_name() {
        let a = socket_dir_prefix(Path::new("/var/lib/bpg"), "dev");
        // FNV-1a of "/var/lib/bpg\0dev": the same in every build.
        assert_eq!(a, socket_dir_prefix(Path::new("/var/lib/bpg"), "dev"));
        assert!(a.starts_with("bpg-sock-") && a.ends_with('-') && a.len() == 26);
        assert_ne!(a, socket_dir_prefix(Path::new("/var/lib/bpg"), "dev2"));
        assert_ne!(a, socket_dir_prefix(Path::new("/var/lib/bpg2"), "dev"));
        // The separator keeps ("/h", "ab") and ("/ha", "b") apart.
        assert_ne!(
            socket_dir_prefix(Path::new("/h"), "ab"),
            socket_dir_prefix(Path::new("/ha"), "b")
        );
    }

    #[test]
    fn socket_dirs_of_finds_directories_never_links() {
        let home = Path::new("/nonexistent/home-for-socket-dirs-test");
        let name = format!("t{}", std::process::id());
        let d = tempfile::Builder::new()
            .prefix(&socket_dir_prefix(home, &name))
            .tempdir()
            .unwrap();
        let link = std::env::temp_dir().join(format!("{}link", socket_dir_prefix(home, &name)));
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(d.path(), &link).unwrap();
        assert_eq!(socket_dirs_of(home, &name), vec![d.path().to_path_buf()]);
        std::fs::remove_file(&link).unwrap();
        assert!(socket_dirs_of(home, "other").is_empty());
    }

    #[test]
    fn masking_hashes_are_sha256_of_the_bytes() {
        let plan = PrivatePlan {
            mask: vec![crate::pg::mask::MaskFile {
                path: "/m/a.sql".into(),
                sql: "test".into(),
            }],
            ..PrivatePlan::default()
        };
        let h = plan.audit_files();
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].file, "/m/a.sql");
        assert_eq!(
            h[0].sha256,
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
    }
}
