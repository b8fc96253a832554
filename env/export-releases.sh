#!/bin/sh
# On the host (git is not in the root): writes each released version's install script and Python
# package, as they were at its release commit (env/releases.txt), under .ruvllm/releases/VERSION/,
# where env/install-extension.sh installs them beside the current version for the upgrade test.
# Outside a git checkout (a source tarball) it writes nothing and says so; that test then skips.
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
out="$src/.ruvllm/releases"
rm -rf "$out"
if ! git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
    echo "==> no git history here: earlier releases not exported (the upgrade test will skip)" >&2
    exit 0
fi
grep -v '^#' "$src/env/releases.txt" | while read -r version commit; do
    [ -n "$version" ] || continue
    dir="$out/$version"
    mkdir -p "$dir/sql"
    # A release's full script is sql/ruvllm--VERSION.sql up to 0.2.0, sql/ruvllm.sql after.
    for script in "sql/ruvllm--$version.sql" sql/ruvllm.sql; do
        if git -C "$src" cat-file -e "$commit:$script" 2>/dev/null; then
            git -C "$src" show "$commit:$script" >"$dir/sql/ruvllm--$version.sql"
            break
        fi
    done
    [ -s "$dir/sql/ruvllm--$version.sql" ] || { echo "export-releases: $version: no install script at $commit" >&2; exit 1; }
    git -C "$src" archive "$commit" python/ruvllm | tar -x -C "$dir"
done
