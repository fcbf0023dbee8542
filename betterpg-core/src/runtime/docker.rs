//! PostgreSQL in Docker containers, driven through the Engine API (bollard).
//!
//! One container per running database or branch, the way Database Lab
//! Engine runs its clones:
//!
//! - The clone's data directory (`<mountpoint>/pgdata` on its ZFS dataset) is
//!   bind-mounted as the image's `PGDATA` (read from the image, default
//!   `/var/lib/postgresql/data`): a bind mount of the mountpoint, never
//!   `--volumes-from`, so the container sees exactly the ZFS clone.
//! - The container runs as the uid:gid that owns the data directory, so the
//!   files stay the host server user's and the same cluster can also run
//!   natively.
//! - PostgreSQL listens on 5432 inside (`-c listen_addresses=* -c port=5432`,
//!   command arguments that override `betterpg.conf`, which holds the host
//!   port and address for the native runtime), published on the catalog port
//!   of the client address (127.0.0.1 by default) only, never on 0.0.0.0.
//!   The container sees its own `betterpg.conf` (`betterpg-docker.conf`
//!   beside `pgdata`, mounted read-only over it) saying the same, so a
//!   configuration reload stays quiet; the host file keeps native values.
//! - Every container is on betterpg's own bridge network [`NETWORK`]
//!   (`betterpg`, one per engine, labelled `betterpg.managed=true`, made on
//!   first use and removed by `gc` when no container uses it) made with
//!   inter-container traffic off ([`ICC_OPTION`]` = false`): no other
//!   container, on that network or any other, can open a connection to a
//!   server; only the port published on the host reaches it (issue 11 item
//!   7; docs/docker.md says why this rather than a `pg_hba.conf` address).
//! - Hardened: `no-new-privileges`, every capability dropped (the server
//!   runs as the data directory's non-root owner and needs none), and the
//!   home's memory and pids limits ([`super::ContainerLimits`]).
//! - Labels `betterpg.managed=true`, `betterpg.home`, `betterpg.name`,
//!   `betterpg.parent` find everything betterpg made; the container name
//!   `betterpg-<hash of home>-<name>` keeps two homes on one engine apart.
//! - Ready means a real query answered through the published port (as in
//!   [`ConnInfo::wait_ready`](crate::pg::ConnInfo::wait_ready)), not a
//!   health check nor a log line (the official image prints "ready to
//!   accept connections" twice on first start). The wait watches the
//!   server rather than sleeping between probes: the container's followed
//!   log wakes it, the bind-mounted `postmaster.pid` saying `ready` makes
//!   it probe at once, and the log's end says the container exited.
//!
//! **A container lives exactly as long as its server runs.** `start` creates
//! and starts a fresh container; `stop` stops it, appends its log to
//! `HOME/logs/NAME.log` and removes it. Nothing is left behind by a stop, a
//! failed start or a rolled-back branch (the branch rollback only calls
//! `stop`), the container always carries the catalog's current image, port
//! and labels, and `logs` still shows earlier runs, as for the native
//! runtime. Creating a container costs some tens of milliseconds per start.
//!
//! **How a new cluster is made** ([`Runtime::init_cluster`]): on the host,
//! with `initdb` of the host binaries, exactly as for the native runtime,
//! after checking that the image exists and runs the same PostgreSQL major
//! version (its `PG_MAJOR`, which the official images and ours set). Why not
//! let the image's entrypoint run `initdb` (`POSTGRES_PASSWORD`) and patch
//! the result? Entrypoints differ: the official one configures `trust` for
//! local connections, ours and theirs differ in what they append to
//! `pg_hba.conf`, and the first start would have to be followed by a patch
//! and a restart. Host `initdb` gives the cluster a native database gets
//! (scram-sha-256 on every line, trust nowhere, data checksums,
//! `--locale=C`, so glibc and musl images read it alike, and the
//! `include_if_exists = 'betterpg.conf'` line), one code path, and no extra
//! container start. One line is added to `pg_hba.conf`: `host all all all
//! scram-sha-256`, because published connections arrive from the bridge
//! gateway, not from 127.0.0.1 (other containers are kept out by the
//! network, not by this line). The price: the host needs binaries of the image's major
//! version (`--pg-version`/`--pg-bin`; `scripts/pg-versions.sh` fetches
//! 14-18), which `create` already requires for every runtime. The password is
//! therefore never passed to the container (`POSTGRES_PASSWORD` is only read
//! by entrypoints when `PGDATA` is empty, which it never is here), so it does
//! not appear in `docker inspect`.
//!
//! Images are never pulled: a missing image is an error that says how to
//! build (`scripts/build-image.sh`) or pull it.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, HostConfig, Mount,
    MountType, NetworkCreateRequest, PortBinding,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, KillContainerOptionsBuilder, ListContainersOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::OnceCell;

use super::{InstanceSpec, RunStatus, Runtime};
use crate::error::{Error, Result};
use crate::pg::binaries::data_dir_major;
use crate::pg::cluster::SETTINGS_FILE;
use crate::pg::datadir::DataDir;
use crate::pg::ConnInfo;
use crate::util::tail_lines;

/// Image used when a database is created with the docker runtime and no
/// image: the local image `scripts/build-image.sh` builds.
pub const DEFAULT_IMAGE: &str = "betterpg/postgres:15";

/// Label present (value `true`) on every container betterpg makes.
pub const LABEL_MANAGED: &str = "betterpg.managed";
/// Label holding the betterpg home the container belongs to.
pub const LABEL_HOME: &str = "betterpg.home";
/// Label holding the database or branch name.
pub const LABEL_NAME: &str = "betterpg.name";
/// Label holding the parent of a branch (empty for a database).
pub const LABEL_PARENT: &str = "betterpg.parent";

/// Name of betterpg's own Docker network, shared by every home on the
/// engine (one bridge per home would use up Docker's address pools, about
/// 30 networks by default; with inter-container traffic off, sharing it
/// connects nothing).
pub const NETWORK: &str = "betterpg";
/// Bridge driver option that turns inter-container traffic off; betterpg's
/// network is created with it set to `false`.
pub const ICC_OPTION: &str = "com.docker.network.bridge.enable_icc";

