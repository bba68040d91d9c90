#!/usr/bin/env bash
# bench/reconcile.sh: the airgate controller and Flux's kustomize-controller,
# each alone on the local perimeter's apiserver, on one Git repository of N
# objects (Deployments, Services and ConfigMaps, a third each, over five
# namespaces), measuring:
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
# The floor: `kubectl apply --server-side` of the same objects, then the
# same wait for every Deployment (tool "kubectl"): what the cluster itself
# takes to roll them out, with no controller in between.
#
# Flux: kustomize-controller (built from its Go module by dev/tools) with
# `wait: true`, under a ServiceAccount bound to cluster-admin (Flux's
# default). Out of a cluster it cannot find a namespace for leader election,
# so it runs without; airgate keeps its Lease, whose renewals (one write
# every 5 s) are in airgate's count. Its source side
# cannot be built here (fluxcd/pkg/artifact is not on the module proxy this
# machine reaches), so this script plays source-controller: it packs the
# commit as source-controller would (a tar.gz of the tree), serves it over
# HTTP and writes the GitRepository's status (artifact URL, revision,
# digest). That leaves source-controller's own requests, CPU and memory out
# of Flux's figures: they are a lower bound for Flux.
#
#   SIZES="100 1000" STEADY=600 INTERVAL=1m TOOLS="kubectl airgate flux" bench/reconcile.sh
#
# Output: a Markdown table on stdout (and in target/bench/reconcile.md).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

SIZES=${SIZES:-100 1000}
TOOLS=${TOOLS:-kubectl airgate flux}
STEADY=${STEADY:-600}
INTERVAL=${INTERVAL:-1m}
NAMESPACES=5

log() { printf 'bench: %s\n' "$*" >&2; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }

dev/tools all >&2
dev/tools build kustomize-controller >&2
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

# audit_count USER FROM TO: requests by USER received from FROM to TO (UTC
# RFC 3339), in the audit log and the files it was rotated into.
audit_count() {
  python3 - "$AIRGATE_AUDIT_LOG" "$@" <<'PY'
import collections, glob, json, os, sys
path, user, start, end = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
base, _ = os.path.splitext(path)
verbs = collections.Counter()
for name in [path] + glob.glob(base + "-*.log"):
    with open(name) as f:
        for line in f:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            t = e.get("requestReceivedTimestamp", "")
            if start <= t < end and e.get("user", {}).get("username") == user:
                verbs[e.get("verb", "?")] += 1
total = sum(verbs.values())
detail = ", ".join(f"{v} {k}" for k, v in verbs.most_common())
print(f"{total} ({detail})" if total else "0")
PY
}

