//! [`SimpleQueue`], Python's queue with only `put`, `get`, `is_empty` and `close`.

use super::mpmc::{Queue, QueueBuilder};
use crate::error::{Error, GetError, PutError};
use crate::Message;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Python's `SimpleQueue`: an unbounded-by-count queue with only `put`, `get`,
/// `is_empty` and `close`. `put` waits only while the byte ring is full.
///
/// It is a [`Queue`] underneath (same ring, same rules for `Disconnected` and killed
/// processes); cloneable and passable to children.
///
/// # Examples
///
/// ```
/// use procactor_core::SimpleQueue;
///
/// let q: SimpleQueue<String> = SimpleQueue::new().unwrap();
/// q.put("x".to_string()).unwrap();
/// assert!(!q.is_empty());
/// assert_eq!(q.get().unwrap(), "x");
/// ```
pub struct SimpleQueue<T> {
    pub(super) q: Queue<T>,
}

impl<T> fmt::Debug for SimpleQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SimpleQueue").field(&self.q).finish()
    }
}

impl<T> Clone for SimpleQueue<T> {
    /// Another handle to the same queue (see [`Queue`]'s `Clone`).
    fn clone(&self) -> Self {
        SimpleQueue { q: self.q.clone() }
    }
}

impl<T> Serialize for SimpleQueue<T> {
    /// As [`Queue`]'s `Serialize`.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.q.serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for SimpleQueue<T> {
    /// As [`Queue`]'s `Deserialize`.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(SimpleQueue {
            q: Queue::deserialize(d)?,
        })
    }
}

impl<T: Message> SimpleQueue<T> {
    /// A new, unbounded queue (see [`Queue::new`]): `put` never waits for room.
    ///
    /// # Errors
    ///
    /// The kernel refused the shared memory.
    pub fn new() -> Result<Self, Error> {
        Ok(SimpleQueue { q: Queue::new()? })
    }

    /// Puts `item` (never waits for room: the queue is unbounded, see [`Queue::new`]).
    ///
    /// # Errors
    ///
    /// As [`Queue::put`].
    pub fn put(&self, item: T) -> Result<(), PutError<T>> {
        self.q.put(item)
    }

    /// Takes the next item, waiting for one.
    ///
    /// # Errors
    ///
    /// As [`Queue::get`].
    pub fn get(&self) -> Result<T, GetError> {
        self.q.get()
    }

    /// Whether the queue holds no item (advisory).
    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    /// No more `put` from this handle (see [`Queue::close`]).
    pub fn close(&self) {
        self.q.close();
    }
}

impl<T: Message> QueueBuilder<T> {
    /// Creates a [`SimpleQueue`] with these settings (its `maxsize` should stay 0: a
    /// `SimpleQueue` is unbounded).
    ///
    /// # Errors
    ///
    /// As [`build`](QueueBuilder::build).
    pub fn build_simple(self) -> Result<SimpleQueue<T>, Error> {
        Ok(SimpleQueue { q: self.build()? })
    }
}
