//! `bpg logs`: the server log, its last lines, or its new lines as written.

use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Duration;

use betterpg_core::runtime::DockerRuntime;
use betterpg_core::Error;

use super::Global;
use crate::args::LogsArgs;

pub async fn run(g: &Global, a: LogsArgs) -> Result<(), Error> {
    let mgr = g.open().await?;
    let name = &a.name;
    let entry = mgr.entry(name)?;
    if a.follow && entry.runtime == "docker" {
        // The container's own log stream, until it stops.
        return DockerRuntime::new()
            .follow_logs(
                mgr.home(),
                name,
                &mgr.log_path(name)?,
                a.tail,
                &mut std::io::stdout(),
            )
            .await;
    }
    let text = mgr.logs(name, a.tail).await?;
    print!("{text}");
    if !text.is_empty() && !text.ends_with('\n') {
        println!();
    }
    if a.follow {
        follow_file(&mgr.log_path(name)?).await?;
    }
    Ok(())
}

/// Print what is appended to `path` until interrupted.
async fn follow_file(path: &std::path::Path) -> Result<(), Error> {
    let mut pos = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Ok(mut f) = std::fs::File::open(path) else {
            continue;
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len < pos {
            pos = 0; // truncated or replaced
        }
        if len > pos {
            let mut buf = Vec::new();
            f.seek(SeekFrom::Start(pos))
                .and_then(|_| f.read_to_end(&mut buf))
                .map_err(|e| Error::Runtime(format!("reading {}: {e}", path.display())))?;
            pos += buf.len() as u64;
            let mut out = std::io::stdout();
            let _ = out.write_all(&buf);
            let _ = out.flush();
        }
    }
}
