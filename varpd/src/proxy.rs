//! Answering broadcast and multicast frames by proxy (illumos
//! `libvarpd_arp.c`): what varpd does with a lookup that carries a frame.
//!
//! The frame is classified (ARP, neighbour solicitation, DHCP, other),
//! checked, and only then is the plugin asked the one question it can
//! answer — which MAC owns this IPv4/IPv6 address, which MAC is this
//! client's DHCP server — so every plugin gets the same validation and the
//! same policy:
//!
//! - ARP replies, gratuitous ARP (sender IP == target IP), ARP probes
//!   (sender IP 0.0.0.0, RFC 5227) and requests for the requester's own
//!   address are consumed without an answer ([`LookupResult::Handled`]):
//!   answering them would make the guest think its address is taken.
//! - A neighbour solicitation for duplicate address detection (unspecified
//!   source) is not answered, for the same reason.
//! - A proxy answer is a frame to inject into the overlay, followed by
//!   `Handled`; no answer is [`LookupResult::NotAnswered`] with the reason.
//! - DHCP: a client's request (checked by [`overlay_wire::dhcp`]) is
//!   re-addressed to the MAC the plugin's `dhcp` op names as that client's
//!   server, and overlayd resends it through the target table
//!   ([`VarpdMsg::Resend`](overlay_api::proto::VarpdMsg::Resend)), as illumos'
//!   `libvarpd_dhcp_reply` does; then `Handled`.

use crate::plugin::{BoxFuture, Instance};
use crate::provider::InstanceStatus;
use overlay_api::proto::LookupResult;
use overlay_wire::eth::GroupKind;
use overlay_wire::{arp, dhcp, ndp};
use std::sync::Arc;

/// What to do with a group-addressed frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyOutcome {
    /// A frame to write into the overlay before answering, if any.
    pub inject: Option<Vec<u8>>,
    /// A frame to send out of the overlay (through the target table) before
    /// answering, if any.
    pub resend: Option<Vec<u8>>,
    /// The lookup's answer.
    pub result: LookupResult,
}

impl ProxyOutcome {
    fn handled(inject: Option<Vec<u8>>) -> Self {
        ProxyOutcome {
            inject,
            resend: None,
            result: LookupResult::Handled,
        }
    }

    fn not_answered(reason: impl Into<String>) -> Self {
        ProxyOutcome {
            inject: None,
            resend: None,
            result: LookupResult::NotAnswered {
                reason: reason.into(),
            },
        }
    }
}

/// Answers the group-addressed `frame` of kind `kind` with `instance`,
/// counting proxy answers in `status`.
pub fn answer(
    instance: Arc<dyn Instance>,
    status: Arc<InstanceStatus>,
    overlay: String,
    kind: GroupKind,
    frame: Vec<u8>,
) -> BoxFuture<ProxyOutcome> {
    Box::pin(async move {
        match kind {
            GroupKind::Arp => proxy_arp(&*instance, &status, &overlay, &frame).await,
            GroupKind::NeighborSolicit => proxy_ndp(&*instance, &status, &overlay, &frame).await,
            GroupKind::Dhcp => proxy_dhcp(&*instance, &status, &overlay, &frame).await,
            GroupKind::Other => {
                ProxyOutcome::not_answered("no proxy for this frame (not ARP, NDP or DHCP)")
            }
        }
    })
}

/// Tells `instance` which of this host's guests own which VL3 addresses,
/// from what a guest's group-addressed ARP or neighbour solicitation says
/// of itself: the sender of an ARP request, reply or gratuitous ARP (not
/// of a probe, whose sender address is 0.0.0.0), the source of a
/// solicitation, or for duplicate address detection (source `::`) its
/// target, the address the guest is taking.
pub fn learn(instance: &dyn Instance, kind: GroupKind, frame: &[u8]) {
    match kind {
        GroupKind::Arp => {
            if let Ok(m) = arp::parse(frame) {
                if !m.is_probe() && m.sender_mac == m.eth_src && m.sender_mac.is_unicast() {
                    instance.local_ip(m.sender_ip.into(), m.sender_mac);
                }
            }
        }
        GroupKind::NeighborSolicit => {
            if let Ok(ns) = ndp::parse_solicit(frame) {
                let ip = if ns.is_dad() { ns.target } else { ns.ip_src };
                if ns.eth_src.is_unicast() && !ip.is_unicast_link_local() {
                    instance.local_ip(ip.into(), ns.eth_src);
                }
            }
        }
        _ => {}
    }
}