/// PostgreSQL's port inside the container.
const CONTAINER_PORT: u16 = 5432;
/// `PGDATA` when the image does not set one (the official image's, <= 17).
const DEFAULT_PGDATA: &str = "/var/lib/postgresql/data";
/// Seconds `docker stop` waits after SIGINT (fast shutdown) before SIGKILL.
const STOP_TIMEOUT_SECS: i32 = 60;
/// Lines of container log quoted in a start failure.
const LOG_LINES_IN_ERRORS: usize = 15;
/// Pause between two looks at a starting server's `postmaster.pid` (a
/// read of a small file on the host, no connection).
const PID_FILE_INTERVAL: Duration = Duration::from_millis(5);
/// Longest pause between two readiness probes (a probe is also made as
/// soon as the server writes to its log: [`DockerRuntime::wait_ready`]).
const PROBE_INTERVAL: Duration = Duration::from_millis(20);

/// Runs servers as Docker containers (see the module documentation).
#[derive(Debug, Default)]
pub struct DockerRuntime {
    /// `None`: `DOCKER_HOST`, else the default local socket.
    host: Option<String>,
    /// Labels added to every container, besides betterpg's own.
    extra_labels: Vec<(String, String)>,
    client: OnceCell<Docker>,
}

impl DockerRuntime {
    /// A runtime talking to the engine named by `DOCKER_HOST`, else the
    /// local socket `/var/run/docker.sock`. Nothing is contacted until the
    /// first call.
    pub fn new() -> Self {
        Self::default()
    }

    /// A runtime talking to the engine at `host` (`unix:///path/docker.sock`
    /// or `tcp://host:port`).
    pub fn with_host(host: impl Into<String>) -> Self {
        DockerRuntime {
            host: Some(host.into()),
            ..Self::default()
        }
    }

