//! `bpg mask-sql`: the SQL a masking rules file compiles to.

use betterpg_core::Error;

use super::Global;
use crate::args::MaskSqlArgs;
use crate::output;

pub async fn run(g: &Global, a: MaskSqlArgs) -> Result<(), Error> {
    let mgr = g.open().await?;
    let r = mgr.mask_sql(&a.file, a.source.as_deref())?;
    if g.json {
        output::json(&r)?;
    } else {
        print!("{}", r.sql);
    }
    Ok(())
}
