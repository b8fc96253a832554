#!/bin/bash
# `make docker-test`: builds docker/Dockerfile with podman and smoke-tests the image. Needs root and
# Debian's mirror and PyPI, but no Docker engine and no image registry: the `debian:trixie-slim`
# the Dockerfile starts FROM is a debootstrap root imported into podman (env/docker-base.sh).
#
# The test starts a container (port 5432 published on a free 127.0.0.1 port only), waits until the
# server the entrypoint initialised takes TCP connections, and then, over that port with the
# generated password: checks the entrypoint created ruvllm in database ruvllm, runs CREATE
# EXTENSION ruvllm CASCADE in a new database, ingests a document and asks one ruvllm_query, whose
# answer must have a text and the document among its sources. The container and its volume are
# removed however the test ends; the image stays (RUVLLM_DOCKER_IMAGE, default localhost/ruvllm:dev).
#
# The build runs at nice 19 (it compiles llama.cpp: ~10+ minutes on 2 cores the first time; podman
# keeps its layers, so a rebuild after a source change only reruns `make install`).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(dirname "$here")
# shellcheck source=env/common.sh
. "$here/common.sh"

MAKE_TARGET=docker-test require_root
ensure_podman
mkdir -p "$RUVLLM_CACHE"
exec 8>"$RUVLLM_CACHE/docker.lock"
say "waiting for the docker-test lock ($RUVLLM_CACHE/docker.lock)"
flock 8

image=${RUVLLM_DOCKER_IMAGE:-localhost/ruvllm:dev}
version=$(sed -n "s/^default_version *= *'\(.*\)'/\1/p" "$src/ruvllm.control")
log="$RUVLLM_CACHE/docker-build.log"
podman=(podman --runtime runc)
# Without CAP_SYS_RESOURCE (a sandboxed root), podman's default rlimits for a container (1048576
# open files and processes) cannot be set, and the container fails to start: it gets the limits
# this process has instead (podman caps its own process limit at 32768).
limits=()
if (( ! ((0x$(sed -n 's/^CapEff:\t//p' /proc/self/status) >> 24) & 1) )); then
    nproc=$(ulimit -Hu); [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ] && nproc=32768
    limits=(--ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit "nproc=$nproc:$nproc")
fi

base=$(bash "$here/docker-base.sh" | tail -1)

# The host's CA bundle goes to pip as a build secret: it holds any site proxy's CA (and is not
# stored in the image).
secret=()
[ -s /etc/ssl/certs/ca-certificates.crt ] && secret=(--secret id=site_ca,src=/etc/ssl/certs/ca-certificates.crt)
build() {
    # --from: the imported base stands for debian:trixie-slim; --pull=never: no registry is asked.
    nice -n 19 "${podman[@]}" build --pull=never --from "$base" --network host "${limits[@]}" \
        "${secret[@]}" -f "$src/docker/Dockerfile" -t "$image" "$src" 2>&1 \
        | tee "$log" | grep --line-buffered -E '^STEP |\[install\]|--> Using cache' | sed -u 's/^/    /'
}
timed "podman build $image (log: $log)" build || { tail -30 "$log" >&2; die "the image did not build"; }
say "image $image: $(( $("${podman[@]}" image inspect -f '{{.Size}}' "$image") / 1000000 )) MB"

name=ruvllm-docker-test-$$
password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
cleanup() {
    local rc=$?
    if [ $rc != 0 ] && "${podman[@]}" container exists "$name"; then
        say "the container's last log lines:"
        "${podman[@]}" logs --tail 30 "$name" 2>&1 | sed 's/^/    [container] /' >&2
    fi
    "${podman[@]}" rm -f -v -t 10 "$name" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# posix dynamic shared memory lives in /dev/shm (64 MB in a container by default), too small for
# parallel index builds with the entrypoint's maintenance_work_mem of 512MB.
"${podman[@]}" run -d --name "$name" "${limits[@]}" --shm-size 1g \
    -e POSTGRES_PASSWORD="$password" -p 127.0.0.1::5432 "$image" >/dev/null \
    || die "the container did not start"
address=$("${podman[@]}" port "$name" 5432/tcp)
port=${address##*:}
case $address in 127.0.0.1:*) ;; *) die "port 5432 is published on $address, not on loopback only" ;; esac

# The entrypoint's first start initialises the cluster and creates the extension on a server that
# listens on no TCP port, so a TCP answer means the real server is up. A container that exits ends
# the wait; so does a 10-minute guard against a server that neither starts nor fails.
ready() {
    local i
    for i in $(seq 600); do
        [ "$("${podman[@]}" inspect -f '{{.State.Running}}' "$name")" = true ] || return 1
        "${podman[@]}" exec "$name" pg_isready -q -h 127.0.0.1 -p 5432 && return 0
        sleep 1
    done
    return 1
}
timed "container $name: first start (initdb, CREATE EXTENSION) until it takes TCP connections" ready \
    || die "the container's server did not come up"
"${podman[@]}" logs "$name" 2>&1 | sed 's/^/    [container] /' | tail -12 >&2

# A client from the image itself, on the host network: it reaches the server only through the
# published loopback port, with the password (scram-sha-256).
sql() {
    local db=$1
    shift
    "${podman[@]}" run --rm -i --network host "${limits[@]}" --entrypoint psql -e PGPASSWORD="$password" \
        "$image" -X -q -At -v ON_ERROR_STOP=1 "host=127.0.0.1 port=$port user=postgres dbname=$db" "$@"
}

installed=$(sql ruvllm -c "SELECT extversion FROM pg_extension WHERE extname = 'ruvllm'")
[ "$installed" = "$version" ] || die "database ruvllm has ruvllm '$installed', expected $version"
say "the entrypoint created ruvllm $installed in database ruvllm"
sql ruvllm -c "SELECT ruvllm_info()" | sed -u 's/^/    /'
sql postgres -c "CREATE DATABASE ruvllm_smoke"
timed "CREATE EXTENSION ruvllm CASCADE (database ruvllm_smoke)" \
    sql ruvllm_smoke -c "CREATE EXTENSION ruvllm CASCADE"

say "ruvllm_query ..."
answer=$(sql ruvllm_smoke <<'SQL'
SELECT ruvllm_ingest('The witness log is rotated by retention: ruvllm_set_retention(''witness'', ''7 days'') '
    || 'sets how long rows are kept, and ruvllm_apply_retention() drops or archives whole expired days.',
    'Document', 'docker-test') \g /dev/null
SELECT ruvllm_query('How do I rotate the witness log?');
SQL
)
python3 - "$answer" <<'EOF' || die "ruvllm_query did not answer with a text and the ingested document among its sources"
import json, sys
answer = json.loads(sys.argv[1])
assert answer["text"].strip(), answer
assert any(s["excerpt"].startswith("The witness log is rotated") for s in answer["sources"]), answer
print("    text:    " + " ".join(answer["text"].split())[:300])
print("    sources: %d, model %s, %s ms total" % (len(answer["sources"]), answer["routing"]["model"],
                                                answer["latency_ms"]["total"]))
EOF

timed "podman stop (PostgreSQL shuts down on SIGTERM)" "${podman[@]}" stop -t 60 "$name" >/dev/null
status=$("${podman[@]}" inspect -f '{{.State.ExitCode}}' "$name")
[ "$status" = 0 ] || die "the container exited with status $status"
say "docker-test passed: image $image, ruvllm $version"
