#!/usr/bin/env bash
# Fuzzes both services over HTTP from their own OpenAPI documents with schemathesis (a Python tool): every
# generated request, valid or not, must get an answer below 500, and the services must still be running at
# the end. It starts its own private redis-server, PostgreSQL (for the history route), topk-api and
# topk-ingest on free ports in a temporary folder, and stops exactly those when it ends.
#
# schemathesis is installed with pip into a virtual environment (default target/schemathesis-venv, or
# TOPK_SCHEMATHESIS_VENV) when missing; on Debian/Ubuntu the python3-venv package is installed if needed.
# TOPK_SCHEMATHESIS_EXAMPLES (default 300) bounds the test cases per operation and phase.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

EXAMPLES="${TOPK_SCHEMATHESIS_EXAMPLES:-300}"
VENV="${TOPK_SCHEMATHESIS_VENV:-$TOPK_ROOT/target/schemathesis-venv}"
# Major version pinned: the CLI's options changed between majors.
SCHEMATHESIS_REQ='schemathesis>=4,<5'
TOKEN="schemathesis-token"

ensure_schemathesis() {
	if [[ -x "$VENV/bin/schemathesis" ]]; then
		return 0
	fi
	command -v python3 >/dev/null 2>&1 || ensure_packages
	info "installing schemathesis into $VENV"
	rm -rf "$VENV"
	if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
		# Debian and Ubuntu ship venv's pip bootstrap (ensurepip) in a package of its own.
		command -v apt-get >/dev/null 2>&1 || die "python3 cannot create a virtual environment; install python3-venv"
		info "installing python3-venv"
		as_root env DEBIAN_FRONTEND=noninteractive apt-get update
		as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv
		rm -rf "$VENV"
		python3 -m venv "$VENV"
	fi
	"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$SCHEMATHESIS_REQ"
}

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_http() {
	local url="$1" name="$2" i
	for ((i = 0; i < 300; i++)); do
		curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null && return 0
		sleep 0.1
	done
	die "$name did not answer $url within 30 s"
}

WORK=""
PIDS=()
PG_DATA_DIR=""
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	if [[ -n "$PG_DATA_DIR" ]]; then
		pg_run pg_ctl -D "$PG_DATA_DIR" stop -m immediate -w >/dev/null 2>&1 || true
	fi
	[[ -z "$WORK" ]] || rm -rf "$WORK"
}
trap cleanup EXIT

ensure_packages
ensure_schemathesis
cd "$TOPK_ROOT"
"$VENV/bin/schemathesis" --version

