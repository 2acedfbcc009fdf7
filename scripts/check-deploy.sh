#!/usr/bin/env bash
# Checks the deployment files offline, without Docker or a cluster:
#   deploy/prometheus   promtool check rules, promtool test rules (alerts.test.yml), promtool check config
#   deploy/grafana      the dashboard parses, its panels are well formed, every query names known metrics
#   deploy/kubernetes   kubernetes-validate --strict against TOPK_K8S_VERSION, kustomization lists every
#                       manifest, each workload has probes, resources, a locked-down securityContext
#   docker-compose.yml  parses, one image build, pinned images, .env read by every topk service, healthchecks,
#                       ports published on TOPK_PUBLISH_ADDR (127.0.0.1), the token required, monitoring profile
#   Dockerfile          copies every workspace member's Cargo.toml (and build.rs) for its dependency layer
# Every topk_* name in deploy/ must be one of the metrics the services export (KNOWN_METRICS below; a
# histogram's _bucket, _sum and _count series count as its name).
#
# What it needs is installed when missing, once: promtool (Debian/Ubuntu package prometheus, with apt-get)
# and a Python virtual environment with kubernetes-validate and PyYAML (pip), kept in TOPK_DEPLOY_VENV
# (default ${XDG_CACHE_HOME:-~/.cache}/topk/venv) and reused by later runs.
#
# scripts/check-deploy.sh --print-metrics prints the topk metric names the deploy files use, one a line.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VENV="${TOPK_DEPLOY_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/topk/venv}"
# Pinned, so a run validates against the same schemas as the last one; the schemas of every Kubernetes
# release up to its own come with it.
PY_REQUIREMENTS=("kubernetes-validate==1.37.0" "PyYAML>=6,<7")
# The oldest Kubernetes release the manifests must work on.
K8S_VERSION="${TOPK_K8S_VERSION:-1.30.0}"

# The metrics the services export: name and type. Nothing else that starts with topk_ may appear in deploy/.
KNOWN_METRICS="
topk_build_info gauge
topk_ingest_views_accepted_total counter
topk_ingest_batches_accepted_total counter
topk_ingest_batches_rejected_total counter
topk_ingest_idempotent_replays_total counter
topk_ingest_request_duration_seconds histogram
topk_ingest_requests_total counter
topk_views_applied_total counter
topk_log_entries_applied_total counter
topk_apply_batch_seconds histogram
topk_log_backlog_entries gauge
topk_freshness_seconds gauge
topk_kafka_records_total counter
topk_kafka_partitions_gone_back gauge
topk_retire_lag_seconds gauge
topk_slices_retired_total counter
topk_log_entries_trimmed_total counter
topk_api_request_duration_seconds histogram
topk_api_requests_total counter
topk_ranking_age_seconds gauge
topk_ranking_scans_total counter
topk_redis_errors_total counter
topk_snapshot_lag_seconds gauge
topk_snapshot_runs_total counter
topk_snapshot_duration_seconds histogram
topk_snapshot_leader gauge
topk_http_requests_refused_total counter
"

cd "$TOPK_ROOT"

if [[ "${1:-}" == --print-metrics ]]; then
	grep -rhoE '\btopk_[a-z_]+' deploy | sed -E 's/_(bucket|sum|count)$//' | sort -u
	exit 0
