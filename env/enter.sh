#!/bin/bash
# Runs a command inside the ruvllm root, with this checkout mounted at /src.
#
#   env/enter.sh [--user NAME] [--layer test|server] [--bind DIR[:ro]]... -- CMD ARGS...
#   env/enter.sh [--user NAME] --into-server -- CMD ARGS...
#
# The cached root (env/build-root.sh) is the read-only lower layer of an overlay; what a run
# writes (the extension's `make install`, say) lands in an upper layer of this checkout's own, so
# checkouts never see each other's installs and the cache stays clean:
#   --layer test    a throwaway upper layer, deleted when the command ends (the default);
#   --layer server  the persistent layer of the local server (`make up`), under .ruvllm/server;
#   --into-server   joins the running local server's mount namespace instead of mounting anew
#                   (an overlay's upper layer must not be mounted twice at once).
#   --bind DIR[:ro] also mounts the host directory DIR at the same path inside the root, read-only
#                   with :ro (a data set read in place, a cache kept between runs); repeatable,
#                   not with --into-server. Without it nothing of the host but the checkout is seen.
# All mounts are made in a private mount namespace, so none outlives the processes using it and
# none is ever visible on the host (`findmnt` shows nothing).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(dirname "$here")
# shellcheck source=env/common.sh
. "$here/common.sh"

user=root layer=test into_server=0 binds=()
while [ $# -gt 0 ]; do
    case $1 in
        --user) user=$2; shift 2 ;;
        --layer) layer=$2; shift 2 ;;
        --into-server) into_server=1; shift ;;
        --bind)
            [ $# -ge 2 ] || die "enter.sh: --bind needs a directory"
            dir=${2%:ro} mode=rw
            [ "$dir" = "$2" ] || mode=ro
            [ -d "$dir" ] || die "enter.sh: --bind $2: no such directory"
            dir=$(realpath "$dir")
            case $dir in
                *[[:space:]]*|/|/src|/src/*|/proc|/proc/*|/sys|/sys/*|/dev|/dev/*|/tmp|/tmp/*)
                    die "enter.sh: --bind '$dir': not a directory that can be bound" ;;
            esac
            binds+=("$mode:$dir"); shift 2 ;;
        --) shift; break ;;
        *) die "enter.sh: unknown option $1" ;;
    esac
done
[ $# -gt 0 ] || die "enter.sh: no command given"
require_root

state="$src/.ruvllm"
mkdir -p "$state"

# The command line run inside the root: a clean environment, then the unprivileged user if asked.
inner_env=(/usr/bin/env -i
    PATH=/usr/lib/postgresql/17/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 TERM="${TERM:-dumb}"
    CI="${CI:-}" RUVLLM_PORT="${RUVLLM_PORT:-5433}" SQL="${SQL:-}" PGDATA=/var/lib/ruvllm/pgdata)
# RUVLLM_JAVA_HOME and RUVLLM_JDBC_JAR: a JDK and a JDBC driver jar bound in (see `make test`).
for var in PYTEST_ADDOPTS RUVLLM_BENCH_SCALE RUVLLM_JAVA_HOME RUVLLM_JDBC_JAR RUVLLM_LOOPS RUVLLM_DEMO_DOCS; do
    [ -n "${!var:-}" ] && inner_env+=("$var=${!var}")
done
if [ "$user" = root ]; then
    inner=("${inner_env[@]}" HOME=/root)
else
    inner=("${inner_env[@]}" HOME=/var/lib/postgresql USER="$user"
           setpriv --reuid="$user" --regid="$user" --init-groups)
fi

server_pid() {
    local pidfile="$state/pgdata/postmaster.pid" pid
    [ -r "$pidfile" ] || return 1
    pid=$(head -1 "$pidfile")
    [ -n "$pid" ] && [ -d "/proc/$pid" ] && grep -q postgres "/proc/$pid/comm" 2>/dev/null || return 1
    echo "$pid"
}

# A running local server holds the server layer mounted in its own namespace: join it rather
# than mount the same upper layer twice (overlayfs forbids that, and sockets would not be shared).
if [ $into_server = 1 ] || { [ "$layer" = server ] && server_pid >/dev/null; }; then
    pid=$(server_pid) || die "the local server is not running; start it with: make up"
    [ ${#binds[@]} = 0 ] || die "enter.sh: --bind cannot join the running server's namespace"
    # chroot(1), unlike nsenter --root, also moves into the new root's /.
    exec nsenter --target "$pid" --mount -- chroot "$state/server/merged" \
        /bin/sh -c 'cd /src && exec "$@"' sh "${inner[@]}" "$@"
fi

root=$(bash "$here/build-root.sh" | tail -1)
[ -d "$root" ] || die "no root at '$root'"
hash=$(basename "$root")

# The postgres user inside must be able to read the checkout (a `mktemp -d` clone is mode 700).
if [ "$(( 0$(stat -c %a "$src") & 5 ))" != 5 ]; then
    chmod o+rx "$src"
fi

case $layer in
    test)
        # Leftovers of runs killed with -9: their processes are gone, so are their mounts.
        for old in "$state"/test-*; do
            [ -d "$old" ] || continue
            [ -d "/proc/${old##*-}" ] || rm -rf "$old"
        done
        layer_dir="$state/test-$$"
        trap 'rm -rf "$layer_dir"' EXIT
        ;;
    server)
        layer_dir="$state/server"
        # A new root invalidates what was installed over the old one; the data directory stays.
        if [ -d "$layer_dir" ] && [ "$(cat "$layer_dir/root-hash" 2>/dev/null)" != "$hash" ]; then
            say "root changed: resetting the server's overlay layer (data in .ruvllm/pgdata is kept)"
            rm -rf "$layer_dir"
        fi
        ;;
    *) die "enter.sh: unknown layer '$layer' (test or server)" ;;
esac
mkdir -p "$layer_dir/upper" "$layer_dir/work" "$layer_dir/merged" "$state/pgdata"
echo "$hash" >"$layer_dir/root-hash"

set +e
RUVLLM_ENTER_BINDS="${binds[*]}" unshare --mount --propagation private /bin/bash -ec '
    root=$1 layer=$2 src=$3 state=$4; shift 4
    m=$layer/merged
    mount -t overlay overlay -o "lowerdir=$root,upperdir=$layer/upper,workdir=$layer/work" "$m"
    mount -t proc proc "$m/proc"
    mount -t sysfs -o ro sysfs "$m/sys"
    mount --rbind /dev "$m/dev"
    mount -t tmpfs -o mode=1777 tmpfs "$m/tmp"
    mkdir -p "$m/src" "$m/var/lib/ruvllm/pgdata"
    mount --bind "$src" "$m/src"
    mount --bind "$state/pgdata" "$m/var/lib/ruvllm/pgdata"
    for b in $RUVLLM_ENTER_BINDS; do
        mode=${b%%:*} dir=${b#*:}
        mkdir -p "$m$dir"
        mount --bind "$dir" "$m$dir"
        [ "$mode" = rw ] || mount -o remount,bind,ro "$m$dir"
    done
    exec chroot "$m" /bin/sh -c "cd /src && exec \"\$@\"" sh "$@"
' sh "$root" "$layer_dir" "$src" "$state" "${inner[@]}" "$@"
rc=$?
exit $rc
