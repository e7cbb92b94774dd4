//! Free loopback ports for test servers.
//!
//! A port is found by binding `127.0.0.1:0` and dropping the listener, so
//! another process can take it before the caller binds it: callers that
//! spawn a server retry with a fresh port when it was taken. Ports 6379 and
//! 16379 (the machine's shared Redis and its cluster bus) are never handed
//! out, nor a port that a live harness server of this process holds.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::sync::{Mutex, MutexGuard, OnceLock};

use crate::error::{HarnessError, io_err};

/// The only address test servers bind to.
pub const LOOPBACK: &str = "127.0.0.1";
/// Ports that must never be handed out (the developer's / CI's shared Redis).
const FORBIDDEN_PORTS: [u16; 2] = [6379, 16379];

/// Ports held by live harness servers of this process (including killed
/// ones, whose port stays reserved for a restart).
fn reserved_ports() -> MutexGuard<'static, HashSet<u16>> {
    static RESERVED: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    RESERVED
        .get_or_init(|| Mutex::new(HashSet::new()))
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn os_free_port() -> Result<u16, HarnessError> {
    let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
        .map_err(io_err("binding 127.0.0.1:0 to find a free port"))?;
    let port = listener
        .local_addr()
        .map_err(io_err(
            "reading the local address of a 127.0.0.1:0 listener",
        ))?
        .port();
    Ok(port)
}

/// Whether `127.0.0.1:{port}` can be bound right now.
pub fn port_is_bindable(port: u16) -> bool {
    TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// Returns a currently free port on 127.0.0.1 (bind port 0, read it, drop the
/// listener). Never 6379 and never a port held by a live harness server.
pub fn free_port() -> Result<u16, HarnessError> {
    for _ in 0..64 {
        let port = os_free_port()?;
        if !FORBIDDEN_PORTS.contains(&port) && !reserved_ports().contains(&port) {
            return Ok(port);
        }
    }
    Err(HarnessError::NoFreePort(
        "64 candidates were all reserved".into(),
    ))
}

/// Picks and reserves a free port, plus `port + offset` when `companion`
/// is `Some(offset)` (a Redis cluster node's bus port). Released by
/// [`release`].
pub(crate) fn reserve(companion: Option<u16>) -> Result<Vec<u16>, HarnessError> {
    for _ in 0..128 {
        let port = free_port()?;
        let mut ports = vec![port];
        if let Some(offset) = companion {
            let Some(other) = port.checked_add(offset) else {
                continue;
            };
            if FORBIDDEN_PORTS.contains(&other) || !port_is_bindable(other) {
                continue;
            }
            ports.push(other);
        }
        let mut reserved = reserved_ports();
        if ports.iter().any(|p| reserved.contains(p)) {
            continue;
        }
        reserved.extend(ports.iter().copied());
        return Ok(ports);
    }
    Err(HarnessError::NoFreePort(
        "128 candidates were reserved, unusable or had a busy companion port".into(),
    ))
}

/// Gives back ports taken by [`reserve`]; empties `ports`.
pub(crate) fn release(ports: &mut Vec<u16>) {
    if ports.is_empty() {
        return;
    }
    let mut reserved = reserved_ports();
    for port in ports.drain(..) {
        reserved.remove(&port);
    }
}

/// Whether a live harness server of this process holds `port`.
pub fn is_reserved(port: u16) -> bool {
    reserved_ports().contains(&port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_is_bindable_and_not_6379() {
        let port = free_port().unwrap();
        assert_ne!(port, 6379);
        assert!(port_is_bindable(port));
    }

    #[test]
    fn companion_ports_are_reserved_together() {
        let mut ports = reserve(Some(10_000)).unwrap();
        assert_eq!(ports.len(), 2);
        assert_eq!(ports[1], ports[0] + 10_000);
        assert!(is_reserved(ports[0]) && is_reserved(ports[1]));
        let copy = ports.clone();
        release(&mut ports);
        assert!(ports.is_empty());
        assert!(!is_reserved(copy[0]) && !is_reserved(copy[1]));
    }
}
