//! Read-your-own-writes state: which session a request belongs to, and, by time window, until
//! when its reads stay on the primary after it writes.

use super::position::SessionPositions;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use tokio::time::Instant;

/// How many sessions the tables tell apart. Sessions share a slot by hash; a shared slot can
/// only keep a read on the primary longer, never send it to a stale replica.
pub(crate) const SLOTS: usize = 1 << 14;

/// The read-your-own-writes mode, with its per-session table.
pub(crate) enum ReadYourWrites {
    /// After a write, the session reads from the primary for a while.
    Window(SessionWindows),
    /// After a write, the session reads from replicas that have replayed it.
    Position(SessionPositions),
}

/// Which slot of the tables a session has; `None` while read-your-own-writes is off.
pub(crate) struct Sessions {
    hasher: std::hash::RandomState,
    pub(crate) mode: Option<ReadYourWrites>,
}

impl Sessions {
    pub(crate) fn new(mode: Option<ReadYourWrites>) -> Self {
        Sessions {
            hasher: std::hash::RandomState::new(),
            mode,
        }
    }

    pub(crate) fn slot(&self, session: impl Hash) -> Option<usize> {
        self.mode.as_ref()?;
        Some((self.hasher.hash_one(session) as usize) % SLOTS)
    }

    pub(crate) fn windows(&self) -> Option<&SessionWindows> {
        match &self.mode {
            Some(ReadYourWrites::Window(windows)) => Some(windows),
            _ => None,
        }
    }

    pub(crate) fn positions(&self) -> Option<&SessionPositions> {
        match &self.mode {
            Some(ReadYourWrites::Position(positions)) => Some(positions),
            _ => None,
        }
    }
}

/// For each slot of sessions, until when its reads must stay on the primary, in nanoseconds
/// after `epoch` (0: no write yet). Lock-free: one relaxed load per read with a session, one
/// `fetch_max` per write.
pub(crate) struct SessionWindows {
    window: Duration,
    epoch: Instant,
    pinned_until: Box<[AtomicU64]>,
}

impl SessionWindows {
    pub(crate) fn new(window: Duration) -> Self {
        SessionWindows {
            window,
            epoch: Instant::now(),
            pinned_until: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Records a write by the session in `slot`, completed now: its reads go to the primary
    /// for the window from now.
    pub(crate) fn wrote(&self, slot: usize) {
        let until = self
            .nanos_since_epoch(Instant::now())
            .saturating_add(u64::try_from(self.window.as_nanos()).unwrap_or(u64::MAX));
        self.pinned_until[slot].fetch_max(until.max(1), Relaxed);
    }

    /// Whether the session in `slot` wrote within the window. Reads the clock only for
    /// sessions that have written at some point.
    pub(crate) fn pinned(&self, slot: usize) -> bool {
        let until = self.pinned_until[slot].load(Relaxed);
        until != 0 && self.nanos_since_epoch(Instant::now()) < until
    }

    fn nanos_since_epoch(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_write_pins_its_session_for_the_window_only() {
        let sessions = Sessions::new(Some(ReadYourWrites::Window(SessionWindows::new(
            Duration::from_secs(2),
        ))));
        let windows = sessions.windows().unwrap();
        let (alice, bob) = (
            sessions.slot("alice").unwrap(),
            sessions.slot("bob").unwrap(),
        );
        assert!(!windows.pinned(alice));
        windows.wrote(alice);
        assert!(windows.pinned(alice));
        if bob != alice {
            assert!(!windows.pinned(bob), "other sessions are not pinned");
        }
        tokio::time::advance(Duration::from_millis(1999)).await;
        assert!(windows.pinned(alice));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(!windows.pinned(alice), "the window is over");

        let forever = SessionWindows::new(Duration::MAX);
        forever.wrote(0);
        tokio::time::advance(Duration::from_secs(86_400 * 365)).await;
        assert!(
            forever.pinned(0),
            "Duration::MAX saturates: pinned for good"
        );
    }
}
