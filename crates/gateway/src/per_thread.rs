//! Values a serving thread keeps for one owner (a gateway's state, a Redis limiter), such as
//! its own upstream pool or Redis connection. The owner is known by its address, so a thread
//! never hands out another owner's value, and threads that set none fall back to the shared
//! one.

use std::cell::RefCell;
use std::thread::LocalKey;

/// A thread-local slot: the owner's address and its value.
pub(crate) type Slot<T> = RefCell<Option<(usize, T)>>;

fn address<O>(owner: &O) -> usize {
    std::ptr::from_ref(owner) as usize
}

/// This thread's value for `owner`, if the thread set one.
pub(crate) fn get<T: Clone, O>(slot: &'static LocalKey<Slot<T>>, owner: &O) -> Option<T> {
    let me = address(owner);
    slot.with_borrow(|t| match t {
        Some((o, v)) if *o == me => Some(v.clone()),
        _ => None,
    })
}

/// Sets this thread's value for `owner`.
pub(crate) fn set<T, O>(slot: &'static LocalKey<Slot<T>>, owner: &O, value: T) {
    slot.set(Some((address(owner), value)));
}
