/*
 * top-misses.d — Which destination MACs miss the target table most?
 *
 * provider: overlay
 * run:      probes/ovtrace top-misses [-p PID]   (illumos; Ctrl-C prints the top 20)
 *           dtrace -q -s top-misses.d -p PID
 *
 * Counts overlay:target-miss by overlay and destination MAC; `LOOKUPS`
 * counts the misses that created a pending entry. See top-misses.bt.
 *
 * Example output:
 *   OVERLAY          MAC                  MISSES  LOOKUPS
 *   ov0              02:53:00:00:00:02         3        1
 */

#pragma D option quiet

dtrace:::BEGIN
{
	printf("Tracing overlay:target-miss... Hit Ctrl-C to end.\n");
}

overlay$target:::target-miss
{
	@misses[copyinstr(arg0), copyinstr(arg1)] = count();
	@lookups[copyinstr(arg0), copyinstr(arg1)] = sum(arg2 == 1 ? 1 : 0);
}

dtrace:::END
{
	trunc(@misses, 20);
	trunc(@lookups, 20);
	printf("%-16s %-20s %7s %8s\n", "OVERLAY", "MAC", "MISSES", "LOOKUPS");
	printa("%-16s %-20s %@7d %@8d\n", @misses, @lookups);
}
