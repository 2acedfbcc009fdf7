#!/usr/bin/env bash
# Installs what is missing, builds topk, and starts a private Redis, a private PostgreSQL and the three
# services in the background, all on 127.0.0.1, with data, logs and pid files in TOPK_HOME.
# Safe to run again: whatever is already running (per its pid file) is left alone.
#
# Settings (environment): TOPK_HOME (default <repo>/.topk), TOPK_REDIS_PORT (6379), TOPK_PG_PORT (5432),
# TOPK_API_PORT (8080), TOPK_INGEST_PORT (8081), TOPK_PROFILE (release | debug), TOPK_REDIS_APPENDFSYNC
# (everysec | always: fsync Redis's log every second, or before every answer), and passed on to the
# services: TOPK_INGEST_TOKEN, TOPK_PARTITIONS and any other TOPK_* of .env.example.
# TOPK_REDIS_CLUSTER=N (N >= 3; 0 or unset: one Redis) runs a Redis Cluster instead: N primaries with one
# replica each on ports TOPK_REDIS_PORT .. TOPK_REDIS_PORT + 2N - 1 (and their bus ports, 10000 above).
# TOPK_KAFKA=1 also runs a Kafka-compatible broker (tansu, built once into a cache: about 35 minutes the first
# time) on TOPK_KAFKA_PORT (9092) with the topic TOPK_KAFKA_TOPIC (views), and topk-ingest's kafka role on it.
# Stop with scripts/down.sh.
#
# TOPK_HOME remembers its setup (single Redis or cluster of N, partition count; in TOPK_HOME/mode), and up.sh
# refuses to start another over its data: an empty Redis beside the old history would mix them. To change the
# Redis setup and keep the history, stop the stack (scripts/down.sh) and run up.sh with the new settings and
# --switch: it moves the old Redis data aside (TOPK_HOME/redis.<old setup>.<time>), starts the new Redis, fills
# it from PostgreSQL (topk-snapshotter rebuild-redis), then starts the services. Views not yet in history
# when the old stack stopped (the last minute or two) stay in the old data only.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

read_flag switch --switch "$@"

check_port_vars
check_redis_cluster_var
check_home_path

