//! PostgreSQL's low-level base backup API on one held connection.
//!
//! The whole backup runs on a single session: if it ends early (betterpg
//! crashes, the network drops) the server aborts the backup and drops the
//! temporary slot by itself, so nothing is left in backup mode. PG >= 15 uses
//! `pg_backup_start`/`pg_backup_stop`; PG <= 14 the non-exclusive form of
//! `pg_start_backup`/`pg_stop_backup`.

use tokio_postgres::Client;

use super::conn::ConnInfo;
use super::wal::{parse_lsn, Lsn};
use crate::error::{Error, Result};

/// What `pg_backup_stop` hands back: the stop LSN and the two files to put
/// into the copy, byte for byte.
#[derive(Debug, Clone)]
pub struct BackupStop {
    /// LSN the copy must replay to before it is consistent.
    pub stop_lsn: Lsn,
    /// Contents for `backup_label`.
    pub labelfile: String,
    /// Contents for `tablespace_map` (empty when there are no tablespaces).
    pub spcmapfile: String,
}

/// A backup in progress on a held connection.
pub struct BackupSession {
    client: Client,
    version_num: u32,
    slot: String,
    in_backup: bool,
    /// WAL segment size in bytes of the source.
    pub wal_segment_size: u64,
}

impl std::fmt::Debug for BackupSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupSession")
            .field("version_num", &self.version_num)
            .field("slot", &self.slot)
            .field("in_backup", &self.in_backup)
            .finish()
    }
}

/// `server_version_num` of a connected server (e.g. 150018).
pub async fn server_version_num(client: &Client) -> Result<u32> {
    let row = client
        .query_one("SELECT current_setting('server_version_num')::int4", &[])
        .await?;
    Ok(row.get::<_, i32>(0) as u32)
}

