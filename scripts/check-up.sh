#!/usr/bin/env bash
# Runs scripts/up.sh and scripts/down.sh as a user would, on a private TOPK_HOME and free ports (debug build),
# and checks that up.sh records the setup it started (TOPK_HOME/mode) and refuses another over that data
# before starting anything, naming the ways out; that a TOPK_HOME from before the record is recognised by
# its folders; and that --switch (stack stopped) moves the old Redis data aside, starts a Redis Cluster and
# fills it from PostgreSQL before the services start. Everything it starts is stopped again
# (scripts/down.sh --purge), on failure too.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_packages

work="$(mktemp -d "${TMPDIR:-/tmp}/topk-check-up.XXXXXX")"
# As root, PostgreSQL runs as the postgres user, which must reach TOPK_HOME inside it.
if is_root; then chmod 755 "$work"; fi
export TOPK_HOME="$work/home" TOPK_PROFILE=debug TOPK_PARTITIONS=4
unset TOPK_REDIS_CLUSTER TOPK_INGEST_TOKEN TOPK_KAFKA
cleanup() {
	if [[ -d "$TOPK_HOME" ]]; then "$TOPK_ROOT/scripts/down.sh" --purge >/dev/null 2>&1 || true; fi
	rm -rf "$work"
}
trap cleanup EXIT

# Free ports: six in a row for a cluster's nodes (and their bus ports, 10000 above), then PostgreSQL, the API
# and ingest outside that range.
read -r TOPK_REDIS_PORT TOPK_PG_PORT TOPK_API_PORT TOPK_INGEST_PORT < <(python3 - <<'EOF'
import random, socket
def free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False
while True:
    base = random.randrange(20000, 30000)
    if all(free(p) and free(p + 10000) for p in range(base, base + 6)):
        break
others = []
while len(others) < 3:
    p = random.randrange(30000, 40000)
    if p not in others and free(p):
        others.append(p)
print(base, *others)
EOF
)
export TOPK_REDIS_PORT TOPK_PG_PORT TOPK_API_PORT TOPK_INGEST_PORT
CLUSTER_PORTS=$(seq "$TOPK_REDIS_PORT" $((TOPK_REDIS_PORT + 5)))
steps=0

fail() {
	printf 'check-up: FAILED: %s\n' "$*" >&2
	[[ -f "$work/out" ]] && sed 's/^/  | /' "$work/out" >&2
	exit 1
}

# up ARGS...: scripts/up.sh with the settings in the environment; its output in $work/out.
up() { "$TOPK_ROOT/scripts/up.sh" "$@" >"$work/out" 2>&1; }

# Nothing of ours runs: no pid file names a live process, and no Redis node port listens.
nothing_runs() {
	local f port
	for f in "$TOPK_HOME"/run/*.pid; do
		[[ -e "$f" ]] || continue
		if kill -0 "$(head -n 1 "$f")" 2>/dev/null; then fail "$1: $(basename "$f") names a live process"; fi
	done
	for port in $CLUSTER_PORTS; do
		if port_open "$port"; then fail "$1: something listens on $port"; fi
	done
}

# refused WHAT TEXT... -- ARGS: up.sh with ARGS must fail before starting anything, its message holding
# every TEXT.
refused() {
	local what="$1" texts=() t
	shift
	while [[ "$1" != -- ]]; do
		texts+=("$1")
		shift
	done
	shift
	if up "$@"; then fail "$what: up.sh started"; fi
	for t in "${texts[@]}"; do
		grep -Fq -- "$t" "$work/out" || fail "$what: the message does not say '$t'"
	done
	nothing_runs "$what"
	steps=$((steps + 1))
	info "ok: $what"
}

mode_is() {
	local want="$1" have
	have="$(grep -v '^#' "$TOPK_HOME/mode" 2>/dev/null | tr '\n' ' ')"
	[[ "$have" == "$want" ]] || fail "TOPK_HOME/mode holds '$have', not '$want'"
}

ready() {
	curl -fsS --max-time 5 "http://127.0.0.1:$TOPK_API_PORT/readyz" >/dev/null ||
		fail "the API is not ready after up.sh"
}

info "check-up: TOPK_HOME=$TOPK_HOME, Redis from port $TOPK_REDIS_PORT, PostgreSQL $TOPK_PG_PORT"

up || fail "up.sh of a single Redis"
ready
"$TOPK_ROOT/scripts/down.sh" >"$work/out" 2>&1 || fail "down.sh"
nothing_runs "after down.sh"

TOPK_REDIS_CLUSTER=3 refused "a cluster over a single Redis's data is refused" \
	"a single Redis with 4 partitions" "a Redis Cluster of 3 primaries with 4 partitions" \
	"TOPK_PARTITIONS=4 scripts/up.sh" "scripts/down.sh --purge" "TOPK_HOME=<another folder>" "--switch" \
	"rebuild-redis" --
mode_is "redis=single partitions=4 "
TOPK_PARTITIONS=8 refused "another partition count is refused, even with --switch" \
	"with 8 partitions" "scripts/down.sh --purge" "TOPK_HOME=<another folder>" -- --switch

# A TOPK_HOME of an older up.sh has no record: its folders tell the setup.
mv "$TOPK_HOME/mode" "$work/mode"
TOPK_REDIS_CLUSTER=3 refused "a TOPK_HOME without a record is recognised by its folders" \
	"holds the data of a single Redis;" "scripts/down.sh --purge" --
mv "$work/mode" "$TOPK_HOME/mode"

up || fail "up.sh of the recorded setup again"
ready
if TOPK_REDIS_CLUSTER=3 up --switch; then fail "--switch beside a running stack started"; fi
grep -Fq "stop the stack first (scripts/down.sh)" "$work/out" || fail "--switch beside a running stack: no reason"
ready
mode_is "redis=single partitions=4 "
"$TOPK_ROOT/scripts/down.sh" >"$work/out" 2>&1 || fail "down.sh"
steps=$((steps + 1))
info "ok: --switch refuses while the stack runs"

TOPK_REDIS_CLUSTER=3 up --switch || fail "up.sh --switch to a cluster"
mode_is "redis=cluster:3 partitions=4 "
compgen -G "$TOPK_HOME/redis.single.*" >/dev/null || fail "the single Redis's data was not kept aside"
grep -Fq "redis: rebuilt from PostgreSQL" "$work/out" || fail "rebuild-redis did not run"
ready
code="$(curl -sS -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$TOPK_INGEST_PORT/v1/views" \
	-H 'Content-Type: application/json' -d '[{"videoId": "switched", "count": 2}]')"
[[ "$code" == 202 ]] || fail "a view sent to the switched stack got $code"
for ((i = 0; i < 100; i++)); do
	curl -fsS "http://127.0.0.1:$TOPK_API_PORT/v1/topk?window=all" 2>/dev/null | grep -q '"switched"' && break
	sleep 0.1
done
((i < 100)) || fail "a view sent to the switched stack never ranked"
steps=$((steps + 1))
info "ok: --switch moved the old data aside, rebuilt a Redis Cluster from PostgreSQL and serves it"

"$TOPK_ROOT/scripts/down.sh" --purge >"$work/out" 2>&1 || fail "down.sh --purge"
[[ ! -e "$TOPK_HOME" ]] || fail "down.sh --purge left $TOPK_HOME"
nothing_runs "after down.sh --purge"
info "check-up: all $steps checks passed"
