# Shared helpers for the env/ scripts (sourced, not run).
# shellcheck shell=bash

RUVLLM_CACHE=${RUVLLM_CACHE:-/var/cache/ruvllm}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'ruvllm env: error: %s\n' "$*" >&2; exit 1; }

# timed LABEL CMD...: runs CMD, then prints how long it took.
timed() {
    local label=$1 t0 rc
    shift
    say "$label ..."
    t0=$(date +%s)
    "$@" && rc=0 || rc=$?
    say "$label: $(( $(date +%s) - t0 ))s$([ $rc = 0 ] || echo " (failed, exit $rc)")"
    return $rc
}

# logged LOGFILE CMD...: runs CMD with its output in LOGFILE, and shows the tail if it fails.
logged() {
    local log=$1 rc
    shift
    "$@" >"$log" 2>&1 && rc=0 || rc=$?
    [ $rc = 0 ] || { tail -25 "$log" >&2; say "full log: $log"; }
    return $rc
}

require_root() {
    [ "$(id -u)" = 0 ] || die "this needs root (debootstrap, mounts and chroot do); run it as root, e.g. sudo make ${MAKE_TARGET:-env}"
}

# What the root is made of; any change here builds a new root.
root_inputs() {
    local src=$1
    printf '%s\n' "suite=trixie" "CMAKE_ARGS=${CMAKE_ARGS:-}"
    cat "$src/env/build-root.sh" "$src/env/install-deps.sh" "$src/env/models.txt" \
        "$src/python/requirements.txt" "$src/tests/requirements.txt"
}

root_hash() { root_inputs "$1" | sha256sum | cut -c1-16; }

ensure_host_tools() {
    local missing=()
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v unshare >/dev/null || missing+=(util-linux)
    [ ${#missing[@]} = 0 ] && return 0
    timed "host packages: ${missing[*]}" logged "$RUVLLM_CACHE/host-apt.log" \
        sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ${missing[*]}"
}

# podman and runc for `make docker-test` (env/docker-test.sh): Debian's podman builds the Dockerfile
# without a Docker engine. runc, not Debian's default crun: crun 1.8 refuses hosts whose cgroups are
# in hybrid mode (v1 controllers beside a v2 mount), and runc runs on v1, hybrid and v2 alike.
ensure_podman() {
    local missing=()
    command -v podman >/dev/null || missing+=(podman)
    command -v runc >/dev/null || missing+=(runc)
    [ ${#missing[@]} = 0 ] && return 0
    mkdir -p "$RUVLLM_CACHE"
    say "installing ${missing[*]} from Debian on this host (make docker-test builds the image with podman)"
    timed "host packages: ${missing[*]}" logged "$RUVLLM_CACHE/host-apt.log" \
        sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ${missing[*]}"
}
