//! The varpd link: varpd's connection to overlayd (`RUN_DIR/overlayd.sock`).
//!
//! varpd connects, says [`Request::VarpdHello`] (its protocol version, pid
//! and plugins) and waits for [`Reply::Linked`]. From then on two loops run
//! until overlayd closes the connection or a write fails: the reader parses
//! [`DriverMsg`] lines and hands them to the [`Engine`], spawning one task
//! per lookup; the writer drains the outbox ([`VarpdMsg`] lines) that the
//! engine, the lookup tasks and the instances' providers all write to.
//!
//! A line longer than [`MAX_MESSAGE`] or one that does not parse is logged
//! and skipped; one bad message never ends the link. When the link ends,
//! every instance is dropped — overlayd re-sends an `Instance` for every
//! overlay and every pending lookup on the next link — and varpd reconnects,
//! retrying with a backoff from 100 ms to 1 s for as long as overlayd is
//! away.

use crate::engine::Engine;
use crate::lines::{Line, LineReader};
use overlay_api::proto::{DriverMsg, Reply, Request, VarpdMsg};
use overlay_api::{ApiError, MAX_MESSAGE, PROTOCOL_VERSION};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

/// First wait before reconnecting.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest wait between reconnection attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How long overlayd has to answer the hello.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a link attempt or a link ended.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Reading or writing the socket failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// overlayd answered the hello with an error (a version mismatch, say).
    #[error("overlayd refused the link: {0}")]
    Refused(ApiError),
    /// overlayd answered the hello with something else.
    #[error("unexpected answer to the hello: {0}")]
    Unexpected(String),
    /// overlayd did not answer the hello in time.
    #[error("overlayd did not answer the hello within {0:?}")]
    Timeout(Duration),
    /// overlayd closed the connection before answering the hello.
    #[error("overlayd closed the connection before answering the hello")]
    Closed,
}

