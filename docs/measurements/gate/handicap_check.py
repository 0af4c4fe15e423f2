#!/usr/bin/env python3
"""Which figures a `--handicap shm:NS` A/B run flagged, against which it
should have: reads each run's record (the old side's medians) and its
summary (the verdicts), and prints per run the flagged figures that are
not the handicapped variant's (false alarms), the handicapped figures
whose expected slowdown is clearly beyond the rule but were not flagged
(misses), and the borderline ones either way.

The handicap spins NS before every message the parent sends over the
variant labelled `shm`, so a round trip takes NS longer and a one-way
stream NS longer per message: expected new / old = (old + NS) / old for
a round trip's p50 and its ratios, 1 + rate * NS for a stream's rate.
The async and hub paths do not send through it: a hub call over shm is
not touched (its ratio over the blocking round trip can only improve).

Usage: handicap_check.py NS RUN... where a RUN is a directory holding
one A/B record and its LATEST_SUMMARY.md (as `cargo xtask bench ...
--against HEAD --handicap shm:NS --out DIR` leaves them), or a stored
record `NAME-benchmark_*.json[.xz]` beside its `NAME-summary.md`:

    python3 docs/measurements/gate/handicap_check.py 500 \
        docs/measurements/gate/stop33-handicap*-benchmark_*.json.xz"""
import glob
import json
import lzma
import os
import re
import sys

FACTOR = 1.5  # the A/B rule at the default --threshold 2
MARGIN = 1.1  # within FACTOR / MARGIN .. FACTOR * MARGIN: borderline


def load(path):
    opener = lzma.open if path.endswith(".xz") else open
    with opener(path, "rt") as f:
        return json.load(f)


def verdicts(summary):
    out = {}
    for line in open(summary, encoding="utf-8"):
        m = re.match(r"\| `([^`]+)` \|.*\| ([a-z -]+) \|$", line.strip())
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def expected(k, old, ns):
    """Expected new / old of figure key `k`, or None if the handicap does
    not touch it. `old` maps keys to the old side's medians."""
    parts = k.split("/")
    group, subject, regime = parts[0], parts[1], parts[2]
    if group not in ("latency", "throughput", "hub", "peers"):
        return None
    # Only the blocking round trips and one-way streams send through the
    # handicap (the async and hub paths do not).
    if regime not in ("back-to-back", "parked", "one-way"):
        return None
    if subject != "shm" and not subject.startswith("shm-over-"):
        return None
    if group == "throughput" and parts[-1] == "rate":
        return 1 + old[k] * ns * 1e-9
    if parts[-1] == "p50":
        return (old[k] + ns) / old[k]
    if parts[-1] == "ratio":
        # The ratio moves as its round trip's p50 does.
        p50 = "/".join([group, "shm"] + parts[2:-1] + ["p50"])
        return (old[p50] + ns) / old[p50] if p50 in old else None
    return None


def main():
    ns = float(sys.argv[1])
    clean = 0
    for run in sys.argv[2:]:
        if os.path.isdir(run):
            record = load(glob.glob(f"{run}/benchmark_*.json*")[0])
            seen = verdicts(f"{run}/LATEST_SUMMARY.md")
        else:
            record = load(run)
            seen = verdicts(re.sub(r"-benchmark_[^/]*$", "-summary.md", run))
        # The old side's medians of the handicapped variant's own figures.
        by_key = {}
        for f in record["against"]["results"]["figures"]:
            k = shm_key(f["id"])
            if k:
                by_key[k] = f["median"]
        flagged = {k for k, v in seen.items() if v == "regression"}
        false_alarms, misses, borderline = [], [], []
        for k in seen:
            e = expected(k, by_key, ns)
            if e is None:
                if k in flagged:
                    false_alarms.append(k)
                continue
            if e > FACTOR * MARGIN and k not in flagged:
                misses.append(f"{k} (expected {e:.2f}x)")
            elif FACTOR / MARGIN <= e <= FACTOR * MARGIN:
                borderline.append(f"{k} {e:.2f}x {'flagged' if k in flagged else 'not flagged'}")
            elif e < FACTOR / MARGIN and k in flagged:
                false_alarms.append(f"{k} (expected {e:.2f}x)")
        ok = not false_alarms and not misses
        clean += ok
        print(f"{run}: {len(flagged)} flagged, {len(false_alarms)} false alarm(s), "
              f"{len(misses)} miss(es){'' if ok else '  <-- not exact'}")
        for what, items in (("false alarm", false_alarms), ("miss", misses), ("borderline", borderline)):
            for item in items:
                print(f"  {what}: {item}")
    print(f"exact in {clean} of {len(sys.argv) - 2} runs")
    return 0 if clean == len(sys.argv) - 2 else 1


SHM = {"transport": "shm", "strategy": "adaptive", "zero_copy": False,
       "ring_kib": None, "large": "default", "net": "loopback"}


def shm_key(i):
    """`FigureId::key` of a figure of the variant labelled `shm` itself
    (group/shm/regime/SIZEB/statistic), else None."""
    if i["subject"] != {"transport": SHM} or i["agents"] is not None:
        return None
    if not isinstance(i["regime"], str) or i["size"] is None:
        return None
    return f"{i['group']}/shm/{i['regime']}/{i['size']}B/{i['statistic']}"


if __name__ == "__main__":
    sys.exit(main())