# The same build as `cargo test --workspace` (so after the test stage it compiles nothing): it also builds the
# binaries, with the features the tests use.
cargo test --workspace --no-run --quiet
# Where cargo put them: CARGO_TARGET_DIR when set (relative to the root, where cargo ran), else target/.
BIN="${CARGO_TARGET_DIR:-target}/debug"
[[ "$BIN" == /* ]] || BIN="$TOPK_ROOT/$BIN"

WORK="$(mktemp -d -t topk-schemathesis.XXXXXX)"
# PostgreSQL runs as the postgres user when we are root: it must reach its folder.
chmod 755 "$WORK"
mkdir -p "$WORK/logs" "$WORK/report"

redis_port="$(free_port)"
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" \
	>"$WORK/logs/redis.log" 2>&1 &
PIDS+=("$!")
wait_port "$redis_port" redis-server

pg_port="$(free_port)"
PG_DATA_DIR="$WORK/pg"
mkdir -p "$PG_DATA_DIR"
pg_own "$PG_DATA_DIR" "$WORK/logs"
pg_run initdb -D "$PG_DATA_DIR" -A trust -U postgres -E UTF8 >"$WORK/logs/initdb.log" 2>&1 ||
	die "initdb failed: $(tail -n 5 "$WORK/logs/initdb.log")"
pg_run pg_ctl -D "$PG_DATA_DIR" -l "$WORK/logs/postgres.log" -w -t 60 \
	-o "-p $pg_port -k $PG_DATA_DIR -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null ||
	die "PostgreSQL did not start: $(tail -n 5 "$WORK/logs/postgres.log")"
pg_run psql -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -qAt -c 'CREATE DATABASE topk' >/dev/null

api_port="$(free_port)"
ingest_port="$(free_port)"
export TOPK_REDIS_URL="redis://127.0.0.1:$redis_port"
export TOPK_DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/topk"
export TOPK_PARTITIONS=4 TOPK_KEY_PREFIX=schemathesis RUST_LOG=warn
"$BIN/topk-snapshotter" migrate >"$WORK/logs/migrate.log" 2>&1 ||
	die "migrate failed: $(tail -n 5 "$WORK/logs/migrate.log")"

TOPK_API_ADDR="127.0.0.1:$api_port" "$BIN/topk-api" >"$WORK/logs/api.log" 2>&1 &
PIDS+=("$!")
api_pid="$!"
TOPK_INGEST_ADDR="127.0.0.1:$ingest_port" TOPK_INGEST_TOKEN="$TOKEN" "$BIN/topk-ingest" \
	>"$WORK/logs/ingest.log" 2>&1 &
PIDS+=("$!")
ingest_pid="$!"
wait_http "http://127.0.0.1:$api_port/healthz" topk-api
wait_http "http://127.0.0.1:$ingest_port/healthz" topk-ingest

# Some views and snapshots first, so rankings, counts and history have something to return: a snapshot now,
# and one in year 1 so that (nearly) any generated `at` finds one instead of a 404.
curl -fsS -o /dev/null -X POST "http://127.0.0.1:$ingest_port/v1/views" -H "Authorization: Bearer $TOKEN" \
	-H 'Content-Type: application/json' -d '[{"videoId":"a"},{"videoId":"b","count":3}]'
sleep 1
"$BIN/topk-snapshotter" snapshot >"$WORK/logs/snapshot.log" 2>&1 ||
	die "topk-snapshotter snapshot failed: $(tail -n 5 "$WORK/logs/snapshot.log")"
pg_run psql -h 127.0.0.1 -p "$pg_port" -U postgres -d topk -qAt -v ON_ERROR_STOP=1 -c "
	INSERT INTO global_topk_snapshots (time_window, snapshot_time, rank, video_id, views, window_start, window_end)
	SELECT w, '0001-01-01T00:00:00Z', 1, 'a', 1, NULL, '0001-01-01T00:00:00Z'
	FROM unnest(ARRAY['minute', 'hour', 'day', 'all']) AS w" >/dev/null

total_cases=0
failed=0
# fuzz NAME PORT [schemathesis options...]: one run against one service's document.
fuzz() {
	local name="$1" port="$2" out cases
	shift 2
	out="$WORK/report/$name.txt"
	info ""
	info "==> schemathesis: $name (http://127.0.0.1:$port/openapi.json)"
	set +e
	# From the temporary folder: schemathesis keeps a cache folder in its working directory.
	(cd "$WORK" && "$VENV/bin/schemathesis" run "http://127.0.0.1:$port/openapi.json" \
		--checks not_a_server_error \
		--max-examples "$EXAMPLES" \
		--workers 1 \
		--request-timeout 10 \
		--generation-database none \
		--no-color \
		"$@") 2>&1 | tee "$out"
	local rc="${PIPESTATUS[0]}"
	set -e
	# The summary reads "Test cases:" and, on the next line, "512 generated, 512 passed".
	cases="$(grep -A1 '^Test cases:' "$out" | grep -Eo '[0-9]+ generated' | grep -Eo '[0-9]+' | tail -n 1 || true)"
	total_cases=$((total_cases + ${cases:-0}))
	if ((rc != 0)); then
		warn "schemathesis found failures against $name (exit $rc)"
		failed=1
	fi
}

fuzz topk-api "$api_port"
fuzz topk-ingest "$ingest_port" -H "Authorization: Bearer $TOKEN"

for svc in "api:$api_pid" "ingest:$ingest_pid"; do
	if ! kill -0 "${svc#*:}" 2>/dev/null; then
		warn "topk-${svc%%:*} is no longer running; its log ends with:"
		tail -n 20 "$WORK/logs/${svc%%:*}.log" >&2 || true
		failed=1
	fi
done
if grep -l 'panicked' "$WORK"/logs/api.log "$WORK"/logs/ingest.log >/dev/null 2>&1; then
	warn "a service panicked:"
	grep -h -A3 'panicked' "$WORK"/logs/api.log "$WORK"/logs/ingest.log >&2 || true
	failed=1
fi

info ""
info "schemathesis: $total_cases test cases generated against topk-api and topk-ingest"
if ((failed)); then
	die "schemathesis: a server error, a crash or a panic (see above)"
fi
info "schemathesis: no 5xx, no crash"
