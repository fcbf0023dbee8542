//! Ports: the one place where a database's or branch's port is chosen and
//! checked.
//!
//! A port is taken from the home's range ([`Config::port_start`] ..=
//! [`Config::port_end`]): the lowest one no catalog entry holds and nothing
//! listens on. Between that choice and the server's bind another program
//! can take it (any outgoing connection may use a port of the ephemeral
//! range as its local port), so a start that fails on a taken port moves to
//! another one (such a failure is [`Error::is_port_taken`]).

use crate::error::{Error, PortErrorKind, Result};
use crate::home::Config;

/// Pick the lowest port in `start..=end` that no entry holds and that `probe`
/// says is free (e.g. bindable). Pure logic, unit-tested.
pub fn allocate_port(
    start: u16,
    end: u16,
    used: &[u16],
    mut probe: impl FnMut(u16) -> bool,
) -> Result<u16> {
    for port in start..=end {
        if !used.contains(&port) && probe(port) {
            return Ok(port);
        }
    }
    Err(Error::Port {
        kind: PortErrorKind::Exhausted,
        port: None,
        message: format!(
            "no free port in {start}-{end}: destroy unused branches or widen the range in config.json"
        ),
    })
}

/// A port of `cfg`'s range that is not in `used` (the ports the catalog's
/// entries hold; call with the catalog locked) and nothing listens on.
pub fn free_port(cfg: &Config, used: &[u16]) -> Result<u16> {
    let listen = &cfg.listen_address;
    allocate_port(cfg.port_start, cfg.port_end, used, |p| {
        port_is_free(listen, p)
    })
}

/// True when nothing listens on `addr:port` (we can bind it).
pub fn port_is_free(addr: &str, port: u16) -> bool {
    let host = connect_host(addr);
    std::net::TcpListener::bind((host.as_str(), port)).is_ok()
}

/// The address clients use to reach a server listening on `listen`.
pub fn connect_host(listen: &str) -> String {
    match listen {
        "*" | "0.0.0.0" | "" => "127.0.0.1".into(),
        "::" => "::1".into(),
        other => other
            .split(',')
            .next()
            .unwrap_or("127.0.0.1")
            .trim()
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_lowest_free_port() {
        assert_eq!(allocate_port(100, 105, &[100, 101], |_| true).unwrap(), 102);
        assert_eq!(allocate_port(100, 105, &[100], |p| p != 101).unwrap(), 102);
        assert_eq!(
            allocate_port(100, 101, &[100, 101], |_| true)
                .unwrap_err()
                .code(),
            13
        );
    }

    #[test]
    fn no_free_port_is_an_exhausted_range() {
        let e = allocate_port(100, 101, &[100, 101], |_| true).unwrap_err();
        assert_eq!(e.reason(), Some("exhausted"));
        assert!(
            !e.is_port_taken(),
            "exhausted is not taken: moving does not help"
        );
    }

    #[test]
    fn connect_hosts() {
        assert_eq!(connect_host("127.0.0.1"), "127.0.0.1");
        assert_eq!(connect_host("*"), "127.0.0.1");
        assert_eq!(connect_host("10.0.0.1, 127.0.0.1"), "10.0.0.1");
    }
}
