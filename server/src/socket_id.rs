//! Socket ids in Pusher's `N.N` form.

use std::fmt;
use std::str::FromStr;

/// A connection's id. Two integers, so it hashes and compares without a string allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId {
    pub high: u64,
    pub low: u64,
}

/// Pusher's ids are two positive integers of up to 10 digits.
const RANGE: u64 = 10_000_000_000;

impl SocketId {
    pub fn random() -> Self {
        SocketId {
            high: rand::random::<u64>() % RANGE,
            low: rand::random::<u64>() % RANGE,
        }
    }
}

impl fmt::Display for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.high, self.low)
    }
}

/// A `socket_id` that is not `digits.digits`.
#[derive(Debug, thiserror::Error)]
#[error("invalid socket_id {0:?}: expected two integers joined by `.`")]
pub struct InvalidSocketId(pub String);

impl FromStr for SocketId {
    type Err = InvalidSocketId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidSocketId(s.chars().take(64).collect());
        let (h, l) = s.split_once('.').ok_or_else(bad)?;
        let digits =
            |p: &str| !p.is_empty() && p.len() <= 20 && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(h) || !digits(l) {
            return Err(bad());
        }
        Ok(SocketId {
            high: h.parse().map_err(|_| bad())?,
            low: l.parse().map_err(|_| bad())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let id = SocketId::random();
        assert_eq!(id.to_string().parse::<SocketId>().unwrap(), id);
        assert!("1.2.3".parse::<SocketId>().is_err());
        assert!("a.1".parse::<SocketId>().is_err());
        assert!(".1".parse::<SocketId>().is_err());
        assert_eq!("1234.1234".parse::<SocketId>().unwrap().high, 1234);
    }
}
