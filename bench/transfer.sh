#!/usr/bin/env bash
# bench/transfer.sh: airgate against skopeo, crane and regctl on both legs of
# an air-gap transfer, side by side in one run, on the local perimeter.
#
#   (a) registry -> file: airgate bundle create | skopeo copy --all into one OCI
#       layout | crane pull --format=oci (all images, one layout) | regctl image
#       export (one tar per image)
#   (b) file -> internal registry (TLS, basic auth): airgate bundle push |
#       skopeo copy from the layout | crane push --index | regctl image import
#   floor: openssl dgst -sha256 over the bundle (read + SHA-256 of the bytes)
#
# Each command runs under GNU time (wall, user+sys CPU, peak RSS), with the
# CPU the registry at the other end spends read from /proc, REPS=3
# times, the tools taking turns; the table shows medians (this machine is
# noisy: ext4 writeback after deleting the last run's gigabytes shows up in
# whoever runs next). Each push goes to a fresh repository prefix, so no tool
# finds its blobs already there.
#
# Workload (override with env): IMAGES=24 images, each SHARED_LAYERS=3 shared
# layers of SHARED_MIB=100 MiB plus one unique layer of UNIQUE_MIB=75 MiB
# (2.1 GiB of distinct blobs, 9 GiB if every image were stored alone).
#
# Output: a Markdown table on stdout (and in target/bench/transfer.md).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

IMAGES=${IMAGES:-24}
SHARED_LAYERS=${SHARED_LAYERS:-3}
SHARED_MIB=${SHARED_MIB:-100}
UNIQUE_MIB=${UNIQUE_MIB:-75}
JOBS=${JOBS:-8}
REPS=${REPS:-3}

log() { printf 'bench: %s\n' "$*" >&2; }

dev/tools all >&2
dev/tools build crane regctl >&2
dev/perimeter env >/dev/null 2>&1 || dev/perimeter up >&2
# shellcheck disable=SC1091
. target/perimeter/env
cargo build --release --locked -p airgate -p airgate-testkit >&2
airgate=$root/target/release/airgate
seed=$root/target/release/airgate-seed
crane=$(dev/tools path crane)
regctl=$(dev/tools path regctl)

work=$root/target/bench/transfer
rm -rf "$work" && mkdir -p "$work"
export DOCKER_CONFIG=$work/docker
mkdir -p "$DOCKER_CONFIG"
password=$(cat "$AIRGATE_INTERNAL_REGISTRY_PASSWORD_FILE")
printf '{"auths":{"%s":{"auth":"%s"}}}\n' "$AIRGATE_INTERNAL_REGISTRY" \
  "$(printf '%s:%s' "$AIRGATE_INTERNAL_REGISTRY_USER" "$password" | base64 -w0)" >"$DOCKER_CONFIG/config.json"
mkdir -p "$work/certs"
cp "$AIRGATE_INTERNAL_REGISTRY_CA" "$work/certs/ca.crt"
export REGCTL_CONFIG=$work/regctl.json
"$regctl" registry set "$AIRGATE_UPSTREAM_REGISTRY" --tls disabled >/dev/null
"$regctl" registry set "$AIRGATE_INTERNAL_REGISTRY" --cacert "$(cat "$AIRGATE_INTERNAL_REGISTRY_CA")" >/dev/null
"$regctl" registry login "$AIRGATE_INTERNAL_REGISTRY" -u "$AIRGATE_INTERNAL_REGISTRY_USER" --pass-stdin <<<"$password" >/dev/null 2>&1

run_id=$(date +%s)
log "seeding $IMAGES images into $AIRGATE_UPSTREAM_REGISTRY/bench-$run_id"
"$seed" "$AIRGATE_UPSTREAM_REGISTRY" "bench-$run_id" "$IMAGES" "$SHARED_LAYERS" "$SHARED_MIB" "$UNIQUE_MIB" >"$work/refs.txt"
mapfile -t refs <"$work/refs.txt"
{
  echo "kind: List"
  echo "items:"
  for i in "${!refs[@]}"; do
    echo "- {kind: Pod, metadata: {name: p$i}, spec: {containers: [{name: c, image: \"${refs[$i]}\"}]}}"
  done
} >"$work/pods.yaml"
"$airgate" lock "$work/pods.yaml" --out "$work/airgate.lock" 2>/dev/null
"$airgate" key generate --out "$work/signer" 2>/dev/null

