#!/usr/bin/env python3
"""Turns criterion's console output of `cargo bench --bench pick` into the README's table:
ns per request per N, and the ratios the targets are stated in. Reads standard input.

    cargo bench --bench pick -- --noplot | python3 benches/report.py
"""
import re
import sys

text = sys.stdin.read()
rows = re.findall(r"^(pick/n=\d+/[^\n]+?)\s*\n?\s*time:\s+\[\S+ \S+ (\S+) (\S+)", text, re.M)
scale = {"ns": 1.0, "µs": 1e3, "ms": 1e6}
data = {}
for name, value, unit in rows:
    n = int(re.search(r"n=(\d+)", name).group(1))
    data.setdefault(name.split("/", 2)[2], {})[n] = float(value) * scale[unit]
sizes = sorted({n for d in data.values() for n in d})

print("| ns per request | " + " | ".join(f"N={n}" for n in sizes) + " | N=max / N=2 |")
print("|---|" + "---:|" * (len(sizes) + 1))
for name, d in data.items():
    cells = [f"{d[n]:.1f}" if n in d else "–" for n in sizes]
    growth = f"{d[sizes[-1]] / d[sizes[0]]:.2f}" if sizes[-1] in d and sizes[0] in d else "–"
    print(f"| {name} | " + " | ".join(cells) + f" | {growth} |")

def ratio_row(label, ours, anchor, fmt="{:.3f}", minus=False):
    cells = []
    for n in sizes:
        if n in data.get(ours, {}) and n in data.get(anchor, {}):
            a, b = data[ours][n], data[anchor][n]
            cells.append(fmt.format(a - b if minus else a / b))
        else:
            cells.append("–")
    print(f"| {label} | " + " | ".join(cells) + " | |")

print()
print("| ratio, same run | " + " | ".join(f"N={n}" for n in sizes) + " | |")
print("|---|" + "---:|" * (len(sizes) + 1))
ratio_row("p2c pending / tower p2c PendingRequests", "tower-lb p2c pending", "tower p2c PendingRequests")
ratio_row("p2c peak-ewma / tower p2c PeakEwma", "tower-lb p2c peak-ewma", "tower p2c PeakEwma")
ratio_row("p2c peak-ewma, TSC clock / tower p2c PeakEwma", "tower-lb p2c peak-ewma, TSC clock", "tower p2c PeakEwma")
for policy in ["round robin", "weighted round robin", "random (weighted)"]:
    ratio_row(f"{policy} − floor (ns)", f"tower-lb {policy}", "floor (bare service_fn)", "{:.1f}", True)
ratio_row("consistent hash / tower p2c PendingRequests", "tower-lb consistent hash", "tower p2c PendingRequests")
ratio_row("maglev / tower p2c PendingRequests", "tower-lb maglev", "tower p2c PendingRequests")

# Membership and health changes: each iteration makes two, so a change is half of it.
changes = re.findall(
    r"^membership/(insert\+remove|exclude\+readmit) at n=(\d+), ([^\n]+?)\s*\n?\s*time:\s+\[\S+ \S+ (\S+) (\S+)",
    text,
    re.M,
)
if changes:
    table = {}
    for kind, n, policy, value, unit in changes:
        table.setdefault(policy, {})[(kind, int(n))] = float(value) * scale[unit] / 2 / 1e3
    ns = sorted({n for d in table.values() for (_, n) in d})
    print()
    print("| µs per change (insert or remove / exclude or readmit) | " + " | ".join(f"N={n}" for n in ns) + " |")
    print("|---|" + "---:|" * len(ns))
    for policy, d in table.items():
        cells = []
        for n in ns:
            pair = [d.get((kind, n)) for kind in ("insert+remove", "exclude+readmit")]
            cells.append(" / ".join(f"{v:.0f}" if v is not None else "–" for v in pair))
        print(f"| {policy} | " + " | ".join(cells) + " |")