    /// Also put label `key=value` on every container (e.g. a CI job id, or
    /// `betterpg.test=true` for the test sweep). betterpg's own labels win.
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra_labels.push((key.into(), value.into()));
        self
    }

    /// Name of the container of database or branch `name` of the betterpg
    /// home `home`: `betterpg-<12 hex digits of a hash of home>-<name>`.
    pub fn container_name(home: &Path, name: &str) -> String {
        format!(
            "betterpg-{:012x}-{name}",
            fnv1a(home.as_os_str().as_encoded_bytes()) >> 16
        )
    }

    fn where_(&self) -> String {
        self.host.clone().unwrap_or_else(|| {
            std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
        })
    }

    /// The engine client, connected and with the API version negotiated
    /// (the engine may be older than bollard's default API version).
    async fn docker(&self) -> Result<&Docker> {
        self.client
            .get_or_try_init(|| async {
                let d = match &self.host {
                    Some(h) => Docker::connect_with_host(h),
                    None => Docker::connect_with_defaults(),
                }
                .map_err(|e| self.unreachable(&e))?;
                d.negotiate_version()
                    .await
                    .map_err(|e| self.unreachable(&e))
            })
            .await
    }

    fn unreachable(&self, e: &DockerError) -> Error {
        Error::docker(None, format!(
            "the Docker engine at {} is not reachable ({e}): start it (e.g. `systemctl start docker` or `dockerd`), or point DOCKER_HOST at a running one",
            self.where_()
        ))
    }

    /// True when the engine answered "not found" and betterpg's network is
    /// not there (any more): decided by asking the engine about the network,
    /// not by reading its message.
    async fn network_gone(&self, e: &DockerError) -> bool {
        if !matches!(
            e,
            DockerError::DockerResponseServerError {
                status_code: 404,
                ..
            }
        ) {
            return false;
        }
        let Ok(d) = self.docker().await else {
            return false;
        };
        matches!(
            d.inspect_network(NETWORK, None).await,
            Err(DockerError::DockerResponseServerError {
                status_code: 404,
                ..
            })
        )
    }

    /// Docker error -> typed error. `what` says what was being done.
    fn map_err(&self, what: &str, e: DockerError) -> Error {
        match &e {
            DockerError::DockerResponseServerError {
                status_code,
                message,
            } => {
                if engine_says_port_taken(message) {
                    Error::port_taken(None, format!(
                        "{what}: the port is taken on the host ({message}): stop what uses it, or destroy and re-create on another port"
                    ))
                } else {
                    Error::docker(
                        Some(*status_code),
                        format!("{what}: engine answered {status_code}: {message}"),
                    )
                }
            }
            DockerError::IOError { .. }
            | DockerError::HyperLegacyError { .. }
            | DockerError::SocketNotFoundError(_)
            | DockerError::RequestTimeoutError => self.unreachable(&e),
            _ => Error::docker(None, format!("{what}: {e}")),
        }
    }

    /// The image's configuration; a missing image is an error saying how to
    /// get it (nothing is pulled).
    async fn image_config(&self, image: &str) -> Result<bollard::models::ImageConfig> {
        let d = self.docker().await?;
        match d.inspect_image(image).await {
            Ok(i) => Ok(i.config.unwrap_or_default()),
            Err(DockerError::DockerResponseServerError {
                status_code: 404, ..
            }) => Err(Error::docker(Some(404), format!(
                "image {image:?} is not on this Docker engine: build the default one with scripts/build-image.sh ({DEFAULT_IMAGE}), or `docker pull {image}` where a registry is reachable (betterpg never pulls)"
            ))),
            Err(e) => Err(self.map_err(&format!("inspecting image {image}"), e)),
        }
    }

    fn image_of(spec: &InstanceSpec) -> &str {
        spec.image.as_deref().unwrap_or(DEFAULT_IMAGE)
    }

    /// Check the image exists and runs PostgreSQL `major` (when it says,
    /// through `PG_MAJOR`); returns its `PGDATA`.
    async fn check_image(&self, spec: &InstanceSpec, major: u32) -> Result<String> {
        let image = Self::image_of(spec);
        let cfg = self.image_config(image).await?;
        let env = cfg.env.unwrap_or_default();
        let var = |k: &str| {
            env.iter()
                .find_map(|e| e.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
                .map(str::to_string)
        };
        if let Some(m) = var("PG_MAJOR").and_then(|v| v.trim().parse::<u32>().ok()) {
            if m != major {
                return Err(Error::VersionMismatch(format!(
                    "image {image:?} runs PostgreSQL {m} but the cluster of {} is PostgreSQL {major}: use an image of version {major}, or create the database with --pg-version {m} (host binaries of that version, e.g. from scripts/pg-versions.sh)",
                    spec.name
                )));
            }
        }
        Ok(var("PGDATA").unwrap_or_else(|| DEFAULT_PGDATA.to_string()))
    }

    async fn inspect(&self, container: &str) -> Result<Option<ContainerInspectResponse>> {
        let d = self.docker().await?;
        match d.inspect_container(container, None).await {
            Ok(c) => Ok(Some(c)),
            Err(DockerError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(self.map_err(&format!("inspecting container {container}"), e)),
        }
    }

    /// The container's log (stdout and stderr interleaved), or its last
    /// `tail` lines.
    async fn container_logs(&self, container: &str, tail: Option<usize>) -> Result<String> {
        let d = self.docker().await?;
        let tail = tail.map(|n| n.to_string()).unwrap_or_else(|| "all".into());
        let opts = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail(&tail)
            .build();
        let mut s = d.logs(container, Some(opts));
        let mut out = Vec::new();
        while let Some(chunk) = s.next().await {
            match chunk {
                Ok(c) => out.extend_from_slice(c.as_ref()),
                Err(DockerError::DockerResponseServerError {
                    status_code: 404, ..
                }) => break,
                Err(e) => return Err(self.map_err(&format!("reading the log of {container}"), e)),
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// Keep the log of a container that is going away: append it to the
    /// instance's log file (so `logs` shows earlier runs).
    async fn save_logs(&self, container: &str, log_file: &Path) {
        let text = match self.container_logs(container, None).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("could not read the log of container {container}: {e}");
                return;
            }
        };
        if text.is_empty() {
            return;
        }
        let r = (|| -> std::io::Result<()> {
            if let Some(dir) = log_file.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log_file)?;
            f.write_all(text.as_bytes())?;
            if !text.ends_with('\n') {
                f.write_all(b"\n")?;
            }
            Ok(())
        })();
        if let Err(e) = r {
            tracing::warn!(
                "could not save the log of {container} to {}: {e}",
                log_file.display()
            );
        }
    }

    /// Stop (fast shutdown), keep the log, remove. A missing container is fine.
    /// The engine is asked to stop it without inspecting it first: it
    /// answers 304 for a container that does not run and 404 for none.
    async fn stop_and_remove(&self, container: &str, log_file: &Path) -> Result<()> {
        let d = self.docker().await?;
        let t0 = Instant::now();
        let opts = StopContainerOptionsBuilder::default()
            .t(STOP_TIMEOUT_SECS)
            .build();
        match d.stop_container(container, Some(opts)).await {
            // 304: not running (created, exited).
            Ok(())
            | Err(DockerError::DockerResponseServerError {
                status_code: 304, ..
            }) => {}
            Err(DockerError::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(()),
            Err(e) => return Err(self.map_err(&format!("stopping container {container}"), e)),
        }
        let t_log = Instant::now();
        self.save_logs(container, log_file).await;
        let t_remove = Instant::now();
        let r = self.remove_container(container).await;
        tracing::debug!(
            "{container}: stop {:.0} ms, log {:.0} ms, remove {:.0} ms",
            (t_log - t0).as_secs_f64() * 1000.0,
            (t_remove - t_log).as_secs_f64() * 1000.0,
            t_remove.elapsed().as_secs_f64() * 1000.0
        );
        r
    }

    async fn remove_container(&self, container: &str) -> Result<()> {
        let d = self.docker().await?;
        // v: also anonymous volumes an image may declare (postgres:18's
        // VOLUME /var/lib/postgresql); force: even if it still runs.
        let opts = RemoveContainerOptionsBuilder::default()
            .v(true)
            .force(true)
            .build();
        match d.remove_container(container, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(DockerError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            // 409 (forced): a removal is already in progress; the
            // container's state says so, or it is gone by now.
            Err(
                e @ DockerError::DockerResponseServerError {
                    status_code: 409, ..
                },
            ) => match self.inspect(container).await? {
                None => Ok(()),
                Some(c)
                    if c.state.as_ref().and_then(|s| s.status)
                        == Some(ContainerStateStatusEnum::REMOVING) =>
                {
                    Ok(())
                }
                Some(_) => Err(self.map_err(&format!("removing container {container}"), e)),
            },
            Err(e) => Err(self.map_err(&format!("removing container {container}"), e)),
        }
    }

    /// Remove a leftover container of this name (a crashed server, a run
    /// interrupted before its cleanup), refusing one betterpg did not make.
    /// `found`: what inspecting the container said.
    async fn clear_stale(
        &self,
        spec: &InstanceSpec,
        container: &str,
        found: Option<ContainerInspectResponse>,
    ) -> Result<()> {
        let Some(c) = found else {
            return Ok(());
        };
        let labels = c
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default();
        let home = spec.home.to_string_lossy();
        if labels.get(LABEL_MANAGED).map(String::as_str) != Some("true")
            || labels.get(LABEL_HOME).map(String::as_str) != Some(home.as_ref())
        {
            return Err(Error::docker(None, format!(
                "a container named {container} exists that betterpg did not make for {home}: remove or rename it (`docker rm -f {container}`)"
            )));
        }
        if c.state.as_ref().and_then(|s| s.running) == Some(true) {
            return Err(Error::InvalidState(format!(
                "{} already runs in container {container}",
                spec.name
            )));
        }
        self.save_logs(container, &spec.log_file).await;
        self.remove_container(container).await
    }

    fn create_body(
        &self,
        spec: &InstanceSpec,
        image: &str,
        pgdata: &str,
        uid: u32,
        gid: u32,
        settings: Option<&Path>,
    ) -> ContainerCreateBody {
        let mut mounts = vec![Mount {
            target: Some(pgdata.to_string()),
            source: Some(spec.data_dir.to_string_lossy().into_owned()),
            typ: Some(MountType::BIND),
            read_only: Some(false),
            ..Default::default()
        }];
        if let Some(file) = settings {
            mounts.push(Mount {
                target: Some(format!("{pgdata}/{SETTINGS_FILE}")),
                source: Some(file.to_string_lossy().into_owned()),
                typ: Some(MountType::BIND),
                read_only: Some(true),
                ..Default::default()
            });
        }
        // A private start (a branch's first): no network at all, the socket
        // directory mounted at its host path (so `betterpg.conf`'s
        // `hba_file` and socket directory mean the same inside), no apply
        // workers; the cluster's own betterpg.conf is read unshadowed.
        if let Some(dir) = &spec.private_socket_dir {
            let dir = dir.to_string_lossy().into_owned();
            mounts.truncate(1);
            mounts.push(Mount {
                target: Some(dir.clone()),
                source: Some(dir),
                typ: Some(MountType::BIND),
                read_only: Some(false),
                ..Default::default()
            });
        }
        let private = spec.private_socket_dir.is_some();
        let port_key = format!("{CONTAINER_PORT}/tcp");
        let host_ip = publish_address(&spec.conn.host);
        let mut labels: HashMap<String, String> = self.extra_labels.iter().cloned().collect();
        labels.insert(LABEL_MANAGED.to_string(), "true".to_string());
        labels.insert(
            LABEL_HOME.to_string(),
            spec.home.to_string_lossy().into_owned(),
        );
        labels.insert(LABEL_NAME.to_string(), spec.name.clone());
        labels.insert(
            LABEL_PARENT.to_string(),
            spec.parent.clone().unwrap_or_default(),
        );
        ContainerCreateBody {
            image: Some(image.to_string()),
            user: Some(format!("{uid}:{gid}")),
            // `postgres` explicitly: entrypoints following the official
            // image's convention run the server for it. The -c options win
            // over every configuration file; the container's betterpg.conf
            // says the same, so a reload finds nothing to complain about.
            cmd: Some(if private {
                vec![
                    "postgres".into(),
                    "-c".into(),
                    "listen_addresses=".into(),
                    "-c".into(),
                    format!("port={CONTAINER_PORT}"),
                    "-c".into(),
                    "max_logical_replication_workers=0".into(),
                ]
            } else {
                vec![
                    "postgres".into(),
                    "-c".into(),
                    "listen_addresses=*".into(),
                    "-c".into(),
                    format!("port={CONTAINER_PORT}"),
                ]
            }),
            env: Some(vec![format!("PGDATA={pgdata}")]),
            exposed_ports: (!private).then(|| vec![port_key.clone()]),
            labels: Some(labels),
            // SIGINT = fast shutdown (the official image's choice too).
            stop_signal: Some("SIGINT".into()),
            stop_timeout: Some(STOP_TIMEOUT_SECS as i64),
            host_config: Some(HostConfig {
                // A private start has no network at all.
                network_mode: Some(if private {
                    "none".into()
                } else {
                    NETWORK.into()
                }),
                // The server runs as the data directory's (non-root) owner:
                // it needs no capability, and nothing in it may gain any
                // (setuid binaries, file capabilities).
                security_opt: Some(vec!["no-new-privileges".into()]),
                cap_drop: Some(vec!["ALL".into()]),
                memory: limit(spec.limits.memory),
                pids_limit: limit(spec.limits.pids),
                mounts: Some(mounts),
                port_bindings: (!private).then(|| {
                    HashMap::from([(
                        port_key,
                        Some(vec![PortBinding {
                            host_ip: Some(host_ip),
                            host_port: Some(spec.conn.port.to_string()),
                        }]),
                    )])
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Make sure betterpg's network exists with inter-container traffic
    /// off, creating it when missing. A network of that name that betterpg
    /// did not make, or that lets containers talk to each other, is refused
    /// (never used, never changed).
    async fn ensure_network(&self) -> Result<()> {
        let d = self.docker().await?;
        for _ in 0..2 {
            match d.inspect_network(NETWORK, None).await {
                Ok(n) => {
                    let managed = n
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(LABEL_MANAGED))
                        .map(String::as_str)
                        == Some("true");
                    let icc = n
                        .options
                        .as_ref()
                        .and_then(|o| o.get(ICC_OPTION))
                        .map(String::as_str);
                    if !managed || icc != Some("false") || n.driver.as_deref() != Some("bridge") {
                        return Err(Error::docker(None, format!(
                            "Docker network {NETWORK:?} exists but betterpg did not make it as it needs it (a bridge labelled {LABEL_MANAGED}=true with {ICC_OPTION}=false, so containers cannot reach each other): remove it (`docker network rm {NETWORK}`) and betterpg makes its own on the next start"
                        )));
                    }
                    return Ok(());
                }
                Err(DockerError::DockerResponseServerError {
                    status_code: 404, ..
                }) => {}
                Err(e) => return Err(self.map_err(&format!("inspecting network {NETWORK}"), e)),
            }
            let req = NetworkCreateRequest {
                name: NETWORK.into(),
                driver: Some("bridge".into()),
                options: Some(HashMap::from([(ICC_OPTION.into(), "false".into())])),
                labels: Some(HashMap::from([(LABEL_MANAGED.into(), "true".into())])),
                ..Default::default()
            };
            match d.create_network(req).await {
                Ok(_) => return Ok(()),
                // 409: made meanwhile by another start; check it (loop).
                Err(DockerError::DockerResponseServerError {
                    status_code: 409, ..
                }) => {}
                Err(e) => return Err(self.map_err(&format!("creating network {NETWORK}"), e)),
            }
        }
        Err(Error::docker(None, format!(
            "network {NETWORK} could neither be found nor created (it is being made and removed at the same time?): retry"
        )))
    }

    /// Remove betterpg's network when no container is attached to it any
    /// more (any home's). Returns whether it was removed. A network in use,
    /// already gone or not betterpg's is left alone.
    pub async fn remove_network_if_unused(&self) -> Result<bool> {
        let d = self.docker().await?;
        let n = match d.inspect_network(NETWORK, None).await {
            Ok(n) => n,
            Err(DockerError::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(false),
            Err(e) => return Err(self.map_err(&format!("inspecting network {NETWORK}"), e)),
        };
        let managed = n
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_MANAGED))
            .map(String::as_str)
            == Some("true");
        if !managed || n.containers.as_ref().is_some_and(|c| !c.is_empty()) {
            return Ok(false);
        }
        // Created (not yet started) containers hold no endpoint yet but
        // will join the network: keep it for them.
        let filters = HashMap::from([("network".to_string(), vec![NETWORK.to_string()])]);
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let users = d
            .list_containers(Some(opts))
            .await
            .map_err(|e| self.map_err("listing containers", e))?;
        if !users.is_empty() {
            return Ok(false);
        }
        match d.remove_network(NETWORK).await {
            Ok(()) => Ok(true),
            // 404: gone meanwhile; 403/409: a container joined meanwhile.
            Err(DockerError::DockerResponseServerError {
                status_code: 403 | 404 | 409,
                ..
            }) => Ok(false),
            Err(e) => Err(self.map_err(&format!("removing network {NETWORK}"), e)),
        }
    }

    /// Probe until a query answers; stop early when the container exits.
    ///
    /// The server is watched, not only polled: its `postmaster.pid` (in
    /// the bind-mounted data directory, read on the host) is read every
    /// [`PID_FILE_INTERVAL`] and whenever the server writes to its log (the
    /// container's log is followed); as soon as it says the server accepts
    /// connections (status `ready`, or `standby` for a hot standby), a
    /// probe is made.
    /// Probes are also made every [`PROBE_INTERVAL`] whatever the server
    /// says (a server whose log goes elsewhere, `logging_collector = on`),
    /// as before. Ready still means a query answered; neither the log's
    /// text nor the pid file decides it. The log's end says the container
    /// stopped, so while it is followed no inspect is needed between
    /// probes; when it cannot be followed (a logging driver that cannot be
    /// read), each failed probe asks the engine whether the container
    /// still runs.
    async fn wait_ready(&self, spec: &InstanceSpec, container: &str) -> Result<()> {
        let deadline = Instant::now() + spec.start_timeout;
        let conn = self.private_conn(spec).unwrap_or_else(|| spec.conn.clone());
        let d = self.docker().await?;
        // `all`: the container is this start's own, so its whole log is
        // this run's (what was written before the stream opened wakes the
        // first wait at once).
        let opts = LogsOptionsBuilder::default()
            .follow(true)
            .stdout(true)
            .stderr(true)
            .tail("all")
            .build();
        let mut log = Some(Box::pin(d.logs(container, Some(opts))));
        let mut probes = 0u32;
        // When the last probe was made; `None`: probe now.
        let mut last_probe: Option<Instant> = None;
        // The pid file that prompted the last early probe: a probe that
        // fails although the server says ready (a stale file of a killed
        // run, a server out of connections) is not repeated at every line
        // of log its refusal writes, only at the next interval.
        let mut probed_pid_file = None;
        loop {
            let early =
                server_says_ready(&spec.data_dir).filter(|t| probed_pid_file.as_ref() != Some(t));
            let due = last_probe.is_none_or(|t| t.elapsed() >= PROBE_INTERVAL);
            if due || early.is_some() {
                if early.is_some() {
                    probed_pid_file = early;
                }
                probes += 1;
                last_probe = Some(Instant::now());
                let last = match conn.connect().await {
                    Ok(c) => match c.simple_query("SELECT 1").await {
                        Ok(_) => {
                            tracing::debug!("{}: probe {probes} answered", spec.name);
                            return Ok(());
                        }
                        Err(e) => Error::from(e),
                    },
                    Err(e) => e,
                };
                // The server is up and refuses us (SQLSTATE class 28: wrong
                // password, no pg_hba.conf entry): waiting cannot fix that.
                let definitive = last.is_auth_failure();
                let last = last.to_string();
                if definitive {
                    return Err(Error::runtime(format!(
                        "{}: PostgreSQL in container {container} refuses betterpg's connection: {last}",
                        spec.name
                    )));
                }
                if log.is_none() {
                    let state = self.inspect(container).await?.and_then(|c| c.state);
                    if state.as_ref().and_then(|s| s.running) != Some(true) {
                        let code = state.and_then(|s| s.exit_code).unwrap_or(-1);
                        return Err(Error::runtime(format!(
                            "{}: container {container} exited (status {code}) before PostgreSQL answered a query",
                            spec.name
                        )));
                    }
                }
                if Instant::now() >= deadline {
                    return Err(Error::runtime(format!(
                        "{}: container {container} runs but PostgreSQL did not answer a query within {}s ({last})",
                        spec.name,
                        spec.start_timeout.as_secs()
                    )));
                }
            }
            // The next look: at the next probe, or sooner at the pid file
            // (PostgreSQL marks it ready just after logging so, and then
            // writes nothing more).
            let next = tokio::time::Instant::from_std(
                last_probe
                    .map_or_else(Instant::now, |t| t + PROBE_INTERVAL)
                    .min(Instant::now() + PID_FILE_INTERVAL),
            );
            let Some(stream) = log.as_mut() else {
                tokio::time::sleep_until(next).await;
                continue;
            };
            // Wait for output or the interval; take what else has arrived
            // with it, so that a burst of lines is looked at once.
            let mut ended = false;
            tokio::select! {
                chunk = stream.next() => match chunk {
                    Some(Ok(_)) => loop {
                        match stream.next().now_or_never() {
                            Some(Some(Ok(_))) => {}
                            Some(_) => {
                                ended = true;
                                break;
                            }
                            None => break,
                        }
                    },
                    Some(Err(e)) => {
                        tracing::debug!("{}: following the log of {container}: {e}", spec.name);
                        ended = true;
                    }
                    None => ended = true,
                },
                _ = tokio::time::sleep_until(next) => {}
            }
            if ended {
                // The container stopped (or its log cannot be followed):
                // probe once more, then ask the engine.
                log = None;
                last_probe = None;
            }
        }
    }

    /// The log of the running container of `name` as a stream of chunks as
    /// it is written (`bpg logs --follow`), starting with its last `tail`
    /// lines (all when `None`). The stream ends when the container stops;
    /// when it is not running, it holds the saved log of earlier runs.
    pub async fn log_stream(
        &self,
        home: &Path,
        name: &str,
        log_file: &Path,
        tail: Option<usize>,
    ) -> Result<super::LogStream> {
        let container = Self::container_name(home, name);
        let running = self
            .inspect(&container)
            .await?
            .and_then(|c| c.state)
            .and_then(|s| s.running)
            == Some(true);
        if !running {
            let saved = read_log_file(log_file)?;
            let text = match tail {
                Some(n) => tail_lines(&saved, n),
                None => saved,
            };
            let text = crate::util::with_final_newline(text);
            let chunk = Some(text.into_bytes()).filter(|b| !b.is_empty());
            return Ok(Box::pin(futures_util::stream::iter(chunk.map(Ok))));
        }
        let d = self.docker().await?;
        let tail = tail.map(|n| n.to_string()).unwrap_or_else(|| "all".into());
        let opts = LogsOptionsBuilder::default()
            .follow(true)
            .stdout(true)
            .stderr(true)
            .tail(&tail)
            .build();
        let chunks = d.logs(&container, Some(opts));
        // An error ends the stream after it is yielded; a container removed
        // while followed (404) ends it quietly.
        let stream = chunks
            .take_while(|c| {
                std::future::ready(!matches!(
                    c,
                    Err(DockerError::DockerResponseServerError {
                        status_code: 404,
                        ..
                    })
                ))
            })
            .scan(false, move |failed, c| {
                let item = if *failed {
                    None
                } else {
                    Some(match c {
                        Ok(c) => Ok(c.into_bytes().to_vec()),
                        Err(e) => {
                            *failed = true;
                            Err(Error::docker(
                                match &e {
                                    DockerError::DockerResponseServerError {
                                        status_code, ..
                                    } => Some(*status_code),
                                    _ => None,
                                },
                                format!("following the log of {container}: {e}"),
                            ))
                        }
                    })
                };
                std::future::ready(item)
            });
        Ok(Box::pin(stream))
    }

    /// Names of the containers betterpg made for the home `home` (running
    /// or not), found by label: what a sweep removes.
    pub async fn containers_of_home(&self, home: &Path) -> Result<Vec<String>> {
        Ok(self
            .labelled_containers_of_home(home)
            .await?
            .into_iter()
            .map(|(n, _)| n)
            .collect())
    }

    /// betterpg's containers in every state (of `home` when one is
    /// given), from one listing.
    async fn managed_containers(
        &self,
        home: Option<&str>,
    ) -> Result<Vec<bollard::models::ContainerSummary>> {
        let d = self.docker().await?;
        let mut labels = vec![format!("{LABEL_MANAGED}=true")];
        if let Some(home) = home {
            labels.push(format!("{LABEL_HOME}={home}"));
        }
        let filters = HashMap::from([("label".to_string(), labels)]);
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        d.list_containers(Some(opts))
            .await
            .map_err(|e| self.map_err("listing containers", e))
    }

    /// Containers of `home` with their `betterpg.name` label.
    async fn labelled_containers_of_home(&self, home: &Path) -> Result<Vec<(String, String)>> {
        let list = self
            .managed_containers(Some(&home.to_string_lossy()))
            .await?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let name = c.names?.into_iter().next()?;
                let label = c
                    .labels
                    .and_then(|l| l.get(LABEL_NAME).cloned())
                    .unwrap_or_default();
                Some((name.trim_start_matches('/').to_string(), label))
            })
            .collect())
    }

    /// Names of betterpg's containers that run (as `inspect` says
    /// `running`: also while paused or restarting), from one
    /// listing.
    async fn running_containers(&self) -> Result<std::collections::HashSet<String>> {
        let list = self.managed_containers(None).await?;
        Ok(list
            .into_iter()
            .filter(|c| {
                use bollard::models::ContainerSummaryStateEnum as S;
                matches!(c.state, Some(S::RUNNING | S::PAUSED | S::RESTARTING))
            })
            .flat_map(|c| c.names.unwrap_or_default())
            .map(|n| n.trim_start_matches('/').to_string())
            .collect())
    }

    /// Remove (stopping if needed) every container betterpg made for
    /// `home`, without keeping their logs: for tests and cleanup of a home
    /// that is gone. Returns how many were removed.
    pub async fn remove_all_of_home(&self, home: &Path) -> Result<usize> {
        let names = self.containers_of_home(home).await?;
        for n in &names {
            self.remove_container(n).await?;
        }
        self.remove_network_if_unused().await?;
        Ok(names.len())
    }
}

#[async_trait]
impl Runtime for DockerRuntime {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn private_conn(&self, spec: &InstanceSpec) -> Option<ConnInfo> {
        // Inside the container the server listens on its own port number.
        let dir = spec.private_socket_dir.as_ref()?;
        Some(ConnInfo {
            host: dir.to_string_lossy().into_owned(),
            port: CONTAINER_PORT,
            ..spec.conn.clone()
        })
    }

    fn default_image(&self) -> Option<&'static str> {
        Some(DEFAULT_IMAGE)
    }

    async fn init_cluster(&self, spec: &InstanceSpec, password: &str) -> Result<()> {
        // Fail before any work when the image is missing or of another
        // major version; then the same initdb as native (module docs).
        self.check_image(spec, spec.pg_bin.major).await?;
        crate::pg::cluster::initdb(&spec.pg_bin, &spec.user, &spec.data_dir, password).await?;
        allow_published_clients(&spec.data_dir, &spec.user)
    }

    async fn start(&self, spec: &InstanceSpec) -> Result<()> {
        let container = Self::container_name(&spec.home, &spec.name);
        let data_major = data_dir_major(&spec.data_dir)?;
        let image = Self::image_of(spec);
        let t0 = Instant::now();
        // Questions to the engine, asked at once (each is a round trip):
        // the image's settings, a container left of this name, and
        // betterpg's network (not for a private start, which has none).
        let private = spec.private_socket_dir.is_some();
        let network = async {
            if private {
                Ok(())
            } else {
                self.ensure_network().await
            }
        };
        let (pgdata, found, ()) = tokio::try_join!(
            self.check_image(spec, data_major),
            self.inspect(&container),
            network
        )?;
        let meta = std::fs::metadata(&spec.data_dir)
            .map_err(|e| Error::io(format!("reading {}", spec.data_dir.display()), e))?;
        if meta.uid() == 0 {
            return Err(Error::InvalidState(format!(
                "{} is owned by root; PostgreSQL must not run as root: chown it to the server user",
                spec.data_dir.display()
            )));
        }
        self.clear_stale(spec, &container, found).await?;
        allow_published_clients(&spec.data_dir, &spec.user)?;
        let d = self.docker().await?;
        // A private start reads the cluster's own betterpg.conf (its
        // socket directory and pg_hba.conf): no container view to write.
        let settings = match private {
            true => None,
            false => container_settings(&spec.data_dir)?,
        };
        let body = self.create_body(
            spec,
            image,
            &pgdata,
            meta.uid(),
            meta.gid(),
            settings.as_deref(),
        );
        let opts = CreateContainerOptionsBuilder::default()
            .name(&container)
            .build();
        // A concurrent `gc` of another home may remove the (then unused)
        // network between our check and the container's start: make it
        // again and retry, once.
        let mut attempt = 0;
        let started = loop {
            attempt += 1;
            if attempt > 1 {
                self.ensure_network().await?;
            }
            let t_create = Instant::now();
            let r = match d.create_container(Some(opts.clone()), body.clone()).await {
                Ok(_) => {
                    let t_start = Instant::now();
                    let r = d
                        .start_container(&container, None)
                        .await
                        .map_err(|e| (format!("starting container {container}"), e));
                    tracing::debug!(
                        "{}: container checks {:.0} ms, create {:.0} ms, start {:.0} ms",
                        spec.name,
                        (t_create - t0).as_secs_f64() * 1000.0,
                        (t_start - t_create).as_secs_f64() * 1000.0,
                        t_start.elapsed().as_secs_f64() * 1000.0
                    );
                    r
                }
                Err(e) => Err((format!("creating container {container}"), e)),
            };
            let r = match r {
                Ok(()) => Ok(()),
                // A private start uses no network: none can have gone.
                Err((what, e)) => Err((
                    !private && self.network_gone(&e).await,
                    self.map_err(&what, e),
                )),
            };
            match r {
                Ok(()) => {
                    let t = Instant::now();
                    let r = self.wait_ready(spec, &container).await;
                    tracing::debug!(
                        "{}: ready {:.0} ms after the container started",
                        spec.name,
                        t.elapsed().as_secs_f64() * 1000.0
                    );
                    break r;
                }
                Err((true, e)) if attempt < 2 => {
                    tracing::info!("network {NETWORK} went away during the start ({e}); retrying");
                    self.remove_container(&container).await?;
                }
                Err((_, e)) => {
                    // Nothing was started: a created container is removed
                    // below with the usual failed-start cleanup.
                    if self.inspect(&container).await?.is_none() {
                        return Err(e);
                    }
                    break Err(e);
                }
            }
        };
        if let Err(e) = started {
            let tail = self
                .container_logs(&container, Some(LOG_LINES_IN_ERRORS))
                .await
                .unwrap_or_else(|e| format!("(no log: {e})"));
            if let Err(e2) = self.stop_and_remove(&container, &spec.log_file).await {
                tracing::warn!("removing the failed container {container}: {e2}");
            }
            return Err(match e {
                e @ Error::Runtime { .. } => e.reword(|m| {
                    format!(
                        "{m}\n--- last lines of the container log ---\n{}",
                        tail.trim_end()
                    )
                }),
                other => other,
            });
        }
        Ok(())
    }

    async fn stop(&self, spec: &InstanceSpec) -> Result<()> {
        let container = Self::container_name(&spec.home, &spec.name);
        self.stop_and_remove(&container, &spec.log_file).await
    }

    async fn stop_discarding(&self, spec: &InstanceSpec) -> Result<()> {
        let container = Self::container_name(&spec.home, &spec.name);
        // SIGQUIT is PostgreSQL's immediate shutdown; the stop that follows
        // waits for the container to exit (and sends the image's own stop
        // signal, which an exiting postmaster ignores).
        let opts = KillContainerOptionsBuilder::default()
            .signal("SIGQUIT")
            .build();
        match self
            .docker()
            .await?
            .kill_container(&container, Some(opts))
            .await
        {
            // 404: no such container; 409: not running. Either way the
            // stop below has nothing to wait for.
            Ok(())
            | Err(DockerError::DockerResponseServerError {
                status_code: 404 | 409,
                ..
            }) => {}
            Err(e) => return Err(self.map_err(&format!("stopping container {container}"), e)),
        }
        self.stop_and_remove(&container, &spec.log_file).await
    }

    async fn status(&self, spec: &InstanceSpec) -> Result<RunStatus> {
        let container = Self::container_name(&spec.home, &spec.name);
        let running = self
            .inspect(&container)
            .await?
            .and_then(|c| c.state)
            .and_then(|s| s.running)
            == Some(true);
        Ok(if running {
            RunStatus::Running
        } else {
            RunStatus::Stopped
        })
    }

    async fn status_all(&self, specs: &[InstanceSpec]) -> Result<Vec<RunStatus>> {
        if specs.len() < 2 {
            let mut out = Vec::with_capacity(specs.len());
            for spec in specs {
                out.push(self.status(spec).await?);
            }
            return Ok(out);
        }
        // One listing of betterpg's containers instead of an inspect each.
        let running = self.running_containers().await?;
        Ok(specs
            .iter()
            .map(|spec| {
                if running.contains(&Self::container_name(&spec.home, &spec.name)) {
                    RunStatus::Running
                } else {
                    RunStatus::Stopped
                }
            })
            .collect())
    }

    async fn logs(&self, spec: &InstanceSpec, tail: Option<usize>) -> Result<String> {
        let container = Self::container_name(&spec.home, &spec.name);
        let mut text = read_log_file(&spec.log_file)?;
        if self.inspect(&container).await?.is_some() {
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&self.container_logs(&container, tail).await?);
        }
        Ok(match tail {
            Some(n) => tail_lines(&text, n),
            None => text,
        })
    }

    async fn sweep(&self, home: &Path, keep: &[String], dry_run: bool) -> Result<Vec<String>> {
        // gc runs every runtime's sweep: a machine without a Docker engine
        // has no containers of ours to find, and must not fail gc.
        let all = match self.labelled_containers_of_home(home).await {
            Ok(v) => v,
            Err(e) if self.docker().await.is_err() => {
                tracing::info!("docker sweep skipped: {e}");
                return Ok(Vec::new());
            }
            Err(e) => return Err(e),
        };
        let mut found = Vec::new();
        for (container, name) in all {
            if keep.contains(&name) {
                continue;
            }
            if !dry_run {
                self.remove_container(&container).await?;
            }
            found.push(format!("container {container} (of {name:?})"));
        }
        // The shared network goes when no container (of any home) uses it;
        // the next start makes it again. Not listed in `found`: it is no
        // orphan of this home (and an unused network harms nothing).
        if !dry_run && self.remove_network_if_unused().await? {
            tracing::info!("removed the unused Docker network {NETWORK}");
        }
        Ok(found)
    }

    async fn remove(&self, spec: &InstanceSpec) -> Result<()> {
        let container = Self::container_name(&spec.home, &spec.name);
        self.remove_container(&container).await?;
        match std::fs::remove_file(&spec.log_file) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(
                format!("removing {}", spec.log_file.display()),
                e,
            )),
        }
    }
}

