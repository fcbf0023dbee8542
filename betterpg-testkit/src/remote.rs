//! A remote primary for the `follow` tests: a PostgreSQL server in a
//! network namespace of its own, reached over a veth pair at its own
//! address (a real network stack, not loopback), on a plain directory (not
//! ZFS). It can be stopped, cut off (the link taken down), replaced by a
//! promoted standby of itself (a failover), or by another cluster at the
//! same address. Everything is removed on drop (servers stopped, the
//! namespace and its link deleted), also when a test fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::env::{pg_bin_dir, port_base, postgres_ids};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Password of the superuser `postgres` and of the roles below.
const PASSWORD: &str = "remote-pw";

/// The role with REPLICATION that replicas log in as.
pub const REPL_USER: &str = "rep";
/// A role without REPLICATION (allowed by pg_hba for replication too).
pub const PLAIN_USER: &str = "plain";
/// A role with REPLICATION that pg_hba does not let in for replication.
pub const NO_HBA_USER: &str = "nohba";

fn run(what: &str, cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({cmd:?}): {}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One server of a [`RemotePrimary`]'s namespace.
#[derive(Debug)]
struct Server {
    data: PathBuf,
    port: u16,
}

/// A PostgreSQL primary in its own network namespace.
#[derive(Debug)]
pub struct RemotePrimary {
    /// Namespace name.
    pub ns: String,
    /// Host side of the veth pair.
    veth: String,
    /// The primary's address (inside the namespace).
    pub addr: String,
    /// The host's address on the link (what the primary's pg_hba lets in).
    pub host_addr: String,
    /// Port the primary listens on.
    pub port: u16,
    /// Its PostgreSQL bin directory.
    pub bin: PathBuf,
    /// PostgreSQL major version.
    pub major: u32,
    servers: Vec<Server>,
    dir: tempfile::TempDir,
}

impl RemotePrimary {
    /// A new namespace `<prefix><pid><n>` with its link, and an initdb'd,
    /// started PostgreSQL `major` listening at the namespace's address on
    /// a port of this binary's range (`BPG_TEST_PORT_BASE` + 390..399),
    /// with the roles [`REPL_USER`], [`PLAIN_USER`], [`NO_HBA_USER`].
    pub fn start(prefix: &str, major: u32) -> RemotePrimary {
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "a remote primary needs root (network namespaces)"
        );
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let tag = format!("{}{}", std::process::id() % 10_000, n);
        let ns = format!("{prefix}{tag}");
        let veth = format!("{prefix}{tag}h");
        assert!(veth.len() <= 15, "link name {veth:?} is too long");
        // A killed run of this very process id may have left them.
        let _ = Command::new("ip").args(["netns", "delete", &ns]).output();
        let _ = Command::new("ip").args(["link", "delete", &veth]).output();
        let third = (port_base() / 100) % 256;
        let fourth = (n % 60) * 4;
        let host_addr = format!("10.123.{third}.{}", fourth + 1);
        let addr = format!("10.123.{third}.{}", fourth + 2);
        let peer = format!("{prefix}{tag}n");
        run(
            "ip netns add",
            Command::new("ip").args(["netns", "add", &ns]),
        );
        let me = RemotePrimary {
            ns: ns.clone(),
            veth: veth.clone(),
            addr: addr.clone(),
            host_addr: host_addr.clone(),
            port: port_base() + 390 + (n % 5) as u16,
            bin: pg_bin_dir(major),
            major,
            servers: Vec::new(),
            dir: tempfile::Builder::new()
                .prefix("bpg-remote-")
                .tempdir()
                .unwrap(),
        };
        run(
            "veth",
            Command::new("ip").args(["link", "add", &veth, "type", "veth", "peer", "name", &peer]),
        );
        run(
            "veth into ns",
            Command::new("ip").args(["link", "set", &peer, "netns", &ns]),
        );
        run(
            "host addr",
            Command::new("ip").args(["addr", "add", &format!("{host_addr}/30"), "dev", &veth]),
        );
        run(
            "host link up",
            Command::new("ip").args(["link", "set", &veth, "up"]),
        );
        me.in_ns(
            "ns addr",
            &["ip", "addr", "add", &format!("{addr}/30"), "dev", &peer],
        );
        me.in_ns("ns link up", &["ip", "link", "set", &peer, "up"]);
        me.in_ns("ns lo up", &["ip", "link", "set", "lo", "up"]);
        std::fs::set_permissions(
            me.dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let (uid, gid) = postgres_ids();
        nix::unistd::chown(me.dir.path(), Some(uid.into()), Some(gid.into())).unwrap();
        let mut me = me;
        let data = me.initdb("primary");
        me.servers.push(Server {
            data,
            port: me.port,
        });
        me.start_server(0);
        let sql = format!(
            "CREATE ROLE {REPL_USER} LOGIN REPLICATION PASSWORD '{PASSWORD}'; \
             CREATE ROLE {PLAIN_USER} LOGIN PASSWORD '{PASSWORD}'; \
             CREATE ROLE {NO_HBA_USER} LOGIN REPLICATION PASSWORD '{PASSWORD}';"
        );
        me.psql(&sql);
        me
    }

    /// Run `ip ARGS` on the namespace's network (`ip -n`).
    fn in_ns(&self, what: &str, args: &[&str]) -> String {
        run(
            what,
            Command::new("ip").args(["-n", &self.ns]).args(&args[1..]),
        )
    }

    /// A command run as `postgres` in the namespace's network. `nsenter
    /// --net` enters the network namespace only: `ip netns exec` would also
    /// give the server a mount namespace of its own, holding a copy of
    /// every ZFS mount of the moment, which then cannot be unmounted
    /// ("dataset is busy"). `runuser` switches to `postgres` after it.
    fn pg_command(&self, tool: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.ns))
            .args(["runuser", "-u", "postgres", "--"])
            .arg(self.bin.join(tool))
            .current_dir("/");
        c
    }

    /// A new cluster in `<dir>/<name>` (initdb, settings, pg_hba).
    fn initdb(&self, name: &str) -> PathBuf {
        let (uid, gid) = postgres_ids();
        let data = self.dir.path().join(name);
        let pw = self.dir.path().join(format!("{name}.pw"));
        std::fs::write(&pw, PASSWORD).unwrap();
        nix::unistd::chown(&pw, Some(uid.into()), Some(gid.into())).unwrap();
        run(
            "initdb",
            self.pg_command("initdb")
                .arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "-A", "scram-sha-256", "--locale=C", "-k"])
                .arg(format!("--pwfile={}", pw.display())),
        );
        self.configure(&data);
        data
    }

    fn configure(&self, data: &Path) {
        let h = &self.host_addr;
        std::fs::write(
            data.join("pg_hba.conf"),
            format!(
                "local all all scram-sha-256\n\
                 host all postgres {h}/32 scram-sha-256\n\
                 host all postgres 127.0.0.1/32 scram-sha-256\n\
                 host replication {REPL_USER} {h}/32 scram-sha-256\n\
                 host replication {REPL_USER} 127.0.0.1/32 scram-sha-256\n\
                 host replication {PLAIN_USER} {h}/32 scram-sha-256\n\
                 host all {PLAIN_USER} {h}/32 scram-sha-256\n"
            ),
        )
        .unwrap();
        let mut conf = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        conf.push_str(&format!(
            "\nlisten_addresses = '{},127.0.0.1'\nunix_socket_directories = ''\nwal_level = replica\nmax_wal_senders = 10\ncheckpoint_timeout = 30s\n",
            self.addr
        ));
        std::fs::write(data.join("postgresql.conf"), conf).unwrap();
        let (uid, gid) = postgres_ids();
        for f in ["pg_hba.conf", "postgresql.conf"] {
            nix::unistd::chown(&data.join(f), Some(uid.into()), Some(gid.into())).unwrap();
        }
    }

    fn set_port(&self, data: &Path, port: u16) {
        let mut conf = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        conf.push_str(&format!("\nport = {port}\n"));
        std::fs::write(data.join("postgresql.conf"), conf).unwrap();
    }

    fn start_server(&self, i: usize) {
        let s = &self.servers[i];
        self.set_port(&s.data, s.port);
        run(
            "pg_ctl start",
            self.pg_command("pg_ctl")
                .args(["start", "-w", "-t", "60", "-D"])
                .arg(&s.data)
                .arg("-l")
                .arg(s.data.with_extension("log")),
        );
    }

    fn stop_server(&self, i: usize, mode: &str) {
        let s = &self.servers[i];
        let _ = self
            .pg_command("pg_ctl")
            .args(["stop", "-w", "-m", mode, "-D"])
            .arg(&s.data)
            .output();
    }

    /// Run SQL on the current primary as `postgres` (inside the namespace).
    pub fn psql(&self, sql: &str) -> String {
        run(
            "psql",
            self.pg_command("psql")
                .env("PGPASSWORD", PASSWORD)
                .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
                .args([
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                ])
                .args(["-c", sql]),
        )
        .trim()
        .to_string()
    }

    /// URL of the superuser `postgres`, from the host (across the link).
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// URL of `user` (password included), from the host.
    pub fn url_for(&self, user: &str) -> String {
        format!(
            "postgresql://{user}:{PASSWORD}@{}:{}/postgres",
            self.addr, self.port
        )
    }

    /// URL of `user` without a password.
    pub fn url_without_password(&self, user: &str) -> String {
        format!("postgresql://{user}@{}:{}/postgres", self.addr, self.port)
    }

    /// The password every role has.
    pub fn password(&self) -> &'static str {
        PASSWORD
    }

    /// Stop the primary (fast shutdown).
    pub fn stop(&self) {
        self.stop_server(0, "fast");
    }

    /// Start it again.
    pub fn restart(&self) {
        self.start_server(0);
    }

    /// Take the link down: the primary runs but cannot be reached.
    pub fn disconnect(&self) {
        run(
            "link down",
            Command::new("ip").args(["link", "set", &self.veth, "down"]),
        );
    }

    /// Bring the link back up.
    pub fn reconnect(&self) {
        run(
            "link up",
            Command::new("ip").args(["link", "set", &self.veth, "up"]),
        );
    }

    /// A failover: a streaming standby of the primary is made (on another
    /// port), the primary stopped, the standby promoted (a new timeline)
    /// and moved to the primary's address and port.
    pub fn failover(&mut self) {
        let data = self
            .dir
            .path()
            .join(format!("standby{}", self.servers.len()));
        let port = self.port + 5;
        run(
            "pg_basebackup for the standby",
            self.pg_command("pg_basebackup")
                .env("PGPASSWORD", PASSWORD)
                .arg("-D")
                .arg(&data)
                .args(["-X", "stream", "-R", "-c", "fast", "-h", "127.0.0.1"])
                .args(["-p", &self.port.to_string(), "-U", REPL_USER]),
        );
        self.servers.push(Server { data, port });
        let i = self.servers.len() - 1;
        self.start_server(i);
        // Let it catch up, then stop the old primary (a fast shutdown
        // sends everything to the standby first).
        std::thread::sleep(std::time::Duration::from_secs(1));
        self.stop_server(0, "fast");
        run(
            "promote",
            self.pg_command("pg_ctl")
                .args(["promote", "-w", "-D"])
                .arg(&self.servers[i].data),
        );
        self.stop_server(i, "fast");
        self.servers.swap(0, i);
        self.servers[0].port = self.port;
        self.start_server(0);
    }

    /// Replace the primary by another cluster (another system identifier)
    /// at the same address and port.
    pub fn replace_with_new_cluster(&mut self) {
        self.stop_server(0, "fast");
        let data = self.initdb(&format!("other{}", self.servers.len()));
        self.servers.push(Server {
            data,
            port: self.port,
        });
        let i = self.servers.len() - 1;
        self.servers.swap(0, i);
        self.start_server(0);
        self.psql(&format!(
            "CREATE ROLE {REPL_USER} LOGIN REPLICATION PASSWORD '{PASSWORD}'"
        ));
    }

    /// `checkpoints_req` (PostgreSQL 17+: `num_requested`) of the primary.
    pub fn requested_checkpoints(&self) -> i64 {
        let sql = if self.major >= 17 {
            "SELECT num_requested FROM pg_stat_checkpointer"
        } else {
            "SELECT checkpoints_req FROM pg_stat_bgwriter"
        };
        self.psql(sql).parse().unwrap()
    }
}

impl Drop for RemotePrimary {
    fn drop(&mut self) {
        for i in 0..self.servers.len() {
            self.stop_server(i, "immediate");
        }
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.ns])
            .output();
        let _ = Command::new("ip")
            .args(["link", "delete", &self.veth])
            .output();
    }
}
