#!/usr/bin/env bash
# bench/reconcile.sh: the airgate controller on one Git repository of N
# objects (Deployments, Services and ConfigMaps, a third each, over five
# namespaces), alone on the local perimeter's apiserver, measuring:
#
#   (1) first deploy: App created -> Ready (every object applied, every
#       Deployment available); update: a commit changing every ConfigMap and
#       every Deployment (a rollout) -> Ready at that commit, the App asked to
#       look at Git right after the push (annotation airgate.dev/requested-at);
#   (2) steady state: STEADY seconds with nothing changed, INTERVAL between
#       looks at Git: the apiserver requests made by the controller's identity
#       (counted in the apiserver's audit log, impersonated requests included)
#       and the controller's CPU time (from /proc);
#   (3) the controller's peak RSS (VmHWM).
#
# Flux (source-controller + kustomize-controller) is the peer the issue
# names; see BENCHMARKS.md for why it is not in this run.
#
#   SIZES="100 1000" STEADY=600 INTERVAL=1m bench/reconcile.sh
#
# Output: a Markdown table on stdout (and in target/bench/reconcile.md).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

SIZES=${SIZES:-100 1000}
STEADY=${STEADY:-600}
INTERVAL=${INTERVAL:-1m}
NAMESPACES=5

log() { printf 'bench: %s\n' "$*" >&2; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }

dev/tools all >&2
dev/perimeter env >/dev/null 2>&1 || dev/perimeter up >&2
# shellcheck disable=SC1091
. target/perimeter/env
[ -n "${AIRGATE_AUDIT_LOG:-}" ] || die "the perimeter has no audit log; restart it: dev/perimeter down && dev/perimeter up"
cargo build --release --locked -p airgate >&2
airgate=$root/target/release/airgate
kubectl() { "$AIRGATE_KUBECTL" "$@"; }

work=$root/target/bench/reconcile
rm -rf "$work" && mkdir -p "$work"

# gen_repo DIR N PREFIX VERSION: N objects over PREFIX-0..4.
gen_repo() {
  python3 - "$@" <<'PY'
import os, sys
d, n, prefix, version = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
os.makedirs(d, exist_ok=True)
digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
for i in range(n):
    ns = f"{prefix}-{i % 5}"
    kind = i % 3
    name = f"obj-{i}"
    if kind == 0:
        doc = f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {ns}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
        - name: app
          image: registry.internal:5000/bench/app@{digest}
          env: [{{name: VERSION, value: "{version}"}}]
"""
    elif kind == 1:
        doc = f"""apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}}}
spec:
  selector: {{app: obj-{i - 1}}}
  ports: [{{port: 80, targetPort: 8080}}]
"""
    else:
        doc = f"""apiVersion: v1