utc() { date -u +%Y-%m-%dT%H:%M:%S.%6NZ; }
cpu_seconds() { awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$1/stat"; }
peak_rss_mib() { awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }

git_() {
  GIT_SSL_CAINFO=$AIRGATE_GIT_CA GIT_ASKPASS=$AIRGATE_GIT_ASKPASS GIT_TERMINAL_PROMPT=0 \
    git -C "$1" -c user.name=Bench -c user.email=bench@perimeter.invalid -c commit.gpgsign=false "${@:2}"
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

# Flux's side: CRDs (GitRepository from source-controller's module), the
# kustomize-controller's ServiceAccount bound to cluster-admin, a kubeconfig.
flux_setup() {
  local src_dir
  src_dir=$(cd /tmp && go mod download -json "github.com/fluxcd/source-controller@$FLUX_SOURCE_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  # Every source kind: kustomize-controller watches them all.
  kubectl apply --server-side --field-manager=bench -f "$src_dir/config/crd/bases" \
    -f "$(dev/tools path kustomize-controller-crds)" >/dev/null
  kubectl wait --for=condition=Established crd/gitrepositories.source.toolkit.fluxcd.io crd/kustomizations.kustomize.toolkit.fluxcd.io >/dev/null
  kubectl apply --server-side --field-manager=bench -f - >/dev/null <<YAML
apiVersion: v1
kind: Namespace
metadata: {name: flux-system}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: kustomize-controller, namespace: flux-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: bench-kustomize-controller}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{kind: ServiceAccount, name: kustomize-controller, namespace: flux-system}]
YAML
  fkc=$work/flux.kubeconfig
  kubectl config --kubeconfig "$fkc" set-cluster perimeter \
    --server "$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')" \
    --certificate-authority "$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.certificate-authority}')" \
    --embed-certs >/dev/null
  kubectl config --kubeconfig "$fkc" set-credentials flux \
    --token "$(kubectl -n flux-system create token kustomize-controller --duration 6h)" >/dev/null
  kubectl config --kubeconfig "$fkc" set-context flux --cluster perimeter --user flux >/dev/null
  kubectl config --kubeconfig "$fkc" use-context flux >/dev/null
  flux_user=system:serviceaccount:flux-system:kustomize-controller
  mkdir -p "$work/artifacts"
  artifact_port=$(free_port)
  python3 -m http.server --bind 127.0.0.1 "$artifact_port" --directory "$work/artifacts" >/dev/null 2>&1 &
  artifact_server=$!
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# publish NS REPO: what source-controller does for a new commit: the tree as
# a tar.gz artifact, and the GitRepository's status pointing at it.
publish() {
  local ns=$1 repo=$2 commit file digest size ts
  commit=$(git_ "$repo" rev-parse HEAD)
  file=$commit.tar.gz
  git_ "$repo" archive --format=tar.gz -o "$work/artifacts/$file" HEAD
  digest=sha256:$(sha256sum "$work/artifacts/$file" | cut -d' ' -f1)
  size=$(stat -c %s "$work/artifacts/$file")
  ts=$(date -u +%FT%TZ)
  kubectl -n "$ns" patch gitrepositories.source.toolkit.fluxcd.io bench --subresource=status --type=merge -p "$(cat <<JSON
{"status": {"observedGeneration": 1,
  "conditions": [{"type": "Ready", "status": "True", "reason": "Succeeded", "message": "stored artifact for revision 'main@sha1:$commit'", "lastTransitionTime": "$ts", "observedGeneration": 1},
                 {"type": "ArtifactInStorage", "status": "True", "reason": "Succeeded", "message": "stored", "lastTransitionTime": "$ts", "observedGeneration": 1}],
  "artifact": {"path": "gitrepository/$ns/bench/$file", "url": "http://127.0.0.1:$artifact_port/$file",
               "revision": "main@sha1:$commit", "digest": "$digest", "size": $size, "lastUpdateTime": "$ts"}}}
JSON
)" >/dev/null
}

# wait_ready KIND NS NAME REVISION TIMEOUT: until Ready=True at REVISION
# (one read every 0.2 s or so: the figures are good to about a third of a
# second).
wait_ready() {
  local deadline=$((SECONDS + $5)) seen
  while [ $SECONDS -lt $deadline ]; do
    seen=$(kubectl -n "$2" get "$1" "$3" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status} {.status.lastAppliedRevision}' 2>/dev/null || true)
    [ "$seen" = "True $4" ] && return 0
    sleep 0.1
  done
  return 1
}

# new_repo DIR N PREFIX: version 1 of the N objects, pushed to PREFIX.git.
new_repo() {
  gen_repo "$1" "$2" "$3" 1
  git_ "$1" init --quiet --initial-branch main
  git_ "$1" add --all
  git_ "$1" commit --quiet -m "N=$2, version 1"
  git_ "$1" push --quiet "$AIRGATE_GIT_URL/$3.git" HEAD:refs/heads/main
}

# next_version DIR N PREFIX: version 2: every ConfigMap and Deployment changes.
next_version() {
  gen_repo "$1" "$2" "$3" 2
  git_ "$1" commit --quiet -am "N=$2, version 2"
  git_ "$1" push --quiet "$AIRGATE_GIT_URL/$3.git" HEAD:refs/heads/main
}

# tenant PREFIX APPS: the target namespaces, each letting APPS/deployer do
# anything in it, and the namespace of the App with its Git credentials.
tenant() {
  local prefix=$1 apps=$2 i
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
}

# steady PID USER LABEL: STEADY seconds with nothing changed; sets `measured`.
steady() {
  local pid=$1 user=$2 from to cpu0 cpu1 requests cpu rss
  sleep 20
  from=$(utc)
  cpu0=$(cpu_seconds "$pid")
  sleep "$STEADY"
  to=$(utc)
  cpu1=$(cpu_seconds "$pid")
  requests=$(audit_count "$user" "$from" "$to")
  cpu=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$cpu0" "$cpu1")
  rss=$(peak_rss_mib "$pid")
  measured="$requests | $cpu | $rss"
  log "$3: steady ${STEADY}s: requests $requests, CPU ${cpu}s, peak RSS ${rss} MiB"
}

# prepare TAG N: a tenant and a repository of version 1 for one run; sets
# the caller's `prefix`, `apps`, `repo` and `first` (the commit).
prepare() {
  prefix=$1$2-$(date +%s)
  apps=$prefix-apps
  tenant "$prefix" "$apps"
  repo=$work/repo-$prefix
  new_repo "$repo" "$2" "$prefix"
  first=$(git_ "$repo" rev-parse HEAD)
}

# finish PID USER LABEL TOOL N FIRST_DEPLOY UPDATE PREFIX APPS: the
# latencies logged, the steady state measured, the controller stopped and
# the run's namespaces deleted; sets `row`.
finish() {
  log "$3: first deploy ${6}s, update ${7}s"
  steady "$1" "$2" "$3"
  row="| $5 | $4 | $6 | $7 | $measured |"
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  cleanup "$8" "$9"
}

# run_airgate N: sets `row`.
run_airgate() {
  local n=$1 prefix apps repo first second port pid t0 first_deploy update
  prepare a "$n"

  port=$(free_port)
  "$airgate" controller --kubeconfig "$ckc" --namespace "$apps" --lease-namespace airgate-system \
    --lease-name "$prefix" --data-dir "$work/data-$prefix" --listen "127.0.0.1:$port" \
    2>"$work/airgate-$n.log" &
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
  wait_ready apps.airgate.dev "$apps" bench "$first" 900 || die "N=$n: the App did not become Ready (log: $work/airgate-$n.log)"
  first_deploy=$(since "$t0")
  next_version "$repo" "$n" "$prefix"
  second=$(git_ "$repo" rev-parse HEAD)
  t0=$(now)
  kubectl -n "$apps" annotate apps.airgate.dev bench airgate.dev/requested-at="$(date +%s.%N)" --overwrite >/dev/null
  wait_ready apps.airgate.dev "$apps" bench "$second" 900 || die "N=$n: the update did not become Ready (log: $work/airgate-$n.log)"
  update=$(since "$t0")
  finish "$pid" "$controller_user" "airgate N=$n" airgate "$n" "$first_deploy" "$update" "$prefix" "$apps"
}

# run_flux N: sets `row`.
run_flux() {
  local n=$1 prefix apps repo first second port health pid t0 first_deploy update
  prepare f "$n"

  port=$(free_port)
  health=$(free_port)
  KUBECONFIG=$fkc RUNTIME_NAMESPACE=flux-system "$(dev/tools path kustomize-controller)" \
    --metrics-addr "127.0.0.1:$port" --health-addr "127.0.0.1:$health" \
    --watch-all-namespaces --log-level info 2>"$work/flux-$n.log" >&2 &
  pid=$!
  sleep 2

  t0=$(now)
  kubectl apply --server-side --field-manager=bench -f - >/dev/null <<YAML
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: bench, namespace: $apps}
spec:
  url: $AIRGATE_GIT_URL/$prefix.git
  ref: {branch: main}
  interval: $INTERVAL
  secretRef: {name: git-creds}
YAML
  publish "$apps" "$repo"
  kubectl apply --server-side --field-manager=bench -f - >/dev/null <<YAML
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: bench, namespace: $apps}
spec:
  interval: $INTERVAL
  path: ./
  prune: true
  wait: true
  timeout: 10m
  sourceRef: {kind: GitRepository, name: bench}
