//! One module per command: each turns its arguments into calls of
//! `betterpg-core` and prints the result (text, or JSON through
//! [`crate::wire`]).

use std::path::PathBuf;

use betterpg_core::Error;

use crate::args::{Cli, Cmd};

mod attach;
mod audit;
mod branch;
mod config;
mod create;
mod daemon;
mod destroy;
pub(crate) mod doctor;
mod follow;
mod gc;
mod init;
mod logs;
mod mask_check;
mod mask_sql;
mod protect;
mod reset;
mod rewind;
mod snapshot;
mod start;
mod status;
mod stop;
mod url;

/// What every command gets besides its own arguments.
pub struct Global {
    /// `--home`.
    pub home: PathBuf,
    /// `--json`.
    pub json: bool,
}

impl Global {
    /// Open the home's manager.
    pub async fn open(&self) -> Result<betterpg_core::BranchManager, Error> {
        betterpg_core::BranchManager::open(&self.home).await
    }
}

/// Run the command `cli` names.
pub async fn run(cli: Cli) -> Result<(), Error> {
    let g = Global {
        home: cli.home,
        json: cli.json,
    };
    match cli.cmd {
        Cmd::Init(a) => init::run(&g, a).await,
        Cmd::Doctor => doctor::run(&g).await,
        Cmd::Create(a) => create::run(&g, a).await,
        Cmd::Branch(a) => branch::run(&g, a).await,
        Cmd::Follow(a) => follow::run(&g, a).await,
        Cmd::Reset(a) => reset::run(&g, a).await,
        Cmd::Rewind(a) => rewind::run(&g, a).await,
        Cmd::Snapshot(a) => snapshot::run(&g, a).await,
        Cmd::Snapshots(a) => snapshot::list(&g, a).await,
        Cmd::Status(a) => status::run(&g, a).await,
        Cmd::Url(a) => url::run(&g, a).await,
        Cmd::Start(a) => start::run(&g, a).await,
        Cmd::Stop(a) => stop::run(&g, a).await,
        Cmd::Destroy(a) => destroy::run(&g, a).await,
        Cmd::Attach(a) => attach::run(&g, a).await,
        Cmd::Detach(a) => attach::detach(&g, a).await,
        Cmd::Gc(a) => gc::run(&g, a).await,
        Cmd::Logs(a) => logs::run(&g, a).await,
        Cmd::Config(a) => config::run(&g, a).await,
        Cmd::Protect(a) => protect::run(&g, a, true).await,
        Cmd::Unprotect(a) => protect::run(&g, a, false).await,
        Cmd::Audit(a) => audit::run(&g, a).await,
        Cmd::MaskCheck(a) => mask_check::run(&g, a).await,
        Cmd::MaskSql(a) => mask_sql::run(&g, a).await,
        Cmd::Daemon(a) => daemon::run(&g, a).await,
    }
}

/// `--mode` (or `--fast`) and `--quota` of `branch` and `reset`.
fn branch_options(s: &crate::args::SnapshotArgs) -> Result<betterpg_core::BranchOptions, Error> {
    Ok(betterpg_core::BranchOptions {
        mode: s.mode(),
        quota: s
            .quota
            .as_deref()
            .map(betterpg_core::util::parse_size)
            .transpose()?,
        rewindable: s.rewindable,
        ..Default::default()
    })
}
