//! Masking a branch on its private start (DESIGN.md section 8): SQL files
//! run in one transaction, then the old values removed from what a
//! superuser of the branch can read (dead tuples, statistics, WAL).
//!
//! This module knows SQL and PostgreSQL, not betterpg's policy: which files
//! and rules apply to a branch is decided by the operations
//! (`ops/private.rs`).

use std::path::{Path, PathBuf};

use tokio_postgres::error::ErrorPosition;
use tokio_postgres::Client;

use super::conn::ConnInfo;
use super::mask_rules;
use crate::error::{Error, Result};

/// Largest masking file read (a masking script is text, not data).
pub const MAX_MASK_FILE: u64 = 16 << 20;

/// One masking SQL file, read before anything is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskFile {
    /// Where it was read from (absolute), or a label such as
    /// `rules.toml (compiled)` for SQL betterpg wrote.
    pub path: PathBuf,
    /// Its text.
    pub sql: String,
}

/// The files named by `paths`, in order: a file as it is, a directory as
/// its `*.sql` files in name order. Paths are made absolute (a reset reads
/// them again later, from wherever it runs). A missing or unreadable
/// path, or a directory without `*.sql` files, is an error naming it.
pub fn load_files(paths: &[PathBuf]) -> Result<Vec<MaskFile>> {
    let mut out = Vec::new();
    for p in paths {
        let abs = std::path::absolute(p)
            .map_err(|e| Error::io(format!("resolving the masking path {}", p.display()), e))?;
        let meta = std::fs::metadata(&abs).map_err(|e| {
            mask_error(
                Some(&abs),
                format!("cannot read the masking file or directory: {e}"),
            )
        })?;
        if meta.is_dir() {
            let mut names: Vec<PathBuf> = std::fs::read_dir(&abs)
                .map_err(|e| Error::io(format!("listing {}", abs.display()), e))?
                .filter_map(|d| d.ok().map(|d| d.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "sql") && p.is_file())
                .collect();
            names.sort();
            if names.is_empty() {
                return Err(mask_error(
                    Some(&abs),
                    "the masking directory has no *.sql files: give files, or a directory that holds them".into(),
                ));
            }
            for n in names {
                out.push(read_one(&n)?);
            }
        } else {
            out.push(read_one(&abs)?);
        }
    }
    Ok(out)
}

fn read_one(path: &Path) -> Result<MaskFile> {
    let meta = std::fs::metadata(path)
        .map_err(|e| mask_error(Some(path), format!("cannot read the masking file: {e}")))?;
    if meta.len() > MAX_MASK_FILE {
        return Err(mask_error(
            Some(path),
            format!(
                "the masking file has {} bytes; at most {MAX_MASK_FILE} are read",
                meta.len()
            ),
        ));
    }
    let sql = std::fs::read_to_string(path)
        .map_err(|e| mask_error(Some(path), format!("cannot read the masking file: {e}")))?;
    Ok(MaskFile {
        path: path.to_path_buf(),
        sql,
    })
}

/// A driver error with what was being done, keeping the server's message.
fn pg_err(e: tokio_postgres::Error, doing: String) -> Error {
    Error::from(e).reword(|m| format!("{doing}: {m}"))
}

fn mask_error(file: Option<&Path>, message: String) -> Error {
    Error::Mask {
        file: file.map(Path::to_path_buf),
        line: None,
        statement: None,
        sqlstate: None,
        message,
    }
}

/// One statement of a masking file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// Its text, without the terminating semicolon.
    pub text: String,
    /// The line (1-based) of the file where it starts.
    pub line: u32,
}

