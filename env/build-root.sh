#!/bin/bash
# Builds (or reuses) the Debian 13 root that ruvllm's tests, demo and local server run in.
#
# The root is cached outside the work tree, keyed by a hash of everything that goes into it, so a
# second build on the same machine takes seconds and a changed input builds a new one. Builds are
# serialised with a lock and published with an atomic rename, so two checkouts (or CI beside a
# working copy) share roots without breaking each other. Every mount lives in a private mount
# namespace (unshare -m): whatever way this script ends, Ctrl-C and kill -9 included, the kernel
# drops the mounts with the namespace.
#
# Prints the root's path on the last line of stdout.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(dirname "$here")
# shellcheck source=env/common.sh
. "$here/common.sh"

require_root
hash=$(root_hash "$src")
root="$RUVLLM_CACHE/roots/$hash"

if [ -e "$root/.ruvllm-root-complete" ]; then
    say "reusing cached root $root"
    echo "$root"
    exit 0
fi

mkdir -p "$RUVLLM_CACHE/roots" "$RUVLLM_CACHE/debs" "$RUVLLM_CACHE/pip" "$RUVLLM_CACHE/apt" \
    "$RUVLLM_CACHE/llama-server"
exec 9>"$RUVLLM_CACHE/build.lock"
say "waiting for the build lock ($RUVLLM_CACHE/build.lock)"
flock 9
if [ -e "$root/.ruvllm-root-complete" ]; then   # another checkout built it while we waited
    say "reusing cached root $root (built by another run)"
    echo "$root"
    exit 0
fi

ensure_host_tools
building="$RUVLLM_CACHE/roots/.building-$hash-$$"
cleanup() { rm -rf "$building"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

t0=$(date +%s)
timed "debootstrap minbase trixie" logged "$RUVLLM_CACHE/debootstrap.log" \
    unshare --mount --propagation private \
    debootstrap --variant=minbase --cache-dir="$RUVLLM_CACHE/debs" trixie "$building" "$DEBIAN_MIRROR" \
    || die "debootstrap failed"

mkdir -p "$building/tmp/ruvllm-src" "$building/root/.cache/pip" "$building/var/cache/apt/archives" \
    "$building/root/.cache/llama-server"
# pip inside the root trusts the host's CA bundle (which may hold a site proxy's CA); apt's
# ca-certificates would replace a copy at the usual place, so it goes beside it.
mkdir -p "$building/etc/ssl"
cp /etc/ssl/certs/ca-certificates.crt "$building/etc/ssl/host-ca-certificates.crt"
cp /etc/resolv.conf "$building/etc/resolv.conf"
# The recipe reads only these files; copying them keeps the root independent of the checkout.
for f in env/install-deps.sh env/models.txt python/requirements.txt tests/requirements.txt; do
    mkdir -p "$building/tmp/ruvllm-src/$(dirname "$f")"
    cp "$src/$f" "$building/tmp/ruvllm-src/$f"
done

timed "install packages into the root (env/install-deps.sh)" \
    unshare --mount --propagation private /bin/sh -ec '
        r=$1; cache=$2
        mount -t proc proc "$r/proc"
        mount --rbind /dev "$r/dev"
        mount --bind "$cache/pip" "$r/root/.cache/pip"
        mount --bind "$cache/apt" "$r/var/cache/apt/archives"
        mount --bind "$cache/llama-server" "$r/root/.cache/llama-server"
        chroot "$r" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
            HOME=/root LANG=C.UTF-8 CMAKE_ARGS="${CMAKE_ARGS:-}" LLAMA_SERVER_CACHE=/root/.cache/llama-server \
            PIP_CERT=/etc/ssl/host-ca-certificates.crt \
            /bin/sh /tmp/ruvllm-src/env/install-deps.sh /tmp/ruvllm-src
    ' sh "$building" "$RUVLLM_CACHE" || die "installing packages failed"

rm -rf "$building/tmp/ruvllm-src" "$building/etc/ssl/host-ca-certificates.crt"
# The cluster runs as the unprivileged postgres user; its home must be writable for the tests.
chroot "$building" /bin/sh -c 'mkdir -p /var/lib/postgresql && chown postgres:postgres /var/lib/postgresql'
touch "$building/.ruvllm-root-complete"
mv "$building" "$root"
trap - EXIT
say "root ready in $(( $(date +%s) - t0 ))s: $root ($(du -sh "$root" | cut -f1))"
echo "$root"
