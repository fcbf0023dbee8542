//! The command line: every command and option `bpg` accepts (clap).

use std::path::PathBuf;

use betterpg_core::Mode;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};

/// Production-safe PostgreSQL branching on ZFS.
#[derive(Parser, Debug)]
#[command(name = "bpg", version, about, long_about = None)]
pub struct Cli {
    /// Directory holding betterpg's config, catalog, secrets and logs.
    #[arg(
        long,
        global = true,
        env = "BPG_HOME",
        default_value = "/var/lib/betterpg"
    )]
    pub home: PathBuf,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// The command.
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// The commands.
// Parsed once per process: the size of `Init`'s many options costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Set up a home: use a ZFS dataset, or create a file-backed pool.
    Init(InitArgs),
    /// Check this machine and home: storage backend and why, ZFS flavour,
    /// PostgreSQL binaries, OS user. Exits non-zero when something is missing.
    Doctor,
    /// Create a new, started, empty database.
    Create(CreateArgs),
    /// Branch a database (or branch): a new read-write server on a ZFS clone.
    Branch(BranchArgs),
    /// Follow a remote primary as a local streaming standby (a replica) to
    /// branch production without touching it.
    Follow(FollowArgs),
    /// Throw a branch's changes away: branch its parent again under the same
    /// name and port (or the named snapshot --to SRC@NAME).
    Reset(ResetArgs),
    /// Roll a branch made with --rewindable back to how it was made (its
    /// rewind point): same name, port and password; much faster than
    /// reset, which branches the parent's current state again.
    Rewind(NameArg),
    /// Take a named snapshot of a database or branch (branch it later with
    /// `bpg branch SRC@NAME dev`); `--prune` applies retention; `destroy
    /// SRC@NAME` removes one.
    Snapshot(SnapshotCmd),
    /// List named snapshots: time, mode, space held, dependent branches.
    Snapshots(SnapshotsArgs),
    /// Show databases and branches as a tree, with pool usage.
    Status(StatusArgs),
    /// Print the connection URL of a database or branch (or, with --role,
    /// of one of a rotated branch's roles).
    Url(UrlArgs),
    /// Start a stopped database or branch.
    Start(NameArg),
    /// Stop a database or branch (fast shutdown).
    Stop(NameArg),
    /// Destroy a database or branch with its dataset, snapshot and server.
    Destroy(DestroyArgs),
    /// Register a running PostgreSQL that betterpg did not create (its data
    /// directory, pg_wal and tablespaces on ZFS datasets of the home's
    /// pool) so that it can be branched; betterpg never starts, stops or
    /// changes it.
    Attach(AttachArgs),
    /// Forget an attached cluster (it is not touched); refused while it
    /// has branches unless --force, which destroys the branches.
    Detach(DetachArgs),
    /// Find and remove what betterpg made that no complete database or
    /// branch owns (left by a bpg process that was killed mid-way).
    Gc(GcArgs),
    /// Show the server log.
    Logs(LogsArgs),
    /// Show or change a database's or branch's settings: masking policy,
    /// credentials, expiry, idle stop, snapshot and WAL retention.
    Config(ConfigArgs),
    /// Protect a database or branch: destroy, reset and expiry are
    /// refused, even with --force, and gc never removes what it owns.
    Protect(NameArg),
    /// Lift the protection of a database or branch.
    Unprotect(NameArg),
    /// Show the audit log: who created, exposed (url), reset or destroyed
    /// which copy, when, and how it ended.
    Audit(AuditArgs),
    /// List the columns of a database or branch whose name or sampled
    /// values look personal (email, phone, name, address, birth date,
    /// IBAN, card number, IP) and that no masking rule covers. Exits
    /// non-zero when one is found.
    MaskCheck(MaskCheckArgs),
    /// Print the SQL a masking rules file compiles to (what a branch runs
    /// after its masking SQL files), the source's key shown as a
    /// placeholder, never the key.
    MaskSql(MaskSqlArgs),
    /// Run the schedule: snapshots by policy and pruning, expiry, idle
    /// stop, watching replicas; a pass every --interval (--once: one pass,
    /// for cron or a systemd timer). One daemon per home; logs JSON lines.
    Daemon(DaemonArgs),
}

