//! `protect` and `unprotect`: a database or branch that destroy, reset
//! and expiry refuse, even forced, and whose resources `gc` never takes.

use super::status::{self, Info};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::name::validate_name;

/// Protect `name` (`on`) or lift its protection (`!on`). Idempotent:
/// protecting a protected entry changes nothing. Refused while another
/// process that still runs is making or destroying it.
pub(crate) async fn protect(ctx: &Context, name: &str, on: bool) -> Result<Info> {
    validate_name(name)?;
    {
        let mut cat = ctx.lock()?;
        let e = cat.get_mut(name).ok_or_else(|| Error::not_found(name))?;
        if e.state.busy_elsewhere() {
            return Err(Error::InvalidState(format!(
                "{name:?} is {} by process {}; wait for it",
                e.state.label(),
                e.state.worker().unwrap_or_default()
            )));
        }
        if e.lifecycle.protected != on {
            e.lifecycle.protected = on;
            cat.save()?;
        }
    }
    status::info(ctx, name).await
}