/// Links to overlayd at `socket` and serves the link, forever: reconnects
/// whenever the link ends or cannot be made.
pub async fn run(socket: PathBuf, engine: Arc<Engine>) {
    let mut backoff = BACKOFF_MIN;
    let mut last_problem = String::new();
    loop {
        let problem = match UnixStream::connect(&socket).await {
            Ok(stream) => {
                let result = session(stream, &engine, &socket).await;
                let was_linked = engine.is_linked();
                engine.unlinked();
                if was_linked {
                    backoff = BACKOFF_MIN;
                    last_problem.clear();
                }
                match result {
                    Ok(()) if was_linked => {
                        log::info!("overlayd closed the link; reconnecting");
                        None
                    }
                    Ok(()) => Some("overlayd closed the connection".to_string()),
                    Err(e) if was_linked => {
                        log::warn!("link to overlayd lost: {e}; reconnecting");
                        None
                    }
                    Err(e) => Some(e.to_string()),
                }
            }
            Err(e) => Some(format!("waiting for overlayd at {}: {e}", socket.display())),
        };
        if let Some(p) = problem {
            // Say it once, not once a second.
            if p != last_problem {
                log::info!("{p}");
                last_problem = p;
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

async fn write_line<W: AsyncWrite + Unpin, T: Serialize>(
    w: &mut W,
    msg: &T,
) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    line.push(b'\n');
    w.write_all(&line).await
}

/// The start of a bad line, for a log message.
fn preview(line: &[u8]) -> String {
    let s = String::from_utf8_lossy(&line[..line.len().min(120)]).into_owned();
    if line.len() > 120 {
        format!("{s}...")
    } else {
        s
    }
}

/// One connection: hello, then the two loops until either ends.
async fn session(stream: UnixStream, engine: &Arc<Engine>, socket: &Path) -> Result<(), LinkError> {
    let (rd, mut wr) = stream.into_split();
    let mut lines = LineReader::new(BufReader::new(rd), MAX_MESSAGE);
    let hello = Request::VarpdHello {
        version: PROTOCOL_VERSION,
        pid: std::process::id(),
        plugins: engine.plugin_info(),
    };
    write_line(&mut wr, &hello).await?;
    let answer = tokio::time::timeout(HELLO_TIMEOUT, lines.next())
        .await
        .map_err(|_| LinkError::Timeout(HELLO_TIMEOUT))??;
    match answer {
        Line::Eof => return Err(LinkError::Closed),
        Line::TooLong(n) => return Err(LinkError::Unexpected(format!("a {n}-byte line"))),
        Line::Text(t) => match serde_json::from_slice::<Reply>(&t) {
            Ok(Reply::Linked) => {}
            Ok(Reply::Error { error }) => return Err(LinkError::Refused(error)),
            Ok(other) => return Err(LinkError::Unexpected(format!("{other:?}"))),
            Err(e) => return Err(LinkError::Unexpected(format!("{e}: {}", preview(&t)))),
        },
    }
    engine.linked();
    log::info!("linked to overlayd at {}", socket.display());

    let (tx, mut rx) = mpsc::unbounded_channel::<VarpdMsg>();
    let writer = async move {
        while let Some(msg) = rx.recv().await {
            write_line(&mut wr, &msg).await?;
        }
        Ok::<(), std::io::Error>(())
    };
    let reader = async {
        loop {
            match lines.next().await? {
                Line::Eof => return Ok::<(), std::io::Error>(()),
                Line::TooLong(n) => {
                    log::warn!("skipping a {n}-byte message from overlayd (limit {MAX_MESSAGE})")
                }
                Line::Text(t) => match serde_json::from_slice::<DriverMsg>(&t) {
                    Err(e) => log::warn!(
                        "skipping unparsable message from overlayd ({e}): {}",
                        preview(&t)
                    ),
                    Ok(msg) => {
                        log::debug!("overlayd: {msg:?}");
                        if let Some(answer) = engine.handle(msg, &tx) {
                            let tx = tx.clone();
                            tokio::spawn(async move {
                                for m in answer.await {
                                    // A closed outbox means the link is gone;
                                    // overlayd will ask again.
                                    let _ = tx.send(m);
                                }
                            });
                        }
                    }
                },
            }
        }
    };
    tokio::select! {
        r = reader => r?,
        w = writer => w?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins;
    use crate::testutil::{arp_frame, write_atomically, TempDir};
    use overlay_api::proto::{LookupResult, VarpdReply};
    use overlay_api::{DestMode, Mac};
    use std::collections::BTreeMap;
    use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
    use tokio::net::UnixListener;
    use tokio::time::timeout;

    const WAIT: Duration = Duration::from_secs(5);

    /// overlayd's end of one link.
    struct Peer {
        lines: LineReader<BufReader<OwnedReadHalf>>,
        wr: OwnedWriteHalf,
    }

    impl Peer {
        /// Accepts varpd, checks its hello and answers `linked`.
        async fn accept(listener: &UnixListener) -> Peer {
            let (stream, _) = timeout(WAIT, listener.accept())
                .await
                .expect("varpd never connected")
                .unwrap();
            let (rd, wr) = stream.into_split();
            let mut peer = Peer {
                lines: LineReader::new(BufReader::new(rd), MAX_MESSAGE),
                wr,
            };
            match serde_json::from_slice::<Request>(&peer.line().await).unwrap() {
                Request::VarpdHello {
                    version,
                    pid,
                    plugins,
                } => {
                    assert_eq!(version, PROTOCOL_VERSION);
                    assert_eq!(pid, std::process::id());
                    let names: Vec<(&str, DestMode)> =
                        plugins.iter().map(|p| (p.name.as_str(), p.mode)).collect();
                    assert_eq!(
                        names,
                        [
                            ("direct", DestMode::Point),
                            ("files", DestMode::Dynamic),
                            ("etcd", DestMode::Dynamic)
                        ]
                    );
                    assert_eq!(plugins[1].props[0].name, "files/config");
                    assert!(plugins[1].props[0].required);
                    assert_eq!(plugins[0].props[1].possible.as_deref(), Some("1-65535"));
                }
                other => panic!("expected a hello, got {other:?}"),
            }
            peer.raw(b"{\"reply\":\"linked\"}\n").await;
            peer
        }

        async fn line(&mut self) -> Vec<u8> {
            match timeout(WAIT, self.lines.next())
                .await
                .expect("varpd said nothing")
                .unwrap()
            {
                Line::Text(t) => t,
                other => panic!("expected a line, got {other:?}"),
            }
        }

        async fn recv(&mut self) -> VarpdMsg {
            let t = self.line().await;
            serde_json::from_slice(&t)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&t)))
        }

        async fn raw(&mut self, b: &[u8]) {
            self.wr.write_all(b).await.unwrap();
        }

        async fn send(&mut self, m: &DriverMsg) {
            let mut b = serde_json::to_vec(m).unwrap();
            b.push(b'\n');
            self.raw(&b).await;
        }

        async fn lookup(
            &mut self,
            id: u64,
            oid: u64,
            dst: &str,
            frame: Option<Vec<u8>>,
        ) -> VarpdMsg {
            let src = mac("02:31:00:00:00:02");
            self.send(&DriverMsg::Lookup {
                id,
                oid,
                src,
                dst: dst.parse().unwrap(),
                frame,
            })
            .await;
            self.recv().await
        }
    }

    fn mac(s: &str) -> Mac {
        s.parse().unwrap()
    }

    fn instance(oid: u64, search: &str, props: &[(&str, &str)]) -> DriverMsg {
        let mut all: BTreeMap<String, String> = [
            ("mtu", "1400"),
            ("vxlan/listen_ip", "10.0.0.1"),
            ("vxlan/listen_port", "4789"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        all.extend(props.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        DriverMsg::Instance {
            oid,
            overlay: format!("ov{oid}"),
            vnetid: 100 + oid as u32,
            search: search.into(),
            props: all,
        }
    }

    fn failed(oid: u64, error: &str) -> VarpdMsg {
        VarpdMsg::InstanceFailed {
            oid,
            error: error.into(),
            serving: false,
        }
    }

    fn result(id: u64, oid: u64, result: LookupResult) -> VarpdMsg {
        VarpdMsg::LookupReply { id, oid, result }
    }

    const FILES: &str = r#"{
        "02:31:00:00:00:04": {"ip": "10.31.0.2", "port": 4789, "arp": "192.168.32.4"},
        "02:31:00:00:00:05": {"ip": "10.31.0.3", "port": 4789}
    }"#;

    #[tokio::test]
    async fn serves_a_link_and_relinks() {
        let dir = TempDir::new("link");
        let config = dir.join("files.json");
        std::fs::write(&config, FILES).unwrap();
        let config = config.to_str().unwrap().to_string();
        let sock = dir.join("overlayd.sock");
        let engine = Arc::new(Engine::new(plugins::all()));
        let task = tokio::spawn(run(sock.clone(), engine.clone()));

        // overlayd starts after varpd.
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(!engine.is_linked());
        let listener = UnixListener::bind(&sock).unwrap();
        let mut od = Peer::accept(&listener).await;

        od.send(&instance(1, "files", &[("files/config", &config)]))
            .await;
        assert_eq!(
            od.recv().await,
            VarpdMsg::InstanceReady {
                oid: 1,
                mode: DestMode::Dynamic,
                point: None
            }
        );
        assert!(engine.is_linked());

        // Refusals name the culprit.
        od.send(&instance(2, "nope", &[])).await;
        assert_eq!(
            od.recv().await,
            failed(
                2,
                "unknown search plugin 'nope' (varpd has: direct, files, etcd)"
            )
        );
        od.send(&instance(
            3,
            "direct",
            &[
                ("direct/dest_ip", "10.9.0.1"),
                ("direct/dest_port", "70000"),
            ],
        ))
        .await;
        assert_eq!(
            od.recv().await,
            failed(3, "direct/dest_port: '70000' is not in 1-65535")
        );
        od.send(&instance(4, "files", &[])).await;
        assert_eq!(
            od.recv().await,
            failed(4, "unset required property: files/config")
        );
        od.send(&instance(
            5,
            "direct",
            &[("direct/dest_ip", "10.9.0.1"), ("direct/dest_port", "4789")],
        ))
        .await;
        assert_eq!(
            od.recv().await,
            VarpdMsg::InstanceReady {
                oid: 5,
                mode: DestMode::Point,
                point: Some("10.9.0.1:4789".parse().unwrap())
            }
        );

        // Junk is skipped, not fatal: garbage, an unknown message, an
        // over-long line.
        od.raw(b"this is not json\n{\"msg\":\"reboot\"}\n").await;
        let mut long = vec![b'x'; MAX_MESSAGE + 10];
        long.push(b'\n');
        od.raw(&long).await;

        // Unicast lookups.
        assert_eq!(
            od.lookup(10, 1, "02:31:00:00:00:04", None).await,
            result(
                10,
                1,
                LookupResult::Target {
                    dest: "10.31.0.2:4789".parse().unwrap()
                }
            )
        );
        assert_eq!(
            od.lookup(11, 1, "02:31:00:00:00:09", None).await,
            result(
                11,
                1,
                LookupResult::Drop {
                    reason: format!("no entry for 02:31:00:00:00:09 in {config}")
                }
            )
        );
        assert_eq!(
            od.lookup(12, 5, "02:31:00:00:00:09", None).await,
            result(
                12,
                5,
                LookupResult::Target {
                    dest: "10.9.0.1:4789".parse().unwrap()
                }
            )
        );
        assert_eq!(
            od.lookup(13, 99, "02:31:00:00:00:04", None).await,
            result(
                13,
                99,
                LookupResult::Drop {
                    reason: "no instance".into()
                }
            )
        );
        assert_eq!(
            od.lookup(14, 4, "02:31:00:00:00:04", None).await,
            result(
                14,
                4,
                LookupResult::Drop {
                    reason: "instance failed: unset required property: files/config".into()
                }
            )
        );

        // Proxy ARP: an inject, then the answer.
        let req = arp_frame(
            1,
            [2, 0x31, 0, 0, 0, 2],
            [192, 168, 32, 2],
            [192, 168, 32, 4],
        );
        match od.lookup(15, 1, "ff:ff:ff:ff:ff:ff", Some(req)).await {
            VarpdMsg::Inject { oid: 1, frame } => {
                let reply = overlay_wire::arp::parse(&frame).unwrap();
                assert_eq!(reply.operation, overlay_wire::arp::Operation::Reply);
                assert_eq!(
                    (reply.eth_dst, reply.eth_src),
                    (mac("02:31:00:00:00:02"), mac("02:31:00:00:00:04"))
                );
                assert_eq!(reply.sender_ip, std::net::Ipv4Addr::new(192, 168, 32, 4));
                assert_eq!(reply.target_ip, std::net::Ipv4Addr::new(192, 168, 32, 2));
            }
            other => panic!("expected an inject, got {other:?}"),
        }
        assert_eq!(od.recv().await, result(15, 1, LookupResult::Handled));
        let unlisted = arp_frame(
            1,
            [2, 0x31, 0, 0, 0, 2],
            [192, 168, 32, 2],
            [192, 168, 32, 7],
        );
        assert_eq!(
            od.lookup(16, 1, "ff:ff:ff:ff:ff:ff", Some(unlisted)).await,
            result(
                16,
                1,
                LookupResult::NotAnswered {
                    reason: "no entry has arp 192.168.32.7".into()
                }
            )
        );

        // Counters, as varpd.sock shows them.
        match engine.status() {
            VarpdReply::Status {
                linked,
                plugins,
                instances,
            } => {
                assert!(linked);
                assert_eq!(plugins.len(), 3);
                let i1 = instances.iter().find(|i| i.oid == 1).unwrap();
                assert_eq!((i1.lookups, i1.proxy_arp, i1.proxy_ndp), (4, 1, 0));
                assert_eq!(i1.status, overlay_api::OverlayState::Online);
                let i4 = instances.iter().find(|i| i.oid == 4).unwrap();
                assert_eq!(i4.status, overlay_api::OverlayState::Degraded);
                assert_eq!(
                    i4.details.as_deref(),
                    Some("unset required property: files/config")
                );
            }
            other => panic!("{other:?}"),
        }

        // Delete.
        od.send(&DriverMsg::InstanceDelete { oid: 5 }).await;
        assert_eq!(
            od.lookup(17, 5, "02:31:00:00:00:04", None).await,
            result(
                17,
                5,
                LookupResult::Drop {
                    reason: "no instance".into()
                }
            )
        );

        // SIGHUP with a changed file: exactly the changed MACs are
        // invalidated; the failed instances are retried (and fail again).
        write_atomically(
            std::path::Path::new(&config),
            r#"{
            "02:31:00:00:00:04": {"ip": "10.31.0.2", "port": 4789, "arp": "192.168.32.4"},
            "02:31:00:00:00:05": {"ip": "10.31.0.33", "port": 4789}
        }"#,
        );
        engine.hangup();
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(od.recv().await);
        }
        assert_eq!(
            got,
            vec![
                VarpdMsg::Invalidate {
                    oid: 1,
                    mac: Some(mac("02:31:00:00:00:05"))
                },
                failed(
                    2,
                    "unknown search plugin 'nope' (varpd has: direct, files, etcd)"
                ),
                failed(3, "direct/dest_port: '70000' is not in 1-65535"),
                failed(4, "unset required property: files/config"),
            ]
        );
        // A broken file: failed, old mapping kept; fixed: ready again.
        write_atomically(
            std::path::Path::new(&config),
            "{\n  \"02:31:00:00:00:04\": {\"ip\": \"10.31.0.2\",,\n}",
        );
        od.send(&DriverMsg::InstanceDelete { oid: 2 }).await;
        od.send(&DriverMsg::InstanceDelete { oid: 3 }).await;
        od.send(&DriverMsg::InstanceDelete { oid: 4 }).await;
        // The deletes are handled before the lookup is answered.
        assert_eq!(
            od.lookup(18, 1, "02:31:00:00:00:05", None).await,
            result(
                18,
                1,
                LookupResult::Target {
                    dest: "10.31.0.33:4789".parse().unwrap()
                }
            )
        );
        engine.hangup();
        assert_eq!(
            od.recv().await,
            VarpdMsg::InstanceFailed {
                oid: 1,
                error: format!("{config}:2:43: key must be a string"),
                serving: true,
            }
        );
        assert_eq!(
            od.lookup(19, 1, "02:31:00:00:00:05", None).await,
            result(
                19,
                1,
                LookupResult::Target {
                    dest: "10.31.0.33:4789".parse().unwrap()
                }
            )
        );
        write_atomically(std::path::Path::new(&config), FILES);
        engine.hangup();
        assert_eq!(
            od.recv().await,
            VarpdMsg::Invalidate {
                oid: 1,
                mac: Some(mac("02:31:00:00:00:05"))
            }
        );
        assert_eq!(
            od.recv().await,
            VarpdMsg::InstanceReady {
                oid: 1,
                mode: DestMode::Dynamic,
                point: None
            }
        );

        // overlayd goes away: varpd drops everything and links again.
        drop(od);
        let mut od = Peer::accept(&listener).await;
        assert_eq!(
            od.lookup(20, 1, "02:31:00:00:00:04", None).await,
            result(
                20,
                1,
                LookupResult::Drop {
                    reason: "no instance".into()
                }
            )
        );
        assert!(engine.is_linked());
        od.send(&instance(1, "files", &[("files/config", &config)]))
            .await;
        assert_eq!(
            od.recv().await,
            VarpdMsg::InstanceReady {
                oid: 1,
                mode: DestMode::Dynamic,
                point: None
            }
        );
        assert_eq!(
            od.lookup(21, 1, "02:31:00:00:00:04", None).await,
            result(
                21,
                1,
                LookupResult::Target {
                    dest: "10.31.0.2:4789".parse().unwrap()
                }
            )
        );

        // overlayd restarts: its socket goes away for a while.
        drop(od);
        drop(listener);
        std::fs::remove_file(&sock).unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!engine.is_linked());
        let listener = UnixListener::bind(&sock).unwrap();
        let _od = Peer::accept(&listener).await;
        task.abort();
    }

    #[tokio::test]
    async fn a_refused_hello_is_retried() {
        let dir = TempDir::new("link-refused");
        let sock = dir.join("overlayd.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let engine = Arc::new(Engine::new(plugins::all()));
        let task = tokio::spawn(run(sock.clone(), engine.clone()));
        // Refuse the first hello, answer nonsense to the second.
        for answer in [&b"{\"reply\":\"error\",\"error\":{\"kind\":\"bad-request\",\"message\":\"protocol version 1 is not 2\"}}\n"[..], b"{\"reply\":\"ok\"}\n"] {
            let (stream, _) = timeout(WAIT, listener.accept()).await.unwrap().unwrap();
            let (rd, mut wr) = stream.into_split();
            let mut lines = LineReader::new(BufReader::new(rd), MAX_MESSAGE);
            assert!(matches!(lines.next().await.unwrap(), Line::Text(_)));
            wr.write_all(answer).await.unwrap();
            assert_eq!(timeout(WAIT, lines.next()).await.unwrap().unwrap(), Line::Eof);
            assert!(!engine.is_linked());
        }
        // The third time is linked.
        let _od = Peer::accept(&listener).await;
        task.abort();
    }
}
