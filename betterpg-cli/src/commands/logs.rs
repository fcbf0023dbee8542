//! `bpg logs`: the server log, its last lines, or its new lines as written.

use std::io::Write;

use betterpg_core::{Error, Result};
use futures_util::StreamExt;

use super::Global;
use crate::args::LogsArgs;

pub async fn run(g: &Global, a: LogsArgs) -> Result<()> {
    let mgr = g.open().await?;
    if !a.follow {
        let text = mgr.logs(&a.name, a.tail).await?;
        return write(betterpg_core::util::with_final_newline(text).as_bytes());
    }
    // Until interrupted (a native server's log), or until the container
    // stops (docker).
    let mut chunks = mgr.follow_logs(&a.name, a.tail).await?;
    while let Some(chunk) = chunks.next().await {
        write(&chunk?)?;
    }
    Ok(())
}

fn write(b: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(b)
        .and_then(|_| out.flush())
        .map_err(|source| Error::Io {
            context: "writing the log to stdout".into(),
            source,
        })
}
