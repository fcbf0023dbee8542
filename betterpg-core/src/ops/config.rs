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
    // `ttl` is a time to live FROM NOW: it sets (or, `none`, clears) the
    // entry's expiry, so it also extends a branch about to expire.
    if pairs.iter().any(|(k, _)| k.as_ref() == "ttl") && next.ttl.is_some() {
        e.refuse_if_attached("expire")?;
    }
    let attached_wal = e.kind == crate::catalog::Kind::Attached
        && e.settings.retain_wal.is_some() != next.retain_wal.is_some();
    if !attached_wal {
        if pairs.iter().any(|(k, _)| k.as_ref() == "ttl") {
            e.lifecycle.expires_at = next.ttl.map(|t| crate::util::now_unix().saturating_add(t));
        }
        e.settings = next.clone();
        cat.save()?;
        return Ok(next);
    }
    // An attached cluster's WAL is received by a process of betterpg's
    // (`pg_receivewal` on a slot): started (role and layout checked, a
    // first base taken) before the setting is recorded, or stopped (its
    // slot dropped, its archive removed) before it is cleared. Not under
    // the catalog's lock: those steps take it themselves.
    let mut changed = e.clone();
    changed.settings = next.clone();
    drop(cat);
    if next.retain_wal.is_some() {
        super::retain::start_attached(ctx, &changed).await?;
    } else {
        super::retain::stop_attached(ctx, &changed).await?;
    }
    let mut cat = ctx.lock()?;
    let e = cat.get_mut(name).ok_or_else(|| Error::not_found(name))?;
    e.settings = next.clone();
    cat.save()?;
    Ok(next)
}

/// Refuse settings an attached cluster cannot be given when it is
/// attached: `retain_wal`, which starts a WAL receiver on a slot of the
/// cluster once it is recorded (`bpg config NAME --retain-wal D`). Used by
/// `attach`'s own settings.
pub(crate) fn refuse_wal_retention_of_attached(name: &str, s: &Settings) -> Result<()> {
    if s.retain_wal.is_some() {
        return Err(Error::Unsupported(format!(
            "{name:?} would be an attached cluster: attach it first, then `bpg config {name} --retain-wal D` checks that its role can stream and starts to keep its WAL (pg_receivewal on a slot)"
        )));
    }
    Ok(())
}
