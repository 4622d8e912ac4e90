//! The pool's feeder thread (Python's task handler): reads every `imap`/`map` input
//! within its window and submits its chunks.

use super::feed::{FeedMsg, Part, Source, Step};
use super::inner::Inner;
use super::state::Sink;
use super::task_error::TaskError;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// The pool's feeder thread (Python's task handler): reads every `imap`/`map` input,
/// a chunk at a time in turn, each within its window, and submits the chunks.
pub(super) fn read_inputs(inner: &Arc<Inner>, new: &crossbeam_channel::Receiver<Source>) {
    let mut sources: Vec<Source> = Vec::new();
    loop {
        // (set before looking, so that a change made while looking is not missed)
        inner.wake.waiting.store(true, Ordering::SeqCst);
        while let Ok(s) = new.try_recv() {
            sources.push(s);
        }
        let quit = inner.quit.load(Ordering::SeqCst);
        let mut progressed = false;
        let mut k = 0;
        while k < sources.len() {
            let step = if quit {
                Step::Ended
            } else {
                feed_one(inner, &mut sources[k])
            };
            match step {
                Step::Read => {
                    progressed = true;
                    k += 1;
                }
                Step::Wait => k += 1,
                Step::Ended => {
                    let s = sources.remove(k);
                    let _ = s.tx.send(FeedMsg::End(s.seq));
                    drop(s);
                    inner.feeders.fetch_sub(1, Ordering::SeqCst);
                    let st = inner.lock();
                    let wake = st.cv_waiters > 0;
                    drop(st);
                    if wake {
                        inner.cv.notify_all();
                    }
                    progressed = true;
                }
            }
        }
        if quit {
            return;
        }
        if !progressed {
            inner.wake.sleep(Duration::from_millis(100));
        }
        inner.wake.waiting.store(false, Ordering::SeqCst);
    }
}

/// Reads and submits one chunk of `src` if its window allows.
pub(super) fn feed_one(inner: &Arc<Inner>, src: &mut Source) -> Step {
    if inner.terminated.load(Ordering::SeqCst) {
        return Step::Ended;
    }
    {
        let s = src.feed.lock();
        if s.gone && !inner.closing.load(Ordering::SeqCst) {
            // dropped while the pool runs: a window more, then it stops (an endless
            // input does not run for ever); `close` lets it finish, as in Python
            if s.submitted - s.submitted_at_drop >= src.feed.cap {
                return Step::Ended;
            }
        }
        let unread = if s.gone {
            s.submitted - s.done
        } else {
            s.submitted - s.delivered
        };
        if unread >= src.feed.cap && !inner.joining.load(Ordering::SeqCst) {
            return Step::Wait;
        }
    }
    let seq = src.seq;
    match src.input.next_chunk() {
        None => Step::Ended,
        Some(Part::Failed(e, n, end)) => {
            let _ = src.tx.send(FeedMsg::Chunk(seq, n, Err(e), false));
            src.seq += 1;
            if end {
                Step::Ended
            } else {
                Step::Read
            }
        }
        Some(Part::Chunk(payload, unsent, n)) => {
            src.feed.lock().submitted += 1;
            let (feed_s, tx_s) = (src.feed.clone(), src.tx.clone());
            let sink: Sink = Box::new(move |_, _, out| {
                feed_s.lock().done += 1;
                feed_s.wake.wake();
                let _ = tx_s.send(FeedMsg::Chunk(seq, n, out, true));
            });
            src.seq += 1;
            match inner.submit(src.fid, payload, sink, true, false) {
                Ok(_) => {
                    unsent.sent();
                    Step::Read
                }
                Err(e) => {
                    // terminated (or every worker given up): this chunk fails, and the
                    // input is not read further
                    src.feed.lock().submitted -= 1;
                    let _ = src.tx.send(FeedMsg::Chunk(
                        seq,
                        n,
                        Err(TaskError::Failed(e.to_string())),
                        false,
                    ));
                    Step::Ended
                }
            }
        }
    }
}
