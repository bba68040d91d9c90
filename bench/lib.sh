# bench/lib.sh: what the benchmarks share (sourced, not run).

log() { printf 'bench: %s\n' "$*" >&2; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }

utc() { date -u +%Y-%m-%dT%H:%M:%S.%6NZ; }
# cpu_seconds PID...: user + system CPU of the processes, added up.
cpu_seconds() {
  local pid
  for pid in "$@"; do cat "/proc/$pid/stat"; done | awk '{t += $14 + $15} END {printf "%.2f", t / 100}'
}
# peak_rss_mib PID...: the processes' peak RSS (VmHWM), added up.
peak_rss_mib() {
  local pid
  for pid in "$@"; do cat "/proc/$pid/status"; done | awk '/VmHWM/ {t += $2} END {printf "%.0f", t / 1024}'
}
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }

git_() {
  GIT_SSL_CAINFO=$AIRGATE_GIT_CA GIT_ASKPASS=$AIRGATE_GIT_ASKPASS GIT_TERMINAL_PROMPT=0 \
    git -C "$1" -c user.name=Bench -c user.email=bench@perimeter.invalid -c commit.gpgsign=false "${@:2}"
}

# push_new DIR NAME MESSAGE: DIR's files, the first commit of a new
# repository NAME.git on the perimeter's Git server.
push_new() {
  git_ "$1" init --quiet --initial-branch main
  git_ "$1" add --all
  git_ "$1" commit --quiet -m "$3"
  git_ "$1" push --quiet "$AIRGATE_GIT_URL/$2.git" HEAD:refs/heads/main
}

# sa_kubeconfig FILE NAMESPACE ACCOUNT: a kubeconfig with a token of the
# ServiceAccount.
sa_kubeconfig() {
  kubectl config --kubeconfig "$1" set-cluster perimeter \
    --server "$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')" \
    --certificate-authority "$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.certificate-authority}')" \
    --embed-certs >/dev/null
  kubectl config --kubeconfig "$1" set-credentials "$3" \
    --token "$(kubectl -n "$2" create token "$3" --duration 6h)" >/dev/null
  kubectl config --kubeconfig "$1" set-context "$3" --cluster perimeter --user "$3" >/dev/null
  kubectl config --kubeconfig "$1" use-context "$3" >/dev/null
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

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


# perimeter_and_airgate: the tools and the perimeter up, its environment
# read, and `airgate` set: AIRGATE=PATH measures that binary instead of this
# checkout's release build (to compare two builds in the same conditions).
perimeter_and_airgate() {
  dev/tools all >&2
  dev/perimeter env >/dev/null 2>&1 || dev/perimeter up >&2
  # shellcheck disable=SC1091
  . target/perimeter/env
  if [ -n "${AIRGATE:-}" ]; then
    airgate=$AIRGATE
  else
    cargo build --release --locked -p airgate >&2
    airgate=$root/target/release/airgate
  fi
}
kubectl() { "$AIRGATE_KUBECTL" "$@"; }

# install_airgate: the App CRD and the controller's RBAC in the cluster, and
# a kubeconfig of the controller's ServiceAccount in `ckc` (under $work).
# AIRGATE_INSTALLER=PATH installs with that build instead of $airgate (an
# A/B against an older build, whose install flags differ).
install_airgate() {
  log "installing the App CRD and the controller's RBAC"
  "${AIRGATE_INSTALLER:-$airgate}" install --image registry.internal:5000/airgate/airgate:bench --out "$work/install" 2>/dev/null
  kubectl apply --server-side --field-manager=airgate-install -f "$work/install/crd.yaml" \
    -f "$work/install/namespace.yaml" -f "$work/install/rbac.yaml" >/dev/null
  kubectl wait --for=condition=Established crd/apps.airgate.dev >/dev/null
  controller_user=system:serviceaccount:airgate-system:airgate-controller
  ckc=$work/controller.kubeconfig
  sa_kubeconfig "$ckc" airgate-system airgate-controller
}

# tenant NS: namespace NS, its ServiceAccount `deployer` (admin there, no
# further) and the Git Secret `git-creds` Apps name.
tenant() {
  {
    printf 'apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n---\n' "$1"
    printf 'apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: deployer, namespace: %s}\n---\n' "$1"
    printf 'apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: deployer, namespace: %s}\n' "$1"
    printf 'roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: admin}\n'
    printf 'subjects: [{kind: ServiceAccount, name: deployer, namespace: %s}]\n' "$1"
  } | kubectl apply --server-side --field-manager=bench -f - >/dev/null
  kubectl -n "$1" create secret generic git-creds --dry-run=client -o yaml \
    --from-literal=username="$AIRGATE_GIT_USER" --from-file=password="$AIRGATE_GIT_PASSWORD_FILE" \
    --from-file=ca.crt="$AIRGATE_GIT_CA" | kubectl apply --server-side --field-manager=bench -f - >/dev/null
}

# large_app NS REPOSITORY: App `large` in NS, of the repository's root, as
# `deployer`, pruning.
large_app() {
  kubectl apply --server-side --field-manager=bench -f - >/dev/null <<YAML
apiVersion: airgate.dev/v1alpha1
kind: App
metadata: {name: large, namespace: $1}
spec:
  source:
    url: $AIRGATE_GIT_URL/$2.git
    ref: {branch: main}
    secretRef: {name: git-creds}
  interval: 10m
  timeout: 30m
  serviceAccountName: deployer
  prune: true
YAML
}
