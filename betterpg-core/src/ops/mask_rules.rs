//! Masking rules (`--mask-rules FILE.toml`, [`crate::pg::mask_rules`]):
//! the source's masking key, and `mask-sql`, which shows the SQL a rules
//! file compiles to.
//!
//! The keyed strategies (hash, email, name, phone) use a key that is a
//! secret of the ROOT source (the database, replica or attached cluster a
//! chain of branches starts from): made on first need, stored 0600 as
//! `HOME/secrets/ROOT.mask-key`, removed with the root. Every branch of
//! the same root, at any depth, hashes a value the same way, so joins
//! across them hold; another source hashes it differently.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::pg::mask_rules;

/// Suffix of a source's masking key file in `HOME/secrets`.
pub const KEY_SUFFIX: &str = ".mask-key";

/// The root of `name`: the entry its chain of parents starts from.
pub(crate) fn root_source(ctx: &Context, name: &str) -> Result<String> {
    let mut at = ctx.entry(name)?;
    for _ in 0..10_000 {
        match at.parent.clone() {
            Some(p) => at = ctx.entry(&p)?,
            None => return Ok(at.name),
        }
    }
    Err(Error::Internal(format!(
        "the parents of {name:?} form a loop in the catalog"
    )))
}

/// The masking key file of the root source `root`.
pub(crate) fn key_path(ctx: &Context, root: &str) -> PathBuf {
    ctx.home.secrets_dir().join(format!("{root}{KEY_SUFFIX}"))
}

/// The masking key of the root source `root` (hex), made on first need:
/// 32 random bytes written 0600 to a temporary file and linked into
/// place, so that two processes making it at once agree on one key.
pub(crate) fn source_key(ctx: &Context, root: &str) -> Result<String> {
    let path = key_path(ctx, root);
    match read_key(&path) {
        Ok(k) => return Ok(k),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    }
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let dir = ctx.home.secrets_dir();
    let tmp = dir.join(format!(".{root}{KEY_SUFFIX}.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
    let written = f
        .write_all(format!("{hex}\n").as_bytes())
        .and_then(|()| f.sync_all());
    drop(f);
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, &path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(hex),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            read_key(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))
        }
        Err(e) => Err(Error::io(format!("writing {}", path.display()), e)),
    }
}

fn read_key(path: &Path) -> std::io::Result<String> {
    // The secrets directory is root's (0700): no link to follow there.
    let s = std::fs::read_to_string(path)?;
    Ok(s.trim().to_string())
}

/// What [`crate::BranchManager::mask_sql`] returns: the SQL a rules file
/// compiles to, with the key shown as a placeholder.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MaskSql {
    /// The rules file (absolute).
    pub file: PathBuf,
    /// The source whose key the placeholder stands for (the root of the
    /// `source` asked about), or `null` when none was given.
    pub key_source: Option<String>,
    /// Whether the SQL uses the key (hash, email, name or phone rules).
    pub needs_key: bool,
    /// Number of rules.
    pub rules: usize,
    /// The SQL, run after the masking SQL files in the same transaction.
    pub sql: String,
}

/// Compile the rules file at `path` to SQL for display. `source`: the
/// database or branch whose key it would use (its root's key); checked to
/// exist. Nothing is read from a server and no key is made or read.
pub(crate) fn mask_sql(ctx: &Context, path: &Path, source: Option<&str>) -> Result<MaskSql> {
    let rules = mask_rules::load(path)?;
    let key_source = source.map(|s| root_source(ctx, s)).transpose()?;
    let label = match &key_source {
        Some(r) => format!("the source \"{r}\""),
        None => "the branch's root source".to_string(),
    };
    let c = mask_rules::compile(&rules, &label);
    Ok(MaskSql {
        file: rules.path.clone(),
        key_source,
        needs_key: c.needs_key,
        rules: rules.rules.len(),
        sql: c.sql,
    })
}
