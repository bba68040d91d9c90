#!/usr/bin/env bash
# bench/ui.sh: how fast the web UI serves the page of one App of N objects
# (default 2,000 ConfigMaps), on the local perimeter, through the airgate
# controller with --ui-listen. The page reads the App, its Events, its
# records and every object's health (as the App's ServiceAccount, a list
# per kind and namespace) and renders the owner tree.
#
#   N=2000 REQUESTS=30 bench/ui.sh     AIRGATE=PATH runs that binary
#
# The first request (cold: token and access reviews, the App's client) is
# reported apart; the rest as median, 90th percentile and maximum of the
# whole request as curl sees it. Target: under 300 ms.
#
# Output: a Markdown table on stdout (and in target/bench/ui.md).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"

N=${N:-2000}
REQUESTS=${REQUESTS:-30}

perimeter_and_airgate
work=$root/target/bench/ui
rm -rf "$work" && mkdir -p "$work"
install_airgate

prefix=ui-$(date +%s)
ns=$prefix
log "namespace $ns, $N ConfigMaps"
tenant "$ns"
# Who looks: may get Apps in this namespace, nothing else.
{
  printf 'apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: viewer, namespace: %s}\n---\n' "$ns"
  printf 'apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: viewer, namespace: %s}\n' "$ns"
  printf 'rules: [{apiGroups: [airgate.dev], resources: [apps], verbs: [get, list]}]\n---\n'
  printf 'apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: viewer, namespace: %s}\n' "$ns"
  printf 'roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: viewer}\n'
  printf 'subjects: [{kind: ServiceAccount, name: viewer, namespace: %s}]\n' "$ns"
} | kubectl apply --server-side --field-manager=bench -f - >/dev/null

repo=$work/repo
python3 - "$repo" "$N" "$ns" <<'PY'
import os, sys
d, n, ns = sys.argv[1], int(sys.argv[2]), sys.argv[3]
os.makedirs(d, exist_ok=True)
with open(os.path.join(d, "objects.yaml"), "w") as out:
    for i in range(n):
        out.write(f"---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings-{i:05d}, namespace: {ns}}}\ndata: {{index: \"{i}\"}}\n")
PY
push_new "$repo" "$prefix" "$N ConfigMaps"
first=$(git_ "$repo" rev-parse HEAD)

port=$(free_port)
ui_port=$(free_port)
"$airgate" controller --kubeconfig "$ckc" --namespace "$ns" --lease-namespace airgate-system \
  --lease-name "$prefix" --data-dir "$work/data" --listen "127.0.0.1:$port" \
  --ui-listen "127.0.0.1:$ui_port" 2>"$work/airgate.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
sleep 2
large_app "$ns" "$prefix"
wait_ready apps.airgate.dev "$ns" large "$first" 1200 || die "the App did not become Ready (log: $work/airgate.log)"
token=$(kubectl -n "$ns" create token viewer --duration 1h)
url="http://127.0.0.1:$ui_port/apps/$ns/large"
get() { curl -sf -o "$work/page.html" -w '%{time_total}\n' -H "Authorization: Bearer $token" "$url"; }
cold=$(get)
rows=$(grep -c '<tr class="ready' "$work/page.html" || true)
[ "$rows" -ge "$N" ] || die "the page shows $rows healthy objects, not $N ($work/page.html)"
for _ in $(seq 1 "$REQUESTS"); do get; done >"$work/times"
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
kubectl delete namespace "$ns" --wait=false >/dev/null
read -r median p90 max < <(python3 - "$work/times" <<'PY'
import sys
t = sorted(float(x) * 1000 for x in open(sys.argv[1]))
q = lambda p: t[min(len(t) - 1, int(round(p * (len(t) - 1))))]
print(f"{q(0.5):.0f} {q(0.9):.0f} {t[-1]:.0f}")
PY
)
size=$(wc -c <"$work/page.html")
{
  echo "UI benchmark: $(date -u +%FT%TZ), $(nproc) cores"
  echo
  echo "| objects | page (bytes) | first request (ms) | median of $REQUESTS (ms) | p90 (ms) | max (ms) |"
  echo "|---|---|---|---|---|---|"
  echo "| $N | $size | $(python3 -c "print(f'{float(\"$cold\") * 1000:.0f}')") | $median | $p90 | $max |"
} | tee "$root/target/bench/ui.md"
