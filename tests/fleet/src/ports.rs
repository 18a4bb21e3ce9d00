//! Free loopback ports: from a base port upwards (predictable URLs for people), or any free one
//! (tests running side by side), taken below the kernel's ephemeral range so an outgoing
//! connection cannot take it between the check and the bind (`sockudo_test_backends::free_port`).

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};

use crate::error::{FleetError, Result};

#[derive(Debug, Default)]
pub struct Ports {
    next: Option<u16>,
    base: u16,
    taken: HashSet<u16>,
}

impl Ports {
    pub fn new(base: Option<u16>) -> Ports {
        Ports {
            next: base,
            base: base.unwrap_or(0),
            taken: HashSet::new(),
        }
    }

    /// A port nobody listens on now and that this allocator has not handed out. The process that
    /// gets it starts right away, so the usual bind-then-close race stays small.
    pub fn take(&mut self) -> Result<u16> {
        loop {
            let candidate = match self.next {
                Some(p) => {
                    self.next = p.checked_add(1);
                    if self.next.is_none() {
                        return Err(FleetError::NoFreePort { from: self.base });
                    }
                    p
                }
                None => sockudo_test_backends::free_port(),
            };
            if self.taken.contains(&candidate) {
                continue;
            }
            if TcpListener::bind((Ipv4Addr::LOCALHOST, candidate)).is_ok() {
                self.taken.insert(candidate);
                return Ok(candidate);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_ports_count_up_and_skip_busy_ones() {
        let busy = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let b = busy.local_addr().unwrap().port();
        let mut ports = Ports::new(Some(b));
        let first = ports.take().unwrap();
        assert!(first > b, "{first} skips the busy {b}");
        assert_eq!(ports.take().unwrap(), first + 1);
    }

    #[test]
    fn ephemeral_ports_are_distinct() {
        let mut ports = Ports::new(None);
        let all: HashSet<u16> = (0..20).map(|_| ports.take().unwrap()).collect();
        assert_eq!(all.len(), 20);
    }
}
