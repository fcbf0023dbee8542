//! File operations inside a data directory that never follow a link.
//!
//! Whoever holds a branch's URL is a PostgreSQL superuser there and can act
//! as the server's OS user (`COPY ... TO PROGRAM`), so every name inside a
//! data directory may be a symbolic link (or a FIFO, or a directory) planted
//! to make betterpg, running as root, write, chown, read or delete something
//! outside it. [`DataDir`] holds a directory file descriptor opened with
//! `O_NOFOLLOW`, and reaches every entry relative to it with `*at` calls that
//! do not follow links either: a planted link is only ever removed or
//! refused, never followed.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::dir::Dir;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fchmod, fstat, fstatat, Mode, SFlag};
use nix::unistd::{fchown, fchownat, unlinkat, Gid, Uid, UnlinkatFlags};

use crate::error::{Error, Result};
use crate::osuser::OsUser;

/// Largest file [`DataDir::read`] reads (configuration files, labels, pid
/// files are a few KB; a huge planted file must not exhaust memory).
pub const MAX_READ: u64 = 16 << 20;

/// What a name in a directory is, without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryType {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (never followed).
    Symlink,
    /// Anything else (FIFO, socket, device).
    Other,
}

/// A directory reached without following links, and the files in it.
#[derive(Debug)]
pub struct DataDir {
    fd: OwnedFd,
    path: PathBuf,
}

fn nix_err(what: String, e: nix::Error) -> Error {
    Error::io(what, std::io::Error::from(e))
}

