//! Unit tests of the server's synchronisation objects.

use super::*;
use std::sync::Arc;

/// A client that stays (or, with `gone`, has left).
struct Fake {
    gone: bool,
}
impl Peer for Fake {
    fn alive(&mut self) -> bool {
        !self.gone
    }
    fn heartbeat(&mut self) -> bool {
        !self.gone
    }
}
/// A client that stays, made fresh for each call.
fn here() -> Fake {
    Fake { gone: false }
}

fn new(o: &SyncObjects, kind: SyncKind, n: u64) -> u64 {
    match o.apply(0, SyncReq::New(kind, None, n, 0), &mut here()) {
        Resp::Id(id) => id,
        r => panic!("{r:?}"),
    }
}

fn try_acquire(o: &SyncObjects, conn: u64, id: u64) -> bool {
    matches!(
        o.apply(conn, SyncReq::Acquire(id, Some(0)), &mut here()),
        Resp::Bool(true)
    )
}

#[test]
fn a_closed_connection_releases_what_it_holds_and_nothing_else() {
    let o = SyncObjects::default();
    let (l, r, c) = (
        new(&o, SyncKind::Lock, 0),
        new(&o, SyncKind::RLock, 0),
        new(&o, SyncKind::Condition, 0),
    );
    assert!(try_acquire(&o, 1, l));
    assert!(try_acquire(&o, 1, r));
    assert!(try_acquire(&o, 1, r));
    assert!(try_acquire(&o, 1, c));
    assert!(!try_acquire(&o, 2, l) && !try_acquire(&o, 2, r) && !try_acquire(&o, 2, c));
    o.disconnect(3); // someone else: nothing changes
    assert!(!try_acquire(&o, 2, l) && !try_acquire(&o, 2, r) && !try_acquire(&o, 2, c));
    o.disconnect(1);
    assert!(try_acquire(&o, 2, l) && try_acquire(&o, 2, r) && try_acquire(&o, 2, c));
}

#[test]
fn semaphore_units_are_given_back_once() {
    let o = SyncObjects::default();
    let s = new(&o, SyncKind::Semaphore, 2);
    let value = |o: &SyncObjects| match o.apply(0, SyncReq::Value(s), &mut here()) {
        Resp::Count(n) => n,
        r => panic!("{r:?}"),
    };
    assert!(try_acquire(&o, 1, s) && try_acquire(&o, 1, s));
    assert!(!try_acquire(&o, 2, s));
    // connection 2 releases one of connection 1's units (a signal)
    assert!(matches!(
        o.apply(2, SyncReq::Release(s), &mut here()),
        Resp::Unit
    ));
    assert_eq!(value(&o), 1);
    o.disconnect(1); // one unit still held by 1 comes back, not two
    assert_eq!(value(&o), 2);
    let b = new(&o, SyncKind::BoundedSemaphore, 1);
    assert!(matches!(
        o.apply(1, SyncReq::Release(b), &mut here()),
        Resp::Refused(_)
    ));
}

#[test]
fn a_waiter_whose_client_left_stops_waiting_and_breaks_a_barrier() {
    let o = SyncObjects::default();
    let l = new(&o, SyncKind::Lock, 0);
    assert!(try_acquire(&o, 1, l));
    let t = Instant::now();
    let r = o.apply(2, SyncReq::Acquire(l, None), &mut Fake { gone: true });
    assert!(matches!(r, Resp::Bool(false)));
    assert!(t.elapsed() < Duration::from_secs(2));
    let b = new(&o, SyncKind::Barrier, 2);
    let r = o.apply(2, SyncReq::Wait(b, None), &mut Fake { gone: true });
    assert!(matches!(r, Resp::Broken));
    assert!(matches!(
        o.apply(3, SyncReq::Wait(b, Some(0)), &mut here()),
        Resp::Broken
    ));
    o.apply(3, SyncReq::Clear(b), &mut here());
    assert!(matches!(
        o.apply(3, SyncReq::BarrierState(b), &mut here()),
        Resp::Barrier(2, 0, false)
    ));
}

#[test]
fn a_reset_breaks_the_current_waiters_only() {
    let o = Arc::new(SyncObjects::default());
    let b = new(&o, SyncKind::Barrier, 2);
    let o2 = o.clone();
    let waiter =
        std::thread::spawn(move || o2.apply(1, SyncReq::Wait(b, Some(20_000_000)), &mut here()));
    let t = Instant::now();
    while !matches!(
        o.apply(0, SyncReq::BarrierState(b), &mut here()),
        Resp::Barrier(_, 1, _)
    ) {
        assert!(t.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(2));
    }
    o.apply(0, SyncReq::Clear(b), &mut here());
    assert!(matches!(waiter.join().unwrap(), Resp::Broken));
    // usable again: two waiters pass
    let o2 = o.clone();
    let w = std::thread::spawn(move || o2.apply(1, SyncReq::Wait(b, None), &mut here()));
    let mine = o.apply(2, SyncReq::Wait(b, Some(20_000_000)), &mut here());
    let theirs = w.join().unwrap();
    let mut idx = [&mine, &theirs].map(|r| match r {
        Resp::Count(i) => *i,
        r => panic!("{r:?}"),
    });
    idx.sort();
    assert_eq!(idx, [0, 1]);
}

