//! The queues' iterators: [`QueueIter`] (blocking, `for x in &queue`) and
//! [`QueueTryIter`] (what is there now), as `std::sync::mpsc::Receiver`'s.

use super::joinable::JoinableQueue;
use super::mpmc::Queue;
use super::simple::SimpleQueue;
use crate::error::{GetError, TryGetError};
use crate::iter::EndsAtError;
use crate::Message;
use std::fmt;

/// A blocking iterator over a queue's items, from [`Queue::iter`] (also
/// [`SimpleQueue::iter`], [`JoinableQueue::iter`] and `for x in &queue`), as
/// `std::sync::mpsc::Receiver::iter`: each `next` waits for an item.
///
/// It ends when `get` fails: normally with [`GetError::Disconnected`] (every producer
/// handle closed or dropped and the queue drained; Python has no such signal, its
/// consumers loop on a sentinel). It also ends at [`GetError::Broken`] (nothing will ever
/// come) and at [`GetError::Decode`] (an item that is not a `T`; that item is dropped,
/// as `get` drops it, and the queue stays usable): an iterator yields plain `T`s, so
/// instead of skipping a bad item silently it stops there, and [`error`](QueueIter::error)
/// tells why it stopped (call `get` in a loop to handle each error yourself). After it has
/// ended it stays ended (it is fused).
///
/// A handle that has [`close`](Queue::close)d itself still counts as no producer, so a
/// consumer that only reads ends once the queue is drained and every other producer is
/// gone. A consumer holding an open producer handle of its own (e.g. the parent that
/// created the queue and never closed it) never sees `Disconnected`: close it first.
pub struct QueueIter<'a, T> {
    q: &'a Queue<T>,
    end: EndsAtError<GetError>,
}

impl<T> fmt::Debug for QueueIter<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueIter")
            .field("queue", self.q)
            .field("error", &self.end.error())
            .finish()
    }
}

impl<T> QueueIter<'_, T> {
    /// Why the iteration ended (`None` while it has not): [`GetError::Disconnected`] for
    /// the normal end.
    pub fn error(&self) -> Option<&GetError> {
        self.end.error()
    }
}

impl<T: Message> Iterator for QueueIter<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        let src = &self.q;
        self.end.step(|| src.get())
    }
}

impl<T: Message> std::iter::FusedIterator for QueueIter<'_, T> {}

/// A non-blocking iterator over the items a queue holds now, from [`Queue::try_iter`]
/// (also [`SimpleQueue::try_iter`], [`JoinableQueue::try_iter`]), as
/// `std::sync::mpsc::Receiver::try_iter`: each `next` is a [`Queue::try_get`].
///
/// It ends at the first `try_get` that fails: [`TryGetError::Empty`] (nothing there now, or
/// another consumer is taking an item right now), or any other error, as
/// [`QueueIter`] does; [`error`](QueueTryIter::error) tells which. It never waits, so on
/// an empty queue it yields nothing at once. Items put while it runs may or may not be
/// seen. It is fused: once ended, it stays ended.
pub struct QueueTryIter<'a, T> {
    q: &'a Queue<T>,
    end: EndsAtError<TryGetError>,
}

impl<T> fmt::Debug for QueueTryIter<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueTryIter")
            .field("queue", self.q)
            .field("error", &self.end.error())
            .finish()
    }
}

impl<T> QueueTryIter<'_, T> {
    /// Why the iteration ended (`None` while it has not): [`TryGetError::Empty`] for the
    /// usual end.
    pub fn error(&self) -> Option<&TryGetError> {
        self.end.error()
    }
}

impl<T: Message> Iterator for QueueTryIter<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        let src = &self.q;
        self.end.step(|| src.try_get())
    }
}

impl<T: Message> std::iter::FusedIterator for QueueTryIter<'_, T> {}

