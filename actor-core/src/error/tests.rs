//! Unit tests of the error types (predicates, conversions, formatting without `T: Debug`).

use super::*;

/// Deliberately without `Debug`.
struct NoDebug;

fn all_puts() -> [TryPutError<NoDebug>; 4] {
    [
        TryPutError::Full(NoDebug),
        TryPutError::Closed(NoDebug),
        TryPutError::Broken(NoDebug),
        TryPutError::Encode(NoDebug, EncodeError("bad".into())),
    ]
}

/// What three predicates give on three variants and a fourth one: each is true for
/// its own variant only.
const EACH_ITS_OWN: [(bool, bool, bool); 4] = [
    (true, false, false),
    (false, true, false),
    (false, false, true),
    (false, false, false),
];

#[test]
fn put_error_predicates_name_exactly_their_variant() {
    let got: Vec<(bool, bool, bool)> = all_puts()
        .iter()
        .map(|e| (e.is_full(), e.is_closed(), e.is_broken()))
        .collect();
    assert_eq!(got, EACH_ITS_OWN);
    for (i, e) in [
        TryPutError::Full(1),
        TryPutError::Closed(2),
        TryPutError::Broken(3),
        TryPutError::Encode(4, EncodeError(String::new())),
        TryPutError::TooLarge(5),
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(e.into_inner(), i + 1);
    }
    let t = PutTimeoutError::Timeout(7);
    assert!(t.is_timeout() && !t.is_closed() && !t.is_broken() && !t.is_too_large());
    assert_eq!(t.map(|x| x * 2).into_inner(), 14);
    let b = PutError::TooLarge(8);
    assert!(b.is_too_large() && !b.is_closed() && !b.is_broken());
    assert_eq!(b.into_inner(), 8);
}

#[test]
fn a_blocking_put_error_converts_into_the_other_two_keeping_the_item() {
    let t: TryPutError<u8> = PutError::Closed(1).into();
    assert!(matches!(t, TryPutError::Closed(1)));
    let t: PutTimeoutError<u8> = PutError::Encode(2, EncodeError("x".into())).into();
    assert!(matches!(t, PutTimeoutError::Encode(2, _)));
    // (the crate's own mapping: `Full` is the deadline passing)
    assert!(matches!(
        TryPutError::Full(3).into_timeout(),
        PutTimeoutError::Timeout(3)
    ));
    assert!(matches!(TryPutError::Full(4).into_blocking(), Err(4)));
    assert!(matches!(
        TryPutError::Broken(5).into_blocking(),
        Ok(PutError::Broken(5))
    ));
    // `?` from a blocking put in a function returning a try-put error
    fn f() -> std::result::Result<(), TryPutError<u8>> {
        Err(PutError::Closed(6))?
    }
    assert!(matches!(f(), Err(TryPutError::Closed(6))));
}

#[test]
fn put_and_lock_errors_format_without_t_debug() {
    let debug: Vec<String> = all_puts().iter().map(|e| format!("{e:?}")).collect();
    assert_eq!(
        debug,
        [
            "Full(..)",
            "Closed(..)",
            "Broken(..)",
            r#"Encode(.., EncodeError("bad"))"#,
        ]
    );
    let display: Vec<String> = all_puts().iter().map(|e| e.to_string()).collect();
    assert_eq!(
        display,
        [
            "queue is full",
            "queue is closed",
            "queue is broken: its shared state is inconsistent",
            "encode error: bad",
        ]
    );
    // `{:#?}` and `unwrap_err` (which needs `T: Debug` for `Ok(T)`) work too
    assert_eq!(format!("{:#?}", TryPutError::Full(NoDebug)), "Full(..)");
    assert_eq!(
        format!("{:?}", PutTimeoutError::Timeout(NoDebug)),
        "Timeout(..)"
    );
    assert_eq!(
        PutTimeoutError::Timeout(NoDebug).to_string(),
        "timed out: the queue stayed full"
    );
    fn refuse() -> std::result::Result<(), TryPutError<NoDebug>> {
        Err(TryPutError::Full(NoDebug))
    }
    assert!(refuse().unwrap_err().is_full());

    let l = LockError::OwnerDied(NoDebug);
    assert_eq!(format!("{l:?}"), "OwnerDied(..)");
    assert_eq!(
        l.to_string(),
        "the previous owner of the lock died while holding it"
    );
    let _guard: NoDebug = l.into_inner();
}

