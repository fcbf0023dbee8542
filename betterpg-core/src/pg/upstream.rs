//! Talking to a remote primary over the replication protocol: its identity
//! and version, physical replication slots, and the base backup of a new
//! standby (`pg_basebackup -X stream`).
//!
//! The role in the connection string needs only `REPLICATION` (and a
//! `replication` line in the primary's `pg_hba.conf`): every question goes
//! through a replication connection (`psql` with `replication=true`,
//! `IDENTIFY_SYSTEM`, `SHOW`, `CREATE_REPLICATION_SLOT`), so a primary that
//! lets the role in for nothing else still works. The password is read by
//! libpq from a passfile (0600, the server's OS user's): it is never on a
//! command line, in a configuration file, or in any output.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::process::Command;

use super::binaries::PgBin;
use super::wal::{parse_lsn, Lsn};
use crate::error::{Error, Result};
use crate::osuser::OsUser;

/// Where the primary is and who logs in, parsed from a libpq URL or
/// `key=value` connection string.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// The role with `REPLICATION`.
    pub user: String,
    /// The password, when the connection string carried one.
    pub password: Option<String>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

impl Target {
    /// Parse `url` (`postgresql://user:pw@host:port/db` or `host=... user=...`).
    /// One TCP host; the user must be given.
    pub fn parse(url: &str) -> Result<Target> {
        let bad = |why: String| {
            Error::Config(format!("--from {}: {why}", crate::pg::isolate::redact(url)))
        };
        let cfg: tokio_postgres::Config = url
            .parse()
            .map_err(|e| bad(format!("not a libpq connection string ({e})")))?;
        let host = match cfg.get_hosts() {
            [tokio_postgres::config::Host::Tcp(h)] => h.clone(),
            [] => return Err(bad("it names no host: give the primary's address".into())),
            [_] => {
                return Err(bad(
                    "a Unix socket is not a remote primary: give its TCP address".into(),
                ))
            }
            _ => return Err(bad("it names several hosts: give exactly one".into())),
        };
        let port = match cfg.get_ports() {
            [] => 5432,
            [p] => *p,
            _ => return Err(bad("it names several ports: give exactly one".into())),
        };
        let user = cfg
            .get_user()
            .filter(|u| !u.is_empty())
            .ok_or_else(|| bad("it names no user: give the role with REPLICATION".into()))?
            .to_string();
        let password = cfg
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned());
        for (what, v) in [("host", host.as_str()), ("user", user.as_str())] {
            if v.chars().any(|c| c.is_control()) {
                return Err(bad(format!("the {what} holds a control character")));
            }
        }
        Ok(Target {
            host,
            port,
            user,
            password,
        })
    }

    /// `host:port` (an IPv6 address in brackets), for messages and status.
    pub fn address(&self) -> String {
        address(&self.host, self.port)
    }
}

/// `host:port`, an IPv6 address in brackets.
pub fn address(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// One line of a libpq passfile for `host:port`, any database, `user`.
pub fn passfile_line(host: &str, port: u16, user: &str, password: &str) -> String {
    fn esc(s: &str) -> String {
        s.replace('\\', "\\\\").replace(':', "\\:")
    }
    format!("{}:{port}:*:{}:{}\n", esc(host), esc(user), esc(password))
}

/// The password for `host:port`/`user` in a libpq passfile's text (the
/// first matching line, `*` matching anything), as libpq would pick it.
pub fn password_from_passfile(text: &str, host: &str, port: u16, user: &str) -> Option<String> {
    fn fields(line: &str) -> Vec<String> {
        let mut out = vec![String::new()];
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        out.last_mut().unwrap().push(n);
                    }
                }
                ':' if out.len() < 5 => out.push(String::new()),
                c => out.last_mut().unwrap().push(c),
            }
        }
        out
    }
    let port = port.to_string();
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .map(fields)
        .filter(|f| f.len() == 5)
        .find(|f| {
            (f[0] == "*" || f[0] == host)
                && (f[1] == "*" || f[1] == port)
                && (f[3] == "*" || f[3] == user)
        })
        .map(|f| f[4].clone())
}

/// A libpq `key=value` connection string to `host:port` as `user` whose
/// password comes from `passfile` (values quoted as libpq reads them).
pub fn conninfo(host: &str, port: u16, user: &str, passfile: &Path, app: &str) -> String {
    fn q(s: &str) -> String {
        format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
    }
    format!(
        "host={} port={port} user={} passfile={} application_name={} connect_timeout=10",
        q(host),
        q(user),
        q(&passfile.to_string_lossy()),
        q(app)
    )
}

