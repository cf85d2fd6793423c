//! # overlay-probes: the USDT probes of overlayd and varpd
//!
//! Theory statement. The providers are defined in D, in `probes/overlay.d`
//! and `probes/varpd.d`, and compiled into the daemons with the `usdt`
//! crate, which checks the D files when it builds (with dtrace-parser) and
//! emits SystemTap v3 notes on Linux (bpftrace, `usdt:BINARY:overlay:tx`)
//! and real DTrace probes on illumos and macOS.
//!
//! Each probe is wrapped in an `#[inline(always)]` function here whose
//! arguments are cheap to pass (names, integers, `Copy` addresses): the
//! text forms that tracers read (MAC and IP strings) are built inside the
//! probe's closure, which runs only when a tracer has enabled that probe.
//! A disabled probe costs one load of its semaphore and a branch.
//!
//! Without the `usdt` feature every function is empty: the baseline that
//! the probe-cost benchmark compares against.
//!
//! Probe names are `kebab-case` in traces (`target__miss` in D is
//! `target-miss`). Arguments are listed in `probes/README.md` and never
//! change meaning; new arguments go at the end.

#[cfg(feature = "usdt")]
mod sys {
    usdt::dtrace_provider!("overlay.d");
    usdt::dtrace_provider!("varpd.d");
}

/// Registers the probes with the system's DTrace (a no-op on Linux, where
/// the ELF notes are found by the tracer). Call once at start-up.
pub fn register() -> Result<(), String> {
    #[cfg(feature = "usdt")]
    {
        usdt::register_probes().map_err(|e| e.to_string())
    }
    #[cfg(not(feature = "usdt"))]
    Ok(())
}

use overlay_api::proto::LookupResult;

/// The text a lookup result has in probes: `ip:port`, `drop:REASON`,
/// `handled` or `not-answered:REASON`.
pub fn result_text(r: &LookupResult) -> String {
    match r {
        LookupResult::Target { dest } => dest.to_string(),
        LookupResult::Drop { reason } => format!("drop:{reason}"),
        LookupResult::Handled => "handled".into(),
        LookupResult::NotAnswered { reason } => format!("not-answered:{reason}"),
    }
}

