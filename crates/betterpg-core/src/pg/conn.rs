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
        format!(
            "postgresql://{}:{}@{}:{}/{}",
            pct(&self.user),
            pct(&self.password),
            self.host,
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

    /// Open a connection; the connection task runs on the current runtime
    /// and ends when the returned client is dropped.
    pub async fn connect(&self) -> Result<Client> {
        let (client, conn) = self.config().connect(NoTls).await.map_err(|e| {
            let base = Error::from(e);
            Error::Postgres(format!(
                "cannot connect to {}:{} as {}: {}",
                self.host,
                self.port,
                self.user,
                base.to_string().trim_start_matches("postgres: ")
            ))
        })?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection closed: {e}");
            }
        });
        Ok(client)
    }

    /// Wait until a real query answers (not merely the port accepting).
    pub async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.connect().await {
                Ok(c) => match c.simple_query("SELECT 1").await {
                    Ok(_) => return Ok(()),
                    Err(e) => Error::from(e).to_string(),
                },
                Err(e) => e.to_string(),
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
