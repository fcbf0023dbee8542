//! The betterpg home directory: config, catalog, secrets and logs.
//!
//! ```text
//! HOME/config.json      what `bpg init` chose (dataset root, binaries, user)
//! HOME/catalog.json     databases and branches (see `catalog`)
//! HOME/catalog.lock     advisory lock serialising catalog changes (holds
//!                       the holder's pid while held)
//! HOME/secrets/NAME     superuser password, 0600, directory 0700
//! HOME/secrets/NAME.roles  a rotated branch's role passwords (JSON, 0600)
//! HOME/logs/NAME.log    server log, owned by the server's OS user
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::osuser::OsUser;
pub use crate::util::{create_private_file, write_atomic};

/// The suffix of a branch's role password file in `HOME/secrets`.
pub const ROLES_SUFFIX: &str = ".roles";

/// The passwords a branch's roles got when its credentials were rotated
/// (`HOME/secrets/NAME.roles`, 0600).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleSecrets {
    /// Role name -> its password on the branch.
    pub roles: BTreeMap<String, String>,
}

/// Newest config format this build reads and writes.
pub const CONFIG_VERSION: u32 = 1;

/// Default first port handed out to databases and branches.
pub const DEFAULT_PORT_START: u16 = 54320;
/// Default last port handed out.
pub const DEFAULT_PORT_END: u16 = 54999;

/// Settings chosen at `init`, stored in `HOME/config.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Config {
    /// Format version; a newer one is refused, never overwritten.
    pub version: u32,
    /// Parent dataset of every database and branch, e.g. `tank/betterpg`.
    pub dataset: String,
    /// PostgreSQL bin directory used by `create` when none is given.
    #[serde(default)]
    pub pg_bin: Option<PathBuf>,
    /// OS user the servers run as (root is never used). `None`: `postgres`
    /// when running as root, the current user otherwise.
    #[serde(default)]
    pub os_user: Option<String>,
    /// Address servers listen on; `127.0.0.1` unless told otherwise.
    pub listen_address: String,
    /// First port of the range betterpg allocates from.
    pub port_start: u16,
    /// Last port of the range (inclusive).
    pub port_end: u16,
    /// The pool file when `init` created a file-backed pool.
    #[serde(default)]
    pub pool_file: Option<PathBuf>,
    /// Seconds to wait for a server to accept a query after start.
    #[serde(default = "default_start_timeout")]
    pub start_timeout_secs: u64,
    /// Storage backend: `auto` (when unset: the linked libzfs where usable,
    /// else the `zfs` command), `libzfs` or `cli`; see [`crate::storage::select`].
    #[serde(default)]
    pub storage_backend: Option<String>,
    /// Runtime `create` uses when none is given (`native` when unset).
    #[serde(default)]
    pub default_runtime: Option<String>,
    /// Image `create` uses with the default runtime when none is given.
    #[serde(default)]
    pub default_image: Option<String>,
    /// Percent of the pool kept for the databases: all branches together
    /// may use the rest, never this part, so a branch filling its space
    /// cannot stop a database (see the branch space in
    /// `docs/architecture.md`). 0: no limit.
    #[serde(default = "default_branch_headroom")]
    pub branch_headroom_percent: u8,
    /// Bytes of the branch space guaranteed to every branch (a ZFS
    /// `reservation`), so a branch keeps room to write when others filled
    /// the rest. 0: none.
    #[serde(default = "default_branch_reserve")]
    pub branch_reserve: u64,
    /// Memory limit of every container (docker runtime), bytes; 0: none.
    #[serde(default = "default_docker_memory")]
    pub docker_memory: u64,
    /// Most processes/threads in every container (docker runtime); 0: none.
    #[serde(default = "default_docker_pids")]
    pub docker_pids: u64,
    /// Seconds to wait for the catalog lock before failing with a timeout
    /// that names its holder (`BPG_LOCK_TIMEOUT` overrides; see
    /// the catalog's lock).
    #[serde(default = "default_lock_timeout")]
    pub lock_timeout_secs: u64,
    /// `--fast` (crash-consistent) from a running source: the source is
    /// asked for a `CHECKPOINT` only when it wrote more than this many
    /// bytes of WAL since its last one; below it the branch replays that
    /// WAL at its first start instead (the snapshot holds every committed
    /// transaction either way). 0: always checkpoint. The branch report
    /// says which was done and why.
    #[serde(default = "default_fast_checkpoint_max_wal")]
    pub fast_checkpoint_max_wal: u64,
    /// Native ZFS properties of the root dataset (inherited by every
    /// database and branch) as ZFS reported them right after `init` set
    /// them (see [`crate::storage::props`]); empty for homes made before.
    #[serde(default)]
    pub zfs_properties: std::collections::BTreeMap<String, String>,
}

