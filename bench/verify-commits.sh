#!/usr/bin/env bash
# bench/verify-commits.sh: commit trust on a long history. A generated
# history of COMMITS signed commits (SSH Ed25519 by default, or OpenPGP),
# verified whole by `airgate verify-commits` on one core (taskset -c 0),
# against the peer: `git verify-commit` of the same commits with
# gpg.ssh.allowedSignersFile (git runs ssh-keygen, or gpg, once or twice a
# commit). Each timed RUNS times; the median is reported.
#
#   COMMITS=10000 FORMAT=ssh RUNS=3 bench/verify-commits.sh
#   COMMITS=2000 FORMAT=openpgp bench/verify-commits.sh
#
# The history is cached in target/bench/verify-commits/FORMAT-COMMITS (made
# once: signing takes a few minutes). AIRGATE=PATH runs that binary instead
# of building this checkout. Output: a Markdown table on stdout.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"

COMMITS=${COMMITS:-10000}
FORMAT=${FORMAT:-ssh}
RUNS=${RUNS:-3}

if [ -n "${AIRGATE:-}" ]; then
  airgate=$AIRGATE
else
  cargo build --release --locked -p airgate >&2
  airgate=$root/target/release/airgate
fi

work=$root/target/bench/verify-commits/$FORMAT-$COMMITS
export GIT_CONFIG_NOSYSTEM=1 HOME=$work/home LC_ALL=C
unset GIT_DIR GIT_WORK_TREE
if [ ! -f "$work/done" ]; then
  rm -rf "$work" && mkdir -p "$work/home" "$work/signers"
  export GNUPGHOME=$work/gnupg
  mkdir -p "$GNUPGHOME" && chmod 700 "$GNUPGHOME"
  email=signer@corp.example
  case $FORMAT in
    ssh)
      ssh-keygen -q -t ed25519 -N '' -C "$email" -f "$work/key"
      echo "$email $(cut -d' ' -f1,2 "$work/key.pub")" > "$work/signers/allowed_signers"
      sign=(-c gpg.format=ssh -c user.signingkey="$work/key")
      ;;
    openpgp)
      gpg --batch --passphrase '' --quick-gen-key "Signer <$email>" ed25519 sign never 2>/dev/null
      gpg --batch --export --armor "$email" > "$work/signers/keys.asc"
      sign=(-c gpg.format=openpgp -c user.signingkey="$email")
      ;;
    *) die "FORMAT is ssh or openpgp" ;;
  esac
  git init -q --bare "$work/repo.git"
  export GIT_DIR=$work/repo.git
  tree=$(git mktree </dev/null)
  log "signing $COMMITS commits ($FORMAT) into $work/repo.git"
  parent=()
  for i in $(seq 1 "$COMMITS"); do
    c=$(git -c user.name=Signer -c user.email=$email "${sign[@]}" commit-tree -S "$tree" "${parent[@]}" -m "change $i" -m "Ticket: T-$i")
    parent=(-p "$c")
    [ $((i % 1000)) = 0 ] && log "  $i"
  done
  git update-ref refs/heads/main "$c"
  unset GIT_DIR
  touch "$work/done"
fi
export GNUPGHOME=$work/gnupg

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
time_of() { local t0; t0=$(now); "$@" >/dev/null 2>&1 || die "failed: $*"; since "$t0"; }

log "airgate verify-commits, one core, $RUNS runs"
airgate_s=$(for _ in $(seq "$RUNS"); do
  time_of taskset -c 0 "$airgate" verify-commits "$work/repo.git" --signers "$work/signers" --to main -o json
done | median)
# --to main without --from verifies what main brings in: for a history
# without merges, only its head. The whole history is the range from the root.
root_commit=$(git --git-dir "$work/repo.git" rev-list --max-parents=0 main)
airgate_all=$(for _ in $(seq "$RUNS"); do
  time_of taskset -c 0 "$airgate" verify-commits "$work/repo.git" --signers "$work/signers" --from "$root_commit" --to main -o json
done | median)

log "git verify-commit of the same commits"
allowed=$work/signers/allowed_signers
[ -f "$allowed" ] || allowed=/dev/null
git_s=$(git --git-dir "$work/repo.git" rev-list "$root_commit..main" > "$work/commits"
  time_of taskset -c 0 xargs -a "$work/commits" git --git-dir "$work/repo.git" -c gpg.ssh.allowedSignersFile="$allowed" verify-commit)

n=$((COMMITS - 1))
rate() { python3 -c "import sys; print(f'{int(sys.argv[1]) / max(float(sys.argv[2]), 0.05):.0f}')" "$1" "$2"; }
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / max(float(sys.argv[2]), 0.05):.1f}')" "$1" "$2"; }
cat <<EOF
Commit verification: $(utc), $FORMAT signatures, one core (taskset -c 0), median of $RUNS

| tool | commits | time (s) | commits/s |
|---|---|---|---|
| airgate verify-commits (head only) | 1 | $airgate_s | - |
| airgate verify-commits | $n | $airgate_all | $(rate "$n" "$airgate_all") |
| git verify-commit (ssh-keygen/gpg per commit) | $n | $git_s | $(rate "$n" "$git_s") |

airgate is $(ratio "$git_s" "$airgate_all")x git's speed on this history.
EOF
