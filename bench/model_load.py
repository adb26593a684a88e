"""Load time of a bundled GGUF model: first load (assemble + de-quantize + cache) vs second.

    .venv/bin/python bench/model_load.py [--model NAME]

Each load runs in a fresh Python process against a fresh, empty cache directory, so the
first load pays the GGUF conversion and the second reads the cached safetensors.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from seqpar.engines.models import DEFAULT_MODEL

LOAD = (
    "import sys; from seqpar.engines.hf import HFEngine; HFEngine.load(sys.argv[1], progress=False)"
)


def timed_load(model: str, cache: str) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", LOAD, model],
        env={**os.environ, "SEQPAR_CACHE": cache, "TRANSFORMERS_VERBOSITY": "error"},
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        first = timed_load(args.model, cache)
        second = timed_load(args.model, cache)
    print(f"first load (convert): {first:.1f} s; second load (cached): {second:.1f} s")
    print(f"| {args.model} | {first:.1f} | {second:.1f} | **{first / second:.1f}×** |")


if __name__ == "__main__":
    main()
