//! The in-process half of exactly-once delivery: which idempotency keys
//! this process delivered recently.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

/// How many ids [`RecentIds::default`] remembers.
pub const DEFAULT_RECENT_IDS: usize = 65_536;

/// A bounded set of recently delivered ids, oldest forgotten first.
///
/// Without Redis, a relay that delivered a row and failed to mark it (a
/// database error) delivers it again from the same process: this set makes
/// that second delivery a no-op. It lives in memory, so it covers retries
/// within one process, which is all that matters in-process: when the
/// process dies, its sockets disconnect with it.
///
/// ```
/// use broadcast_core::transport::RecentIds;
/// let ids = RecentIds::new(2);
/// assert!(ids.claim("a"));
/// assert!(!ids.claim("a"));
/// ids.release("a"); // delivery failed: may be tried again
/// assert!(ids.claim("a"));
/// ```
#[derive(Debug)]
pub struct RecentIds {
    capacity: usize,
    inner: Mutex<Ids>,
}

#[derive(Debug, Default)]
struct Ids {
    set: HashSet<Box<str>>,
    order: VecDeque<Box<str>>,
}

impl Default for RecentIds {
    fn default() -> Self {
        Self::new(DEFAULT_RECENT_IDS)
    }
}

impl RecentIds {
    /// A set that remembers the last `capacity` ids (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(Ids::default()),
        }
    }

    /// Records `id`; false when it was already there (a duplicate).
    pub fn claim(&self, id: &str) -> bool {
        let mut ids = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if ids.set.contains(id) {
            return false;
        }
        if ids.order.len() >= self.capacity
            && let Some(oldest) = ids.order.pop_front()
        {
            ids.set.remove(&oldest);
        }
        ids.set.insert(id.into());
        ids.order.push_back(id.into());
        true
    }

    /// Forgets `id` after a failed delivery, so that a retry is not
    /// mistaken for a duplicate.
    pub fn release(&self, id: &str) {
        let mut ids = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if ids.set.remove(id) {
            ids.order.retain(|x| &**x != id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_the_oldest_past_capacity() {
        let ids = RecentIds::new(2);
        assert!(ids.claim("a"));
        assert!(ids.claim("b"));
        assert!(ids.claim("c"));
        assert!(ids.claim("a"), "a was the oldest, forgotten");
        assert!(!ids.claim("c"));
    }
}