results=$work/results.tsv
: >"$results"
# CPU seconds a perimeter registry has used so far (utime + stime).
registry_cpu() {
  local pid
  pid=$(cat "$AIRGATE_PERIMETER_DIR/run/registry-$1.pid")
  awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$pid/stat"
}
# Every run starts from the same memory: written data flushed, the page
# cache emptied and memory compacted, then the run's inputs ($inputs: the
# upstream registry's storage, or the file or layout the tool reads) read
# into the cache. Otherwise what the previous run left (9 GiB of regctl's
# tars, dirty pages, fragmented memory) decides how much a run pays the
# kernel for page-cache pages: airgate's leg a varied from 2.3 to 3.3 s
# within one run of this script without it.
inputs=()
settle() {
  sync
  if [ -w /proc/sys/vm/drop_caches ]; then
    echo 3 >/proc/sys/vm/drop_caches
    echo 1 >/proc/sys/vm/compact_memory
  fi
  local p
  for p in "${inputs[@]}"; do find "$p" -type f -exec cat {} + >/dev/null; done
}
# measure LEG TOOL CMD...: run CMD under GNU time, append a row (with the
# CPU the registry on the other end spent meanwhile).
measure() {
  local leg=$1 tool=$2
  shift 2
  settle
  local side=upstream t0 t1 c0 c1
  [ "$leg" = b ] && side=internal
  c0=$(registry_cpu $side)
  t0=$(date +%s.%N)
  /usr/bin/time -f '%U %S %M' -o "$work/time.txt" "$@" >"$work/$tool-$leg.out" 2>"$work/$tool-$leg.err" || {
    log "$tool ($leg) failed:"
    tail -5 "$work/$tool-$leg.err" >&2
    exit 1
  }
  t1=$(date +%s.%N)
  c1=$(registry_cpu $side)
  read -r user sys rss <"$work/time.txt"
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$leg" "$tool" "$(echo "$t1 - $t0" | bc)" "$(echo "$user + $sys" | bc)" "$rss" \
    "$(echo "$c1 - $c0" | bc)" >>"$results"
  log "$leg $tool: $(echo "$t1 - $t0" | bc)s"
}

# Peers copy one image per invocation; each gets a script of its commands.
script() { # script NAME LINE-TEMPLATE: {ref} {i} {repo} {rep} replaced per image
  local name=$1 template=$2 i ref repo line
  for i in "${!refs[@]}"; do
    ref=${refs[$i]}
    repo=${ref#*/}
    repo=${repo%:*}
    line=${template//\{ref\}/$ref}
    line=${line//\{i\}/$i}
    line=${line//\{repo\}/$repo}
    printf '%s\n' "$line"
  done >"$work/$name.sh"
  echo "$work/$name.sh"
}
in=$AIRGATE_INTERNAL_REGISTRY

# (a) registry -> file. Outputs are removed before each run (outside the timing).
leg_a() { # leg_a TOOL REP
  inputs=("$AIRGATE_PERIMETER_DIR/data/registry-upstream")
  case $1 in
    airgate)
      rm -f "$work/bundle.tar"; sync
      measure a airgate "$airgate" bundle create --lock "$work/airgate.lock" --out "$work/bundle.tar" \
        --sign-key "$work/signer.key" --jobs "$JOBS" ;;
    skopeo)
      rm -rf "$work/skopeo-layout"; sync
      measure a skopeo bash -e "$(script skopeo-a "skopeo copy --quiet --all --src-tls-verify=false docker://{ref} oci:$work/skopeo-layout:img{i}")" ;;
    crane)
      rm -rf "$work/crane-layout"; sync
      measure a crane "$crane" pull --insecure --format=oci "${refs[@]}" "$work/crane-layout" ;;
    regctl)
      rm -f "$work"/regctl-*.tar; sync
      measure a regctl bash -e "$(script regctl-a "'$regctl' image export {ref} $work/regctl-{i}.tar")" ;;
  esac
}
# (b) file -> internal registry, each run into a fresh prefix.
leg_b() { # leg_b TOOL REP
  local p="$1-$run_id-$2"
  case $1 in
    airgate) inputs=("$work/bundle.tar") ;;
    skopeo) inputs=("$work/skopeo-layout") ;;
    crane) inputs=("$work/crane-layout") ;;
    regctl) inputs=("$work"/regctl-*.tar) ;;
  esac
  case $1 in
    airgate)
      measure b airgate "$airgate" bundle push "$work/bundle.tar" --to "$in/$p" \
        --key "$work/signer.pub" --ca-file "$AIRGATE_INTERNAL_REGISTRY_CA" --jobs "$JOBS" ;;
    skopeo)
      # skopeo remembers where blobs live and would mount them from an
      # earlier run's repositories: make it start from nothing, like the rest.
      rm -f /var/lib/containers/cache/blob-info-cache-v1.boltdb "$HOME/.local/share/containers/cache/blob-info-cache-v1.boltdb"
      measure b skopeo bash -e "$(script skopeo-b "skopeo copy --quiet --all --dest-authfile $DOCKER_CONFIG/config.json --dest-cert-dir $work/certs oci:$work/skopeo-layout:img{i} docker://$in/$p/{repo}:v1")" ;;
    crane)
      measure b crane env SSL_CERT_FILE="$AIRGATE_INTERNAL_REGISTRY_CA" "$crane" push --index "$work/crane-layout" "$in/$p/all:v1" ;;
    regctl)
      measure b regctl bash -e "$(script regctl-b "'$regctl' image import $in/$p/{repo}:v1 $work/regctl-{i}.tar")" ;;
  esac
}