#[test]
fn put_and_lock_errors_are_std_errors_and_convert_without_t_debug() {
    fn is_error<E: std::error::Error + Send + Sync + 'static>(_: &E) {}
    is_error(&PutError::Closed(NoDebug));
    is_error(&TryPutError::Full(NoDebug));
    is_error(&PutTimeoutError::Timeout(NoDebug));
    is_error(&LockError::OwnerDied(NoDebug));
    let b: Box<dyn std::error::Error + Send + Sync> = Box::new(PutError::Broken(NoDebug));
    assert!(b.to_string().starts_with("queue is broken"));

    let e = Error::from(TryPutError::Full(NoDebug));
    assert!(matches!(&e, Error::Put(m) if m == "queue is full"), "{e:?}");
    assert_eq!(e.to_string(), "queue is full");
    let e = Error::from(LockError::OwnerDied(NoDebug));
    assert!(matches!(e, Error::OwnerDied), "{e:?}");
}

#[test]
fn get_error_predicates_name_exactly_their_variant() {
    let decode = || DecodeError {
        expected: "u8",
        message: "x".into(),
    };
    let got: Vec<(bool, bool, bool)> = [
        TryGetError::Empty,
        TryGetError::Disconnected,
        TryGetError::Broken,
        TryGetError::Decode(decode()),
    ]
    .iter()
    .map(|e| (e.is_empty(), e.is_disconnected(), e.is_broken()))
    .collect();
    assert_eq!(got, EACH_ITS_OWN);
    let got: Vec<(bool, bool, bool)> = [
        GetTimeoutError::Timeout,
        GetTimeoutError::Disconnected,
        GetTimeoutError::Broken,
        GetTimeoutError::Decode(decode()),
    ]
    .iter()
    .map(|e| (e.is_timeout(), e.is_disconnected(), e.is_broken()))
    .collect();
    assert_eq!(got, EACH_ITS_OWN);
    let got: Vec<(bool, bool)> = [
        GetError::Disconnected,
        GetError::Broken,
        GetError::Decode(decode()),
    ]
    .iter()
    .map(|e| (e.is_disconnected(), e.is_broken()))
    .collect();
    assert_eq!(got, [(true, false), (false, true), (false, false)]);
}

#[test]
fn a_blocking_get_error_converts_into_the_other_two() {
    assert_eq!(
        TryGetError::from(GetError::Disconnected),
        TryGetError::Disconnected
    );
    assert_eq!(
        GetTimeoutError::from(GetError::Broken),
        GetTimeoutError::Broken
    );
    assert_eq!(TryGetError::Empty.into_timeout(), GetTimeoutError::Timeout);
    assert_eq!(TryGetError::Empty.into_blocking(), None);
    assert_eq!(
        TryGetError::Disconnected.into_blocking(),
        Some(GetError::Disconnected)
    );
    fn f() -> std::result::Result<u8, GetTimeoutError> {
        Err(GetError::Disconnected)?
    }
    assert_eq!(f(), Err(GetTimeoutError::Disconnected));
    // and every one into the crate-wide error, keeping the variant
    assert!(matches!(
        Error::from(GetTimeoutError::Timeout),
        Error::GetTimeout(GetTimeoutError::Timeout)
    ));
    assert!(matches!(
        Error::from(GetError::Broken),
        Error::Get(GetError::Broken)
    ));
}