/// Split SQL text into statements at top-level semicolons, as `psql` does:
/// semicolons inside quotes (`'...'`, `E'...'`, `"..."`), dollar quotes
/// (`$tag$...$tag$`), comments (`--`, nested `/* */`) and parentheses do
/// not end a statement. Empty statements (only blanks and comments) are
/// left out. Each statement keeps its starting line for error messages.
pub fn split_statements(sql: &str) -> Vec<Statement> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut start = 0usize;
    let mut i = 0usize;
    let mut depth = 0i32;
    let push = |out: &mut Vec<Statement>, from: usize, to: usize| {
        let text = &sql[from..to];
        if has_code(text) {
            // Start at the first character of code (after blanks and
            // comments), for the line number.
            let lead = code_start(text);
            let line = 1 + sql[..from + lead].bytes().filter(|&c| c == b'\n').count() as u32;
            out.push(Statement {
                text: text[lead..].trim_end().to_string(),
                line,
            });
        }
    };
    while i < b.len() {
        if let Some(end) = comment_end(b, i) {
            i = end;
            continue;
        }
        match b[i] {
            b'\'' => {
                // E'...' strings take backslash escapes.
                let escapes = i > 0 && matches!(b[i - 1], b'e' | b'E') && !is_ident(b, i - 1);
                i += 1;
                while i < b.len() {
                    if escapes && b[i] == b'\\' {
                        i += 2;
                        continue;
                    }
                    if b[i] == b'\'' {
                        if b.get(i + 1) == Some(&b'\'') {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += 1;
                }
            }
            b'$' if !(i > 0 && is_word(b[i - 1])) => {
                // $tag$ ... $tag$ (tag empty or an identifier); $1 is a parameter.
                let mut j = i + 1;
                while j < b.len() && is_word(b[j]) && !(j == i + 1 && b[j].is_ascii_digit()) {
                    j += 1;
                }
                if j < b.len() && b[j] == b'$' {
                    let tag = &sql[i..=j];
                    match sql[j + 1..].find(tag) {
                        Some(end) => i = j + 1 + end + tag.len() - 1,
                        None => i = b.len(),
                    }
                }
            }
            b'(' => depth += 1,
            b')' => depth -= 1,
            b';' if depth <= 0 => {
                push(&mut out, start, i);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if start < b.len() {
        push(&mut out, start, b.len());
    }
    out
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

/// Whether the character at `at` continues an identifier (so `xe'..'` is
/// not an `E'..'` string).
fn is_ident(b: &[u8], at: usize) -> bool {
    at > 0 && is_word(b[at - 1])
}

/// Where the comment starting at `i` ends, if one starts there: a `--`
/// comment at its line's end (the newline itself is not part of it), a
/// `/* */` comment (nested ones too) after its closing `*/` (the text's
/// end when it is not closed).
fn comment_end(b: &[u8], mut i: usize) -> Option<usize> {
    if b[i] == b'-' && b.get(i + 1) == Some(&b'-') {
        while i < b.len() && b[i] != b'\n' {
            i += 1;
        }
        return Some(i);
    }
    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
        let mut nest = 1;
        i += 2;
        while i < b.len() && nest > 0 {
            if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                nest += 1;
                i += 2;
            } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                nest -= 1;
                i += 2;
            } else {
                i += 1;
            }
        }
        return Some(i);
    }
    None
}

/// Whether `text` holds anything but blanks and comments.
fn has_code(text: &str) -> bool {
    code_start(text) < text.len()
}

/// The byte offset of the first character in `text` that is neither blank
/// nor in a comment (`text.len()` when there is none).
fn code_start(text: &str) -> usize {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_whitespace() {
            i += 1;
        } else if let Some(end) = comment_end(b, i) {
            i = end;
        } else {
            return i;
        }
    }
    b.len()
}

/// The line of `stmt` (in its file) at the server's error position (a
/// 1-based character index into the statement), or its first line.
pub fn line_at(stmt: &Statement, position: Option<u32>) -> u32 {
    match position {
        Some(p) if p > 0 => {
            let upto: String = stmt.text.chars().take(p as usize - 1).collect();
            stmt.line + upto.matches('\n').count() as u32
        }
        _ => stmt.line,
    }
}

/// Session settings of a masking connection: nothing it runs is logged
/// or kept in `pg_stat_statements` (the private start's settings say the
/// same; these hold even where a role or database overrides them).
pub const QUIET_SESSION: &str = "SET log_statement = 'none'; \
     SET log_min_duration_statement = -1; \
     SET log_min_error_statement = 'panic'; \
     SET log_duration = off; \
     SET client_min_messages = 'warning'";

/// What [`apply_files`] did.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// Statements run.
    pub statements: usize,
    /// Tables whose rows were updated or deleted (so dead tuples hold old
    /// values), as `regclass` text (quoted as needed).
    pub changed_tables: Vec<String>,
}