# --- the setup TOPK_HOME's data belongs to ------------------------------------------------------
# Checked before anything is installed, built or started, so a refusal leaves everything as it was.
want_redis="$(wanted_redis_mode)"
want_partitions="${TOPK_PARTITIONS:-16}"
[[ "$want_partitions" =~ ^[0-9]{1,5}$ ]] && ((10#$want_partitions >= 1)) ||
	die "TOPK_PARTITIONS='$want_partitions' is not a number of partitions"
want_partitions=$((10#$want_partitions))
have_redis="$(home_redis_mode)"
have_partitions="$(mode_value partitions)"
want_text="$(describe_redis_mode "$want_redis") with $want_partitions partitions"
have_text="$(describe_redis_mode "${have_redis:-single}")${have_partitions:+ with $have_partitions partitions}"
again="$(redis_mode_settings "${have_redis:-single}")${have_partitions:+TOPK_PARTITIONS=$have_partitions }scripts/up.sh"
if [[ -n "$have_partitions" && "$have_partitions" != "$want_partitions" ]]; then
	die "TOPK_HOME=$TOPK_HOME holds the data of $have_text; this run asks for $want_text.
A Redis with another partition count beside that history would find its videos in other partitions. Either:
  - start the recorded setup:              $again
  - start afresh, deleting that data:      scripts/down.sh --purge, then this command again
  - keep that data, use another folder:    TOPK_HOME=<another folder> with this command
(--switch changes the Redis setup, not the partition count.)"
fi
switching=false
if [[ -n "$have_redis" && "$have_redis" != "$want_redis" ]]; then
	if [[ "$switch" != true ]]; then
		die "TOPK_HOME=$TOPK_HOME holds the data of $have_text; this run asks for $want_text.
Starting it there would put an empty Redis beside the old history in PostgreSQL: verify would report the
windows different from history, and the views history has not taken yet would never reach it. Either:
  - start the recorded setup:              $again
  - start afresh, deleting that data:      scripts/down.sh --purge, then this command again
  - keep that data, use another folder:    TOPK_HOME=<another folder> with this command
  - switch and keep the history:           scripts/down.sh, then this command with --switch: the old Redis
    data is moved aside, and the new Redis is filled from PostgreSQL (topk-snapshotter rebuild-redis)
    before the services start"
	fi
	for f in "$RUN_DIR"/*.pid; do
		[[ -e "$f" ]] || continue
		name="$(basename "$f" .pid)"
		expect=topk-; [[ "$name" == redis* ]] && expect=redis-server
		if pid="$(live_pid "$f" "$expect")"; then
			die "--switch: $name of the current setup is running (pid $pid): stop the stack first (scripts/down.sh)"
		fi
	done
	switching=true
fi
TOPK_REDIS_APPENDFSYNC="${TOPK_REDIS_APPENDFSYNC:-everysec}"
case "$TOPK_REDIS_APPENDFSYNC" in
everysec | always) ;;
*) die "TOPK_REDIS_APPENDFSYNC='$TOPK_REDIS_APPENDFSYNC': use everysec or always" ;;
esac
TOPK_PROFILE="${TOPK_PROFILE:-release}"
case "$TOPK_PROFILE" in
release | debug) ;;
*) die "TOPK_PROFILE='$TOPK_PROFILE': use release or debug" ;;
esac

case "$TOPK_KAFKA" in
0 | 1) ;;
*) die "TOPK_KAFKA='$TOPK_KAFKA': use 1 to run a Kafka broker and the kafka role, or 0" ;;
esac

ensure_packages
((TOPK_KAFKA == 1)) && ensure_tansu

# --- build --------------------------------------------------------------------------------------
# Build before starting anything, so a broken build leaves no half-started stack behind.
build_args=(--workspace --bins)
[[ "$TOPK_PROFILE" == release ]] && build_args=(--release "${build_args[@]}")
info "building ($TOPK_PROFILE): cargo build ${build_args[*]}"
(cd "$TOPK_ROOT" && cargo build "${build_args[@]}")
BIN_DIR="${CARGO_TARGET_DIR:-$TOPK_ROOT/target}/$TOPK_PROFILE"
case "$BIN_DIR" in
/*) ;;
*) BIN_DIR="$TOPK_ROOT/$BIN_DIR" ;; # cargo reads a relative CARGO_TARGET_DIR from where it runs
esac
for b in topk-ingest topk-api topk-snapshotter; do
	[[ -x "$BIN_DIR/$b" ]] || die "$BIN_DIR/$b was not built"
done

mkdir -p "$TOPK_HOME"
: >"$HOME_MARKER"
if [[ "$switching" == true ]]; then
	aside="$TOPK_HOME/redis.${have_redis/:/-}.$(date -u +%Y%m%dT%H%M%SZ)"
	if [[ -d "$REDIS_DIR" ]]; then mv "$REDIS_DIR" "$aside"; fi
	rm -f "$RUN_DIR"/redis.pid "$RUN_DIR"/redis-*.pid
	info "switching from $have_text to $want_text: the old Redis data is now in $aside"
	# Recorded before the new Redis starts: until rebuild-redis has run to the end, every up.sh runs it again.
	write_mode "$want_redis" "$want_partitions" rebuild=pending
elif [[ -z "$have_redis" ]]; then
	write_mode "$want_redis" "$want_partitions"
fi
mkdir -p "$REDIS_DIR" "$LOG_DIR" "$RUN_DIR"
# As root, PostgreSQL runs as the postgres user (see pg_run), which must reach its data and log even
# under a restrictive umask.
if is_root; then chmod 755 "$TOPK_HOME" "$LOG_DIR"; fi

# Fails early when a port is held by a process we did not start: talking to a stranger's server (or
# reading a stranger's /healthz) would be worse than stopping.
require_free_port() {
	if port_open "$1"; then
		die "port $1 ($2) is in use by another process; stop it or set $3 to a free port"
	fi
}

# --- Redis --------------------------------------------------------------------------------------
# Append-only with fsync every second: an acknowledged view survives a Redis restart, but a crash of
# the machine (not of Redis) can lose about the last second of views answered 202.
# TOPK_REDIS_APPENDFSYNC=always fsyncs before every answer instead (docs/architecture.md: Durability).
# No RDB snapshots besides (save ""): the log already makes the data durable, and Redis's default rules
# would fork the whole dataset every minute under load, a core's worth of work for seconds each time.
# A cluster's nodes are set up the same way, each in its own folder.
cluster_pids=()
for f in "$RUN_DIR"/redis-*.pid; do
	[[ -e "$f" ]] || continue
	pid="$(live_pid "$f" redis-server)" && cluster_pids+=("$pid")
done
if ((TOPK_REDIS_CLUSTER == 0)); then
	((${#cluster_pids[@]} == 0)) ||
		die "Redis Cluster nodes of an earlier up.sh are running (pids ${cluster_pids[*]}): set TOPK_REDIS_CLUSTER as then, or run scripts/down.sh first"
	if pid="$(live_pid "$RUN_DIR/redis.pid" redis-server)"; then
		info "redis: already running (pid $pid)"
	else
		require_free_port "$TOPK_REDIS_PORT" Redis TOPK_REDIS_PORT
		redis-server --port "$TOPK_REDIS_PORT" --bind 127.0.0.1 --dir "$REDIS_DIR" \
			--appendonly yes --appendfsync "$TOPK_REDIS_APPENDFSYNC" --save "" \
			--daemonize yes --pidfile "$RUN_DIR/redis.pid" --logfile "$LOG_DIR/redis.log"
		wait_port "$TOPK_REDIS_PORT" redis-server
		info "redis: started on 127.0.0.1:$TOPK_REDIS_PORT"
	fi
	port_open "$TOPK_REDIS_PORT" ||
		die "our Redis does not listen on $TOPK_REDIS_PORT: started with other ports? run scripts/down.sh first"
	redis_url="redis://127.0.0.1:$TOPK_REDIS_PORT"
else
	if pid="$(live_pid "$RUN_DIR/redis.pid" redis-server)"; then
		die "the single Redis of an earlier up.sh is running (pid $pid): run scripts/down.sh first to switch to a cluster"
	fi
	mapfile -t node_ports < <(redis_cluster_ports)
	started=()
	for port in "${node_ports[@]}"; do
		if pid="$(live_pid "$RUN_DIR/redis-$port.pid" redis-server)"; then
			continue
		fi
		require_free_port "$port" "Redis Cluster node" TOPK_REDIS_PORT
		require_free_port $((port + 10000)) "the cluster bus of Redis node $port" TOPK_REDIS_PORT
		mkdir -p "$REDIS_DIR/node-$port"
		# A node timeout of 15 s, Redis's default: a node blocked by one long command (seconds) is not taken for dead.
		redis-server --port "$port" --bind 127.0.0.1 --dir "$REDIS_DIR/node-$port" \
			--cluster-enabled yes --cluster-config-file "nodes-$port.conf" --cluster-node-timeout 15000 \
			--appendonly yes --appendfsync "$TOPK_REDIS_APPENDFSYNC" --save "" \
			--daemonize yes --pidfile "$RUN_DIR/redis-$port.pid" --logfile "$LOG_DIR/redis-$port.log"
		started+=("$port")
	done
	for port in "${started[@]}"; do
		wait_port "$port" "redis-server (cluster node)"
	done
	for port in "${node_ports[@]}"; do
		port_open "$port" ||
			die "our Redis node does not listen on $port: started with other ports? run scripts/down.sh first"
		# A restarted node answers LOADING until it has read its append-only file.
		for ((i = 0; i < 600; i++)); do
			[[ "$(redis-cli -p "$port" ping 2>/dev/null)" == PONG ]] && break
			sleep 0.1
		done
	done
	if ((${#started[@]} > 0)); then
		info "redis: started cluster nodes on ${started[*]}"
	else
		info "redis: cluster nodes already running on ${node_ports[*]}"
	fi

	# Formed already (a node that restarts reads its nodes file), brand new (every node alone and without
	# slots), or anything else, which up.sh does not repair.
	want_nodes=$((2 * TOPK_REDIS_CLUSTER))
	fresh=0 formed=0
	for port in "${node_ports[@]}"; do
		known="$(redis_cluster_info "$port" cluster_known_nodes)"
		assigned="$(redis_cluster_info "$port" cluster_slots_assigned)"
		if [[ "$known" == 1 && "$assigned" == 0 ]]; then
			fresh=$((fresh + 1))
		elif [[ "$known" == "$want_nodes" && "$assigned" == 16384 ]]; then
			formed=$((formed + 1))
		else
			die "Redis node $port is in another cluster than the one asked for (it knows ${known:-?} nodes, $want_nodes wanted, and ${assigned:-?} slots are assigned): scripts/down.sh --purge starts afresh (deleting the data), or use another TOPK_HOME"
		fi
	done
	if ((fresh == ${#node_ports[@]})); then
		info "redis: creating a cluster of $TOPK_REDIS_CLUSTER primaries with one replica each"
		addrs=()
		for port in "${node_ports[@]}"; do addrs+=("127.0.0.1:$port"); done
		redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes \
			>>"$LOG_DIR/redis-cluster-create.log" 2>&1 </dev/null || {
			tail -n 20 "$LOG_DIR/redis-cluster-create.log" >&2 || true
			die "redis-cli --cluster create failed; see $LOG_DIR/redis-cluster-create.log"
		}
	elif ((formed != ${#node_ports[@]})); then
		die "some Redis nodes are in a cluster and some are new ($formed formed, $fresh new): scripts/down.sh --purge starts afresh (deleting the data), or use another TOPK_HOME"
	fi
	for port in "${node_ports[@]}"; do
		for ((i = 0; i < 600; i++)); do
			[[ "$(redis_cluster_info "$port" cluster_state)" == ok ]] && break
			sleep 0.1
		done
		[[ "$(redis_cluster_info "$port" cluster_state)" == ok ]] ||
			die "Redis node $port does not report cluster_state:ok within 60 s; see $LOG_DIR/redis-$port.log"
	done
	redis_url="$(redis_cluster_url "${node_ports[0]}")" || die "could not read the cluster's primaries from node ${node_ports[0]}"
	info "redis: cluster ok: $redis_url"
fi

# --- PostgreSQL ---------------------------------------------------------------------------------
if [[ ! -s "$PG_DATA/PG_VERSION" ]]; then
	mkdir -p "$PG_DATA"
	pg_own "$PG_DATA"
	if is_root && ! runuser -u postgres -- test -w "$PG_DATA" 2>/dev/null; then
		die "the postgres user cannot reach $PG_DATA (a parent folder is closed to other users); set TOPK_HOME to a folder it can reach"
	fi
	info "postgres: creating a cluster in $PG_DATA"
	pg_run initdb -D "$PG_DATA" -A trust -U postgres -E UTF8 >"$LOG_DIR/initdb.log" 2>&1 ||
		die "initdb failed; see $LOG_DIR/initdb.log"
fi
pg_own "$PG_DATA"
if pg_run pg_ctl status -D "$PG_DATA" >/dev/null 2>&1; then
	info "postgres: already running"
else
	require_free_port "$TOPK_PG_PORT" PostgreSQL TOPK_PG_PORT
	touch "$LOG_DIR/postgres.log"
	pg_own "$LOG_DIR/postgres.log"
	# The socket lives in the data folder (no shared /run/postgresql needed); a unix socket path is at
	# most 107 bytes, so a deep TOPK_HOME falls back to TCP only, which is all the services use.
	socket_opt="-k $PG_DATA"
	if ((${#PG_DATA} + 20 > 107)); then socket_opt="-c unix_socket_directories=''"; fi
	pg_run pg_ctl -D "$PG_DATA" -l "$LOG_DIR/postgres.log" -w -t 60 \
		-o "-p $TOPK_PG_PORT -c listen_addresses=127.0.0.1 $socket_opt" start >/dev/null ||
		{
			tail -n 20 "$LOG_DIR/postgres.log" >&2 || true
			die "PostgreSQL did not start; see $LOG_DIR/postgres.log"
		}
	info "postgres: started on 127.0.0.1:$TOPK_PG_PORT"
fi
port_open "$TOPK_PG_PORT" ||
	die "our PostgreSQL does not listen on $TOPK_PG_PORT: started with other ports? run scripts/down.sh first"
PSQL="$(pg_bin psql)"
psql_admin() { "$PSQL" -h 127.0.0.1 -p "$TOPK_PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qAt "$@"; }
if [[ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = 'topk'")" != 1 ]]; then
	psql_admin -c 'CREATE DATABASE topk'
	info "postgres: created database topk"
fi

# --- the services -------------------------------------------------------------------------------
export TOPK_REDIS_URL="$redis_url"
export TOPK_DATABASE_URL="postgres://postgres@127.0.0.1:$TOPK_PG_PORT/topk"
export TOPK_API_ADDR="127.0.0.1:$TOPK_API_PORT"
export TOPK_INGEST_ADDR="127.0.0.1:$TOPK_INGEST_PORT"
# These pass through as they are; an empty one would be read as a value (an empty token, a bad count).
[[ -n "${TOPK_INGEST_TOKEN:-}" ]] || unset TOPK_INGEST_TOKEN
[[ -n "${TOPK_PARTITIONS:-}" ]] || unset TOPK_PARTITIONS

info "migrating the database"
"$BIN_DIR/topk-snapshotter" migrate >>"$LOG_DIR/migrate.log" 2>&1 || {
	tail -n 20 "$LOG_DIR/migrate.log" >&2 || true
	die "topk-snapshotter migrate failed; see $LOG_DIR/migrate.log"
}

# After a --switch (or an up.sh interrupted after one), the new Redis is filled from PostgreSQL before any
# service starts: rebuild-redis refuses to run beside workers, and is safe to run again.
if [[ "$(mode_value rebuild)" == pending ]]; then
	info "filling Redis from PostgreSQL: topk-snapshotter rebuild-redis (log $LOG_DIR/rebuild-redis.log)"
	"$BIN_DIR/topk-snapshotter" rebuild-redis >>"$LOG_DIR/rebuild-redis.log" 2>&1 || {
		tail -n 20 "$LOG_DIR/rebuild-redis.log" >&2 || true
		die "topk-snapshotter rebuild-redis failed; see $LOG_DIR/rebuild-redis.log (scripts/up.sh runs it again)"
	}
	write_mode "$want_redis" "$want_partitions"
	info "redis: rebuilt from PostgreSQL"
fi

kept_old=false
# start_service NAME BINARY [ARGS...]: starts BINARY detached (nohup, own log and pid file) unless the
# process of its pid file is still alive.
start_service() {
	local name="$1" bin="$2" pid
	shift 2
	if pid="$(live_pid "$RUN_DIR/$name.pid" "$bin")"; then
		info "$name: already running (pid $pid)"
		kept_old=true
		return 0
	fi
	nohup "$BIN_DIR/$bin" "$@" >>"$LOG_DIR/$name.log" 2>&1 </dev/null &
	printf '%s\n' "$!" >"$RUN_DIR/$name.pid"
	info "$name: started (pid $!, log $LOG_DIR/$name.log)"
}

# wait_healthy NAME PORT: waits for GET /healthz, failing at once if the process died (bad config,
# port taken) and showing why.
wait_healthy() {
	local name="$1" port="$2" i
	for ((i = 0; i < 600; i++)); do
		curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$port/healthz" 2>/dev/null && return 0
		if ! live_pid "$RUN_DIR/$name.pid" "topk-$name" >/dev/null; then
			tail -n 20 "$LOG_DIR/$name.log" >&2 || true
			die "$name exited; see $LOG_DIR/$name.log (scripts/down.sh stops the rest)"
		fi
		sleep 0.1
	done
	die "$name did not answer /healthz on port $port within 60 s; see $LOG_DIR/$name.log"
}

if ! live_pid "$RUN_DIR/ingest.pid" topk-ingest >/dev/null; then
	require_free_port "$TOPK_INGEST_PORT" topk-ingest TOPK_INGEST_PORT
fi
if ! live_pid "$RUN_DIR/api.pid" topk-api >/dev/null; then
	require_free_port "$TOPK_API_PORT" topk-api TOPK_API_PORT
fi
start_service ingest topk-ingest
start_service api topk-api
# `run` (the cron jobs) is newer than `migrate`; an older build simply lacks it.
# (Help is captured first: grep -q closing the pipe early could fail the pipeline under pipefail.)
snap_help="$("$BIN_DIR/topk-snapshotter" --help 2>/dev/null || true)"
if grep -Eq '^[[:space:]]+run([[:space:]]|$)' <<<"$snap_help"; then
	start_service snapshotter topk-snapshotter run
else
	info "snapshotter: not started (this build of topk-snapshotter has no 'run' subcommand yet)"
fi
# --- Kafka (TOPK_KAFKA=1) ------------------------------------------------------------------------
kafka_summary=""
if ((TOPK_KAFKA == 1)); then
	KAFKA_DIR="$TOPK_HOME/kafka"
	kafka_topic="${TOPK_KAFKA_TOPIC:-views}"
	if ! live_pid "$KAFKA_DIR/tansu.pid" tansu >/dev/null; then
		start_tansu "$TOPK_KAFKA_PORT" "$KAFKA_DIR"
	fi
	tansu_topic "$TOPK_KAFKA_PORT" "$kafka_topic" "${TOPK_KAFKA_TOPIC_PARTITIONS:-4}"
	TOPK_INGEST_ROLE=kafka TOPK_KAFKA_BROKERS="127.0.0.1:$TOPK_KAFKA_PORT" TOPK_KAFKA_TOPIC="$kafka_topic" \
		start_service kafka topk-ingest
	kafka_summary="
  kafka:    127.0.0.1:$TOPK_KAFKA_PORT, topic $kafka_topic (tansu, kept in $KAFKA_DIR/tansu.db), read by topk-ingest's kafka role"
fi

wait_healthy ingest "$TOPK_INGEST_PORT"
wait_healthy api "$TOPK_API_PORT"
# The snapshotter and the kafka role serve no HTTP; by now a bad setting would have made them exit.
for name in snapshotter kafka; do
	bin=topk-snapshotter
	[[ "$name" == kafka ]] && bin=topk-ingest
	if [[ -f "$RUN_DIR/$name.pid" ]] && ! live_pid "$RUN_DIR/$name.pid" "$bin" >/dev/null; then
		tail -n 20 "$LOG_DIR/$name.log" >&2 || true
		die "$name exited; see $LOG_DIR/$name.log (scripts/down.sh stops the rest)"
	fi
done

# Every service started with these settings, so the partition count is the one Redis holds: recorded.
write_mode "$want_redis" "$want_partitions"

# --- how to use it ------------------------------------------------------------------------------
auth=""
ingest_auth="no token needed: TOPK_INGEST_TOKEN is unset"
if [[ -n "${TOPK_INGEST_TOKEN:-}" ]]; then
	auth=" -H \"Authorization: Bearer \$TOPK_INGEST_TOKEN\""
	ingest_auth="Authorization: Bearer \$TOPK_INGEST_TOKEN"
fi
down_cmd="scripts/down.sh"
[[ "$TOPK_HOME" == "$TOPK_ROOT/.topk" ]] || down_cmd="TOPK_HOME=$TOPK_HOME scripts/down.sh"
redis_summary="127.0.0.1:$TOPK_REDIS_PORT"
if ((TOPK_REDIS_CLUSTER > 0)); then
	redis_summary="cluster of $TOPK_REDIS_CLUSTER primaries + $TOPK_REDIS_CLUSTER replicas on 127.0.0.1:$TOPK_REDIS_PORT-$((TOPK_REDIS_PORT + 2 * TOPK_REDIS_CLUSTER - 1))
            TOPK_REDIS_URL=$redis_url"
fi
cat <<EOF

topk is up ($TOPK_PROFILE build).
  page:     http://127.0.0.1:$TOPK_API_PORT/   (the live leaderboard, in a browser)
  docs:     http://127.0.0.1:$TOPK_API_PORT/docs   (Swagger UI: every route, tried in the browser)
  ingest:   http://127.0.0.1:$TOPK_INGEST_PORT   (POST /v1/views; $ingest_auth)
  api:      http://127.0.0.1:$TOPK_API_PORT   (GET /v1/topk, /view/video, /healthz, /readyz)
  redis:    $redis_summary
  postgres: postgres://postgres@127.0.0.1:$TOPK_PG_PORT/topk$kafka_summary

Try:
  curl -i -X POST http://127.0.0.1:$TOPK_INGEST_PORT/v1/views -H 'Content-Type: application/json'$auth \\
       -d '[{"videoId": "abc"}, {"videoId": "xyz", "count": 3}]'
  curl 'http://127.0.0.1:$TOPK_API_PORT/v1/topk?k=10&window=hour'

Logs:  $LOG_DIR/
Stop:  $down_cmd   (data is kept; add --purge to delete it)
EOF
if [[ "$kept_old" == true ]]; then
	info "Note: services that were already running keep their build and settings; stop and start again to renew them."
fi
