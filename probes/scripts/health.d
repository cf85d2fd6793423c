/*
 * health.d — When did overlays degrade or recover, and when did varpd come and go?
 *
 * provider: overlay
 * run:      probes/ovtrace health [-p PID]   (illumos)
 *           dtrace -q -s health.d -p PID
 *
 * A timeline of overlay:varpd-connect, varpd-disconnect, degrade and
 * restore. See health.bt.
 *
 * Example output:
 *   TIME                 EVENT        OVERLAY          DETAIL
 *   2026 Nov 24 20:52:10 varpd-down   -                varpd pid 21377
 *   2026 Nov 24 20:52:10 degrade      ov0              varpd is not connected: known destinations keep forwarding, lookups wait
 */

#pragma D option quiet

dtrace:::BEGIN
{
	printf("%-20s %-12s %-16s %s\n", "TIME", "EVENT", "OVERLAY", "DETAIL");
}

overlay$target:::varpd-connect
{
	printf("%Y %-12s %-16s varpd pid %d\n", walltimestamp, "varpd-up", "-", arg0);
}

overlay$target:::varpd-disconnect
{
	printf("%Y %-12s %-16s varpd pid %d\n", walltimestamp, "varpd-down", "-", arg0);
}

overlay$target:::degrade
{
	printf("%Y %-12s %-16s %s\n", walltimestamp, "degrade", copyinstr(arg0),
	    copyinstr(arg1));
	since[copyinstr(arg0)] = timestamp;
}

overlay$target:::restore
{
	this->t = since[copyinstr(arg0)];
	printf("%Y %-12s %-16s ONLINE after %d ms\n", walltimestamp, "restore",
	    copyinstr(arg0), this->t ? (timestamp - this->t) / 1000000 : 0);
	since[copyinstr(arg0)] = 0;
}
