#!/usr/bin/env bash
# bench/reconcile.sh: the airgate controller and Flux (source-controller and
# kustomize-controller), each alone on the local perimeter's apiserver, on one Git repository of N
# objects (Deployments, Services and ConfigMaps, a third each, over five
# namespaces), measuring:
#
#   (1) first deploy: App created -> Ready (every object applied, every
#       Deployment available); update: a commit changing every ConfigMap and
#       every Deployment (a rollout) -> Ready at that commit, each tool asked
#       to look at Git right after the push (airgate: annotation
#       airgate.dev/requested-at on the App; Flux: reconcile.fluxcd.io/requestedAt
#       on the GitRepository, what `flux reconcile source git` and a webhook
#       Receiver do);
#   (2) steady state: STEADY seconds with nothing changed, INTERVAL between
#       looks at Git: the apiserver requests made by the controller's identity
#       (counted in the apiserver's audit log, impersonated requests included)
#       and the controller's CPU time (from /proc); for Flux, both
#       controllers' identities and processes added up;
#   (3) the controller's peak RSS (VmHWM; for Flux, the sum of both peaks:
#       in a cluster they are two pods, each sized for its own peak).
#
# The floor: `kubectl apply --server-side` of the same objects, then the
# same wait for every Deployment (tool "kubectl"): what the cluster itself
# takes to roll them out, with no controller in between.
#
# Flux: source-controller and kustomize-controller (both built from their Go
# modules by dev/tools, versions in dev/versions.env), out of the cluster,
# each under its own ServiceAccount bound to cluster-admin (Flux binds
# cluster-admin to kustomize-controller by default; the binding does not
# change what source-controller asks for). A GitRepository with the same
# Secret (username, password, ca.crt) as the App, and a Kustomization with
# `wait: true`. Out of a cluster controller-runtime cannot find a namespace
# for leader election, so both run without; airgate keeps its Lease, whose
# renewals (one write every 5 s) are in airgate's count.
#
#   SIZES="100 1000" STEADY=600 INTERVAL=1m TOOLS="kubectl airgate flux" bench/reconcile.sh
#
# AIRGATE=PATH runs that airgate binary instead of building this checkout.
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

# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"

# Flux is built only when it runs.
case " $TOOLS " in *" flux "*) dev/tools build source-controller kustomize-controller >&2 ;; esac
perimeter_and_airgate
[ -n "${AIRGATE_AUDIT_LOG:-}" ] || die "the perimeter has no audit log; restart it: dev/perimeter down && dev/perimeter up"

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

# audit_count USERS FROM TO: requests by any of USERS (comma-separated)
# received from FROM to TO (UTC RFC 3339), in the audit log and the files it
# was rotated into.
audit_count() {
  python3 - "$AIRGATE_AUDIT_LOG" "$@" <<'PY'
import collections, glob, json, os, sys
path, start, end = sys.argv[1], sys.argv[3], sys.argv[4]
users = set(sys.argv[2].split(","))
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
            if start <= t < end and e.get("user", {}).get("username") in users:
                verbs[e.get("verb", "?")] += 1
total = sum(verbs.values())
detail = ", ".join(f"{v} {k}" for k, v in verbs.most_common())
print(f"{total} ({detail})" if total else "0")
PY
}

install_airgate

# Flux's side: the CRDs both controllers ship, their ServiceAccounts bound to
# cluster-admin, a kubeconfig each.
flux_setup() {
  local sa
  kubectl apply --server-side --field-manager=bench -f "$(dev/tools path source-controller-crds)" \
    -f "$(dev/tools path kustomize-controller-crds)" >/dev/null
  kubectl wait --for=condition=Established crd/gitrepositories.source.toolkit.fluxcd.io crd/kustomizations.kustomize.toolkit.fluxcd.io >/dev/null
  for sa in source-controller kustomize-controller; do
    kubectl apply --server-side --field-manager=bench -f - >/dev/null <<YAML
apiVersion: v1
kind: Namespace
metadata: {name: flux-system}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: $sa, namespace: flux-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: bench-$sa}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{kind: ServiceAccount, name: $sa, namespace: flux-system}]
YAML
    sa_kubeconfig "$work/$sa.kubeconfig" flux-system "$sa"
  done
  flux_users=system:serviceaccount:flux-system:source-controller,system:serviceaccount:flux-system:kustomize-controller
}

# new_repo DIR N PREFIX: version 1 of the N objects, pushed to PREFIX.git.
new_repo() {
  gen_repo "$1" "$2" "$3" 1
  push_new "$1" "$3" "N=$2, version 1"
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
    printf 'apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: deployer, namespace: %s}\n---\n' "$apps"
    # airgate reads the App's Git Secret as the App's ServiceAccount.
    printf 'apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: read-git-creds, namespace: %s}\n' "$apps"
    printf 'rules: [{apiGroups: [""], resources: [secrets], resourceNames: [git-creds], verbs: [get]}]\n---\n'
    printf 'apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: read-git-creds, namespace: %s}\n' "$apps"
    printf 'roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: read-git-creds}\n'
    printf 'subjects: [{kind: ServiceAccount, name: deployer, namespace: %s}]\n' "$apps"
  } | kubectl apply --server-side --field-manager=bench -f - >/dev/null
  kubectl -n "$apps" create secret generic git-creds --dry-run=client -o yaml \
    --from-literal=username="$AIRGATE_GIT_USER" --from-file=password="$AIRGATE_GIT_PASSWORD_FILE" \
    --from-file=ca.crt="$AIRGATE_GIT_CA" | kubectl apply --server-side --field-manager=bench -f - >/dev/null
}

