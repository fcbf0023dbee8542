//! `mask-check`: list the columns of a database or branch whose name or
//! sampled values look personal ([`crate::pg::personal`]) and that no
//! masking rule covers, so a masking policy can be completed before it is
//! trusted.
//!
//! Every database of the server that accepts connections is read in a
//! read-only transaction with a statement timeout: the catalog for the
//! columns, then at most [`MaskCheckOptions::sample_rows`] rows of each
//! table (identifiers quoted, the limit bound). Nothing is written.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::name::validate_name;
use crate::pg::isolate::quote_ident;
use crate::pg::mask_rules;
use crate::pg::personal::{self, PersonalKind};

/// Rows sampled per table when [`MaskCheckOptions::sample_rows`] is 0.
pub const DEFAULT_SAMPLE_ROWS: u32 = 200;
/// Most rows sampled per table.
pub const MAX_SAMPLE_ROWS: u32 = 10_000;

/// Options of [`crate::BranchManager::mask_check`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct MaskCheckOptions {
    /// A masking rules file (TOML): the columns its rules name count as
    /// covered. `None`: no column is covered.
    pub rules: Option<PathBuf>,
    /// Rows sampled per table (0: [`DEFAULT_SAMPLE_ROWS`]; at most
    /// [`MAX_SAMPLE_ROWS`]).
    pub sample_rows: u32,
}

impl MaskCheckOptions {
    /// Options with a rules file.
    pub fn with_rules(rules: Option<PathBuf>) -> Self {
        MaskCheckOptions {
            rules,
            sample_rows: 0,
        }
    }
}

/// A column that looks personal.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PersonalColumn {
    /// The database it is in.
    pub database: String,
    /// Schema.
    pub schema: String,
    /// Table.
    pub table: String,
    /// Column.
    pub column: String,
    /// Its type, as PostgreSQL writes it.
    pub data_type: String,
    /// What it looks like: `email`, `phone`, `name`, `address`,
    /// `birth_date`, `iban`, `card`, `ip`, `national_id`.
    pub kinds: Vec<String>,
    /// Why, e.g. `name looks like email`, `12 of 20 sampled values look
    /// like email`.
    pub reasons: Vec<String>,
}

/// What [`crate::BranchManager::mask_check`] found.
#[derive(Debug, Clone, Serialize)]
pub struct MaskCheckReport {
    /// The database or branch checked.
    pub source: String,
    /// The databases of its server that were read.
    pub databases: Vec<String>,
    /// Columns looked at.
    pub columns_checked: usize,
    /// Rows sampled per table, at most.
    pub sample_rows: u32,
    /// The rules file whose columns count as covered.
    pub rules: Option<PathBuf>,
    /// Columns that look personal and that no rule covers: the policy
    /// is not complete while this is not empty.
    pub uncovered: Vec<PersonalColumn>,
    /// Columns that look personal and that a rule covers.
    pub covered: Vec<PersonalColumn>,
}

impl MaskCheckReport {
    /// `Ok` when no personal-looking column is uncovered, else a
    /// [`Error::Config`] naming them (what `bpg mask-check` exits with).
    pub fn into_result(self) -> Result<MaskCheckReport> {
        if self.uncovered.is_empty() {
            return Ok(self);
        }
        let names: Vec<String> = self
            .uncovered
            .iter()
            .map(|c| format!("{}: {}.{}.{}", c.database, c.schema, c.table, c.column))
            .collect();
        Err(Error::Config(format!(
            "{} column(s) of {:?} look personal and no masking rule covers them ({}): add rules for them (or a truncate of their table) to the rules file",
            names.len(),
            self.source,
            names.join(", ")
        )))
    }
}

