//! The unprivileged OS user PostgreSQL runs as.
//!
//! PostgreSQL refuses to run as root, and a branch server should not be able
//! to touch betterpg's own files, so servers run as a separate user: the one
//! in the config, else `postgres` when betterpg runs as root, else the
//! current user.

use std::path::Path;

use nix::unistd::{chown, Gid, Uid, User};

use crate::error::{Error, Result};

/// A resolved OS user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsUser {
    /// Login name.
    pub name: String,
    /// Numeric user id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home directory (used as HOME for child processes).
    pub home: std::path::PathBuf,
}

impl OsUser {
    /// Resolve the configured user (or the default, see module docs).
    pub fn resolve(configured: Option<&str>) -> Result<OsUser> {
        let running_as_root = Uid::effective().is_root();
        let name = match configured {
            Some(n) => n.to_string(),
            None if running_as_root => "postgres".to_string(),
            None => {
                let u = User::from_uid(Uid::effective())
                    .map_err(|e| Error::Config(format!("cannot look up the current user: {e}")))?
                    .ok_or_else(|| Error::Config("the current user has no passwd entry".into()))?;
                return Ok(Self::from_user(u));
            }
        };
        let u = User::from_name(&name)
            .map_err(|e| Error::Config(format!("cannot look up OS user {name:?}: {e}")))?
            .ok_or_else(|| {
                Error::Config(format!(
                    "OS user {name:?} does not exist: create it (e.g. `useradd --system {name}`) or set another with `bpg init --os-user`"
                ))
            })?;
        if u.uid.is_root() {
            return Err(Error::Config(
                "PostgreSQL must not run as root: choose an unprivileged --os-user".into(),
            ));
        }
        if !running_as_root && u.uid != Uid::effective() {
            return Err(Error::Config(format!(
                "running as uid {} cannot start servers as {name:?}: run bpg as root or as {name:?}",
                Uid::effective()
            )));
        }
        Ok(Self::from_user(u))
    }

    fn from_user(u: User) -> OsUser {
        OsUser {
            name: u.name,
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
            home: u.dir,
        }
    }

    /// True when the child process must switch to this user.
    pub fn needs_switch(&self) -> bool {
        Uid::effective().as_raw() != self.uid
    }

    /// Make `path` owned by this user (no-op when already running as it).
    pub fn chown(&self, path: &Path) -> Result<()> {
        if !Uid::effective().is_root() {
            return Ok(());
        }
        chown(
            path,
            Some(Uid::from_raw(self.uid)),
            Some(Gid::from_raw(self.gid)),
        )
        .map_err(|e| {
            Error::io(
                format!("chown {} to {}", path.display(), self.name),
                std::io::Error::from(e),
            )
        })
    }

    /// Configure a command to run as this user.
    pub fn apply(&self, cmd: &mut tokio::process::Command) {
        if self.needs_switch() {
            cmd.uid(self.uid).gid(self.gid);
        }
        cmd.env("HOME", &self.home)
            .env("USER", &self.name)
            .env("LOGNAME", &self.name);
    }
}