# steady "PID..." USERS LABEL: STEADY seconds with nothing changed; sets
# `measured`.
steady() {
  local pids=$1 users=$2 from to cpu0 cpu1 requests cpu rss
  sleep 20
  from=$(utc)
  # shellcheck disable=SC2086 # a list of PIDs
  cpu0=$(cpu_seconds $pids)
  sleep "$STEADY"
  to=$(utc)
  # shellcheck disable=SC2086
  cpu1=$(cpu_seconds $pids)
  requests=$(audit_count "$users" "$from" "$to")
  cpu=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$cpu0" "$cpu1")
  # shellcheck disable=SC2086
  rss=$(peak_rss_mib $pids)
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

# finish "PID..." USERS LABEL TOOL N FIRST_DEPLOY UPDATE PREFIX APPS: the
# latencies logged, the steady state measured, the controllers stopped and
# the run's namespaces deleted; sets `row`.
finish() {
  local pid
  log "$3: first deploy ${6}s, update ${7}s"
  steady "$1" "$2" "$3"
  row="| $5 | $4 | $6 | $7 | $measured |"
  for pid in $1; do kill "$pid" 2>/dev/null || true; done
  for pid in $1; do wait "$pid" 2>/dev/null || true; done
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
  local n=$1 prefix apps repo first second storage source kustomize t0 first_deploy update
  prepare f "$n"

  storage=$(free_port)
  mkdir -p "$work/flux-storage-$prefix"
  KUBECONFIG=$work/source-controller.kubeconfig RUNTIME_NAMESPACE=flux-system \
    "$(dev/tools path source-controller)" --watch-all-namespaces --log-level info \
    --metrics-addr "127.0.0.1:$(free_port)" --health-addr "127.0.0.1:$(free_port)" \
    --storage-path "$work/flux-storage-$prefix" --storage-addr "127.0.0.1:$storage" \
    --storage-adv-addr "127.0.0.1:$storage" 2>"$work/flux-source-$n.log" >&2 &
  source=$!
  KUBECONFIG=$work/kustomize-controller.kubeconfig RUNTIME_NAMESPACE=flux-system \
    "$(dev/tools path kustomize-controller)" --watch-all-namespaces --log-level info \
    --metrics-addr "127.0.0.1:$(free_port)" --health-addr "127.0.0.1:$(free_port)" \
    2>"$work/flux-kustomize-$n.log" >&2 &
  kustomize=$!
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
---
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
    die "N=$n: the Kustomization did not become Ready (logs: $work/flux-*-$n.log)"
  first_deploy=$(since "$t0")
  next_version "$repo" "$n" "$prefix"
  second=$(git_ "$repo" rev-parse HEAD)
  t0=$(now)
  kubectl -n "$apps" annotate gitrepositories.source.toolkit.fluxcd.io bench \
    reconcile.fluxcd.io/requestedAt="$(date +%s.%N)" --overwrite >/dev/null
  wait_ready kustomizations.kustomize.toolkit.fluxcd.io "$apps" bench "main@sha1:$second" 900 ||
    die "N=$n: the Flux update did not become Ready (logs: $work/flux-*-$n.log)"
  update=$(since "$t0")
  finish "$source $kustomize" "$flux_users" "flux N=$n" \
    "Flux (source-controller $FLUX_SOURCE_VERSION, kustomize-controller $FLUX_KUSTOMIZE_VERSION)" \
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

# cleanup PREFIX APPS: the run's namespaces deleted, and gone before the
# next run starts: deleting a thousand objects and their pods keeps
# controller-manager and the apiserver busy for a while, which would slow
# whichever tool came next.
cleanup() {
  local i names=()
  for i in $(seq 0 $((NAMESPACES - 1))); do names+=("namespace/$1-$i"); done
  names+=("namespace/$2")
  kubectl delete "${names[@]}" --wait=false >/dev/null
  # Flux's finalizers: its controllers are stopped by now and cannot drop them.
  if [ -n "${flux_users:-}" ]; then
    kubectl -n "$2" get gitrepositories.source.toolkit.fluxcd.io,kustomizations.kustomize.toolkit.fluxcd.io -o name 2>/dev/null |
      while read -r o; do kubectl -n "$2" patch "$o" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null; done
  fi
  kubectl wait --for=delete "${names[@]}" --timeout=600s >/dev/null 2>&1 || log "namespaces of $1 not gone after 600 s"
}

# shellcheck source=dev/versions.env
. dev/versions.env
case " $TOOLS " in *" flux "*) flux_setup ;; esac

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