/// Check `source` (a running database or branch).
pub(crate) async fn mask_check(
    ctx: &Context,
    source: &str,
    opts: MaskCheckOptions,
) -> Result<MaskCheckReport> {
    validate_name(source)?;
    let sample_rows = match opts.sample_rows {
        0 => DEFAULT_SAMPLE_ROWS,
        n if n > MAX_SAMPLE_ROWS => {
            return Err(Error::Config(format!(
                "sample_rows {n} is too many: give at most {MAX_SAMPLE_ROWS}"
            )))
        }
        n => n,
    };
    let rules = match &opts.rules {
        Some(p) => Some(covered_by_rules(p)?),
        None => None,
    };
    let entry = ctx.ready_entry(source)?;
    let conn = ctx.conn_for(&entry)?;
    let client = conn.connect().await?;
    let databases: Vec<String> = client
        .query(
            "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    drop(client);
    let mut report = MaskCheckReport {
        source: source.to_string(),
        databases: databases.clone(),
        columns_checked: 0,
        sample_rows,
        rules: opts.rules.clone(),
        uncovered: Vec::new(),
        covered: Vec::new(),
    };
    for db in &databases {
        let mut c = conn.clone();
        c.dbname = db.clone();
        let client = c.connect().await?;
        check_database(&client, db, sample_rows, rules.as_ref(), &mut report).await?;
    }
    Ok(report)
}

/// One column of the catalog.
struct Column {
    schema: String,
    table: String,
    column: String,
    data_type: String,
}

async fn check_database(
    client: &tokio_postgres::Client,
    db: &str,
    sample_rows: u32,
    rules: Option<&Covered>,
    report: &mut MaskCheckReport,
) -> Result<()> {
    client
        .batch_execute(
            "BEGIN TRANSACTION READ ONLY; SET LOCAL statement_timeout = '30s'; SET LOCAL lock_timeout = '5s'",
        )
        .await?;
    let rows = client
        .query(
            "SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod) \
             FROM pg_attribute a \
             JOIN pg_class c ON c.oid = a.attrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p', 'm') AND a.attnum > 0 AND NOT a.attisdropped \
               AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%' \
             ORDER BY n.nspname, c.relname, a.attnum",
            &[],
        )
        .await?;
    let columns: Vec<Column> = rows
        .iter()
        .map(|r| Column {
            schema: r.get(0),
            table: r.get(1),
            column: r.get(2),
            data_type: r.get(3),
        })
        .collect();
    report.columns_checked += columns.len();
    // One bounded sample per table, every column as text (cut to 200
    // characters: enough to recognise any of the kinds).
    let mut i = 0;
    while i < columns.len() {
        let j = i + columns[i..]
            .iter()
            .take_while(|c| c.schema == columns[i].schema && c.table == columns[i].table)
            .count();
        let table = &columns[i..j];
        let select: Vec<String> = table
            .iter()
            .map(|c| format!("left({}::text, 200)", quote_ident(&c.column)))
            .collect();
        let sql = format!(
            "SELECT {} FROM {}.{} LIMIT $1",
            select.join(", "),
            quote_ident(&table[0].schema),
            quote_ident(&table[0].table)
        );
        let sample = client.query(&sql, &[&i64::from(sample_rows)]).await?;
        for (k, col) in table.iter().enumerate() {
            let values: Vec<String> = sample
                .iter()
                .filter_map(|r| r.get::<_, Option<String>>(k))
                .collect();
            let mut kinds: BTreeSet<PersonalKind> = BTreeSet::new();
            let mut reasons = Vec::new();
            for kind in personal::kinds_by_name(&col.column) {
                if kinds.insert(kind) {
                    reasons.push(format!("name looks like {}", kind.as_str()));
                }
            }
            if (col.data_type == "inet" || col.data_type == "cidr")
                && kinds.insert(PersonalKind::Ip)
            {
                reasons.push(format!("type {}", col.data_type));
            }
            for (kind, hits, of) in personal::kinds_by_values(values.iter().map(String::as_str)) {
                kinds.insert(kind);
                reasons.push(format!(
                    "{hits} of {of} sampled values look like {}",
                    kind.as_str()
                ));
            }
            if kinds.is_empty() {
                continue;
            }
            let found = PersonalColumn {
                database: db.to_string(),
                schema: col.schema.clone(),
                table: col.table.clone(),
                column: col.column.clone(),
                data_type: col.data_type.clone(),
                kinds: kinds.iter().map(|k| k.as_str().to_string()).collect(),
                reasons,
            };
            if rules.is_some_and(|r| r.covers(&col.schema, &col.table, &col.column)) {
                report.covered.push(found);
            } else {
                report.uncovered.push(found);
            }
        }
        i = j;
    }
    client.batch_execute("COMMIT").await?;
    Ok(())
}

/// What a rules file covers: columns (`schema.table.column`) and whole
/// tables (`schema.table` with the `truncate` strategy).
#[derive(Debug)]
pub(crate) struct Covered(mask_rules::Rules);

impl Covered {
    fn covers(&self, schema: &str, table: &str, column: &str) -> bool {
        self.0.covers(schema, table, column)
    }
}

/// Read the columns a rules file covers ([`mask_rules::load`]: the same
/// parser, and the same errors, as a branch's `--mask-rules`). A bad file
/// is a configuration error naming it.
pub(crate) fn covered_by_rules(path: &Path) -> Result<Covered> {
    mask_rules::load(path)
        .map(Covered)
        .map_err(|e| as_config(path, e))
}

fn as_config(path: &Path, e: Error) -> Error {
    match e {
        Error::Mask {
            message, statement, ..
        } => Error::Config(format!(
            "{}{}: {message}",
            path.display(),
            statement.map(|k| format!(" ({k})")).unwrap_or_default()
        )),
        other => other,
    }
}

#[cfg(test)]
fn parse_covered(text: &str) -> std::result::Result<Covered, String> {
    mask_rules::parse(Path::new("rules.toml"), text)
        .map(Covered)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_files_name_columns_and_truncated_tables() {
        let c = parse_covered(
            r#"
["public.users.email"]
strategy = "email"

[public.users.phone]
strategy = "phone"

[public.customers]
name = "name"
ssn = { strategy = "null" }

["public.audit_trail"]
strategy = "truncate"

[public]
sessions = "truncate"
"#,
        )
        .unwrap();
        assert!(c.covers("public", "users", "email"));
        assert!(c.covers("public", "users", "phone"));
        assert!(!c.covers("public", "users", "name"));
        assert!(c.covers("public", "customers", "name"));
        assert!(c.covers("public", "customers", "ssn"));
        assert!(c.covers("public", "audit_trail", "anything"));
        assert!(c.covers("public", "sessions", "token"));
        assert!(!c.covers("other", "users", "email"));
        assert!(parse_covered("not = [toml").is_err());
    }
}