/// Run `files` in order in ONE transaction on `client` (the branch's
/// private connection), statement by statement so that a failure names
/// its file, line and statement; then, in the same transaction, the
/// compiled `rules` (their tables and columns checked first; `key`, the
/// value of [`mask_rules::KEY_SETTING`], set from a bound parameter for
/// the rules that need it and cleared after them). The transaction is
/// rolled back on failure. Returns the tables whose rows the transaction
/// changed, to rewrite.
pub async fn apply_files(
    client: &Client,
    files: &[MaskFile],
    rules: &[mask_rules::Compiled],
    key: Option<&str>,
) -> Result<Applied> {
    client
        .batch_execute(QUIET_SESSION)
        .await
        .map_err(|e| pg_err(e, "preparing the masking session".into()))?;
    client
        .batch_execute("BEGIN")
        .await
        .map_err(|e| pg_err(e, "starting the masking transaction".into()))?;
    let mut applied = Applied::default();
    let compiled: Vec<MaskFile> = rules
        .iter()
        .map(|c| MaskFile {
            path: c.path.clone(),
            sql: c.sql.clone(),
        })
        .collect();
    let mut key_set = false;
    for (i, f) in files.iter().chain(compiled.iter()).enumerate() {
        if let Some(c) = i.checked_sub(files.len()).map(|j| &rules[j]) {
            if let Err(e) = mask_rules::check_targets(client, c).await {
                let _ = client.batch_execute("ROLLBACK").await;
                return Err(e);
            }
            if c.needs_key && !key_set {
                let Some(key) = key else {
                    let _ = client.batch_execute("ROLLBACK").await;
                    return Err(Error::Internal(
                        "masking rules that need a key, without one".into(),
                    ));
                };
                // Bound, never in a statement's text; local to the
                // transaction.
                if let Err(e) = client
                    .execute(
                        "SELECT set_config($1, $2, true)",
                        &[&mask_rules::KEY_SETTING, &key],
                    )
                    .await
                {
                    let _ = client.batch_execute("ROLLBACK").await;
                    return Err(pg_err(e, "setting the masking key".into()));
                }
                key_set = true;
            }
        }
        for stmt in split_statements(&f.sql) {
            if let Err(e) = client.batch_execute(&stmt.text).await {
                let _ = client.batch_execute("ROLLBACK").await;
                let db = e.as_db_error();
                let pos = db.and_then(|d| match d.position() {
                    Some(ErrorPosition::Original(p)) => Some(*p),
                    _ => None,
                });
                let message = match db {
                    Some(d) => format!(
                        "{}: {}{}{}",
                        d.severity(),
                        d.message(),
                        d.detail()
                            .map(|x| format!(" (detail: {x})"))
                            .unwrap_or_default(),
                        d.hint()
                            .map(|h| format!(" (hint: {h})"))
                            .unwrap_or_default()
                    ),
                    None => e.to_string(),
                };
                return Err(Error::Mask {
                    file: Some(f.path.clone()),
                    line: Some(line_at(&stmt, pos)),
                    statement: Some(stmt.text.clone()),
                    sqlstate: e.code().map(|c| c.code().to_string()),
                    message: format!(
                        "{message}; nothing was applied and the branch was destroyed: fix the file and branch again"
                    ),
                });
            }
            applied.statements += 1;
        }
    }
    if key_set {
        client
            .execute(
                "SELECT set_config($1, '', true)",
                &[&mask_rules::KEY_SETTING],
            )
            .await
            .map_err(|e| pg_err(e, "clearing the masking key".into()))?;
    }
    // Before COMMIT: this transaction's own counts of changed rows.
    let rows = client
        .query(
            "SELECT relid::regclass::text FROM pg_stat_xact_all_tables \
             WHERE n_tup_upd + n_tup_del > 0 \
               AND schemaname NOT IN ('pg_catalog', 'information_schema') \
               AND schemaname NOT LIKE 'pg_toast%' \
             ORDER BY 1",
            &[],
        )
        .await
        .map_err(|e| pg_err(e, "listing the masked tables".into()))?;
    applied.changed_tables = rows.iter().map(|r| r.get(0)).collect();
    client
        .batch_execute("COMMIT")
        .await
        .map_err(|e| Error::Mask {
            file: None,
            line: None,
            statement: Some("COMMIT".into()),
            sqlstate: e.code().map(|c| c.code().to_string()),
            message: format!("committing the masking transaction failed: {e}"),
        })?;
    Ok(applied)
}