/// `bpg daemon`.
#[derive(Args, Debug)]
pub struct DaemonArgs {
    /// One pass, then exit (non-zero when an action failed); with --json
    /// the pass report instead of the log lines.
    #[arg(long)]
    pub once: bool,
    /// Time between passes, e.g. 60s, 5m.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "60s",
        conflicts_with = "once"
    )]
    pub interval: String,
    /// Only say what would be done.
    #[arg(long)]
    pub dry_run: bool,
}

/// `bpg init`.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// Existing pool and path for betterpg's datasets (e.g. tank/betterpg).
    #[arg(long, conflicts_with_all = ["pool_file", "size"])]
    pub dataset: Option<String>,
    /// Create a pool on this (new, sparse) file.
    #[arg(long, requires = "size")]
    pub pool_file: Option<PathBuf>,
    /// Size of the pool file (e.g. 10G).
    #[arg(long)]
    pub size: Option<String>,
    /// Name of the pool to create with --pool-file.
    #[arg(long, default_value = "betterpg")]
    pub pool: String,
    /// PostgreSQL bin directory (default: found on the machine).
    #[arg(long)]
    pub pg_bin: Option<PathBuf>,
    /// Unprivileged OS user the servers run as (default: postgres when root).
    #[arg(long)]
    pub os_user: Option<String>,
    /// Address the servers listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub listen: String,
    /// Port range to allocate from, e.g. 54320-54999.
    #[arg(long)]
    pub ports: Option<String>,
    /// Storage backend: auto (the linked libzfs where usable, else the
    /// zfs command), libzfs or cli.
    #[arg(long)]
    pub storage_backend: Option<String>,
    /// Runtime `create` uses by default: native (processes) or docker.
    #[arg(long)]
    pub runtime: Option<String>,
    /// Image `create` uses by default with --runtime docker.
    #[arg(long, requires = "runtime")]
    pub image: Option<String>,
    /// Percent of the pool kept for databases, which branches together
    /// can never use, so a branch filling its space cannot stop a
    /// database (0-90; 0: no limit). Default 20.
    #[arg(long, value_name = "PERCENT")]
    pub branch_headroom: Option<u8>,
    /// Space guaranteed to every branch, so it can still write when
    /// other branches filled the rest (e.g. 64M; 0: none). Default 64M.
    #[arg(long, value_name = "SIZE")]
    pub branch_reserve: Option<String>,
    /// Memory limit of every container of the docker runtime (e.g.
    /// 4G; at least 64M; 0: none). Default 2G.
    #[arg(long, value_name = "SIZE")]
    pub docker_memory: Option<String>,
    /// Most processes/threads in every container of the docker runtime
    /// (at least 32; 0: none). Default 1024.
    #[arg(long, value_name = "N")]
    pub docker_pids: Option<u64>,
    /// ZFS record size of the datasets (default 8K, PostgreSQL's page:
    /// a branch changing one page copies one record).
    #[arg(long, value_name = "SIZE")]
    pub recordsize: Option<String>,
    /// A ZFS property of the datasets, replacing betterpg's default
    /// (recordsize=8K, atime=off, compression=lz4 or on); repeatable.
    /// Keys: recordsize, compression, atime, logbias, primarycache,
    /// secondarycache, xattr, redundant_metadata.
    #[arg(long = "zfs-property", value_name = "KEY=VALUE")]
    pub zfs_property: Vec<String>,
}

/// `bpg create`.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Name of the database.
    pub name: String,
    /// PostgreSQL bin directory for this database.
    #[arg(long)]
    pub pg_bin: Option<PathBuf>,
    /// Required PostgreSQL major version.
    #[arg(long)]
    pub pg_version: Option<u32>,
    /// How to run it: native (a process on this machine) or docker (a
    /// container; its branches run as containers too).
    #[arg(long, default_value = "native")]
    pub runtime: String,
    /// Container image for --runtime docker (default betterpg/postgres:15,
    /// built by scripts/build-image.sh; never pulled).
    #[arg(long)]
    pub image: Option<String>,
}

