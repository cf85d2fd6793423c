//! Carrying out an [`Invocation`]: one request to overlayd, one reply, and
//! the text it becomes.
//!
//! [`execute`] talks to anything that implements [`Overlayd`] and returns
//! what to print, so it is tested with a canned daemon; [`run`] connects the
//! real client and prints. A target-table dump comes a page at a time; in
//! the parseable and JSON forms [`run`] writes each page to standard output
//! as it arrives (`stream_targets`, which `execute` runs into memory).

use crate::cli::{Action, FrameSource, Invocation, ShowTable};
use crate::output::{self, RowStream};
use overlay_api::proto::{Reply, Request, VarpdReply};
use overlay_api::{Client, ClientError, TargetRow};
use std::io::{self, Read, Write};

/// Something that answers overlayd's requests.
pub trait Overlayd {
    /// Sends one request and reads its reply; an error reply is an `Err`.
    fn call(&mut self, req: &Request) -> Result<Reply, ClientError>;
    /// The error for a reply of the wrong kind.
    fn unexpected(&self, reply: &Reply) -> ClientError;
}

impl Overlayd for Client {
    fn call(&mut self, req: &Request) -> Result<Reply, ClientError> {
        Client::call(self, req)
    }

    fn unexpected(&self, reply: &Reply) -> ClientError {
        Client::unexpected(self, reply)
    }
}

/// What a successful command prints.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// For standard output.
    pub stdout: String,
    /// overlayd's warning, for standard error.
    pub warning: Option<String>,
}

/// Sends the action's request and renders the reply.
pub fn execute(daemon: &mut impl Overlayd, action: &Action) -> Result<Outcome, ClientError> {
    match action {
        Action::Varpd(req) => Err(ClientError::Protocol {
            path: "overlayd.sock".into(),
            detail: format!("{req:?} is varpd's to answer, not overlayd's"),
        }),
        Action::Change(req) => match daemon.call(req)? {
            Reply::Ok { warning } => Ok(Outcome {
                stdout: String::new(),
                warning,
            }),
            // create-vnic's answer holds the new row; dladm prints nothing.
            Reply::Vnics { .. } if matches!(req, Request::CreateVnic { .. }) => {
                Ok(Outcome::default())
            }
            other => Err(daemon.unexpected(&other)),
        },
        Action::Show {
            request,
            table: ShowTable::Targets,
            fields,
            format,
        } => {
            let stdout = match RowStream::new::<TargetRow>(Vec::new(), fields, *format) {
                // The same streaming that `run` does to standard output.
                Some(stream) => {
                    let bytes = stream_targets(daemon, request, stream).map_err(|e| match e {
                        StreamError::Daemon(e) => e,
                        StreamError::Write(e) => ClientError::Io {
                            path: "memory".into(),
                            source: e,
                        },
                    })?;
                    String::from_utf8_lossy(&bytes).into_owned()
                }
                None => {
                    let mut rows = Vec::new();
                    page_targets(daemon, request, |page| {
                        rows.extend(page);
                        Ok::<_, ClientError>(())
                    })?;
                    output::render(&rows, fields, *format)
                }
            };
            Ok(Outcome {
                stdout,
                warning: None,
            })
        }
        Action::Show {
            request,
            table,
            fields,
            format,
        } => {
            let stdout = match (table, daemon.call(request)?) {
                (ShowTable::Props, Reply::Props { rows }) => output::render(&rows, fields, *format),
                (ShowTable::Status, Reply::Status { rows }) => {
                    output::render(&rows, fields, *format)
                }
                (ShowTable::Vnics, Reply::Vnics { rows }) => output::render(&rows, fields, *format),
                (_, other) => return Err(daemon.unexpected(&other)),
            };
            Ok(Outcome {
                stdout,
                warning: None,
            })
        }
        Action::VnicStats {
            name,
            fields,
            format,
        } => {
            let snapshot = match daemon.call(&Request::Stats {
                name: None,
                max_peers: Some(0),
            })? {
                Reply::Stats { snapshot } => snapshot,
                other => return Err(daemon.unexpected(&other)),
            };
            let mut rows: Vec<_> = snapshot
                .overlays
                .into_iter()
                .flat_map(|o| o.vnics)
                .filter(|v| name.as_ref().is_none_or(|n| &v.name == n))
                .collect();
            if let (Some(n), true) = (name, rows.is_empty()) {
                return Err(ClientError::Api(overlay_api::ApiError::new(
                    overlay_api::ErrorKind::NotFound,
                    format!("no such VNIC: {n}"),
                )));
            }
            rows.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(Outcome {
                stdout: output::render(&rows, fields, *format),
                warning: None,
            })
        }
        Action::Frame {
            name,
            source,
            resend,
        } => {
            let frame = read_frame(source)?;
            let req = if *resend {
                Request::ResendFrame {
                    name: name.clone(),
                    frame,
                }
            } else {
                Request::InjectFrame {
                    name: name.clone(),
                    frame,
                }
            };
            match daemon.call(&req)? {
                Reply::Ok { warning } => Ok(Outcome {
                    stdout: String::new(),
                    warning,
                }),
                other => Err(daemon.unexpected(&other)),
            }
        }
        Action::Stats { name, json } => {
            match daemon.call(&Request::Stats {
                name: name.clone(),
                max_peers: None,
            })? {
                Reply::Stats { snapshot } => Ok(Outcome {
                    stdout: if *json {
                        output::stats_json(&snapshot)
                    } else {
                        output::render_stats(&snapshot)
                    },
                    warning: None,
                }),
                other => Err(daemon.unexpected(&other)),
            }
        }
    }
}

