#!/usr/bin/env bash
# bench/helm-render.sh: a Helm App's render, on the local perimeter.
#
#   (1) the first render of a chart from the internal registry (pulled as
#       the App, with discovery of the cluster's capabilities);
#   (2) the render of a new revision that changes nothing the render
#       depends on (chart, values, capabilities): served from the render
#       cache (goal: under 50 ms);
#   (3) the peer's cost for that new revision: `helm template` alone, which
#       a cache keyed by revision (Argo CD's repo-server) pays again.
#
# It runs the perimeter test that measures them and prints its figures:
#   bench/helm-render.sh            ROUNDS=5 repeats it
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
dev/tools all >&2
dev/perimeter env >/dev/null 2>&1 || dev/perimeter up >&2
mkdir -p target/bench
out=target/bench/helm-render.md
echo "| round | first render | cached render p50 | cached p95 | helm template alone | ratio |" >"$out"
echo "|---|---|---|---|---|---|" >>"$out"
for round in $(seq 1 "${ROUNDS:-3}"); do
  line=$(cargo test --locked -q -p airgate-sync --test helm -- --nocapture \
    a_chart_renders_as_the_app_from_the_internal_registry_and_repeats_from_the_cache 2>&1 | grep '^helm render:')
  echo "$line" >&2
  echo "$line" | sed -E 's/^helm render: cold ([0-9]+) ms; .* p50 ([0-9]+) ms, p95 ([0-9]+) ms; helm template alone: p50 ([0-9]+) ms \(([0-9.]+)x.*/| '"$round"' | \1 ms | \2 ms | \3 ms | \4 ms | \5x |/' >>"$out"
done
cat "$out"
