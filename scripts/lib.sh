# shellcheck shell=bash
# shellcheck disable=SC2034 # the variables set here are used by the scripts that source this file
# Helpers shared by up.sh, down.sh and test.sh. Source it: it only sets variables and defines functions.
#
# Layout of TOPK_HOME (default <repo>/.topk, ignored by git):
#   redis/   Redis data (append-only file)      pg/    PostgreSQL cluster (also its unix socket)
#   logs/    one log per process                run/   one pid file per process that up.sh started
# With TOPK_REDIS_CLUSTER=N, each Redis Cluster node has its own folder redis/node-<port>/ (its append-only
# file and nodes-<port>.conf), log logs/redis-<port>.log and pid file run/redis-<port>.pid.
#   mode     the setup the data belongs to (written by up.sh; see "the recorded setup" below)
#   redis.<setup>.<time>/   the Redis data of an earlier setup, moved aside by `up.sh --switch`

# The repository root, whatever directory the script was called from.
TOPK_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

TOPK_HOME="${TOPK_HOME:-$TOPK_ROOT/.topk}"
# Made absolute before any cd, so a relative TOPK_HOME means the caller's directory.
case "$TOPK_HOME" in
/*) ;;
*) TOPK_HOME="$PWD/$TOPK_HOME" ;;
esac
TOPK_REDIS_PORT="${TOPK_REDIS_PORT:-6379}"
TOPK_PG_PORT="${TOPK_PG_PORT:-5432}"
TOPK_API_PORT="${TOPK_API_PORT:-8080}"
TOPK_INGEST_PORT="${TOPK_INGEST_PORT:-8081}"
# TOPK_KAFKA=1: scripts/up.sh also runs a Kafka-compatible broker (tansu) on TOPK_KAFKA_PORT and the kafka role.
TOPK_KAFKA="${TOPK_KAFKA:-0}"
TOPK_KAFKA_PORT="${TOPK_KAFKA_PORT:-9092}"
# Primaries of a local Redis Cluster (one replica each); 0 or unset: a single Redis node.
TOPK_REDIS_CLUSTER="${TOPK_REDIS_CLUSTER:-0}"

REDIS_DIR="$TOPK_HOME/redis"
PG_DATA="$TOPK_HOME/pg"
LOG_DIR="$TOPK_HOME/logs"
RUN_DIR="$TOPK_HOME/run"
# Written by up.sh: down.sh --purge deletes only a folder that carries it.
HOME_MARKER="$TOPK_HOME/.topk-home"
# The setup TOPK_HOME's data belongs to: up.sh refuses to start another over it (see "the recorded setup").
MODE_FILE="$TOPK_HOME/mode"

info() { printf '%s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

# The command line of a script that takes one optional flag (up.sh --switch, down.sh --purge):
# `read_flag VAR --flag "$@"` sets VAR to true when the flag is given, else false. -h/--help prints the
# calling script's header (its comment lines after #!) and exits; any other argument is an error.
read_flag() {
	local -n flag_given="$1"
	local flag="$2" arg
	shift 2
	flag_given=false
	for arg in "$@"; do
		case "$arg" in
		"$flag") flag_given=true ;;
		-h | --help)
			sed -n '2,/^[^#]/{/^#/p}' "${BASH_SOURCE[1]}" | sed 's/^# \{0,1\}//'
			exit 0
			;;
		*) die "unknown argument '$arg' (try --help)" ;;
		esac
	done
}

is_root() { [[ "$(id -u)" -eq 0 ]]; }

# Runs a command as root: directly when we are root, else through sudo.
as_root() {
	if is_root; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		die "need root to run '$*' and sudo is not installed"
	fi
}

check_port_vars() {
	local name
	for name in TOPK_REDIS_PORT TOPK_PG_PORT TOPK_API_PORT TOPK_INGEST_PORT TOPK_KAFKA_PORT; do
		if ! [[ "${!name}" =~ ^[0-9]{1,5}$ ]] || ((10#${!name} < 1 || 10#${!name} > 65535)); then
			die "$name='${!name}' is not a port number"
		fi
	done
}

# TOPK_REDIS_CLUSTER: 0 (one node) or N >= 3 primaries, whose 2N nodes take the ports TOPK_REDIS_PORT ..
# TOPK_REDIS_PORT + 2N - 1 and each the cluster bus port 10000 above its own.
check_redis_cluster_var() {
	[[ "$TOPK_REDIS_CLUSTER" =~ ^[0-9]{1,3}$ ]] ||
		die "TOPK_REDIS_CLUSTER='$TOPK_REDIS_CLUSTER': use 0 (a single Redis) or the number of primaries (3 or more)"
	TOPK_REDIS_CLUSTER=$((10#$TOPK_REDIS_CLUSTER))
	((TOPK_REDIS_CLUSTER == 0)) && return 0
	((TOPK_REDIS_CLUSTER >= 3)) ||
		die "TOPK_REDIS_CLUSTER=$TOPK_REDIS_CLUSTER: a Redis Cluster needs at least 3 primaries (0 runs a single Redis)"
	local highest=$((10#$TOPK_REDIS_PORT + 2 * TOPK_REDIS_CLUSTER - 1))
	((highest <= 55535)) ||
		die "TOPK_REDIS_CLUSTER=$TOPK_REDIS_CLUSTER from TOPK_REDIS_PORT=$TOPK_REDIS_PORT needs ports up to $highest, whose cluster bus port ($((highest + 10000))) is past 65535; use a TOPK_REDIS_PORT of at most $((55535 - 2 * TOPK_REDIS_CLUSTER + 1))"
}

# The ports of the Redis Cluster nodes, one a line: TOPK_REDIS_PORT and the 2N - 1 after it.
redis_cluster_ports() {
	local i
	for ((i = 0; i < 2 * TOPK_REDIS_CLUSTER; i++)); do
		printf '%s\n' $((10#$TOPK_REDIS_PORT + i))
	done
}

# One field of `CLUSTER INFO` of the node on PORT (empty when it does not answer).
redis_cluster_info() {
	redis-cli -p "$1" cluster info 2>/dev/null | tr -d '\r' | sed -n "s/^$2://p"
}

# The redis-cluster:// URL (topk's form: one node in the authority, the others as `node` parameters) of
# the primaries that serve slots, as the node on PORT sees them.
redis_cluster_url() {
	local port="$1" primaries=() url line sep='?' i
	while read -r line; do
		primaries+=("$line")
	done < <(redis-cli -p "$port" cluster nodes 2>/dev/null | tr -d '\r' |
		awk '$3 ~ /master/ && $3 !~ /fail/ && NF > 8 { split($2, a, "@"); print a[1] }' | sort -t: -k2,2n)
	((${#primaries[@]} > 0)) || return 1
	url="redis-cluster://${primaries[0]}"
	for ((i = 1; i < ${#primaries[@]}; i++)); do
		url+="${sep}node=${primaries[$i]}"
		sep='&'
	done
	printf '%s\n' "$url"
}

# pg_ctl hands its -o options to a shell, and the socket path has a length limit: keep TOPK_HOME plain.
check_home_path() {
	[[ "$TOPK_HOME" != *[[:space:]\'\"\\]* ]] ||
		die "TOPK_HOME='$TOPK_HOME' contains spaces or quotes; pick a plain path"
}

# --- the recorded setup ---------------------------------------------------------------------------
# A Redis of another setup (a single node or a cluster of another size, another partition count) started over
# TOPK_HOME's data would sit empty beside the old history in PostgreSQL: verify would report every window
# different and the views of the minutes not yet in history would never reach it. So up.sh records the setup
# it started in MODE_FILE (`redis=single` or `redis=cluster:<primaries>`, `partitions=<P>`, and
# `rebuild=pending` while a switch's rebuild-redis has not finished) and refuses another.

# The value of KEY in MODE_FILE (empty when absent).
mode_value() {
	[[ -f "$MODE_FILE" ]] || return 0
	sed -n "s/^$1=//p" "$MODE_FILE" | tail -n 1
}

# The Redis setup of TOPK_HOME's data: the recorded one, else what its folders show (a TOPK_HOME from before
# the record: cluster nodes' folders, or a single Redis's files), else nothing (no Redis data yet).
home_redis_mode() {
	local recorded nodes=0 d
	recorded="$(mode_value redis)"
	if [[ -n "$recorded" ]]; then
		printf '%s\n' "$recorded"
		return 0
	fi
	for d in "$REDIS_DIR"/node-*; do
		if [[ -d "$d" ]]; then nodes=$((nodes + 1)); fi
	done
	if ((nodes > 0)); then
		printf 'cluster:%s\n' $((nodes / 2))
	elif [[ -d "$REDIS_DIR" && -n "$(ls -A "$REDIS_DIR" 2>/dev/null)" ]]; then
		printf 'single\n'
	fi
}

# The Redis setup TOPK_REDIS_CLUSTER asks for.
wanted_redis_mode() {
	if ((TOPK_REDIS_CLUSTER == 0)); then printf 'single\n'; else printf 'cluster:%s\n' "$TOPK_REDIS_CLUSTER"; fi
}

# A Redis setup in words: "a single Redis", "a Redis Cluster of 3 primaries".
describe_redis_mode() {
	case "$1" in
	single) printf 'a single Redis\n' ;;
	cluster:*) printf 'a Redis Cluster of %s primaries\n' "${1#cluster:}" ;;
	*) printf '%s\n' "$1" ;;
	esac
}

# The settings that select a Redis setup, as a command line prefix: "TOPK_REDIS_CLUSTER=3 ".
redis_mode_settings() {
	case "$1" in
	cluster:*) printf 'TOPK_REDIS_CLUSTER=%s ' "${1#cluster:}" ;;
	*) printf '' ;;
	esac
}

# write_mode REDIS PARTITIONS [rebuild=pending]: records the setup of TOPK_HOME's data.
write_mode() {
	{
		printf '# The setup of the data in this folder, written by scripts/up.sh, which refuses to start another\n'
		printf '# over it (scripts/up.sh --help says how to switch).\n'
		printf 'redis=%s\n' "$1"
		if [[ -n "$2" ]]; then printf 'partitions=%s\n' "$2"; fi
		if [[ -n "${3:-}" ]]; then printf '%s\n' "$3"; fi
	} >"$MODE_FILE.tmp"
	mv -f "$MODE_FILE.tmp" "$MODE_FILE"
}

# --- PostgreSQL programs ----------------------------------------------------------------------

# Directory of the newest installed PostgreSQL's programs. Debian keeps initdb, postgres and pg_ctl in
# /usr/lib/postgresql/<version>/bin, off PATH; elsewhere they are usually on PATH. Prints nothing if absent.
pg_bindir() {
	local dirs=() d best=""
	for d in /usr/lib/postgresql/*/bin; do
		[[ -x "$d/initdb" && -x "$d/postgres" && -x "$d/pg_ctl" ]] && dirs+=("${d%/bin}")
	done
	if ((${#dirs[@]} > 0)); then
		# Version-aware sort, so 16 beats 9.6.
		best="$(printf '%s\n' "${dirs[@]}" | sort -V | tail -n 1)"
		printf '%s\n' "$best/bin"
		return 0
	fi
	d="$(command -v pg_ctl 2>/dev/null || true)"
	if [[ -n "$d" ]]; then
		d="$(dirname "$d")"
		[[ -x "$d/initdb" && -x "$d/postgres" ]] && printf '%s\n' "$d"
	fi
	return 0
}

# Path of one PostgreSQL program (initdb, pg_ctl, postgres, psql, ...).
pg_bin() {
	local dir
	dir="$(pg_bindir)"
	if [[ -n "$dir" && -x "$dir/$1" ]]; then
		printf '%s\n' "$dir/$1"
	elif command -v "$1" >/dev/null 2>&1; then
		command -v "$1"
	else
		die "PostgreSQL program '$1' not found; run scripts/up.sh (it installs PostgreSQL)"
	fi
}

# PostgreSQL refuses to run as root, so as root its server programs run as the 'postgres' user that the
# Debian package creates; as anyone else they run as that user. cd / so that a working directory the
# postgres user cannot read does not make them fail.
pg_user() {
	if is_root; then printf 'postgres\n'; else id -un; fi
}

pg_run() {
	local prog
	prog="$(pg_bin "$1")"
	shift
	if is_root; then
		(cd / && runuser -u postgres -- "$prog" "$@")
	else
		(cd / && "$prog" "$@")
	fi
}

# Gives a directory (recursively) to the user that runs PostgreSQL, when that is not us.
pg_own() {
	if is_root; then
		id postgres >/dev/null 2>&1 || die "user 'postgres' does not exist; is PostgreSQL installed?"
		chown -R postgres:postgres "$@"
	fi
}

# --- packages -----------------------------------------------------------------------------------

# Installs what the scripts and the tests need, and only what is missing, so it is cheap to repeat.
# Rust is not installed here: a toolchain comes from rustup, which the user runs themselves.
ensure_packages() {
	local cargo_home="${CARGO_HOME:-$HOME/.cargo}"
	# rustup puts cargo there but only login shells add it to PATH.
	if ! command -v cargo >/dev/null 2>&1 && [[ -x "$cargo_home/bin/cargo" ]]; then
		PATH="$cargo_home/bin:$PATH"
		export PATH
	fi
	if ! command -v cargo >/dev/null 2>&1; then
		cat >&2 <<'EOF'
error: cargo (Rust) is not installed.
Install the Rust toolchain with rustup (see https://rustup.rs), open a new shell (or run
`. "$HOME/.cargo/env"`), then run this script again.
EOF
		exit 1
	fi

	local missing=()
	command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 || missing+=(redis-server)
	[[ -n "$(pg_bindir)" ]] || missing+=(postgresql)
	command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
	command -v curl >/dev/null 2>&1 || missing+=(curl)
	command -v python3 >/dev/null 2>&1 || missing+=(python3)
	# Rust needs a C linker; crates that bind OpenSSL also need pkg-config and its headers.
	command -v cc >/dev/null 2>&1 || missing+=(build-essential)
	if grep -qs '^name = "openssl-sys"' "$TOPK_ROOT/Cargo.lock"; then
		command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
		[[ -e /usr/include/openssl/ssl.h ]] || missing+=(libssl-dev)
	fi
	# The Kafka client builds its own librdkafka (C and C++) with its configure script and make, with
	# OpenSSL (openssl-sys, above); its TLS test puts socat in front of the broker.
	if grep -qs '^name = "rdkafka-sys"' "$TOPK_ROOT/Cargo.lock"; then
		command -v make >/dev/null 2>&1 || missing+=(make)
		command -v c++ >/dev/null 2>&1 || missing+=(g++)
		command -v socat >/dev/null 2>&1 || missing+=(socat)
	fi
	((${#missing[@]} > 0)) || return 0

	command -v apt-get >/dev/null 2>&1 ||
		die "missing: ${missing[*]}; this script installs them only with apt-get (Debian/Ubuntu): install them yourself"
	info "installing: ${missing[*]}"
	local pkg
	for pkg in "${missing[@]}"; do
		if [[ "$pkg" == postgresql ]]; then
			# Debian's package creates and starts a 'main' cluster on 5432, which would take the port of
			# ours; we run our own cluster in TOPK_HOME, so tell postgresql-common not to create one.
			as_root mkdir -p /etc/postgresql-common/createcluster.d
			printf '%s\n' '# topk runs its own cluster (scripts/up.sh)' 'create_main_cluster = false' |
				as_root tee /etc/postgresql-common/createcluster.d/topk.conf >/dev/null
		fi
	done
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
	for pkg in "${missing[@]}"; do
		if [[ "$pkg" == redis-server ]] && command -v systemctl >/dev/null 2>&1 &&
			systemctl is-active --quiet redis-server 2>/dev/null; then
			# We installed the package only for its programs; its system-wide Redis would hold port 6379.
			info "stopping and disabling the system redis-server service that the package just started"
			as_root systemctl disable --now redis-server || warn "could not stop the system redis-server"
		fi
	done
	[[ -n "$(pg_bindir)" ]] || die "PostgreSQL was installed but initdb/postgres/pg_ctl were not found"
}

# --- processes ----------------------------------------------------------------------------------

# True when something accepts TCP connections on 127.0.0.1:PORT (bash's /dev/tcp: no extra tool).
port_open() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# wait_port PORT NAME [SECONDS]: waits until NAME listens on PORT, or fails.
wait_port() {
	local port="$1" name="$2" timeout="${3:-30}" i
	for ((i = 0; i < timeout * 10; i++)); do
		port_open "$port" && return 0
		sleep 0.1
	done
	die "$name did not listen on port $port within ${timeout} s"
}

# Prints the pid recorded in a pid file if that process is alive and its command line contains EXPECT,
# so that a stale pid file whose number was reused never makes us skip a start or kill a stranger.
live_pid() {
	local file="$1" expect="$2" pid cmdline
	[[ -s "$file" ]] || return 1
	pid="$(head -n 1 "$file" | tr -dc '0-9')"
	[[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
	if [[ -r "/proc/$pid/cmdline" ]]; then
		cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline")"
		[[ "$cmdline" == *"$expect"* ]] || return 1
	fi
	printf '%s\n' "$pid"
}

# stop_pid FILE NAME EXPECT: SIGTERM (graceful: services drain, Redis saves), SIGKILL after 20 s.
stop_pid() {
	local file="$1" name="$2" expect="$3" pid i
	if ! pid="$(live_pid "$file" "$expect")"; then
		rm -f "$file"
		return 0
	fi
	info "stopping $name (pid $pid)"
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 200; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		warn "$name did not stop within 20 s; sending SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$file"
}

# --- Kafka broker (tansu) -----------------------------------------------------------------------

# tansu (a Kafka-compatible broker written in Rust) serves the Kafka source's tests and the local stack. It
# is built once from its crate into a cache that every clone and worktree share, in a folder named after its
# version and features (testkit/src/kafka.rs looks there too): `dynostore` gives the memory storage engine
# (`memory://`, most tests), `libsql` the SQLite one (`sqlite://`: a broker that keeps its topics, records
# and offsets across a restart, for the restart test and the local stack).
TANSU_VERSION="0.6.0"
TANSU_FEATURES="dynostore,libsql"
TANSU_ROOT="${TOPK_TANSU_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/topk}/tansu-$TANSU_VERSION-${TANSU_FEATURES//,/-}"

# Prints the tansu program to run: TOPK_TANSU when set, else one on PATH, else the cached build. Fails
# (printing nothing) when there is none.
tansu_bin() {
	if [[ -n "${TOPK_TANSU:-}" ]]; then
		[[ -x "$TOPK_TANSU" ]] || return 1
		printf '%s\n' "$TOPK_TANSU"
	elif command -v tansu >/dev/null 2>&1; then
		command -v tansu
	elif [[ -x "$TANSU_ROOT/bin/tansu" ]]; then
		printf '%s\n' "$TANSU_ROOT/bin/tansu"
	else
		return 1
	fi
}

# Builds tansu into TANSU_ROOT/bin unless one is found (tansu_bin), and exports TOPK_TANSU, which the tests
# read. The build takes about 35 minutes on 2 shared cores and ~3 GB of temporary space, removed after.
ensure_tansu() {
	local bin
	if bin="$(tansu_bin)"; then
		TOPK_TANSU="$bin"
		export TOPK_TANSU
		return 0
	fi
	command -v cargo >/dev/null 2>&1 || ensure_packages
	command -v cc >/dev/null 2>&1 || ensure_packages
	info "building tansu $TANSU_VERSION (the Kafka broker of the tests) once into $TANSU_ROOT/bin: about 35 minutes on 2 cores"
	local target start=$SECONDS
	mkdir -p "$TANSU_ROOT"
	target="$(mktemp -d "${TMPDIR:-/tmp}/topk-tansu-build.XXXXXX")"
	if ! nice -n 19 cargo install tansu --version "$TANSU_VERSION" --locked --features "$TANSU_FEATURES" \
		--root "$TANSU_ROOT" --target-dir "$target"; then
		rm -rf "$target"
		die "building tansu failed (see above); TOPK_TANSU can name a tansu binary built elsewhere"
	fi
	rm -rf "$target"
	info "tansu built in $(((SECONDS - start) / 60)) min: $TANSU_ROOT/bin/tansu"
	TOPK_TANSU="$TANSU_ROOT/bin/tansu"
	export TOPK_TANSU
}

# start_tansu PORT DIR: a broker on 127.0.0.1:PORT that keeps its topics, records and committed offsets in
# DIR/tansu.db (SQLite), so that they survive a restart; its log DIR/tansu.log (appended to) and pid file
# DIR/tansu.pid. Does nothing when that broker runs already.
start_tansu() {
	local port="$1" dir="$2" bin
	bin="$(tansu_bin)" || die "tansu is not installed: run ensure_tansu (source scripts/lib.sh first)"
	mkdir -p "$dir"
	if live_pid "$dir/tansu.pid" tansu >/dev/null; then
		info "tansu already running (pid $(live_pid "$dir/tansu.pid" tansu))"
		return 0
	fi
	port_open "$port" && die "port $port is taken; tansu cannot listen there"
	info "starting tansu on 127.0.0.1:$port (storage $dir/tansu.db)"
	# The listener and the address told to clients must both be loopback and this port: clients connect to
	# the advertised one after the first metadata request.
	(cd "$dir" && exec "$bin" broker --listener-url "tcp://127.0.0.1:$port" \
		--advertised-listener-url "tcp://127.0.0.1:$port" --storage-engine sqlite://tansu.db \
		>>"$dir/tansu.log" 2>&1) &
	printf '%s\n' "$!" >"$dir/tansu.pid"
	wait_port "$port" tansu 30
}

# tansu_topic PORT NAME PARTITIONS: creates a topic on the broker at PORT unless it has it already (tansu
# creates none by itself).
tansu_topic() {
	local port="$1" name="$2" partitions="$3" bin topics
	bin="$(tansu_bin)" || die "tansu is not installed: run ensure_tansu (source scripts/lib.sh first)"
	topics="$("$bin" topic list --broker "tcp://127.0.0.1:$port")" ||
		die "could not list the topics of tansu at port $port"
	if grep -Fq "\"name\":\"$name\"" <<<"$topics"; then
		info "topic $name: already there"
		return 0
	fi
	"$bin" topic create "$name" --broker "tcp://127.0.0.1:$port" --partitions "$partitions" >/dev/null ||
		die "could not create topic $name on tansu at port $port"
}

# stop_tansu DIR: stops the broker that start_tansu started with DIR.
stop_tansu() {
	stop_pid "$1/tansu.pid" tansu tansu
}
