//! Chores: the blocking work of the control plane — the netlink requests
//! that make and delete VNICs, which wait for the kernel's answer (and, for
//! a VNIC in a guest's namespace, for a thread that enters it) — done on a
//! thread of their own, in order, so that no forwarding thread waits.
//!
//! The event loop gives a chore (a closure) and gets its number back; the
//! chore thread runs it, publishes the number of the last chore done and
//! wakes the event loop, which takes the outcomes
//! ([`Chores::finished`]) and finishes the request that asked for each (a
//! reply is held until the chores before it are done, as for the workers'
//! commands and the state file: `Daemon::reply`).

use crate::vnic::Vnic;
use mio::Waker;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

/// A chore: blocking work whose outcome is `Ok(true)` (done), `Ok(false)`
/// (nothing to do: already so) or the error.
pub(crate) type Chore = Box<dyn FnOnce() -> io::Result<bool> + Send>;

/// The chore thread, from the event loop's side.
pub(crate) struct Chores {
    tx: Option<Sender<(u64, Chore)>>,
    outcomes: Receiver<(u64, io::Result<bool>)>,
    /// The number of the last chore given.
    issued: u64,
    /// The number of the last chore done.
    done: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Chores {
    /// Starts the thread; `waker` wakes the event loop after each chore.
    pub fn start(waker: Arc<Waker>) -> io::Result<Chores> {
        let (tx, rx) = mpsc::channel::<(u64, Chore)>();
        let (out_tx, outcomes) = mpsc::channel();
        let done = Arc::new(AtomicU64::new(0));
        let done_w = Arc::clone(&done);
        let thread = std::thread::Builder::new()
            .name("chores".into())
            .spawn(move || {
                while let Ok((seq, chore)) = rx.recv() {
                    let outcome = chore();
                    let _ = out_tx.send((seq, outcome));
                    done_w.store(seq, Ordering::Release);
                    let _ = waker.wake();
                }
            })?;
        Ok(Chores {
            tx: Some(tx),
            outcomes,
            issued: 0,
            done,
            thread: Some(thread),
        })
    }

    /// Has `chore` done; returns its number.
    pub fn run(&mut self, chore: Chore) -> u64 {
        self.issued += 1;
        match &self.tx {
            Some(tx) if tx.send((self.issued, chore)).is_ok() => {}
            _ => log::error!("the chore thread is gone; chore {} not done", self.issued),
        }
        self.issued
    }

    /// The number of the last chore given.
    pub fn issued(&self) -> u64 {
        self.issued
    }

    /// Whether chore `seq` (and every earlier one) is done.
    pub fn done(&self, seq: u64) -> bool {
        self.done.load(Ordering::Acquire) >= seq
            || self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// The outcomes of the chores done since the last call, in order.
    pub fn finished(&self) -> Vec<(u64, io::Result<bool>)> {
        self.outcomes.try_iter().collect()
    }

    /// Does what waits and stops the thread (at shutdown).
    pub fn finish(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A VNIC request waiting for its chore (finished by `registry.rs`).
#[derive(Debug)]
pub(crate) enum VnicOp {
    /// `create-vnic` from `conn`: the VNIC to add to overlay `oid` once made.
    Create {
        conn: u64,
        oid: u64,
        vnic: Vnic,
        over: String,
        mtu: u32,
    },
    /// `delete-vnic` from `conn`.
    Delete { conn: u64, oid: u64, name: String },
    /// A VNIC deleted with its overlay: its outcome is logged.
    WithOverlay { over: String, name: String },
}

impl VnicOp {
    /// The client waiting for it, if one is.
    pub(crate) fn conn(&self) -> Option<u64> {
        match self {
            VnicOp::Create { conn, .. } | VnicOp::Delete { conn, .. } => Some(*conn),
            VnicOp::WithOverlay { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Poll, Token};
    use std::time::{Duration, Instant};

    #[test]
    fn chores_run_in_order_and_report_their_outcomes() {
        let poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), Token(1)).unwrap());
        let mut c = Chores::start(waker).unwrap();
        let a = c.run(Box::new(|| {
            std::thread::sleep(Duration::from_millis(20));
            Ok(true)
        }));
        let b = c.run(Box::new(|| Err(io::Error::from_raw_os_error(libc::EEXIST))));
        assert!(!c.done(b) || c.done(a));
        let deadline = Instant::now() + Duration::from_secs(5);
        while !c.done(b) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let got = c.finished();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].0, got[0].1.as_ref().ok()), (a, Some(&true)));
        assert_eq!(got[1].0, b);
        assert_eq!(
            got[1].1.as_ref().unwrap_err().raw_os_error(),
            Some(libc::EEXIST)
        );
        c.finish();
        assert!(
            c.done(c.issued() + 1),
            "a finished thread holds nothing back"
        );
    }
}
