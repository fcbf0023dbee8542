//! The unprivileged OS user PostgreSQL runs as.
//!
//! PostgreSQL refuses to run as root, and a branch server should not be able
//! to touch betterpg's own files, so servers run as a separate user: the one
//! in the config, else `postgres` when betterpg runs as root, else the
//! current user.
//!
//! A branch's server runs as a user of its own: a uid (and gid) drawn at
//! random from [`BRANCH_UIDS`], recorded in its catalog entry, with no
//! passwd entry (PostgreSQL's server and `pg_ctl` need none; `initdb`,
//! which does, runs only for databases). Its clone is handed to that uid
//! before anything runs on it. Whoever holds a branch's URL is a superuser
//! there and can act as its server's OS user (`COPY ... TO PROGRAM`); with
//! one user for every server they could write the source's data directory,
//! another branch's, or a replica's password file. With a uid per branch the
//! data directories (0700) of everything else are closed to them.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

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

    /// Configure a command to run as this user, holding none of bpg's
    /// caller's open files (see [`close_inherited_fds`]).
    pub fn apply(&self, cmd: &mut tokio::process::Command) {
        if self.needs_switch() {
            cmd.uid(self.uid).gid(self.gid);
        }
        // SAFETY: the closure runs in the forked child before exec and
        // only makes system calls (close_range, fcntl).
        unsafe {
            cmd.pre_exec(close_inherited_fds);
        }
        cmd.env("HOME", &self.home)
            .env("USER", &self.name)
            .env("LOGNAME", &self.name);
    }
}

/// The uids (each also the gid) drawn for branches' servers: far above
/// the ranges of login users, system users and the usual subordinate id
/// ranges of user namespaces, below 2^31 (some tools treat ids as signed).
/// One is drawn at random per branch, so that two homes on one machine
/// practically never share one (2^28 values); a uid with a passwd entry
/// or already used in this home is never drawn.
pub const BRANCH_UIDS: std::ops::Range<u32> = 0x6000_0000..0x7000_0000;

impl OsUser {
    /// The user of a branch's server: uid and gid `uid`, no passwd entry.
    pub fn branch(uid: u32) -> OsUser {
        OsUser {
            name: format!("bpg-{uid}"),
            uid,
            gid: uid,
            home: PathBuf::from("/"),
        }
    }

    /// Draw a uid of [`BRANCH_UIDS`] for a new branch: not in `used`, with
    /// no passwd entry. `None` when betterpg does not run as root (it can
    /// then start servers only as itself).
    pub fn draw_branch_uid(used: &HashSet<u32>) -> Option<u32> {
        use rand::Rng;
        if !Uid::effective().is_root() {
            return None;
        }
        let mut rng = rand::thread_rng();
        loop {
            let uid = rng.gen_range(BRANCH_UIDS);
            if !used.contains(&uid) && !matches!(User::from_uid(Uid::from_raw(uid)), Ok(Some(_))) {
                return Some(uid);
            }
        }
    }

    /// Give every file, directory and link below `root` (and `root`) to
    /// this user. Links are changed themselves, never followed, and the
    /// walk stays on `root`'s file system: a clone holds what its source's
    /// superuser could write. Run only on a clone no server runs on yet.
    /// Returns how many entries were changed.
    pub fn chown_tree(&self, root: &Path) -> Result<u64> {
        if !Uid::effective().is_root() {
            return Ok(0);
        }
        let mut n = 0;
        for item in walkdir::WalkDir::new(root)
            .follow_links(false)
            .same_file_system(true)
        {
            let item = item.map_err(|e| {
                let shown = e
                    .path()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| root.display().to_string());
                Error::io(
                    format!("walking {shown} to give it to {}", self.name),
                    e.into_io_error()
                        .unwrap_or_else(|| std::io::Error::other("file system loop")),
                )
            })?;
            std::os::unix::fs::lchown(item.path(), Some(self.uid), Some(self.gid)).map_err(
                |e| {
                    Error::io(
                        format!("chown {} to {}", item.path().display(), self.name),
                        e,
                    )
                },
            )?;
            n += 1;
        }
        Ok(n)
    }
}

/// In a forked child before exec: mark every descriptor above stderr
/// close-on-exec, so the program (a server, `pg_ctl`, `pg_receivewal`)
/// starts with stdin, stdout and stderr only. Whatever ran `bpg` may have
/// left descriptors open for it (a shell's `9>>file`, `flock`'s lock, a
/// socket): a server would keep them for its whole life, and whoever holds
/// a branch's URL can use them as its OS user (`COPY ... TO PROGRAM`),
/// whatever the file's permissions. Close-on-exec rather than close: the
/// standard library's own exec-error pipe stays usable until exec.
/// Async-signal-safe (system calls only).
pub fn close_inherited_fds() -> std::io::Result<()> {
    // SAFETY: plain system calls on descriptor numbers.
    unsafe {
        if libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        ) == 0
        {
            return Ok(());
        }
        // Kernels before 5.11: every possible descriptor, one by one.
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        let max = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur.min(1 << 20) as libc::c_int
        } else {
            1024
        };
        for fd in 3..max {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
    Ok(())
}