async fn proxy_arp(
    instance: &dyn Instance,
    status: &InstanceStatus,
    overlay: &str,
    frame: &[u8],
) -> ProxyOutcome {
    let msg = match arp::parse(frame) {
        Ok(m) => m,
        Err(e) => return ProxyOutcome::not_answered(e.to_string()),
    };
    if msg.operation != arp::Operation::Request || msg.is_gratuitous() || msg.is_probe() {
        return ProxyOutcome::handled(None);
    }
    match instance.arp(msg.target_ip).await {
        // The guest asks for an address the file gives to itself: telling
        // it so could only look like a conflict.
        Ok(mac) if mac == msg.eth_src => ProxyOutcome::handled(None),
        Ok(mac) => match msg.reply(mac) {
            Ok(reply) => {
                InstanceStatus::bump(&status.proxy_arp);
                overlay_probes::varpd::proxy_arp(overlay, msg.eth_src, msg.target_ip.into(), mac);
                ProxyOutcome::handled(Some(reply))
            }
            Err(e) => ProxyOutcome::not_answered(e.to_string()),
        },
        Err(no) => ProxyOutcome::not_answered(no.0),
    }
}

async fn proxy_ndp(
    instance: &dyn Instance,
    status: &InstanceStatus,
    overlay: &str,
    frame: &[u8],
) -> ProxyOutcome {
    let ns = match ndp::parse_solicit(frame) {
        Ok(ns) => ns,
        Err(e) => return ProxyOutcome::not_answered(e.to_string()),
    };
    if ns.is_dad() {
        return ProxyOutcome::not_answered(ndp::NdpError::Dad.to_string());
    }
    match instance.ndp(ns.target).await {
        Ok(mac) if mac == ns.eth_src => ProxyOutcome::handled(None),
        Ok(mac) => match ns.advertisement(mac) {
            Ok(na) => {
                InstanceStatus::bump(&status.proxy_ndp);
                overlay_probes::varpd::proxy_ndp(overlay, ns.eth_src, ns.target.into(), mac);
                ProxyOutcome::handled(Some(na))
            }
            Err(e) => ProxyOutcome::not_answered(e.to_string()),
        },
        Err(no) => ProxyOutcome::not_answered(no.0),
    }
}