/// `bpg branch`.
#[derive(Args, Debug)]
pub struct BranchArgs {
    /// Database or branch to branch from.
    pub source: String,
    /// Name of the new branch.
    pub name: String,
    /// How the source is snapshotted.
    #[command(flatten)]
    pub snapshot: SnapshotArgs,
    /// Runtime of the branch (default: its source's), e.g. docker.
    #[arg(long)]
    pub runtime: Option<String>,
    /// Container image of the branch (default: its source's, or the
    /// runtime's default image).
    #[arg(long)]
    pub image: Option<String>,
    /// Branch the source as it was at this point, replayed from its
    /// retained WAL (`bpg config SRC --retain-wal D`): a timestamp with an
    /// offset (2026-12-03 16:40:00+00, 2026-12-03T16:40:00Z) or an LSN
    /// (0/16B3748). The branch holds exactly what was committed by then.
    #[arg(long, value_name = "TIMESTAMP|LSN")]
    pub at: Option<String>,
    /// Masking SQL run on the branch before it gets a TCP port, in ONE
    /// transaction (repeatable, in order; a directory means its *.sql in
    /// name order). A failing statement destroys the branch; the error
    /// names the file, line and statement.
    #[arg(long, value_name = "FILE")]
    pub mask: Vec<PathBuf>,
    /// Masking rules (TOML: per schema.table.column null, a value, hash,
    /// email, name, phone; truncate per table; docs/masking.md), compiled
    /// to SQL run after the --mask files in the same transaction
    /// (repeatable). See the SQL with `bpg mask-sql FILE`.
    #[arg(long, value_name = "FILE")]
    pub mask_rules: Vec<PathBuf>,
    /// Keep every object, role and setting but no rows: every table is
    /// emptied before the branch gets a TCP port.
    #[arg(long)]
    pub schema_only: bool,
    /// Branch without the source's masking policy (`bpg config SRC
    /// --mask`); refused when the source forbids it (--forbid-unmasked).
    #[arg(long)]
    pub unmasked: bool,
    /// What the branch's roles do with their source's passwords: rotate
    /// (new passwords, stored 0600 in HOME/secrets/NAME.roles; `bpg url
    /// NAME --role ROLE`) or keep. Default: the source's setting
    /// (`bpg config SRC --credentials`), else rotate for a branch of a
    /// replica or attached cluster, keep for a database; a branch of a
    /// rotated branch always rotates.
    #[arg(long, value_name = "rotate|keep", value_parser = parse_credentials)]
    pub credentials: Option<betterpg_core::Credentials>,
    /// Branching a replica: how long to wait for it to replay what the
    /// primary acknowledged before the call (e.g. 30s, 2m; default 30s).
    #[arg(long, value_name = "DURATION", conflicts_with = "no_wait")]
    pub wait_timeout: Option<String>,
    /// Branching a replica: do not wait; branch what it has replayed (the
    /// report says which position and time that is).
    #[arg(long)]
    pub no_wait: bool,
    /// Time to live, e.g. 8h, 30m, 7d: `bpg daemon` destroys the branch
    /// (its own branches first) this long after it was made.
    #[arg(long, value_name = "DURATION")]
    pub ttl: Option<String>,
    /// The process the branch lives for (e.g. a test run's, `$$` in a
    /// shell script): once it is gone, `bpg gc` destroys the branch.
    #[arg(long, value_name = "PID")]
    pub owner_pid: Option<u32>,
}

