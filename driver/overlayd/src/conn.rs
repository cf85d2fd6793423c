//! A non-blocking, line-framed Unix stream connection: the control socket's
//! clients and the varpd link. Reads split complete lines out of a buffer
//! (a line longer than [`overlay_api::MAX_MESSAGE`] is an error); writes are
//! buffered and flushed as the socket accepts them.

use mio::net::UnixStream;
use serde::Serialize;
use std::collections::VecDeque;
use std::io::{self, Read, Write};

/// Most bytes that may wait to be written before the peer counts as stuck.
pub const WRITE_LIMIT: usize = 16 << 20;

/// One connection.
#[derive(Debug)]
pub struct Conn {
    /// The stream.
    pub stream: UnixStream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    /// Complete lines read and not yet handled.
    pub lines: VecDeque<Vec<u8>>,
    /// The peer closed its side (or the connection failed).
    pub eof: bool,
}

impl Conn {
    /// Wraps a connected stream.
    pub fn new(stream: UnixStream) -> Conn {
        Conn {
            stream,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            lines: VecDeque::new(),
            eof: false,
        }
    }

    /// Reads all that is available, splitting out complete lines. Returns an
    /// error when a line exceeds the size limit.
    pub fn fill(&mut self) -> Result<(), String> {
        let mut chunk = [0u8; 16384];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => {
                    self.rbuf.extend_from_slice(&chunk[..n]);
                    while let Some(p) = self.rbuf.iter().position(|&b| b == b'\n') {
                        let mut line: Vec<u8> = self.rbuf.drain(..=p).collect();
                        line.pop();
                        if !line.iter().all(u8::is_ascii_whitespace) {
                            self.lines.push_back(line);
                        }
                    }
                    if self.rbuf.len() > overlay_api::MAX_MESSAGE {
                        self.rbuf.clear();
                        return Err(format!(
                            "message longer than {} bytes",
                            overlay_api::MAX_MESSAGE
                        ));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.eof = true;
                    break;
                }
            }
        }
        Ok(())
    }

    /// Queues one message as a JSON line and tries to send it. Returns false
    /// (and queues nothing) when too much is already waiting.
    pub fn send<T: Serialize>(&mut self, msg: &T) -> bool {
        if self.wbuf.len() > WRITE_LIMIT {
            return false;
        }
        if serde_json::to_writer(&mut self.wbuf, msg).is_err() {
            return false;
        }
        self.wbuf.push(b'\n');
        self.flush();
        true
    }

    /// Writes what the socket accepts now.
    pub fn flush(&mut self) {
        while !self.wbuf.is_empty() {
            match self.stream.write(&self.wbuf) {
                Ok(0) => {
                    self.eof = true;
                    self.wbuf.clear();
                    return;
                }
                Ok(n) => {
                    self.wbuf.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    // The peer is gone: what it did not read is lost with it.
                    self.eof = true;
                    self.wbuf.clear();
                    return;
                }
            }
        }
    }

    /// Bytes waiting to be written.
    pub fn pending(&self) -> usize {
        self.wbuf.len()
    }

    /// True when nothing waits to be written.
    pub fn drained(&self) -> bool {
        self.wbuf.is_empty()
    }
}
