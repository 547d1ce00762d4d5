//! Locking that outlives a panic.
//!
//! Every lock in the crate guards data that one operation changes whole (a `Vec` push, a
//! field write, a `take`), so a panic while it was held cannot leave the data half-changed,
//! and a poisoned lock is safe to keep using. Refusing it would turn one panic (in a health
//! check, say) into a balancer that panics on every later call.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, poisoned or not.
pub(crate) fn lock<V: ?Sized>(mutex: &Mutex<V>) -> MutexGuard<'_, V> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