/// Default [`Config::lock_timeout_secs`]: seconds to wait for the catalog
/// lock. Catalog changes take milliseconds; a lock held this long belongs
/// to a process that is stuck.
pub const DEFAULT_LOCK_TIMEOUT_SECS: u64 = 30;

fn default_lock_timeout() -> u64 {
    DEFAULT_LOCK_TIMEOUT_SECS
}

/// Default [`Config::fast_checkpoint_max_wal`]: 64 MiB of WAL, which a
/// branch replays in well under a second on the benchmark machine
/// (docs/benchmarks.md), about what a checkpoint of a busy source costs.
pub const DEFAULT_FAST_CHECKPOINT_MAX_WAL: u64 = 64 << 20;

fn default_fast_checkpoint_max_wal() -> u64 {
    DEFAULT_FAST_CHECKPOINT_MAX_WAL
}

fn default_start_timeout() -> u64 {
    120
}

/// Default [`Config::branch_headroom_percent`].
pub const DEFAULT_BRANCH_HEADROOM_PERCENT: u8 = 20;
/// Default [`Config::branch_reserve`]: room for a few WAL segments and a
/// checkpoint's worth of writes.
pub const DEFAULT_BRANCH_RESERVE: u64 = 64 << 20;

fn default_branch_headroom() -> u8 {
    DEFAULT_BRANCH_HEADROOM_PERCENT
}

fn default_branch_reserve() -> u64 {
    DEFAULT_BRANCH_RESERVE
}

pub use crate::runtime::{DEFAULT_DOCKER_MEMORY, DEFAULT_DOCKER_PIDS};
/// Smallest non-zero [`Config::docker_memory`] accepted: below it
/// PostgreSQL cannot even start reliably.
pub const MIN_DOCKER_MEMORY: u64 = 64 << 20;
/// Smallest non-zero [`Config::docker_pids`] accepted: PostgreSQL's
/// background processes alone take about a dozen.
pub const MIN_DOCKER_PIDS: u64 = 32;

fn default_docker_memory() -> u64 {
    DEFAULT_DOCKER_MEMORY
}

fn default_docker_pids() -> u64 {
    DEFAULT_DOCKER_PIDS
}

impl Config {
    /// A config for `dataset` with the defaults.
    pub fn new(dataset: impl Into<String>) -> Self {
        Config {
            version: CONFIG_VERSION,
            dataset: dataset.into(),
            pg_bin: None,
            os_user: None,
            listen_address: "127.0.0.1".into(),
            port_start: DEFAULT_PORT_START,
            port_end: DEFAULT_PORT_END,
            pool_file: None,
            start_timeout_secs: default_start_timeout(),
            storage_backend: None,
            default_runtime: None,
            default_image: None,
            branch_headroom_percent: DEFAULT_BRANCH_HEADROOM_PERCENT,
            branch_reserve: DEFAULT_BRANCH_RESERVE,
            docker_memory: DEFAULT_DOCKER_MEMORY,
            docker_pids: DEFAULT_DOCKER_PIDS,
            lock_timeout_secs: default_lock_timeout(),
            fast_checkpoint_max_wal: DEFAULT_FAST_CHECKPOINT_MAX_WAL,
            zfs_properties: Default::default(),
        }
    }