/// Remove the old values of `tables` (regclass texts from [`Applied`])
/// from the database `client` is connected to: rewrite each table (its
/// indexes and TOAST too; dead tuples and old index entries gone), analyse
/// it again, and rewrite the statistics catalogs, whose dead rows held the
/// old most-common values and histograms.
pub async fn rewrite_tables(client: &Client, tables: &[String]) -> Result<()> {
    client
        .batch_execute(QUIET_SESSION)
        .await
        .map_err(|e| pg_err(e, "preparing the masking session".into()))?;
    for t in tables {
        // regclass text is an identifier quoted as needed; double-check
        // through to_regclass with a bound value anyway.
        let oid: Option<u32> = client
            .query_one("SELECT to_regclass($1)::oid", &[t])
            .await
            .map_err(|e| pg_err(e, format!("finding table {t}")))?
            .get(0);
        if oid.is_none() {
            continue;
        }
        client
            .batch_execute(&format!("VACUUM (FULL, ANALYZE) {t}"))
            .await
            .map_err(|e| pg_err(e, format!("rewriting the masked table {t}")))?;
    }
    client
        .batch_execute("VACUUM FULL pg_catalog.pg_statistic")
        .await
        .map_err(|e| pg_err(e, "rewriting the statistics catalog".into()))?;
    client
        .batch_execute("VACUUM FULL pg_catalog.pg_statistic_ext_data")
        .await
        .map_err(|e| pg_err(e, "rewriting the statistics catalog".into()))?;
    Ok(())
}

/// Empty `pg_stat_statements` where the extension is installed in the
/// database `client` is on: its texts are the source's queries, literal
/// values included. Returns whether it was there.
pub async fn reset_statement_stats(client: &Client) -> Result<bool> {
    let has: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements')",
            &[],
        )
        .await
        .map_err(|e| pg_err(e, "looking for pg_stat_statements".into()))?
        .get(0);
    if has {
        let schema: String = client
            .query_one(
                "SELECT n.nspname::text FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace \
                 WHERE e.extname = 'pg_stat_statements'",
                &[],
            )
            .await
            .map_err(|e| pg_err(e, "looking for pg_stat_statements".into()))?
            .get(0);
        client
            .batch_execute(&format!(
                "SELECT {}.pg_stat_statements_reset()",
                super::isolate::quote_ident(&schema)
            ))
            .await
            .map_err(|e| pg_err(e, "resetting pg_stat_statements".into()))?;
    }
    Ok(has)
}

