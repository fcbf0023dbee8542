//! `stop`: stop a database or branch.

use super::status::{self, Info};
use crate::context::Context;
use crate::error::Result;

/// Stop a database or branch (fast shutdown).
pub(crate) async fn stop(ctx: &Context, name: &str) -> Result<Info> {
    let e = ctx.ready_entry(name)?;
    e.refuse_if_attached("stop")?;
    if matches!(
        e.kind,
        crate::catalog::Kind::Database | crate::catalog::Kind::Replica
    ) {
        // The archive then holds everything committed until the stop (a
        // replica's: its last replayed transaction is recorded).
        super::retain::before_stop(ctx, &e).await;
    }
    let spec = ctx.control_spec(&e).await?;
    ctx.runtime(&e.runtime)?.stop(&spec).await?;
    status::info(ctx, name).await
}
