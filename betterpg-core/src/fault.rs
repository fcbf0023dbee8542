//! Fault injection points for the safety tests.
//!
//! Only in builds with the cargo feature `fault-injection` (the test scripts
//! enable it; what ships does not): there, `BETTERPG_FAULT=<step>` makes the
//! branch operation fail with an injected error when it reaches `<step>`,
//! `BETTERPG_FAULT=<step>:pause` makes it sleep there (so a test can SIGKILL
//! the process at that exact point), and `<step>:sleep=N` pauses N seconds
//! and goes on (so a test can disturb the source mid-branch).
//!
//! Without the feature [`point`] does nothing and the variable is never
//! read: a stray `BETTERPG_FAULT=after_backup_start:pause` in a production
//! environment must not hold the source in backup mode with a WAL-holding
//! slot for an hour.

use crate::error::Result;

/// Environment variable naming the step to fail at (read only when
/// [`ENABLED`]).
pub const ENV: &str = "BETTERPG_FAULT";

/// Whether this build has fault injection (the `fault-injection` feature);
/// `bpg doctor` reports it.
pub const ENABLED: bool = cfg!(feature = "fault-injection");

/// Called by the recipe after each step. Without the `fault-injection`
/// feature: nothing, not even an environment read.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub async fn point(_step: &str) -> Result<()> {
    Ok(())
}

/// [`point`] for the few steps in synchronous code (e.g. `catalog_locked`,
/// right after the catalog lock is taken). Without the `fault-injection`
/// feature: nothing.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn point_blocking(_step: &str) -> Result<()> {
    Ok(())
}

/// Called by the recipe after each step.
#[cfg(feature = "fault-injection")]
pub async fn point(step: &str) -> Result<()> {
    if let Some(d) = action(step)? {
        tokio::time::sleep(d).await;
    }
    Ok(())
}

/// [`point`] for the few steps in synchronous code (e.g. `catalog_locked`,
/// right after the catalog lock is taken): blocks the calling thread.
#[cfg(feature = "fault-injection")]
pub fn point_blocking(step: &str) -> Result<()> {
    if let Some(d) = action(step)? {
        std::thread::sleep(d);
    }
    Ok(())
}

/// What `BETTERPG_FAULT` asks of `step`: nothing, an error, or a pause.
#[cfg(feature = "fault-injection")]
fn action(step: &str) -> Result<Option<std::time::Duration>> {
    use crate::error::Error;
    let Ok(v) = std::env::var(ENV) else {
        return Ok(None);
    };
    let (target, action) = v.split_once(':').unwrap_or((v.as_str(), "error"));
    if target != step {
        return Ok(None);
    }
    match action {
        "pause" => {
            eprintln!("betterpg: fault injection: pausing at {step}");
            Ok(Some(std::time::Duration::from_secs(3600)))
        }
        a if a.starts_with("sleep=") => {
            let secs: u64 = a[6..].parse().unwrap_or(1);
            eprintln!("betterpg: fault injection: pausing at {step} for {secs}s");
            Ok(Some(std::time::Duration::from_secs(secs)))
        }
        _ => Err(Error::Internal(format!("injected fault at step {step}"))),
    }
}
