//! Unit tests of the queues (the cross-process ones are in `tests/queue.rs`).

use super::{JoinableQueue, Queue, SimpleQueue};
use crate::codec;
use crate::error::{
    EncodeError, GetError, PutError, PutTimeoutError, TaskDoneError, TryGetError, TryPutError,
};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::marker::PhantomData;
use std::time::Duration;

#[test]
fn values_round_trip_in_order() {
    let q: Queue<(u64, String)> = Queue::with_capacity_bytes(128).unwrap();
    let t = {
        let q = q.clone();
        std::thread::spawn(move || {
            for i in 0..2000u64 {
                q.put((i, "x".repeat((i % 300) as usize))).unwrap();
            }
        })
    };
    for i in 0..2000u64 {
        let (n, s) = q.get_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!((n, s.len()), (i, (i % 300) as usize));
    }
    t.join().unwrap();
}

#[test]
fn a_handle_inside_an_item_is_an_encode_error_and_the_item_comes_back() {
    let q: Queue<Queue<u8>> = Queue::new().unwrap();
    let inner: Queue<u8> = Queue::new().unwrap();
    match q.put(inner) {
        Err(PutError::Encode(back, EncodeError(m))) => {
            assert!(m.contains("Pipe"), "{m}");
            back.put(1).unwrap();
            assert_eq!(back.get().unwrap(), 1);
        }
        other => panic!("{other:?}"),
    }
    assert!(q.is_empty());
}

#[test]
fn wrong_type_is_a_decode_error_and_the_queue_goes_on() {
    let q: Queue<String> = Queue::new().unwrap();
    q.put("text".into()).unwrap();
    q.put("more".into()).unwrap();
    let wrong: Queue<u64> = Queue {
        h: q.h.clone(),
        _t: PhantomData,
        named: None,
    };
    assert!(matches!(wrong.get(), Err(GetError::Decode(_))));
    assert_eq!(q.get().unwrap(), "more");
}

#[test]
fn clones_count_as_producers_until_closed_or_dropped() {
    let q: Queue<u8> = Queue::new().unwrap();
    let a = q.clone();
    let closed = {
        let c = q.clone();
        c.close();
        c.clone()
    };
    assert!(closed.is_closed());
    q.close();
    assert_eq!(q.try_get(), Err(TryGetError::Empty)); // `a` is open
    a.put(9).unwrap();
    drop(a);
    assert_eq!(q.get().unwrap(), 9);
    assert_eq!(q.get(), Err(GetError::Disconnected));
    assert!(matches!(closed.put(1), Err(PutError::Closed(1))));
}

#[test]
fn serialized_handles_need_a_descriptor_table_and_keep_the_count() {
    let q: Queue<u8> = Queue::new().unwrap();
    let mut buf = Vec::new();
    assert!(codec::encode(&q, &mut buf, None).is_err());
    let mut fds = Vec::new();
    codec::encode(&q, &mut buf, Some(&mut fds)).unwrap();
    q.close();
    // the travelling handle keeps the queue connected
    assert_eq!(q.try_get(), Err(TryGetError::Empty));
    let back: Queue<u8> = codec::decode(&buf, fds).unwrap();
    back.put(3).unwrap();
    assert_eq!(q.get().unwrap(), 3);
    drop(back);
    assert_eq!(q.get(), Err(GetError::Disconnected));
}

#[test]
fn joinable_counts_tasks_and_undoes_failed_puts() {
    let q: JoinableQueue<u8> = JoinableQueue::bounded(1).unwrap();
    q.put(1).unwrap();
    assert!(q.try_put(2).unwrap_err().is_full());
    assert_eq!(q.unfinished_tasks(), 1);
    assert_eq!(q.get().unwrap(), 1);
    assert!(q.join_timeout(Duration::from_millis(5)).is_err());
    q.task_done().unwrap();
    assert!(q.join_timeout(Duration::from_millis(5)).is_ok());
    assert_eq!(q.task_done(), Err(TaskDoneError));
}

/// Fills a queue of `u8` (each item: 1 CBOR byte + 4 header bytes) with `try_put`
/// until `Full`; returns how many went in.
fn fill(put: impl Fn(u8) -> Result<(), TryPutError<u8>>) -> u8 {
    let mut n = 0u8;
    loop {
        match put(n) {
            Ok(()) => n += 1,
            Err(e) => {
                assert!(e.is_full(), "{e:?}");
                assert_eq!(e.into_inner(), n);
                return n;
            }
        }
        assert!(n < 64, "a 64-byte ring took {n} items");
    }
}

