//! `start`: start a stopped database or branch; and the first start of a
//! new one, which moves to another port when its own was taken meanwhile.

use std::path::Path;

use super::status::{self, Info};
use crate::catalog::{Entry, Kind};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::pg::cluster;
use crate::pg::datadir::DataDir;
use crate::pg::isolate::{enforce_owned_settings, Target};
use crate::ports::port_is_free;
use crate::runtime::{InstanceSpec, RunStatus};
use crate::tablespace;
use crate::util::human_bytes;

/// Memory an idle branch's server takes besides its shared buffers (its
/// processes' own pages: about 10 MiB measured, see docs/benchmarks.md
/// "Many branches"), with a margin.
pub(crate) const SERVER_OVERHEAD: u64 = 32 << 20;

/// Refuse to start a branch's server with `memory` when the machine has
/// less memory available than it needs (its shared buffers and
/// [`SERVER_OVERHEAD`]): a clear error before anything is made, instead of
/// a server the kernel's out-of-memory killer takes down later (with
/// another one).
pub(crate) fn check_memory(name: &str, memory: &cluster::BranchMemory) -> Result<()> {
    match crate::util::mem_available() {
        Some(avail) => memory_check(name, avail, memory),
        None => Ok(()),
    }
}

/// [`check_memory`] with the available bytes given (pure).
fn memory_check(name: &str, avail: u64, memory: &cluster::BranchMemory) -> Result<()> {
    let need = memory.shared_buffers.saturating_add(SERVER_OVERHEAD);
    if avail >= need {
        return Ok(());
    }
    Err(Error::Runtime {
        kind: crate::error::RuntimeErrorKind::Resources,
        message: format!(
            "not enough memory to start {name:?}: {} available, its server needs about {} ({} of shared buffers and {} of processes): stop or destroy idle branches (`bpg stop NAME`), or lower branch_shared_buffers (`bpg config SOURCE --branch-shared-buffers`); nothing was started",
            human_bytes(avail),
            human_bytes(need),
            human_bytes(memory.shared_buffers),
            human_bytes(SERVER_OVERHEAD),
        ),
    })
}

/// Start the new server. The port was free when it was reserved, but
/// another program may bind it before the server does (on Linux any
/// outgoing connection can take a port of the ephemeral range as its
/// local port): then move to another free port and try again, instead
/// of failing a branch over a race nobody can prevent.
pub(crate) async fn start_on_free_port(
    ctx: &Context,
    entry: &Entry,
    data_dir: &Path,
    adjust: impl Fn(&mut InstanceSpec),
    started: &mut Option<InstanceSpec>,
) -> Result<()> {
    const ATTEMPTS: usize = 3;
    let mut entry = entry.clone();
    let listen = ctx.config.listen_address.clone();
    for attempt in 1..=ATTEMPTS {
        let mut spec = ctx.spec_for(&entry, data_dir.to_path_buf())?;
        adjust(&mut spec);
        *started = Some(spec.clone());
        let rt = ctx.runtime(&entry.runtime)?;
        match rt.start(&spec).await {
            Ok(()) => return Ok(()),
            // The holder may be gone again by now (another home's
            // short-lived server): the server's own words count too.
            Err(e)
                if attempt < ATTEMPTS
                    && (e.is_port_taken() || !port_is_free(&listen, entry.port)) =>
            {
                let old = entry.port;
                entry.port = ctx.move_port(&entry.name)?;
                tracing::warn!(
                    "port {old} of {} was taken by another program before the server could bind it ({e}); trying port {}",
                    entry.name,
                    entry.port
                );
                ctx.storage
                    .set_props(&entry.dataset, &[("port", &entry.port.to_string())])
                    .await?;
                let profile = ctx.profile_for(&entry);
                cluster::write_settings(
                    &DataDir::open(data_dir)?,
                    &ctx.user_of(&entry),
                    entry.port,
                    &listen,
                    &profile,
                )?;
            }
            Err(e) => return Err(e),
        }
    }
    unreachable!("the last attempt returns")
}

