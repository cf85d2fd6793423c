//! Spin-then-block waiting for a forwarding thread.
//!
//! A thread that blocks in `epoll_wait` as soon as its queues are empty
//! pays a wake-up (scheduler, context switch, cache) for the next frame;
//! on a request–response flow that is every frame, four times per round
//! trip over two overlayds. After a wait that brought frames, a thread
//! with a spin window keeps asking epoll without blocking (timeout 0) for
//! up to that long before it blocks: a reply arriving within the window
//! is taken at once. A wait that brought no frames (a timer tick, a
//! control request) is not followed by a spin, so an idle overlayd still
//! sleeps in `epoll_wait` and burns no CPU. The spin yields the CPU
//! between polls (`sched_yield`), so a thread that shares its core with
//! the guests or the kernel's softirq work lets them run.

use mio::{Events, Poll};
use std::io;
use std::time::{Duration, Instant};

/// How a forwarding thread waits for its next events.
#[derive(Clone, Copy, Debug, Default)]
pub struct Spin {
    /// How long to keep polling without blocking after a wait that
    /// brought frames; zero: block at once.
    pub window: Duration,
}

impl Spin {
    /// A spin window of `us` microseconds (0: off).
    pub fn micros(us: u64) -> Spin {
        Spin {
            window: Duration::from_micros(us),
        }
    }

    /// Waits for events into `events`: first, if `busy` (the last wait
    /// brought frames) and the window is not zero, polls without blocking
    /// until an event comes or the window ends; then blocks up to
    /// `timeout`.
    pub fn wait(
        &self,
        poll: &mut Poll,
        events: &mut Events,
        timeout: Option<Duration>,
        busy: bool,
    ) -> io::Result<()> {
        if busy && !self.window.is_zero() {
            let until = Instant::now() + self.window;
            loop {
                poll.poll(events, Some(Duration::ZERO))?;
                if !events.is_empty() {
                    return Ok(());
                }
                if Instant::now() >= until {
                    break;
                }
                std::thread::yield_now();
            }
        }
        poll.poll(events, timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Token, Waker};

    #[test]
    fn a_wake_within_the_window_is_taken_while_spinning() {
        let mut poll = Poll::new().unwrap();
        let waker = std::sync::Arc::new(Waker::new(poll.registry(), Token(7)).unwrap());
        let mut events = Events::with_capacity(4);
        let w = std::sync::Arc::clone(&waker);
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            w.wake().unwrap();
        });
        // A long window: the wake comes during the spin, and the wait
        // returns with it (the blocking wait's timeout is never reached).
        let spin = Spin::micros(2_000_000);
        let start = Instant::now();
        spin.wait(&mut poll, &mut events, Some(Duration::from_secs(5)), true)
            .unwrap();
        t.join().unwrap();
        assert_eq!(events.iter().next().map(|e| e.token()), Some(Token(7)));
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn without_frames_or_with_no_window_it_blocks_at_once() {
        let mut poll = Poll::new().unwrap();
        let mut events = Events::with_capacity(4);
        for (spin, busy) in [(Spin::micros(500_000), false), (Spin::micros(0), true)] {
            let start = Instant::now();
            spin.wait(
                &mut poll,
                &mut events,
                Some(Duration::from_millis(20)),
                busy,
            )
            .unwrap();
            assert!(events.is_empty());
            // Blocked for the timeout, not spun for the window.
            let took = start.elapsed();
            assert!(took >= Duration::from_millis(20), "{took:?}");
            assert!(took < Duration::from_millis(400), "{took:?}");
        }
    }

    #[test]
    fn a_spin_with_nothing_coming_ends_with_the_window_then_blocks() {
        let mut poll = Poll::new().unwrap();
        let mut events = Events::with_capacity(4);
        let start = Instant::now();
        Spin::micros(30_000)
            .wait(
                &mut poll,
                &mut events,
                Some(Duration::from_millis(10)),
                true,
            )
            .unwrap();
        assert!(events.is_empty());
        assert!(start.elapsed() >= Duration::from_millis(40));
    }
}
