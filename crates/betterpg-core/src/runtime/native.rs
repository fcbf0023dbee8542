//! PostgreSQL as a native process, driven through `pg_ctl`.
//!
//! `pg_ctl` is run with an argument list and no `-o` option (which it would
//! pass through a shell): per-instance settings live in the data directory's
//! `betterpg.conf` instead. It double-forks the postmaster, so no zombie is
//! left in a long-lived host process, and `-w` waits for the postmaster to
//! report ready; readiness is then confirmed by a real query.

use std::path::Path;

use async_trait::async_trait;
use tokio::process::Command;

use super::{InstanceSpec, RunStatus, Runtime};
use crate::error::{Error, Result};
use crate::pg::binaries::{data_dir_major, PgBin};
use crate::util::tail_lines;

/// True when `postmaster.pid` exists and names this data directory (its
/// second line is the data directory the postmaster was started on). A
/// missing file is "not own" too: nothing runs here.
pub fn pid_file_is_own(data_dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(data_dir.join("postmaster.pid")) else {
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

/// Lines of server log quoted in a start failure.
const LOG_LINES_IN_ERRORS: usize = 15;

/// Runs servers as processes on this machine.
#[derive(Debug, Default, Clone)]
pub struct NativeRuntime;

impl NativeRuntime {
    async fn pg_ctl(&self, spec: &InstanceSpec, args: &[&str]) -> Result<std::process::Output> {
        let mut cmd = Command::new(spec.pg_bin.tool("pg_ctl"));
        cmd.args(args)
            .arg("-D")
            .arg(&spec.data_dir)
            .current_dir(spec.data_dir.parent().unwrap_or(Path::new("/")))
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        spec.user.apply(&mut cmd);
        cmd.output().await.map_err(|e| {
            Error::io(
                format!("running {}", spec.pg_bin.tool("pg_ctl").display()),
                e,
            )
        })
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
        let out = self
            .pg_ctl(spec, &["start", "-w", "-s", "-t", &timeout, "-l", &log])
            .await?;
        if !out.status.success() {
            // pg_ctl may give up while the postmaster still runs (timeout):
            // make sure nothing is left behind.
            let _ = self.stop(spec).await;
            return Err(Error::Runtime(format!(
                "{} failed to start: {}\n--- last lines of {} ---\n{}",
                spec.name,
                String::from_utf8_lossy(&out.stderr).trim(),
                spec.log_file.display(),
                Self::log_tail(spec)
            )));
        }
        if let Err(e) = spec.conn.wait_ready(spec.start_timeout).await {
            let _ = self.stop(spec).await;
            let text = format!(
                "{} started but did not answer a query: {e}\n--- last lines of {} ---\n{}",
                spec.name,
                spec.log_file.display(),
                Self::log_tail(spec)
            );
            // Keep the kind: a timeout stays a timeout (callers may retry
            // with a longer start_timeout_secs), a refusal stays a refusal.
            return Err(match e {
                Error::Timeout(_) => Error::Timeout(text),
                Error::Postgres(_) => Error::Postgres(text),
                _ => Error::Runtime(text),
            });
        }
        Ok(())
    }

    async fn stop(&self, spec: &InstanceSpec) -> Result<()> {
        if self.status(spec).await? == RunStatus::Stopped {
            return Ok(());
        }
        let out = self
            .pg_ctl(spec, &["stop", "-w", "-s", "-m", "fast", "-t", "120"])
            .await?;
        if out.status.success() || self.status(spec).await? == RunStatus::Stopped {
            return Ok(());
        }
        Err(Error::Runtime(format!(
            "stopping {} failed: {}",
            spec.name,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }

    async fn status(&self, spec: &InstanceSpec) -> Result<RunStatus> {
        if !spec.data_dir.join("PG_VERSION").exists() {
            return Ok(RunStatus::Stopped);
        }
        // A clone carries its source's postmaster.pid until betterpg removes
        // it, naming the SOURCE's live postmaster. pg_ctl would report that
        // process as ours (and `pg_ctl stop` would signal it), so first make
        // sure the pid file was written for this very data directory.
        if !pid_file_is_own(&spec.data_dir) {
            return Ok(RunStatus::Stopped);
        }
        if !spec.pg_bin.tool("pg_ctl").is_file() {
            // The binaries are gone (a removed cache, an edited catalog):
            // still answer, from the pid file, so `status` lists everything
            // and `start` can say what is missing.
            return Ok(pid_file_status(&spec.data_dir));
        }
        let out = self.pg_ctl(spec, &["status"]).await?;
        // pg_ctl status: 0 running, 3 not running, 4 no data directory.
        match out.status.code() {
            Some(0) => Ok(RunStatus::Running),
            Some(3) | Some(4) => Ok(RunStatus::Stopped),
            _ => Err(Error::Runtime(format!(
                "pg_ctl status for {} failed: {}",
                spec.name,
                String::from_utf8_lossy(&out.stderr).trim()
            ))),
        }
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
/// proof).
fn pid_file_status(data_dir: &Path) -> RunStatus {
    let pid = std::fs::read_to_string(data_dir.join("postmaster.pid"))
        .ok()
        .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<u32>().ok()));
    let ours = pid.filter(|p| *p > 0).is_some_and(|p| {
        std::fs::read(format!("/proc/{p}/cmdline"))
            .map(|c| {
                let want = data_dir.as_os_str().as_encoded_bytes();
                c.split(|b| *b == 0).any(|arg| arg == want)
            })
            .unwrap_or(false)
    });
    if ours {
        RunStatus::Running
    } else {
        RunStatus::Stopped
    }
}
