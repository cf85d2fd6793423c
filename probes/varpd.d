/*
 * The varpd provider: the virtual ARP daemon and its search plugins.
 * Probe names use '__' here and appear with '-' in traces.
 * Every argument is documented in probes/README.md.
 */
provider varpd {
	/* A lookup arrived from overlayd. */
	probe lookup__start(char *, char *, char *, uint64_t);	/* plugin, overlay, mac, id */
	/* The plugin answered: "ip:port", "drop:REASON", "handled" or "not-answered:REASON". */
	probe lookup__done(char *, char *, char *, char *, uint64_t);	/* plugin, overlay, mac, result, ns */
	/* An ARP request answered by proxy: who asked, for which IPv4 address, answered MAC. */
	probe proxy__arp(char *, char *, char *, char *);	/* overlay, requester, ip, mac */
	/* A neighbour solicitation answered by proxy. */
	probe proxy__ndp(char *, char *, char *, char *);	/* overlay, requester, ip, mac */
	/* A DHCP request seen; result says what was done with it. */
	probe proxy__dhcp(char *, char *, char *);	/* overlay, requester, result */
	/* A plugin could not do its work (bad configuration, backend failure). */
	probe plugin__error(char *, char *, char *);	/* plugin, overlay, error */
	/* A configuration reload: entries changed, "ok" or the error. */
	probe config__reload(char *, char *, uint64_t, char *);	/* plugin, overlay, changed, result */
	/* A MAC of this host's guest registered, later, by another host: this host yields it. */
	probe mac__conflict(char *, char *, char *, char *, char *);	/* plugin, overlay, mac, winner, loser */
};
