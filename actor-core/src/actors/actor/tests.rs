//! Unit tests of the actor module's parts (envelopes, status words, refs, groups).

use super::envelope::{give_back, Meta, KIND_MSG};
use super::mailbox::decode_status;
use super::*;
use crate::error::{PutError, PutTimeoutError, TryPutError};
use crate::queue::Queue;
use crate::ExitStatus;
use std::time::Duration;

#[test]
fn envelopes_round_trip_and_bad_kinds_are_errors() {
    let mut buf = Vec::new();
    let meta = Meta {
        sent_ns: 12345,
        trace: Some(super::trace::TraceCtx {
            trace_id: 9,
            span_id: 8,
            pid: 7,
        }),
    };
    crate::codec::encode(&Envelope::Call(7, "x".to_string(), meta), &mut buf, None).unwrap();
    match crate::codec::decode::<Envelope<String>>(&buf, Vec::new()).unwrap() {
        Envelope::Call(7, s, m) => assert_eq!((s.as_str(), m), ("x", meta)),
        _ => panic!("wrong envelope"),
    }
    buf.clear();
    crate::codec::encode(&Envelope::Msg(3u8, meta), &mut buf, None).unwrap();
    match crate::codec::decode::<Envelope<u8>>(&buf, Vec::new()).unwrap() {
        Envelope::Msg(3, m) => assert_eq!(m, meta),
        _ => panic!("wrong envelope"),
    }
    buf.clear();
    crate::codec::encode(&Envelope::<String>::Stop, &mut buf, None).unwrap();
    assert!(matches!(
        crate::codec::decode::<Envelope<String>>(&buf, Vec::new()).unwrap(),
        Envelope::Stop
    ));
    buf.clear();
    crate::codec::encode(&(9u8, 1u32), &mut buf, None).unwrap();
    assert!(crate::codec::decode::<Envelope<u32>>(&buf, Vec::new()).is_err());
    buf.clear();
    // a message envelope without its message, with a time stamp that is not a number,
    // or with an item after the stamp that is nothing known
    crate::codec::encode(&(KIND_MSG,), &mut buf, None).unwrap();
    assert!(crate::codec::decode::<Envelope<u32>>(&buf, Vec::new()).is_err());
    buf.clear();
    crate::codec::encode(&(KIND_MSG, 1u32, "x"), &mut buf, None).unwrap();
    assert!(crate::codec::decode::<Envelope<u32>>(&buf, Vec::new()).is_err());
    buf.clear();
    crate::codec::encode(&(KIND_MSG, 1u32, 2u64, 3u32), &mut buf, None).unwrap();
    assert!(crate::codec::decode::<Envelope<u32>>(&buf, Vec::new()).is_err());
    buf.clear();
    // a trace context alone (no time stamp: 0)
    let traced = Meta { sent_ns: 0, ..meta };
    crate::codec::encode(&Envelope::Msg(1u32, traced), &mut buf, None).unwrap();
    match crate::codec::decode::<Envelope<u32>>(&buf, Vec::new()).unwrap() {
        Envelope::Msg(1, m) => assert_eq!(m, traced),
        _ => panic!("wrong envelope"),
    }
    buf.clear();
    crate::codec::encode(&Envelope::Msg(7u32, Meta::default()), &mut buf, None).unwrap();
    assert_eq!(buf.len(), 3, "[0, 7]: two items, three bytes");
    // a call whose message is not the actor's type: its number is still read
    buf.clear();
    crate::codec::encode(
        &Envelope::Call(9, "not a number".to_string(), Meta::default()),
        &mut buf,
        None,
    )
    .unwrap();
    match crate::codec::decode::<Envelope<u32>>(&buf, Vec::new()).unwrap() {
        Envelope::BadCall(9, why) => assert!(why.contains("u32"), "{why}"),
        _ => panic!("expected BadCall(9, ..)"),
    }
}

#[test]
fn exit_status_words_round_trip() {
    for s in [
        ExitStatus::Code(0),
        ExitStatus::Code(1),
        ExitStatus::Code(-1),
        ExitStatus::Signal(9),
    ] {
        assert_eq!(decode_status(encode_status(s)), Some(s));
    }
    assert_eq!(decode_status(0), None);
}

