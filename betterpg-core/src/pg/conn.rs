//! Connecting to a server betterpg manages.

use std::time::{Duration, Instant};

use tokio_postgres::{Client, Config, NoTls};

use crate::error::{Error, Result};

/// Where and how to reach a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    /// Host or address (`127.0.0.1`).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Role to log in as.
    pub user: String,
    /// Its password.
    pub password: String,
    /// Database to connect to.
    pub dbname: String,
}

impl ConnInfo {
    /// A `postgresql://` URL for clients. Passwords betterpg generates are
    /// alphanumeric; anything else is percent-encoded.
    pub fn url(&self) -> String {
        // An IPv6 literal needs brackets in a URL.
        let host = if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!(
            "postgresql://{}:{}@{}:{}/{}",
            pct(&self.user),
            pct(&self.password),
            host,
            self.port,
            pct(&self.dbname)
        )
    }

    /// A libpq connection URL or `key=value` string (`postgresql://user:pw@host:port/db`,
    /// `host=... user=...`): its first host, port (5432 when none), user,
    /// password (empty when none) and database (the user's name when
    /// none, as libpq). A string that does not parse, or that names no
    /// user or several hosts, is a [`Error::Config`] that never repeats
    /// the string (it may hold a password).
    pub fn parse(url: &str) -> Result<ConnInfo> {
        use std::str::FromStr;
        use tokio_postgres::config::Host;
        let c = Config::from_str(url).map_err(|e| {
            Error::Config(format!(
                "the connection URL does not parse ({e}): give postgresql://USER:PASSWORD@HOST:PORT/DBNAME or a libpq key=value string"
            ))
        })?;
        let host = match c.get_hosts() {
            [] => "127.0.0.1".to_string(),
            [Host::Tcp(h)] => h.clone(),
            [Host::Unix(p)] => p.to_string_lossy().into_owned(),
            _ => {
                return Err(Error::Config(
                    "the connection URL names several hosts: give exactly one".into(),
                ))
            }
        };
        let port = match c.get_ports() {
            [] => 5432,
            [p] => *p,
            _ => {
                return Err(Error::Config(
                    "the connection URL names several ports: give exactly one".into(),
                ))
            }
        };
        let user = c
            .get_user()
            .ok_or_else(|| {
                Error::Config(
                    "the connection URL names no user: give postgresql://USER:PASSWORD@HOST:PORT/DBNAME"
                        .into(),
                )
            })?
            .to_string();
        let password = match c.get_password() {
            Some(p) => String::from_utf8(p.to_vec()).map_err(|_| {
                Error::Config("the password in the connection URL is not UTF-8".into())
            })?,
            None => String::new(),
        };
        let dbname = c.get_dbname().unwrap_or(&user).to_string();
        Ok(ConnInfo {
            host,
            port,
            user,
            password,
            dbname,
        })
    }

    /// A `postgresql://` URL without the password (safe to print and
    /// store); a Unix socket directory goes into `?host=`.
    pub fn url_without_password(&self) -> String {
        if self.host.starts_with('/') {
            format!(
                "postgresql://{}@/{}?host={}&port={}",
                pct(&self.user),
                pct(&self.dbname),
                pct(&self.host),
                self.port
            )
        } else {
            let host = if self.host.contains(':') && !self.host.starts_with('[') {
                format!("[{}]", self.host)
            } else {
                self.host.clone()
            };
            format!(
                "postgresql://{}@{}:{}/{}",
                pct(&self.user),
                host,
                self.port,
                pct(&self.dbname)
            )
        }
    }

    fn config(&self) -> Config {
        let mut c = Config::new();
        c.host(&self.host)
            .port(self.port)
            .user(&self.user)
            .password(&self.password)
            .dbname(&self.dbname)
            .application_name("betterpg")
            .connect_timeout(Duration::from_secs(10));
        c
    }

