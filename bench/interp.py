"""Peak memory of attention analysis on a long context: reduced layer by layer inside hooks
(seqpar) vs every layer's attention returned at once (`output_attentions=True`).

    .venv/bin/python bench/interp.py [--model NAME] [--tokens 4096]

Each arm runs in a fresh process; peak resident memory is read from the kernel.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from seqpar.engines.models import DEFAULT_MODEL

ARM = """
import resource, sys, time
import numpy as np, torch
from seqpar.analysis.induction import induction_score, induction_targets, layer_head_scores
from seqpar.engines.hf import HFEngine
engine = HFEngine.load(sys.argv[1], progress=False)
model, length, arm = engine.model, int(sys.argv[2]), sys.argv[3]
tokens = np.random.default_rng(0).integers(1000, 30000, length).tolist()
pairs = induction_targets(tokens)
start = time.perf_counter()
if arm == "hooks":
    layer_head_scores(model, tokens, lambda a: induction_score(a, pairs))
else:
    model.config._attn_implementation = "eager"
    with torch.inference_mode():
        attentions = model(input_ids=torch.tensor([tokens]), output_attentions=True).attentions
    [induction_score(a[0].float().numpy(), pairs) for a in attentions]
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--arms", default="hooks,all-layers")
    args = parser.parse_args()
    print("| arm | tokens | seconds | peak memory (GiB) |\n|---|---:|---:|---:|")
    for arm in args.arms.split(","):
        result = subprocess.run(
            [sys.executable, "-c", ARM, args.model, str(args.tokens), arm],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            print(f"| {arm} | {args.tokens} | failed: {result.stderr.strip().splitlines()[-1]} | |")
            continue
        seconds, peak_kib = result.stdout.split()
        print(f"| {arm} | {args.tokens} | {float(seconds):.1f} | {int(peak_kib) / 2**20:.2f} |")


if __name__ == "__main__":
    main()
