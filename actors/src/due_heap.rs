//! One timer structure for many keys: a min-heap of due times with lazy deletion.
//!
//! Each key has at most one live entry, carrying a generation; rescheduling or
//! removing a key only bumps its generation, and superseded heap entries are skipped
//! when they surface. The scheduler (objectives) and the refresher (OAuth profiles)
//! both keep their due times here and arm one timer for [`DueHeap::next_due`].

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::Hash;

/// Due times (Unix milliseconds) per key, each with a payload handed back when due.
#[derive(Debug)]
pub(crate) struct DueHeap<K, P> {
    /// (due ms, generation, key), earliest first; may hold superseded entries.
    heap: BinaryHeap<Reverse<(i64, u64, K)>>,
    /// The live entry of each scheduled key: its generation and payload.
    live: HashMap<K, (u64, P)>,
    /// Source of generations; only ever grows.
    next_generation: u64,
}

impl<K: Ord + Hash + Clone, P> Default for DueHeap<K, P> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
            live: HashMap::new(),
            next_generation: 0,
        }
    }
}

impl<K: Ord + Hash + Clone, P> DueHeap<K, P> {
    /// Sets `key`'s one entry to fall due at `due_ms`, replacing any earlier entry.
    /// Returns the entry's generation.
    pub(crate) fn schedule(&mut self, key: K, due_ms: i64, payload: P) -> u64 {
        self.next_generation += 1;
        let generation = self.next_generation;
        self.live.insert(key.clone(), (generation, payload));
        self.heap.push(Reverse((due_ms, generation, key)));
        // Superseded entries stay in the heap until they surface; compact it when they
        // outnumber the live ones, so edits cannot grow it without bound.
        if self.heap.len() > 2 * self.live.len() + 1024 {
            let live = &self.live;
            self.heap
                .retain(|Reverse((_, g, k))| live.get(k).is_some_and(|(current, _)| current == g));
        }
        generation
    }

    /// Drops `key`'s entry, if it has one, and returns its payload.
    pub(crate) fn remove(&mut self, key: &K) -> Option<P> {
        self.live.remove(key).map(|(_, payload)| payload)
    }

    /// True while `key` has a live entry.
    pub(crate) fn contains(&self, key: &K) -> bool {
        self.live.contains_key(key)
    }

    /// The generation of `key`'s live entry.
    // Only the tests read it so far; kept as part of the heap's interface.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn generation(&self, key: &K) -> Option<u64> {
        self.live.get(key).map(|(generation, _)| *generation)
    }

    /// How many keys have a live entry.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn len(&self) -> usize {
        self.live.len()
    }

    /// The earliest live due time, dropping superseded entries on the way.
    pub(crate) fn next_due(&mut self) -> Option<i64> {
        while let Some(Reverse((due, generation, key))) = self.heap.peek() {
            if self.live.get(key).is_some_and(|(g, _)| g == generation) {
                return Some(*due);
            }
            self.heap.pop();
        }
        None
    }

    /// Takes the earliest live entry due at or before `now_ms`: its key, due time and
    /// payload. The key has no entry afterwards.
    pub(crate) fn pop_due(&mut self, now_ms: i64) -> Option<(K, i64, P)> {
        loop {
            let due = self.next_due()?;
            if due > now_ms {
                return None;
            }
            let Reverse((due, _, key)) = self.heap.pop()?;
            if let Some((_, payload)) = self.live.remove(&key) {
                return Some((key, due, payload));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heap() -> DueHeap<String, &'static str> {
        DueHeap::default()
    }

    #[test]
    fn entries_come_out_in_due_order_and_only_when_due() {
        let mut h = heap();
        h.schedule("b".into(), 200, "b");
        h.schedule("a".into(), 100, "a");
        h.schedule("c".into(), 300, "c");
        assert_eq!(h.next_due(), Some(100));
        assert_eq!(h.pop_due(99), None);
        assert_eq!(h.pop_due(250), Some(("a".into(), 100, "a")));
        assert_eq!(h.pop_due(250), Some(("b".into(), 200, "b")));
        assert_eq!(h.pop_due(250), None);
        assert_eq!(h.next_due(), Some(300));
        assert_eq!(h.len(), 1);
        assert!(!h.contains(&"a".to_string()));
    }

    #[test]
    fn rescheduling_replaces_the_entry_and_bumps_the_generation() {
        let mut h = heap();
        let first = h.schedule("a".into(), 100, "early");
        let second = h.schedule("a".into(), 500, "late");
        assert!(second > first);
        assert_eq!(h.generation(&"a".to_string()), Some(second));
        assert_eq!(h.len(), 1);
        // The superseded entry at 100 never fires.
        assert_eq!(h.next_due(), Some(500));
        assert_eq!(h.pop_due(400), None);
        assert_eq!(h.pop_due(500), Some(("a".into(), 500, "late")));
        assert_eq!(h.pop_due(i64::MAX), None);
    }

    #[test]
    fn removed_keys_never_fall_due() {
        let mut h = heap();
        h.schedule("a".into(), 100, "a");
        h.schedule("b".into(), 200, "b");
        assert_eq!(h.remove(&"a".to_string()), Some("a"));
        assert_eq!(h.remove(&"a".to_string()), None);
        assert_eq!(h.next_due(), Some(200));
        assert_eq!(h.pop_due(1_000), Some(("b".into(), 200, "b")));
        assert_eq!(h.next_due(), None);
        assert_eq!(h.generation(&"b".to_string()), None);
    }

    #[test]
    fn many_edits_keep_the_heap_bounded() {
        let mut h = heap();
        for i in 0..10_000 {
            h.schedule("a".into(), i, "a");
        }
        assert!(h.heap.len() <= 2 * h.live.len() + 1025, "{}", h.heap.len());
        assert_eq!(h.pop_due(i64::MAX), Some(("a".into(), 9_999, "a")));
    }
}
