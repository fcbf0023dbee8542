//! Per-entry settings (`bpg config NAME ...`): the policies a database,
//! branch or other source carries and that later operations read (masking,
//! credentials, expiry, idle stop, snapshot and WAL retention).
//!
//! They live in the entry's catalog record. Every value is parsed here from
//! a string (`key`, `value`), so the command line, the C ABI and Python
//! share one parser and one set of error messages. A change is all or
//! nothing: [`Settings::apply_all`] works on a copy.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Whether a branch keeps its source's role passwords.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Credentials {
    /// Every role that logs in with a password gets a new one on the
    /// branch: the source's passwords do not open it.
    Rotate,
    /// The branch keeps the source's passwords (an explicit choice).
    Keep,
}

impl Credentials {
    /// The name used on every surface ("rotate", "keep").
    pub fn as_str(&self) -> &'static str {
        match self {
            Credentials::Rotate => "rotate",
            Credentials::Keep => "keep",
        }
    }
}

/// The settings of one entry. The default is "nothing set": operations
/// then use their own defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// SQL files (or directories of `*.sql`) that mask every branch made
    /// from this entry, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mask: Vec<PathBuf>,
    /// Declarative masking rules files (TOML), applied to every branch.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mask_rules: Vec<PathBuf>,
    /// Refuse to branch this entry without its masking (`--unmasked`).
    #[serde(skip_serializing_if = "is_false")]
    pub forbid_unmasked: bool,
    /// A branch made `--schema-only`: its resets (and its own branches)
    /// are schema-only too. Set by `branch`, not by `configure`.
    #[serde(skip_serializing_if = "is_false")]
    pub schema_only: bool,
    /// What branches do with the source's role passwords; `None`: the
    /// default for the entry's kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Credentials>,
    /// Time to live, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
    /// Stop the server after this many seconds without client connections.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_stop: Option<u64>,
    /// Named snapshots to keep: one per hour for this many hours.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_hourly: Option<u32>,
    /// Named snapshots to keep: one per day for this many days.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<u32>,
    /// Named snapshots to keep: the newest this many.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    /// Keep the source's WAL for this many seconds (point-in-time branches).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retain_wal: Option<u64>,
    /// `shared_buffers` of its branches' servers in bytes (of a branch: its
    /// own server's too, from its next start); `None`: the small default
    /// [`crate::pg::cluster::BranchMemory`] gives a branch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch_shared_buffers: Option<u64>,
    /// `max_connections` of its branches' servers (of a branch: its own
    /// too, from its next start); `None`: the small default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch_max_connections: Option<u32>,
}

/// The smallest `branch_shared_buffers` (PostgreSQL's own minimum, 16
/// buffers of 8 kB, is below it; 128 kB keeps a server usable).
pub const MIN_SHARED_BUFFERS: u64 = 128 << 10;
/// The largest `branch_shared_buffers` accepted (1 TiB).
pub const MAX_SHARED_BUFFERS: u64 = 1 << 40;
/// The fewest `branch_max_connections`: above PostgreSQL's reserved
/// superuser slots (3) with room for betterpg's own sessions.
pub const MIN_MAX_CONNECTIONS: u32 = 10;
/// The most `branch_max_connections` accepted.
pub const MAX_MAX_CONNECTIONS: u32 = 10_000;

fn is_false(b: &bool) -> bool {
    !*b
}

/// One settable key: its name and what it takes (shown in errors and help).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// The key, as the command line's option without `--` and `-` as `_`.
    pub name: &'static str,
    /// What value it takes.
    pub takes: &'static str,
}