/// Where WAL stands after [`switch_and_checkpoint`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalState {
    /// The segment written to now (file name).
    pub current: String,
    /// Segment files still in `pg_wal` other than the current one.
    pub others: Vec<String>,
}

/// End the segment holding the masking's WAL (whose full-page images carry
/// the pages before the change) and checkpoint, so that PostgreSQL removes
/// every older segment (`wal_recycle = off`, no slot, no `wal_keep_size`);
/// then list what is left. Every earlier segment must be gone: one that is
/// not is an error (something holds it), since it may hold originals.
pub async fn switch_and_checkpoint(client: &Client) -> Result<WalState> {
    client
        .batch_execute("SELECT pg_switch_wal()")
        .await
        .map_err(|e| pg_err(e, "switching WAL".into()))?;
    client
        .batch_execute("CHECKPOINT")
        .await
        .map_err(|e| pg_err(e, "checkpointing".into()))?;
    let current: String = client
        .query_one("SELECT pg_walfile_name(pg_current_wal_lsn())", &[])
        .await
        .map_err(|e| pg_err(e, "reading the WAL position".into()))?
        .get(0);
    let others: Vec<String> = client
        .query(
            "SELECT name FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$' AND name <> $1 ORDER BY 1",
            &[&current],
        )
        .await
        .map_err(|e| pg_err(e, "listing pg_wal".into()))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let older: Vec<&String> = others.iter().filter(|n| !is_later(n, &current)).collect();
    if !older.is_empty() {
        return Err(Error::Mask {
            file: None,
            line: None,
            statement: None,
            sqlstate: None,
            message: format!(
                "WAL written before the masking is still in pg_wal after a checkpoint ({}): something keeps it (wal_keep_size, a replication slot), so the old values could be read back; the branch was destroyed",
                older.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            ),
        });
    }
    Ok(WalState { current, others })
}

/// Whether WAL segment file `a` comes after `b` (same timeline or a later
/// one: the name is timeline, log, segment in fixed-width hex).
pub fn is_later(a: &str, b: &str) -> bool {
    // Compare log and segment (the last 16 digits), then the timeline.
    (&a[8.min(a.len())..], &a[..8.min(a.len())]) > (&b[8.min(b.len())..], &b[..8.min(b.len())])
}

/// Databases a connection can reach (`datallowconn`), for steps that run
/// in every database.
pub async fn databases(admin: &ConnInfo) -> Result<Vec<String>> {
    let c = admin.connect().await?;
    Ok(c.query(
        "SELECT datname::text FROM pg_database WHERE datallowconn ORDER BY 1",
        &[],
    )
    .await
    .map_err(|e| pg_err(e, "listing databases".into()))?
    .iter()
    .map(|r| r.get(0))
    .collect())
}

