//! A synchronous facade over [`crate::BranchManager`].
//!
//! The C and Python bindings are layered on this, so they contain no logic
//! of their own. It owns a tokio runtime and blocks on each call; do not call
//! it from inside another tokio runtime (use the async API there).

use std::path::PathBuf;

use crate::error::Result;
use crate::manager::{
    BranchManager as AsyncManager, BranchOptions, BranchReport, CreateOptions, Info, InitOptions,
    PoolUsage,
};

/// Blocking `BranchManager`.
#[derive(Debug)]
pub struct BranchManager {
    rt: tokio::runtime::Runtime,
    inner: AsyncManager,
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("betterpg")
        .build()
        .map_err(|e| crate::Error::io("starting the tokio runtime", e))
}

impl BranchManager {
    /// Open an initialised home (see [`AsyncManager::open`]).
    pub fn open(home: impl Into<PathBuf>) -> Result<Self> {
        let rt = runtime()?;
        let inner = rt.block_on(AsyncManager::open(home))?;
        Ok(BranchManager { rt, inner })
    }

    /// Initialise a home (see [`AsyncManager::init`]).
    pub fn init(home: impl Into<PathBuf>, opts: InitOptions) -> Result<Self> {
        let rt = runtime()?;
        let inner = rt.block_on(AsyncManager::init(home, opts))?;
        Ok(BranchManager { rt, inner })
    }

    /// The async manager inside.
    pub fn inner(&self) -> &AsyncManager {
        &self.inner
    }

    /// Run any async call of the inner manager to completion.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// See [`AsyncManager::create`].
    pub fn create(&self, name: &str, opts: CreateOptions) -> Result<Info> {
        self.rt.block_on(self.inner.create(name, opts))
    }
    /// See [`AsyncManager::branch`].
    pub fn branch(&self, source: &str, name: &str, opts: BranchOptions) -> Result<BranchReport> {
        self.rt.block_on(self.inner.branch(source, name, opts))
    }
    /// See [`AsyncManager::destroy`].
    pub fn destroy(&self, name: &str, force: bool) -> Result<()> {
        self.rt.block_on(self.inner.destroy(name, force))
    }
    /// See [`AsyncManager::start`].
    pub fn start(&self, name: &str) -> Result<Info> {
        self.rt.block_on(self.inner.start(name))
    }
    /// See [`AsyncManager::stop`].
    pub fn stop(&self, name: &str) -> Result<Info> {
        self.rt.block_on(self.inner.stop(name))
    }
    /// See [`AsyncManager::info`].
    pub fn info(&self, name: &str) -> Result<Info> {
        self.rt.block_on(self.inner.info(name))
    }
    /// See [`AsyncManager::status`].
    pub fn status(&self) -> Result<Vec<Info>> {
        self.rt.block_on(self.inner.status())
    }
    /// See [`AsyncManager::url`].
    pub fn url(&self, name: &str) -> Result<String> {
        self.rt.block_on(self.inner.url(name))
    }
    /// See [`AsyncManager::logs`].
    pub fn logs(&self, name: &str, tail: Option<usize>) -> Result<String> {
        self.rt.block_on(self.inner.logs(name, tail))
    }
    /// See [`AsyncManager::reset`].
    pub fn reset(&self, name: &str, opts: BranchOptions) -> Result<BranchReport> {
        self.rt.block_on(self.inner.reset(name, opts))
    }
    /// See [`AsyncManager::gc`].
    pub fn gc(&self, dry_run: bool) -> Result<crate::GcReport> {
        self.rt.block_on(self.inner.gc(dry_run))
    }
    /// See [`AsyncManager::pool_usage`].
    pub fn pool_usage(&self) -> Result<PoolUsage> {
        self.rt.block_on(self.inner.pool_usage())
    }
}
