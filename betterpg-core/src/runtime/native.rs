//! PostgreSQL as a native process, driven through `pg_ctl`.
//!
//! `pg_ctl` is run with an argument list; its `-o` option (which it passes
//! through a shell) only ever carries a constant, for a private start:
//! per-instance settings live in the data directory's `betterpg.conf`. It double-forks the postmaster, so no zombie is
//! left in a long-lived host process, and `-w` waits for the postmaster to
//! report ready (or gone, for stop), while we watch `postmaster.pid` more
//! often than pg_ctl does and stop waiting as soon as it says so; readiness
//! is then confirmed by a real query.

use std::path::Path;

use async_trait::async_trait;
use tokio::process::Command;

use super::{start_failure_kind, InstanceSpec, RunStatus, Runtime};
use crate::error::{Error, Result};
use crate::pg::binaries::{data_dir_major, PgBin};
use crate::pg::datadir::DataDir;
use crate::util::tail_lines;

/// True when `postmaster.pid` exists and names this data directory (its
/// second line is the data directory the postmaster was started on). A
/// missing file is "not own" too: nothing runs here.
pub fn pid_file_is_own(data_dir: &Path) -> bool {
    let Some(text) = read_pid_file(data_dir) else {
        return false;
    };
    let Some(dir) = text.lines().nth(1) else {
        return false;
    };
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    canon(Path::new(dir.trim())) == canon(data_dir)
}

#[cfg(test)]
mod own_pid_tests {
    use super::*;

    #[test]
    fn a_copied_pid_file_is_not_own() {
        let d = tempfile::tempdir().unwrap();
        let data = d.path().join("pgdata");
        std::fs::create_dir_all(&data).unwrap();
        assert!(!pid_file_is_own(&data), "no file: nothing runs");
        std::fs::write(data.join("postmaster.pid"), "1\n/elsewhere/pgdata\n").unwrap();
        assert!(
            !pid_file_is_own(&data),
            "a clone's copy names the source's directory"
        );
        let own = format!("1\n{}\n1700000000\n5432\n", data.display());
        std::fs::write(data.join("postmaster.pid"), own).unwrap();
        assert!(pid_file_is_own(&data));
    }
}

/// The text of `postmaster.pid`, read without following a link (the data
/// directory belongs to the server's user, who may have planted one).
pub(super) fn read_pid_file(data_dir: &Path) -> Option<String> {
    DataDir::open(data_dir)
        .ok()?
        .read_text("postmaster.pid")
        .ok()
        .flatten()
}

/// Settings of a private start that must beat every configuration file,
/// `postgresql.auto.conf` included: no apply worker may connect to a
/// source's publisher before the subscriptions are detached. A constant,
/// so passing it through pg_ctl's shell is safe.
const PRIVATE_OPTIONS: &str = "-c max_logical_replication_workers=0";

/// How often start and stop look at `postmaster.pid` (pg_ctl: 100 ms).
const POLL: std::time::Duration = std::time::Duration::from_millis(10);

/// What `postmaster.pid` says: the postmaster's pid and its status line
/// ("starting", "ready", "stopping", "standby"), when the file names this
/// data directory. Pure parsing, unit-tested.
pub(super) fn parse_pid_file(text: &str) -> Option<(u32, &str)> {
    let mut lines = text.lines();
    let pid = lines
        .next()?
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|p| *p > 0)?;
    // Line 8 is the status; a postmaster writes it last, after the others.
    let status = text.lines().nth(7).map(str::trim).unwrap_or("");
    Some((pid, status))
}

/// The pid of a live postmaster of `data_dir` whose pid file says "ready",
/// other than `stale` (a pid file left by an earlier, crashed run).
fn ready_postmaster(data_dir: &Path, stale: Option<u32>) -> Option<u32> {
    let text = read_pid_file(data_dir)?;
    let (pid, status) = parse_pid_file(&text)?;
    (status == "ready" && Some(pid) != stale && process_exists(pid) && pid_file_is_own(data_dir))
        .then_some(pid)
}

/// True unless the kernel says there is no such process (EPERM: it exists
/// but belongs to another user) or it has exited and waits to be reaped (a
/// zombie: a killed postmaster whose parent, often PID 1 in a container,
/// does not reap it; `pg_ctl status` would call it running).
fn process_exists(pid: u32) -> bool {
    let signalable = !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None),
        Err(nix::errno::Errno::ESRCH)
    );
    signalable && !is_zombie(pid)
}

/// Whether `/proc/PID/stat` says the process has exited (state Z or X).
fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| proc_stat_state(&s))
        .is_some_and(|c| c == 'Z' || c == 'X')
}

