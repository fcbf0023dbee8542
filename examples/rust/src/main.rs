//! `betterpg-example`: rehearse a schema migration on a branch.
//!
//! ```text
//! betterpg-example --home HOME [--keep] SOURCE SQL
//! ```
//!
//! Branches the database or branch SOURCE of the betterpg home HOME, runs
//! SQL on the branch in one transaction, prints what it did, and destroys
//! the branch (`--keep` leaves it, and prints its URL). Exits 1 when the
//! SQL fails (the branch is destroyed; SOURCE was never touched), 2 on
//! bad arguments.

use std::process::ExitCode;

use betterpg_core::BranchManager;

const USAGE: &str = "usage: betterpg-example --home HOME [--keep] SOURCE SQL";

#[tokio::main]
async fn main() -> ExitCode {
    let mut home = None;
    let mut keep = false;
    let mut rest = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--home" => home = args.next(),
            "--keep" => keep = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            _ => rest.push(a),
        }
    }
    let (Some(home), [source, sql]) = (home, rest.as_slice()) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let result = async {
        let mgr = BranchManager::open(&home).await?;
        betterpg_example::rehearse(&mgr, source, sql, keep).await
    }
    .await;
    match result {
        Ok(r) => {
            println!(
                "branch {} made in {:.0} ms; {} statement(s), {} row(s) in {:.0} ms",
                r.branch, r.branch_millis, r.statements, r.rows, r.sql_millis
            );
            if r.kept {
                println!("kept: {}", r.url);
            } else {
                println!("branch destroyed; {source} untouched");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