impl DataDir {
    /// Open `path` as a directory. Its last component must not be a link;
    /// the components above it are betterpg's own (home, mountpoints).
    pub fn open(path: &Path) -> Result<DataDir> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY,
            Mode::empty(),
        )
        .map_err(|e| link_or(e, path, "opening directory"))?;
        // SAFETY: `open` returned a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(DataDir {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The path this was opened at (for messages only: never reopened).
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn shown(&self, name: &str) -> String {
        self.path.join(name).display().to_string()
    }

    /// What `name` is, without following it; `None` when absent.
    pub fn entry_type(&self, name: &str) -> Result<Option<EntryType>> {
        check_name(name)?;
        match fstatat(
            Some(self.fd.as_raw_fd()),
            name,
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => Ok(Some(type_of(st.st_mode))),
            Err(nix::Error::ENOENT) => Ok(None),
            Err(e) => Err(nix_err(format!("inspecting {}", self.shown(name)), e)),
        }
    }

    /// Open the subdirectory `name`; a link there is refused.
    pub fn subdir(&self, name: &str) -> Result<DataDir> {
        check_name(name)?;
        let fd = openat(
            Some(self.fd.as_raw_fd()),
            name,
            OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY,
            Mode::empty(),
        )
        .map_err(|e| link_or(e, &self.path.join(name), "opening directory"))?;
        // SAFETY: `openat` returned a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(DataDir {
            fd,
            path: self.path.join(name),
        })
    }

    /// The subdirectory `name` if it exists (and is a real directory).
    pub fn subdir_if_exists(&self, name: &str) -> Result<Option<DataDir>> {
        match self.entry_type(name)? {
            None => Ok(None),
            Some(_) => self.subdir(name).map(Some),
        }
    }

    /// Names in this directory (not `.`/`..`), sorted.
    pub fn list(&self) -> Result<Vec<(String, EntryType)>> {
        let dup = nix::unistd::dup(self.fd.as_raw_fd())
            .map_err(|e| nix_err(format!("reading {}", self.path.display()), e))?;
        let mut dir = Dir::from_fd(dup)
            .map_err(|e| nix_err(format!("reading {}", self.path.display()), e))?;
        let mut out = Vec::new();
        for ent in dir.iter() {
            let ent = ent.map_err(|e| nix_err(format!("reading {}", self.path.display()), e))?;
            let name = ent.file_name().to_string_lossy().into_owned();
            if name == "." || name == ".." {
                continue;
            }
            let t = match self.entry_type(&name)? {
                Some(t) => t,
                None => continue,
            };
            out.push((name, t));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Open `name` as a regular file without following a link (opened
    /// non-blocking, so a FIFO cannot hang us); `None` when absent. A link,
    /// FIFO or directory there is an error.
    fn open_regular(&self, name: &str, write: bool) -> Result<Option<std::fs::File>> {
        check_name(name)?;
        let (access, what) = if write {
            (OFlag::O_RDWR, "write")
        } else {
            (OFlag::O_RDONLY, "read")
        };
        let fd = match openat(
            Some(self.fd.as_raw_fd()),
            name,
            access | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(nix::Error::ENOENT) => return Ok(None),
            Err(e) => return Err(link_or(e, &self.path.join(name), "opening")),
        };
        // SAFETY: `openat` returned a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let st = fstat(fd.as_raw_fd())
            .map_err(|e| nix_err(format!("inspecting {}", self.shown(name)), e))?;
        if type_of(st.st_mode) != EntryType::File {
            return Err(Error::InvalidState(format!(
                "{} is not a regular file: betterpg does not {what} it",
                self.shown(name)
            )));
        }
        Ok(Some(std::fs::File::from(fd)))
    }

    /// Read a regular file of at most [`MAX_READ`] bytes; `None` when
    /// absent. A link, FIFO or directory there is an error.
    pub fn read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let Some(mut f) = self.open_regular(name, false)? else {
            return Ok(None);
        };
        let size = f
            .metadata()
            .map_err(|e| Error::io(format!("inspecting {}", self.shown(name)), e))?
            .len();
        if size > MAX_READ {
            return Err(Error::InvalidState(format!(
                "{} is larger than {} bytes: betterpg does not read it",
                self.shown(name),
                MAX_READ
            )));
        }
        let mut buf = Vec::with_capacity(size as usize);
        Read::by_ref(&mut f)
            .take(MAX_READ)
            .read_to_end(&mut buf)
            .map_err(|e| Error::io(format!("reading {}", self.shown(name)), e))?;
        Ok(Some(buf))
    }

    /// Read a text file (lossy UTF-8); `None` when absent.
    pub fn read_text(&self, name: &str) -> Result<Option<String>> {
        Ok(self
            .read(name)?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// Open `name` as a regular file for reading and writing without
    /// following a link (for files betterpg updates in place, e.g. WAL
    /// segments); `None` when absent.
    pub fn open_rw(&self, name: &str) -> Result<Option<std::fs::File>> {
        self.open_regular(name, true)
    }

    /// Open a regular file for reading without following a link; `None`
    /// when absent.
    pub fn open_read(&self, name: &str) -> Result<Option<std::fs::File>> {
        self.open_regular(name, false)
    }

    /// Create `name`, which must not exist (`O_CREAT|O_EXCL` never follows
    /// a link), give it to `owner` (when running as root) with `mode`, and
    /// return it open for writing; `None` if something is already there.
    pub fn create_new(
        &self,
        name: &str,
        owner: Option<&OsUser>,
        mode: u32,
    ) -> Result<Option<std::fs::File>> {
        check_name(name)?;
        let fd = match openat(
            Some(self.fd.as_raw_fd()),
            name,
            OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        ) {
            Ok(fd) => fd,
            Err(nix::Error::EEXIST) => return Ok(None),
            Err(e) => return Err(nix_err(format!("creating {}", self.shown(name)), e)),
        };
        // SAFETY: `openat` returned a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        if let Some(u) = owner {
            give_fd(&fd, u, &self.shown(name))?;
        }
        fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(mode))
            .map_err(|e| nix_err(format!("chmod {}", self.shown(name)), e))?;
        Ok(Some(std::fs::File::from(fd)))
    }

    /// Create `name` anew (whatever was there, link or file, is removed
    /// first, never followed), write `content`, sync, and give it to
    /// `owner` (when running as root) with `mode`.
    pub fn write(
        &self,
        name: &str,
        content: &[u8],
        owner: Option<&OsUser>,
        mode: u32,
    ) -> Result<()> {
        // If a link reappears between the unlink and the exclusive create,
        // the create fails rather than writing through it.
        for _ in 0..3 {
            self.remove(name)?;
            let Some(mut f) = self.create_new(name, owner, mode)? else {
                continue;
            };
            return f
                .write_all(content)
                .and_then(|_| f.sync_all())
                .map_err(|e| Error::io(format!("writing {}", self.shown(name)), e));
        }
        Err(Error::InvalidState(format!(
            "{} keeps being recreated while betterpg writes it: is someone changing the data directory?",
            self.shown(name)
        )))
    }

    /// Remove `name` if present: a file or link is unlinked (a link's target
    /// is untouched), a directory is removed with everything in it, each
    /// level reached without following links.
    pub fn remove(&self, name: &str) -> Result<bool> {
        match self.entry_type(name)? {
            None => Ok(false),
            Some(EntryType::Dir) => {
                self.subdir(name)?.clear()?;
                unlinkat(Some(self.fd.as_raw_fd()), name, UnlinkatFlags::RemoveDir)
                    .map_err(|e| nix_err(format!("removing {}", self.shown(name)), e))?;
                Ok(true)
            }
            Some(_) => {
                match unlinkat(Some(self.fd.as_raw_fd()), name, UnlinkatFlags::NoRemoveDir) {
                    Ok(()) | Err(nix::Error::ENOENT) => Ok(true),
                    Err(e) => Err(nix_err(format!("removing {}", self.shown(name)), e)),
                }
            }
        }
    }

    /// Remove everything inside this directory (it stays).
    pub fn clear(&self) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for (name, _) in self.list()? {
            self.remove(&name)?;
            removed.push(name);
        }
        Ok(removed)
    }

    /// Give `name` (not a link's target) to `user`, when running as root.
    pub fn chown(&self, name: &str, user: &OsUser) -> Result<()> {
        check_name(name)?;
        if !Uid::effective().is_root() {
            return Ok(());
        }
        fchownat(
            Some(self.fd.as_raw_fd()),
            name,
            Some(Uid::from_raw(user.uid)),
            Some(Gid::from_raw(user.gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| nix_err(format!("chown {} to {}", self.shown(name), user.name), e))
    }

    /// Create the subdirectory `name` (mode 0700, given to `owner`) unless
    /// it exists as a real directory; a link or file there is an error.
    pub fn ensure_subdir(&self, name: &str, owner: Option<&OsUser>) -> Result<DataDir> {
        check_name(name)?;
        match self.entry_type(name)? {
            Some(EntryType::Dir) => {}
            None => {
                nix::sys::stat::mkdirat(
                    Some(self.fd.as_raw_fd()),
                    name,
                    Mode::from_bits_truncate(0o700),
                )
                .map_err(|e| nix_err(format!("creating {}", self.shown(name)), e))?;
                if let Some(u) = owner {
                    self.chown(name, u)?;
                }
            }
            Some(t) => {
                return Err(Error::InvalidState(format!(
                    "{} is a {t:?}, not a directory: betterpg does not use it",
                    self.shown(name)
                )))
            }
        }
        self.subdir(name)
    }
}

/// A name directly inside the directory: no separators, no `..`.
fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(Error::Internal(format!(
            "{name:?} is not a plain file name"
        )));
    }
    Ok(())
}