    async fn connect_raw(&self) -> std::result::Result<Client, tokio_postgres::Error> {
        let (client, conn) = self.config().connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection closed: {e}");
            }
        });
        Ok(client)
    }

    /// Open a connection; the connection task runs on the current runtime
    /// and ends when the returned client is dropped.
    pub async fn connect(&self) -> Result<Client> {
        let (client, conn) = self
            .config()
            .connect(NoTls)
            .await
            .map_err(|e| self.cannot_connect(e))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection closed: {e}");
            }
        });
        Ok(client)
    }

    /// "cannot connect" with the driver's error, keeping its SQLSTATE (a
    /// refused password is class 28) and DETAIL.
    fn cannot_connect(&self, e: tokio_postgres::Error) -> Error {
        Error::from(e).reword(|m| {
            format!(
                "cannot connect to {}:{} as {}: {m}",
                self.host, self.port, self.user
            )
        })
    }

    /// True when a query answers within `timeout`.
    pub async fn answers(&self, timeout: Duration) -> bool {
        let try_once = async {
            match self.connect_raw().await {
                Ok(c) => c.simple_query("SELECT 1").await.is_ok(),
                Err(_) => false,
            }
        };
        tokio::time::timeout(timeout, try_once)
            .await
            .unwrap_or(false)
    }

    /// Wait until a real query answers (not merely the port accepting).
    pub async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.connect_raw().await {
                Ok(c) => match c.simple_query("SELECT 1").await {
                    Ok(_) => return Ok(()),
                    Err(e) => Error::from(e).to_string(),
                },
                Err(e) => match Error::from(e) {
                    // The server answered and refused us: waiting will not help.
                    e if e.is_auth_failure() => {
                        return Err(e.reword(|m| format!(
                            "the server on port {} refuses the stored password for {:?} ({m}): restore the password file under HOME/secrets, or set it on the server with ALTER ROLE {} PASSWORD",
                            self.port, self.user, self.user
                        )));
                    }
                    e => e.to_string(),
                },
            };
            if Instant::now() >= deadline {
                return Err(Error::Timeout(format!(
                    "server on port {} did not answer a query within {}s (last error: {last})",
                    self.port,
                    timeout.as_secs()
                )));
            }
            // Short: a start waits for this (the server is usually ready
            // at the first or second try, right after its pid file says so).
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_print_without_the_password() {
        let c = ConnInfo::parse("postgresql://bk:s%40cret@db.example:6543/app").unwrap();
        assert_eq!(
            (
                c.host.as_str(),
                c.port,
                c.user.as_str(),
                c.password.as_str(),
                c.dbname.as_str()
            ),
            ("db.example", 6543, "bk", "s@cret", "app")
        );
        assert_eq!(
            c.url_without_password(),
            "postgresql://bk@db.example:6543/app"
        );
        let k = ConnInfo::parse("host=/run/postgresql user=u").unwrap();
        assert_eq!(
            (k.port, k.dbname.as_str(), k.password.as_str()),
            (5432, "u", "")
        );
        assert_eq!(
            k.url_without_password(),
            "postgresql://u@/u?host=%2Frun%2Fpostgresql&port=5432"
        );
        for bad in [
            "postgresql://h/db",
            "postgresql://u:topsecret@h1,h2/db",
            "not a url = = =",
        ] {
            let e = ConnInfo::parse(bad).unwrap_err();
            assert!(matches!(e, Error::Config(_)), "{bad}: {e}");
            assert!(!e.to_string().contains("topsecret"), "{e}");
        }
    }

    #[test]
    fn url_is_encoded() {
        let c = ConnInfo {
            host: "127.0.0.1".into(),
            port: 5433,
            user: "postgres".into(),
            password: "a b@c/d".into(),
            dbname: "postgres".into(),
        };
        assert_eq!(
            c.url(),
            "postgresql://postgres:a%20b%40c%2Fd@127.0.0.1:5433/postgres"
        );
    }
}