impl<T: Message> Queue<T> {
    /// A blocking iterator over the items: each step is a [`get`](Queue::get); it ends at
    /// [`GetError::Disconnected`] (every producer gone, queue drained) or at any other
    /// error, see [`QueueIter`]. `for x in &q` is the same.
    ///
    /// # Examples
    ///
    /// A child produces, the parent iterates to the end:
    ///
    /// ```
    /// use procactor_core::{Process, Queue};
    ///
    /// fn produce(q: Queue<u32>) {
    ///     for i in 0..5 {
    ///         q.put(i).unwrap();
    ///     }
    /// } // the child's handle goes: its producer is gone
    ///
    /// fn main() {
    ///     procactor_core::init();
    ///     let q: Queue<u32> = Queue::new().unwrap();
    ///     let mut child = Process::new(produce, q.clone()).start().unwrap();
    ///     q.close(); // the parent only consumes
    ///     let got: Vec<u32> = q.iter().collect();
    ///     assert_eq!(got, [0, 1, 2, 3, 4]);
    ///     child.join().unwrap();
    /// }
    /// ```
    pub fn iter(&self) -> QueueIter<'_, T> {
        QueueIter {
            q: self,
            end: EndsAtError::new(),
        }
    }

    /// The items there now, without waiting: each step is a [`try_get`](Queue::try_get);
    /// it ends at the first [`TryGetError::Empty`] (or other error), see [`QueueTryIter`].
    ///
    /// # Examples
    ///
    /// ```
    /// use procactor_core::Queue;
    ///
    /// let q: Queue<u32> = Queue::new().unwrap();
    /// assert_eq!(q.try_iter().count(), 0); // empty: nothing, at once
    /// q.put(1).unwrap();
    /// q.put(2).unwrap();
    /// assert_eq!(q.try_iter().collect::<Vec<_>>(), [1, 2]);
    /// ```
    pub fn try_iter(&self) -> QueueTryIter<'_, T> {
        QueueTryIter {
            q: self,
            end: EndsAtError::new(),
        }
    }
}

impl<'a, T: Message> IntoIterator for &'a Queue<T> {
    type Item = T;
    type IntoIter = QueueIter<'a, T>;

    /// As [`Queue::iter`].
    fn into_iter(self) -> QueueIter<'a, T> {
        self.iter()
    }
}

impl<T: Message> SimpleQueue<T> {
    /// As [`Queue::iter`]: a blocking iterator that ends at
    /// [`GetError::Disconnected`] (or any other error, see [`QueueIter`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use procactor_core::SimpleQueue;
    ///
    /// let q: SimpleQueue<String> = SimpleQueue::new().unwrap();
    /// q.put("a".into()).unwrap();
    /// q.put("b".into()).unwrap();
    /// q.close(); // the only producer handle: once drained, the iteration ends
    /// assert_eq!(q.iter().collect::<Vec<_>>(), ["a", "b"]);
    /// ```
    pub fn iter(&self) -> QueueIter<'_, T> {
        self.q.iter()
    }

    /// As [`Queue::try_iter`] (a `SimpleQueue` has no `try_get` of its own, as in
    /// Python; this is the non-blocking way to drain it).
    pub fn try_iter(&self) -> QueueTryIter<'_, T> {
        self.q.try_iter()
    }
}

impl<'a, T: Message> IntoIterator for &'a SimpleQueue<T> {
    type Item = T;
    type IntoIter = QueueIter<'a, T>;

    /// As [`SimpleQueue::iter`].
    fn into_iter(self) -> QueueIter<'a, T> {
        self.iter()
    }
}

impl<T: Message> JoinableQueue<T> {
    /// As [`Queue::iter`]. Each item taken is still an unfinished task: call
    /// [`task_done`](JoinableQueue::task_done) for every item the iterator yields, or
    /// [`join`](JoinableQueue::join) never returns.
    ///
    /// # Examples
    ///
    /// ```
    /// use procactor_core::JoinableQueue;
    ///
    /// let q: JoinableQueue<u32> = JoinableQueue::new().unwrap();
    /// q.put(1).unwrap();
    /// q.put(2).unwrap();
    /// q.close();
    /// let mut sum = 0;
    /// for x in &q {
    ///     sum += x;
    ///     q.task_done().unwrap(); // still needed for every item
    /// }
    /// assert_eq!(sum, 3);
    /// q.join(); // every task is done
    /// ```
    pub fn iter(&self) -> QueueIter<'_, T> {
        self.q.iter()
    }

    /// As [`Queue::try_iter`]; each item taken still needs its
    /// [`task_done`](JoinableQueue::task_done).
    pub fn try_iter(&self) -> QueueTryIter<'_, T> {
        self.q.try_iter()
    }
}

impl<'a, T: Message> IntoIterator for &'a JoinableQueue<T> {
    type Item = T;
    type IntoIter = QueueIter<'a, T>;

    /// As [`JoinableQueue::iter`].
    fn into_iter(self) -> QueueIter<'a, T> {
        self.iter()
    }
}
