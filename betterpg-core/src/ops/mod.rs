//! The operations, one module per verb, each a function over the context
//! of a home (`crate::context::Context`: home, config, catalog, storage,
//! runtimes, OS user): `init`, `create`, `branch` (the recipe), `reset`,
//! `start`, `stop`, `destroy`, `gc`, `status`, `logs` (and following
//! them), `config` (an entry's settings), `attach` and `detach` (a cluster
//! betterpg did not create), `protect`, and `doctor` (which checks a home
//! that may not be initialised,
//! so it takes its path instead). New verbs (snapshot, mask, follow ...)
//! go here as new modules.
//!
//! [`crate::BranchManager`] is the public face of these functions; the
//! options and reports they take and return are public types re-exported
//! at the crate root.

pub mod attach;
pub mod audit;
pub mod branch;
pub mod config;
pub mod create;
pub mod credentials;
pub mod daemon;
pub mod destroy;
pub mod doctor;
pub mod follow;
pub mod gc;
pub mod init;
pub mod logs;
pub mod mask_check;
pub mod mask_rules;
pub mod private;
pub mod protect;
pub mod rebuild;
pub mod reset;
pub mod retain;
pub mod rewind;
pub mod snapshot;
pub mod start;
pub mod status;
pub mod stop;
