//! `bpg config`: show or change a database's or branch's settings.

use betterpg_core::{format_duration, Error, Settings};

use super::Global;
use crate::args::ConfigArgs;
use crate::{output, wire};

pub async fn run(g: &Global, a: ConfigArgs) -> Result<(), Error> {
    let mgr = g.open().await?;
    let pairs = a.pairs();
    let settings = if pairs.is_empty() {
        mgr.settings(&a.name)?
    } else {
        mgr.configure(&a.name, &pairs).await?
    };
    if g.json {
        return output::json(&wire::EntrySettings {
            name: &a.name,
            settings: settings.to_json(),
        });
    }
    if !pairs.is_empty() {
        println!("configured {}", a.name);
    }
    print_settings(&settings);
    Ok(())
}

/// One line per setting, `-` when not set.
fn print_settings(s: &Settings) {
    let paths = |v: &[std::path::PathBuf]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let dur = |d: Option<u64>| d.map(format_duration).unwrap_or_else(|| "-".into());
    let count = |n: Option<u32>| n.map(|n| n.to_string()).unwrap_or_else(|| "-".into());
    let rows = [
        ("mask", paths(&s.mask)),
        ("mask_rules", paths(&s.mask_rules)),
        ("forbid_unmasked", s.forbid_unmasked.to_string()),
        (
            "credentials",
            s.credentials
                .map(|c| c.as_str().to_string())
                .unwrap_or_else(|| "- (the kind's default)".into()),
        ),
        ("ttl", dur(s.ttl)),
        ("idle_stop", dur(s.idle_stop)),
        ("keep_hourly", count(s.keep_hourly)),
        ("keep_daily", count(s.keep_daily)),
        ("keep_last", count(s.keep_last)),
        ("retain_wal", dur(s.retain_wal)),
        (
            "branch_shared_buffers",
            s.branch_shared_buffers
                .map(betterpg_core::util::human_bytes)
                .unwrap_or_else(|| "- (32 MiB)".into()),
        ),
        (
            "branch_max_connections",
            s.branch_max_connections
                .map(|n| n.to_string())
                .unwrap_or_else(|| "- (25)".into()),
        ),
    ];
    for (k, v) in rows {
        println!("  {k:<22} {v}");
    }
}