    /// Check the settings of the branch space (at `init`, and when a
    /// config is loaded, so a hand-edited value is refused with a clear
    /// message); see the branch space in `docs/architecture.md`.
    pub fn check_branch_space(&self) -> Result<()> {
        if self.branch_headroom_percent > 90 {
            return Err(Error::Config(format!(
                "branch_headroom_percent is {}: give 0 (no limit on branches) to 90",
                self.branch_headroom_percent
            )));
        }
        Ok(())
    }

    /// The container limits this config asks for.
    pub fn container_limits(&self) -> crate::runtime::ContainerLimits {
        crate::runtime::ContainerLimits {
            memory: self.docker_memory,
            pids: self.docker_pids,
        }
    }

    /// Refuse container limits too small for PostgreSQL to run (0 = no
    /// limit is fine).
    pub fn check_container_limits(&self) -> Result<()> {
        if self.docker_memory != 0 && self.docker_memory < MIN_DOCKER_MEMORY {
            return Err(Error::Config(format!(
                "docker memory limit {} bytes is too small for PostgreSQL: give at least {} MiB (e.g. 512M), or 0 for no limit",
                self.docker_memory,
                MIN_DOCKER_MEMORY >> 20
            )));
        }
        if i64::try_from(self.docker_memory).is_err() {
            return Err(Error::Config(format!(
                "docker memory limit {} bytes is larger than Docker accepts: give a size up to 8E, or 0 for no limit",
                self.docker_memory
            )));
        }
        if self.docker_pids != 0 && self.docker_pids < MIN_DOCKER_PIDS {
            return Err(Error::Config(format!(
                "docker pids limit {} is too small for PostgreSQL (about a dozen background processes plus one per connection): give at least {MIN_DOCKER_PIDS}, or 0 for no limit",
                self.docker_pids
            )));
        }
        if i64::try_from(self.docker_pids).is_err() {
            return Err(Error::Config(format!(
                "docker pids limit {} is larger than Docker accepts: give at most {}, or 0 for no limit",
                self.docker_pids,
                i64::MAX
            )));
        }
        Ok(())
    }
}