/// `bpg follow`.
#[derive(Args, Debug)]
pub struct FollowArgs {
    /// Name of the replica.
    pub name: String,
    /// The primary: a libpq URL or key=value string for a role with
    /// REPLICATION (postgresql://USER[:PASSWORD]@HOST:PORT/postgres).
    /// With --rebuild: the stored one unless given.
    #[arg(long, value_name = "URL", required_unless_present = "rebuild")]
    pub from: Option<String>,
    /// A file whose first line is the password (else the URL's, else
    /// PGPASSFILE's). Stored 0600 for the replica; never printed.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// A physical replication slot on the primary (created, or reused
    /// when it exists): the primary keeps the WAL the replica has not
    /// received, also while the replica is down.
    #[arg(long, value_name = "NAME")]
    pub slot: Option<String>,
    /// Local PostgreSQL bin directory (default: found for the primary's
    /// major version).
    #[arg(long)]
    pub pg_bin: Option<PathBuf>,
    /// Rebuild the existing replica NAME: a new base backup of the
    /// (current) primary takes its place; its branches keep running.
    #[arg(long)]
    pub rebuild: bool,
    /// Policies for its branches.
    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// `bpg reset`.
#[derive(Args, Debug)]
pub struct ResetArgs {
    /// The branch.
    pub name: String,
    /// Reset to this named snapshot (SOURCE@NAME) instead of the parent's
    /// current state; SOURCE becomes the branch's parent.
    #[arg(long, value_name = "SRC@NAME")]
    pub to: Option<String>,
    /// Change the branch's credentials policy (default: the one it was
    /// made with); rotate gives its roles new passwords again.
    #[arg(long, value_name = "rotate|keep", value_parser = parse_credentials)]
    pub credentials: Option<betterpg_core::Credentials>,
    /// How the parent is snapshotted.
    #[command(flatten)]
    pub snapshot: SnapshotArgs,
}

/// The options `branch` and `reset` share.
#[derive(Args, Debug)]
pub struct SnapshotArgs {
    /// How to snapshot a running source: application-consistent (backup
    /// mode around the snapshot; the default) or crash-consistent
    /// (CHECKPOINT + snapshot, no backup mode).
    #[arg(long, value_name = "MODE", value_parser = mode_parser())]
    pub mode: Option<Mode>,
    /// Shorthand for --mode crash-consistent.
    #[arg(long, conflicts_with = "mode")]
    pub fast: bool,
    /// Most pool space the branch may use (e.g. 10G); protects the source
    /// and other branches from a branch that fills the pool.
    #[arg(long)]
    pub quota: Option<String>,
    /// Take a rewind point as the branch is made (one snapshot), so that
    /// `bpg rewind NAME` rolls it back to it in a fraction of a branch's
    /// time (a reset keeps it).
    #[arg(long)]
    pub rewindable: bool,
}

impl SnapshotArgs {
    /// The mode asked for: `--fast` is `--mode crash-consistent`; neither
    /// is the default mode.
    pub fn mode(&self) -> Mode {
        if self.fast {
            Mode::CrashConsistent
        } else {
            self.mode.unwrap_or_default()
        }
    }
}

/// `--mode`: the core's mode names, listed in `--help` and in the error
/// for another value.
fn mode_parser() -> impl TypedValueParser<Value = Mode> {
    PossibleValuesParser::new(Mode::ALL.map(|m| m.as_str())).try_map(|s| s.parse::<Mode>())
}

/// `bpg snapshot`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct SnapshotCmd {
    /// `destroy SRC@NAME`.
    #[command(subcommand)]
    pub sub: Option<SnapshotSub>,
    /// Database or branch to snapshot (with --prune or --schedule: only
    /// this one; default every one).
    pub source: Option<String>,
    /// Name of the snapshot (default: the UTC time, YYYYMMDD-HHMMSS;
    /// only snapshots named so are removed by retention).
    #[arg(long, conflicts_with_all = ["prune", "schedule"])]
    pub name: Option<String>,
    /// How to snapshot a running source: application-consistent (backup
    /// mode around the snapshot; the default) or crash-consistent.
    #[arg(long, value_name = "MODE", value_parser = mode_parser(), conflicts_with_all = ["prune", "schedule"])]
    pub mode: Option<Mode>,
    /// Shorthand for --mode crash-consistent.
    #[arg(long, conflicts_with_all = ["mode", "prune", "schedule"])]
    pub fast: bool,
    /// Apply retention (the source's keep_last, keep_hourly, keep_daily
    /// settings): remove automatic snapshots they do not keep, never one a
    /// branch was cloned from.
    #[arg(long, conflicts_with = "schedule")]
    pub prune: bool,
    /// One pass of the schedule (as `bpg daemon` runs it, or a cron
    /// job): take the snapshots the policies say are due, then prune.
    #[arg(long)]
    pub schedule: bool,
    /// With --prune or --schedule: only say what would be done.
    #[arg(long)]
    pub dry_run: bool,
}

/// `bpg snapshot destroy`.
#[derive(Subcommand, Debug)]
pub enum SnapshotSub {
    /// Destroy a named snapshot (refused while branches were cloned from
    /// it, unless --force, which destroys those branches too).
    Destroy(SnapshotDestroyArgs),
}

/// `bpg snapshot destroy`.
#[derive(Args, Debug)]
pub struct SnapshotDestroyArgs {
    /// The snapshot, SOURCE@NAME.
    pub snapshot: String,
    /// Also destroy the branches cloned from it (and their branches).
    #[arg(long)]
    pub force: bool,
}

/// `bpg snapshots`.
#[derive(Args, Debug)]
pub struct SnapshotsArgs {
    /// Only this database's or branch's.
    pub source: Option<String>,
}

/// `bpg status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Only this database or branch.
    pub name: Option<String>,
}