/// Make the database `client` is on schema-only: every table's rows
/// removed (one `TRUNCATE` of them all, so foreign keys between them do
/// not stand in the way; tables of extensions, which hold the
/// extension's own configuration, are kept), materialized views emptied.
/// Objects, roles, grants and settings stay. Returns the tables emptied.
pub async fn truncate_all(client: &Client) -> Result<Vec<String>> {
    client
        .batch_execute(QUIET_SESSION)
        .await
        .map_err(|e| pg_err(e, "preparing the session".into()))?;
    let rows = client
        .query(
            "SELECT c.oid::regclass::text, c.relkind::text FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p', 'm') AND c.relpersistence <> 't' \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND n.nspname NOT LIKE 'pg_toast%' \
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass \
                               AND d.objid = c.oid AND d.deptype = 'e') \
             ORDER BY 1",
            &[],
        )
        .await
        .map_err(|e| pg_err(e, "listing tables".into()))?;
    let tables: Vec<String> = rows
        .iter()
        .filter(|r| r.get::<_, String>(1) != "m")
        .map(|r| r.get(0))
        .collect();
    let views: Vec<String> = rows
        .iter()
        .filter(|r| r.get::<_, String>(1) == "m")
        .map(|r| r.get(0))
        .collect();
    if !tables.is_empty() {
        client
            .batch_execute(&format!("TRUNCATE {}", tables.join(", ")))
            .await
            .map_err(|e| pg_err(e, "emptying the tables".into()))?;
    }
    for v in &views {
        client
            .batch_execute(&format!("REFRESH MATERIALIZED VIEW {v} WITH NO DATA"))
            .await
            .map_err(|e| pg_err(e, format!("emptying {v}")))?;
    }
    // Statistics described the rows; they go with them.
    client
        .batch_execute(
            "DELETE FROM pg_catalog.pg_statistic; DELETE FROM pg_catalog.pg_statistic_ext_data",
        )
        .await
        .map_err(|e| pg_err(e, "emptying the statistics".into()))?;
    for cat in ["pg_statistic", "pg_statistic_ext_data"] {
        client
            .batch_execute(&format!("VACUUM FULL pg_catalog.{cat}"))
            .await
            .map_err(|e| pg_err(e, "rewriting the statistics catalog".into()))?;
    }
    let mut all = tables;
    all.extend(views);
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_like_psql() {
        let sql = "-- header; not a statement\nUPDATE a SET x = 'a;b';\n\n/* c; /* nested; */ */\nDO $$ BEGIN PERFORM 1; END $$;\nSELECT $f$;$f$, E'\\';', \"q;\"\n  , 2;\n;\nSELECT 3";
        let s = split_statements(sql);
        let texts: Vec<&str> = s.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(
            texts,
            vec![
                "UPDATE a SET x = 'a;b'",
                "DO $$ BEGIN PERFORM 1; END $$",
                "SELECT $f$;$f$, E'\\';', \"q;\"\n  , 2",
                "SELECT 3"
            ]
        );
        assert_eq!(
            s.iter().map(|s| s.line).collect::<Vec<_>>(),
            vec![2, 5, 6, 9]
        );
        // A parameter is not a dollar quote; an identifier ending in e is no E'' string.
        let s = split_statements("SELECT $1; SELECT 'a\\'; SELECT 2");
        assert_eq!(s.len(), 3, "{s:?}");
    }

    #[test]
    fn error_positions_become_lines() {
        let st = Statement {
            text: "UPDATE users\nSET emial = 'x'\nWHERE true".into(),
            line: 7,
        };
        assert_eq!(line_at(&st, Some(18)), 8);
        assert_eq!(line_at(&st, Some(1)), 7);
        assert_eq!(line_at(&st, None), 7);
    }

    #[test]
    fn segments_order_by_position_then_timeline() {
        assert!(is_later(
            "000000010000000000000005",
            "000000010000000000000004"
        ));
        assert!(is_later(
            "000000010000000100000000",
            "0000000100000000000000FF"
        ));
        assert!(!is_later(
            "000000010000000000000003",
            "000000020000000000000004"
        ));
        assert!(!is_later(
            "000000010000000000000004",
            "000000010000000000000004"
        ));
    }

    #[test]
    fn files_and_directories_load_in_order() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("b.sql"), "SELECT 2").unwrap();
        std::fs::write(d.path().join("a.sql"), "SELECT 1").unwrap();
        std::fs::write(d.path().join("notes.txt"), "x").unwrap();
        let one = d.path().join("one.sql");
        let f = load_files(&[d.path().to_path_buf()]).unwrap();
        assert_eq!(
            f.iter().map(|f| f.sql.as_str()).collect::<Vec<_>>(),
            vec!["SELECT 1", "SELECT 2"]
        );
        let e = load_files(std::slice::from_ref(&one)).unwrap_err();
        assert!(
            matches!(&e, Error::Mask { file: Some(p), .. } if *p == one),
            "{e}"
        );
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            load_files(&[empty.path().to_path_buf()]),
            Err(Error::Mask { .. })
        ));
    }
}