/// The state letter of a `/proc/PID/stat` line: the first field after the
/// command name in parentheses (which may itself hold spaces and `)`).
fn proc_stat_state(stat: &str) -> Option<char> {
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

#[cfg(test)]
mod pid_file_tests {
    use super::*;

    #[test]
    fn status_line_is_read() {
        let ready = "4242\n/d\n1700000000\n5432\n\n127.0.0.1\n  123 456\nready   \n";
        assert_eq!(parse_pid_file(ready), Some((4242, "ready")));
        let starting = "4242\n/d\n1700000000\n5432\n\n127.0.0.1\n  123 456\nstarting\n";
        assert_eq!(parse_pid_file(starting), Some((4242, "starting")));
        // Written in part (the status line comes last): not ready.
        assert_eq!(parse_pid_file("4242\n/d\n"), Some((4242, "")));
        assert_eq!(parse_pid_file(""), None);
        assert_eq!(parse_pid_file("0\n"), None);
        assert_eq!(parse_pid_file("x\n"), None);
    }

    #[test]
    fn a_dead_or_stale_postmaster_is_not_ready() {
        let d = tempfile::tempdir().unwrap();
        let me = std::process::id();
        let file = |pid: u32| format!("{pid}\n{}\n1\n5432\n\n*\n 1 2\nready\n", d.path().display());
        std::fs::write(d.path().join("postmaster.pid"), file(me)).unwrap();
        assert_eq!(ready_postmaster(d.path(), None), Some(me));
        assert_eq!(ready_postmaster(d.path(), Some(me)), None, "stale pid");
        // pid_max is at most 2^22: this pid cannot exist.
        std::fs::write(d.path().join("postmaster.pid"), file(4_194_305)).unwrap();
        assert_eq!(ready_postmaster(d.path(), None), None, "dead pid");
    }

    #[test]
    fn status_reads_the_pid_file_without_pg_ctl() {
        assert_eq!(pid_of_pid_file("4242\n/d\n"), Some(4242));
        assert_eq!(pid_of_pid_file("-4242\n/d\n"), Some(4242), "single-user");
        assert_eq!(pid_of_pid_file("0\n"), None);
        assert_eq!(pid_of_pid_file("x\n"), None);
        assert_eq!(pid_of_pid_file(""), None);
        let d = tempfile::tempdir().unwrap();
        let data = d.path().join("pgdata");
        std::fs::create_dir_all(&data).unwrap();
        let file = |pid: u32| format!("{pid}\n{}\n1\n5432\n\n*\n 1 2\nready\n", data.display());
        std::fs::write(data.join("postmaster.pid"), file(std::process::id())).unwrap();
        assert_eq!(pid_file_status(&data), RunStatus::Running);
        std::fs::write(data.join("postmaster.pid"), file(4_194_305)).unwrap();
        assert_eq!(pid_file_status(&data), RunStatus::Stopped, "dead pid");
        std::fs::remove_file(data.join("postmaster.pid")).unwrap();
        assert_eq!(pid_file_status(&data), RunStatus::Stopped, "no pid file");
    }

    #[test]
    fn an_exited_unreaped_process_is_not_running() {
        assert_eq!(proc_stat_state("42 (postgres) S 1 2 3"), Some('S'));
        assert_eq!(proc_stat_state("42 (a) b) Z 1 2 3"), Some('Z'));
        assert_eq!(proc_stat_state("garbage"), None);
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Exited but not yet waited for: a zombie.
        let mut zombie = false;
        for _ in 0..500 {
            if is_zombie(pid) {
                zombie = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(zombie, "`true` did not exit within 5 s");
        assert!(!process_exists(pid), "a zombie is not a live postmaster");
        child.wait().unwrap();
        assert!(process_exists(std::process::id()));
    }
}

/// Lines of server log quoted in a start failure.
const LOG_LINES_IN_ERRORS: usize = 15;

/// Runs servers as processes on this machine.
#[derive(Debug, Default, Clone)]
pub struct NativeRuntime;

impl NativeRuntime {
    /// `pg_ctl stop` in `mode` (`fast`, or `immediate` for data thrown
    /// away next); stopping a stopped server is fine.
    async fn stop_with(&self, spec: &InstanceSpec, mode: &str) -> Result<()> {
        if self.status(spec).await? == RunStatus::Stopped {
            return Ok(());
        }
        // Stopped when the postmaster has removed its pid file (its last
        // act), as pg_ctl -w checks it.
        let pid_file = spec.data_dir.join("postmaster.pid");
        let Some(out) = self
            .pg_ctl_until(spec, &["stop", "-w", "-s", "-m", mode, "-t", "120"], || {
                !pid_file.exists()
            })
            .await?
        else {
            return Ok(());
        };
        if out.status.success() || self.status(spec).await? == RunStatus::Stopped {
            return Ok(());
        }
        Err(Error::runtime(format!(
            "stopping {} failed: {}",
            spec.name,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }

    /// Run `pg_ctl` with `-w` semantics, but return as soon as `done` says
    /// the wait is over. `pg_ctl -w` looks at the postmaster only every
    /// 100 ms; checking `postmaster.pid` every [`POLL`] ourselves saves
    /// about that much per start and per stop (measured in benches/). When
    /// `done` wins, pg_ctl is killed and reaped (the postmaster is in its
    /// own session, so it is not touched) and `None` is returned; otherwise
    /// pg_ctl's own result, whose failure report stays the authority.
    async fn pg_ctl_until(
        &self,
        spec: &InstanceSpec,
        args: &[&str],
        done: impl Fn() -> bool,
    ) -> Result<Option<std::process::Output>> {
        use tokio::io::AsyncReadExt;
        let tool = spec.pg_bin.tool("pg_ctl");
        let mut cmd = Command::new(&tool);
        cmd.args(args)
            .arg("-D")
            .arg(&spec.data_dir)
            .current_dir(spec.data_dir.parent().unwrap_or(Path::new("/")))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        spec.user.apply(&mut cmd);
        let io_err = |e| Error::io(format!("running {}", tool.display()), e);
        let mut child = cmd.spawn().map_err(io_err)?;
        // Drain both pipes as they fill, so pg_ctl never blocks on them.
        let drain = |pipe: Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>| {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                if let Some(mut p) = pipe {
                    let _ = p.read_to_end(&mut buf).await;
                }
                buf
            })
        };
        let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
        let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
        loop {
            tokio::select! {
                status = child.wait() => {
                    let status = status.map_err(io_err)?;
                    return Ok(Some(std::process::Output {
                        status,
                        stdout: stdout.await.unwrap_or_default(),
                        stderr: stderr.await.unwrap_or_default(),
                    }));
                }
                _ = tokio::time::sleep(POLL) => {
                    if done() {
                        let _ = child.start_kill();
                        let _ = child.wait().await;
                        return Ok(None);
                    }
                }
            }
        }
    }

    fn log_tail(spec: &InstanceSpec) -> String {
        std::fs::read_to_string(&spec.log_file)
            .map(|t| tail_lines(&t, LOG_LINES_IN_ERRORS))
            .unwrap_or_else(|e| format!("(no log: {e})"))
    }
}

#[async_trait]
impl Runtime for NativeRuntime {
    fn name(&self) -> &'static str {
        "native"
    }

    async fn start(&self, spec: &InstanceSpec) -> Result<()> {
        let data_major = data_dir_major(&spec.data_dir)?;
        // Ask the binaries themselves, not only the catalog: the directory
        // may have been replaced or edited since the entry was written.
        let bin = PgBin::at(&spec.pg_bin.dir).map_err(|e| {
            Error::Config(format!(
                "the PostgreSQL binaries of {} ({}) are unusable: {e}; restore them (scripts/pg-versions.sh {data_major} unpacks a PostgreSQL {data_major})",
                spec.name,
                spec.pg_bin.dir.display(),
            ))
        })?;
        for major in [spec.pg_bin.major, bin.major] {
            if data_major != major {
                return Err(Error::VersionMismatch(format!(
                    "{} holds a PostgreSQL {data_major} cluster but the binaries in {} are PostgreSQL {}: use binaries of version {data_major}",
                    spec.data_dir.display(),
                    spec.pg_bin.dir.display(),
                    major
                )));
            }
        }
        if let Some(dir) = spec.log_file.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        }
        // The log is created by us and handed to the server user, so the
        // logs directory itself can stay owned by root.
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log_file)
            .map_err(|e| Error::io(format!("opening {}", spec.log_file.display()), e))?;
        spec.user.chown(&spec.log_file)?;
        crate::pg::cluster::set_mode(&spec.log_file, 0o640)?;
        let timeout = spec.start_timeout.as_secs().max(1).to_string();
        let log = spec.log_file.to_string_lossy().into_owned();
        // A pid file already here is stale (pg_ctl refuses to start over a
        // live one): its pid must not count as the new postmaster.
        let stale =
            read_pid_file(&spec.data_dir).and_then(|t| parse_pid_file(&t).map(|(pid, _)| pid));
        let mut args = vec!["start", "-w", "-s", "-t", &timeout, "-l", &log];
        if spec.private_socket_dir.is_some() {
            args.extend(["-o", PRIVATE_OPTIONS]);
        }
        let t0 = std::time::Instant::now();
        let out = self
            .pg_ctl_until(spec, &args, || {
                ready_postmaster(&spec.data_dir, stale).is_some()
            })
            .await?;
        let t_up = std::time::Instant::now();
        if let Some(out) = out.filter(|o| !o.status.success()) {
            // pg_ctl may give up while the postmaster still runs (timeout):
            // make sure nothing is left behind.
            let _ = self.stop(spec).await;
            let tail = Self::log_tail(spec);
            // Out of memory, processes or files: say which, and what helps.
            let advice = super::lacking_resource(&tail)
                .map(|what| format!(" ({})", super::resource_advice(what)))
                .unwrap_or_default();
            return Err(Error::Runtime {
                kind: start_failure_kind(&tail),
                message: format!(
                    "{} failed to start{advice}: {}\n--- last lines of {} ---\n{}",
                    spec.name,
                    String::from_utf8_lossy(&out.stderr).trim(),
                    spec.log_file.display(),
                    tail
                ),
            });
        }
        let conn = self.private_conn(spec).unwrap_or_else(|| spec.conn.clone());
        let ready = conn.wait_ready(spec.start_timeout).await;
        tracing::debug!(
            "{}: postmaster ready {:.0} ms after pg_ctl began, answered a query {:.0} ms later",
            spec.name,
            (t_up - t0).as_secs_f64() * 1000.0,
            t_up.elapsed().as_secs_f64() * 1000.0
        );
        if let Err(e) = ready {
            let _ = self.stop(spec).await;
            let tail = Self::log_tail(spec);
            let text = format!(
                "{} started but did not answer a query: {e}\n--- last lines of {} ---\n{}",
                spec.name,
                spec.log_file.display(),
                tail
            );
            // Keep the kind and its fields: a timeout stays a timeout
            // (callers may retry with a longer start_timeout_secs), a
            // refusal stays a refusal (with its SQLSTATE).
            return Err(match e {
                e @ (Error::Timeout(_) | Error::Postgres { .. }) => e.reword(|_| text),
                _ => Error::Runtime {
                    kind: start_failure_kind(&tail),
                    message: text,
                },
            });
        }
        Ok(())
    }

    async fn stop(&self, spec: &InstanceSpec) -> Result<()> {
        self.stop_with(spec, "fast").await
    }

    async fn stop_discarding(&self, spec: &InstanceSpec) -> Result<()> {
        self.stop_with(spec, "immediate").await
    }

    async fn status(&self, spec: &InstanceSpec) -> Result<RunStatus> {
        let has_version = DataDir::open(&spec.data_dir)
            .and_then(|d| d.entry_type("PG_VERSION"))
            .ok()
            .flatten()
            .is_some();
        if !has_version {
            return Ok(RunStatus::Stopped);
        }
        // A clone carries its source's postmaster.pid until betterpg removes
        // it, naming the SOURCE's live postmaster. pg_ctl would report that
        // process as ours (and `pg_ctl stop` would signal it), so first make
        // sure the pid file was written for this very data directory.
        if !pid_file_is_own(&spec.data_dir) {
            return Ok(RunStatus::Stopped);
        }
        // What `pg_ctl status` decides, read here instead of running a
        // process per server (`status` of a hundred entries would run a
        // hundred): the postmaster the pid file names is alive. It needs
        // no binaries, so `status` still answers when they are gone and
        // `start` can say what is missing.
        Ok(pid_file_status(&spec.data_dir))
    }

    async fn logs(&self, spec: &InstanceSpec, tail: Option<usize>) -> Result<String> {
        let text = match std::fs::read_to_string(&spec.log_file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::io(format!("reading {}", spec.log_file.display()), e)),
        };
        Ok(match tail {
            Some(n) => tail_lines(&text, n),
            None => text,
        })
    }

    async fn remove(&self, spec: &InstanceSpec) -> Result<()> {
        match std::fs::remove_file(&spec.log_file) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(
                format!("removing {}", spec.log_file.display()),
                e,
            )),
        }
    }
}

/// Running when `postmaster.pid` names a live postmaster of THIS data
/// directory (a clone may carry its source's pid file: the pid alone is not
/// proof, so [`pid_file_is_own`] is asked first by the caller). As `pg_ctl
/// status`: the pid on the first line is a live process (negative: a
/// single-user backend, running too).
fn pid_file_status(data_dir: &Path) -> RunStatus {
    let pid = read_pid_file(data_dir).and_then(|t| pid_of_pid_file(&t));
    if pid.is_some_and(process_exists) {
        RunStatus::Running
    } else {
        RunStatus::Stopped
    }
}

/// The process `postmaster.pid` names: its first line, a pid (negative
/// for a single-user backend, as pg_ctl reads it). Pure parsing.
fn pid_of_pid_file(text: &str) -> Option<u32> {
    let n = text.lines().next()?.trim().parse::<i64>().ok()?;
    u32::try_from(n.unsigned_abs()).ok().filter(|p| *p > 0)
}
