/*
 * drops.d — Which overlays drop frames, and why?
 *
 * provider: overlay
 * run:      probes/ovtrace drops [-p PID]      (illumos; Ctrl-C prints the summary)
 *           dtrace -q -s drops.d -p PID
 *
 * Counts overlay:drop by overlay, VNI and reason, with the bytes dropped.
 * The overlay is "-" for drops a mux made before any overlay could be
 * named (short-header, no-vni-flag, unknown-vni). See drops.bt.
 *
 * Example output:
 *   OVERLAY          VNI      REASON                   FRAMES      BYTES
 *   -                4999     unknown-vni                   1         60
 *   ov0              5252     target-drop                   3        294
 */

#pragma D option quiet

dtrace:::BEGIN
{
	printf("Tracing overlay:drop... Hit Ctrl-C to end.\n");
}

overlay$target:::drop
{
	this->ov = copyinstr(arg0);
	this->reason = copyinstr(arg2);
	@frames[this->ov, arg1, this->reason] = count();
	@bytes[this->ov, arg1, this->reason] = sum(arg3);
}

dtrace:::END
{
	printf("%-16s %-8s %-20s %10s %10s\n", "OVERLAY", "VNI", "REASON", "FRAMES", "BYTES");
	printa("%-16s %-8d %-20s %@10d %@10d\n", @frames, @bytes);
}