/// The text of `postmaster.pid` in `data_dir` when its status line says
/// the server accepts connections (`ready`; `standby`: a hot standby);
/// `None` otherwise. Read on the host through the bind mount, without
/// following a link; the pid in it is the container's, not checked.
fn server_says_ready(data_dir: &Path) -> Option<String> {
    let text = super::native::read_pid_file(data_dir)?;
    let (_, status) = super::native::parse_pid_file(&text)?;
    matches!(status, "ready" | "standby").then_some(text)
}

/// Let clients in through Docker's port publishing. They reach the server
/// from the bridge's gateway address (e.g. 172.17.0.1), not 127.0.0.1, so
/// initdb's loopback-only `host` lines do not match them. The line added is
/// the official image's (`host all all all`), with scram-sha-256 as every
/// other line: a password is still required on every connection. Exposure is
/// governed by where the port is published (the host's 127.0.0.1), by
/// betterpg's network (no other container reaches the server: [`NETWORK`])
/// and, when the cluster runs natively, by `listen_addresses` (127.0.0.1).
///
/// Idempotent, and also run at every container start: a cluster made by the
/// native runtime (a native database branched into a container) lacks it.
fn allow_published_clients(data_dir: &Path, user: &crate::osuser::OsUser) -> Result<()> {
    // Read and rewritten without following a link: the data directory is
    // the server user's, who may have planted one as pg_hba.conf.
    let dd = DataDir::open(data_dir)?;
    let current = dd.read_text("pg_hba.conf")?.ok_or_else(|| {
        Error::io(
            format!("reading {}", data_dir.join("pg_hba.conf").display()),
            std::io::Error::from(std::io::ErrorKind::NotFound),
        )
    })?;
    if current.contains("# Added by betterpg (docker runtime)") {
        return Ok(());
    }
    let mut text = current;
    text.push_str(
        "\n# Added by betterpg (docker runtime): clients come through Docker's port\n\
          # publishing from the bridge gateway; the port is published on the host's\n\
          # 127.0.0.1 only. A password is required, as on every line above.\n\
          host    all             all             all                     scram-sha-256\n",
    );
    dd.write("pg_hba.conf", text.as_bytes(), Some(user), 0o600)
}

