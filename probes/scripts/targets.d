/*
 * targets.d — Who changed the target table, and when?
 *
 * provider: overlay
 * run:      probes/ovtrace targets [-p PID]   (illumos)
 *           dtrace -q -s targets.d -p PID
 *
 * A timeline of overlay:target-set, target-remove and target-flush. See
 * targets.bt.
 *
 * Example output:
 *   TIME                 EVENT   OVERLAY          MAC                DETAIL
 *   2026 Nov 24 20:55:04 set     ov0              02:53:00:00:00:02  drop, by operator
 */

#pragma D option quiet

dtrace:::BEGIN
{
	printf("%-20s %-7s %-16s %-18s %s\n", "TIME", "EVENT", "OVERLAY", "MAC", "DETAIL");
}

overlay$target:::target-set
{
	printf("%Y %-7s %-16s %-18s %s, by %s\n", walltimestamp, "set",
	    copyinstr(arg0), copyinstr(arg1), copyinstr(arg2), copyinstr(arg3));
}

overlay$target:::target-remove
{
	printf("%Y %-7s %-16s %-18s by %s\n", walltimestamp, "remove",
	    copyinstr(arg0), copyinstr(arg1), copyinstr(arg2));
}

overlay$target:::target-flush
{
	printf("%Y %-7s %-16s %-18s %d entries, by %s\n", walltimestamp, "flush",
	    copyinstr(arg0), "-", arg1, copyinstr(arg2));
}
