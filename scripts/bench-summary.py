#!/usr/bin/env python3
"""The cost per view of each deployment bench-deployments.sh ran, and the capacity goal's ratios, all from that
one run: Redis CPU per view in steady state (logging and applying + sealing and retiring), the cluster at 64
partitions against one Redis at 16, one Redis at 16 against the naive baseline measured in its own row, and
its freshness when the run measured it (`--only ingest,freshness`).

    scripts/bench-summary.py ROW.json...    (each file: one row's `topk-bench --json` output, named
                                              <deployment>-<partitions>.json by bench-deployments.sh)
"""
import json
import os
import sys

# The goal's bounds (docs and BENCHMARKS.md give the reasons).
CLUSTER_OVER_ONE_NODE = 1.25
NAIVE_SHARE = 4.0
END_TO_END = 6.0
FRESHNESS_P99_MS = 500


def read_row(path):
    """The row's figures by name, or None when the file holds no complete run."""
    try:
        with open(path) as f:
            return {fig["name"]: fig for fig in json.load(f)}
    except (OSError, ValueError) as e:
        print(f"bench-summary: {path}: no figures ({e})", file=sys.stderr)
        return None


def steady(row):
    """Redis CPU per view in steady state, with its two parts, or None when the row lacks them."""
    if "ingest_redis_cpu" not in row or "retire_redis_cpu" not in row:
        return None
    log_apply = row["ingest_redis_cpu"]["median"]
    retire = row["retire_redis_cpu"]["median"]
    return log_apply, retire, log_apply + retire


def main(paths):
    rows = {}
    for path in paths:
        row = read_row(path)
        if row is not None:
            rows[os.path.basename(path).removesuffix(".json")] = row
    if not rows:
        print("bench-summary: no row to summarise", file=sys.stderr)
        return 1
    print("| deployment | log+apply / retire / steady (us of Redis CPU a view) | views/s (x naive) | naive (us a view) |")
    print("|---|---|---|---|")
    # The deployments in the capacity plan's order, then any other.
    order = ["one-redis-16", "one-redis-64", "cluster-16", "cluster-64"]
    for name, row in sorted(rows.items(), key=lambda r: (order + [r[0]]).index(r[0])):
        s = steady(row)
        ingest = row.get("ingest")
        cost = f"{s[0]:.2f} / {s[1]:.2f} / **{s[2]:.2f}**" if s else "-"
        rate = f"{ingest['median']:,.0f} ({ingest['ratio']:.2f}x)" if ingest and ingest.get("ratio") else "-"
        naive = row.get("ingest_redis_cpu", {}).get("baseline")
        print(f"| {name} | {cost} | {rate} | {naive:.2f} |" if naive else f"| {name} | {cost} | {rate} | - |")
    print()

    one = rows.get("one-redis-16")
    cluster = rows.get("cluster-64")
    one_steady = steady(one) if one else None
    if one_steady:
        naive = one["ingest_redis_cpu"]["baseline"]
        share = naive / one_steady[2]
        verdict = "met" if share >= NAIVE_SHARE else "not met"
        print(f"one Redis, 16 partitions: 1/{share:.1f} of naive's Redis CPU a view "
              f"(goal 1/{NAIVE_SHARE:.0f}: {verdict}; 1/6 would put the stated peak on 4 primaries)")
        e2e = one["ingest"]["ratio"]
        verdict = "met" if e2e >= END_TO_END else "not met"
        print(f"one Redis, 16 partitions: end to end {e2e:.2f}x naive (goal {END_TO_END:.0f}x: {verdict})")
    if one and "freshness_p99" in one:
        p99 = one["freshness_p99"]["median"]
        verdict = "met" if p99 <= FRESHNESS_P99_MS else "not met"
        print(f"one Redis, 16 partitions: freshness p99 {p99:.0f} ms at the run's --freshness-rate "
              f"(goal at most {FRESHNESS_P99_MS} ms at 100,000 views/s: {verdict})")
    cluster_steady = steady(cluster) if cluster else None
    if one_steady and cluster_steady:
        ratio = cluster_steady[2] / one_steady[2]
        verdict = "met" if ratio <= CLUSTER_OVER_ONE_NODE else "not met"
        print(f"cluster at 64 partitions against one Redis at 16: {ratio:.2f}x "
              f"(goal at most {CLUSTER_OVER_ONE_NODE}x: {verdict})")
    elif one_steady:
        print("no cluster row at 64 partitions: set TOPK_BENCH_CLUSTER_URL for the cluster goal")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
