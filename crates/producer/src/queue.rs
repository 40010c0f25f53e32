//! The emit queue: bounded, lock-free, and quiet. A push is a few atomic operations and never a
//! system call while the pump is active: the pump looks for work every millisecond while events
//! keep coming, and only after a quiet spell does it park and ask to be woken — so only the
//! first event after a pause pays for waking it. (A tokio channel wakes its receiver on every
//! send that finds it waiting: a futex call of several microseconds on the request path.)

use crossbeam_queue::SegQueue;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// How often an active pump looks for events.
const TICK: Duration = Duration::from_millis(1);
/// Empty looks before the pump parks.
const IDLE_TICKS: u32 = 20;

/// A bounded multi-producer queue for one consumer (the pump).
#[derive(Debug)]
pub(crate) struct EventQueue<T> {
    items: SegQueue<T>,
    len: AtomicUsize,
    capacity: usize,
    parked: AtomicBool,
    wake: Notify,
}

/// Clears the parked flag however the wait ends (it may be cancelled by a `select!`).
struct Unpark<'a>(&'a AtomicBool);

impl Drop for Unpark<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl<T> EventQueue<T> {
    /// A queue of at most `capacity` items.
    pub(crate) fn new(capacity: usize) -> EventQueue<T> {
        EventQueue {
            items: SegQueue::new(),
            len: AtomicUsize::new(0),
            capacity: capacity.max(1),
            parked: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    /// Adds `item`, or hands it back when the queue is full.
    pub(crate) fn push(&self, item: T) -> Result<(), T> {
        if self.len.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.len.fetch_sub(1, Ordering::AcqRel);
            return Err(item);
        }
        self.items.push(item);
        if self.parked.load(Ordering::SeqCst) {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// The oldest item.
    pub(crate) fn pop(&self) -> Option<T> {
        let item = self.items.pop()?;
        self.len.fetch_sub(1, Ordering::AcqRel);
        Some(item)
    }

    /// Items waiting.
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Nothing is waiting.
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Returns once an item may be waiting. `idle` counts empty looks in a row (the caller
    /// keeps it across calls).
    pub(crate) async fn ready(&self, idle: &mut u32) {
        loop {
            if !self.is_empty() {
                *idle = 0;
                return;
            }
            if *idle < IDLE_TICKS {
                tokio::time::sleep(TICK).await;
                *idle += 1;
                continue;
            }
            let _unpark = Unpark(&self.parked);
            self.parked.store(true, Ordering::SeqCst);
            // An item pushed before the flag was seen would not wake us: look once more.
            if !self.is_empty() {
                *idle = 0;
                return;
            }
            self.wake.notified().await;
            *idle = 0;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_hands_the_item_back_and_pops_in_order() {
        let q = EventQueue::new(2);
        assert!(q.push(1).is_ok());
        assert!(q.push(2).is_ok());
        assert_eq!(q.push(3), Err(3));
        assert_eq!(q.pop(), Some(1));
        assert!(q.push(3).is_ok());
        assert_eq!((q.pop(), q.pop(), q.pop()), (Some(2), Some(3), None));
    }

    #[tokio::test]
    async fn a_parked_consumer_is_woken_by_a_push() {
        let q = std::sync::Arc::new(EventQueue::new(8));
        let mut idle = IDLE_TICKS;
        let waiter = {
            let q = q.clone();
            tokio::spawn(async move {
                q.ready(&mut idle).await;
                q.pop()
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        q.push(7).unwrap();
        let got = tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .expect("woken")
            .unwrap();
        assert_eq!(got, Some(7));
        assert!(!q.parked.load(Ordering::SeqCst));
    }
}
