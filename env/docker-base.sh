#!/bin/bash
# Makes (or reuses) a local stand-in for the `debian:trixie-slim` image docker/Dockerfile starts
# FROM, for hosts that reach Debian's mirror but no image registry: a debootstrap minbase trixie,
# slimmed the way Debian's official slim images are (no docs, man pages or translations; the
# official apt sources with updates and security), imported into podman.
#
# The root tarball is cached under $RUVLLM_CACHE/docker-base/, and the image named
# localhost/ruvllm-base:trixie-slim-<hash>, keyed by a hash of this script, so a second run takes
# seconds and a changed recipe makes a new base. Prints the image name on the last line of stdout.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=env/common.sh
. "$here/common.sh"

require_root
command -v podman >/dev/null || die "podman is not installed (make docker-test installs it)"
hash=$( { echo "suite=trixie variant=minbase"; cat "$0"; } | sha256sum | cut -c1-16)
image="localhost/ruvllm-base:trixie-slim-$hash"
tarball="$RUVLLM_CACHE/docker-base/trixie-slim-$hash.tar"

if podman image exists "$image"; then
    say "reusing base image $image"
    echo "$image"
    exit 0
fi

mkdir -p "$RUVLLM_CACHE/docker-base" "$RUVLLM_CACHE/debs"
if [ ! -s "$tarball" ]; then
    building="$RUVLLM_CACHE/docker-base/.building-$hash-$$"
    cleanup() { rm -rf "$building" "$tarball.$$"; }
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    timed "debootstrap minbase trixie (base image)" logged "$RUVLLM_CACHE/docker-base/debootstrap.log" \
        unshare --mount --propagation private \
        debootstrap --variant=minbase --cache-dir="$RUVLLM_CACHE/debs" trixie "$building" "$DEBIAN_MIRROR" \
        || die "debootstrap failed (log: $RUVLLM_CACHE/docker-base/debootstrap.log)"

    # What debuerreotype does for Debian's official slim images: dpkg leaves out documentation
    # and translations from now on, and what debootstrap already unpacked of them goes.
    cat >"$building/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/man/*
EOF
    find "$building/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "$building/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$building"/usr/share/{groff,info,linda,lintian,man}/*
    find "$building/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
    # The official image's apt settings: no package files or translations kept.
    cat >"$building/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    echo 'Acquire::Languages "none";' >"$building/etc/apt/apt.conf.d/docker-no-languages"
    rm -f "$building/etc/apt/sources.list"
    cat >"$building/etc/apt/sources.list.d/debian.sources" <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie trixie-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: trixie-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    # A container gets its resolv.conf and hostname from the runtime.
    rm -rf "$building"/var/lib/apt/lists/* "$building"/var/cache/apt/*.bin "$building"/var/cache/apt/archives/*.deb \
        "$building"/var/log/*.log "$building"/etc/resolv.conf "$building"/etc/hostname
    tar --numeric-owner --xattrs -C "$building" -cf "$tarball.$$" . || die "packing the base root failed"
    mv "$tarball.$$" "$tarball"
    rm -rf "$building"
    trap - EXIT
fi

# PATH as the official image sets it: the Dockerfile extends it with ENV PATH=...:$PATH.
timed "podman import $image" logged "$RUVLLM_CACHE/docker-base/import.log" \
    podman import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' \
        "$tarball" "$image" || die "podman import failed"
say "base image $image ($(du -h "$tarball" | cut -f1) root)"
echo "$image"
