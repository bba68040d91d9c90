#!/usr/bin/env bash
# bench/audit.sh: the audit log at scale. Appends RECORDS records in batches
# of BATCH (one transaction each), signing a checkpoint every second as the
# controller would, then times `airgate audit verify` of the whole log
# against the last checkpoint (every leaf, the tree, the hash chain, the
# signature), and reports proof sizes.
#
#   RECORDS=1000000 BATCH=10000 bench/audit.sh
#
# Goals (issue 14): >= 10,000 records/s appended with checkpoints every
# second; verify of 1,000,000 records under 5 s; `audit blame` p95 under
# 100 ms over that history; an inclusion proof of at most 20 hashes at
# 1,000,000. Output: a Markdown table on stdout.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"

RECORDS=${RECORDS:-1000000}
BATCH=${BATCH:-10000}

cargo build --release --locked -p airgate >&2
cargo build --release --locked -p airgate-store --example audit_bench >&2
work=$root/target/bench/audit
rm -rf "$work" && mkdir -p "$work"
log "appending $RECORDS records in batches of $BATCH"
figures=$("$root/target/release/examples/audit_bench" "$RECORDS" "$work/records.db" "$BATCH")
log "$figures"
field() { python3 -c "import json, sys; print(json.loads(sys.argv[1])$1)" "$figures"; }
log "airgate audit verify"
t0=$(now)
"$root/target/release/airgate" audit verify --store "$work/records.db" \
  --checkpoint "$work/records.checkpoint" --log-key "$work/records.vkey" >&2
verify_s=$(since "$t0")
log "airgate audit export (C2SP tiles layout), then verify from the export directory"
"$root/target/release/airgate" key generate --type note --name airgate-bench --out "$work/export-key" >&2
t0=$(now)
"$root/target/release/airgate" audit export "$work/export" --store "$work/records.db" \
  --key "$work/export-key.key" >&2
export_s=$(since "$t0")
t0=$(now)
"$root/target/release/airgate" audit verify --log "$work/export" --log-key "$work/export-key.vkey" >&2
verify_log_s=$(since "$t0")
log "airgate audit blame, 20 runs of the command (process start, store open, answer)"
blames=()
for i in $(seq 0 19); do
  t0=$(now)
  "$root/target/release/airgate" audit blame "Deployment/team-$((i % 50))/app-$((i % 7))" \
    --field '.spec.replicas' --store "$work/records.db" >/dev/null
  blames+=("$(python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$t0" "$(now)")")
done
blame_cli=$(printf '%s\n' "${blames[@]}" | sort -n | python3 -c "import sys; t=[float(l) for l in sys.stdin]; print(f'{t[len(t)//2]*1000:.0f} ms p50, {t[len(t)*95//100]*1000:.0f} ms p95')")
cat <<EOT
Audit log: $(utc), $RECORDS records, batches of $BATCH

| measure | figure | goal |
|---|---|---|
| append, with a signed checkpoint every second | $(field "['recordsPerSecond']") records/s ($(field "['appendSeconds']") s, $(field "['checkpoints']") checkpoints) | >= 10,000 records/s |
| \`airgate audit verify\` (leaves, tree, chain, checkpoint) | $verify_s s | < 5 s |
| \`airgate audit export\` (tiles, entry bundles, entries.jsonl, checkpoint) | $export_s s | |
| \`airgate audit verify --log DIR\` (rebuilt from the entry bundles, every tile checked) | $verify_log_s s | |
| the log's own recomputation (in the bench process) | $(field "['verifySeconds']") s | |
| \`audit blame\` of one field (in process, 200 random objects) | $(field "['blameP50Ms']") ms p50, $(field "['blameP95Ms']") ms p95 | p95 < 100 ms |
| \`airgate audit blame\` (the command, 20 runs) | $blame_cli | |
| inclusion proof (first, middle leaf) | $(field "['inclusionProofHashes']") hashes | <= 20 |
| consistency proof (a third -> all) | $(field "['consistencyProofHashes']") hashes | |
EOT