/// A client whose departure the test decides.
struct Leaves(Arc<std::sync::atomic::AtomicBool>);
impl Peer for Leaves {
    fn alive(&mut self) -> bool {
        !self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
    fn heartbeat(&mut self) -> bool {
        self.alive()
    }
}

fn waiting(o: &SyncObjects, id: u64) -> usize {
    match o.lock().obj(id) {
        Some(Obj::Cond { waiters, .. }) => waiters.len(),
        _ => panic!("not a condition"),
    }
}

#[test]
fn a_notify_taken_by_a_waiter_that_left_goes_to_the_next_one() {
    let o = Arc::new(SyncObjects::default());
    let c = new(&o, SyncKind::Condition, 0);
    let gone = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let wait_in = |conn: u64, peer: Box<dyn Peer + Send>, w: Wait| {
        let o = o.clone();
        std::thread::spawn(move || {
            let mut peer = peer;
            assert!(try_acquire(&o, conn, c));
            o.apply(conn, SyncReq::Wait(c, w), &mut *peer)
        })
    };
    // the oldest waiter's client is about to leave; the second stays
    let first = wait_in(1, Box::new(Leaves(gone.clone())), None);
    let t = Instant::now();
    while waiting(&o, c) < 1 {
        assert!(t.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(2));
    }
    let second = wait_in(2, Box::new(here()), Some(20_000_000));
    while waiting(&o, c) < 2 {
        assert!(t.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(2));
    }
    gone.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(try_acquire(&o, 3, c));
    assert!(matches!(
        o.apply(3, SyncReq::Notify(c, 1), &mut here()),
        Resp::Unit
    ));
    assert!(matches!(
        o.apply(3, SyncReq::Release(c), &mut here()),
        Resp::Unit
    ));
    assert!(matches!(first.join().unwrap(), Resp::Bool(false)));
    assert!(
        matches!(second.join().unwrap(), Resp::Bool(true)),
        "the live waiter got the notification"
    );
    assert!(t.elapsed() < Duration::from_secs(15));
}

#[test]
fn a_condition_wait_that_times_out_holds_the_lock_again() {
    let o = SyncObjects::default();
    let c = new(&o, SyncKind::Condition, 0);
    assert!(try_acquire(&o, 1, c));
    assert!(matches!(
        o.apply(1, SyncReq::Wait(c, Some(10_000)), &mut here()),
        Resp::Bool(false)
    ));
    assert!(!try_acquire(&o, 2, c), "held by 1 again");
    assert!(matches!(
        o.apply(1, SyncReq::Notify(c, 1), &mut here()),
        Resp::Unit
    ));
}

#[test]
fn a_deadline_too_far_to_represent_waits_forever_without_overflow() {
    let o = SyncObjects::default();
    let e = new(&o, SyncKind::Event, 0);
    o.apply(0, SyncReq::Set(e), &mut here());
    assert!(matches!(
        o.apply(0, SyncReq::Wait(e, Some(u64::MAX)), &mut here()),
        Resp::Bool(true)
    ));
}

#[test]
fn parked_requests_are_answered_by_the_change_that_lets_them_finish() {
    let o = SyncObjects::default();
    let (out, bell) = Outbox::new().unwrap();
    let (l, q) = (new(&o, SyncKind::Lock, 0), new(&o, SyncKind::Queue, 0));
    assert!(try_acquire(&o, 1, l));
    // owner 7 of connection 100 waits for the lock, tags 1 and 2 for the queue
    assert!(o
        .apply_parked(100, 7, 1, SyncReq::Acquire(l, None), &out)
        .is_none());
    assert!(o
        .apply_parked(100, 0, 2, SyncReq::Get(q, None), &out)
        .is_none());
    assert!(o
        .apply_parked(100, 0, 3, SyncReq::Get(q, None), &out)
        .is_none());
    assert!(out.take().is_empty());
    // the lock let go: granted to owner 7, answered through the outbox (the bell rung)
    o.disconnect(1);
    let got: Vec<_> = out.take().into_iter().collect();
    assert!(
        matches!(got[..], [(1, Resp::Bool(true), id)] if id == l),
        "{:?}",
        got.len()
    );
    let mut byte = [0u8; 1];
    assert_eq!(std::io::Read::read(&mut &bell, &mut byte).unwrap(), 1);
    assert!(!try_acquire(&o, 2, l));
    // an item: the oldest get takes it; the other, withdrawn, is found parked once
    o.apply(
        0,
        SyncReq::Put(q, Bytes::from(vec![9u8]), None),
        &mut here(),
    );
    assert!(matches!(
        &out.take().into_iter().collect::<Vec<_>>()[..],
        [(2, Resp::Opt(Some(_)), _)]
    ));
    assert!(o.cancel(100, 3));
    assert!(!o.cancel(100, 3));
    assert!(!o.cancel(100, 2));
    // ending owner 7 releases the lock; a parked request of it is withdrawn first
    assert!(o
        .apply_parked(100, 8, 4, SyncReq::Acquire(l, None), &out)
        .is_none());
    assert!(o.end_owner(100, 8) == vec![4]);
    assert!(o.end_owner(100, 7).is_empty());
    assert!(try_acquire(&o, 2, l));
    // a connection's end withdraws what it parked
    assert!(o
        .apply_parked(101, 9, 5, SyncReq::Acquire(l, None), &out)
        .is_none());
    o.end_parked(101, [9]);
    o.disconnect(2);
    assert!(
        out.take().is_empty(),
        "nothing is answered to a connection gone"
    );
    assert!(try_acquire(&o, 3, l));
}