/// The statements that would give `role` what the backup recipe calls
/// on a source of version `version_num` and that it lacks (empty: it has
/// everything; a superuser always does): the temporary replication slot
/// that keeps the WAL (`REPLICATION`), the backup functions, reading
/// `data_directory` (`pg_read_all_settings`), and, on PG >= 15, the
/// `CHECKPOINT` of the crash-consistent mode (`pg_checkpoint`).
pub async fn missing_backup_rights(client: &Client, version_num: u32) -> Result<Vec<String>> {
    let (start_fn, stop_fn) = if version_num >= 150000 {
        ("pg_backup_start(text, boolean)", "pg_backup_stop(boolean)")
    } else {
        (
            "pg_start_backup(text, boolean, boolean)",
            "pg_stop_backup(boolean, boolean)",
        )
    };
    let checkpoint = if version_num >= 150000 {
        "pg_has_role('pg_checkpoint', 'USAGE')"
    } else {
        "true"
    };
    let row = client
        .query_one(
            &format!(
                "SELECT r.rolname::text, r.rolsuper, r.rolreplication, \
                 has_function_privilege($1, 'EXECUTE'), \
                 has_function_privilege($2, 'EXECUTE'), \
                 pg_has_role('pg_read_all_settings', 'USAGE'), {checkpoint} \
                 FROM pg_roles r WHERE r.rolname = current_user"
            ),
            &[&start_fn, &stop_fn],
        )
        .await?;
    let role = crate::pg::isolate::quote_ident(&row.get::<_, String>(0));
    if row.get::<_, bool>(1) {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    if !row.get::<_, bool>(2) {
        out.push(format!("ALTER ROLE {role} REPLICATION;"));
    }
    if !row.get::<_, bool>(3) {
        out.push(format!("GRANT EXECUTE ON FUNCTION {start_fn} TO {role};"));
    }
    if !row.get::<_, bool>(4) {
        out.push(format!("GRANT EXECUTE ON FUNCTION {stop_fn} TO {role};"));
    }
    if !row.get::<_, bool>(5) {
        out.push(format!("GRANT pg_read_all_settings TO {role};"));
    }
    if !row.get::<_, bool>(6) {
        out.push(format!("GRANT pg_checkpoint TO {role};"));
    }
    Ok(out)
}

/// The error for a role that lacks `missing` (from
/// [`missing_backup_rights`]): SQLSTATE 42501 (insufficient privilege),
/// naming each statement to run.
pub fn missing_rights_error(user: &str, missing: &[String]) -> Error {
    Error::Postgres {
        sqlstate: Some("42501".into()),
        message: format!(
            "role {user:?} lacks what betterpg's backup recipe needs (a temporary replication slot, pg_backup_start/stop, reading data_directory, CHECKPOINT); as a superuser of the source run: {}",
            missing.join(" ")
        ),
        detail: None,
    }
}

/// Connect with `conn` and check that its role has what betterpg's
/// backup recipe needs (else [`missing_rights_error`], naming each
/// statement to run); returns the connection and the server's version
/// number.
pub async fn connect_with_backup_rights(conn: &ConnInfo) -> Result<(Client, u32)> {
    let client = conn.connect().await?;
    let version_num = server_version_num(&client).await?;
    let missing = missing_backup_rights(&client, version_num).await?;
    if !missing.is_empty() {
        return Err(missing_rights_error(&conn.user, &missing));
    }
    Ok((client, version_num))
}

impl BackupSession {
    /// Connect, retain WAL with a temporary physical slot made on this same
    /// connection, and enter backup mode with an immediate checkpoint.
    pub async fn start(conn: &ConnInfo, label: &str) -> Result<BackupSession> {
        Self::open(conn, label, false).await
    }

    /// [`BackupSession::start`] on a standby: the backup starts at its
    /// last restartpoint and asks nothing of its primary (DESIGN.md 7).
    pub async fn start_on_standby(conn: &ConnInfo, label: &str) -> Result<BackupSession> {
        Self::open(conn, label, true).await
    }

    async fn open(conn: &ConnInfo, label: &str, standby: bool) -> Result<BackupSession> {
        let (client, version_num) = connect_with_backup_rights(conn).await?;
        let row = client
            .query_one(
                "SELECT current_setting('wal_level'), \
                 current_setting('max_replication_slots')::int4, \
                 (SELECT setting::int8 FROM pg_settings WHERE name = 'wal_segment_size'), \
                 pg_is_in_recovery()",
                &[],
            )
            .await?;
        let (wal_level, slots, seg, in_recovery): (String, i32, i64, bool) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        if wal_level == "minimal" {
            return Err(Error::postgres(
                "wal_level is minimal: set wal_level = replica on the source and restart it",
            ));
        }
        if slots < 1 {
            return Err(Error::postgres(
                "max_replication_slots is 0: set it to at least 1 on the source and restart it",
            ));
        }
        if in_recovery && !standby {
            return Err(Error::Unsupported(
                "the source is a standby in recovery; branch its primary or use --fast".into(),
            ));
        }
        let slot = format!("betterpg_{}", crate::util::random_token(12).to_lowercase());
        // Temporary + immediately reserved: WAL from now on is kept until this
        // session ends, whatever checkpoints happen meanwhile.
        client
            .execute(
                "SELECT pg_create_physical_replication_slot($1, true, true)",
                &[&slot],
            )
            .await?;
        let start_sql = if version_num >= 150000 {
            "SELECT pg_backup_start($1, true)::text"
        } else {
            "SELECT pg_start_backup($1, true, false)::text"
        };
        client.query_one(start_sql, &[&label]).await?;
        Ok(BackupSession {
            client,
            version_num,
            slot,
            in_backup: true,
            wal_segment_size: seg as u64,
        })
    }

    /// PostgreSQL major version of the source.
    pub fn major(&self) -> u32 {
        self.version_num / 10000
    }

    /// Name of the temporary slot holding WAL back.
    pub fn slot_name(&self) -> &str {
        &self.slot
    }

    /// Leave backup mode and return the label, map and stop LSN.
    pub async fn stop(&mut self) -> Result<BackupStop> {
        let sql = if self.version_num >= 150000 {
            "SELECT lsn::text, labelfile, spcmapfile FROM pg_backup_stop(false)"
        } else {
            "SELECT lsn::text, labelfile, spcmapfile FROM pg_stop_backup(false, false)"
        };
        let row = self.client.query_one(sql, &[]).await.map_err(|e| {
            if self.client.is_closed() {
                self.in_backup = false;
                Error::postgres_with(&e, format!(
                    "lost the connection to the source during the backup ({e}): did it stop or crash? Nothing was kept; start the source and branch again"
                ))
            } else {
                Error::from(e)
            }
        })?;
        self.in_backup = false;
        let lsn: String = row.get(0);
        Ok(BackupStop {
            stop_lsn: parse_lsn(&lsn)?,
            labelfile: row.get(1),
            spcmapfile: row.get::<_, Option<String>>(2).unwrap_or_default(),
        })
    }

    /// End the session: leave backup mode if still in it, drop the slot and
    /// close the connection. Errors are reported but the connection is
    /// closed regardless (which makes the server clean up by itself).
    pub async fn finish(mut self) -> Result<()> {
        let mut first_err = None;
        if self.in_backup {
            if let Err(e) = self.stop().await {
                first_err = Some(e);
            }
        }
        // A closed connection already ended the backup and dropped the
        // temporary slot server-side: nothing left to do.
        if !self.client.is_closed() {
            if let Err(e) = self
                .client
                .execute("SELECT pg_drop_replication_slot($1)", &[&self.slot])
                .await
            {
                first_err.get_or_insert(Error::from(e));
            }
        }
        drop(self.client);
        first_err.map_or(Ok(()), Err)
    }
}

/// Whether a crash-consistent snapshot of a running server was preceded by
/// a `CHECKPOINT`, and why ([`checkpoint_unless_recent`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CheckpointDecision {
    /// True when the server was asked for a `CHECKPOINT`.
    pub done: bool,
    /// WAL the server wrote since its last checkpoint began (its redo
    /// point), in bytes: what a copy taken now replays at its first start.
    /// `None` when the server did not say (then the checkpoint is done).
    pub wal_since_checkpoint: Option<u64>,
    /// The limit: with at most this much WAL since the last checkpoint, none
    /// is asked for. 0: always one.
    pub threshold: u64,
    /// Why, in words.
    pub reason: String,
}