kind: ConfigMap
metadata: {{name: {name}, namespace: {ns}}}
data: {{version: "{version}"}}
"""
    with open(os.path.join(d, f"{name}.yaml"), "w") as f:
        f.write(doc)
PY
}

# audit_count USER FROM TO: requests by USER on lines FROM..TO-1 of the audit log.
audit_count() {
  python3 - "$AIRGATE_AUDIT_LOG" "$@" <<'PY'
import collections, json, sys
path, user, start, end = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
verbs = collections.Counter()
with open(path) as f:
    for i, line in enumerate(f):
        if i < start:
            continue
        if i >= end:
            break
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if e.get("user", {}).get("username") == user:
            verbs[e.get("verb", "?")] += 1
total = sum(verbs.values())
detail = ", ".join(f"{v} {k}" for k, v in verbs.most_common())
print(f"{total} ({detail})" if total else "0")
PY
}

lines() { wc -l <"$AIRGATE_AUDIT_LOG"; }
cpu_seconds() { awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$1/stat"; }
peak_rss_mib() { awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }

git_() {
  GIT_SSL_CAINFO=$AIRGATE_GIT_CA GIT_ASKPASS=$AIRGATE_GIT_ASKPASS GIT_TERMINAL_PROMPT=0 \
    git -C "$1" -c user.name=Bench -c user.email=bench@perimeter.invalid -c commit.gpgsign=false "${@:2}"
}

# wait_app NS NAME COMMIT TIMEOUT: until the App is Ready at COMMIT.
wait_app() {
  local deadline=$((SECONDS + $4)) ready rev
  while [ $SECONDS -lt $deadline ]; do
    ready=$(kubectl -n "$1" get apps.airgate.dev "$2" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || true)
    rev=$(kubectl -n "$1" get apps.airgate.dev "$2" -o jsonpath='{.status.lastAppliedRevision}' 2>/dev/null || true)
    [ "$ready" = True ] && [ "$rev" = "$3" ] && return 0
    sleep 0.5
  done
  return 1
}

log "installing the App CRD and the controller's RBAC"
"$airgate" install -o "$work/install" 2>/dev/null
kubectl apply --server-side --field-manager=airgate-install -f "$work/install/crd.yaml" \
  -f "$work/install/namespace.yaml" -f "$work/install/rbac.yaml" >/dev/null
kubectl wait --for=condition=Established crd/apps.airgate.dev >/dev/null
controller_user=system:serviceaccount:airgate-system:airgate-controller
ckc=$work/controller.kubeconfig
kubectl config --kubeconfig "$ckc" set-cluster perimeter \
  --server "$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')" \
  --certificate-authority "$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.certificate-authority}')" \
  --embed-certs >/dev/null
kubectl config --kubeconfig "$ckc" set-credentials controller \
  --token "$(kubectl -n airgate-system create token airgate-controller --duration 6h)" >/dev/null
kubectl config --kubeconfig "$ckc" set-context controller --cluster perimeter --user controller >/dev/null
kubectl config --kubeconfig "$ckc" use-context controller >/dev/null

rows=()
for n in $SIZES; do
  run=$(date +%s)
  prefix=b$n-$run
  apps=$prefix-apps
  log "N=$n: namespaces $prefix-0..$((NAMESPACES - 1)), App in $apps"
  {
    for i in $(seq 0 $((NAMESPACES - 1))); do
      printf 'apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n---\n' "$prefix-$i"
      printf 'apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: deployer, namespace: %s}\n' "$prefix-$i"
      printf 'roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: admin}\n'
      printf 'subjects: [{kind: ServiceAccount, name: deployer, namespace: %s}]\n---\n' "$apps"
    done
    printf 'apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n---\n' "$apps"
    printf 'apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: deployer, namespace: %s}\n' "$apps"
  } | kubectl apply --server-side --field-manager=bench -f - >/dev/null
  kubectl -n "$apps" create secret generic git-creds --dry-run=client -o yaml \
    --from-literal=username="$AIRGATE_GIT_USER" --from-file=password="$AIRGATE_GIT_PASSWORD_FILE" \
    --from-file=ca.crt="$AIRGATE_GIT_CA" | kubectl apply --server-side --field-manager=bench -f - >/dev/null

  repo=$work/repo-$n
  gen_repo "$repo" "$n" "$prefix" 1
  git_ "$repo" init --quiet --initial-branch main
  git_ "$repo" add --all
  git_ "$repo" commit --quiet -m "N=$n, version 1"
  git_ "$repo" push --quiet "$AIRGATE_GIT_URL/$prefix.git" HEAD:refs/heads/main
  first=$(git_ "$repo" rev-parse HEAD)

  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$airgate" controller --kubeconfig "$ckc" --namespace "$apps" --lease-namespace airgate-system \
    --lease-name "$prefix" --data-dir "$work/data-$n" --listen "127.0.0.1:$port" \
    2>"$work/controller-$n.log" &
  pid=$!
  sleep 2

  t0=$(now)
  kubectl apply --server-side --field-manager=bench -f - >/dev/null <<YAML
apiVersion: airgate.dev/v1alpha1
kind: App
metadata: {name: bench, namespace: $apps}
spec:
  source:
    url: $AIRGATE_GIT_URL/$prefix.git
    ref: {branch: main}
    secretRef: {name: git-creds}
  interval: $INTERVAL
  timeout: 10m
  serviceAccountName: deployer
  prune: true
YAML
  wait_app "$apps" bench "$first" 900 || die "N=$n: the App did not become Ready (log: $work/controller-$n.log)"
  first_deploy=$(since "$t0")
  log "N=$n: first deploy ${first_deploy}s"

  gen_repo "$repo" "$n" "$prefix" 2
  git_ "$repo" commit --quiet -am "N=$n, version 2"
  git_ "$repo" push --quiet "$AIRGATE_GIT_URL/$prefix.git" HEAD:refs/heads/main
  second=$(git_ "$repo" rev-parse HEAD)
  t0=$(now)
  kubectl -n "$apps" annotate apps.airgate.dev bench airgate.dev/requested-at="$(date +%s.%N)" --overwrite >/dev/null
  wait_app "$apps" bench "$second" 900 || die "N=$n: the update did not become Ready (log: $work/controller-$n.log)"
  update=$(since "$t0")
  log "N=$n: update ${update}s; settling 20 s, then ${STEADY}s of steady state"

  sleep 20
  from=$(lines)
  cpu0=$(cpu_seconds "$pid")
  sleep "$STEADY"
  to=$(lines)
  cpu1=$(cpu_seconds "$pid")
  requests=$(audit_count "$controller_user" "$from" "$to")
  cpu=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$cpu0" "$cpu1")
  rss=$(peak_rss_mib "$pid")
  fetches=$(curl -s "http://127.0.0.1:$port/metrics" | awk '/^airgate_git_fetches_total/ {print $2}')
  log "N=$n: steady ${STEADY}s: requests $requests, CPU ${cpu}s, peak RSS ${rss} MiB, Git fetches so far $fetches"
  rows+=("| $n | airgate | $first_deploy | $update | $requests | $cpu | $rss |")

  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for i in $(seq 0 $((NAMESPACES - 1))); do kubectl delete namespace "$prefix-$i" --wait=false >/dev/null; done
  kubectl delete namespace "$apps" --wait=false >/dev/null
done

{
  echo "Reconcile benchmark: $(date -u +%FT%TZ), $(nproc) cores, interval $INTERVAL, steady state ${STEADY}s"
  echo
  echo "| N objects | tool | first deploy (s) | update commit -> Ready (s) | apiserver requests in steady state | CPU in steady state (s) | peak RSS (MiB) |"
  echo "|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} | tee "$root/target/bench/reconcile.md"
