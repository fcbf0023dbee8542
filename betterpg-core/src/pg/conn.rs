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
            tokio::time::sleep(Duration::from_millis(50)).await;
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