#[test]
fn give_back_returns_the_message() {
    let e = give_back(TryPutError::Full(Envelope::Msg(5u32, Meta::default()))).unwrap();
    assert!(e.is_full());
    assert_eq!(e.into_inner(), 5);
    assert!(give_back(PutError::Closed(Envelope::<u32>::Stop)).is_err());
    let e = give_back(PutTimeoutError::Timeout(Envelope::Call(
        1,
        6u32,
        Meta::default(),
    )))
    .unwrap();
    assert!(e.is_timeout());
    assert_eq!(e.into_inner(), 6);
}

#[test]
fn actor_error_converts_from_std_errors() {
    let e: ActorError = std::io::Error::other("disk on fire").into();
    assert_eq!(e.message(), "disk on fire");
    assert_eq!(e.to_string(), "disk on fire");
    assert_eq!(format!("{e:?}"), "ActorError(\"disk on fire\")");
}

#[derive(Serialize, Deserialize)]
struct One;
#[derive(Serialize, Deserialize)]
struct Two;
impl Actor for One {
    type Msg = u32;
    type Reply = ();
    fn handle(&mut self, _: u32, _: &mut Context<Self>) -> Result<(), ActorError> {
        Ok(())
    }
}
impl Actor for Two {
    type Msg = u32;
    type Reply = ();
    fn handle(&mut self, _: u32, _: &mut Context<Self>) -> Result<(), ActorError> {
        Ok(())
    }
}
impl ProcessActor for One {
    const NAME: &'static str = "tests::One";
    type Mailbox = QueueMailbox;
}
impl ProcessActor for Two {
    const NAME: &'static str = "tests::Two";
    type Mailbox = QueueMailbox;
}

fn one_ref() -> ActorRef<One> {
    let q: Queue<Envelope<u32>> = Queue::new().unwrap();
    q.close();
    ActorRef::new(
        &q,
        &Vec::new(),
        &Group::new(1, false).unwrap(),
        0,
        "one".into(),
    )
}

#[test]
fn a_ref_reads_back_as_its_own_actor_only() {
    let r = one_ref();
    let back: ActorRef<One> = crate::codec::round_trip(&r).unwrap();
    assert_eq!(back.name(), "one");
    back.send(5).unwrap();
    assert_eq!(r.mailbox_len(), 1);
    let e = crate::codec::round_trip::<ActorRef<Two>>(&r).unwrap_err();
    assert!(
        e.contains("cannot be read as an ActorRef of tests::Two"),
        "{e}"
    );
}

#[test]
fn sends_are_refused_once_stopping_or_ended() {
    let r = one_ref();
    r.send(1).unwrap();
    r.stop().unwrap();
    assert_eq!(r.send(2).unwrap_err().into_inner(), 2);
    assert!(r.try_send(3).unwrap_err().is_closed());
    // the stop request is queued behind the message
    assert_eq!(r.mailbox_len(), 2);
    let r2 = one_ref();
    r2.group.mark_ended(0);
    assert!(r2.send(4).unwrap_err().is_closed());
    assert_eq!(r2.join_timeout(Duration::from_millis(1)), Ok(()));
    assert_eq!(r2.pid(), None);
    assert!(!r2.is_alive());
    assert_eq!(r2.exitcode(), None);
}

#[test]
fn group_marks_end_once_per_actor() {
    let g = Group::new(2, false).unwrap();
    assert!(!g.all_ended());
    g.mark_ended(0);
    g.mark_ended(0);
    assert!(!g.all_ended());
    g.mark_ended(1);
    assert!(g.all_ended());
    assert_eq!(g.state(1), ActorState::Ended);
    // a member started again (its child supervisor was restarted) reopens it
    g.reopen(1);
    assert!(!g.all_ended());
    assert_eq!(g.state(1), ActorState::Restarting);
    g.reopen(1);
    g.mark_ended(1);
    assert!(g.all_ended());
}