macro_rules! probe_fns {
    ($provider:ident { $(
        $(#[doc = $doc:literal])*
        fn $name:ident ( $($arg:ident : $ty:ty),* ) => $probe:ident ( $($val:expr),* );
    )* }) => {
        $(
            $(#[doc = $doc])*
            #[inline(always)]
            #[allow(unused_variables)]
            pub fn $name($($arg: $ty),*) {
                #[cfg(feature = "usdt")]
                crate::sys::$provider::$probe!(|| ($($val),*));
            }
        )*
    };
}

/// Probes of the `overlay` provider (overlayd).
pub mod overlay {
    use overlay_api::proto::LookupResult;
    use overlay_api::{DropReason, Mac};
    use std::net::{IpAddr, SocketAddr};

    probe_fns!(overlay {
        /// `overlay:tx` — a frame read from the TAP device.
        fn tx(overlay: &str, vni: u32, src: Mac, dst: Mac, len: usize) => tx(overlay, vni, src.to_string(), dst.to_string(), len as u64);
        /// `overlay:rx` — a frame from `peer` written to the TAP device.
        fn rx(overlay: &str, vni: u32, src: Mac, dst: Mac, len: usize, peer: IpAddr) => rx(overlay, vni, src.to_string(), dst.to_string(), len as u64, peer.to_string());
        /// `overlay:encap` — a frame encapsulated to `dest`.
        fn encap(overlay: &str, vni: u32, dst: Mac, dest: SocketAddr, len: usize) => encap(overlay, vni, dst.to_string(), dest.ip().to_string(), dest.port(), len as u64);
        /// `overlay:drop` — a frame dropped for `reason`.
        fn drop(overlay: &str, vni: u32, reason: DropReason, len: usize) => drop(overlay, vni, reason.as_str(), len as u64);
        /// `overlay:target-hit`.
        fn target_hit(overlay: &str, mac: Mac, dest: SocketAddr) => target__hit(overlay, mac.to_string(), dest.to_string());
        /// `overlay:target-miss`; `new_entry` when this miss created the pending entry.
        fn target_miss(overlay: &str, mac: Mac, new_entry: bool) => target__miss(overlay, mac.to_string(), new_entry as u8);
        /// `overlay:target-queue-overflow`.
        fn target_queue_overflow(overlay: &str, mac: Mac, queued_bytes: usize) => target__queue__overflow(overlay, mac.to_string(), queued_bytes as u64);
        /// `overlay:lookup-request`.
        fn lookup_request(overlay: &str, mac: Mac, id: u64, bcast: bool) => lookup__request(overlay, mac.to_string(), id, bcast as u8);
        /// `overlay:lookup-reply`, with the time since the request.
        fn lookup_reply(overlay: &str, mac: Mac, result: &LookupResult, ns: u64) => lookup__reply(overlay, mac.to_string(), crate::result_text(result), ns);
        /// `overlay:target-set`; `dest` is `ip:port` or `drop`.
        fn target_set(overlay: &str, mac: Mac, dest: &dyn std::fmt::Display, source: &str) => target__set(overlay, mac.to_string(), dest.to_string(), source);
        /// `overlay:target-remove`.
        fn target_remove(overlay: &str, mac: Mac, why: &str) => target__remove(overlay, mac.to_string(), why);
        /// `overlay:target-flush`.
        fn target_flush(overlay: &str, entries: usize, why: &str) => target__flush(overlay, entries as u64, why);
        /// `overlay:table-resize-start`.
        fn table_resize_start(overlay: &str, old_cap: u64, new_cap: u64) => table__resize__start(overlay, old_cap, new_cap);
        /// `overlay:table-resize-step`.
        fn table_resize_step(overlay: &str, moved: u64, total: u64) => table__resize__step(overlay, moved, total);
        /// `overlay:table-resize-done`.
        fn table_resize_done(overlay: &str, old_cap: u64, new_cap: u64, moved: u64, ns: u64) => table__resize__done(overlay, old_cap, new_cap, moved, ns);
        /// `overlay:inject` — varpd injected a frame.
        fn inject(overlay: &str, vni: u32, src: Mac, dst: Mac, len: usize) => inject(overlay, vni, src.to_string(), dst.to_string(), len as u64);
        /// `overlay:varpd-connect`.
        fn varpd_connect(pid: u32) => varpd__connect(pid);
        /// `overlay:varpd-disconnect`.
        fn varpd_disconnect(pid: u32) => varpd__disconnect(pid);
        /// `overlay:degrade`.
        fn degrade(overlay: &str, reason: &str) => degrade(overlay, reason);
        /// `overlay:restore`.
        fn restore(overlay: &str) => restore(overlay);
    });
}

/// Probes of the `varpd` provider.
pub mod varpd {
    use overlay_api::proto::LookupResult;
    use overlay_api::Mac;
    use std::net::{IpAddr, SocketAddr};

    probe_fns!(varpd {
        /// `varpd:lookup-start`.
        fn lookup_start(plugin: &str, overlay: &str, mac: Mac, id: u64) => lookup__start(plugin, overlay, mac.to_string(), id);
        /// `varpd:lookup-done`, with the plugin's time.
        fn lookup_done(plugin: &str, overlay: &str, mac: Mac, result: &LookupResult, ns: u64) => lookup__done(plugin, overlay, mac.to_string(), crate::result_text(result), ns);
        /// `varpd:proxy-arp` — `requester` asked for `ip`, answered with `mac`.
        fn proxy_arp(overlay: &str, requester: Mac, ip: IpAddr, mac: Mac) => proxy__arp(overlay, requester.to_string(), ip.to_string(), mac.to_string());
        /// `varpd:proxy-ndp`.
        fn proxy_ndp(overlay: &str, requester: Mac, ip: IpAddr, mac: Mac) => proxy__ndp(overlay, requester.to_string(), ip.to_string(), mac.to_string());
        /// `varpd:proxy-dhcp`.
        fn proxy_dhcp(overlay: &str, requester: Mac, result: &str) => proxy__dhcp(overlay, requester.to_string(), result);
        /// `varpd:plugin-error`.
        fn plugin_error(plugin: &str, overlay: &str, error: &str) => plugin__error(plugin, overlay, error);
        /// `varpd:config-reload`.
        fn config_reload(plugin: &str, overlay: &str, changed: u64, result: &str) => config__reload(plugin, overlay, changed, result);
        /// `varpd:mac-conflict` — `winner` (an underlay address) registered
        /// `mac` after `loser` (this host) did, while a guest of this host
        /// still uses it; this host yields.
        fn mac_conflict(plugin: &str, overlay: &str, mac: Mac, winner: SocketAddr, loser: SocketAddr) => mac__conflict(plugin, overlay, mac.to_string(), winner.to_string(), loser.to_string());
    });
}
