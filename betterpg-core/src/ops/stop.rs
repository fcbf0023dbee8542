//! `stop`: stop a database or branch.

use super::status::{self, Info};
use crate::context::Context;
use crate::error::Result;

/// Stop a database or branch (fast shutdown).
pub(crate) async fn stop(ctx: &Context, name: &str) -> Result<Info> {
    let e = ctx.ready_entry(name)?;
    e.refuse_if_attached("stop")?;
    if e.kind == crate::catalog::Kind::Database {
        // The archive then holds everything committed until the stop.
        super::retain::before_stop(ctx, &e).await;
    }
    let spec = ctx.control_spec(&e).await?;
    ctx.runtime(&e.runtime)?.stop(&spec).await?;
    status::info(ctx, name).await
}