/// Why a streamed dump stopped.
#[derive(Debug)]
enum StreamError {
    /// overlayd failed (or answered something else) between pages.
    Daemon(ClientError),
    /// The output could not be written (a closed pipe, a full disk).
    Write(io::Error),
}

impl From<ClientError> for StreamError {
    fn from(e: ClientError) -> Self {
        StreamError::Daemon(e)
    }
}

/// Asks for a target-table dump and hands each page's rows to `page` as it
/// arrives, following the cursors to the last page. Only one page is held
/// at a time.
fn page_targets<E: From<ClientError>>(
    daemon: &mut impl Overlayd,
    request: &Request,
    mut page: impl FnMut(Vec<TargetRow>) -> Result<(), E>,
) -> Result<(), E> {
    let Request::ShowTargets { name, limit, .. } = request else {
        return Err(ClientError::Protocol {
            path: "overlayd.sock".into(),
            detail: format!("{request:?} is not a target-table dump"),
        }
        .into());
    };
    let mut req = request.clone();
    loop {
        let (rows, next) = match daemon.call(&req)? {
            Reply::Targets { rows, next } => (rows, next),
            other => return Err(daemon.unexpected(&other).into()),
        };
        page(rows)?;
        let Some(cursor) = next else {
            return Ok(());
        };
        req = Request::ShowTargets {
            name: name.clone(),
            cursor: Some(cursor),
            limit: *limit,
        };
    }
}

/// `show-overlay -t -p` / `--json`: writes each page's rows to `stream` as it
/// comes. If overlayd fails midway the output stops there (a JSON array is
/// left open, so it does not parse as a whole dump) and the error is returned.
fn stream_targets<W: Write>(
    daemon: &mut impl Overlayd,
    request: &Request,
    mut stream: RowStream<W>,
) -> Result<W, StreamError> {
    page_targets(daemon, request, |rows| {
        stream.rows(&rows).map_err(StreamError::Write)
    })?;
    stream.finish().map_err(StreamError::Write)
}

/// The bytes of a frame to inject or resend: as given, or read from a file
/// (`-`: standard input).
fn read_frame(source: &FrameSource) -> Result<Vec<u8>, ClientError> {
    let path = match source {
        FrameSource::Bytes(b) => return Ok(b.clone()),
        FrameSource::File(p) => p,
    };
    let read = if path.as_os_str() == "-" {
        let mut b = Vec::new();
        io::stdin().read_to_end(&mut b).map(|_| b)
    } else {
        std::fs::read(path)
    };
    read.map_err(|e| {
        ClientError::Api(overlay_api::ApiError::new(
            overlay_api::ErrorKind::NotFound,
            format!("cannot read the frame from {}: {e}", path.display()),
        ))
    })
}

/// Connects to overlayd under the invocation's run directory, carries out
/// the action and prints its outcome. A closed standard output (`| head`) is
/// not an error.
pub fn run(inv: &Invocation) -> Result<(), ClientError> {
    let outcome = match &inv.action {
        Action::Varpd(req) => {
            let mut varpd = Client::varpd(&inv.run_dir)?;
            match varpd.call_varpd(req)? {
                VarpdReply::Done => Outcome::default(),
                other => {
                    return Err(ClientError::Protocol {
                        path: inv.run_dir.join(overlay_api::VARPD_SOCKET),
                        detail: format!("unexpected reply {other:?}"),
                    })
                }
            }
        }
        Action::Show {
            request,
            table: ShowTable::Targets,
            fields,
            format,
        } if *format != output::Format::Human => {
            let mut daemon = Client::overlayd(&inv.run_dir)?;
            let out = io::BufWriter::with_capacity(64 * 1024, io::stdout().lock());
            let stream = RowStream::new::<TargetRow>(out, fields, *format)
                .expect("parseable and JSON rows stream");
            return match stream_targets(&mut daemon, request, stream) {
                Ok(_) => Ok(()),
                Err(StreamError::Daemon(e)) => Err(e),
                Err(StreamError::Write(e)) => stdout_error(e),
            };
        }
        action => execute(&mut Client::overlayd(&inv.run_dir)?, action)?,
    };
    if let Some(w) = &outcome.warning {
        eprintln!("ovadm: warning: {w}");
    }
    let mut out = io::stdout().lock();
    match out
        .write_all(outcome.stdout.as_bytes())
        .and_then(|()| out.flush())
    {
        Err(e) => stdout_error(e),
        Ok(()) => Ok(()),
    }
}

