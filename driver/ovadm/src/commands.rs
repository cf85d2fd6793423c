//! Carrying out an [`Invocation`]: one request to overlayd, one reply, and
//! the text it becomes.
//!
//! [`execute`] talks to anything that implements [`Overlayd`] and returns
//! what to print, so it is tested with a canned daemon; [`run`] connects the
//! real client and prints.

use crate::cli::{Action, FrameSource, Invocation, ShowTable};
use crate::output;
use overlay_api::proto::{Reply, Request, VarpdReply};
use overlay_api::{Client, ClientError};
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
                (ShowTable::Targets, Reply::Targets { mut rows, mut next }) => {
                    // A large table comes a page at a time.
                    while let Some(cursor) = next.take() {
                        let Request::ShowTargets { name, limit, .. } = request else {
                            return Err(daemon.unexpected(&Reply::Targets {
                                rows: Vec::new(),
                                next: Some(cursor),
                            }));
                        };
                        let page = Request::ShowTargets {
                            name: name.clone(),
                            cursor: Some(cursor),
                            limit: *limit,
                        };
                        match daemon.call(&page)? {
                            Reply::Targets {
                                rows: more,
                                next: n,
                            } => {
                                rows.extend(more);
                                next = n;
                            }
                            other => return Err(daemon.unexpected(&other)),
                        }
                    }
                    output::render(&rows, fields, *format)
                }
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
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(ClientError::Io {
            path: "standard output".into(),
            source: e,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::parse;
    use overlay_api::{ApiError, ErrorKind, Mac, StatsSnapshot, TargetDest, TargetRow};
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
