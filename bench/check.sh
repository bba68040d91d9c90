#!/usr/bin/env bash
# bench/check.sh: `airgate check` over N objects (default 50,000): half
# ConfigMaps, half Deployments with pinned images and resources, in 50
# files, one environment; every rule runs (policy, hosts in strings, and
# schema validation against the Kubernetes v1.36 schemas airgate carries).
# No server is needed: check runs offline.
#
# The peer, in the same run: kubeconform (dev/tools builds it), strict,
# over the same files, with the same v1.36 schemas (airgate's carried
# document, written out as kubeconform's standalone JSON schemas, each
# object schema closed to unknown fields as airgate's check is), as many
# workers as cores.
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
dev/tools build kubeconform >&2
kubeconform=$(dev/tools path kubeconform)
python3 - "$root/crates/airgate/schemas/kubernetes-v1.36.json.gz" "$work/kubeconform" <<'PY'
import gzip, json, os, sys
src, out = sys.argv[1:]
named = json.load(gzip.open(src))['components']['schemas']
def closed(o):
    if isinstance(o, dict):
        o = {k: closed(v) for k, v in o.items()}
        if 'properties' in o and 'additionalProperties' not in o and not o.get('x-kubernetes-preserve-unknown-fields'):
            o['additionalProperties'] = False
        return o
    if isinstance(o, list):
        return [closed(x) for x in o]
    return o
named = closed(named)
os.makedirs(out, exist_ok=True)
# The kinds the objects use (kubeconform opens only those).
for name, kind, suffix in [('io.k8s.api.core.v1.ConfigMap', 'configmap', '-v1'), ('io.k8s.api.apps.v1.Deployment', 'deployment', '-apps-v1')]:
    with open(f'{out}/{kind}{suffix}.json', 'w') as f:
        json.dump({'$ref': f'#/components/schemas/{name}', 'components': {'schemas': named}}, f)
PY
out=target/bench/check.md
cores=$(nproc)
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
{
  echo "| run | objects | airgate check | kubeconform -strict ($cores workers) | kubeconform / airgate | airgate's own figure | kubeconform's summary |"
  echo "|---|---|---|---|---|---|---|"
} >"$out"
for run in 1 2 3; do
  start=$(date +%s.%N)
  said=$("$airgate" check "$work" --env "$work/envs/prod" 2>&1 >/dev/null | tail -1)
  end=$(date +%s.%N)
  a=$(seconds "$start" "$end")
  start=$(date +%s.%N)
  summary=$("$kubeconform" -strict -summary -n "$cores" -schema-location "$work/kubeconform/{{ .ResourceKind }}{{ .KindSuffix }}.json" "$work/envs/prod" 2>&1 | tail -1)
  end=$(date +%s.%N)
  k=$(seconds "$start" "$end")
  echo "| $run | $N | $a s | $k s | $(awk -v a="$a" -v k="$k" 'BEGIN { printf "%.1fx", k / a }') | $said | $summary |" >>"$out"
done
cat "$out"