/// A failed write to standard output: an error, unless the reader went away
/// (`| head`).
fn stdout_error(e: io::Error) -> Result<(), ClientError> {
    if e.kind() == io::ErrorKind::BrokenPipe {
        return Ok(());
    }
    Err(ClientError::Io {
        path: "standard output".into(),
        source: e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::parse;
    use overlay_api::{
        ApiError, ErrorKind, Mac, StatsSnapshot, TargetCursor, TargetDest, TargetRow,
    };
    use std::path::PathBuf;

    /// Answers with canned replies and remembers the requests.
    struct Canned {
        replies: Vec<Reply>,
        seen: Vec<Request>,
    }

    impl Overlayd for Canned {
        fn call(&mut self, req: &Request) -> Result<Reply, ClientError> {
            self.seen.push(req.clone());
            match self.replies.remove(0) {
                Reply::Error { error } => Err(ClientError::Api(error)),
                r => Ok(r),
            }
        }

        fn unexpected(&self, reply: &Reply) -> ClientError {
            ClientError::Protocol {
                path: PathBuf::from("canned"),
                detail: format!("unexpected reply {reply:?}"),
            }
        }
    }

    fn action(args: &[&str]) -> Action {
        match parse(std::iter::once("ovadm").chain(args.iter().copied())) {
            Ok(i) => i.action,
            Err(e) => panic!("{args:?}: {e}"),
        }
    }

    fn canned(reply: Reply) -> Canned {
        Canned {
            replies: vec![reply],
            seen: Vec::new(),
        }
    }

    #[test]
    fn change_passes_the_warning_on() {
        let mut d = canned(Reply::Ok {
            warning: Some("varpd is not running; ov0 is degraded".into()),
        });
        let out = execute(&mut d, &action(&["modify-overlay", "-f", "ov0"])).expect("ok");
        assert_eq!(out.stdout, "");
        assert_eq!(
            out.warning.as_deref(),
            Some("varpd is not running; ov0 is degraded")
        );
        assert_eq!(d.seen, [Request::FlushTargets { name: "ov0".into() }]);
    }

    #[test]
    fn error_reply_message_is_kept_as_is() {
        let msg = "property 'mtu': 99999 is out of range 576-8900";
        let mut d = canned(Reply::Error {
            error: ApiError::new(ErrorKind::Property, msg),
        });
        let e = execute(
            &mut d,
            &action(&[
                "create-overlay",
                "-e",
                "vxlan",
                "-s",
                "direct",
                "-v",
                "1",
                "-p",
                "mtu=99999",
                "ov0",
            ]),
        )
        .expect_err("error reply");
        assert_eq!(e.to_string(), msg);
    }

    #[test]
    fn show_targets_renders_rows() {
        let rows = vec![TargetRow {
            link: "ov0".into(),
            target: "02:00:00:00:00:02".parse::<Mac>().expect("mac"),
            destination: TargetDest::Drop,
            age_ms: None,
            idle_ms: None,
            frames: None,
            bytes: None,
        }];
        let mut d = canned(Reply::Targets { rows, next: None });
        let out = execute(&mut d, &action(&["show-overlay", "-t", "ov0"])).expect("ok");
        assert_eq!(
            out.stdout,
            "LINK  TARGET             DESTINATION\nov0   02:00:00:00:00:02  drop\n"
        );
        assert_eq!(
            d.seen,
            [Request::ShowTargets {
                name: Some("ov0".into()),
                cursor: None,
                limit: None
            }]
        );
    }

    #[test]
    fn show_targets_follows_the_cursors_in_every_format() {
        let row = |i: u8| TargetRow {
            link: "ov0".into(),
            target: Mac([2, 0, 0, 0, 0, i]),
            destination: TargetDest::Drop,
            age_ms: None,
            idle_ms: None,
            frames: None,
            bytes: None,
        };
        let cursor = |pos| TargetCursor {
            overlay: "ov0".into(),
            pos,
        };
        let pages = || Canned {
            replies: vec![
                Reply::Targets {
                    rows: vec![row(1), row(2)],
                    next: Some(cursor(2)),
                },
                Reply::Targets {
                    rows: vec![row(3)],
                    next: Some(cursor(3)),
                },
                Reply::Targets {
                    rows: vec![],
                    next: None,
                },
            ],
            seen: Vec::new(),
        };
        let mut d = pages();
        let out = execute(
            &mut d,
            &action(&["show-overlay", "-t", "-p", "-o", "target"]),
        )
        .expect("ok");
        assert_eq!(
            out.stdout,
            "02:00:00:00:00:01\n02:00:00:00:00:02\n02:00:00:00:00:03\n"
        );
        let asked: Vec<_> = d
            .seen
            .iter()
            .map(|r| match r {
                Request::ShowTargets { cursor, .. } => cursor.as_ref().map(|c| c.pos),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(asked, [None, Some(2), Some(3)]);
        let mut d = pages();
        let out = execute(&mut d, &action(&["show-overlay", "-t", "--json"])).expect("ok");
        let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("one JSON document");
        assert_eq!(v.as_array().map(Vec::len), Some(3), "{v}");
        assert_eq!(v[2]["target"], "02:00:00:00:00:03");
        let mut d = pages();
        let out = execute(&mut d, &action(&["show-overlay", "-t"])).expect("ok");
        assert_eq!(out.stdout.lines().count(), 4, "{}", out.stdout);
        // overlayd failing between pages fails the command.
        let mut d = pages();
        d.replies[1] = Reply::Error {
            error: ApiError::new(ErrorKind::NotFound, "no such overlay: ov0"),
        };
        let e = execute(&mut d, &action(&["show-overlay", "-t", "--json"])).expect_err("failed");
        assert_eq!(e.to_string(), "no such overlay: ov0");
    }

    #[test]
    fn reply_of_the_wrong_kind_is_a_protocol_error() {
        let mut d = canned(Reply::Targets {
            rows: Vec::new(),
            next: None,
        });
        let e = execute(&mut d, &action(&["show-overlay", "-f"])).expect_err("wrong kind");
        assert!(matches!(e, ClientError::Protocol { .. }), "{e}");
        let mut d = canned(Reply::Linked);
        assert!(execute(&mut d, &action(&["delete-overlay", "ov0"])).is_err());
    }

    #[test]
    fn frames_are_read_and_sent_as_requests() {
        let path = std::env::temp_dir().join(format!("ovadm-frame-{}", std::process::id()));
        std::fs::write(&path, [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x88, 0xb5]).expect("write");
        let mut d = canned(Reply::Ok {
            warning: Some("waits for varpd".into()),
        });
        let out = execute(
            &mut d,
            &action(&["resend-frame", "-l", "ov0", path.to_str().expect("utf-8")]),
        )
        .expect("ok");
        assert_eq!(out.warning.as_deref(), Some("waits for varpd"));
        assert_eq!(
            d.seen,
            [Request::ResendFrame {
                name: "ov0".into(),
                frame: vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x88, 0xb5],
            }]
        );
        let _ = std::fs::remove_file(&path);
        let mut d = canned(Reply::Ok { warning: None });
        let e = execute(
            &mut d,
            &action(&["inject-frame", "-l", "ov0", path.to_str().expect("utf-8")]),
        )
        .expect_err("no file");
        assert!(
            e.to_string().starts_with(&format!(
                "cannot read the frame from {}: No such file",
                path.display()
            )),
            "{e}"
        );
        assert!(
            d.seen.is_empty(),
            "nothing is sent when the file cannot be read"
        );
    }

    #[test]
    fn stats_json_and_table() {
        let mut d = canned(Reply::Stats {
            snapshot: StatsSnapshot::default(),
        });
        let out = execute(&mut d, &action(&["show-stats", "--json", "ov0"])).expect("ok");
        assert_eq!(
            d.seen,
            [Request::Stats {
                name: Some("ov0".into()),
                max_peers: None,
            }]
        );
        let back: StatsSnapshot = serde_json::from_str(&out.stdout).expect("json");
        assert_eq!(back, StatsSnapshot::default());
        let mut d = canned(Reply::Stats {
            snapshot: StatsSnapshot::default(),
        });
        let out = execute(&mut d, &action(&["show-stats"])).expect("ok");
        assert!(
            out.stdout.starts_with("varpd: not linked\n"),
            "{}",
            out.stdout
        );
    }
}
