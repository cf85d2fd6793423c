//! A blocking client for the request/reply control sockets.

use crate::proto::{Reply, Request, VarpdReply, VarpdRequest};
use crate::types::*;
use crate::{ApiError, MAX_REPLY, OVERLAYD_SOCKET, VARPD_SOCKET};
use serde::{de::DeserializeOwned, Serialize};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What went wrong talking to a daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be reached.
    #[error("cannot connect to {path}: {source} (is the daemon running with this --run-dir?)")]
    Connect {
        /// Socket path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Reading or writing failed.
    #[error("talking to {path}: {source}")]
    Io {
        /// Socket path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The daemon sent something that is not a reply of the protocol.
    #[error("bad reply from {path}: {detail}")]
    Protocol {
        /// Socket path.
        path: PathBuf,
        /// What was wrong with it.
        detail: String,
    },
    /// The daemon refused the request.
    #[error(transparent)]
    Api(#[from] ApiError),
}

/// Rows per page of a target-table dump.
pub const TARGET_PAGE: u32 = 4096;

/// A connection to a control socket.
pub struct Client {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    /// Connects to `RUN_DIR/overlayd.sock`.
    pub fn overlayd(run_dir: &Path) -> Result<Client, ClientError> {
        Client::connect(&run_dir.join(OVERLAYD_SOCKET))
    }

    /// Connects to `RUN_DIR/varpd.sock`.
    pub fn varpd(run_dir: &Path) -> Result<Client, ClientError> {
        Client::connect(&run_dir.join(VARPD_SOCKET))
    }

    /// Connects to a socket path, with a 10 s timeout on every reply.
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        let path = path.to_path_buf();
        let s = UnixStream::connect(&path).map_err(|source| ClientError::Connect {
            path: path.clone(),
            source,
        })?;
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let w = s.try_clone().map_err(|source| ClientError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(Client {
            path,
            reader: BufReader::new(s),
            writer: w,
        })
    }

    /// Sets how long to wait for each reply (10 s unless set).
    pub fn set_timeout(&self, timeout: Duration) {
        let _ = self.writer.set_read_timeout(Some(timeout));
        let _ = self.writer.set_write_timeout(Some(timeout));
    }

    fn exchange<Q: Serialize, A: DeserializeOwned>(&mut self, req: &Q) -> Result<A, ClientError> {
        let io = |source| ClientError::Io {
            path: self.path.clone(),
            source,
        };
        let mut line = serde_json::to_vec(req).expect("requests always serialize");
        line.push(b'\n');
        // A daemon that refuses the connection (see `access`) says why and
        // closes it, maybe before the request is written: its reason is
        // still there to read.
        let written = self.writer.write_all(&line);
        if let Err(e) = &written {
            if !matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ) {
                return Err(io(written.unwrap_err()));
            }
        }
        let mut buf = String::new();
        let n = (&mut self.reader)
            .take(MAX_REPLY as u64 + 1)
            .read_line(&mut buf)
            .map_err(|source| ClientError::Io {
                path: self.path.clone(),
                source,
            })?;
        if n == 0 {
            if let Err(e) = written {
                return Err(io(e));
            }
            return Err(ClientError::Protocol {
                path: self.path.clone(),
                detail: "connection closed before a reply".into(),
            });
        }
        if !buf.ends_with('\n') {
            return Err(ClientError::Protocol {
                path: self.path.clone(),
                detail: format!("reply longer than {MAX_REPLY} bytes"),
            });
        }
        serde_json::from_str(buf.trim_end()).map_err(|e| ClientError::Protocol {
            path: self.path.clone(),
            detail: e.to_string(),
        })
    }

    /// Sends a request to overlayd; an error reply becomes [`ClientError::Api`].
    pub fn call(&mut self, req: &Request) -> Result<Reply, ClientError> {
        match self.exchange(req)? {
            Reply::Error { error } => Err(ClientError::Api(error)),
            r => Ok(r),
        }
    }

    /// Sends a request to varpd; an error reply becomes [`ClientError::Api`].
    pub fn call_varpd(&mut self, req: &VarpdRequest) -> Result<VarpdReply, ClientError> {
        match self.exchange(req)? {
            VarpdReply::Error { error } => Err(ClientError::Api(error)),
            r => Ok(r),
        }
    }

    /// Fetches a statistics snapshot from overlayd.
    pub fn stats(&mut self, name: Option<&str>) -> Result<StatsSnapshot, ClientError> {
        self.stats_top(name, None)
    }

    /// Fetches a statistics snapshot with at most `max_peers` underlay
    /// peers per overlay (the busiest).
    pub fn stats_top(
        &mut self,
        name: Option<&str>,
        max_peers: Option<u32>,
    ) -> Result<StatsSnapshot, ClientError> {
        // The reply is `Reply::Stats`, but read through a plain struct:
        // serde reads an internally tagged enum by first buffering the whole
        // document into a tree, which costs more than the decoding itself
        // for a snapshot of thousands of overlays.
        let r: StatsWire = self.exchange(&Request::Stats {
            name: name.map(str::to_string),
            max_peers,
        })?;
        match (r.reply.as_str(), r.snapshot, r.error) {
            ("stats", Some(snapshot), _) => Ok(snapshot),
            ("error", _, Some(error)) => Err(ClientError::Api(error)),
            (other, ..) => Err(ClientError::Protocol {
                path: self.path.clone(),
                detail: format!("unexpected reply {other:?} to a stats request"),
            }),
        }
    }

    /// Fetches the target table of one overlay or all, page by page.
    pub fn targets(&mut self, name: Option<&str>) -> Result<Vec<TargetRow>, ClientError> {
        let mut all = Vec::new();
        self.targets_each(name, |page| all.extend(page))?;
        Ok(all)
    }

    /// Streams the target table of one overlay or all, handing each page to
    /// `f` as it arrives (a million entries never sit in one message).
    pub fn targets_each(
        &mut self,
        name: Option<&str>,
        mut f: impl FnMut(Vec<TargetRow>),
    ) -> Result<(), ClientError> {
        let mut cursor = None;
        loop {
            let req = Request::ShowTargets {
                name: name.map(str::to_string),
                cursor,
                limit: Some(TARGET_PAGE),
            };
            match self.call(&req)? {
                Reply::Targets { rows, next } => {
                    f(rows);
                    match next {
                        Some(c) => cursor = Some(c),
                        None => return Ok(()),
                    }
                }
                other => return Err(self.unexpected(&other)),
            }
        }
    }

    /// A protocol error for a reply of the wrong kind.
    pub fn unexpected(&self, r: &Reply) -> ClientError {
        ClientError::Protocol {
            path: self.path.clone(),
            detail: format!("unexpected reply {r:?}"),
        }
    }
}

/// [`Reply::Stats`] (or [`Reply::Error`]) as it is on the wire, read without
/// the tree that serde builds for an internally tagged enum.
#[derive(serde::Deserialize)]
struct StatsWire {
    reply: String,
    #[serde(default)]
    snapshot: Option<StatsSnapshot>,
    #[serde(default)]
    error: Option<ApiError>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    /// `StatsWire` reads what overlayd writes for [`Reply::Stats`] and
    /// [`Reply::Error`], and names any other reply.
    #[test]
    fn stats_reply_read_without_the_enum() {
        let snapshot = StatsSnapshot {
            time_ns: 7,
            mono_ns: 8,
            overlays: vec![OverlayStats {
                name: "ov0".into(),
                rx_frames: 3,
                ..Default::default()
            }],
            ..Default::default()
        };
        let j = serde_json::to_string(&Reply::Stats {
            snapshot: snapshot.clone(),
        })
        .unwrap();
        let w: StatsWire = serde_json::from_str(&j).unwrap();
        assert_eq!((w.reply.as_str(), w.snapshot), ("stats", Some(snapshot)));

        let error = ApiError::new(ErrorKind::NotFound, "no overlay ov9");
        let j = serde_json::to_string(&Reply::Error {
            error: error.clone(),
        })
        .unwrap();
        let w: StatsWire = serde_json::from_str(&j).unwrap();
        assert_eq!((w.reply.as_str(), w.error), ("error", Some(error)));

        let j = serde_json::to_string(&Reply::Linked).unwrap();
        let w: StatsWire = serde_json::from_str(&j).unwrap();
        assert_eq!(
            (w.reply.as_str(), w.snapshot, w.error),
            ("linked", None, None)
        );
    }
}
