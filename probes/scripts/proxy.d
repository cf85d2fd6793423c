/*
 * proxy.d — What did varpd answer by proxy: who asked for what, and with what?
 *
 * provider: varpd
 * run:      probes/ovtrace proxy [-p VARPD_PID]   (illumos)
 *           dtrace -q -s proxy.d -p VARPD_PID
 *
 * One line per varpd:proxy-arp, proxy-ndp and proxy-dhcp. See proxy.bt.
 *
 * Example output:
 *   TIME                 OVERLAY          KIND  REQUESTER          ASKED FOR                ANSWER
 *   2026 Nov 24 20:50:03 ov0              arp   02:53:00:00:00:01  192.168.53.2             02:53:00:00:00:02
 */

#pragma D option quiet

dtrace:::BEGIN
{
	printf("%-20s %-16s %-5s %-18s %-24s %s\n", "TIME", "OVERLAY", "KIND",
	    "REQUESTER", "ASKED FOR", "ANSWER");
}

varpd$target:::proxy-arp,
varpd$target:::proxy-ndp
{
	printf("%Y %-16s %-5s %-18s %-24s %s\n", walltimestamp, copyinstr(arg0),
	    probename == "proxy-arp" ? "arp" : "ndp", copyinstr(arg1),
	    copyinstr(arg2), copyinstr(arg3));
}

varpd$target:::proxy-dhcp
{
	printf("%Y %-16s %-5s %-18s %-24s %s\n", walltimestamp, copyinstr(arg0),
	    "dhcp", copyinstr(arg1), "-", copyinstr(arg2));
}