elif [[ $# -gt 0 ]]; then
	die "usage: scripts/check-deploy.sh [--print-metrics]"
fi

# apt_install PACKAGE...: installs with apt-get (Debian/Ubuntu), as root or through sudo.
apt_updated=0
apt_install() {
	command -v apt-get >/dev/null 2>&1 ||
		die "missing: $*; this script installs them only with apt-get (Debian/Ubuntu): install them yourself"
	info "installing: $*"
	if ((!apt_updated)); then
		as_root env DEBIAN_FRONTEND=noninteractive apt-get update
		apt_updated=1
	fi
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
}

ensure_promtool() {
	command -v promtool >/dev/null 2>&1 && return 0
	# Debian and Ubuntu ship promtool in the prometheus package.
	apt_install prometheus
	if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
		# We installed the package only for promtool; its system-wide server would hold port 9090.
		info "stopping and disabling the system prometheus service that the package just started"
		as_root systemctl disable --now prometheus || warn "could not stop the system prometheus"
	fi
	command -v promtool >/dev/null 2>&1 || die "the prometheus package was installed but promtool is not on PATH"
}

# The virtual environment, (re)filled when it is missing, broken, or was made for other requirements.
ensure_venv() {
	local stamp="$VENV/.topk-check-deploy" want
	want="$(printf '%s\n' "${PY_REQUIREMENTS[@]}")"
	if [[ -x "$VENV/bin/python" && -x "$VENV/bin/kubernetes-validate" && -f "$stamp" ]] &&
		[[ "$(cat "$stamp")" == "$want" ]] && "$VENV/bin/python" -c 'import yaml, kubernetes_validate' 2>/dev/null; then
		return 0
	fi
	command -v python3 >/dev/null 2>&1 || apt_install python3 python3-venv
	if ! "$VENV/bin/python" -c '' 2>/dev/null; then
		info "creating a Python virtual environment in $VENV"
		rm -rf "$VENV"
		mkdir -p "$(dirname "$VENV")"
		if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
			# Debian and Ubuntu ship venv's pip bootstrap (ensurepip) in a package of its own.
			rm -rf "$VENV"
			apt_install python3-venv
			python3 -m venv "$VENV"
		fi
	fi
	info "installing into $VENV: ${PY_REQUIREMENTS[*]}"
	"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PY_REQUIREMENTS[@]}"
	printf '%s\n' "$want" >"$stamp"
}

ensure_promtool
ensure_venv

info "promtool: alert rules, their unit tests, scrape configuration"
promtool check rules deploy/prometheus/alerts.yml
promtool test rules deploy/prometheus/alerts.test.yml
promtool check config deploy/prometheus/prometheus.yml

info "kubernetes-validate --strict (Kubernetes $K8S_VERSION): deploy/kubernetes"
manifests=()
for f in deploy/kubernetes/*.yaml; do
	# kustomize's own file has no Kubernetes schema; kubectl kustomize checks it below when kubectl is here.
	[[ "$(basename "$f")" == kustomization.yaml ]] || manifests+=("$f")
done
"$VENV/bin/kubernetes-validate" --strict --quiet -k "$K8S_VERSION" "${manifests[@]}"
if command -v kubectl >/dev/null 2>&1; then
	rendered="$(mktemp)"
	trap 'rm -f "$rendered"' EXIT
	kubectl kustomize deploy/kubernetes >"$rendered"
	"$VENV/bin/kubernetes-validate" --strict --quiet -k "$K8S_VERSION" "$rendered"
	info "kubectl kustomize deploy/kubernetes: renders and validates"
fi

info "dashboard, alert rules, manifests and docker-compose.yml: structure and metric names"
TOPK_KNOWN_METRICS="$KNOWN_METRICS" "$VENV/bin/python" - <<'PY'
import json
import os
import re
import sys
from pathlib import Path

import yaml

errors = []


def fail(where, message):
    errors.append(f"{where}: {message}")


known = {}
for line in os.environ["TOPK_KNOWN_METRICS"].split("\n"):
    if line.strip():
        name, kind = line.split()
        known[name] = kind


def known_metric(token):
    """A known metric, or a histogram's _bucket, _sum or _count series."""
    if token in known:
        return True
    base = re.sub(r"_(bucket|sum|count)$", "", token)
    return base != token and known.get(base) == "histogram"


# --- every topk_ token under deploy/ ------------------------------------------------------------
deploy_files = sorted(p for p in Path("deploy").rglob("*") if p.suffix in (".json", ".yml", ".yaml"))
for path in deploy_files:
    for token in sorted(set(re.findall(r"\btopk_[a-z_]+", path.read_text()))):
        if not known_metric(token):
            fail(path, f"{token} is not a metric topk exports")

# --- PromQL: the metric names an expression selects ----------------------------------------------
# Not a parser: it removes strings, label matchers, ranges, grouping clauses, functions and keywords, and
# what is left that looks like a name is a metric name.
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
            "offset", "inf", "nan"}
OTHER_METRICS = {"up"}


def metric_names(expr):
    e = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    e = re.sub(r"\{[^}]*\}", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    e = re.sub(r"\$\{?\w+\}?", "", e)
    e = re.sub(r"\b[a-zA-Z_]\w*\s*\(", "(", e)
    names = set(re.findall(r"\b[a-zA-Z_:][\w:]*", e)) - KEYWORDS
    return {n for n in names if not re.fullmatch(r"\d+[smhdwy]?|e\d+", n)}


def check_expr(where, expr):
    if not isinstance(expr, str) or not expr.strip():
        fail(where, "an empty expression")
        return
    names = metric_names(expr)
    if not names:
        fail(where, f"selects no metric: {expr!r}")
    for name in sorted(names):
        if not (known_metric(name) or name in OTHER_METRICS):
            fail(where, f"{name!r} is not a known metric (in {' '.join(expr.split())!r})")


# --- Grafana dashboard ---------------------------------------------------------------------------
dash_path = Path("deploy/grafana/topk.json")
try:
    dash = json.loads(dash_path.read_text())
except ValueError as e:
    fail(dash_path, f"not JSON: {e}")
    dash = None
if dash is not None:
    if not isinstance(dash.get("schemaVersion"), int) or dash["schemaVersion"] < 36:
        fail(dash_path, "schemaVersion missing or older than 36")
    if not dash.get("uid") or not dash.get("title"):
        fail(dash_path, "needs a uid and a title")
    variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    inputs = {i.get("name") for i in dash.get("__inputs", [])}
    ds_refs = set()
    if variables.get("datasource", {}).get("type") == "datasource":
        ds_refs.add("${datasource}")
    if "DS_PROMETHEUS" in inputs:
        ds_refs.add("${DS_PROMETHEUS}")
    if not ds_refs:
        fail(dash_path, "needs a `datasource` template variable or a DS_PROMETHEUS input")

    def all_panels(panels):
        for p in panels:
            yield p
            yield from all_panels(p.get("panels", []))

    ids = set()
    rows = 0
    for p in all_panels(dash.get("panels", [])):
        where = f"{dash_path}: panel {p.get('title')!r}"
        if p.get("id") in ids:
            fail(where, f"id {p.get('id')} used twice")
        ids.add(p.get("id"))
        if not all(k in p.get("gridPos", {}) for k in ("h", "w", "x", "y")):
            fail(where, "gridPos needs h, w, x and y")
        if p.get("type") == "row":
            rows += 1
            continue
        if (p.get("datasource") or {}).get("uid") not in ds_refs:
            fail(where, f"datasource must be one of {sorted(ds_refs)}")
        if not p.get("targets"):
            fail(where, "has no queries")
        for t in p.get("targets", []):
            check_expr(f"{where} query {t.get('refId')}", t.get("expr"))
    if rows < 6:
        fail(dash_path, f"{rows} rows; expected ingest, workers, retirer, API, Redis and snapshotter rows")
    used = set()
    for p in all_panels(dash.get("panels", [])):
        for t in p.get("targets", []):
            used |= {re.sub(r"_(bucket|sum|count)$", "", n) for n in metric_names(t.get("expr") or "")}
    missing = sorted(set(known) - used)
    if missing:
        fail(dash_path, f"no panel shows {', '.join(missing)}")

# --- alert rules: what promtool does not require --------------------------------------------------
alerts_path = Path("deploy/prometheus/alerts.yml")
for group in yaml.safe_load(alerts_path.read_text()).get("groups", []):
    for rule in group.get("rules", []):
        where = f"{alerts_path}: {rule.get('alert') or rule.get('record')}"
        check_expr(where, rule.get("expr"))
        if "alert" not in rule:
            continue
        if not rule.get("for"):
            fail(where, "needs `for:` (a single bad scrape must not page)")
        if rule.get("labels", {}).get("severity") not in ("critical", "warning"):
            fail(where, "needs labels.severity: critical or warning")
        for key in ("summary", "description"):
            if not rule.get("annotations", {}).get(key):
                fail(where, f"needs annotations.{key}")

# --- Kubernetes manifests ------------------------------------------------------------------------
k8s = Path("deploy/kubernetes")
kustomization = yaml.safe_load((k8s / "kustomization.yaml").read_text())
listed = set(kustomization.get("resources", []))
expected = {p.name for p in k8s.glob("*.yaml") if p.name != "kustomization.yaml" and ".example." not in p.name}
for name in sorted(expected - listed):
    fail(k8s / "kustomization.yaml", f"does not list {name}")
for name in sorted(n for n in listed - expected if ".example." not in n):
    fail(k8s / "kustomization.yaml", f"lists {name}, which is not there")
for name in sorted(n for n in listed if ".example." in n):
    fail(k8s / "kustomization.yaml", f"lists {name}: an example must never be applied as it is")

IMAGE = re.compile(r"^[\w./-]+:(\d+\.\d+\.\d+)$")
for path in sorted(k8s.glob("*.yaml")):
    for doc in yaml.safe_load_all(path.read_text()):
        if not doc or doc.get("kind") not in ("Deployment", "Job"):
            continue
        kind, name = doc["kind"], doc["metadata"]["name"]
        where = f"{path}: {kind} {name}"
        pod = doc["spec"]["template"]
        spec = pod["spec"]
        if spec.get("securityContext", {}).get("runAsNonRoot") is not True:
            fail(where, "pod securityContext needs runAsNonRoot: true")
        if spec.get("automountServiceAccountToken") is not False:
            fail(where, "automountServiceAccountToken: false (the services never call the Kubernetes API)")
        for c in spec["containers"]:
            cw = f"{where} container {c['name']}"
            if not IMAGE.match(c.get("image", "")):
                fail(cw, f"image {c.get('image')!r} is not pinned to a version")
            sc = c.get("securityContext", {})
            if sc.get("allowPrivilegeEscalation") is not False or sc.get("readOnlyRootFilesystem") is not True:
                fail(cw, "securityContext needs allowPrivilegeEscalation: false, readOnlyRootFilesystem: true")
            if sc.get("capabilities", {}).get("drop") != ["ALL"]:
                fail(cw, "securityContext needs capabilities.drop: [ALL]")
            res = c.get("resources", {})
            if not res.get("requests") or not res.get("limits"):
                fail(cw, "needs resources.requests and resources.limits")
            if kind != "Deployment":
                continue
            ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
            for probe, path_ in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                get = c.get(probe, {}).get("httpGet", {})
                if get.get("path") != path_:
                    fail(cw, f"{probe} must GET {path_}")
                elif ports.get(get.get("port"), get.get("port")) not in ports.values():
                    fail(cw, f"{probe} port {get.get('port')!r} is not a container port")
            ann = pod.get("metadata", {}).get("annotations", {})
            if ann.get("prometheus.io/scrape") != "true" or ann.get("prometheus.io/path") != "/metrics":
                fail(where, "needs the prometheus.io/scrape and prometheus.io/path annotations")
            elif int(ann.get("prometheus.io/port", 0)) not in ports.values():
                fail(where, "prometheus.io/port is not a container port")
            env = {e["name"]: e for e in c.get("env", [])}
            role = env.get("TOPK_INGEST_ROLE", {}).get("value")
            if role in ("worker", "kafka") and "TOPK_ADMIN_ADDR" not in env:
                fail(cw, f"the {role} role needs TOPK_ADMIN_ADDR (probes and scraping): it serves no other HTTP")
            if role == "worker":
                ref = env.get("TOPK_CONSUMER_NAME", {}).get("valueFrom", {}).get("fieldRef", {})
                if ref.get("fieldPath") != "metadata.name":
                    fail(cw, "TOPK_CONSUMER_NAME must come from the pod's name (unique per pod)")
        if kind == "Deployment":
            if not spec.get("terminationGracePeriodSeconds"):
                fail(where, "needs terminationGracePeriodSeconds (the drain)")
            if "run" in spec["containers"][0].get("command", []):
                if doc["spec"].get("replicas") != 1 or doc["spec"].get("strategy", {}).get("type") != "Recreate":
                    fail(where, "the snapshotter runs one replica with strategy Recreate")

# --- docker-compose.yml --------------------------------------------------------------------------
compose_path = Path("docker-compose.yml")
compose = yaml.safe_load(compose_path.read_text())
services = compose.get("services", {})
PUBLISH = "${TOPK_PUBLISH_ADDR:-127.0.0.1}:"
# An exact version: major.minor.patch, or major.minor for PostgreSQL (whose releases have two numbers).
PINNED = re.compile(r"^(postgres:\d+\.\d+|[\w./-]+:v?\d+\.\d+\.\d+)(-[\w.]+)?$")
topk = {n: s for n, s in services.items() if str(s.get("image", "")).startswith("topk:")}
builders = [n for n, s in services.items() if "build" in s]
if len(builders) != 1 or builders[0] not in topk:
    fail(compose_path, f"exactly one topk service builds the image, the others name it (build: in {builders})")
if len({s["image"] for s in topk.values()}) != 1:
    fail(compose_path, "every topk service must run the same image")
for name, s in services.items():
    where = f"{compose_path}: service {name}"
    image = str(s.get("image", ""))
    if name not in topk and not PINNED.match(image):
        fail(where, f"image {image!r} is not pinned to an exact version")
    for port in s.get("ports", []):
        if not str(port).startswith(PUBLISH):
            fail(where, f"port {port!r} must be published on {PUBLISH}...")
for name, s in topk.items():
    where = f"{compose_path}: service {name}"
    if {"path": ".env", "required": False} not in (s.get("env_file") or []):
        fail(where, "needs env_file: [{path: .env, required: false}]")
    env = s.get("environment") or {}
    for var in ("TOPK_REDIS_URL", "TOPK_DATABASE_URL"):
        if var not in env:
            fail(where, f"environment must set {var} (the compose service, winning over .env)")
    one_shot = s.get("restart") == "on-failure"
    if one_shot:
        continue
    test = " ".join(s.get("healthcheck", {}).get("test", []))
    port = re.search(r"127\.0\.0\.1:(\d+)/readyz", test)
    if "curl" not in test or not port:
        fail(where, "needs a healthcheck: curl -fsS http://127.0.0.1:PORT/readyz")
        continue
    listens = {str(v).rsplit(":", 1)[-1]: k for k, v in env.items()
               if k in ("TOPK_API_ADDR", "TOPK_INGEST_ADDR", "TOPK_ADMIN_ADDR")}
    if port.group(1) not in listens:
        fail(where, f"the healthcheck's port {port.group(1)} is none of its addresses {listens}")
    command = s.get("command") or []
    if (command[-1:] == ["run"] or env.get("TOPK_INGEST_ROLE") == "worker") and "TOPK_ADMIN_ADDR" not in env:
        fail(where, "a worker-like service needs TOPK_ADMIN_ADDR (health and metrics)")
ingest_token = str((services.get("ingest", {}).get("environment") or {}).get("TOPK_INGEST_TOKEN", ""))
if not ingest_token.startswith("${TOPK_INGEST_TOKEN:?"):
    fail(compose_path, "ingest must require TOPK_INGEST_TOKEN (${TOPK_INGEST_TOKEN:?...})")
for name, folder in (("prometheus", "deploy/prometheus"), ("grafana", "deploy/grafana")):
    s = services.get(name)
    if not s or s.get("profiles") != ["monitoring"]:
        fail(compose_path, f"the monitoring profile needs a service {name}")
        continue
    mounts = [str(v).split(":")[0] for v in s.get("volumes", [])]
    if not any(m.startswith("./" + folder) for m in mounts):
        fail(compose_path, f"{name} must mount ./{folder}")
    for m in mounts:
        if m.startswith("./") and not Path(m).exists():
            fail(compose_path, f"{name} mounts {m}, which does not exist")

# --- Dockerfile: the dependency layer needs every workspace member's manifest -----------------------
dockerfile = Path("Dockerfile").read_text()
members = re.search(r"^members\s*=\s*\[([^\]]*)\]", Path("Cargo.toml").read_text(), re.M)
for member in re.findall(r'"([^"]+)"', members.group(1) if members else ""):
    if not re.search(rf"^COPY {re.escape(member)}/Cargo\.toml\b", dockerfile, re.M):
        fail("Dockerfile", f"workspace member {member}: no `COPY {member}/Cargo.toml` (and stub sources) for the "
             "dependency layer")
    if Path(member, "build.rs").exists() and f"{member}/build.rs" not in dockerfile:
        fail("Dockerfile", f"workspace member {member} has a build.rs the dependency layer does not copy")

if errors:
    print("\n".join(f"error: {e}" for e in errors), file=sys.stderr)
    sys.exit(1)
print(f"ok: {len(deploy_files)} deploy files, {len(topk)} topk services in docker-compose.yml")
PY

info "check-deploy: all deployment files pass"