/// Paths inside a betterpg home.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// A home rooted at `root` (not created or checked).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Home { root: root.into() }
    }

    /// The home directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// `HOME/config.json`.
    pub fn config_path(&self) -> PathBuf {
        self.root.join("config.json")
    }
    /// `HOME/catalog.json`.
    pub fn catalog_path(&self) -> PathBuf {
        self.root.join("catalog.json")
    }
    /// `HOME/catalog.lock`.
    pub fn lock_path(&self) -> PathBuf {
        self.root.join("catalog.lock")
    }
    /// `HOME/secrets`.
    pub fn secrets_dir(&self) -> PathBuf {
        self.root.join("secrets")
    }
    /// `HOME/logs`.
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }
    /// Server log of `name`.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.logs_dir().join(format!("{name}.log"))
    }
    /// Password file of `name`.
    pub fn secret_path(&self, name: &str) -> PathBuf {
        self.secrets_dir().join(name)
    }
    /// `HOME/secrets/NAME.roles`: the passwords a branch's roles got when
    /// its credentials were rotated (JSON, 0600; see [`RoleSecrets`]).
    pub fn roles_path(&self, name: &str) -> PathBuf {
        self.secrets_dir().join(format!("{name}{ROLES_SUFFIX}"))
    }
    /// `HOME/replicas`: one directory per replica (`follow`).
    pub fn replicas_dir(&self) -> PathBuf {
        self.root.join("replicas")
    }
    /// `HOME/replicas/NAME`: the replica's own directory, outside its data
    /// directory (so no branch's clone carries it), owned by the server's
    /// OS user, 0700: its passfile for the primary, its `pg_hba.conf` and
    /// its Unix socket (how betterpg logs in to the read-only replica).
    pub fn replica_dir(&self, name: &str) -> PathBuf {
        self.replicas_dir().join(name)
    }
    /// The replica's passfile (libpq format, 0600): the password for the
    /// primary, read by `pg_basebackup` and the replica's WAL receiver,
    /// never written into a configuration file or a command line.
    pub fn upstream_passfile(&self, name: &str) -> PathBuf {
        self.replica_dir(name).join("pgpass")
    }

    /// Read the config; a missing one means `init` has not run here.
    pub fn load_config(&self) -> Result<Config> {
        let path = self.config_path();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotInitialized {
                    home: self.root.clone(),
                })
            }
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        let cfg: Config = serde_json::from_str(&text).map_err(|e| {
            Error::Config(format!(
                "{} is not a valid betterpg config ({e}); fix or remove it",
                path.display()
            ))
        })?;
        if cfg.version > CONFIG_VERSION {
            return Err(Error::Config(format!(
                "{} was written by a newer betterpg (config version {}, this build reads {}); upgrade bpg",
                path.display(),
                cfg.version,
                CONFIG_VERSION
            )));
        }
        cfg.check_branch_space()
            .and_then(|()| cfg.check_container_limits())
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        Ok(cfg)
    }

    /// Write the config atomically.
    pub fn save_config(&self, cfg: &Config) -> Result<()> {
        let text = serde_json::to_string_pretty(cfg).map_err(|e| Error::Internal(e.to_string()))?;
        write_atomic(&self.config_path(), text.as_bytes(), 0o644)
    }

    /// Create the home's directories with safe permissions.
    pub fn ensure_dirs(&self) -> Result<()> {
        for (dir, mode) in [(self.root.clone(), 0o755), (self.secrets_dir(), 0o700)] {
            fs::create_dir_all(&dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
            fs::set_permissions(&dir, fs::Permissions::from_mode(mode))
                .map_err(|e| Error::io(format!("chmod {}", dir.display()), e))?;
        }
        // 0755 whatever the umask: servers (another OS user) write their
        // logs here.
        let logs = self.logs_dir();
        fs::create_dir_all(&logs)
            .map_err(|e| Error::io(format!("creating {}", logs.display()), e))?;
        fs::set_permissions(&logs, fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::io(format!("chmod {}", logs.display()), e))?;
        Ok(())
    }

    /// Store a password, readable only by the owner.
    pub fn write_secret(&self, name: &str, password: &str) -> Result<()> {
        write_atomic(&self.secret_path(name), password.as_bytes(), 0o600)
    }

    /// Read a stored password. Only what logs in to a server needs it
    /// (start, branch, url); a missing file is an error that names it and
    /// says how to get going again.
    pub fn read_secret(&self, name: &str) -> Result<String> {
        let p = self.secret_path(name);
        fs::read_to_string(&p)
            .map(|s| s.trim().to_string())
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    return Error::NotFound {
                        what: "password file",
                        name: p.display().to_string(),
                        hint: format!(
                            ": betterpg needs it to log in to {name:?} (stop, status and destroy work without it). Restore it from a backup of {dir} (the password on one line, mode 0600), or write a new password there and set the same one on the server (ALTER ROLE postgres PASSWORD ..., as a superuser)",
                            dir = self.secrets_dir().display()
                        ),
                    };
                }
                Error::io(
                    format!("reading the password of {name:?} from {}", p.display()),
                    e,
                )
            })
    }

    /// Remove the stored secrets of `name` (missing is fine): its password,
    /// for a source its masking key (`NAME.mask-key`), for a rotated
    /// branch its role passwords (`NAME.roles`).
    pub fn remove_secret(&self, name: &str) {
        let _ = fs::remove_file(self.secret_path(name));
        let _ = fs::remove_file(self.secrets_dir().join(format!("{name}.mask-key")));
        self.remove_roles(name);
    }

    /// Store the role passwords of a branch whose credentials were
    /// rotated, readable only by the owner (written whole, atomically).
    pub fn write_roles(&self, name: &str, roles: &RoleSecrets) -> Result<()> {
        let text = serde_json::to_vec_pretty(roles).map_err(|e| Error::Internal(e.to_string()))?;
        write_atomic(&self.roles_path(name), &text, 0o600)
    }

    /// The role passwords of `name`; `None` when it has none (its
    /// credentials were kept). A file that is not what [`Self::write_roles`]
    /// wrote is an error naming it.
    pub fn read_roles(&self, name: &str) -> Result<Option<RoleSecrets>> {
        let p = self.roles_path(name);
        let f = match fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&p)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("reading {}", p.display()), e)),
        };
        serde_json::from_reader(std::io::BufReader::new(f))
            .map(Some)
            .map_err(|e| {
                Error::Config(format!(
                    "{} is not a betterpg role password file ({e}): restore it from a backup, or reset the branch to rotate its passwords again",
                    p.display()
                ))
            })
    }

    /// Remove the role passwords of `name` (missing is fine).
    pub fn remove_roles(&self, name: &str) {
        let _ = fs::remove_file(self.roles_path(name));
    }
}

