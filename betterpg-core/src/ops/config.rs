//! `config`: read and change an entry's settings (see
//! [`crate::catalog::settings`]): the policies that later operations
//! (branch, snapshot, expiry, the daemon) read from the entry.

use crate::catalog::Settings;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::name::validate_name;

/// The settings of `name`.
pub(crate) fn settings(ctx: &Context, name: &str) -> Result<Settings> {
    Ok(ctx.entry(name)?.settings)
}

/// Change settings of `name`, all or nothing, under the catalog's lock:
/// each `(key, value)` is parsed by [`Settings::apply_all`]; an entry that
/// another process is working on is refused. Returns the new settings.
/// (Async so that a setting that must act at once, e.g. turn on WAL
/// archiving, can do so here.)
pub(crate) async fn configure<K: AsRef<str>, V: AsRef<str>>(
    ctx: &Context,
    name: &str,
    pairs: &[(K, V)],
) -> Result<Settings> {
    validate_name(name)?;
    // Parse before taking the lock: a bad value needs no catalog.
    Settings::default().apply_all(pairs)?;
    let mut cat = ctx.lock()?;
    let e = cat.get_mut(name).ok_or_else(|| Error::not_found(name))?;
    if let Some(pid) = e.state.worker() {
        return Err(Error::InvalidState(format!(
            "{name:?} is {} (process {pid}): change its settings when it is done, or \
             `bpg destroy {name}` if that process is gone",
            e.state.label()
        )));
    }
    let next = e.settings.apply_all(pairs)?;
    if e.kind == crate::catalog::Kind::Attached {
        refuse_wal_retention_of_attached(name, &next)?;
    }
    // `ttl` is a time to live FROM NOW: it sets (or, `none`, clears) the
    // entry's expiry, so it also extends a branch about to expire.
    if pairs.iter().any(|(k, _)| k.as_ref() == "ttl") {
        if next.ttl.is_some() {
            e.refuse_if_attached("expire")?;
        }
        e.lifecycle.expires_at = next.ttl.map(|t| crate::util::now_unix().saturating_add(t));
    }
    e.settings = next.clone();
    cat.save()?;
    Ok(next)
}

/// Refuse settings an attached cluster cannot have: `retain_wal`, since
/// betterpg never reconfigures it (no archive_command of its own there;
/// keeping its WAL would need pg_receivewal on a slot, which betterpg does
/// not run). Used by `configure` and by `attach`'s own settings.
pub(crate) fn refuse_wal_retention_of_attached(name: &str, s: &Settings) -> Result<()> {
    if s.retain_wal.is_some() {
        return Err(Error::Unsupported(format!(
            "{name:?} is an attached cluster: betterpg never reconfigures it, so it cannot keep its WAL (--retain-wal works for databases and replicas; branch it at a point in time with your own PITR tooling)"
        )));
    }
    Ok(())
}
