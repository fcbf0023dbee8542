//! Fault injection points for the safety tests.
//!
//! Set `BETTERPG_FAULT=<step>` to make the branch operation fail with an
//! injected error when it reaches `<step>`, or `BETTERPG_FAULT=<step>:pause`
//! to make it sleep there (so a test can SIGKILL the process at that exact
//! point), or `<step>:sleep=N` to pause N seconds and go on (so a test can
//! disturb the source mid-branch). Unset in normal use; reading one environment variable per step
//! costs nothing measurable.

use crate::error::{Error, Result};

/// Environment variable naming the step to fail at.
pub const ENV: &str = "BETTERPG_FAULT";

/// Called by the recipe after each step.
pub async fn point(step: &str) -> Result<()> {
    let Ok(v) = std::env::var(ENV) else {
        return Ok(());
    };
    let (target, action) = v.split_once(':').unwrap_or((v.as_str(), "error"));
    if target != step {
        return Ok(());
    }
    match action {
        "pause" => {
            eprintln!("betterpg: fault injection: pausing at {step}");
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            Ok(())
        }
        a if a.starts_with("sleep=") => {
            let secs: u64 = a[6..].parse().unwrap_or(1);
            eprintln!("betterpg: fault injection: pausing at {step} for {secs}s");
            tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
            Ok(())
        }
        _ => Err(Error::Internal(format!("injected fault at step {step}"))),
    }
}