/// A directory on the way to a path that the server's OS user may not
/// search (enter), found by [`unreachable_dir`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreachable {
    /// The directory without search permission for the user.
    pub dir: PathBuf,
    /// Its permission bits.
    pub mode: u32,
    /// Its owner's uid.
    pub owner: u32,
}

/// Whether a user with `uid` and `groups` may search a directory with
/// `mode` owned by `owner`:`group`, by its permission bits (POSIX: the
/// owner class decides for the owner, the group class for members, else
/// the other class). Pure logic, so it is unit tested; ACLs are not read.
pub fn may_search(mode: u32, owner: u32, group: u32, uid: u32, groups: &[u32]) -> bool {
    if uid == 0 {
        return mode & 0o111 != 0;
    }
    if owner == uid {
        mode & 0o100 != 0
    } else if groups.contains(&group) {
        mode & 0o010 != 0
    } else {
        mode & 0o001 != 0
    }
}

/// The first existing directory on the way from `/` to `target` (`target`
/// itself too when `include_self`) that `user` cannot search, or `None`.
/// Components that do not exist yet are skipped: betterpg creates them.
///
/// Why: servers run as `user`, and PostgreSQL (`initdb`, the postmaster,
/// the server log) needs to reach its data directory and log file through
/// every ancestor; a 0700 directory owned by root on the way (e.g. a
/// `mktemp -d` home) only fails later with a bare "Permission denied".
pub fn unreachable_dir(
    user: &OsUser,
    target: &Path,
    include_self: bool,
) -> Result<Option<Unreachable>> {
    use std::os::unix::fs::MetadataExt;
    let groups: Vec<u32> = std::ffi::CString::new(user.name.clone())
        .ok()
        .and_then(|n| nix::unistd::getgrouplist(&n, nix::unistd::Gid::from_raw(user.gid)).ok())
        .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_else(|| vec![user.gid]);
    let mut dirs: Vec<&Path> = target.ancestors().collect();
    dirs.reverse();
    if !include_self {
        dirs.pop();
    }
    for dir in dirs {
        let md = match fs::metadata(dir) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(format!("reading {}", dir.display()), e)),
        };
        if !md.is_dir() {
            continue;
        }
        if !may_search(md.mode(), md.uid(), md.gid(), user.uid, &groups) {
            return Ok(Some(Unreachable {
                dir: dir.to_path_buf(),
                mode: md.mode() & 0o7777,
                owner: md.uid(),
            }));
        }
    }
    Ok(None)
}

