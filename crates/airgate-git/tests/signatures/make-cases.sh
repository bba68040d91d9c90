#!/usr/bin/env bash
# make-cases.sh OUT: signed (and unsigned, tampered, expired, revoked...)
# commits and tags made with the real git, gpg and ssh-keygen, and git's own
# verdict on each under several signer configurations.
#
# Writes:
#   OUT/repo                 the repository (non-bare)
#   OUT/config/NAME/         each configuration as airgate reads it:
#                            allowed_signers and keys.asc
#   OUT/cases.tsv            object <TAB> kind <TAB> config <TAB> git verdict
#                            (good|bad) <TAB> label
#
# git's verdict: `git verify-commit` / `git verify-tag` with
# gpg.ssh.allowedSignersFile and GNUPGHOME of that configuration.
set -euo pipefail
out=$1
mkdir -p "$out"
out=$(cd "$out" && pwd)
unset GIT_SSL_CAINFO GIT_DIR GIT_WORK_TREE
export GIT_CONFIG_NOSYSTEM=1 HOME=$out/home LC_ALL=C TZ=UTC
mkdir -p "$HOME"
git config --global init.defaultBranch main
git config --global advice.detachedHead false

# ---- keys -------------------------------------------------------------------
sign_home=$out/gnupg-sign
mkdir -p "$sign_home" && chmod 700 "$sign_home"
gpg_() { gpg --homedir "$sign_home" --batch --pinentry-mode loopback --passphrase '' "$@"; }
fpr_of() { gpg_ --with-colons --list-keys "$1" | awk -F: '/^fpr/ {print $10; exit}'; }

gpg_ --quick-gen-key "Pat Ed <pgp-ed@corp.example>" ed25519 sign never 2>/dev/null
gpg_ --quick-gen-key "Rosa Rsa <pgp-rsa@corp.example>" rsa2048 sign never 2>/dev/null
gpg_ --quick-gen-key "Eci Ec <pgp-ec@corp.example>" nistp256 sign never 2>/dev/null
gpg_ --quick-gen-key "Sue Sub <pgp-sub@corp.example>" ed25519 cert never 2>/dev/null
gpg_ --quick-add-key "$(fpr_of pgp-sub@corp.example)" ed25519 sign never 2>/dev/null
gpg_ --quick-gen-key "Rex Revoked <pgp-revoked@corp.example>" ed25519 sign never 2>/dev/null
gpg_ --quick-gen-key "Una Unknown <pgp-unknown@corp.example>" ed25519 sign never 2>/dev/null

ssh_dir=$out/ssh
mkdir -p "$ssh_dir"
ssh-keygen -q -t ed25519 -N '' -C ed -f "$ssh_dir/ed"
ssh-keygen -q -t rsa -b 2048 -N '' -C rsa -f "$ssh_dir/rsa"
ssh-keygen -q -t ecdsa -b 256 -N '' -C ec256 -f "$ssh_dir/ec256"
ssh-keygen -q -t ecdsa -b 384 -N '' -C ec384 -f "$ssh_dir/ec384"
ssh-keygen -q -t ed25519 -N '' -C stranger -f "$ssh_dir/stranger"
ssh_keys="ed rsa ec256 ec384"