/// `bpg config`: each option given changes that setting; none shows them.
/// `none` clears a setting.
#[derive(Args, Debug)]
pub struct ConfigArgs {
    /// Database or branch.
    pub name: String,
    /// Mask every branch of it with this SQL file, or a directory's *.sql
    /// in name order (repeat; replaces the list; `none` clears it).
    #[arg(long, value_name = "FILE")]
    pub mask: Vec<String>,
    /// Mask every branch of it with these rules, TOML (repeat; replaces
    /// the list; `none` clears it).
    #[arg(long, value_name = "FILE")]
    pub mask_rules: Vec<String>,
    /// Refuse `bpg branch --unmasked` of it.
    #[arg(long, conflicts_with = "allow_unmasked")]
    pub forbid_unmasked: bool,
    /// Allow `bpg branch --unmasked` of it again.
    #[arg(long)]
    pub allow_unmasked: bool,
    /// Role passwords on its branches: rotate, keep, or none (the default
    /// for its kind).
    #[arg(long, value_name = "POLICY")]
    pub credentials: Option<String>,
    /// Time to live, e.g. 8h (none: no expiry).
    #[arg(long, value_name = "DURATION")]
    pub ttl: Option<String>,
    /// Stop it after this long without client connections, e.g. 30m.
    #[arg(long, value_name = "DURATION")]
    pub idle_stop: Option<String>,
    /// Keep one named snapshot per hour for this many hours.
    #[arg(long, value_name = "N")]
    pub keep_hourly: Option<String>,
    /// Keep one named snapshot per day for this many days.
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<String>,
    /// Keep the newest N named snapshots.
    #[arg(long, value_name = "N")]
    pub keep_last: Option<String>,
    /// Keep its WAL this long, for branches at a point in time, e.g. 24h
    /// (a database or a replica, from its next start; not an attached
    /// cluster).
    #[arg(long, value_name = "DURATION")]
    pub retain_wal: Option<String>,
    /// shared_buffers of its branches (of a branch: its own too, from its
    /// next start), e.g. 128M (none: the small default, 32M).
    #[arg(long, value_name = "SIZE")]
    pub branch_shared_buffers: Option<String>,
    /// max_connections of its branches (of a branch: its own too, from its
    /// next start), 10-10000 (none: the small default, 25).
    #[arg(long, value_name = "N")]
    pub branch_max_connections: Option<String>,
}

impl ConfigArgs {
    /// The changes asked for, as `(key, value)` pairs in the order of the
    /// settings (the library parses the values).
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut p: Vec<(&'static str, String)> = Vec::new();
        p.extend(self.mask.iter().map(|v| ("mask", v.clone())));
        p.extend(self.mask_rules.iter().map(|v| ("mask_rules", v.clone())));
        if self.forbid_unmasked {
            p.push(("forbid_unmasked", "true".into()));
        }
        if self.allow_unmasked {
            p.push(("forbid_unmasked", "false".into()));
        }
        for (k, v) in [
            ("credentials", &self.credentials),
            ("ttl", &self.ttl),
            ("idle_stop", &self.idle_stop),
            ("keep_hourly", &self.keep_hourly),
            ("keep_daily", &self.keep_daily),
            ("keep_last", &self.keep_last),
            ("retain_wal", &self.retain_wal),
            ("branch_shared_buffers", &self.branch_shared_buffers),
            ("branch_max_connections", &self.branch_max_connections),
        ] {
            if let Some(v) = v {
                p.push((k, v.clone()));
            }
        }
        p
    }
}

/// The branch policies a source can be given when it is registered
/// (`follow`, `attach`), as `bpg config` sets them later.
#[derive(Args, Debug, Default)]
pub struct PolicyArgs {
    /// Mask every branch of it with this SQL file, or a directory's *.sql
    /// in name order (repeat).
    #[arg(long, value_name = "FILE")]
    pub mask: Vec<String>,
    /// Mask every branch of it with these rules, TOML (repeat).
    #[arg(long, value_name = "FILE")]
    pub mask_rules: Vec<String>,
    /// Refuse `bpg branch --unmasked` of it.
    #[arg(long)]
    pub forbid_unmasked: bool,
    /// Role passwords on its branches: rotate or keep (default: rotate).
    #[arg(long, value_name = "POLICY")]
    pub credentials: Option<String>,
}

