/*
 * The overlay provider: overlayd's data plane. Probe names use '__' here and
 * appear with '-' in traces (target__miss is overlay:target-miss).
 * Arguments never change meaning; new ones are added at the end. Their
 * names are in the comment after each probe (the D parser takes types only).
 * Every argument is documented in probes/README.md.
 */
provider overlay {
	/* A frame read from the overlay's TAP device (a guest sent it). */
	probe tx(char *, uint32_t, char *, char *, uint64_t);	/* overlay, vni, src, dst, len */
	/* A frame written to the overlay's TAP device from the underlay. */
	probe rx(char *, uint32_t, char *, char *, uint64_t, char *);	/* overlay, vni, src, dst, len, peer */
	/* A frame encapsulated and handed to the underlay socket. */
	probe encap(char *, uint32_t, char *, char *, uint16_t, uint64_t);	/* overlay, vni, dst, ip, port, len */
	/* A frame freed without delivery; reason is a DropReason name. */
	probe drop(char *, uint32_t, char *, uint64_t);	/* overlay, vni, reason, len */
	/* A unicast frame found a valid target entry. */
	probe target__hit(char *, char *, char *);	/* overlay, mac, dest */
	/* A unicast frame found no usable entry and was queued for a lookup. */
	probe target__miss(char *, char *, uint8_t);	/* overlay, mac, new_entry */
	/* A pending entry's queue was full; the frame was dropped. */
	probe target__queue__overflow(char *, char *, uint64_t);	/* overlay, mac, queued_bytes */
	/* A lookup asked of varpd; bcast is 1 when the frame rides along (ARP/NDP/DHCP). */
	probe lookup__request(char *, char *, uint64_t, uint8_t);	/* overlay, mac, id, bcast */
	/* varpd's answer: result is "ip:port", "drop:REASON", "handled" or "not-answered". */
	probe lookup__reply(char *, char *, char *, uint64_t);	/* overlay, mac, result, ns */
	/* An entry set; source is "varpd" or "operator". */
	probe target__set(char *, char *, char *, char *);	/* overlay, mac, dest, source */
	/* An entry removed; why is "operator" or "invalidate". */
	probe target__remove(char *, char *, char *);	/* overlay, mac, why */
	/* Every entry removed (operator flush or varpd invalidate-all). */
	probe target__flush(char *, uint64_t, char *);	/* overlay, entries, why */
	/* The target table began to migrate to a new capacity. */
	probe table__resize__start(char *, uint64_t, uint64_t);	/* overlay, old_cap, new_cap */
	/* A migration step: entries moved so far, of the total to move. */
	probe table__resize__step(char *, uint64_t, uint64_t);	/* overlay, moved, total */
	/* The migration finished. */
	probe table__resize__done(char *, uint64_t, uint64_t, uint64_t, uint64_t);	/* overlay, old_cap, new_cap, moved, ns */
	/* varpd injected a frame into the overlay (a proxy ARP/NDP reply). */
	probe inject(char *, uint32_t, char *, char *, uint64_t);	/* overlay, vni, src, dst, len */
	/* varpd linked to overlayd. */
	probe varpd__connect(uint32_t);	/* pid */
	/* The varpd link went away. */
	probe varpd__disconnect(uint32_t);	/* pid */
	/* An overlay became DEGRADED, with the reason show-overlay -f gives. */
	probe degrade(char *, char *);	/* overlay, reason */
	/* An overlay returned to ONLINE. */
	probe restore(char *);	/* overlay */
	/* A capture with decisions started (ovsnoop --capture). */
	probe capture__start(uint64_t, char *, uint8_t);	/* session, overlays, drops_only */
	/* A capture ended, with what its client got and lost. */
	probe capture__stop(uint64_t, uint64_t, uint64_t);	/* session, frames, lost */
	/* Captured frames were lost: the ring was full or busy, or a client read too slowly. */
	probe capture__overflow(uint64_t, uint64_t);	/* lost, total */
};