/// WAL since the last checkpoint's redo point, bytes (on a standby: since
/// its last restartpoint, up to what it replayed); `None` when the server
/// cannot say. `pg_control_checkpoint()` reads the control file, needs a
/// superuser (betterpg's connections are), and works on every version
/// betterpg runs.
pub async fn wal_since_checkpoint(client: &Client) -> Result<Option<u64>> {
    let row = client
        .query_one(
            "SELECT pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() \
             ELSE pg_current_wal_lsn() END, redo_lsn)::bigint FROM pg_control_checkpoint()",
            &[],
        )
        .await?;
    let diff: Option<i64> = row.get(0);
    Ok(diff.and_then(|d| u64::try_from(d).ok()))
}

/// What to do before a crash-consistent snapshot, given the WAL since the
/// last checkpoint (`wal`) and the `threshold`: a checkpoint only bounds
/// the copy's redo (an atomic snapshot holds every committed transaction
/// either way), so it is skipped when the copy would replay little. Pure.
pub fn decide_checkpoint(wal: Option<u64>, threshold: u64) -> CheckpointDecision {
    let mib = |b: u64| format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64);
    let (done, reason) = match wal {
        _ if threshold == 0 => (
            true,
            "fast_checkpoint_max_wal is 0: always checkpoint".to_string(),
        ),
        None => (
            true,
            "the source did not say how much WAL it wrote since its last checkpoint".to_string(),
        ),
        Some(w) if w <= threshold => (
            false,
            format!(
                "{} of WAL since the source's last checkpoint, at most {}: the branch replays it at its first start",
                mib(w),
                mib(threshold)
            ),
        ),
        Some(w) => (
            true,
            format!(
                "{} of WAL since the source's last checkpoint, more than {}: a checkpoint keeps the branch's recovery short",
                mib(w),
                mib(threshold)
            ),
        ),
    };
    CheckpointDecision {
        done,
        wal_since_checkpoint: wal,
        threshold,
        reason,
    }
}

/// Ask the server on `client` for a `CHECKPOINT` unless it wrote at most
/// `threshold` bytes of WAL since its last one ([`decide_checkpoint`]).
pub async fn checkpoint_unless_recent(
    client: &Client,
    threshold: u64,
) -> Result<CheckpointDecision> {
    let wal = if threshold == 0 {
        None
    } else {
        wal_since_checkpoint(client).await?
    };
    let d = decide_checkpoint(wal, threshold);
    if d.done {
        client.batch_execute("CHECKPOINT").await?;
    }
    Ok(d)
}

#[cfg(test)]
mod checkpoint_tests {
    use super::*;

    #[test]
    fn a_checkpoint_is_skipped_only_below_the_threshold() {
        let t = 64 << 20;
        let small = decide_checkpoint(Some(1 << 20), t);
        assert!(!small.done, "{small:?}");
        assert!(small.reason.contains("1.0 MiB"), "{}", small.reason);
        assert!(
            !decide_checkpoint(Some(t), t).done,
            "at the threshold: skipped"
        );
        assert!(decide_checkpoint(Some(t + 1), t).done);
        assert!(decide_checkpoint(None, t).done, "unknown: checkpoint");
        let always = decide_checkpoint(Some(0), 0);
        assert!(
            always.done && always.reason.contains("always"),
            "{always:?}"
        );
    }
}
