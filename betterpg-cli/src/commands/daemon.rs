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

/// A stop signal raised by the first SIGTERM or SIGINT.
fn on_signals() -> Result<StopSignal, Error> {
    let stop = StopSignal::new();
    let raised = stop.clone();
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
        raised.stop();
    });
    Ok(stop)
}

pub async fn run(g: &Global, a: DaemonArgs) -> Result<(), Error> {
    let interval = betterpg_core::parse_duration("interval", &a.interval)?;
    let mgr = g.open().await?;
    // SIGTERM or SIGINT ends a pass (--once) as it ends the loop: the
    // step under way finishes, the lock is released, exit status 0.
    let stop = on_signals()?;
    if a.once {
        let no_log = |_: &DaemonAction| {};
        let on_action: &(dyn Fn(&DaemonAction) + Send + Sync) =
            if g.json { &no_log } else { &log_line };
        let r = mgr.daemon_pass_until(a.dry_run, &stop, on_action).await?;
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