/// What the primary says about itself (`IDENTIFY_SYSTEM`, `SHOW
/// server_version_num`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The cluster's system identifier (another cluster has another one).
    pub system_id: String,
    /// Its current timeline.
    pub timeline: u32,
    /// Its current WAL flush position: every transaction it acknowledged
    /// (synchronous commit) is before it.
    pub wal_lsn: Lsn,
    /// `server_version_num` (e.g. 150018).
    pub version_num: u32,
}

impl Identity {
    /// Major version (15 ...).
    pub fn major(&self) -> u32 {
        self.version_num / 10000
    }
}

/// How a replication command is run: which `psql`, as whom, to where.
#[derive(Debug, Clone)]
pub struct Replication {
    /// A `psql` (any version of 10 or later speaks to any server).
    pub psql: PathBuf,
    /// The OS user that reads the passfile.
    pub user: OsUser,
    /// The connection string (without `replication=`).
    pub conninfo: String,
    /// Where the primary is, for messages.
    pub address: String,
    /// Working directory (one the OS user can enter).
    pub cwd: PathBuf,
}

/// Environment variables that would change what libpq connects to or how.
const LIBPQ_ENV: &[&str] = &[
    "PGPASSWORD",
    "PGPASSFILE",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGOPTIONS",
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGAPPNAME",
    "PGCONNECT_TIMEOUT",
    "PGTARGETSESSIONATTRS",
];

impl Replication {
    fn command(&self, tool: &Path) -> Command {
        let mut cmd = Command::new(tool);
        for v in LIBPQ_ENV {
            cmd.env_remove(v);
        }
        cmd.current_dir(&self.cwd)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        self.user.apply(&mut cmd);
        die_with_parent(&mut cmd);
        cmd
    }