#[test]
fn get_error_debug_names_the_variant() {
    assert_eq!(format!("{:?}", TryGetError::Empty), "Empty");
    assert_eq!(format!("{:?}", GetTimeoutError::Timeout), "Timeout");
    assert_eq!(format!("{:?}", GetError::Disconnected), "Disconnected");
    assert_eq!(format!("{:?}", GetError::Broken), "Broken");
    let d = GetError::Decode(DecodeError {
        expected: "u64",
        message: "wrong".into(),
    });
    assert!(format!("{d:?}").starts_with("Decode("), "{d:?}");
    assert_eq!(d.to_string(), "decode error (expected u64): wrong");
    assert_eq!(TryGetError::Empty.to_string(), "queue is empty");
    assert_eq!(
        GetTimeoutError::Timeout.to_string(),
        "timed out: the queue stayed empty"
    );
    assert_eq!(
        GetError::Disconnected.to_string(),
        "queue is empty and every producer is gone"
    );
    assert_ne!(TryGetError::Empty, TryGetError::Disconnected);
    assert_eq!(format!("{TaskDoneError:?}"), "TaskDoneError");
    // through the crate-wide error, the variant is kept
    assert!(matches!(
        Error::from(TryGetError::Empty),
        Error::TryGet(TryGetError::Empty)
    ));
    assert_eq!(
        Error::from(TryGetError::Empty).to_string(),
        "queue is empty"
    );
}

#[test]
fn a_blocking_recv_error_converts_into_the_timed_one_and_back() {
    let t = RecvTimeoutError::from(RecvError::BufferTooShort { needed: 4 });
    assert!(matches!(t, RecvTimeoutError::BufferTooShort { needed: 4 }));
    assert!(!t.is_timeout() && RecvTimeoutError::Timeout.is_timeout());
    assert!(matches!(
        RecvTimeoutError::Eof.into_blocking(),
        RecvError::Eof
    ));
    // a blocking receive never times out: the internal `Timeout` (only a descriptor
    // made non-blocking can give it) is said as the i/o error it is
    match RecvTimeoutError::Timeout.into_blocking() {
        RecvError::Io(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock),
        other => panic!("{other:?}"),
    }
    fn f() -> std::result::Result<u8, RecvTimeoutError> {
        Err(RecvError::Closed)?
    }
    assert!(matches!(f(), Err(RecvTimeoutError::Closed)));
    assert!(matches!(
        Error::from(RecvTimeoutError::Timeout),
        Error::RecvTimeout(RecvTimeoutError::Timeout)
    ));
    assert!(matches!(Error::from(JoinTimeoutError), Error::Timeout));
    assert_eq!(joined(true), Ok(()));
    assert_eq!(joined(false), Err(JoinTimeoutError));
}

#[test]
fn display_texts_are_lowercase_without_a_final_period() {
    let texts = [
        TryPutError::Full(NoDebug).to_string(),
        PutTimeoutError::Timeout(NoDebug).to_string(),
        PutError::Closed(NoDebug).to_string(),
        PutError::Broken(NoDebug).to_string(),
        PutError::TooLarge(NoDebug).to_string(),
        PutError::Encode(NoDebug, EncodeError("x".into())).to_string(),
        LockError::OwnerDied(NoDebug).to_string(),
        TryGetError::Empty.to_string(),
        GetTimeoutError::Timeout.to_string(),
        GetError::Disconnected.to_string(),
        GetError::Broken.to_string(),
        TaskDoneError.to_string(),
        JoinTimeoutError.to_string(),
        BrokenBarrier.to_string(),
        RecvError::Eof.to_string(),
        RecvTimeoutError::Timeout.to_string(),
        RecvError::TooLong.to_string(),
        RecvError::BufferTooShort { needed: 3 }.to_string(),
        RecvError::Broken("x".into()).to_string(),
        RecvError::Closed.to_string(),
        SendError::Closed.to_string(),
        SendError::Disconnected.to_string(),
        JoinError::NotFinished.to_string(),
        JoinError::Unavailable("x".into()).to_string(),
        SpawnError::NotInitialized.to_string(),
        Error::OwnerDied.to_string(),
        Error::OverRelease.to_string(),
        Error::Timeout.to_string(),
        Error::OutOfRange { index: 3, len: 2 }.to_string(),
    ];
    for t in texts {
        let first = t.chars().next().expect("empty Display text");
        assert!(!first.is_uppercase(), "{t:?} starts with a capital");
        assert!(!t.ends_with('.'), "{t:?} ends with a period");
    }
}