# ---- the repository ----------------------------------------------------------
repo=$out/repo
git init -q "$repo"
cd "$repo"
export GNUPGHOME=$sign_home
cases=()
echo 0 > "$out/count"
# commit_as EMAIL SIGNING... : a commit by EMAIL, signed as the rest says
commit_as() {
  local email=$1; shift
  # (runs in a subshell: the counter lives in a file)
  n=$(( $(cat "$out/count") + 1 )); echo "$n" > "$out/count"
  echo "$n" > "f$n"
  git add "f$n"
  local sign=()
  [ $# -gt 0 ] && sign=(-S)
  git -c user.name="${email%@*}" -c user.email="$email" "$@" commit -q "${sign[@]}" -m "change $n" -m "Ticket: T-$n"
  git rev-parse HEAD
}
ssh_sign() { echo -c gpg.format=ssh -c user.signingkey="$ssh_dir/$1"; }
pgp_sign() { echo -c gpg.format=openpgp -c user.signingkey="$(fpr_of "$1")"; }
record() { cases+=("$1	$2	$3"); }   # object kind label

# A commit object with its message changed after signing (signature kept).
tamper() {
  git cat-file commit "$1" | sed 's/^change \([0-9]*\)$/change \1 (tampered)/' \
    | git hash-object -t commit -w --literally --stdin
}

for k in $ssh_keys; do
  c=$(commit_as "$k@corp.example" $(ssh_sign "$k")); record "$c" commit "ssh-$k-good"
  c=$(commit_as "mallory@corp.example" $(ssh_sign "$k")); record "$c" commit "ssh-$k-committer-not-principal"
  record "$(tamper "$c")" commit "ssh-$k-tampered"
  c=$(GIT_COMMITTER_DATE="2021-06-01T12:00:00Z" commit_as "$k@corp.example" $(ssh_sign "$k")); record "$c" commit "ssh-$k-made-in-2021"
  git -c user.name="$k" -c user.email="$k@corp.example" -c gpg.format=ssh -c user.signingkey="$ssh_dir/$k" tag -s -m "release $k" "ssh-$k" HEAD
  record "$(git rev-parse "ssh-$k")" tag "ssh-$k-signed-tag"
  git checkout -q -b "side-$k" HEAD~1
  commit_as "$k@corp.example" $(ssh_sign "$k") >/dev/null
  git checkout -q main
  git -c user.name="$k" -c user.email="$k@corp.example" -c gpg.format=ssh -c user.signingkey="$ssh_dir/$k" \
    merge -q --no-ff -S -m "merge side-$k" "side-$k"
  record "$(git rev-parse HEAD)" commit "ssh-$k-signed-merge"
done
c=$(commit_as "stranger@corp.example" $(ssh_sign stranger)); record "$c" commit "ssh-key-listed-nowhere"

# An SSH signature made for the namespace "file", put where git's would be.
c=$(commit_as "ed@corp.example")
sig=$(git cat-file commit "$c" | ssh-keygen -q -Y sign -n file -f "$ssh_dir/ed" 2>/dev/null)
forged=$(git cat-file commit "$c" | awk -v sig="$sig" '
  BEGIN { n = split(sig, lines, "\n") }
  /^committer / && !done { print; printf "gpgsig %s\n", lines[1]; for (i = 2; i <= n; i++) printf " %s\n", lines[i]; done = 1; next }
  { print }' | git hash-object -t commit -w --literally --stdin)
record "$forged" commit "ssh-signed-for-namespace-file"

for who in ed rsa ec sub; do
  email=pgp-$who@corp.example
  c=$(commit_as "$email" $(pgp_sign "$email")); record "$c" commit "pgp-$who-good"
  c=$(commit_as "mallory@corp.example" $(pgp_sign "$email")); record "$c" commit "pgp-$who-committer-not-user-id"
  record "$(tamper "$c")" commit "pgp-$who-tampered"
  git -c user.name="$who" -c user.email="$email" -c gpg.format=openpgp -c user.signingkey="$(fpr_of "$email")" \
    tag -s -m "release pgp $who" "pgp-$who" HEAD
  record "$(git rev-parse "pgp-$who")" tag "pgp-$who-signed-tag"
  git checkout -q -b "side-pgp-$who" HEAD~1
  commit_as "$email" $(pgp_sign "$email") >/dev/null
  git checkout -q main
  git -c user.name="$who" -c user.email="$email" -c gpg.format=openpgp -c user.signingkey="$(fpr_of "$email")" \
    merge -q --no-ff -S -m "merge side-pgp-$who" "side-pgp-$who"
  record "$(git rev-parse HEAD)" commit "pgp-$who-signed-merge"
done
c=$(commit_as pgp-revoked@corp.example $(pgp_sign pgp-revoked@corp.example)); record "$c" commit "pgp-revoked-key"
c=$(commit_as pgp-unknown@corp.example $(pgp_sign pgp-unknown@corp.example)); record "$c" commit "pgp-key-given-nowhere"
# Keys that expire a few seconds from now, made just before they sign (a
# loaded machine must not let them expire before signing).
gpg_ --quick-gen-key "Exa Expired <pgp-expired@corp.example>" ed25519 sign seconds=5 2>/dev/null
gpg_ --quick-gen-key "Xia Subexp <pgp-subexp@corp.example>" ed25519 cert never 2>/dev/null
gpg_ --quick-add-key "$(fpr_of pgp-subexp@corp.example)" ed25519 sign seconds=5 2>/dev/null
expiring_since=$(date +%s)
c=$(commit_as pgp-expired@corp.example $(pgp_sign pgp-expired@corp.example)); record "$c" commit "pgp-expired-key"
c=$(commit_as pgp-subexp@corp.example $(pgp_sign pgp-subexp@corp.example)); record "$c" commit "pgp-expired-subkey"
c=$(commit_as nobody@corp.example); record "$c" commit "unsigned"
git -c user.name=nobody -c user.email=nobody@corp.example tag -a -m "unsigned tag" unsigned-tag HEAD
record "$(git rev-parse unsigned-tag)" tag "unsigned-tag"

# The revocation gpg wrote when it made the key, imported: the key is revoked.
revoked_fpr=$(fpr_of pgp-revoked@corp.example)
sed 's/^:-----/-----/' "$sign_home/openpgp-revocs.d/$revoked_fpr.rev" | gpg_ --import 2>/dev/null
# Let the expiring keys expire.
while [ $(( $(date +%s) - expiring_since )) -le 6 ]; do sleep 1; done

# ---- configurations -------------------------------------------------------------
# config NAME OPTIONS PRINCIPAL PGP-EMAILS...: allowed_signers lines for every
# SSH key (PRINCIPAL: "owner" for each key's own email) and the OpenPGP keys named.
config() {
  local name=$1 options=$2 principal=$3; shift 3
  local dir=$out/config/$name home=$out/gnupg-$name
  mkdir -p "$dir" "$home" && chmod 700 "$home"
  : > "$dir/allowed_signers"
  for k in $ssh_keys; do
    [ "$principal" = none ] && break
    local p=$principal
    [ "$p" = owner ] && p=$k@corp.example
    echo "$p $options $(cut -d' ' -f1,2 "$ssh_dir/$k.pub")" >> "$dir/allowed_signers"
  done
  for email in "$@"; do
    gpg_ --export "$(fpr_of "$email")" | gpg --homedir "$home" --batch --import 2>/dev/null
  done
  gpg --homedir "$home" --batch --export --armor > "$dir/keys.asc"
  [ -s "$dir/keys.asc" ] || rm "$dir/keys.asc"
  for entry in "${cases[@]}"; do
    IFS=$'\t' read -r object kind label <<<"$entry"
    local verdict=bad
    if GNUPGHOME=$home git -c gpg.ssh.allowedSignersFile="$dir/allowed_signers" "verify-$kind" "$object" >/dev/null 2>&1; then
      verdict=good
    fi
    printf '%s\t%s\t%s\t%s\t%s\n' "$object" "$kind" "$name" "$verdict" "$label" >> "$out/cases.tsv"
  done
}
all_pgp="pgp-ed@corp.example pgp-rsa@corp.example pgp-ec@corp.example pgp-sub@corp.example pgp-revoked@corp.example pgp-expired@corp.example pgp-subexp@corp.example"
: > "$out/cases.tsv"
config all 'namespaces="git"' owner $all_pgp
config none '' none
config namespace-file 'namespaces="file"' owner
config valid-before-2022 'valid-before="20220101Z"' owner pgp-rsa@corp.example
config valid-after-2030 'valid-after="20300101Z"' owner pgp-ed@corp.example
config wildcard 'valid-after="20200101Z"' '*@corp.example,!mallory@corp.example' $all_pgp
wc -l < "$out/cases.tsv" >&2
