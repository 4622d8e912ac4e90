//! Traces across processes (issue 24): a message carries its sender's span context when
//! a subscriber is interested, and the actor's `handle` runs in an `actor.handle` span
//! whose fields name the remote parent. A hand-made subscriber (no tracing-subscriber
//! dependency) records span fields; the actors report what their current span holds.
procactor::test_support!();

mod common;
use common::watchdog;
use procactor::{process_actor, Actor, ActorError, ActorRef, ChildSpec, Context, Supervisor};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Subscriber;
use tracing::{Event, Metadata};

const T: Duration = Duration::from_secs(20);

type Fields = BTreeMap<String, String>;

/// Spans by id: name, fields, metadata.
static SPANS: Mutex<Option<HashMap<u64, (Fields, &'static Metadata<'static>)>>> = Mutex::new(None);
static NEXT: AtomicU64 = AtomicU64::new(1);
thread_local! {
    static STACK: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

struct Rec;

struct Collect<'a>(&'a mut Fields);
impl Visit for Collect<'_> {
    fn record_debug(&mut self, f: &Field, v: &dyn std::fmt::Debug) {
        self.0.insert(f.name().to_string(), format!("{v:?}"));
    }
    fn record_str(&mut self, f: &Field, v: &str) {
        self.0.insert(f.name().to_string(), v.to_string());
    }
    fn record_u64(&mut self, f: &Field, v: u64) {
        self.0.insert(f.name().to_string(), v.to_string());
    }
    fn record_i64(&mut self, f: &Field, v: i64) {
        self.0.insert(f.name().to_string(), v.to_string());
    }
}

impl Subscriber for Rec {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, a: &Attributes<'_>) -> Id {
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        let mut fields = Fields::new();
        fields.insert("name".into(), a.metadata().name().into());
        a.record(&mut Collect(&mut fields));
        SPANS
            .lock()
            .unwrap()
            .get_or_insert_with(HashMap::new)
            .insert(id, (fields, a.metadata()));
        Id::from_u64(id)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, id: &Id) {
        STACK.with(|s| s.borrow_mut().push(id.into_u64()));
    }
    fn exit(&self, _: &Id) {
        STACK.with(|s| s.borrow_mut().pop());
    }
    fn current_span(&self) -> tracing_core::span::Current {
        let top = STACK.with(|s| s.borrow().last().copied());
        match top.and_then(|id| {
            let spans = SPANS.lock().unwrap();
            spans.as_ref()?.get(&id).map(|(_, m)| (id, *m))
        }) {
            Some((id, m)) => tracing_core::span::Current::new(Id::from_u64(id), m),
            None => tracing_core::span::Current::none(),
        }
    }
}

/// The fields of this thread's current span (empty: none).
fn current_fields() -> Fields {
    let top = STACK.with(|s| s.borrow().last().copied());
    top.and_then(|id| {
        SPANS
            .lock()
            .unwrap()
            .as_ref()?
            .get(&id)
            .map(|(f, _)| f.clone())
    })
    .unwrap_or_default()
}

/// Reports its current span's fields (and its pid).
#[process_actor(mailbox = pipe)]
#[derive(Serialize, Deserialize)]
struct Probe;

impl Actor for Probe {
    type Msg = ();
    type Reply = (u32, Fields);
    fn started(&mut self, _: &mut Context<Self>) -> Result<(), ActorError> {
        let _ = tracing::subscriber::set_global_default(Rec);
        Ok(())
    }
    fn handle(&mut self, _: (), _: &mut Context<Self>) -> Result<(u32, Fields), ActorError> {
        Ok((std::process::id(), current_fields()))
    }
}

/// Calls the probe while handling a call: the second hop.
#[process_actor(mailbox = pipe)]
#[derive(Serialize, Deserialize)]
struct Relay {
    probe: ActorRef<Probe>,
}

impl Actor for Relay {
    type Msg = ();
    type Reply = ((u32, Fields), (u32, Fields));
    fn started(&mut self, _: &mut Context<Self>) -> Result<(), ActorError> {
        let _ = tracing::subscriber::set_global_default(Rec);
        Ok(())
    }
    fn handle(&mut self, _: (), _: &mut Context<Self>) -> Result<Self::Reply, ActorError> {
        let mine = (std::process::id(), current_fields());
        let theirs = self
            .probe
            .call_timeout((), T)
            .map_err(|e| ActorError::new(e.to_string()))?;
        Ok((mine, theirs))
    }
}

#[test]
fn a_call_carries_the_callers_span_and_the_trace_goes_on_at_the_next_hop() {
    watchdog(60, || {
        let sup = Supervisor::builder().name("traced").build().unwrap();
        let probe = sup
            .spawn_with(ChildSpec::new().name("probe"), Probe)
            .unwrap();
        let relay = sup
            .spawn_with(
                ChildSpec::new().name("relay"),
                Relay {
                    probe: probe.clone(),
                },
            )
            .unwrap();
        // no subscriber here: nothing is carried, the actor's handle runs in no span
        let (_, fields) = probe.call_timeout((), T).unwrap();
        assert!(fields.is_empty(), "{fields:?}");
        tracing::subscriber::with_default(Rec, || {
            let request = tracing::info_span!("request", user = 7u64);
            let _in = request.enter();
            let my_span = request.id().unwrap().into_u64().to_string();
            let me = std::process::id().to_string();
            let (pid, f) = probe.call_timeout((), T).unwrap();
            assert_ne!(pid.to_string(), me);
            assert_eq!(
                f.get("name").map(String::as_str),
                Some("actor.handle"),
                "{f:?}"
            );
            assert_eq!(f.get("actor").map(String::as_str), Some("probe"), "{f:?}");
            assert_eq!(f.get("kind").map(String::as_str), Some("call"), "{f:?}");
            assert_eq!(f.get("msg").map(String::as_str), Some("()"), "{f:?}");
            assert_eq!(f.get("parent_span"), Some(&my_span), "{f:?}");
            assert_eq!(f.get("parent_pid"), Some(&me), "{f:?}");
            let trace = f.get("trace_id").cloned().expect("a trace id");
            assert_ne!(trace, "0");
            // two hops: the relay's span has this process as parent; the probe's has the
            // relay's process, and the same trace id as the relay's
            let ((relay_pid, r), (probe_pid, p)) = relay.call_timeout((), T).unwrap();
            assert_eq!(r.get("parent_pid"), Some(&me), "{r:?}");
            assert_eq!(p.get("parent_pid"), Some(&relay_pid.to_string()), "{p:?}");
            assert_ne!(probe_pid, relay_pid);
            assert_eq!(p.get("trace_id"), r.get("trace_id"), "{r:?} {p:?}");
            assert_eq!(p.get("actor").map(String::as_str), Some("probe"));
            // a new request from here starts a new trace
            assert_ne!(r.get("trace_id"), Some(&trace));
        });
        sup.shutdown(T);
    });
}
