//! ZFS properties for PostgreSQL data sets, chosen at `bpg init`.
//!
//! betterpg sets them on its root dataset, so every database and branch
//! inherits them:
//!
//! - `recordsize=8K`: PostgreSQL writes 8 KiB pages. With ZFS's default
//!   128K records, a branch that changes one page copies (and the pool
//!   stores) a whole 128K record: a branch grows up to 16x faster than the
//!   data it changes, and fills its reservation and the pool that much
//!   sooner (measured in docs/benchmarks.md). 8K records make a changed page
//!   cost one page.
//! - `atime=off`: reading a file must not write to it (access times would
//!   make every read of a branch copy metadata blocks away from its origin).
//! - `compression`: `lz4` where the ZFS flavour has it (OpenZFS), else `on`
//!   (zfs-fuse 0.7 has no lz4); all-zero blocks become holes either way.
//!
//! Each can be overridden at init (`--recordsize`, `--zfs-property
//! KEY=VALUE`), among the keys in [`ALLOWED`]; values are checked here,
//! against what the installed ZFS flavour accepts, before anything is made.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::storage::ZfsFlavor;

/// PostgreSQL's page size, and so betterpg's default `recordsize`.
pub const PG_PAGE_RECORDSIZE: &str = "8K";

/// Keys that may be set at init, with what each controls. `sync` is not
/// among them on purpose: `sync=disabled` acknowledges commits before they
/// are on disk, which betterpg must never do to a database.
pub const ALLOWED: &[(&str, &str)] = &[
    (
        "recordsize",
        "record size: a power of 2 from 512 to 128K (1M on OpenZFS)",
    ),
    (
        "compression",
        "on, off, lzjb, gzip, gzip-1..9, zle (OpenZFS also lz4, zstd, zstd-1..19)",
    ),
    ("atime", "on or off"),
    ("logbias", "latency or throughput"),
    ("primarycache", "all, none or metadata"),
    ("secondarycache", "all, none or metadata"),
    ("xattr", "on or off (OpenZFS also sa, dir)"),
    ("redundant_metadata", "all or most (OpenZFS only)"),
];

/// Default properties for `flavor`, in the order they are applied.
pub fn defaults(flavor: ZfsFlavor) -> Vec<(String, String)> {
    let compression = match flavor {
        ZfsFlavor::OpenZfs => "lz4",
        ZfsFlavor::Legacy => "on",
    };
    vec![
        ("recordsize".into(), PG_PAGE_RECORDSIZE.into()),
        ("atime".into(), "off".into()),
        ("compression".into(), compression.into()),
    ]
}

/// Parse `KEY=VALUE` (the CLI's `--zfs-property`).
pub fn parse_assignment(s: &str) -> Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => {
            Ok((k.trim().to_string(), v.trim().to_string()))
        }
        _ => Err(Error::Config(format!(
            "invalid ZFS property {s:?}: give KEY=VALUE, e.g. recordsize=16K"
        ))),
    }
}

