//! One handle on a queue's ring: the per-thread encode/decode buffers, counting the
//! handle as a producer while it is open, and the handle's wire format (see the
//! [queue module docs](crate::queue) for how producers are counted).

use crate::codec::{self, RecvFd, SendFd};
use crate::error::{GetError, PutError, TryGetError, TryPutError};
use crate::Message;
use procactor_transports::ring::{Deadline, PopError, PushError, Ring, DEFAULT_OVERFLOW_BYTES};
use procactor_transports::robust;
use serde::de::Error as _;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cell::RefCell;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Per-thread encode/decode buffers larger than this are released after use (smaller
/// ones are kept, so that repeated large messages do not fault in fresh pages each time).
const KEEP_BUFFER_BYTES: usize = 32 << 20;

thread_local! {
    static ENCODE_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static DECODE_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's reusable buffer (a fresh one if it is already in use,
/// e.g. by a `Serialize` impl that itself puts on a queue).
fn with_buf<R>(
    key: &'static std::thread::LocalKey<RefCell<Vec<u8>>>,
    f: impl FnOnce(&mut Vec<u8>) -> R,
) -> R {
    let mut f = Some(f);
    let r = key.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            let r = (f.take().expect("called once"))(&mut buf);
            if buf.capacity() > KEEP_BUFFER_BYTES {
                *buf = Vec::new();
            }
            Some(r)
        }
        Err(_) => None,
    });
    match r {
        Some(r) => r,
        None => (f.take().expect("called once"))(&mut Vec::new()),
    }
}

fn my_pid() -> u32 {
    robust::my_id()
}

/// One handle on a ring: the shared mapping and whether this handle is an open producer.
pub(super) struct Handle {
    pub(super) ring: Arc<Ring>,
    open: AtomicBool,
}

impl Handle {
    pub(super) fn create(capacity: usize, maxsize: usize, max_message: u64) -> io::Result<Handle> {
        let ring = if maxsize == 0 {
            Ring::create_limited(capacity, 0, DEFAULT_OVERFLOW_BYTES, max_message)?
        } else {
            Ring::create_limited(capacity, maxsize as u64, 0, max_message)?
        };
        Ok(Handle::attach(Arc::new(ring), true))
    }

    pub(super) fn attach(ring: Arc<Ring>, open: bool) -> Handle {
        if open {
            ring.register_producer(my_pid());
        }
        Handle {
            ring,
            open: AtomicBool::new(open),
        }
    }

    pub(super) fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    pub(super) fn close(&self) {
        if self.open.swap(false, Ordering::AcqRel) {
            self.ring.unregister_producer(my_pid());
        }
    }

    pub(super) fn put_bytes<T: Serialize>(
        &self,
        item: T,
        deadline: Deadline,
        task: bool,
    ) -> Result<(), TryPutError<T>> {
        if !self.is_open() {
            return Err(TryPutError::Closed(item));
        }
        with_buf(&ENCODE_BUF, |buf| {
            if let Err(e) = codec::encode(&item, buf, None) {
                return Err(TryPutError::Encode(item, e));
            }
            let pushed = if task {
                self.ring.push_task(buf, deadline)
            } else {
                self.ring.push_with(buf, deadline)
            };
            match pushed {
                Ok(()) => Ok(()),
                Err(PushError::Full) => Err(TryPutError::Full(item)),
                Err(PushError::Broken) => Err(TryPutError::Broken(item)),
                Err(PushError::TooLarge) => Err(TryPutError::TooLarge(item)),
            }
        })
    }

    /// A put without a deadline: the ring reports no `Full` then; were it ever to, the
    /// put is simply tried again (nothing of the item was made visible).
    pub(super) fn put_blocking<T: Serialize>(
        &self,
        mut item: T,
        task: bool,
    ) -> Result<(), PutError<T>> {
        loop {
            match self.put_bytes(item, Deadline::Never, task) {
                Ok(()) => return Ok(()),
                Err(e) => match e.into_blocking() {
                    Ok(e) => return Err(e),
                    Err(back) => item = back,
                },
            }
        }
    }

    /// `Empty` means the deadline passed.
    pub(super) fn get<T: Message>(&self, deadline: Deadline) -> Result<T, TryGetError> {
        with_buf(&DECODE_BUF, |buf| {
            self.ring
                .pop_with(buf, deadline, true)
                .map_err(|e| match e {
                    PopError::Empty => TryGetError::Empty,
                    PopError::Disconnected => TryGetError::Disconnected,
                    PopError::Broken => TryGetError::Broken,
                })?;
            // the reader lock is released: decode outside it
            Ok(codec::decode(buf, Vec::new())?)
        })
    }

    /// A get without a deadline: the ring reports no `Empty` then; were it ever to, the
    /// get is simply tried again.
    pub(super) fn get_blocking<T: Message>(&self) -> Result<T, GetError> {
        loop {
            match self.get(Deadline::Never) {
                Ok(t) => return Ok(t),
                Err(e) => {
                    if let Some(e) = e.into_blocking() {
                        return Err(e);
                    }
                }
            }
        }
    }
}

impl Clone for Handle {
    fn clone(&self) -> Self {
        Handle::attach(self.ring.clone(), self.is_open())
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.close();
    }
}

impl Serialize for Handle {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let open = self.is_open();
        let mut st = s.serialize_struct("Queue", 3)?;
        st.serialize_field("ring", &SendFd(self.ring.fd()))?;
        // the descriptor is on its way: count the travelling handle as ours until the
        // receiver takes it over (see the module docs)
        if open {
            let pid = my_pid();
            self.ring.register_producer(pid);
            // …unless the message never leaves (see `codec::on_unsent`)
            let ring = self.ring.clone();
            codec::on_unsent(move || ring.unregister_producer(pid));
        }
        st.serialize_field("open", &open)?;
        st.serialize_field("from", &my_pid())?;
        st.end()
    }
}

#[derive(Deserialize)]
#[serde(rename = "Queue")]
struct HandleWire {
    ring: RecvFd,
    open: bool,
    from: u32,
}

impl<'de> Deserialize<'de> for Handle {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = HandleWire::deserialize(d)?;
        let ring = Ring::open(w.ring.0).map_err(|e| D::Error::custom(e.to_string()))?;
        let h = Handle::attach(Arc::new(ring), w.open);
        if w.open {
            h.ring.unregister_producer(w.from);
        }
        Ok(h)
    }
}
