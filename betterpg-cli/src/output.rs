//! How results reach the terminal: JSON through the [`crate::wire`] types,
//! text for people, and the exit status of an error.

use std::collections::BTreeMap;
use std::process::ExitCode;

use betterpg_core::util::human_bytes;
use betterpg_core::{Error, Info, IsolationReport};
use serde::Serialize;

/// Print `v` as pretty JSON on stdout.
pub fn json<T: Serialize>(v: &T) -> Result<(), Error> {
    let s = serde_json::to_string_pretty(v).map_err(|e| Error::Internal(e.to_string()))?;
    println!("{s}");
    Ok(())
}

/// The exit status of a failed command: the error kind's code plus 9, so
/// each kind has its own status and none is 0, 1 (an internal error) or 2
/// (clap's usage error). `docs/cli-json.md` lists them.
pub fn exit_code(e: &Error) -> u8 {
    if e.code() == 99 {
        1
    } else {
        (e.code() + 9) as u8
    }
}

/// Print a failure on stderr (`error: ` and its first line, then its other
/// lines indented) and return its exit status.
pub fn fail(e: &Error) -> ExitCode {
    let text = e.to_string();
    let mut lines = text.lines();
    eprintln!("error: {}", lines.next().unwrap_or(""));
    for l in lines {
        eprintln!("  {l}");
    }
    ExitCode::from(exit_code(e))
}

/// What a new branch was cut off from, and what still points elsewhere.
pub fn isolation(iso: &IsolationReport) {
    let lines = iso.detached_lines();
    if !lines.is_empty() {
        println!("detached from the source:");
        for l in lines {
            println!("  {l}");
        }
    }
    for w in &iso.warnings {
        let what = match w.kind.as_str() {
            "foreign_server" => "foreign server",
            "pg_cron_job" => "pg_cron job",
            other => other,
        };
        println!(
            "warning: {what} {} in database {} still points at another system: {}",
            w.name, w.database, w.detail
        );
    }
}

/// What masking did, for people (nothing for an unmasked branch).
pub fn masking(m: Option<&betterpg_core::MaskingReport>) {
    let Some(m) = m else { return };
    if m.schema_only {
        println!(
            "schema-only: {} tables emptied before the branch opened",
            m.tables_emptied.len()
        );
    }
    if !m.files.is_empty() {
        println!(
            "masked before the branch opened: {} statements from {} file(s) in one transaction",
            m.statements,
            m.files.len()
        );
        for f in &m.files {
            println!("  {}", f.display());
        }
        if !m.tables_rewritten.is_empty() {
            println!("  tables rewritten: {}", m.tables_rewritten.join(", "));
        }
    }
    println!(
        "  old WAL removed: {} file(s); no old row versions left",
        m.wal_files_removed
    );
}

/// The credentials policy of a new or reset branch, for people.
pub fn credentials(r: &betterpg_core::BranchReport) {
    match r.credentials {
        betterpg_core::Credentials::Rotate => println!(
            "credentials: rotate ({} role(s) got new passwords; `bpg url {} --role ROLE`)",
            r.isolation.roles_rotated.len(),
            r.branch.name
        ),
        betterpg_core::Credentials::Keep => {
            println!("credentials: keep (the roles keep their source's passwords)")
        }
    }
}

/// `k=v k=v ...` of ZFS properties.
pub fn props(p: &BTreeMap<String, String>) -> String {
    if p.is_empty() {
        return "(not recorded)".into();
    }
    p.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Databases and branches as a tree, each branch under its parent.
pub fn tree(infos: &[Info]) {
    if infos.is_empty() {
        println!("no databases yet: `bpg create NAME`");
        return;
    }
    println!(
        "{:<28} {:<8} {:<8} {:>6} {:>10} {:>10}  MODE",
        "NAME", "KIND", "STATUS", "PORT", "USED", "REFER"
    );
    for i in infos {
        let depth = depth_of(infos, i);
        let label = if depth == 0 {
            i.name.clone()
        } else {
            format!("{}└─ {}", "   ".repeat(depth - 1), i.name)
        };
        let status = if i.state == betterpg_core::EntryState::Ready {
            i.status.as_str()
        } else {
            i.state.as_str()
        };
        let mut notes = String::new();
        if i.protected {
            notes.push_str("  protected");
        }
        if i.rewindable {
            notes.push_str("  rewindable");
        }
        if let Some(pid) = i.owner_pid {
            notes.push_str(&format!("  owner pid {pid}"));
        }
        if let Some(c) = i.credentials {
            notes.push_str(&format!("  credentials {}", c.as_str()));
        }
        if let Some(at) = i.expires_at {
            let now = betterpg_core::util::now_unix();
            if at > now {
                notes.push_str(&format!("  expires in {}", human_secs(at - now)));
            } else {
                notes.push_str("  expired");
            }
        }
        println!(
            "{:<28} {:<8} {:<8} {:>6} {:>10} {:>10}  {}{}",
            label,
            i.kind,
            status,
            i.port,
            human_bytes(i.used_bytes),
            human_bytes(i.referenced_bytes),
            i.mode.map_or("-", |m| m.as_str()),
            notes
        );
        if let Some(r) = &i.replication {
            println!(
                "{:<28} upstream {}{}: {}, lag {} / {}, last replayed commit {}",
                "",
                r.upstream,
                r.slot
                    .as_deref()
                    .map(|s| format!(" (slot {s})"))
                    .unwrap_or_default(),
                r.state,
                r.lag_bytes.map_or("?".into(), human_bytes),
                r.lag_seconds.map_or("?".into(), |s| format!("{s:.1} s")),
                r.last_replay_time.as_deref().unwrap_or("-")
            );
        }
    }
    for i in infos {
        if let Some(w) = &i.wal_retention {
            match (&w.from_time, &w.to_time) {
                (Some(from), Some(to)) => println!(
                    "{}: WAL kept {}, restorable from {from} to {to} ({} .. {}; --at up to now while it runs), {} in {} segments, {} bases",
                    i.name,
                    secs(w.retain_secs),
                    w.from_lsn.as_deref().unwrap_or("-"),
                    w.to_lsn.as_deref().unwrap_or("-"),
                    human_bytes(w.wal_bytes),
                    w.segments,
                    w.bases
                ),
                _ => println!(
                    "{}: WAL kept {}, not archiving yet (takes effect at its next start: bpg stop {n} && bpg start {n})",
                    i.name,
                    secs(w.retain_secs),
                    n = i.name
                ),
            }
        }
    }
}

/// Seconds as the largest whole unit ("7d", "8h", "90s").
fn secs(s: u64) -> String {
    for (unit, n) in [("d", 86400), ("h", 3600), ("m", 60)] {
        if s >= n && s % n == 0 {
            return format!("{}{unit}", s / n);
        }
    }
    format!("{s}s")
}

/// A span of seconds for people: "3d 4h", "2h 5m", "4m 10s", "9s".
pub fn human_secs(s: u64) -> String {
    let (d, h, m, sec) = (s / 86400, s % 86400 / 3600, s % 3600 / 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, _) => format!("{m}m {sec}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

fn depth_of(all: &[Info], i: &Info) -> usize {
    let mut d = 0;
    let mut cur = i.parent.clone();
    while let Some(p) = cur {
        d += 1;
        cur = all
            .iter()
            .find(|x| x.name == p)
            .and_then(|x| x.parent.clone());
        if d > 64 {
            break;
        }
    }
    d
}