# Take turns: each rep runs the tools in another order, so no tool always
# follows the same one (regctl leaves 9 GiB of tars for the kernel to flush).
orders=("airgate skopeo crane regctl" "regctl crane skopeo airgate" "crane airgate regctl skopeo"
  "skopeo regctl airgate crane")
for rep in $(seq 1 "$REPS"); do
  read -r -a order <<<"${orders[$(((rep - 1) % 4))]}"
  for tool in "${order[@]}"; do leg_a "$tool" "$rep"; done
  inputs=("$work/bundle.tar")
  measure floor sha256 openssl dgst -sha256 "$work/bundle.tar"
  for tool in "${order[@]}"; do leg_b "$tool" "$rep"; done
done
bundle_bytes=$(stat -c %s "$work/bundle.tar")

# The table: medians over the reps.
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
summary=$work/summary.tsv
: >"$summary"
for row in "a airgate" "a skopeo" "a crane" "a regctl" "floor sha256" "b airgate" "b skopeo" "b crane" "b regctl"; do
  read -r leg tool <<<"$row"
  wall=$(awk -F'\t' -v l="$leg" -v t="$tool" '$1 == l && $2 == t { print $3 }' "$results" | median)
  cpu=$(awk -F'\t' -v l="$leg" -v t="$tool" '$1 == l && $2 == t { print $4 }' "$results" | median)
  rss=$(awk -F'\t' -v l="$leg" -v t="$tool" '$1 == l && $2 == t { print $5 }' "$results" | sort -n | tail -1)
  reg=$(awk -F'\t' -v l="$leg" -v t="$tool" '$1 == l && $2 == t { print $6 }' "$results" | median)
  all=$(awk -F'\t' -v l="$leg" -v t="$tool" '$1 == l && $2 == t { printf "%s%.1f", sep, $3; sep = ", " }' "$results")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$leg" "$tool" "$wall" "$cpu" "$rss" "$all" "$reg" >>"$summary"
done
{
  echo "Workload: $IMAGES images x ($SHARED_LAYERS shared x $SHARED_MIB MiB + 1 unique x $UNIQUE_MIB MiB);"
  echo "bundle $(numfmt --to=iec-i --suffix=B "$bundle_bytes"); $(nproc) cores; $REPS runs each, medians; $(date -u +%Y-%m-%d)."
  echo
  echo "| leg | tool | wall s (median) | CPU s | registry CPU s | peak RSS MiB | MiB/s of bundle | every run, s |"
  echo "|---|---|---:|---:|---:|---:|---:|---|"
  awk -F'\t' -v bytes="$bundle_bytes" '{ printf "| %s | %s | %.2f | %.2f | %.2f | %.0f | %.0f | %s |\n", $1, $2, $3, $4, $7, $5 / 1024, bytes / 1048576 / $3, $6 }' "$summary"
  echo
  echo "(registry CPU: what the upstream registry (leg a) or the internal registry (leg b) spent during the run; on 2 cores, (CPU + registry CPU) / 2 bounds the wall time from below)"
  echo
  awk -F'\t' '
    { wall[$1","$2] = $3; if ($2 != "airgate" && $1 != "floor" && (best[$1] == "" || $3 < best[$1])) { best[$1] = $3; who[$1] = $2 } }
    END {
      for (leg in best) printf "- leg %s: airgate %.2fs, best peer %s %.2fs: airgate takes %.2fx the time of the best peer and %.2fx the floor (%.2fs)\n", leg, wall[leg",airgate"], who[leg], best[leg], wall[leg",airgate"] / best[leg], wall[leg",airgate"] / wall["floor,sha256"], wall["floor,sha256"]
    }' "$summary" | sort
} | tee "$root/target/bench/transfer.md"