/// Every key [`Settings::apply`] accepts.
pub const KEYS: &[Key] = &[
    Key {
        name: "mask",
        takes: "a SQL file or a directory of *.sql (repeat for several; 'none' clears)",
    },
    Key {
        name: "mask_rules",
        takes: "a masking rules file, TOML (repeat for several; 'none' clears)",
    },
    Key {
        name: "forbid_unmasked",
        takes: "true or false",
    },
    Key {
        name: "credentials",
        takes: "rotate, keep or none (the kind's default)",
    },
    Key {
        name: "ttl",
        takes: "a duration such as 8h, 30m, 7d, or none",
    },
    Key {
        name: "idle_stop",
        takes: "a duration such as 30m, or none",
    },
    Key {
        name: "keep_hourly",
        takes: "a count, or none",
    },
    Key {
        name: "keep_daily",
        takes: "a count, or none",
    },
    Key {
        name: "keep_last",
        takes: "a count, or none",
    },
    Key {
        name: "retain_wal",
        takes: "a duration such as 24h, or none",
    },
    Key {
        name: "branch_shared_buffers",
        takes: "a size such as 128M (at least 128K), or none (the small default)",
    },
    Key {
        name: "branch_max_connections",
        takes: "a count from 10 to 10000, or none (the small default)",
    },
];

/// Parse a duration ("8h", "30m", "1h 30m", "7d", "90s"; a bare number is
/// seconds; whole seconds, at least one).
pub fn parse_duration(key: &str, value: &str) -> Result<u64> {
    let value = value.trim();
    let d: Duration = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        humantime::parse_duration(value).map_err(|e| {
            Error::Config(format!(
                "{key}: '{value}' is not a duration ({e}): give e.g. 30m, 8h or 7d"
            ))
        })?
    };
    match d.as_secs() {
        0 => Err(Error::Config(format!(
            "{key}: '{value}' is shorter than a second: give at least 1s"
        ))),
        s => Ok(s),
    }
}