    /// Run replication commands; each one's rows, fields split.
    async fn run(&self, commands: &[&str], timeout: Duration) -> Result<Vec<Vec<String>>> {
        let mut cmd = self.command(&self.psql);
        cmd.args(["-X", "-A", "-t", "-q", "-F", "\u{1f}"])
            .args(["-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose"])
            .arg("-d")
            .arg(format!("{} replication=true", self.conninfo));
        for c in commands {
            cmd.arg("-c").arg(c);
        }
        let out = tokio::time::timeout(timeout, cmd.output())
            .await
            .map_err(|_| {
                Error::Timeout(format!(
                    "the primary at {} did not answer within {}s",
                    self.address,
                    timeout.as_secs()
                ))
            })?
            .map_err(|e| Error::io(format!("running {}", self.psql.display()), e))?;
        if !out.status.success() {
            return Err(failure(
                &self.address,
                &String::from_utf8_lossy(&out.stderr),
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| l.split('\u{1f}').map(str::to_string).collect())
            .collect())
    }

    /// The primary's system identifier, timeline, WAL position and version.
    pub async fn identify(&self, timeout: Duration) -> Result<Identity> {
        let rows = self
            .run(&["IDENTIFY_SYSTEM", "SHOW server_version_num"], timeout)
            .await?;
        let bad = || {
            Error::postgres(format!(
                "the primary at {} answered IDENTIFY_SYSTEM with {rows:?}, not a system identity",
                self.address
            ))
        };
        let (id, ver) = match rows.as_slice() {
            [id, ver] if id.len() >= 3 && ver.len() == 1 => (id, ver),
            _ => return Err(bad()),
        };
        Ok(Identity {
            system_id: id[0].clone(),
            timeline: id[1].parse().map_err(|_| bad())?,
            wal_lsn: parse_lsn(&id[2])?,
            version_num: ver[0].parse().map_err(|_| bad())?,
        })
    }

    /// Create the physical slot `slot` reserving WAL now; `false` when it
    /// already existed (then it is reused as it is).
    pub async fn create_slot(&self, slot: &str, timeout: Duration) -> Result<bool> {
        match self
            .run(
                &[&format!(
                    "CREATE_REPLICATION_SLOT \"{slot}\" PHYSICAL RESERVE_WAL"
                )],
                timeout,
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(Error::Postgres {
                sqlstate: Some(s), ..
            }) if s == "42710" => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Drop the physical slot `slot` (a missing one is fine).
    pub async fn drop_slot(&self, slot: &str, timeout: Duration) -> Result<()> {
        match self
            .run(&[&format!("DROP_REPLICATION_SLOT \"{slot}\"")], timeout)
            .await
        {
            Ok(_) => Ok(()),
            Err(Error::Postgres {
                sqlstate: Some(s), ..
            }) if s == "42704" => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `pg_basebackup -X stream` of the primary into `dir` (an empty
    /// directory of the OS user), through `slot` when given, with a fast
    /// checkpoint. `progress(done, total)` is called with bytes as they
    /// come (at most a few times a second).
    pub async fn base_backup(
        &self,
        bin: &PgBin,
        dir: &Path,
        slot: Option<&str>,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<()> {
        let tool = bin.tool("pg_basebackup");
        let mut cmd = self.command(&tool);
        cmd.arg("-D")
            .arg(dir)
            .args(["-X", "stream", "-c", "fast", "-w", "-P", "-v"])
            .arg("-d")
            .arg(&self.conninfo)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(s) = slot {
            cmd.args(["-S", s]);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::io(format!("running {}", tool.display()), e))?;
        let mut stderr = child.stderr.take().expect("piped");
        let mut text = Vec::new();
        let mut buf = [0u8; 4096];
        let mut last = Instant::now() - Duration::from_secs(1);
        loop {
            let n = stderr
                .read(&mut buf)
                .await
                .map_err(|e| Error::io("reading pg_basebackup's output", e))?;
            if n == 0 {
                break;
            }
            text.extend_from_slice(&buf[..n]);
            if last.elapsed() >= Duration::from_millis(200) {
                if let Some((done, total)) = last_progress(&String::from_utf8_lossy(&text)) {
                    progress(done, total);
                    last = Instant::now();
                }
            }
        }
        let status = child
            .wait()
            .await
            .map_err(|e| Error::io(format!("waiting for {}", tool.display()), e))?;
        let text = String::from_utf8_lossy(&text).into_owned();
        if let Some((done, total)) = last_progress(&text) {
            progress(done, total);
        }
        if !status.success() {
            let said: Vec<&str> = text
                .split(['\n', '\r'])
                .filter(|l| l.contains("error") || l.contains("FATAL") || l.contains("ERROR"))
                .collect();
            let said = if said.is_empty() {
                crate::util::tail_lines(&text, 5)
            } else {
                said.join("\n")
            };
            if is_disk_full(&said) {
                return Err(Error::NoSpace(format!(
                    "the base backup from the primary at {} ran out of space ({said}): make room in the pool or grow it, then follow again",
                    self.address
                )));
            }
            return Err(failure(&self.address, &said)
                .reword(|m| format!("the base backup from the primary failed: {m}")));
        }
        Ok(())
    }
}

/// Make the child get SIGKILL when this process dies (Linux's parent-death
/// signal): a `bpg follow` killed with SIGKILL must not leave its
/// `pg_basebackup` writing into the half-made replica, nor hold a
/// replication connection to the primary. Set in the child after its user
/// changed (a change of credentials clears it), and checked against a
/// parent that died before it was set.
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and calls
    // only async-signal-safe functions (prctl, getppid).
    let parent = std::process::id() as libc::pid_t;
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(std::io::Error::other("bpg exited before its child started"));
            }
            Ok(())
        });
    }
}

/// True when a tool's message says the disk is full (ENOSPC), or that
/// a ZFS quota of the replica's dataset or a parent of it is used up
/// (EDQUOT).
fn is_disk_full(text: &str) -> bool {
    text.contains("No space left on device") || text.contains("Disk quota exceeded")
}

/// The last `DONE/TOTAL kB` progress report in `pg_basebackup -P` output,
/// in bytes.
pub fn last_progress(text: &str) -> Option<(u64, u64)> {
    text.rsplit(['\r', '\n']).find_map(|line| {
        let (nums, _) = line.trim().split_once(" kB")?;
        let (done, total) = nums.split_once('/')?;
        Some((
            done.trim().parse::<u64>().ok()? * 1024,
            total.trim().parse::<u64>().ok()? * 1024,
        ))
    })
}

/// The SQLSTATE a replication connection's failure stands for, read from
/// what libpq and the server said (the one place that reads this text).
/// `None`: the server never answered (unreachable, timed out, refused).
pub fn failure_sqlstate(text: &str) -> Option<&'static str> {
    const STATES: &[(&str, &str)] = &[
        ("28P01", "28P01"),
        ("42501", "42501"),
        ("28000", "28000"),
        ("42710", "42710"),
        ("42704", "42704"),
        ("55006", "55006"),
        ("password authentication failed", "28P01"),
        ("no password supplied", "28P01"),
        ("no pg_hba.conf entry", "28000"),
        ("must be superuser or replication role", "42501"),
        ("permission denied to start WAL sender", "42501"),
        ("does not exist", "42704"),
        ("already exists", "42710"),
        ("is active for PID", "55006"),
    ];
    // With VERBOSITY=verbose, an ERROR line starts with its SQLSTATE.
    for line in text.lines() {
        if let Some(rest) = line
            .split_once("ERROR:")
            .or_else(|| line.split_once("FATAL:"))
            .map(|(_, r)| r.trim_start())
        {
            if rest.len() > 6 && rest.as_bytes()[5] == b':' {
                let code = &rest[..5];
                if let Some((_, s)) = STATES.iter().find(|(c, _)| *c == code) {
                    return Some(s);
                }
            }
        }
    }
    STATES
        .iter()
        .skip(6)
        .find(|(needle, _)| text.contains(needle))
        .map(|(_, s)| *s)
}

/// The error for a failed replication connection or command: the server's
/// own words quoted, its SQLSTATE kept, and what to do.
fn failure(address: &str, stderr: &str) -> Error {
    let said = stderr
        .lines()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty() && !l.starts_with("LOCATION:"))
        .collect::<Vec<_>>()
        .join(" / ");
    let said = said.trim_start_matches("psql: error: ").to_string();
    let sqlstate = failure_sqlstate(stderr);
    let advice = match sqlstate {
        Some("28P01") => "check the password (in the URL, --password-file or PGPASSFILE)",
        Some("28000") => "add a line for this role and address to the primary's pg_hba.conf (database `replication`) and reload it",
        Some("42501") => "the role needs REPLICATION: ALTER ROLE ... REPLICATION on the primary",
        Some(_) => "see the server's message",
        None => "check that the primary runs and that this host reaches it (address, port, firewall)",
    };
    let message = format!("the primary at {address} refused or failed: {said}: {advice}");
    Error::Postgres {
        sqlstate: sqlstate.map(str::to_string),
        message,
        detail: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_hide_their_password() {
        let t = Target::parse("postgresql://rep:s3cr%3At@10.1.2.3:5433/postgres").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.user.as_str()),
            ("10.1.2.3", 5433, "rep")
        );
        assert_eq!(t.password.as_deref(), Some("s3cr:t"));
        assert!(!format!("{t:?}").contains("s3cr"));
        let t = Target::parse("host=db.example port=6000 user=rep").unwrap();
        assert_eq!((t.port, t.password.clone()), (6000, None));
        assert_eq!(Target::parse("host=h").unwrap_err().kind_name(), "config");
        let e = Target::parse("postgresql://rep:pw@/x?host=/run/pg").unwrap_err();
        assert!(e.to_string().contains("Unix socket"), "{e}");
        let e = Target::parse("postgresql://rep:topsecret@h1,h2/x").unwrap_err();
        assert!(!e.to_string().contains("topsecret"), "{e}");
        assert_eq!(address("::1", 5), "[::1]:5");
    }

    #[test]
    fn passfile_lines_round_trip() {
        let line = passfile_line("10.0.0.1", 5432, "re:p", "a:b\\c");
        assert_eq!(line, "10.0.0.1:5432:*:re\\:p:a\\:b\\\\c\n");
        assert_eq!(
            password_from_passfile(&line, "10.0.0.1", 5432, "re:p").as_deref(),
            Some("a:b\\c")
        );
        let text = "# c\nother:5432:*:rep:no\n*:*:*:rep:yes\n";
        assert_eq!(
            password_from_passfile(text, "h", 1, "rep").as_deref(),
            Some("yes")
        );
        assert_eq!(password_from_passfile(text, "h", 1, "x"), None);
    }

    #[test]
    fn conninfo_quotes_values() {
        let c = conninfo("h", 5, "o'b", Path::new("/p q"), "bpg_r");
        assert_eq!(
            c,
            "host='h' port=5 user='o\\'b' passfile='/p q' application_name='bpg_r' connect_timeout=10"
        );
    }

    #[test]
    fn progress_is_read_from_the_last_report() {
        let t = "waiting\r  1024/20480 kB (5%), 0/1 tablespace\r 20480/20480 kB (100%), 1/1 tablespace\n";
        assert_eq!(last_progress(t), Some((20480 * 1024, 20480 * 1024)));
        assert_eq!(last_progress("nothing"), None);
    }

    #[test]
    fn failures_are_classified() {
        let auth = "psql: error: connection to server at \"10.0.0.2\", port 5432 failed: FATAL:  password authentication failed for user \"rep\"";
        assert_eq!(failure_sqlstate(auth), Some("28P01"));
        assert_eq!(
            failure_sqlstate("FATAL:  no pg_hba.conf entry for replication connection from host"),
            Some("28000")
        );
        assert_eq!(
            failure_sqlstate("FATAL:  must be superuser or replication role to start walsender"),
            Some("42501")
        );
        assert_eq!(
            failure_sqlstate("FATAL:  permission denied to start WAL sender\nDETAIL:  Only roles with the REPLICATION attribute may start a WAL sender process."),
            Some("42501")
        );
        assert_eq!(
            failure_sqlstate("ERROR:  42710: replication slot \"s\" already exists\nLOCATION:  x"),
            Some("42710")
        );
        assert_eq!(
            failure_sqlstate(
                "connection to server at \"10.9.9.9\", port 5432 failed: Connection refused"
            ),
            None
        );
        let e = failure("h:1", auth);
        assert!(e.is_auth_failure(), "{e}");
        assert!(e.to_string().contains("password authentication failed"));
    }
}
