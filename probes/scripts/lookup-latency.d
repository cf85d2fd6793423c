/*
 * lookup-latency.d — How long does varpd take to answer overlayd's lookups?
 *
 * provider: overlay
 * run:      probes/ovtrace lookup-latency [-p PID]   (illumos; Ctrl-C prints)
 *           dtrace -q -s lookup-latency.d -p PID
 *
 * A histogram, per overlay, of overlay:lookup-reply's `ns` (request to
 * answer, as overlayd saw it), and the answers by result. See
 * lookup-latency.bt.
 *
 * Example output:
 *   ov0
 *            value  ------------- Distribution ------------- count
 *            65536 |                                         0
 *           131072 |@@@@@@@@@@@@@@@@@@@@@@@@@@@              2
 *           262144 |@@@@@@@@@@@@@                            1
 *           524288 |                                         0
 */

#pragma D option quiet

dtrace:::BEGIN
{
	printf("Tracing overlay:lookup-reply... Hit Ctrl-C to end.\n");
}

overlay$target:::lookup-reply
{
	@ns[copyinstr(arg0)] = quantize(arg3);
	@results[copyinstr(arg0), copyinstr(arg2)] = count();
}

dtrace:::END
{
	printf("lookup latency (ns), by overlay:\n");
	printa(@ns);
	printf("\n%-16s %-40s %8s\n", "OVERLAY", "RESULT", "ANSWERS");
	printa("%-16s %-40s %@8d\n", @results);
}