/// Format seconds as a duration the parser reads back ("8h", "1h 30m").
pub fn format_duration(secs: u64) -> String {
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

fn is_none(value: &str) -> bool {
    value.trim().eq_ignore_ascii_case("none")
}

fn parse_opt_duration(key: &str, value: &str) -> Result<Option<u64>> {
    if is_none(value) {
        return Ok(None);
    }
    parse_duration(key, value).map(Some)
}

fn parse_opt_count(key: &str, value: &str) -> Result<Option<u32>> {
    if is_none(value) {
        return Ok(None);
    }
    match value.trim().parse::<u32>() {
        Ok(n) if n > 0 => Ok(Some(n)),
        _ => Err(Error::Config(format!(
            "{key}: '{value}' is not a count: give a whole number of at least 1, or none"
        ))),
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(Error::Config(format!(
            "{key}: '{value}' is not true or false"
        ))),
    }
}

/// An existing file (or, for `mask`, directory), made absolute so that the
/// setting means the same from any working directory.
fn parse_path(key: &str, value: &str, dir_ok: bool) -> Result<PathBuf> {
    let p = Path::new(value);
    let abs = std::fs::canonicalize(p).map_err(|e| {
        Error::Config(format!(
            "{key}: cannot use '{value}': {e}: give an existing file"
        ))
    })?;
    let meta = std::fs::metadata(&abs).map_err(|e| Error::io(format!("reading {value}"), e))?;
    if meta.is_file() || (dir_ok && meta.is_dir()) {
        Ok(abs)
    } else {
        Err(Error::Config(format!(
            "{key}: '{value}' is not a regular file{}",
            if dir_ok { " or a directory" } else { "" }
        )))
    }
}

impl Settings {
    /// True when nothing is set (the entry's record then omits settings).
    pub fn is_default(&self) -> bool {
        *self == Settings::default()
    }

    /// Every key with its value, `null` (or `[]`, `false`) when not set;
    /// durations in seconds. The shape of `bpg config --json`'s
    /// `settings`, which the C ABI and Python return too.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "mask": self.mask,
            "mask_rules": self.mask_rules,
            "forbid_unmasked": self.forbid_unmasked,
            "credentials": self.credentials.map(|c| c.as_str()),
            "ttl": self.ttl,
            "idle_stop": self.idle_stop,
            "keep_hourly": self.keep_hourly,
            "keep_daily": self.keep_daily,
            "keep_last": self.keep_last,
            "retain_wal": self.retain_wal,
            "branch_shared_buffers": self.branch_shared_buffers,
            "branch_max_connections": self.branch_max_connections,
        })
    }

    /// Set one key from its string form. For the list keys (`mask`,
    /// `mask_rules`) the value is appended; `none` clears the list.
    pub fn apply(&mut self, key: &str, value: &str) -> Result<()> {
        let key = key.trim().replace('-', "_");
        let k = key.as_str();
        match k {
            "mask" | "mask_rules" => {
                let list = if k == "mask" {
                    &mut self.mask
                } else {
                    &mut self.mask_rules
                };
                if is_none(value) {
                    list.clear();
                } else {
                    let p = parse_path(k, value, k == "mask")?;
                    if !list.contains(&p) {
                        list.push(p);
                    }
                }
            }
            "forbid_unmasked" => self.forbid_unmasked = parse_bool(k, value)?,
            "credentials" => {
                self.credentials = match value.trim().to_ascii_lowercase().as_str() {
                    "rotate" => Some(Credentials::Rotate),
                    "keep" => Some(Credentials::Keep),
                    "none" | "default" => None,
                    _ => {
                        return Err(Error::Config(format!(
                            "credentials: '{value}' is not rotate, keep or none"
                        )))
                    }
                }
            }
            "ttl" => self.ttl = parse_opt_duration(k, value)?,
            "idle_stop" => self.idle_stop = parse_opt_duration(k, value)?,
            "keep_hourly" => self.keep_hourly = parse_opt_count(k, value)?,
            "keep_daily" => self.keep_daily = parse_opt_count(k, value)?,
            "keep_last" => self.keep_last = parse_opt_count(k, value)?,
            "retain_wal" => self.retain_wal = parse_opt_duration(k, value)?,
            "branch_shared_buffers" => {
                self.branch_shared_buffers = if is_none(value) {
                    None
                } else {
                    match crate::util::parse_size(value) {
                        Ok(b) if (MIN_SHARED_BUFFERS..=MAX_SHARED_BUFFERS).contains(&b) => {
                            Some(b)
                        }
                        _ => {
                            return Err(Error::Config(format!(
                                "{k}: '{value}' is not a size from 128K to 1T: give e.g. 128M, or none"
                            )))
                        }
                    }
                }
            }
            "branch_max_connections" => {
                self.branch_max_connections = match parse_opt_count(k, value)? {
                    Some(n) if !(MIN_MAX_CONNECTIONS..=MAX_MAX_CONNECTIONS).contains(&n) => {
                        return Err(Error::Config(format!(
                            "{k}: '{value}' is not from {MIN_MAX_CONNECTIONS} to {MAX_MAX_CONNECTIONS}: give a count, or none"
                        )))
                    }
                    n => n,
                }
            }
            _ => {
                let known: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
                return Err(Error::Config(format!(
                    "unknown setting '{key}': the settings are {}",
                    known.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// Apply several changes at once, all or nothing. Within one call a
    /// list key given several times replaces the old list by the values
    /// given (`mask=a.sql`, `mask=b.sql` -> `[a.sql, b.sql]`).
    pub fn apply_all<K: AsRef<str>, V: AsRef<str>>(&self, pairs: &[(K, V)]) -> Result<Settings> {
        let mut next = self.clone();
        let mut cleared: Vec<String> = Vec::new();
        for (k, v) in pairs {
            let key = k.as_ref().trim().replace('-', "_");
            if (key == "mask" || key == "mask_rules") && !cleared.contains(&key) {
                next.apply(&key, "none")?;
                cleared.push(key.clone());
            }
            next.apply(&key, v.as_ref())?;
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print_back() {
        assert_eq!(parse_duration("ttl", "8h").unwrap(), 8 * 3600);
        assert_eq!(parse_duration("ttl", "1h 30m").unwrap(), 5400);
        assert_eq!(parse_duration("ttl", "7d").unwrap(), 7 * 86400);
        for s in [1, 59, 3600, 5400, 86400 * 3 + 7] {
            assert_eq!(parse_duration("ttl", &format_duration(s)).unwrap(), s);
        }
        assert_eq!(
            parse_duration("ttl", "90").unwrap(),
            90,
            "a bare number is seconds"
        );
        for bad in ["", "0", "soon", "-1h", "0s", "10ms"] {
            let e = parse_duration("ttl", bad).unwrap_err().to_string();
            assert!(e.contains("ttl"), "{bad}: {e}");
        }
    }

    #[test]
    fn apply_sets_and_clears_each_key() {
        let mut s = Settings::default();
        s.apply("ttl", "2h").unwrap();
        s.apply("idle-stop", "30m").unwrap();
        s.apply("keep_hourly", "24").unwrap();
        s.apply("keep_daily", "7").unwrap();
        s.apply("keep_last", "3").unwrap();
        s.apply("retain_wal", "1d").unwrap();
        s.apply("credentials", "Rotate").unwrap();
        s.apply("forbid_unmasked", "yes").unwrap();
        s.apply("branch-shared-buffers", "256M").unwrap();
        s.apply("branch_max_connections", "50").unwrap();
        assert_eq!(s.branch_shared_buffers, Some(256 << 20));
        assert_eq!(s.branch_max_connections, Some(50));
        assert_eq!(s.ttl, Some(7200));
        assert_eq!(s.idle_stop, Some(1800));
        assert_eq!(
            (s.keep_hourly, s.keep_daily, s.keep_last),
            (Some(24), Some(7), Some(3))
        );
        assert_eq!(s.retain_wal, Some(86400));
        assert_eq!(s.credentials, Some(Credentials::Rotate));
        assert!(s.forbid_unmasked);
        assert!(!s.is_default());
        for k in [
            "ttl",
            "idle_stop",
            "keep_hourly",
            "keep_daily",
            "keep_last",
            "retain_wal",
            "credentials",
            "branch_shared_buffers",
            "branch_max_connections",
        ] {
            s.apply(k, "none").unwrap();
        }
        s.apply("forbid_unmasked", "false").unwrap();
        assert!(s.is_default(), "{s:?}");
    }

    #[test]
    fn bad_values_and_keys_are_refused_and_change_nothing() {
        let base = Settings {
            ttl: Some(60),
            ..Settings::default()
        };
        for (k, v) in [
            ("ttl", "later"),
            ("keep_last", "0"),
            ("keep_last", "-2"),
            ("credentials", "share"),
            ("forbid_unmasked", "maybe"),
            ("branch_shared_buffers", "64K"),
            ("branch_shared_buffers", "lots"),
            ("branch_shared_buffers", "2T"),
            ("branch_max_connections", "3"),
            ("branch_max_connections", "20000"),
            ("mask", "/nonexistent/betterpg/mask.sql"),
            ("colour", "blue"),
        ] {
            let e = base.apply_all(&[("ttl", "5m"), (k, v)]).unwrap_err();
            assert!(matches!(e, Error::Config(_)), "{k}={v}: {e:?}");
            assert!(e.to_string().contains(k), "{k}={v}: {e}");
        }
        assert_eq!(base.ttl, Some(60));
    }

    #[test]
    fn list_keys_replace_within_one_call_and_accept_directories() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.sql");
        let b = dir.path().join("b.toml");
        std::fs::write(&a, "select 1;").unwrap();
        std::fs::write(&b, "").unwrap();
        let a_s = a.to_str().unwrap();
        let b_s = b.to_str().unwrap();
        let d_s = dir.path().to_str().unwrap();
        let s = Settings::default()
            .apply_all(&[("mask", a_s), ("mask", d_s), ("mask_rules", b_s)])
            .unwrap();
        assert_eq!(s.mask.len(), 2);
        assert_eq!(s.mask_rules.len(), 1);
        let s2 = s.apply_all(&[("mask", a_s)]).unwrap();
        assert_eq!(s2.mask.len(), 1, "a new call replaces the list");
        assert_eq!(s2.mask_rules.len(), 1, "other lists are kept");
        let e = s.apply_all(&[("mask_rules", d_s)]).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let full = s2.to_json();
        let keys: Vec<&str> = full
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        let mut want: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
        want.sort();
        assert_eq!(keys, want, "to_json has every key");
        let json = serde_json::to_value(&s2).unwrap();
        assert!(json.get("ttl").is_none(), "unset keys are omitted: {json}");
        let back: Settings = serde_json::from_value(json).unwrap();
        assert_eq!(back, s2);
    }
}