YAML
  wait_ready kustomizations.kustomize.toolkit.fluxcd.io "$apps" bench "main@sha1:$first" 900 ||
    die "N=$n: the Kustomization did not become Ready (log: $work/flux-$n.log)"
  first_deploy=$(since "$t0")
  next_version "$repo" "$n" "$prefix"
  second=$(git_ "$repo" rev-parse HEAD)
  t0=$(now)
  publish "$apps" "$repo"
  wait_ready kustomizations.kustomize.toolkit.fluxcd.io "$apps" bench "main@sha1:$second" 900 ||
    die "N=$n: the Flux update did not become Ready (log: $work/flux-$n.log)"
  update=$(since "$t0")
  finish "$pid" "$flux_user" "flux N=$n" "Flux kustomize-controller $FLUX_KUSTOMIZE_VERSION" \
    "$n" "$first_deploy" "$update" "$prefix" "$apps"
}

# rolled_out PREFIX N VERSION: every one of the N/3 Deployments in
# PREFIX-* has seen its latest generation, runs VERSION, and has its one
# replica updated and available with no old one left.
rolled_out() {
  kubectl get deployments -A -o json | python3 -c '
import json, sys
prefix, n, version = sys.argv[1] + "-", int(sys.argv[2]), sys.argv[3]
done = 0
for d in json.load(sys.stdin)["items"]:
    m, s = d["metadata"], d.get("status", {})
    if not m["namespace"].startswith(prefix) or m["namespace"].endswith("-apps"):
        continue
    env = d["spec"]["template"]["spec"]["containers"][0].get("env", [])
    if (s.get("observedGeneration", 0) >= m["generation"] and env and env[0]["value"] == version
            and s.get("updatedReplicas") == s.get("replicas") == s.get("availableReplicas") == 1):
        done += 1
sys.exit(0 if done == (n + 2) // 3 else 1)' "$1" "$2" "$3"
}

# run_kubectl N: the reference (no controller); sets `row`.
run_kubectl() {
  local n=$1 prefix repo t0 first_deploy update
  prefix=k$n-$(date +%s)
  tenant "$prefix" "$prefix-apps"
  repo=$work/repo-$prefix
  gen_repo "$repo" "$n" "$prefix" 1
  t0=$(now)
  kubectl apply --server-side --field-manager=bench -f "$repo" >/dev/null
  until rolled_out "$prefix" "$n" 1; do sleep 0.5; done
  first_deploy=$(since "$t0")
  gen_repo "$repo" "$n" "$prefix" 2
  t0=$(now)
  kubectl apply --server-side --field-manager=bench -f "$repo" >/dev/null
  until rolled_out "$prefix" "$n" 2; do sleep 0.5; done
  update=$(since "$t0")
  log "kubectl N=$n: first deploy ${first_deploy}s, update ${update}s"
  row="| $n | reference: kubectl apply --server-side, then the same wait | $first_deploy | $update | | | |"
  cleanup "$prefix" "$prefix-apps"
}

cleanup() {
  local i
  for i in $(seq 0 $((NAMESPACES - 1))); do kubectl delete namespace "$1-$i" --wait=false >/dev/null; done
  kubectl delete namespace "$2" --wait=false >/dev/null
}

# shellcheck source=dev/versions.env
. dev/versions.env
case " $TOOLS " in *" flux "*) flux_setup ;; esac
trap '[ -n "${artifact_server:-}" ] && kill "$artifact_server" 2>/dev/null; true' EXIT

rows=()
for n in $SIZES; do
  for tool in $TOOLS; do
    log "$tool, N=$n"
    "run_$tool" "$n"
    rows+=("$row")
  done
done

{
  echo "Reconcile benchmark: $(date -u +%FT%TZ), $(nproc) cores, interval $INTERVAL, steady state ${STEADY}s"
  echo
  echo "| N objects | tool | first deploy (s) | update commit -> Ready (s) | apiserver requests in steady state | CPU in steady state (s) | peak RSS (MiB) |"
  echo "|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} | tee "$root/target/bench/reconcile.md"
