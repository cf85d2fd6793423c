/*
 * resize.d — When did a target table resize, and how long did it take?
 *
 * provider: overlay
 * run:      probes/ovtrace resize [-p PID]   (illumos)
 *           dtrace -q -s resize.d -p PID
 *
 * A timeline of overlay:table-resize-start, -step and -done. AWAITING THE
 * RESIZABLE TABLE: the probes fire once it lands in overlayd. See resize.bt.
 *
 * Example output (from the probes' definitions; no run yet):
 *   TIME                 OVERLAY          EVENT  DETAIL
 *   2026 Nov 24 20:45:01 ov0              start  capacity 1024 -> 2048
 *   2026 Nov 24 20:45:01 ov0              done   capacity 1024 -> 2048, moved 1024 in 183402 ns
 */

#pragma D option quiet

dtrace:::BEGIN
{
	printf("%-20s %-16s %-6s %s\n", "TIME", "OVERLAY", "EVENT", "DETAIL");
}

overlay$target:::table-resize-start
{
	printf("%Y %-16s %-6s capacity %d -> %d\n", walltimestamp, copyinstr(arg0),
	    "start", arg1, arg2);
}

overlay$target:::table-resize-step
{
	printf("%Y %-16s %-6s moved %d/%d\n", walltimestamp, copyinstr(arg0),
	    "step", arg1, arg2);
}

overlay$target:::table-resize-done
{
	printf("%Y %-16s %-6s capacity %d -> %d, moved %d in %d ns\n",
	    walltimestamp, copyinstr(arg0), "done", arg1, arg2, arg3, arg4);
}
