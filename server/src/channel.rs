//! Channel kinds and name rules.

/// What a channel name says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    Public,
    Private,
    /// `private-encrypted-`: auth like private; payloads are opaque, client events refused.
    PrivateEncrypted,
    Presence,
    /// `#server-to-user-{id}`: the signed-in user's own channel.
    ServerToUser,
}

/// A channel name, classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelType {
    pub kind: ChannelKind,
    /// Cache channels replay their last event to new subscribers.
    pub cache: bool,
}

pub const SERVER_TO_USER_PREFIX: &str = "#server-to-user-";

impl ChannelType {
    pub fn of(name: &str) -> ChannelType {
        let (kind, rest) = if let Some(rest) = name.strip_prefix("private-encrypted-") {
            (ChannelKind::PrivateEncrypted, rest)
        } else if let Some(rest) = name.strip_prefix("private-") {
            (ChannelKind::Private, rest)
        } else if let Some(rest) = name.strip_prefix("presence-") {
            (ChannelKind::Presence, rest)
        } else if name.starts_with(SERVER_TO_USER_PREFIX) {
            return ChannelType {
                kind: ChannelKind::ServerToUser,
                cache: false,
            };
        } else {
            (ChannelKind::Public, name)
        };
        ChannelType {
            kind,
            cache: rest.starts_with("cache-"),
        }
    }

    /// Private, encrypted and presence channels (cache variants included) need a signature.
    pub fn needs_auth(self) -> bool {
        matches!(
            self.kind,
            ChannelKind::Private | ChannelKind::PrivateEncrypted | ChannelKind::Presence
        )
    }

    pub fn is_presence(self) -> bool {
        self.kind == ChannelKind::Presence
    }

    /// Client events are allowed on private and presence channels only (never encrypted).
    pub fn allows_client_events(self) -> bool {
        matches!(self.kind, ChannelKind::Private | ChannelKind::Presence)
    }
}

/// Why a channel name was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChannelNameError {
    #[error("channel name is empty")]
    Empty,
    #[error("channel name is {len} characters long; the limit is {max}")]
    TooLong { len: usize, max: usize },
    #[error("channel name contains {0:?}; allowed are letters, digits and _ - = @ , . ;")]
    BadChar(char),
}

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '=' | '@' | ',' | '.' | ';')
}

/// Pusher's name rules: `[A-Za-z0-9_\-=@,.;]`, at most `max_len` characters.
pub fn validate_name(name: &str, max_len: usize) -> Result<(), ChannelNameError> {
    if name.is_empty() {
        return Err(ChannelNameError::Empty);
    }
    if name.len() > max_len {
        return Err(ChannelNameError::TooLong {
            len: name.len(),
            max: max_len,
        });
    }
    let body = name.strip_prefix(SERVER_TO_USER_PREFIX).unwrap_or(name);
    match body.chars().find(|c| !allowed(*c)) {
        Some(c) => Err(ChannelNameError::BadChar(c)),
        None if body.is_empty() => Err(ChannelNameError::Empty),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        let t = |n| ChannelType::of(n);
        assert_eq!(
            t("news"),
            ChannelType {
                kind: ChannelKind::Public,
                cache: false
            }
        );
        assert_eq!(
            t("cache-news"),
            ChannelType {
                kind: ChannelKind::Public,
                cache: true
            }
        );
        assert_eq!(t("private-a").kind, ChannelKind::Private);
        assert!(t("private-cache-a").cache && t("private-cache-a").needs_auth());
        assert_eq!(t("private-encrypted-a").kind, ChannelKind::PrivateEncrypted);
        assert!(t("private-encrypted-cache-a").cache);
        assert!(!t("private-encrypted-a").allows_client_events());
        assert!(t("presence-cache-a").is_presence() && t("presence-cache-a").cache);
        assert_eq!(t("#server-to-user-1").kind, ChannelKind::ServerToUser);
        assert!(!t("public-private-a").needs_auth());
    }

    #[test]
    fn names() {
        assert!(validate_name("a-b_c=d@e,f.g;h", 200).is_ok());
        assert!(validate_name("#server-to-user-42", 200).is_ok());
        assert_eq!(validate_name("", 200), Err(ChannelNameError::Empty));
        assert_eq!(
            validate_name("a b", 200),
            Err(ChannelNameError::BadChar(' '))
        );
        assert_eq!(
            validate_name("a#b", 200),
            Err(ChannelNameError::BadChar('#'))
        );
        assert!(matches!(
            validate_name(&"a".repeat(201), 200),
            Err(ChannelNameError::TooLong { .. })
        ));
    }
}
