#!/usr/bin/env python3
"""Median ms per login step, from ec2lab log lines on stdin (EC2LAB_LOG=ec2lab::ssh_timing=debug).

Each step is printed with the median time since the step before it (and min-max), in the order
the steps happen; "total" is the median time from accept to close."""
import re
import statistics
import sys

conns = {}
for line in sys.stdin:
    m = re.search(r'ssh_timing: conn=(\d+) step="([^"]+)" ms=([\d.]+)', line)
    if m:
        conns.setdefault(m[1], []).append((m[2], float(m[3])))
order, deltas, totals = [], {}, []
for steps in conns.values():
    prev = 0.0
    for name, ms in steps:
        if name not in order:
            order.append(name)
        deltas.setdefault(name, []).append(ms - prev)
        prev = ms
    totals.append(prev)
if not conns:
    sys.exit("ssh_steps: no ssh_timing lines (is EC2LAB_LOG=ec2lab::ssh_timing=debug set?)")
for name in order[1:]:
    d = deltas[name]
    print(f"  {name:<18} {statistics.median(d):7.2f} ms  ({min(d):.2f}–{max(d):.2f})")
print(f"  {'total':<18} {statistics.median(totals):7.2f} ms  over {len(conns)} logins")