/// Name of the container's variant of `betterpg.conf`, beside `pgdata` on
/// the dataset (so it never mixes with the cluster's own files).
pub const CONTAINER_SETTINGS_FILE: &str = "betterpg-docker.conf";

/// Write the container's view of `betterpg.conf`: the host file with `port`
/// and `listen_addresses` set to the in-container values. It is bind-mounted
/// read-only over `PGDATA/betterpg.conf` in the container, so that a reload
/// (`pg_reload_conf()`, SIGHUP) reads the values the server runs with
/// (otherwise PostgreSQL logs "cannot be changed without restarting" and
/// flags both settings `pending_restart`), while the host file keeps the
/// native values and the cluster can still run natively. `None` when the
/// cluster has no `betterpg.conf` (nothing to shadow).
fn container_settings(data_dir: &Path) -> Result<Option<PathBuf>> {
    let Some(text) = DataDir::open(data_dir)?.read_text(SETTINGS_FILE)? else {
        return Ok(None);
    };
    let dir = data_dir.parent().ok_or_else(|| {
        Error::Internal(format!("{} has no parent directory", data_dir.display()))
    })?;
    let path = dir.join(CONTAINER_SETTINGS_FILE);
    std::fs::write(&path, container_settings_text(&text))
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    crate::pg::cluster::set_mode(&path, 0o644)?;
    Ok(Some(path))
}

