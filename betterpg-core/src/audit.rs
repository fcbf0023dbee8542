//! The audit log, `HOME/audit.log`: one JSON line per operation that
//! creates, exposes, resets or destroys a copy of data (create, branch,
//! reset, destroy, each removal by gc, url).
//!
//! Each line is appended with one `write` on a file opened with
//! `O_APPEND` (mode 0600), so lines from processes running at once never
//! interleave and a reader never sees half a line written by a live
//! process. The file belongs to the home, not to an entry: `destroy` and
//! `gc` never remove it. No line ever holds a password: messages are
//! passed through [`redact`] first, and URLs are never recorded.

use std::fs;
use std::io::{BufRead, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The file name of the log inside the home.
pub const AUDIT_FILE: &str = "audit.log";

/// A masking file applied to a copy, with the hash of its content at the
/// time it was applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditMaskFile {
    /// The file as given (SQL script or rules).
    pub file: String,
    /// SHA-256 of its content, lowercase hex.
    pub sha256: String,
}

/// How an audited operation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditError {
    /// The error's kind name (`"not_found"`, `"postgres"` ...).
    pub kind: String,
    /// Its message (passwords removed).
    pub message: String,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When, RFC 3339 in UTC to the second (`2026-12-03T16:38:24Z`).
    pub time: String,
    /// The same instant, seconds since the Unix epoch.
    pub unix: u64,
    /// Name of the OS user that ran the operation (the real uid's).
    pub user: String,
    /// The real uid that ran it.
    pub uid: u32,
    /// `SUDO_USER` when the operation ran under sudo (as sudo said; a
    /// root caller could set it to anything).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sudo_user: Option<String>,
    /// `create`, `branch`, `reset`, `destroy`, `gc` or `url`.
    pub operation: String,
    /// The source of the copy (the parent of a branch), when there is one.
    pub source: Option<String>,
    /// The database or branch concerned (for `gc`, what was removed).
    pub branch: Option<String>,
    /// The snapshot mode of a branch or reset.
    pub mode: Option<String>,
    /// The masking applied to the copy, in order (empty: none).
    #[serde(default)]
    pub masking: Vec<AuditMaskFile>,
    /// The credentials policy of a branch or reset (`rotate` or `keep`).
    pub credentials: Option<String>,
    /// For `url`, the role whose URL was handed out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// More about what was done (for `gc`, what kind of thing was removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// `ok` or `error`.
    pub result: String,
    /// The error, when `result` is `error`.
    pub error: Option<AuditError>,
}

impl AuditEvent {
    /// An event of `operation` at this moment, by this process's user,
    /// with result `ok` and every other field empty.
    pub fn now(operation: &str) -> AuditEvent {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let uid = nix::unistd::getuid();
        let user = nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| uid.to_string());
        AuditEvent {
            time: format_time(unix),
            unix,
            user,
            uid: uid.as_raw(),
            sudo_user: std::env::var("SUDO_USER").ok().filter(|s| !s.is_empty()),
            operation: operation.to_string(),
            source: None,
            branch: None,
            mode: None,
            masking: Vec::new(),
            credentials: None,
            role: None,
            detail: None,
            result: "ok".into(),
            error: None,
        }
    }

    /// Record how the operation ended: `ok`, or `error` with its kind and
    /// (redacted) message.
    pub fn outcome<T>(mut self, r: &Result<T>) -> AuditEvent {
        if let Err(e) = r {
            self.result = "error".into();
            self.error = Some(AuditError {
                kind: e.kind_name().to_string(),
                message: redact(&e.to_string()),
            });
        }
        self
    }
}

/// `unix` seconds as RFC 3339 in UTC (`2026-12-03T16:38:24Z`).
pub fn format_time(unix: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix)).to_string()
}

/// The Unix time `since` names, relative to `now`: a duration back from
/// now (`30m`, `8h`, `7d`, `1h 30m`), an RFC 3339 time
/// (`2026-12-03T16:00:00Z`; without a zone it is UTC), a date
/// (`2026-12-03`, its midnight UTC) or Unix seconds.
pub fn parse_since(since: &str, now: u64) -> Result<u64> {
    let s = since.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_err(|_| bad_since(since));
    }
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(now.saturating_sub(d.as_secs()));
    }
    let full = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_string()
    };
    let t = humantime::parse_rfc3339_weak(&full).map_err(|_| bad_since(since))?;
    Ok(t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0))
}

fn bad_since(since: &str) -> Error {
    Error::Config(format!(
        "invalid --since {since:?}: give a duration back from now (30m, 8h, 7d), a time (2026-12-03T16:00:00Z), a date (2026-12-03) or Unix seconds"
    ))
}

