//! `audit`: append what an operation did to the home's audit log, and read
//! it back (see [`crate::audit`] for the format).

use crate::audit::{self, AuditEvent};
use crate::context::Context;
use crate::error::Result;

/// Append `event` to the home's audit log. The operation it records has
/// already happened (or failed), so a log that cannot be written does not
/// turn it into a failure: it is reported on the log output instead.
pub(crate) fn record(ctx: &Context, event: AuditEvent) {
    let path = ctx.home.root().join(audit::AUDIT_FILE);
    if let Err(e) = audit::append(&path, &event) {
        tracing::error!(
            "could not write the audit line of {} {}: {e}",
            event.operation,
            event.branch.as_deref().unwrap_or("")
        );
    }
}

/// The events of the home's audit log since `since` (a duration back from
/// now, a time, a date or Unix seconds: [`audit::parse_since`]; `None`:
/// all), oldest first.
pub(crate) fn audit(ctx: &Context, since: Option<&str>) -> Result<Vec<AuditEvent>> {
    let since = since
        .map(|s| audit::parse_since(s, crate::util::now_unix()))
        .transpose()?;
    audit::read(&ctx.home.root().join(audit::AUDIT_FILE), since)
}
