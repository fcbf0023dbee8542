//! Rehearse a schema migration on a branch: branch the database, run the
//! SQL on the branch, report what it did, and throw the branch away (or keep
//! it to look at). The source is never written to.
//!
//! A small application on [`betterpg_core`]'s async API; `src/main.rs` is
//! its command line, `tests/rehearse.rs` its integration test on a real ZFS
//! pool and PostgreSQL.

use std::time::Instant;

use betterpg_core::{BranchManager, BranchOptions};
use tokio_postgres::{NoTls, SimpleQueryMessage};

/// Any error of a rehearsal, with its message.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// What a rehearsal did.
#[derive(Debug, Clone, PartialEq)]
pub struct Rehearsal {
    /// The branch the SQL ran on.
    pub branch: String,
    /// Its connection URL (with its password; only meaningful when kept).
    pub url: String,
    /// How long the branch took to make, milliseconds.
    pub branch_millis: f64,
    /// Statements the SQL ran.
    pub statements: usize,
    /// Rows the statements reported (inserted, updated, deleted ...).
    pub rows: u64,
    /// How long the SQL took on the branch, milliseconds.
    pub sql_millis: f64,
    /// Whether the branch was left in place.
    pub kept: bool,
}

/// A branch name for rehearsing on `source`: `SOURCE-rehearsal-PID`
/// (shortened to fit betterpg's 63-character names).
pub fn branch_name(source: &str) -> String {
    let suffix = format!("-rehearsal-{}", std::process::id());
    let keep = 63usize.saturating_sub(suffix.len()).min(source.len());
    format!("{}{suffix}", &source[..keep])
}

/// Branch `source`, run `sql` on the branch, and destroy the branch again
/// unless `keep` (a failed rehearsal always destroys it). The source is
/// not written to: the branch is a copy-on-write clone with every
/// transaction the source had committed.
pub async fn rehearse(
    mgr: &BranchManager,
    source: &str,
    sql: &str,
    keep: bool,
) -> Result<Rehearsal, Error> {
    let branch = branch_name(source);
    let report = mgr
        .branch(source, &branch, BranchOptions::default())
        .await?;
    let url = report.branch.url.clone();
    let outcome = run_sql(&url, sql).await;
    if !keep || outcome.is_err() {
        mgr.destroy(&branch, false).await?;
    }
    let (statements, rows, sql_millis) = outcome?;
    Ok(Rehearsal {
        branch,
        url,
        branch_millis: report.total_millis,
        statements,
        rows,
        sql_millis,
        kept: keep,
    })
}

/// Run `sql` (one or more statements) in one transaction; returns the
/// statements run, the rows they reported and the time taken.
async fn run_sql(url: &str, sql: &str) -> Result<(usize, u64, f64), Error> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await?;
    let conn = tokio::spawn(conn);
    let t0 = Instant::now();
    let mut statements = 0;
    let mut rows = 0;
    client.batch_execute("BEGIN").await?;
    for m in client.simple_query(sql).await? {
        if let SimpleQueryMessage::CommandComplete(n) = m {
            statements += 1;
            rows += n;
        }
    }
    client.batch_execute("COMMIT").await?;
    let millis = t0.elapsed().as_secs_f64() * 1000.0;
    drop(client);
    let _ = conn.await;
    Ok((statements, rows, millis))
}