async fn proxy_dhcp(
    instance: &dyn Instance,
    status: &InstanceStatus,
    overlay: &str,
    frame: &[u8],
) -> ProxyOutcome {
    let Some(info) = overlay_wire::eth::classify(frame) else {
        return ProxyOutcome::not_answered("runt frame");
    };
    let (out, kind) = match dhcp::parse_request(frame) {
        Err(e) => (ProxyOutcome::not_answered(e.to_string()), ""),
        Ok(req) => {
            let kind = req.message_type.map_or("request", dhcp::message_type_name);
            let out = match instance.dhcp(req.client).await {
                // The server asking for itself has nowhere else to go.
                Ok(server) if server == req.client => {
                    ProxyOutcome::not_answered(format!("{server} is its own DHCP server"))
                }
                // The plugin promised a unicast MAC; a group address would
                // come back from overlayd as one more broadcast lookup.
                Ok(server) if !server.is_unicast() => {
                    ProxyOutcome::not_answered(format!("DHCP server {server} is not unicast"))
                }
                Ok(server) => {
                    InstanceStatus::bump(&status.proxy_dhcp);
                    ProxyOutcome {
                        inject: None,
                        resend: Some(dhcp::readdress(frame, server)),
                        result: LookupResult::Handled,
                    }
                }
                Err(no) => ProxyOutcome::not_answered(no.0),
            };
            (out, kind)
        }
    };
    let said = match &out.resend {
        Some(f) => format!(
            "resent {kind} to {}",
            overlay_wire::eth::classify(f).map_or(info.dst, |i| i.dst)
        ),
        None => crate::engine::result_reason(&out.result),
    };
    overlay_probes::varpd::proxy_dhcp(overlay, info.src, &said);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::Plugin;
    use crate::plugins::files::{Files, PROP_CONFIG};
    use crate::provider::Provider;
    use crate::testutil::{arp_frame, dhcp_frame, ns_frame, TempFile};
    use overlay_api::{DestMode, Mac};
    use overlay_wire::eth::classify;
    use std::net::Ipv6Addr;
    use std::sync::atomic::Ordering;
    use tokio::sync::mpsc;

    const GUEST: [u8; 6] = [2, 0x31, 0, 0, 0, 2];
    const OWNER: [u8; 6] = [2, 0x31, 0, 0, 0, 4];

    struct Fixture {
        _file: TempFile,
        instance: Arc<dyn Instance>,
        status: Arc<InstanceStatus>,
    }

    fn files() -> Fixture {
        let file = TempFile::new(
            "proxy",
            r#"{"02:31:00:00:00:04": {"ip": "10.31.0.2", "port": 4789, "arp": "192.168.32.4", "ndp": "fd32::4"},
                "02:31:00:00:00:02": {"ip": "10.31.0.1", "port": 4789, "dhcp-proxy": "02:31:00:00:00:04"},
                "02:31:00:00:00:03": {"ip": "10.31.0.1", "port": 4789}}"#,
        );
        let (tx, _rx) = mpsc::unbounded_channel();
        let p = Provider::new(1, "ov1", 1, DestMode::Dynamic, tx);
        let status = p.status().clone();
        let mut i = Files.create(p);
        i.setprop(PROP_CONFIG, file.path.to_str().unwrap()).unwrap();
        i.start().unwrap();
        Fixture {
            _file: file,
            instance: Arc::from(i),
            status,
        }
    }

    async fn ask(fx: &Fixture, frame: Vec<u8>) -> ProxyOutcome {
        let kind = classify(&frame).unwrap().group.unwrap();
        answer(
            fx.instance.clone(),
            fx.status.clone(),
            "ov0".into(),
            kind,
            frame,
        )
        .await
    }

    fn not_answered(reason: &str) -> ProxyOutcome {
        ProxyOutcome::not_answered(reason)
    }

    #[tokio::test]
    async fn arp_request_for_a_listed_address_is_answered() {
        let fx = files();
        let out = ask(
            &fx,
            arp_frame(1, GUEST, [192, 168, 32, 2], [192, 168, 32, 4]),
        )
        .await;
        assert_eq!(out.result, LookupResult::Handled);
        let reply = arp::parse(&out.inject.unwrap()).unwrap();
        assert_eq!(reply.operation, arp::Operation::Reply);
        assert_eq!((reply.eth_dst, reply.eth_src), (Mac(GUEST), Mac(OWNER)));
        assert_eq!(
            (reply.sender_mac, reply.sender_ip),
            (Mac(OWNER), [192, 168, 32, 4].into())
        );
        assert_eq!(
            (reply.target_mac, reply.target_ip),
            (Mac(GUEST), [192, 168, 32, 2].into())
        );
        assert_eq!(fx.status.proxy_arp.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn arp_decisions() {
        let fx = files();
        // Not listed: not answered.
        assert_eq!(
            ask(
                &fx,
                arp_frame(1, GUEST, [192, 168, 32, 2], [192, 168, 32, 9])
            )
            .await,
            not_answered("no entry has arp 192.168.32.9")
        );
        // Gratuitous ARP, even for a listed address: consumed, no answer.
        assert_eq!(
            ask(
                &fx,
                arp_frame(1, GUEST, [192, 168, 32, 4], [192, 168, 32, 4])
            )
            .await,
            ProxyOutcome::handled(None)
        );
        // ARP probes (RFC 5227) for a listed address: consumed, no answer.
        assert_eq!(
            ask(&fx, arp_frame(1, GUEST, [0, 0, 0, 0], [192, 168, 32, 4])).await,
            ProxyOutcome::handled(None)
        );
        // The owner asking for its own address: consumed, no answer.
        assert_eq!(
            ask(
                &fx,
                arp_frame(1, OWNER, [192, 168, 32, 9], [192, 168, 32, 4])
            )
            .await,
            ProxyOutcome::handled(None)
        );
        // ARP replies (including gratuitous announcements): consumed.
        assert_eq!(
            ask(
                &fx,
                arp_frame(2, GUEST, [192, 168, 32, 2], [192, 168, 32, 4])
            )
            .await,
            ProxyOutcome::handled(None)
        );
        // Malformed ARP: not answered, with the reason.
        let mut bad = arp_frame(1, GUEST, [192, 168, 32, 2], [192, 168, 32, 4]);
        bad[18] = 8;
        assert_eq!(
            ask(&fx, bad).await,
            not_answered("malformed ARP packet: truncated, or not Ethernet/IPv4")
        );
        assert_eq!(fx.status.proxy_arp.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn ndp_decisions() {
        let fx = files();
        let src: Ipv6Addr = "fd32::2".parse().unwrap();
        let out = ask(&fx, ns_frame(GUEST, src, "fd32::4".parse().unwrap())).await;
        assert_eq!(out.result, LookupResult::Handled);
        let na = out.inject.unwrap();
        assert_eq!(&na[..12], &[GUEST, OWNER].concat()[..]);
        assert_eq!(fx.status.proxy_ndp.load(Ordering::Relaxed), 1);
        // Unlisted target.
        assert_eq!(
            ask(&fx, ns_frame(GUEST, src, "fd32::9".parse().unwrap())).await,
            not_answered("no entry has ndp fd32::9")
        );
        // DAD for a listed address: never answered.
        assert_eq!(
            ask(
                &fx,
                ns_frame(GUEST, Ipv6Addr::UNSPECIFIED, "fd32::4".parse().unwrap())
            )
            .await,
            not_answered("duplicate address detection (unspecified source) is not answered")
        );
        assert_eq!(fx.status.proxy_ndp.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn dhcp_and_other_frames() {
        let fx = files();
        // GUEST's entry names OWNER as its DHCP server: the request is
        // resent to OWNER's MAC, byte for byte otherwise.
        let req = dhcp_frame(GUEST);
        let out = ask(&fx, req.clone()).await;
        assert_eq!(out.result, LookupResult::Handled);
        assert_eq!(out.inject, None);
        let resent = out.resend.expect("a resend");
        assert_eq!(&resent[..6], &OWNER);
        assert_eq!(resent[6..], req[6..]);
        assert_eq!(fx.status.proxy_dhcp.load(Ordering::Relaxed), 1);
        // An entry without dhcp-proxy, and a MAC with no entry.
        assert_eq!(
            ask(&fx, dhcp_frame([2, 0x31, 0, 0, 0, 3])).await,
            not_answered(&format!(
                "entry 02:31:00:00:00:03 in {} has no dhcp-proxy",
                fx._file.path.display()
            ))
        );
        assert_eq!(
            ask(&fx, dhcp_frame([2, 0x31, 0, 0, 0, 7])).await,
            not_answered(&format!(
                "no entry for 02:31:00:00:00:07 in {}",
                fx._file.path.display()
            ))
        );
        // A BOOTREPLY is not proxied; nothing is counted.
        let mut reply = dhcp_frame(GUEST);
        reply[42] = 2;
        assert_eq!(
            ask(&fx, reply).await,
            not_answered("BOOTP operation 2 is not a request")
        );
        assert_eq!(fx.status.proxy_dhcp.load(Ordering::Relaxed), 1);
        let mut mdns = dhcp_frame(GUEST);
        mdns[36..38].copy_from_slice(&5353u16.to_be_bytes());
        assert_eq!(
            ask(&fx, mdns).await,
            not_answered("no proxy for this frame (not ARP, NDP or DHCP)")
        );
    }
}
