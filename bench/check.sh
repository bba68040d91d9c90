#!/usr/bin/env bash
# bench/check.sh: `airgate check` over N objects (default 50,000): half
# ConfigMaps, half Deployments with pinned images and resources, in 50
# files, one environment; every rule runs (policy, hosts in strings). No
# server is needed: check runs offline.
#
#   N=50000 bench/check.sh        AIRGATE=PATH runs that binary
#
# Output: a Markdown table on stdout (and in target/bench/check.md).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
N=${N:-50000}
if [ -n "${AIRGATE:-}" ]; then
  airgate=$AIRGATE
else
  cargo build --release --locked -p airgate >&2
  airgate=$root/target/release/airgate
fi
work=$root/target/bench/check
rm -rf "$work" && mkdir -p "$work/envs/prod"
python3 - "$work" "$N" <<'PY'
import sys
work, n = sys.argv[1], int(sys.argv[2])
dig = 'sha256:' + 'a' * 64
per = max(1, n // 50)
for f in range(0, n, per):
    parts = []
    for i in range(f, min(n, f + per)):
        if i % 2 == 0:
            parts.append(f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{i}, namespace: shop}}\ndata: {{key: value-{i}, url: https://mirror.internal/x/{i}}}\n")
        else:
            parts.append(f"apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web-{i}, namespace: shop}}\nspec:\n  replicas: 2\n  selector: {{matchLabels: {{app: web-{i}}}}}\n  template:\n    metadata: {{labels: {{app: web-{i}}}}}\n    spec:\n      containers:\n        - name: web\n          image: registry.internal:5000/shop/web:1@{dig}\n          resources: {{requests: {{cpu: 100m, memory: 64Mi}}, limits: {{memory: 64Mi}}}}\n")
    open(f'{work}/envs/prod/objects-{f // per:03}.yaml', 'w').write('---\n'.join(parts))
open(f'{work}/.airgate-check.yaml', 'w').write("allowedRegistries: [registry.internal:5000]\nallowedHosts: ['*.internal']\n")
PY
out=target/bench/check.md
{
  echo "| run | objects | wall time | airgate's own figure |"
  echo "|---|---|---|---|"
} >"$out"
for run in 1 2 3; do
  start=$(date +%s.%N)
  said=$("$airgate" check "$work" --env "$work/envs/prod" 2>&1 >/dev/null | tail -1)
  end=$(date +%s.%N)
  echo "| $run | $N | $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f s", b - a }') | $said |" >>"$out"
done
cat "$out"