fn type_of(mode: nix::libc::mode_t) -> EntryType {
    let t = SFlag::from_bits_truncate(mode & SFlag::S_IFMT.bits());
    if t == SFlag::S_IFREG {
        EntryType::File
    } else if t == SFlag::S_IFDIR {
        EntryType::Dir
    } else if t == SFlag::S_IFLNK {
        EntryType::Symlink
    } else {
        EntryType::Other
    }
}

/// `ELOOP`/`ENOTDIR` from an `O_NOFOLLOW` open mean a link (or not a
/// directory) sits where betterpg expected a real file or directory.
fn link_or(e: nix::Error, path: &Path, what: &str) -> Error {
    match e {
        nix::Error::ELOOP | nix::Error::ENOTDIR => Error::InvalidState(format!(
            "{} is a symbolic link or not the expected kind of file: betterpg never follows links inside a data directory; remove it (it may have been planted by a user of that server)",
            path.display()
        )),
        e => nix_err(format!("{what} {}", path.display()), e),
    }
}

/// fchown an open descriptor to `user` (root only).
pub(crate) fn give_fd(fd: &impl AsFd, user: &OsUser, shown: &str) -> Result<()> {
    if !Uid::effective().is_root() {
        return Ok(());
    }
    fchown(
        fd.as_fd().as_raw_fd(),
        Some(Uid::from_raw(user.uid)),
        Some(Gid::from_raw(user.gid)),
    )
    .map_err(|e| nix_err(format!("chown {shown} to {}", user.name), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_are_removed_or_refused_never_followed() {
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::fs::create_dir(outside.path().join("vdir")).unwrap();
        std::fs::write(outside.path().join("vdir/f"), "keep").unwrap();

        let d = tempfile::tempdir().unwrap();
        symlink(&victim, d.path().join("conf")).unwrap();
        symlink(outside.path().join("vdir"), d.path().join("slots")).unwrap();
        std::fs::create_dir(d.path().join("real")).unwrap();
        symlink(&victim, d.path().join("real/x")).unwrap();
        let dd = DataDir::open(d.path()).unwrap();

        assert_eq!(dd.entry_type("conf").unwrap(), Some(EntryType::Symlink));
        assert!(dd.read("conf").is_err());
        assert!(dd.open_rw("conf").is_err());
        assert!(dd.subdir("slots").is_err());
        dd.write("conf", b"mine", None, 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert_eq!(dd.read_text("conf").unwrap().unwrap(), "mine");
        dd.remove("slots").unwrap();
        dd.remove("real").unwrap();
        assert!(outside.path().join("vdir/f").exists());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert!(dd.read("absent").unwrap().is_none());
        assert!(DataDir::open(&d.path().join("conf")).is_err());
        assert!(dd.read("../x").is_err());
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let d = tempfile::tempdir().unwrap();
        nix::unistd::mkfifo(&d.path().join("p"), Mode::from_bits_truncate(0o600)).unwrap();
        let dd = DataDir::open(d.path()).unwrap();
        assert!(dd.read("p").is_err());
        assert_eq!(dd.entry_type("p").unwrap(), Some(EntryType::Other));
    }
}
