/*
 * reloads.d — What did varpd's configuration reloads change, and which plugins failed?
 *
 * provider: varpd
 * run:      probes/ovtrace reloads [-p VARPD_PID]   (illumos)
 *           dtrace -q -s reloads.d -p VARPD_PID
 *
 * A timeline of varpd:config-reload and varpd:plugin-error. See reloads.bt.
 *
 * Example output:
 *   TIME                 EVENT   PLUGIN   OVERLAY          DETAIL
 *   2026 Nov 24 20:53:41 reload  files    ov0              0 changed: ok
 */

#pragma D option quiet
#pragma D option strsize=512

dtrace:::BEGIN
{
	printf("%-20s %-7s %-8s %-16s %s\n", "TIME", "EVENT", "PLUGIN", "OVERLAY", "DETAIL");
}

varpd$target:::config-reload
{
	printf("%Y %-7s %-8s %-16s %d changed: %s\n", walltimestamp, "reload",
	    copyinstr(arg0), copyinstr(arg1), arg2, copyinstr(arg3));
}

varpd$target:::plugin-error
{
	printf("%Y %-7s %-8s %-16s %s\n", walltimestamp, "error", copyinstr(arg0),
	    copyinstr(arg1), copyinstr(arg2));
}