#[test]
fn a_bounded_queue_is_also_full_when_its_ring_is_out_of_bytes() {
    let q: Queue<u8> = Queue::bounded_with_capacity_bytes(1000, 1).unwrap();
    assert_eq!((q.capacity_bytes(), q.maxsize()), (64, 1000));
    assert!(!q.is_full());
    // 12 items of 5 bytes: 4 bytes left, not enough for another
    assert_eq!(fill(|x| q.try_put(x)), 12);
    assert_eq!(q.len(), 12);
    assert!(matches!(
        q.put_timeout(99, Duration::from_millis(5)),
        Err(PutTimeoutError::Timeout(99))
    ));
    // one get makes room for one more
    assert_eq!(q.try_get().unwrap(), 0);
    q.try_put(12).unwrap();
    for i in 1..=12 {
        assert_eq!(q.try_get().unwrap(), i);
    }
    assert!(q.is_empty());
}

#[test]
fn an_unbounded_queue_with_a_tiny_ring_is_never_full() {
    let q: Queue<u32> = Queue::with_capacity_bytes(1).unwrap();
    assert_eq!((q.capacity_bytes(), q.maxsize()), (64, 0));
    for i in 0..10_000 {
        q.try_put(i).unwrap();
        assert!(!q.is_full());
    }
    assert!(!q.clone().is_full(), "every handle sees the same ring");
    assert_eq!(q.len(), 10_000);
    for i in 0..10_000 {
        assert_eq!(q.try_get().unwrap(), i);
    }
    assert!(q.is_empty());
}

#[test]
fn an_unbounded_joinable_queue_counts_every_task_without_waiting() {
    let q: JoinableQueue<u8> = JoinableQueue::with_capacity_bytes(64).unwrap();
    for i in 0..200 {
        q.try_put(i).unwrap();
    }
    assert!(!q.is_full());
    assert_eq!(q.unfinished_tasks(), 200);
    for i in 0..200 {
        assert_eq!(q.try_get().unwrap(), i);
        q.task_done().unwrap();
    }
    assert!(q.join_timeout(Duration::from_millis(5)).is_ok());
}

/// Serializes as a long run of bytes, then fails.
struct FailsAfter(usize);

impl Serialize for FailsAfter {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error as _, SerializeSeq};
        let mut seq = s.serialize_seq(None)?;
        for _ in 0..self.0 {
            seq.serialize_element(&0xEEu8)?;
        }
        Err(S::Error::custom("gave up half way"))
    }
}

impl<'de> Deserialize<'de> for FailsAfter {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(D::Error::custom("never sent"))
    }
}

#[derive(Serialize, Deserialize)]
enum Item {
    Good(String),
    Bad(FailsAfter),
}

#[test]
fn an_item_that_fails_half_way_through_encoding_leaves_the_handle_usable() {
    let q: Queue<Item> = Queue::with_capacity_bytes(64).unwrap();
    for n in [0, 3, 100, 1 << 16] {
        match q.put(Item::Bad(FailsAfter(n))) {
            Err(PutError::Encode(Item::Bad(FailsAfter(m)), EncodeError(msg))) => {
                assert_eq!(m, n);
                assert!(msg.contains("half way"), "{msg}");
            }
            other => panic!("{other:?}"),
        }
        assert!(q.is_empty());
        // the thread's encode buffer holds nothing of the failed item
        q.put(Item::Good(format!("after {n}"))).unwrap();
        match q.try_get() {
            Ok(Item::Good(s)) => assert_eq!(s, format!("after {n}")),
            Ok(Item::Bad(_)) => panic!("a Bad item was delivered"),
            Err(e) => panic!("{e}"),
        }
    }
    assert!(!q.is_broken());
    assert_eq!(q.try_get().err(), Some(TryGetError::Empty));
}

#[test]
fn the_builder_sets_a_max_message_size_that_put_enforces_with_too_large() {
    let q: Queue<Vec<u8>> = Queue::builder()
        .capacity_bytes(4096)
        .max_message_size(1000)
        .build()
        .unwrap();
    assert_eq!(q.max_message_size(), 1000);
    assert_eq!(q.capacity_bytes(), 4096);
    let e = q.put(vec![7; 5000]).unwrap_err();
    assert!(e.is_too_large(), "{e:?}");
    assert_eq!(e.into_inner(), vec![7; 5000]);
    assert!(q.is_empty());
    q.put(vec![1; 10]).unwrap();
    assert_eq!(q.try_get().unwrap(), vec![1; 10]);

    let j: JoinableQueue<Vec<u8>> = Queue::builder()
        .maxsize(2)
        .max_message_size(100)
        .build_joinable()
        .unwrap();
    assert!(j.put(vec![0; 200]).unwrap_err().is_too_large());
    j.join_timeout(Duration::from_millis(1))
        .expect("a refused put counts no task");
    let s: SimpleQueue<String> = Queue::builder().max_message_size(8).build_simple().unwrap();
    assert!(s
        .put("far more than eight bytes".into())
        .unwrap_err()
        .is_too_large());
    assert!(Queue::<u8>::builder().max_message_size(0).build().is_err());
}