/// Check one property against what `flavor` accepts; returns the value as
/// ZFS should get it (sizes normalised, e.g. `16k` -> `16K`).
pub fn check(key: &str, value: &str, flavor: ZfsFlavor) -> Result<String> {
    let openzfs = flavor == ZfsFlavor::OpenZfs;
    let bad = |what: &str| {
        Err(Error::Config(format!(
            "invalid ZFS property {key}={value}: {what}{}",
            if openzfs {
                ""
            } else {
                " (this is zfs-fuse 0.7, an older ZFS)"
            }
        )))
    };
    let one_of = |allowed: &[&str]| -> Result<String> {
        if allowed.contains(&value) {
            Ok(value.to_string())
        } else {
            bad(&format!("use one of {}", allowed.join(", ")))
        }
    };
    match key {
        "recordsize" => {
            let max: u64 = if openzfs { 1 << 20 } else { 128 << 10 };
            let n = match crate::util::parse_size(value) {
                Ok(n) => n,
                Err(_) => return bad("give a size such as 8K or 16K"),
            };
            if !n.is_power_of_two() || !(512..=max).contains(&n) {
                return bad(&format!(
                    "the record size must be a power of 2 from 512 to {}",
                    if openzfs { "1M" } else { "128K" }
                ));
            }
            Ok(if n >= 1 << 20 {
                format!("{}M", n >> 20)
            } else if n >= 1 << 10 {
                format!("{}K", n >> 10)
            } else {
                n.to_string()
            })
        }
        "compression" => {
            let legacy = ["on", "off", "lzjb", "gzip", "zle"];
            if legacy.contains(&value) {
                return Ok(value.to_string());
            }
            if let Some(l) = value.strip_prefix("gzip-") {
                if matches!(l.parse::<u8>(), Ok(1..=9)) {
                    return Ok(value.to_string());
                }
            }
            if openzfs {
                if value == "lz4" || value == "zstd" || value == "zstd-fast" {
                    return Ok(value.to_string());
                }
                if let Some(l) = value.strip_prefix("zstd-fast-") {
                    if l.parse::<u16>().is_ok_and(|n| n >= 1) {
                        return Ok(value.to_string());
                    }
                } else if let Some(l) = value.strip_prefix("zstd-") {
                    if matches!(l.parse::<u8>(), Ok(1..=19)) {
                        return Ok(value.to_string());
                    }
                }
                bad("use on, off, lz4, lzjb, gzip, gzip-1..9, zle, zstd, zstd-1..19 or zstd-fast[-N]")
            } else {
                bad("use on, off, lzjb, gzip, gzip-1..9 or zle")
            }
        }
        "atime" => one_of(&["on", "off"]),
        "logbias" => one_of(&["latency", "throughput"]),
        "primarycache" | "secondarycache" => one_of(&["all", "none", "metadata"]),
        "xattr" if openzfs => one_of(&["on", "off", "sa", "dir"]),
        "xattr" => one_of(&["on", "off"]),
        "redundant_metadata" if openzfs => one_of(&["all", "most"]),
        "redundant_metadata" => bad("this ZFS has no redundant_metadata property"),
        "sync" => Err(Error::Config(format!(
            "ZFS property sync={value} is not settable through betterpg: sync=disabled acknowledges commits before they are on disk; leave sync at its default"
        ))),
        _ => Err(Error::Config(format!(
            "ZFS property {key:?} is not one betterpg sets at init: use one of {}",
            ALLOWED.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// The properties to set: the defaults for `flavor`, each replaced by an
/// override of the same key, then the other overrides; every override is
/// checked ([`check`]). Later overrides of a key win.
pub fn resolve(overrides: &[(String, String)], flavor: ZfsFlavor) -> Result<Vec<(String, String)>> {
    let mut chosen: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in overrides {
        let v = check(k, v, flavor)?;
        chosen.insert(k.clone(), v);
    }
    let mut out = Vec::new();
    for (k, v) in defaults(flavor) {
        let v = chosen.remove(&k).unwrap_or(v);
        out.push((k, v));
    }
    out.extend(chosen);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_depend_on_the_flavour() {
        let l = defaults(ZfsFlavor::Legacy);
        assert!(l.contains(&("recordsize".into(), "8K".into())));
        assert!(l.contains(&("atime".into(), "off".into())));
        assert!(l.contains(&("compression".into(), "on".into())));
        assert!(defaults(ZfsFlavor::OpenZfs).contains(&("compression".into(), "lz4".into())));
    }

    #[test]
    fn values_are_checked_per_flavour() {
        use ZfsFlavor::*;
        assert_eq!(check("recordsize", "16k", Legacy).unwrap(), "16K");
        assert_eq!(check("recordsize", "512", Legacy).unwrap(), "512");
        assert_eq!(check("recordsize", "1M", OpenZfs).unwrap(), "1M");
        assert!(check("recordsize", "1M", Legacy).is_err());
        assert!(check("recordsize", "3K", OpenZfs).is_err());
        assert!(check("recordsize", "256", OpenZfs).is_err());
        assert!(check("recordsize", "banana", OpenZfs).is_err());
        assert!(check("compression", "lz4", Legacy).is_err());
        assert!(check("compression", "lz4", OpenZfs).is_ok());
        assert!(check("compression", "gzip-9", Legacy).is_ok());
        assert!(check("compression", "gzip-10", Legacy).is_err());
        assert!(check("compression", "zstd-19", OpenZfs).is_ok());
        assert!(check("compression", "zstd-20", OpenZfs).is_err());
        assert!(check("compression", "zstd-fast-100", OpenZfs).is_ok());
        assert!(check("atime", "maybe", Legacy).is_err());
        assert!(check("xattr", "sa", Legacy).is_err());
        assert!(check("xattr", "sa", OpenZfs).is_ok());
        assert!(check("redundant_metadata", "most", Legacy).is_err());
        let e = check("sync", "disabled", OpenZfs).unwrap_err().to_string();
        assert!(e.contains("commits"), "{e}");
        let e = check("mountpoint", "/x", OpenZfs).unwrap_err().to_string();
        assert!(e.contains("recordsize"), "{e}");
    }

    #[test]
    fn overrides_replace_defaults_in_place() {
        let o = vec![
            ("atime".to_string(), "on".to_string()),
            ("logbias".to_string(), "throughput".to_string()),
            ("recordsize".to_string(), "16K".to_string()),
            ("recordsize".to_string(), "32k".to_string()),
        ];
        let r = resolve(&o, ZfsFlavor::Legacy).unwrap();
        assert_eq!(
            r,
            vec![
                ("recordsize".to_string(), "32K".to_string()),
                ("atime".to_string(), "on".to_string()),
                ("compression".to_string(), "on".to_string()),
                ("logbias".to_string(), "throughput".to_string()),
            ]
        );
        assert!(resolve(&[("atime".into(), "x".into())], ZfsFlavor::Legacy).is_err());
    }

    #[test]
    fn assignments_parse() {
        assert_eq!(
            parse_assignment("recordsize=16K").unwrap(),
            ("recordsize".to_string(), "16K".to_string())
        );
        assert!(parse_assignment("recordsize").is_err());
        assert!(parse_assignment("=1").is_err());
        assert!(parse_assignment("a=").is_err());
    }
}
