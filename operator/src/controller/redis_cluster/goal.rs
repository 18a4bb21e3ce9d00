//! The shape a managed Redis Cluster should have, and how pods map onto it.
//!
//! Pods are laid out in shards: shard `k` is pods `k * (1 + r) .. (k + 1) * (1 + r)` (r replicas
//! per master); its first pod (the primary) starts as the master, the others replicate it. Adding
//! or removing masters adds or removes whole shards at the highest ordinals, which is what a
//! StatefulSet can do, and leaves every other pod's role alone.

use std::ops::Range;

/// Slots of a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// What the cluster should become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Goal {
    /// Shards `0..masters` own the slots; pods of higher shards are departing.
    pub masters: usize,
    /// Pods of a shard after its primary replicate the shard's master.
    pub replicas_per_master: usize,
}

impl Goal {
    pub const fn new(masters: usize, replicas_per_master: usize) -> Goal {
        Goal {
            masters,
            replicas_per_master,
        }
    }

    pub fn shard_size(&self) -> usize {
        1 + self.replicas_per_master
    }

    /// Pods of the goal's shards; pods from here on are departing.
    pub fn pods(&self) -> usize {
        self.masters * self.shard_size()
    }

    pub fn shard_of(&self, pod: usize) -> usize {
        pod / self.shard_size()
    }

    /// The pod that starts as the shard's master.
    pub fn primary(&self, shard: usize) -> usize {
        shard * self.shard_size()
    }

    pub fn shard_pods(&self, shard: usize) -> Range<usize> {
        self.primary(shard)..self.primary(shard + 1)
    }

    /// Shards that `pods` pods make up (departing ones included).
    pub fn shards_in(&self, pods: usize) -> usize {
        pods.div_ceil(self.shard_size())
    }

    /// The slot range shard `k` is given when it is formed: the slots split evenly, the
    /// remainder spread over the last shards.
    pub fn range(&self, k: usize) -> (u16, u16) {
        let m = self.masters as u32;
        let start = (k as u32 * u32::from(SLOTS)) / m;
        let end = ((k as u32 + 1) * u32::from(SLOTS)) / m - 1;
        (start as u16, end as u16)
    }

    /// How many slots shard `k` holds when balanced: the size of its range, none when departing.
    pub fn quota(&self, k: usize) -> usize {
        if k >= self.masters {
            return 0;
        }
        let (a, b) = self.range(k);
        usize::from(b - a) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOAL: Goal = Goal::new(3, 1);

    #[test]
    fn ranges_cover_every_slot_once() {
        assert_eq!(GOAL.range(0), (0, 5460));
        assert_eq!(GOAL.range(1), (5461, 10921));
        assert_eq!(GOAL.range(2), (10922, 16383));
        assert_eq!((0..4).map(|k| GOAL.quota(k)).sum::<usize>(), 16384);
        assert_eq!(GOAL.quota(3), 0);
        let four = Goal { masters: 4, ..GOAL };
        assert_eq!((0..4).map(|k| four.quota(k)).collect::<Vec<_>>(), [4096; 4]);
    }

    #[test]
    fn shards_are_consecutive_pods() {
        assert_eq!(GOAL.pods(), 6);
        assert_eq!(GOAL.shard_pods(1), 2..4);
        assert_eq!(
            (0..8).map(|p| GOAL.shard_of(p)).collect::<Vec<_>>(),
            [0, 0, 1, 1, 2, 2, 3, 3]
        );
        assert_eq!(GOAL.shards_in(8), 4);
        let no_replicas = Goal::new(6, 0);
        assert_eq!(no_replicas.shard_pods(5), 5..6);
    }
}
