//! `bpg daemon`: the scheduler's loop (or, `--once`, one pass), logging
//! each action as a JSON line on stdout; SIGTERM or SIGINT ends it
//! cleanly (the step under way is finished, the lock released).

use std::io::Write;

use betterpg_core::{DaemonAction, DaemonOptions, Error, StopSignal};

use super::Global;
use crate::args::DaemonArgs;
use crate::{output, wire};

/// Print `a` as one JSON line (flushed at once: the log is read live).
fn log_line(a: &DaemonAction) {
    if let Ok(s) = serde_json::to_string(&wire::DaemonAction::from(a)) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{s}");
        let _ = out.flush();
    }
}

pub async fn run(g: &Global, a: DaemonArgs) -> Result<(), Error> {
    let interval = betterpg_core::parse_duration("interval", &a.interval)?;
    let mgr = g.open().await?;
    if a.once {
        let r = if g.json {
            mgr.daemon_pass(a.dry_run).await?
        } else {
            mgr.daemon_pass_with(a.dry_run, &log_line).await?
        };
        if g.json {
            output::json(&wire::PassReport::from(&r))?;
        }
        let failed: Vec<_> = r.failures().collect();
        if let Some(f) = failed.first() {
            return Err(Error::InvalidState(format!(
                "{} action(s) of the pass failed, first {} {}: {}",
                failed.len(),
                f.action,
                f.name,
                f.reason.as_deref().unwrap_or("")
            )));
        }
        return Ok(());
    }
    let stop = StopSignal::new();
    {
        let stop = stop.clone();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| Error::Internal(format!("installing the SIGTERM handler: {e}")))?;
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .map_err(|e| Error::Internal(format!("installing the SIGINT handler: {e}")))?;
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::warn!("stopping: the step under way finishes first");
            stop.stop();
        });
    }
    mgr.run_daemon(
        DaemonOptions {
            interval: std::time::Duration::from_secs(interval),
            dry_run: a.dry_run,
        },
        stop,
        &log_line,
    )
    .await
}
