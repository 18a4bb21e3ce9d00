//! What the nodes say: `CLUSTER NODES` lines and one node's view of the cluster.

use std::collections::BTreeSet;

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeEntry {
    pub id: String,
    pub flags: BTreeSet<String>,
    /// The master's id when this is a replica.
    pub master_id: Option<String>,
    pub slots: Vec<(u16, u16)>,
    /// `[slot->-id]`: slots this node is migrating to `id` (only on the `myself` line).
    pub migrating: Vec<(u16, String)>,
    /// `[slot-<-id]`: slots this node is importing from `id` (only on the `myself` line).
    pub importing: Vec<(u16, String)>,
    /// The link state is `disconnected`: the node cannot reach this peer right now.
    pub disconnected: bool,
}

impl NodeEntry {
    pub fn is_myself(&self) -> bool {
        self.flags.contains("myself")
    }
    pub fn is_replica(&self) -> bool {
        self.flags.contains("slave") || self.flags.contains("replica")
    }
    pub fn is_handshake(&self) -> bool {
        self.flags.contains("handshake")
    }
    /// Known well enough to be a peer: not still handshaking, with an address, linked, and not
    /// suspected or marked failed. Such an entry of a node we just reached is a stale address
    /// (pods restarted with new IPs): MEET tells the cluster where it is now. After every pod
    /// moved, no node can reach any other to mark it `fail`: each has them only `fail?` and
    /// `disconnected` (and for a node timeout not even `fail?`, with `cluster_state:ok`).
    pub fn is_connected_peer(&self) -> bool {
        !self.disconnected
            && !["handshake", "noaddr", "fail", "fail?"]
                .iter()
                .any(|f| self.flags.contains(*f))
    }
    pub fn slot_count(&self) -> usize {
        self.slots
            .iter()
            .map(|&(a, b)| usize::from(b - a) + 1)
            .sum()
    }
    pub fn owns(&self, slot: u16) -> bool {
        self.slots.iter().any(|&(a, b)| (a..=b).contains(&slot))
    }
    /// Every slot it owns, in order.
    pub fn slot_list(&self) -> impl DoubleEndedIterator<Item = u16> + '_ {
        self.slots.iter().flat_map(|&(a, b)| a..=b)
    }
}

/// `[93->-id]` or `[93-<-id]`.
fn parse_marker(field: &str) -> Option<(u16, bool, String)> {
    let inner = field.strip_prefix('[')?.strip_suffix(']')?;
    if let Some((slot, id)) = inner.split_once("->-") {
        return Some((slot.parse().ok()?, true, id.to_string()));
    }
    let (slot, id) = inner.split_once("-<-")?;
    Some((slot.parse().ok()?, false, id.to_string()))
}

/// Parses `CLUSTER NODES`; the line that does not parse is the error.
pub fn parse_nodes(text: &str) -> Result<Vec<NodeEntry>, String> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 8 {
            return Err(line.to_string());
        }
        let mut entry = NodeEntry {
            id: fields[0].to_string(),
            flags: fields[2].split(',').map(str::to_string).collect(),
            master_id: (fields[3] != "-").then(|| fields[3].to_string()),
            disconnected: fields[7] == "disconnected",
            ..NodeEntry::default()
        };
        for s in &fields[8..] {
            if s.starts_with('[') {
                match parse_marker(s) {
                    Some((slot, true, id)) => entry.migrating.push((slot, id)),
                    Some((slot, false, id)) => entry.importing.push((slot, id)),
                    None => return Err(line.to_string()),
                }
                continue;
            }
            let range = match s.split_once('-') {
                Some((a, b)) => (a.parse(), b.parse()),
                None => (s.parse(), s.parse()),
            };
            match range {
                (Ok(a), Ok(b)) => entry.slots.push((a, b)),
                _ => return Err(line.to_string()),
            }
        }
        out.push(entry);
    }
    Ok(out)
}

/// What one node said about itself and the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub id: String,
    /// Every node it knows, itself included.
    pub nodes: Vec<NodeEntry>,
    /// `cluster_state:ok`.
    pub state_ok: bool,
}

impl NodeView {
    pub fn myself(&self) -> Option<&NodeEntry> {
        self.nodes.iter().find(|n| n.is_myself())
    }
    pub fn knows(&self, id: &str) -> bool {
        self.nodes
            .iter()
            .any(|n| n.id == id && (n.is_myself() || n.is_connected_peer()))
    }
    /// A master by its own account (an empty one included).
    pub fn is_master(&self) -> bool {
        self.myself().is_some_and(|m| !m.is_replica())
    }
    /// A master that owns slots, by its own account.
    pub fn owns_slots(&self) -> bool {
        self.myself()
            .is_some_and(|m| !m.is_replica() && !m.slots.is_empty())
    }
    pub fn owns(&self, slot: u16) -> bool {
        self.myself().is_some_and(|m| m.owns(slot))
    }
    pub fn slot_count(&self) -> usize {
        self.myself().map_or(0, NodeEntry::slot_count)
    }
    /// Part of a cluster: it knows another node. A reset or fresh node knows only itself.
    pub fn is_joined(&self) -> bool {
        self.nodes.iter().any(|n| !n.is_myself())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cluster_nodes() {
        let text = "07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,host-4 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected\n\
            e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460 5462 [5461->-abc] [16000-<-def]\n";
        let n = parse_nodes(text).unwrap();
        assert_eq!(n.len(), 2);
        assert!(n[0].is_replica());
        assert!(!n[0].disconnected && n[0].is_connected_peer());
        assert_eq!(
            n[0].master_id.as_deref(),
            Some("e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca")
        );
        assert!(n[1].is_myself());
        assert_eq!(n[1].slots, [(0, 5460), (5462, 5462)]);
        assert_eq!(n[1].slot_count(), 5462);
        assert_eq!(n[1].migrating, [(5461, "abc".to_string())]);
        assert_eq!(n[1].importing, [(16000, "def".to_string())]);
        assert!(n[1].owns(5462) && !n[1].owns(5461));
        assert!(parse_nodes("garbage").is_err());
        // Every pod restarted elsewhere: the peer is at its old address, suspected, unlinked.
        let stale =
            "07c3 127.0.0.1:30004@31004 master,fail? - 1426238316232 0 4 disconnected 0-5460";
        let n = parse_nodes(stale).unwrap();
        assert!(n[0].disconnected && !n[0].is_connected_peer());
        assert_eq!(n[0].slots, [(0, 5460)]);
        let bad_marker = "e7d1 127.0.0.1:30001@31001 myself,master - 0 0 1 connected [x->-abc]";
        assert!(parse_nodes(bad_marker).is_err());
    }
}