/// Start a stopped database or branch.
pub(crate) async fn start(ctx: &Context, name: &str) -> Result<Info> {
    let e = ctx.ready_entry(name)?;
    e.refuse_if_attached("start")?;
    let mp = ctx.mountpoint(&e.dataset).await?;
    start_entry(ctx, &e, &mp, None).await?;
    status::info(ctx, name).await
}

/// Start `e`, whose dataset is mounted at `mp`, unless it runs (`known`:
/// its status when the caller knows it, else it is asked). Every check
/// and betterpg's settings, as `bpg start`; no report.
pub(crate) async fn start_entry(
    ctx: &Context,
    e: &Entry,
    mp: &Path,
    known: Option<RunStatus>,
) -> Result<()> {
    let name = e.name.as_str();
    // Strict: waiting for the server to be ready logs in, so a missing
    // password file is reported before anything is started.
    let spec = ctx.spec_for(e, e.data_dir(mp))?;
    let rt = ctx.runtime(&e.runtime)?;
    let status = match known {
        Some(s) => s,
        None => rt.status(&spec).await?,
    };
    if status == RunStatus::Stopped {
        if e.kind == Kind::Branch {
            check_memory(name, &crate::context::branch_memory(&e.settings))?;
            tablespace::check_links(name, &spec.data_dir, mp)?;
        }
        // betterpg's settings win over `ALTER SYSTEM` (port, addresses;
        // for a branch also archiving, upstream, TLS): strip them from
        // postgresql.auto.conf before every start.
        // A replica's upstream is betterpg's too (in betterpg.conf).
        let target = match e.kind {
            Kind::Branch | Kind::Replica => Target::Branch,
            Kind::Database if super::retain::retain_secs(e).is_some() => Target::ArchivingDatabase,
            Kind::Database | Kind::Attached => Target::Database,
        };
        let dd = DataDir::open(&spec.data_dir)?;
        let removed = enforce_owned_settings(&dd, &spec.user, target)?;
        // betterpg.conf itself is the server user's file (and so its
        // superuser's): written anew, never trusted, at every start.
        let profile = ctx.profile_for(e);
        // A database that keeps WAL archives into betterpg's dataset
        // (archive_mode is read at start: this is where it takes effect).
        // So does a replica (archive_mode = always; its ALTER SYSTEM
        // archive settings are stripped like a branch's).
        let archive = match e.kind {
            Kind::Database | Kind::Replica => super::retain::archive_settings(ctx, e).await?,
            Kind::Branch | Kind::Attached => String::new(),
        };
        cluster::write_settings_with(
            &dd,
            &spec.user,
            e.port,
            &ctx.config.listen_address,
            &profile,
            &archive,
        )?;
        for r in removed {
            tracing::warn!(
                "{name}: removed {} = {} from postgresql.auto.conf (betterpg's settings win)",
                r.name,
                r.value
            );
        }
        // Another program on our port would make the server fail with
        // a page of log: say what is wrong instead.
        if !port_is_free(&ctx.config.listen_address, e.port) {
            return Err(Error::port_taken(
                Some(e.port),
                format!(
                    "port {port} of {name:?} is in use by another program: stop it (`ss -ltnp 'sport = :{port}'` shows which) and run `bpg start {name}` again",
                    port = e.port
                ),
            ));
        }
        rt.start(&spec).await?;
    }
    if matches!(e.kind, Kind::Database | Kind::Replica) {
        // Prune the retained WAL and take a base when one is due (or
        // remove what retention kept, once it is turned off).
        if let Err(err) = super::retain::maintain(ctx, e).await {
            tracing::warn!("{name}: WAL retention: {err}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_machine_without_the_memory_of_a_branch_refuses_clearly() {
        let m = cluster::BranchMemory::default();
        assert!(memory_check("dev", 8 << 30, &m).is_ok());
        let e = memory_check("dev", 40 << 20, &m).unwrap_err();
        assert_eq!(e.reason(), Some("resources"), "{e}");
        let text = e.to_string();
        assert!(
            text.contains("not enough memory")
                && text.contains("\"dev\"")
                && text.contains("40.0 MiB"),
            "{text}"
        );
        let big = cluster::BranchMemory {
            shared_buffers: 1 << 30,
            ..m
        };
        assert!(
            memory_check("dev", 1 << 30, &big).is_err(),
            "buffers and processes"
        );
    }
}
