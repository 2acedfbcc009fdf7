#!/usr/bin/env bash
# Stops exactly what scripts/up.sh started (found through the pid files and the cluster in TOPK_HOME):
# the services first, so they can finish the batch in hand while Redis and PostgreSQL are still up.
# Data stays in TOPK_HOME; --purge deletes TOPK_HOME as well.
#
# Usage: scripts/down.sh [--purge]     (use the same TOPK_HOME as for up.sh)
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

read_flag purge --purge "$@"

if [[ ! -d "$TOPK_HOME" ]]; then
	info "nothing to stop: $TOPK_HOME does not exist"
	exit 0
fi

# Reverse order of up.sh.
stop_pid "$RUN_DIR/kafka.pid" kafka topk-ingest
stop_pid "$RUN_DIR/snapshotter.pid" snapshotter topk-snapshotter
stop_pid "$RUN_DIR/api.pid" api topk-api
stop_pid "$RUN_DIR/ingest.pid" ingest topk-ingest

# PostgreSQL: a fast shutdown (roll back open transactions, then a clean checkpoint).
if [[ -f "$PG_DATA/postmaster.pid" ]]; then
	if [[ -n "$(pg_bindir)" ]]; then
		if pg_run pg_ctl status -D "$PG_DATA" >/dev/null 2>&1; then
			info "stopping postgres"
			pg_run pg_ctl stop -D "$PG_DATA" -m fast -w -t 60 >/dev/null ||
				warn "pg_ctl stop failed; see $LOG_DIR/postgres.log"
		fi
	else
		# PostgreSQL was uninstalled under us: SIGINT to the postmaster is the same fast shutdown.
		pg_pid="$(head -n 1 "$PG_DATA/postmaster.pid" | tr -dc '0-9')"
		if [[ -n "$pg_pid" ]] && kill -0 "$pg_pid" 2>/dev/null; then
			info "stopping postgres (pid $pg_pid)"
			kill -INT "$pg_pid"
			for ((i = 0; i < 200; i++)); do
				kill -0 "$pg_pid" 2>/dev/null || break
				sleep 0.1
			done
		fi
	fi
fi

# The Kafka broker of TOPK_KAFKA=1 (memory storage: its topics and records go with it).
[[ -f "$TOPK_HOME/kafka/tansu.pid" ]] && stop_tansu "$TOPK_HOME/kafka"

# Redis: SIGTERM through our pid file does what SHUTDOWN does (flush the append-only file, then exit),
# and unlike `redis-cli -p PORT shutdown` it cannot reach another Redis that now holds the port.
stop_pid "$RUN_DIR/redis.pid" redis redis-server
# The nodes of a Redis Cluster (TOPK_REDIS_CLUSTER), whatever their number: each saves its nodes file and
# append-only file on SIGTERM, so the next up.sh finds the cluster formed, with its data.
for pid_file in "$RUN_DIR"/redis-*.pid; do
	[[ -e "$pid_file" ]] || continue
	node="${pid_file##*/redis-}"
	stop_pid "$pid_file" "redis cluster node ${node%.pid}" redis-server
done

if [[ "$purge" == true ]]; then
	# Only delete a folder that up.sh made, never a TOPK_HOME pointed at something else by mistake.
	if [[ -f "$HOME_MARKER" ]]; then
		rm -rf -- "$TOPK_HOME"
		info "deleted $TOPK_HOME"
	else
		die "$TOPK_HOME was not made by scripts/up.sh (no $(basename "$HOME_MARKER")); not deleting it"
	fi
else
	info "stopped; data kept in $TOPK_HOME (scripts/down.sh --purge deletes it)"
fi