/// `betterpg.conf` as the container sees it (pure; unit-tested).
fn container_settings_text(host: &str) -> String {
    let mut out = String::from(
        "# Container view of betterpg.conf, written by betterpg's docker runtime at\n\
         # every start and mounted read-only over it; edit betterpg.conf instead.\n",
    );
    for line in host.lines() {
        let key = line.split(['=', ' ', '\t']).next().unwrap_or("");
        if key != "port" && key != "listen_addresses" {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str(&format!(
        "port = {CONTAINER_PORT}\nlisten_addresses = '*'\n"
    ));
    out
}

/// True when the engine's message says a published port is taken on the
/// host. The engine says so only in text (a 500 with "port is already
/// allocated" or the kernel's "address already in use"): this is the one
/// place that reads it.
fn engine_says_port_taken(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("port is already allocated")
        || m.contains("address already in use")
        || (m.contains("bind for") && m.contains("failed"))
}

fn read_log_file(path: &Path) -> Result<String> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

/// The host address to publish on: the address clients are given (127.0.0.1
/// unless configured otherwise), never every interface.
fn publish_address(conn_host: &str) -> String {
    match conn_host.parse::<std::net::IpAddr>() {
        Ok(ip) if !ip.is_unspecified() => ip.to_string(),
        _ => "127.0.0.1".into(),
    }
}

/// A Docker limit: `None` (no limit) for 0.
fn limit(v: u64) -> Option<i64> {
    (v != 0).then(|| i64::try_from(v).unwrap_or(i64::MAX))
}

/// FNV-1a, 64 bit: a hash that is the same in every build (std's hasher is
/// not guaranteed to be), for container names.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names_are_stable_and_per_home() {
        let a = DockerRuntime::container_name(Path::new("/var/lib/betterpg"), "prod");
        let b = DockerRuntime::container_name(Path::new("/var/lib/betterpg"), "prod");
        let c = DockerRuntime::container_name(Path::new("/srv/other"), "prod");
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.starts_with("betterpg-") && a.ends_with("-prod"), "{a}");
        assert_eq!(a.len(), "betterpg-".len() + 12 + "-prod".len());
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn container_settings_override_port_and_address_only() {
        let host = "# Written by betterpg\nport = 58001\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\nwal_recycle = off\n";
        let c = container_settings_text(host);
        assert!(
            c.contains("port = 5432\n") && c.contains("listen_addresses = '*'\n"),
            "{c}"
        );
        assert!(!c.contains("58001") && !c.contains("'127.0.0.1'"), "{c}");
        assert!(
            c.contains("unix_socket_directories = ''\nwal_recycle = off\n"),
            "{c}"
        );
        assert_eq!(c.matches("port =").count(), 1, "{c}");
    }

    #[test]
    fn a_taken_host_port_is_recognised_in_the_engines_message() {
        for m in [
            "driver failed programming external connectivity on endpoint x: Bind for 127.0.0.1:5433 failed: port is already allocated",
            "failed to bind port 127.0.0.1:5433/tcp: listen tcp4 127.0.0.1:5433: bind: address already in use",
        ] {
            assert!(engine_says_port_taken(m), "{m}");
        }
        assert!(!engine_says_port_taken("No such image: nope:none"));
    }

    #[test]
    fn the_pid_file_says_when_the_server_accepts_connections() {
        let d = tempfile::tempdir().unwrap();
        let file = |status: &str| {
            format!("1\n/var/lib/postgresql/data\n1700000000\n5432\n\n*\n  1 2\n{status}\n")
        };
        assert_eq!(server_says_ready(d.path()), None, "no file");
        for (status, ready) in [
            ("starting", false),
            ("ready   ", true),
            ("standby ", true),
            ("stopping", false),
        ] {
            std::fs::write(d.path().join("postmaster.pid"), file(status)).unwrap();
            assert_eq!(server_says_ready(d.path()).is_some(), ready, "{status:?}");
        }
        // Written in part: the status line comes last.
        std::fs::write(
            d.path().join("postmaster.pid"),
            "1\n/var/lib/postgresql/data\n",
        )
        .unwrap();
        assert_eq!(server_says_ready(d.path()), None);
    }

    #[test]
    fn publishes_on_the_client_address_only() {
        assert_eq!(publish_address("127.0.0.1"), "127.0.0.1");
        assert_eq!(publish_address("0.0.0.0"), "127.0.0.1");
        assert_eq!(publish_address("::1"), "::1");
        assert_eq!(publish_address("db.example"), "127.0.0.1");
        assert_eq!(publish_address("10.1.2.3"), "10.1.2.3");
    }
}
