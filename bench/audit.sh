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
# second; verify of 1,000,000 records under 5 s; an inclusion proof of at
# most 20 hashes at 1,000,000. Output: a Markdown table on stdout.
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
cat <<EOT
Audit log: $(utc), $RECORDS records, batches of $BATCH

| measure | figure | goal |
|---|---|---|
| append, with a signed checkpoint every second | $(field "['recordsPerSecond']") records/s ($(field "['appendSeconds']") s, $(field "['checkpoints']") checkpoints) | >= 10,000 records/s |
| \`airgate audit verify\` (leaves, tree, chain, checkpoint) | $verify_s s | < 5 s |
| \`airgate audit export\` (tiles, entry bundles, entries.jsonl, checkpoint) | $export_s s | |
| \`airgate audit verify --log DIR\` (rebuilt from the entry bundles, every tile checked) | $verify_log_s s | |
| the log's own recomputation (in the bench process) | $(field "['verifySeconds']") s | |
| inclusion proof (first, middle leaf) | $(field "['inclusionProofHashes']") hashes | <= 20 |
| consistency proof (a third -> all) | $(field "['consistencyProofHashes']") hashes | |
EOT
