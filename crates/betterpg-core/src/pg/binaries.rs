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
        Ok(PgBin {
            dir: dir.to_path_buf(),
            major,
        })
    }

    /// Find binaries: a configured directory, else the newest
    /// `/usr/lib/postgresql/*/bin`, else `pg_config --bindir`; with `major`,
    /// only that version is accepted.
    pub fn discover(configured: Option<&Path>, major: Option<u32>) -> Result<PgBin> {
        if let Some(dir) = configured {
            let b = Self::at(dir)?;
            if let Some(m) = major {
                if b.major != m {
                    return Err(Error::VersionMismatch(format!(
                        "{} holds PostgreSQL {}, not {m}",
                        dir.display(),
                        b.major
                    )));
                }
            }
            return Ok(b);
        }
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Ok(rd) = std::fs::read_dir("/usr/lib/postgresql") {
            let mut dirs: Vec<(u32, PathBuf)> = rd
                .flatten()
                .filter_map(|e| {
                    let v: u32 = e.file_name().to_str()?.parse().ok()?;
                    Some((v, e.path().join("bin")))
                })
                .collect();
            dirs.sort_by_key(|d| std::cmp::Reverse(d.0));
            candidates.extend(dirs.into_iter().map(|(_, p)| p));
        }
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
        Err(Error::Config(format!(
            "no PostgreSQL{} server binaries found (looked in {:?}): install them (e.g. `apt-get install postgresql-15`) or pass --pg-bin DIR",
            major.map(|m| format!(" {m}")).unwrap_or_default(),
            candidates
        )))
    }

    /// Path of a tool in this directory.
    pub fn tool(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
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
    let t = std::fs::read_to_string(&p)
        .map_err(|e| Error::io(format!("reading {}", p.display()), e))?;
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
}
