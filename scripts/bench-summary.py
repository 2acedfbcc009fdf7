#!/usr/bin/env python3
"""The cost per view of each deployment bench-deployments.sh ran, and the capacity goal's ratios, all from that
one run: Redis CPU per view in steady state (logging and applying + sealing and retiring), the cluster at 64
partitions against one Redis at 16, one Redis at 16 against the naive baseline measured in its own row, and
its freshness when the run measured it (`--only ingest,freshness`). With rounds (`--rounds`), each ratio is
taken within a round, from rows measured side by side, and the verdict is on the median of the rounds' ratios.

    scripts/bench-summary.py ROW.json...    (each file: one row's `topk-bench --json` output, named
                                              <deployment>-<partitions>[.r<round>].json by bench-deployments.sh)
"""
import json
import os
import re
import statistics
import sys

# The goal's bounds (docs and BENCHMARKS.md give the reasons).
CLUSTER_OVER_ONE_NODE = 1.25
NAIVE_SHARE = 4.0
END_TO_END = 6.0
FRESHNESS_P99_MS = 500

# The deployments in the capacity plan's order; any other follows.
ORDER = ["one-redis-16", "one-redis-64", "cluster-16", "cluster-64", "cluster-no-replicas-64"]


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
    if row is None or "ingest_redis_cpu" not in row or "retire_redis_cpu" not in row:
        return None
    log_apply = row["ingest_redis_cpu"]["median"]
    retire = row["retire_redis_cpu"]["median"]
    return log_apply, retire, log_apply + retire


def deployment_and_round(path):
    """`cluster-64.r2.json` -> ("cluster-64", 2); a name without a round is round 1."""
    name = os.path.basename(path).removesuffix(".json")
    m = re.fullmatch(r"(.+)\.r(\d+)", name)
    return (m.group(1), int(m.group(2))) if m else (name, 1)


def listed(values, fmt):
    """The rounds' values, then their median when there are several."""
    text = ", ".join(fmt.format(v) for v in values)
    return text if len(values) == 1 else f"{text} (median {fmt.format(statistics.median(values))})"


def main(paths):
    runs = {}  # deployment -> round -> figures
    for path in paths:
        row = read_row(path)
        if row is not None:
            deployment, rnd = deployment_and_round(path)
            runs.setdefault(deployment, {})[rnd] = row
    if not runs:
        print("bench-summary: no row to summarise", file=sys.stderr)
        return 1
    rounds = sorted({r for by_round in runs.values() for r in by_round})
    print(f"{len(rounds)} round(s); figures per round, in order")
    print()
    print("| deployment | log+apply / retire / steady (us of Redis CPU a view) | views/s (x naive) | naive (us a view) |")
    print("|---|---|---|---|")
    for name in sorted(runs, key=lambda d: (ORDER + [d]).index(d)):
        by_round = runs[name]
        costs, rates, naives = [], [], []
        for r in rounds:
            s = steady(by_round.get(r))
            costs.append(f"{s[0]:.2f} / {s[1]:.2f} / **{s[2]:.2f}**" if s else "-")
            ingest = by_round.get(r, {}).get("ingest")
            rates.append(f"{ingest['median']:,.0f} ({ingest['ratio']:.2f}x)" if ingest and ingest.get("ratio") else "-")
            naive = by_round.get(r, {}).get("ingest_redis_cpu", {}).get("baseline")
            naives.append(f"{naive:.2f}" if naive else "-")
        print(f"| {name} | {'; '.join(costs)} | {'; '.join(rates)} | {'; '.join(naives)} |")
    print()

    one = runs.get("one-redis-16", {})
    shares, e2es, p99s = [], [], []
    for r in rounds:
        s = steady(one.get(r))
        if s:
            shares.append(one[r]["ingest_redis_cpu"]["baseline"] / s[2])
            e2es.append(one[r]["ingest"]["ratio"])
        if r in one and "freshness_p99" in one[r]:
            p99s.append(one[r]["freshness_p99"]["median"])
    if shares:
        verdict = "met" if statistics.median(shares) >= NAIVE_SHARE else "not met"
        print(f"one Redis, 16 partitions: {listed(shares, '1/{:.1f}')} of naive's Redis CPU a view "
              f"(goal 1/{NAIVE_SHARE:.0f}: {verdict}; the issue's prize: 1/6)")
        verdict = "met" if statistics.median(e2es) >= END_TO_END else "not met"
        print(f"one Redis, 16 partitions: end to end {listed(e2es, '{:.2f}x')} naive (goal {END_TO_END:.0f}x: {verdict})")
    if p99s:
        verdict = "met" if statistics.median(p99s) <= FRESHNESS_P99_MS else "not met"
        print(f"one Redis, 16 partitions: freshness p99 {listed(p99s, '{:.0f} ms')} at the run's --freshness-rate "
              f"(goal at most {FRESHNESS_P99_MS} ms at 100,000 views/s: {verdict})")

    def ratios(deployment):
        """The deployment's steady state over one Redis at 16 partitions, per round both measured."""
        out = []
        for r in rounds:
            base, other = steady(one.get(r)), steady(runs.get(deployment, {}).get(r))
            if base and other:
                out.append(other[2] / base[2])
        return out

    cluster = ratios("cluster-64")
    if cluster:
        verdict = "met" if statistics.median(cluster) <= CLUSTER_OVER_ONE_NODE else "not met"
        print(f"cluster at 64 partitions against one Redis at 16: {listed(cluster, '{:.2f}x')} "
              f"(goal at most {CLUSTER_OVER_ONE_NODE}x: {verdict})")
    elif shares:
        print("no cluster row at 64 partitions: set TOPK_BENCH_CLUSTER_URL for the cluster goal")
    bare = ratios("cluster-no-replicas-64")
    if bare:
        print(f"cluster without replicas at 64 partitions against one Redis at 16: {listed(bare, '{:.2f}x')} "
              f"(what the primaries cost without replicas replaying their writes on the same cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