impl PolicyArgs {
    /// The settings asked for, as `(key, value)` pairs (the library parses
    /// the values).
    pub fn pairs(&self) -> Vec<(String, String)> {
        let mut p: Vec<(String, String)> = Vec::new();
        p.extend(self.mask.iter().map(|v| ("mask".into(), v.clone())));
        p.extend(
            self.mask_rules
                .iter()
                .map(|v| ("mask_rules".into(), v.clone())),
        );
        if self.forbid_unmasked {
            p.push(("forbid_unmasked".into(), "true".into()));
        }
        if let Some(c) = &self.credentials {
            p.push(("credentials".into(), c.clone()));
        }
        p
    }
}

/// A command taking one database or branch.
#[derive(Args, Debug)]
pub struct NameArg {
    /// Database or branch.
    pub name: String,
}

/// `bpg url`.
#[derive(Args, Debug)]
pub struct UrlArgs {
    /// Database or branch.
    pub name: String,
    /// The URL of this role of a branch whose credentials were rotated,
    /// with the password the rotation gave it (refused for a branch that
    /// kept its source's passwords, which betterpg does not know).
    #[arg(long, value_name = "ROLE")]
    pub role: Option<String>,
}

/// `--credentials rotate|keep` (the settings' one parser and messages).
fn parse_credentials(s: &str) -> Result<betterpg_core::Credentials, String> {
    let mut settings = betterpg_core::Settings::default();
    settings
        .apply("credentials", s)
        .map_err(|e| e.to_string())?;
    settings
        .credentials
        .ok_or_else(|| format!("'{s}': give rotate or keep"))
}

/// `bpg destroy`.
#[derive(Args, Debug)]
pub struct DestroyArgs {
    /// Database or branch.
    pub name: String,
    /// Also destroy its branches, and snapshots or datasets under it
    /// that betterpg did not make (refused without it, naming them).
    #[arg(long)]
    pub force: bool,
}

/// `bpg attach`.
#[derive(Args, Debug)]
pub struct AttachArgs {
    /// Name to give it in betterpg.
    pub name: String,
    /// Its data directory on this machine.
    #[arg(long)]
    pub pgdata: PathBuf,
    /// libpq URL (or key=value string) of the running server, for a role
    /// with what branching needs (docs/sources.md: a superuser, or the
    /// grants the error lists). The password is stored 0600, never printed.
    #[arg(long)]
    pub url: String,
    /// File holding the role's password (instead of one in the URL).
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// PostgreSQL bin directory for its branches (default: the home's, or
    /// one of the server's major version found on this machine).
    #[arg(long)]
    pub pg_bin: Option<PathBuf>,
    /// Policies for its branches.
    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// `bpg detach`.
#[derive(Args, Debug)]
pub struct DetachArgs {
    /// The attached cluster.
    pub name: String,
    /// Destroy its branches first (the cluster itself is never touched).
    #[arg(long)]
    pub force: bool,
}

/// `bpg gc`.
#[derive(Args, Debug)]
pub struct GcArgs {
    /// Only list what would be removed.
    #[arg(long)]
    pub dry_run: bool,
}

/// `bpg audit`.
#[derive(Args, Debug)]
pub struct AuditArgs {
    /// Only events at or after this: a duration back from now (30m, 8h,
    /// 7d), a time (2026-12-03T16:00:00Z), a date (2026-12-03) or Unix
    /// seconds.
    #[arg(long, value_name = "TIME|DURATION")]
    pub since: Option<String>,
}

/// `bpg mask-check`.
#[derive(Args, Debug)]
pub struct MaskCheckArgs {
    /// The database or branch to check (it must be running).
    pub source: String,
    /// A masking rules file (TOML): the columns it names count as covered.
    #[arg(long, value_name = "FILE")]
    pub mask_rules: Option<std::path::PathBuf>,
    /// Rows sampled per table (default 200, at most 10000).
    #[arg(long, value_name = "N", default_value_t = 0, hide_default_value = true)]
    pub sample_rows: u32,
}

/// `bpg mask-sql`.
#[derive(Args, Debug)]
pub struct MaskSqlArgs {
    /// The masking rules file (TOML).
    pub file: PathBuf,
    /// The database or branch whose key (its root source's) the SQL would
    /// use: named in the placeholder.
    #[arg(long, value_name = "SRC")]
    pub source: Option<String>,
}

/// `bpg logs`.
#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Database or branch.
    pub name: String,
    /// Keep printing new lines.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines.
    #[arg(long)]
    pub tail: Option<usize>,
}
