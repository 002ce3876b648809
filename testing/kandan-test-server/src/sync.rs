//! Locking helper shared by the in-memory stores.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, recovering from poisoning: every critical section in this crate leaves its
/// data consistent, and a panicking test thread must not wedge the whole server.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
