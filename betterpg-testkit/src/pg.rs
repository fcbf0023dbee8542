//! PostgreSQL from a test: connections, a sequential writer, a writer
//! recording each commit's time and LSN, and what a branch must hold.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

/// Connect with a URL (the connection runs on a spawned task).
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    tokio::spawn(conn);
    c
}

/// A writer committing sequential ids 1, 2, 3 ... into `seq(id)`, one
/// autocommit transaction each, publishing the last acknowledged id.
pub struct Writer {
    /// The last id whose commit the server acknowledged.
    pub acked: watch::Receiver<i64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<i64>,
}

impl Writer {
    /// Create `seq` when missing and start writing; returns once 200 ids
    /// are acknowledged (so a branch happens mid-stream).
    pub async fn start(url: &str) -> Writer {
        let c = connect(url).await;
        c.batch_execute("CREATE TABLE IF NOT EXISTS seq (id bigint PRIMARY KEY)")
            .await
            .unwrap();
        let (tx, rx) = watch::channel(0i64);
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let task = tokio::spawn(async move {
            let stmt = c.prepare("INSERT INTO seq VALUES ($1)").await.unwrap();
            let mut id = 0i64;
            while !s2.load(Ordering::SeqCst) {
                id += 1;
                c.execute(&stmt, &[&id]).await.expect("writer insert");
                tx.send_replace(id);
            }
            id
        });
        let mut w = Writer {
            acked: rx,
            stop,
            task,
        };
        while *w.acked.borrow_and_update() < 200 {
            w.acked.changed().await.unwrap();
        }
        w
    }

    /// The last acknowledged id so far.
    pub fn acked(&self) -> i64 {
        *self.acked.borrow()
    }

    /// Stop writing; returns the last id written.
    pub async fn stop(self) -> i64 {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap()
    }
}

/// Assert the branch at `url` holds ids 1..=max with no gap and max >=
/// `acked`; returns max.
pub async fn assert_prefix(url: &str, acked: i64) -> i64 {
    let c = connect(url).await;
    let row = c
        .query_one(
            "SELECT count(*)::int8, coalesce(min(id),0)::int8, coalesce(max(id),0)::int8 FROM seq",
            &[],
        )
        .await
        .unwrap();
    let (count, min, max): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert!(
        max >= acked,
        "branch lost acknowledged commits: max id {max} < {acked} acknowledged before the branch call"
    );
    assert_eq!(min, 1, "branch misses the first rows");
    assert_eq!(
        count, max,
        "branch has gaps: {count} rows for ids 1..={max}"
    );
    max
}

/// One committed row of [`write_commits`]: its id, then the server's
/// clock and WAL insert position read right after its commit returned
/// (what a point-in-time branch at `time` or `lsn` must hold it by).
pub struct Commit {
    pub id: i64,
    pub time: String,
    pub lsn: String,
}

/// Commit `n` rows into `t(id)` (made when missing) on `url`, one
/// transaction each, ids from `first` on, recording each commit's time
/// and LSN; a new WAL segment every ten ids, so replay crosses segment
/// boundaries (some complete in an archive, the last one partial).
pub async fn write_commits(url: &str, first: i64, n: i64) -> Vec<Commit> {
    let c = connect(url).await;
    c.batch_execute("CREATE TABLE IF NOT EXISTS t (id int8 PRIMARY KEY)")
        .await
        .unwrap();
    let mut out = Vec::new();
    for id in first..first + n {
        c.execute("INSERT INTO t VALUES ($1)", &[&id])
            .await
            .unwrap();
        let row = c
            .query_one(
                "SELECT clock_timestamp()::text, pg_current_wal_insert_lsn()::text",
                &[],
            )
            .await
            .unwrap();
        out.push(Commit {
            id,
            time: row.get(0),
            lsn: row.get(1),
        });
        if id % 10 == 0 {
            c.batch_execute("SELECT pg_switch_wal()").await.unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    out
}

/// The ids in `t` (the table of [`write_commits`]) of the server at
/// `url`: (count, min, max), 0 for min and max when it is empty.
pub async fn commit_ids(url: &str) -> (i64, i64, i64) {
    let c = connect(url).await;
    let r = c
        .query_one(
            "SELECT count(*), coalesce(min(id), 0), coalesce(max(id), 0) FROM t",
            &[],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1), r.get(2))
}

/// The first column of the first row `sql` returns on `url`, as text
/// (the simple query protocol: any type, several statements); empty when
/// there is no row or it is NULL.
pub async fn query_text(url: &str, sql: &str) -> String {
    let c = connect(url).await;
    let rows = c
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("").to_string()),
            _ => None,
        })
        .unwrap_or_default()
}

/// As a superuser of the server behind `c` would look: every file of its
/// data directory, listed through `pg_ls_dir` (recursively; the listing
/// must cover `pg_wal`) and read through `pg_read_binary_file`, searched
/// for each needle (bound, never in the query text). One `FILE holds
/// NEEDLE` for each hit.
pub async fn files_holding(
    c: &tokio_postgres::Client,
    needles: &[impl AsRef<[u8]>],
) -> Vec<String> {
    c.batch_execute(
        "CREATE OR REPLACE FUNCTION pg_temp.all_files(d text) RETURNS SETOF text LANGUAGE plpgsql AS $$ \
         DECLARE f text; p text; BEGIN \
           FOR f IN SELECT pg_ls_dir(d) LOOP \
             p := d || '/' || f; \
             IF (pg_stat_file(p, true)).isdir THEN RETURN QUERY SELECT pg_temp.all_files(p); \
             ELSE RETURN NEXT p; END IF; \
           END LOOP; END $$",
    )
    .await
    .unwrap();
    let files: Vec<String> = c
        .query("SELECT pg_temp.all_files('.')", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        files.iter().any(|f| f.starts_with("./pg_wal/")) && files.len() > 100,
        "the search must cover the data directory, WAL included: {files:?}"
    );
    let mut found = Vec::new();
    for f in &files {
        for n in needles {
            let n = n.as_ref();
            let hit: Option<bool> = c
                .query_one(
                    "SELECT position($2::bytea IN \
                     pg_read_binary_file($1::text, 0, (pg_stat_file($1::text, true)).size, true)) > 0",
                    &[f, &n],
                )
                .await
                .unwrap()
                .get(0);
            if hit == Some(true) {
                found.push(format!("{f} holds {}", String::from_utf8_lossy(n)));
            }
        }
    }
    found
}

/// What a source holds for betterpg: its replication slots and the
/// sessions of betterpg's (`application_name` betterpg: a backup in
/// progress lives only as long as its session).
pub async fn slots_and_sessions(c: &tokio_postgres::Client) -> (i64, i64) {
    let row = c
        .query_one(
            "SELECT (SELECT count(*) FROM pg_replication_slots), \
             (SELECT count(*) FROM pg_stat_activity WHERE application_name = 'betterpg')",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// A query returning one `bigint` (counts, mostly) on an open connection.
pub async fn query_i64(c: &tokio_postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// `SELECT count(*) FROM <table>` on `url`.
pub async fn count_rows(url: &str, table: &str) -> i64 {
    connect(url)
        .await
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap_or_else(|e| panic!("count {table} on {url}: {e}"))
        .get(0)
}

/// Major version the server at `url` reports.
pub async fn server_major(url: &str) -> u32 {
    let n: i32 = connect(url)
        .await
        .query_one("SELECT current_setting('server_version_num')::int4", &[])
        .await
        .unwrap()
        .get(0);
    (n / 10000) as u32
}
