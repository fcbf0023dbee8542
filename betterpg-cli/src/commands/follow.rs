//! `bpg follow`: a local streaming standby of a remote primary.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use betterpg_core::{Error, FollowOptions, FollowProgress};

use super::Global;
use crate::args::FollowArgs;
use crate::{output, wire};

/// A duration: seconds (`30`, `30s`), minutes (`2m`) or hours (`1h`).
pub fn parse_duration(s: &str) -> Result<Duration, Error> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, 's')) => (&t[..i], 1),
        Some((i, 'm')) => (&t[..i], 60),
        Some((i, 'h')) => (&t[..i], 3600),
        _ => (t, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .map(Duration::from_secs)
        .ok_or_else(|| {
            Error::Config(format!(
                "invalid duration {s:?}: give seconds (30 or 30s), minutes (2m) or hours (1h)"
            ))
        })
}

pub async fn run(g: &Global, a: FollowArgs) -> Result<(), Error> {
    let mgr = g.open().await?;
    let mut opts = FollowOptions::new(a.from.unwrap_or_default());
    opts.rebuild = a.rebuild;
    opts.password_file = a.password_file;
    opts.slot = a.slot;
    opts.pg_bin = a.pg_bin;
    opts.settings = a.policy.pairs();
    // Progress only for a person watching: never with --json, never into
    // a pipe or a file.
    let show = !g.json && std::io::stderr().is_terminal();
    if show {
        opts.progress = Some(Arc::new(|p: FollowProgress| {
            let mut e = std::io::stderr();
            let _ = write!(
                e,
                "\rbase backup: {} of {} ({}/s)   ",
                human(p.bytes_done),
                human(p.bytes_total),
                human(p.bytes_per_sec as u64)
            );
            let _ = e.flush();
        }));
    }
    let r = mgr.follow(&a.name, opts).await;
    if show {
        eprintln!();
    }
    let r = r?;
    if g.json {
        return output::json(&wire::FollowReport::from(&r));
    }
    println!(
        "{} {} as {} (system {}, {} copied in {:.1} s){}",
        if a.rebuild {
            "rebuilt, following"
        } else {
            "following"
        },
        r.upstream,
        r.replica.name,
        r.system_id,
        human(r.backup_bytes),
        r.total_millis / 1000.0,
        match (&r.slot, r.slot_created) {
            (Some(s), true) => format!(", slot {s} created"),
            (Some(s), false) => format!(", slot {s} reused"),
            (None, _) => String::new(),
        }
    );
    if let Some(d) = &r.retired_dataset {
        println!("the old data stays in {d} while its branches run (gc removes it after them)");
    }
    println!("{}", r.replica.url);
    Ok(())
}

fn human(n: u64) -> String {
    betterpg_core::util::human_bytes(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        for bad in ["", "x", "-1s", "1d", "s"] {
            assert_eq!(
                parse_duration(bad).unwrap_err().kind_name(),
                "config",
                "{bad}"
            );
        }
    }
}