/// `text` with passwords removed: the password of every
/// `scheme://user:password@host` URL and every `password=...` of a
/// connection string become `***`.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    // URLs: user:password@ right after "://".
    while let Some(i) = rest.find("://") {
        out.push_str(&rest[..i + 3]);
        rest = &rest[i + 3..];
        let end = rest
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == '/')
            .unwrap_or(rest.len());
        let authority = &rest[..end];
        if let Some(at) = authority.rfind('@') {
            let userinfo = &authority[..at];
            match userinfo.split_once(':') {
                Some((user, _)) => {
                    out.push_str(user);
                    out.push_str(":***");
                }
                None => out.push_str(userinfo),
            }
            out.push_str(&authority[at..]);
        } else {
            out.push_str(authority);
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    // Connection strings: password=VALUE (quoted or not).
    let lower = out.to_ascii_lowercase();
    if !lower.contains("password=") {
        return out;
    }
    let mut res = String::with_capacity(out.len());
    let mut i = 0;
    while let Some(j) = lower[i..].find("password=") {
        let start = i + j + "password=".len();
        res.push_str(&out[i..start]);
        res.push_str("***");
        let tail = &out[start..];
        let len = if let Some(q) = tail.strip_prefix('\'') {
            q.find('\'').map(|k| k + 2).unwrap_or(tail.len())
        } else {
            tail.find(char::is_whitespace).unwrap_or(tail.len())
        };
        i = start + len;
    }
    res.push_str(&out[i..]);
    res
}

/// Append `event` to the log at `path` (made 0600 if missing): one line,
/// one `write`, `O_APPEND`.
pub fn append(path: &Path, event: &AuditEvent) -> Result<()> {
    let mut line = serde_json::to_vec(event).map_err(|e| Error::Internal(e.to_string()))?;
    line.push(b'\n');
    let mut f = fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| Error::io(format!("opening the audit log {}", path.display()), e))?;
    // A log made before (or by hand) with wider permissions is narrowed.
    let meta = f
        .metadata()
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    if meta.permissions().mode() & 0o077 != 0 {
        f.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io(format!("chmod 0600 {}", path.display()), e))?;
    }
    // One write: with O_APPEND the line lands whole at the end, never
    // interleaved with another process's line.
    let n = f
        .write(&line)
        .map_err(|e| Error::io(format!("appending to the audit log {}", path.display()), e))?;
    if n != line.len() {
        return Err(Error::Io {
            context: format!("appending to the audit log {}", path.display()),
            source: std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                format!("short write: {n} of {} bytes", line.len()),
            ),
        });
    }
    Ok(())
}

/// The events of the log at `path` at or after `since` (Unix seconds;
/// `None`: all), oldest first. A missing log is empty. A line that is not
/// an event (a torn last line after a crash, an edit by hand) is an error
/// naming its number.
pub fn read(path: &Path, since: Option<u64>) -> Result<Vec<AuditEvent>> {
    let f = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::io(
                format!("opening the audit log {}", path.display()),
                e,
            ))
        }
    };
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line =
            line.map_err(|e| Error::io(format!("reading the audit log {}", path.display()), e))?;
        if line.trim().is_empty() {
            continue;
        }
        let ev: AuditEvent = serde_json::from_str(&line).map_err(|e| {
            Error::Config(format!(
                "{} line {}: not an audit event ({e}); the log is append-only, move the damaged file aside to start a new one",
                path.display(),
                i + 1
            ))
        })?;
        if since.is_none_or(|s| ev.unix >= s) {
            out.push(ev);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_forms() {
        let now = 1_800_000_000;
        assert_eq!(parse_since("30m", now).unwrap(), now - 1800);
        assert_eq!(parse_since("7d", now).unwrap(), now - 7 * 86400);
        assert_eq!(parse_since("1h 30m", now).unwrap(), now - 5400);
        assert_eq!(parse_since("1700000000", now).unwrap(), 1_700_000_000);
        assert_eq!(
            parse_since("2026-12-03T16:00:00Z", now).unwrap(),
            1_796_313_600
        );
        assert_eq!(parse_since("2026-12-03", now).unwrap(), 1_796_256_000);
        for bad in ["", "yesterday", "2026-13-01", "5 parsecs"] {
            let e = parse_since(bad, now).unwrap_err();
            assert_eq!(e.kind_name(), "config", "{bad}");
        }
        assert_eq!(format_time(1_796_313_600), "2026-12-03T16:00:00Z");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("cannot reach postgresql://postgres:s3cret@127.0.0.1:5432/postgres now"),
            "cannot reach postgresql://postgres:***@127.0.0.1:5432/postgres now"
        );
        assert_eq!(
            redact("host=h password=s3cret user=u"),
            "host=h password=*** user=u"
        );
        assert_eq!(redact("password='a b' port=1"), "password=*** port=1");
        assert_eq!(redact("no secrets here"), "no secrets here");
        assert_eq!(redact("http://host/x"), "http://host/x");
    }

    #[test]
    fn append_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(AUDIT_FILE);
        assert!(read(&p, None).unwrap().is_empty());
        let mut a = AuditEvent::now("branch");
        a.unix = 100;
        a.source = Some("prod".into());
        let b = AuditEvent::now("destroy")
            .outcome::<()>(&Err(Error::Config("bad postgresql://u:pw@h/db".into())));
        append(&p, &a).unwrap();
        append(&p, &b).unwrap();
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let all = read(&p, None).unwrap();
        assert_eq!(all, vec![a.clone(), b.clone()]);
        assert_eq!(read(&p, Some(101)).unwrap(), vec![b.clone()]);
        let err = b.error.unwrap();
        assert_eq!(err.kind, "config");
        assert!(!err.message.contains("pw"), "{}", err.message);
        fs::write(&p, "{not json\n").unwrap();
        assert!(read(&p, None).unwrap_err().to_string().contains("line 1"));
    }
}
