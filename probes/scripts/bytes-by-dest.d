/*
 * bytes-by-dest.d — Where does each overlay's traffic go on the underlay?
 *
 * provider: overlay
 * run:      probes/ovtrace bytes-by-dest [-p PID]   (illumos; every 5 s and at Ctrl-C)
 *           dtrace -q -s bytes-by-dest.d -p PID
 *
 * Sums overlay:encap by overlay and underlay destination. See
 * bytes-by-dest.bt.
 *
 * Example output:
 *   2026 Nov 24 20:41:12
 *   OVERLAY          DESTINATION                    FRAMES      BYTES
 *   ov0              10.53.0.2:4789                     10       8852
 */

#pragma D option quiet

dtrace:::BEGIN
{
	printf("Tracing overlay:encap... Hit Ctrl-C to end.\n");
}

overlay$target:::encap
{
	@frames[copyinstr(arg0), copyinstr(arg3), arg4] = count();
	@bytes[copyinstr(arg0), copyinstr(arg3), arg4] = sum(arg5);
}

profile:::tick-5sec,
dtrace:::END
{
	printf("%Y\n%-16s %-24s %-5s %10s %10s\n", walltimestamp, "OVERLAY",
	    "DESTINATION", "PORT", "FRAMES", "BYTES");
	printa("%-16s %-24s %-5d %@10d %@10d\n", @frames, @bytes);
	trunc(@frames);
	trunc(@bytes);
}
