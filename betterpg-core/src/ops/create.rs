//! `create`: a new, started, empty database cluster on its own dataset.

use std::path::PathBuf;

use super::start::start_on_free_port;
use super::status::{self, Info};
use crate::catalog::{Entry, Kind, State, PGDATA_SUBDIR};
use crate::context::Context;
use crate::error::Result;
use crate::name::validate_name;
use crate::pg::cluster::{self, Profile};
use crate::pg::datadir::DataDir;
use crate::pg::PgBin;
use crate::storage::destroy_with_retry;
use crate::util::{now_unix, random_token};
/// Options of [`crate::BranchManager::create`].
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// PostgreSQL bin directory for this database (else the configured one).
    pub pg_bin: Option<PathBuf>,
    /// Required PostgreSQL major version.
    pub pg_version: Option<u32>,
    /// Runtime to run it with ("native" when `None`).
    pub runtime: Option<String>,
    /// Container image, for container runtimes.
    pub image: Option<String>,
}

/// Create a new, started, empty database cluster.
async fn create_unaudited(ctx: &Context, name: &str, opts: CreateOptions) -> Result<Info> {
    validate_name(name)?;
    let bin = PgBin::choose(
        opts.pg_bin.as_deref(),
        ctx.config.pg_bin.as_deref(),
        opts.pg_version,
    )?;
    // The home's defaults (bpg init --runtime/--image) apply when the
    // call names no runtime.
    let (runtime, image) = match &opts.runtime {
        Some(r) => (r.clone(), opts.image.clone()),
        None => (
            ctx.config
                .default_runtime
                .clone()
                .unwrap_or_else(|| "native".into()),
            opts.image
                .clone()
                .or_else(|| ctx.config.default_image.clone()),
        ),
    };
    let (rt, image) = ctx.runtime_and_image(&runtime, image)?;
    let entry = ctx.reserve(Entry {
        name: name.to_string(),
        kind: Kind::Database,
        parent: None,
        dataset: ctx.dataset_for(name),
        snapshot: None,
        port: 0,
        runtime: rt.name().to_string(),
        image,
        mode: None,
        pg_bin: bin.dir.clone(),
        pg_major: bin.major,
        created_at: now_unix(),
        upstream: None,
        state: State::Ready,
        settings: Default::default(),
        data_subdir: None,
        attached: None,
        lifecycle: Default::default(),
        os_uid: None,
        rewindable: false,
    })?;
    let mut made_dataset = false;
    let result = create_inner(ctx, &entry, &bin, &mut made_dataset).await;
    if let Err(e) = result {
        if made_dataset {
            if let Ok(spec) = ctx.spec(&entry).await {
                if let Ok(rt) = ctx.runtime(&entry.runtime) {
                    let _ = rt.stop(&spec).await;
                    let _ = rt.remove(&spec).await;
                }
            }
            let _ = destroy_with_retry(&*ctx.storage, &entry.dataset, true).await;
        }
        ctx.home.remove_secret(name);
        let _ = std::fs::remove_file(ctx.home.log_path(name));
        ctx.unreserve(name)?;
        return Err(e);
    }
    ctx.mark_ready(name)?;
    status::info(ctx, name).await
}

/// The file system of the new top-level `entry` (a database or a
/// replica: `kind`), with betterpg's properties.
pub(crate) async fn create_dataset(ctx: &Context, entry: &Entry, kind: &str) -> Result<()> {
    let port = entry.port.to_string();
    let created = entry.created_at.to_string();
    let home = ctx.home.root().to_string_lossy().into_owned();
    ctx.storage
        .create(
            &entry.dataset,
            None,
            &[
                ("managed", "yes"),
                ("name", &entry.name),
                // Its own full name: a dataset made under it inherits
                // this, and then it does not match (see gc).
                ("dataset", &entry.dataset),
                ("kind", kind),
                ("port", &port),
                ("runtime", &entry.runtime),
                ("home", &home),
                ("created", &created),
            ],
        )
        .await
}

async fn create_inner(ctx: &Context, entry: &Entry, bin: &PgBin, made: &mut bool) -> Result<()> {
    create_dataset(ctx, entry, "database").await?;
    *made = true;
    let mp = ctx.mountpoint(&entry.dataset).await?;
    let data_dir = mp.join(PGDATA_SUBDIR);
    let password = random_token(32);
    // The secret first: the spec carries the connection with it (and a
    // failed create removes it).
    ctx.home.write_secret(&entry.name, &password)?;
    let mut spec = ctx.spec_for(entry, data_dir.clone())?;
    spec.pg_bin = bin.clone();
    let rt = ctx.runtime(&entry.runtime)?;
    rt.init_cluster(&spec, &password).await?;
    cluster::write_settings(
        &DataDir::open(&data_dir)?,
        &ctx.user,
        entry.port,
        &ctx.config.listen_address,
        &Profile::Database,
    )?;
    start_on_free_port(ctx, entry, &data_dir, |s| s.pg_bin = bin.clone(), &mut None).await
}

/// [`create_unaudited`], recorded in the audit log.
pub(crate) async fn create(ctx: &Context, name: &str, opts: CreateOptions) -> Result<Info> {
    let r = create_unaudited(ctx, name, opts).await;
    let mut ev = crate::audit::AuditEvent::now("create");
    ev.branch = Some(name.to_string());
    super::audit::record(ctx, ev.outcome(&r));
    r
}
