#!/usr/bin/env bash
# Runs topk-bench on the deployments the capacity plan compares, on the same machine: one Redis with 16 and 64
# partitions, and a Redis Cluster with 16 and 64 partitions (and, when given, a cluster without replicas at 64,
# which shows what the replicas cost the primaries). Each row is its own deployment (the partition count is
# fixed per deployment) on its own key prefix and scratch database.
#
#   TOPK_BENCH_REDIS_URL=redis://127.0.0.1:6379 \
#   TOPK_BENCH_CLUSTER_URL='redis-cluster://127.0.0.1:7001?node=127.0.0.1:7002&node=127.0.0.1:7003' \
#   [TOPK_BENCH_CLUSTER_NO_REPLICAS_URL='redis-cluster://127.0.0.1:7011?node=...'] \
#   TOPK_DATABASE_URL=postgres://... scripts/bench-deployments.sh [--bin DIR] [--rounds N] [topk-bench arguments]
#
# The arguments after the options go to every topk-bench run (default: --only ingest --repeats 3, or --repeats 1
# with --rounds). --bin names the folder of the topk-bench, topk-ingest and topk-api to run (default:
# target/release), so an older build can be measured the same way in the same session. --rounds N runs every
# row once per round, N rounds in turn: on a shared machine the cost per view drifts by up to a microsecond
# within an hour, so a ratio of two rows measured minutes apart is only as good as that drift, and rows
# interleaved in rounds give one ratio per round, each from rows measured side by side. Without
# TOPK_BENCH_CLUSTER_URL the cluster rows are skipped. Each row prints a heading, then topk-bench's table (or
# JSON with --json); the end sums the rows up (scripts/bench-summary.py): steady-state Redis CPU per view of
# each, and the capacity goal's ratios, per round and their median.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bin=target/release
rounds=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --bin) bin="$2"; shift 2 ;;
        --rounds) rounds="$2"; shift 2 ;;
        *) break ;;
    esac
done
if ! [[ "$rounds" =~ ^[1-9][0-9]*$ ]]; then
    echo "bench-deployments: --rounds takes a whole number of rounds, at least 1 (got '$rounds')" >&2
    exit 2
fi
args=("$@")
if [[ ${#args[@]} -eq 0 ]]; then
    if [[ $rounds -gt 1 ]]; then
        args=(--only ingest --repeats 1)
    else
        args=(--only ingest --repeats 3)
    fi
fi
if [[ ! -x "$bin/topk-bench" ]]; then
    echo "bench-deployments: no topk-bench in $bin: run cargo build --release first, or pass --bin DIR" >&2
    exit 2
fi

# name|url|partitions|file name
rows=()
for partitions in 16 64; do
    rows+=("one Redis|${TOPK_BENCH_REDIS_URL:-redis://127.0.0.1:6379}|$partitions|one-redis-$partitions")
done
if [[ -n "${TOPK_BENCH_CLUSTER_URL:-}" ]]; then
    for partitions in 16 64; do
        rows+=("Redis Cluster|$TOPK_BENCH_CLUSTER_URL|$partitions|cluster-$partitions")
    done
else
    echo "bench-deployments: TOPK_BENCH_CLUSTER_URL is not set: the cluster rows are skipped" >&2
fi
if [[ -n "${TOPK_BENCH_CLUSTER_NO_REPLICAS_URL:-}" ]]; then
    rows+=("Redis Cluster without replicas|$TOPK_BENCH_CLUSTER_NO_REPLICAS_URL|64|cluster-no-replicas-64")
fi

# Each row's figures as JSON too, for the summary of the goal's ratios at the end (all from this one run).
figures=$(mktemp -d)
for ((round = 1; round <= rounds; round++)); do
    for row in "${rows[@]}"; do
        IFS='|' read -r name url partitions file <<<"$row"
        echo "## $name, $partitions partitions ($bin; round $round of $rounds)"
        started=$SECONDS
        TOPK_REDIS_URL="$url" TOPK_PARTITIONS="$partitions" "$bin/topk-bench" "${args[@]}" \
            --json-file "$figures/$file.r$round.json"
        echo "(row took $((SECONDS - started)) s)"
        echo
    done
done

echo "## Summary (this run only; figures in $figures)"
if command -v python3 >/dev/null; then
    python3 scripts/bench-summary.py "$figures"/*.json
else
    echo "bench-deployments: no python3 to sum the rows up; each row's figures are in $figures" >&2
fi
