#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, the deployment files, the docs' links, every cargo
# test, the local stack's scripts, the OpenAPI fuzzing, then the interface contract check when
# ../shared/contract/check exists. The tests start their own private redis-server, PostgreSQL and
# Kafka-compatible broker (tansu) on free ports (they do not use what scripts/up.sh runs, and
# scripts/check-up.sh runs up.sh on a TOPK_HOME and ports of its own), so only the programs must be here;
# tansu is built once into a cache (about 35 minutes on 2 cores, the first time on a machine only).
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_packages
cd "$TOPK_ROOT"

suite_start=$SECONDS
timings=()

# stage NAME WHAT COMMAND...: runs one stage, prints its time, and stops the suite on the first failure.
stage() {
	local name="$1" what="$2" start=$SECONDS
	shift 2
	info ""
	info "==> $name: $what"
	if "$@"; then
		timings+=("$name $((SECONDS - start))s")
		info "<== $name: ok in $((SECONDS - start)) s"
	else
		info ""
		info "test.sh: FAILED at stage '$name' after $((SECONDS - start)) s (suite ran $((SECONDS - suite_start)) s)"
		exit 1
	fi
}

# Keeps cargo test's output (shown live as well) to add up its counts at the end.
test_log="$(mktemp)"
trap 'rm -f "$test_log"' EXIT
cargo_test() {
	cargo test --workspace 2>&1 | tee "$test_log"
}

run_contract() {
	# The check builds debug binaries too, so it reuses what cargo test just compiled.
	TOPK_CONTRACT_PROFILE=debug python3 ../shared/contract/check
}

stage fmt "cargo fmt --all -- --check" cargo fmt --all -- --check
stage clippy "cargo clippy --workspace --all-targets -- -D warnings" \
	cargo clippy --workspace --all-targets -- -D warnings
stage deploy "scripts/check-deploy.sh: alert rules, scrape config, dashboard, Kubernetes manifests and compose file checked offline" "$TOPK_ROOT/scripts/check-deploy.sh"
stage links "scripts/check-links.sh: every relative link of every Markdown file resolves (file and #anchor)" \
	"$TOPK_ROOT/scripts/check-links.sh"
stage broker "ensure_tansu: the Kafka-compatible broker of the Kafka source's tests (built once, then cached)" \
	ensure_tansu
stage test "cargo test --workspace" cargo_test
stage scripts "scripts/check-up.sh: up.sh and down.sh on a private TOPK_HOME, a change of setup refused, --switch" \
	"$TOPK_ROOT/scripts/check-up.sh"
stage schemathesis "scripts/schemathesis.sh: both services fuzzed from their OpenAPI documents, no 5xx" \
	"$TOPK_ROOT/scripts/schemathesis.sh"
if [[ -f ../shared/contract/check ]]; then
	stage contract "TOPK_CONTRACT_PROFILE=debug python3 ../shared/contract/check" run_contract
else
	info ""
	info "==> contract: skipped (../shared/contract/check is not there)"
	timings+=("contract skipped")
fi

# One line in the form test runners close with, summed over every cargo test binary and doctest run.
counts="$(awk '/^test result:/ {
	for (i = 2; i <= NF; i++) {
		if ($i ~ /^passed;?$/) p += $(i - 1)
		if ($i ~ /^failed;?$/) f += $(i - 1)
		if ($i ~ /^ignored;?$/) s += $(i - 1)
	}
} END { printf "%d passed, %d failed, %d skipped", p, f, s }' "$test_log")"

summary="$(printf '%s, ' "${timings[@]}")"
info ""
info "test.sh: all stages passed in $((SECONDS - suite_start)) s (${summary%, })"
info "test.sh: $counts"
