#!/usr/bin/env bash
# bench/large-app.sh: one App of N ConfigMaps (default 50,000) in one
# namespace, on the local perimeter, through the airgate controller:
#
#   (1) App created -> Ready: every object dry-run, applied and recorded;
#   (2) a commit that removes half the objects -> Ready at that commit, the
#       removed half pruned (and checked gone, the rest checked there);
#   (3) the controller's peak RSS (VmHWM) over both, and the size of the
#       App's status (the inventory is kept compressed above 1,000 objects).
#
# An outside review once saw such an App apply and then lose its inventory:
# its status patch was over etcd's request limit.
#
#   N=50000 bench/large-app.sh        AIRGATE=PATH runs that binary
#
# Output: a Markdown table on stdout (and in target/bench/large-app.md).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"

N=${N:-50000}
PER_FILE=1000

perimeter_and_airgate
work=$root/target/bench/large-app
rm -rf "$work" && mkdir -p "$work"
install_airgate

prefix=large-$(date +%s)
ns=$prefix
log "namespace $ns, $N ConfigMaps"
tenant "$ns"

# N ConfigMaps, PER_FILE documents a file.
repo=$work/repo
python3 - "$repo" "$N" "$ns" "$PER_FILE" <<'PY'
import os, sys
d, n, ns, per = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
os.makedirs(d, exist_ok=True)
for f in range((n + per - 1) // per):
    with open(os.path.join(d, f"part-{f:04d}.yaml"), "w") as out:
        for i in range(f * per, min(n, (f + 1) * per)):
            out.write(f"---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings-{i:06d}, namespace: {ns}}}\ndata: {{index: \"{i}\"}}\n")
PY
push_new "$repo" "$prefix" "$N ConfigMaps"
first=$(git_ "$repo" rev-parse HEAD)

port=$(free_port)
"$airgate" controller --kubeconfig "$ckc" --namespace "$ns" --lease-namespace airgate-system \
  --lease-name "$prefix" --data-dir "$work/data" --listen "127.0.0.1:$port" 2>"$work/airgate.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
sleep 2

t0=$(now)
large_app "$ns" "$prefix"
wait_ready apps.airgate.dev "$ns" large "$first" 3600 || die "the App did not become Ready (log: $work/airgate.log)"
first_deploy=$(since "$t0")
count=$(kubectl -n "$ns" get apps.airgate.dev large -o jsonpath='{.status.inventoryCount}')
[ "$count" = "$N" ] || die "status.inventoryCount is $count, not $N"
status_bytes=$(kubectl -n "$ns" get apps.airgate.dev large -o json | python3 -c 'import json, sys; print(len(json.dumps(json.load(sys.stdin)["status"])))')
log "first deploy ${first_deploy}s; status $status_bytes bytes"

# Half the files go: their objects are pruned.
half=$(( (N / PER_FILE / 2) ))
for f in $(seq 0 $((half - 1))); do git_ "$repo" rm --quiet "$(printf 'part-%04d.yaml' "$f")"; done
git_ "$repo" commit --quiet -m "the first $((half * PER_FILE)) ConfigMaps leave"
git_ "$repo" push --quiet "$AIRGATE_GIT_URL/$prefix.git" HEAD:refs/heads/main
second=$(git_ "$repo" rev-parse HEAD)
t0=$(now)
kubectl -n "$ns" annotate apps.airgate.dev large airgate.dev/requested-at="$(date +%s.%N)" --overwrite >/dev/null
wait_ready apps.airgate.dev "$ns" large "$second" 3600 || die "the prune did not become Ready (log: $work/airgate.log)"
prune=$(since "$t0")
left=$(kubectl -n "$ns" get configmaps -l airgate.dev/app-name=large -o name | wc -l)
kept=$((N - half * PER_FILE))
[ "$left" = "$kept" ] || die "$left ConfigMaps of the App left, not $kept"
count=$(kubectl -n "$ns" get apps.airgate.dev large -o jsonpath='{.status.inventoryCount}')
[ "$count" = "$kept" ] || die "status.inventoryCount is $count after the prune, not $kept"
rss=$(peak_rss_mib "$pid")
log "prune of $((half * PER_FILE)) ${prune}s; peak RSS ${rss} MiB"
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
kubectl delete namespace "$ns" --wait=false >/dev/null

{
  echo "Large App benchmark: $(date -u +%FT%TZ), $(nproc) cores"
  echo
  echo "| objects | App created -> Ready (s) | status (bytes) | commit removing $((half * PER_FILE)) -> Ready, pruned (s) | controller peak RSS (MiB) |"
  echo "|---|---|---|---|---|"
  echo "| $N | $first_deploy | $status_bytes | $prune | $rss |"
} | tee "$root/target/bench/large-app.md"
