#!/usr/bin/env bash
# Runs topk-bench on the four deployments the capacity plan compares, back to back on the same machine:
# one Redis with 16 and 64 partitions, and a Redis Cluster with 16 and 64 partitions. Each row is its own
# deployment (the partition count is fixed per deployment) on its own key prefix and scratch database.
#
#   TOPK_BENCH_REDIS_URL=redis://127.0.0.1:6379 \
#   TOPK_BENCH_CLUSTER_URL='redis-cluster://127.0.0.1:7001?node=127.0.0.1:7002&node=127.0.0.1:7003' \
#   TOPK_DATABASE_URL=postgres://... scripts/bench-deployments.sh [--bin DIR] [topk-bench arguments]
#
# The arguments after the options go to every topk-bench run (default: --only ingest --repeats 3). --bin
# names the folder of the topk-bench, topk-ingest and topk-api to run (default: target/release), so an older
# build can be measured the same way in the same session. Without TOPK_BENCH_CLUSTER_URL the cluster rows are
# skipped. Each row prints a heading, then topk-bench's table (or JSON with --json); the end sums the rows
# up (scripts/bench-summary.py): steady-state Redis CPU per view of each, and the capacity goal's ratios.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bin=target/release
if [[ "${1:-}" == "--bin" ]]; then
    bin="$2"
    shift 2
fi
args=("$@")
if [[ ${#args[@]} -eq 0 ]]; then
    args=(--only ingest --repeats 3)
fi
if [[ ! -x "$bin/topk-bench" ]]; then
    echo "bench-deployments: no topk-bench in $bin: run cargo build --release first, or pass --bin DIR" >&2
    exit 2
fi

rows=()
for partitions in 16 64; do
    rows+=("one Redis|${TOPK_BENCH_REDIS_URL:-redis://127.0.0.1:6379}|$partitions")
done
if [[ -n "${TOPK_BENCH_CLUSTER_URL:-}" ]]; then
    for partitions in 16 64; do
        rows+=("Redis Cluster|$TOPK_BENCH_CLUSTER_URL|$partitions")
    done
else
    echo "bench-deployments: TOPK_BENCH_CLUSTER_URL is not set: the cluster rows are skipped" >&2
fi

# Each row's figures as JSON too, for the summary of the goal's ratios at the end (all from this one run).
figures=$(mktemp -d)
for row in "${rows[@]}"; do
    IFS='|' read -r name url partitions <<<"$row"
    echo "## $name, $partitions partitions ($bin)"
    started=$SECONDS
    slug=$(echo "$name" | tr 'A-Z ' 'a-z-' | sed 's/redis-cluster/cluster/')
    TOPK_REDIS_URL="$url" TOPK_PARTITIONS="$partitions" "$bin/topk-bench" "${args[@]}" \
        --json-file "$figures/$slug-$partitions.json"
    echo "(row took $((SECONDS - started)) s)"
    echo
done

echo "## Summary (this run only; figures in $figures)"
if command -v python3 >/dev/null; then
    python3 scripts/bench-summary.py "$figures"/*.json
else
    echo "bench-deployments: no python3 to sum the rows up; each row's figures are in $figures" >&2
fi