/// Fail with what to change when `user` cannot reach `target` (`what`
/// names it, e.g. "the log directory"); see [`unreachable_dir`].
pub fn check_reachable(user: &OsUser, target: &Path, include_self: bool, what: &str) -> Result<()> {
    let Some(u) = unreachable_dir(user, target, include_self)? else {
        return Ok(());
    };
    let owner = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(u.owner))
        .ok()
        .flatten()
        .map(|o| o.name)
        .unwrap_or_else(|| u.owner.to_string());
    Err(Error::Config(format!(
        "the servers' OS user {name} cannot reach {what} {target}: {dir} (owner {owner}, mode {mode:04o}) does not let {name} search it. \
         Run `chmod o+x {dir}` (or otherwise give {name} search permission on it), or use a --home (and storage) under directories {name} can reach",
        name = user.name,
        target = target.display(),
        dir = u.dir.display(),
        mode = u.mode,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_space_settings_out_of_range_are_refused() {
        let mut c = Config::new("p/b");
        assert!(c.check_branch_space().is_ok());
        c.branch_headroom_percent = 91;
        let e = c.check_branch_space().unwrap_err().to_string();
        assert!(e.contains("0 (no limit on branches) to 90"), "{e}");
    }

    #[test]
    fn secrets_are_private_and_config_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path().join("h"));
        assert_eq!(home.load_config().unwrap_err().code(), 5);
        home.ensure_dirs().unwrap();
        home.write_secret("db", "pw").unwrap();
        let mode = fs::metadata(home.secret_path("db"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let dmode = fs::metadata(home.secrets_dir())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dmode & 0o777, 0o700);
        assert_eq!(home.read_secret("db").unwrap(), "pw");
        let cfg = Config::new("tank/b");
        home.save_config(&cfg).unwrap();
        assert_eq!(home.load_config().unwrap(), cfg);
    }

    #[test]
    fn search_permission_by_class() {
        // owner class decides for the owner, even when others may search
        assert!(!may_search(0o601, 100, 100, 100, &[100]));
        assert!(may_search(0o700, 100, 100, 100, &[]));
        // group class for members
        assert!(may_search(0o710, 0, 50, 100, &[50]));
        assert!(!may_search(0o701, 0, 50, 100, &[50]));
        // other class for everyone else
        assert!(!may_search(0o700, 0, 0, 100, &[100]));
        assert!(may_search(0o711, 0, 0, 100, &[100]));
        assert!(may_search(0o1777, 0, 0, 100, &[]));
    }

    #[test]
    fn newer_or_corrupt_config_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        fs::write(home.config_path(), "{not json").unwrap();
        assert_eq!(home.load_config().unwrap_err().code(), 6);
        let mut cfg = Config::new("t/b");
        cfg.version = 99;
        fs::write(home.config_path(), serde_json::to_string(&cfg).unwrap()).unwrap();
        let e = home.load_config().unwrap_err();
        assert!(e.to_string().contains("newer"), "{e}");
    }

    #[test]
    fn container_limits_default_and_bounds() {
        // A config written before the limits existed gets the defaults.
        let mut v = serde_json::to_value(Config::new("t/b")).unwrap();
        let o = v.as_object_mut().unwrap();
        o.remove("docker_memory");
        o.remove("docker_pids");
        let old: Config = serde_json::from_value(v).unwrap();
        assert_eq!(
            (old.docker_memory, old.docker_pids),
            (DEFAULT_DOCKER_MEMORY, DEFAULT_DOCKER_PIDS)
        );
        assert_eq!(
            old.container_limits(),
            crate::runtime::ContainerLimits::default()
        );
        let mut cfg = Config::new("t/b");
        for (m, p, ok) in [
            (0, 0, true),
            (MIN_DOCKER_MEMORY, MIN_DOCKER_PIDS, true),
            (MIN_DOCKER_MEMORY - 1, 100, false),
            (1 << 30, MIN_DOCKER_PIDS - 1, false),
            (u64::MAX, 100, false),
            (1 << 30, u64::MAX, false),
        ] {
            cfg.docker_memory = m;
            cfg.docker_pids = p;
            let r = cfg.check_container_limits();
            assert_eq!(r.is_ok(), ok, "{m} {p}: {r:?}");
            if let Err(e) = r {
                assert_eq!(e.kind_name(), "config", "{e}");
                assert!(e.to_string().contains("0 for no limit"), "{e}");
            }
        }
    }
}
