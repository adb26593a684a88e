"""`seqpar study`: every experiment of the paper for one model and task, then one report.

The plan (all runs share the model, task, problems, N and sampling settings):

- `parallel` and `sequential` (hypothesis 1: the same aggregators on both);
- `padded-parallel`, filler (other problems' solutions) matched to the sequential run's
  prompt lengths; `padded-parallel-x2`, the same filler twice as long (`--long-pad-scale`);
  `padded-parallel-neutral`, neutral prose of the matched length, so length and content
  are separated (hypothesis 2);
- `hybrid-k1` and `hybrid-k{N/2}` (and `hybrid-k{K}` of `--h3-k`): k sequential rounds,
  then N samples from that context (hypothesis 3, with the embedding diversity of parallel
  vs sequential);
- for code tasks, sequential with each feedback level and both strategies with rejection
  of repeated behaviour (the remedies);
- with heads to ablate (`--ablate-top-k K --heads-table heads.json`): sequential with those
  K induction heads switched off, and with K random other heads switched off (control).

Each run is an ordinary run directory under the study directory, so the study resumes.
The engine generates the plan in stages (`stages`), the runs of a stage together, so its
batches hold rows of every run at once.
The analysis plan (`AnalysisPlan`: the equivalence margin, the pre-declared k of H3, the
long pad scale) is written to study.json before the first sample and cannot change after.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from seqpar import roles
from seqpar.analysis.hypotheses import (
    AnalysisPlan,
    default_hybrid_k,
    describe_sensitivity,
    sensitivity,
)
from seqpar.config import RunConfig, current_format
from seqpar.engines import Engine, HeadAblating
from seqpar.errors import SeqparError
from seqpar.registry import load_engine
from seqpar.run import execute_together
from seqpar.specs import HybridSpec, PaddedSpec, ParallelSpec, SequentialSpec
from seqpar.store import RunStore, write_atomic
from seqpar.tasks import select


@dataclass(frozen=True)
class PlannedRun:
    name: str
    config: RunConfig
    slots_per_problem: int  # generations per problem, before any rejected redraws


def plan(
    base: RunConfig,
    out: Path,
    code_task: bool,
    analysis: AnalysisPlan | None = None,
    chains: int = 1,
) -> list[PlannedRun]:
    """The runs of a study of `base` under `out`; the sequential runs of the remedies and
    of head ablation have `chains` chains (the main sequential run has one)."""
    n = base.n
    analysis = analysis or AnalysisPlan(hybrid_k=default_hybrid_k(n))
    sequential = base.with_strategy(SequentialSpec(n))
    padded = PaddedSpec(n, match=str((out / roles.SEQUENTIAL).resolve()))
    long_padded = replace(padded, pad_scale=analysis.long_pad_scale)
    runs = [
        PlannedRun(roles.PARALLEL, base.with_strategy(ParallelSpec(n)), n),
        PlannedRun(roles.SEQUENTIAL, sequential, n),
        PlannedRun(roles.PADDED, base.with_strategy(padded), n),
        PlannedRun(roles.padded_long(analysis.long_pad_scale), base.with_strategy(long_padded), n),
        PlannedRun(roles.PADDED_NEUTRAL, base.with_strategy(replace(padded, filler="neutral")), n),
    ]
    for k in sorted({1, n // 2, analysis.hybrid_k} - {0}):
        runs.append(PlannedRun(roles.hybrid(k), base.with_strategy(HybridSpec(n, k)), k + n))
    if code_task:
        chained = base.with_strategy(SequentialSpec(n, chains))
        for level in ("binary", "public", "hidden"):
            task = replace(base.task, feedback=level)
            runs.append(PlannedRun(roles.feedback(level), replace(chained, task=task), n))
        rejecting = replace(base.novelty, mode="behaviour")
        for name, config in ((roles.PARALLEL, base), (roles.SEQUENTIAL, chained)):
            runs.append(PlannedRun(roles.rejecting(name), replace(config, novelty=rejecting), n))
    return runs


def stages(runs: Sequence[PlannedRun]) -> list[list[PlannedRun]]:
    """The plan in stages, each stage's runs generated together: first every run without
    head ablation that reads no other run; then the padded runs, which match the finished
    sequential run's prompt lengths; then each ablation run alone (it changes the model)."""
    plain = [r for r in runs if not r.config.ablation.heads]
    independent = [r for r in plain if not isinstance(r.config.strategy, PaddedSpec)]
    padded = [r for r in plain if isinstance(r.config.strategy, PaddedSpec)]
    ablated = [[r] for r in runs if r.config.ablation.heads]
    return [step for step in (independent, padded) if step] + ablated


def random_heads(
    layers: int, heads: int, k: int, exclude: Sequence[tuple[int, int]], seed: int
) -> tuple[tuple[int, int], ...]:
    """k heads drawn at random (seeded) among those not in `exclude`."""
    pool = [
        (layer, head)
        for layer in range(layers)
        for head in range(heads)
        if (layer, head) not in set(exclude)
    ]
    return tuple(sorted(random.Random(seed).sample(pool, k)))


def measure_throughput(engine: Engine, base: RunConfig, data_dir: str | None) -> float:
    """Generated tokens/s of a quick batched sample of the study's own prompts."""
    from seqpar.sampling import SamplingParams
    from seqpar.types import Message, Request

    task = base.build_task(data_dir)
    problems = select(task.load(), base.task.limit)[:8]
    requests = [Request((Message("user", task.prompt(p)),), (i,)) for i, p in enumerate(problems)]
    start = time.perf_counter()
    params = SamplingParams(temperature=base.sampling.temperature, max_tokens=32)
    tokens = sum(c.completion_tokens for _, cs in engine.generate(requests, params) for c in cs)
    return tokens / (time.perf_counter() - start)


def stored_slots(out: Path, runs: Sequence[PlannedRun]) -> int:
    """Slots the study's runs have stored so far (accepted or skipped, not redraws)."""
    return sum(
        sum(s.status != "rejected" for s in RunStore(out / r.name).samples())
        for r in runs
        if (out / r.name / "manifest.json").is_file()
    )


def eta(done: int, planned: int, this_session: int, seconds: float) -> str:
    """'D/P generations' and, once this session generated some, the time left at its rate."""
    text = f"{done}/{planned} generations"
    if this_session and done < planned:
        left = (planned - done) * seconds / this_session
        text += f", about {left / 60:.0f} min left at this session's rate"
    return text


def check_declared(out: Path, base: RunConfig, analysis: AnalysisPlan) -> None:
    """Refuse to resume a study in `out` with other settings or another analysis plan (the
    plan is declared before any sample is drawn; older studies without one take this one)."""
    path = out / roles.PLAN_FILE
    if not path.is_file():
        return
    existing = json.loads(path.read_text())
    if current_format(existing["base"]) != base.to_json():
        raise SeqparError(f"{out} holds a study with other settings; use another --out")
    declared = existing.get("analysis", analysis.to_json())
    if declared != analysis.to_json():
        raise SeqparError(
            f"{out} was planned with the analysis {json.dumps(declared)}; the margin, H3's k "
            "and the long pad scale are declared before any sample is drawn and cannot "
            "change after (use another --out for another plan)"
        )


def run_study(
    base: RunConfig,
    out: str | Path,
    *,
    data_dir: str | None = None,
    engine_options: dict[str, Any] | None = None,
    dry_run: bool = False,
    analysis: AnalysisPlan | None = None,
    progress: bool = True,
    chains: int = 1,
    together: bool = True,
) -> Path | None:
    """Run (or resume) every planned run, then write report.md and report.html.
    With `dry_run`, print the plan, a time estimate and the smallest effects the planned
    size can detect instead. `analysis` defaults to margin 0.1 and H3's k = N/2. Runs that
    do not depend on each other are generated together (`stages`) unless `together` is
    False, when they run one after another."""
    out = Path(out)
    analysis = analysis or AnalysisPlan(hybrid_k=default_hybrid_k(base.n))
    task = base.build_task(data_dir)
    problems = len(select(task.load(), base.task.limit))
    top = base.ablation
    base = replace(base, ablation=replace(top, heads=()))
    if not dry_run:
        check_declared(out, base, analysis)
    engine = load_engine(base.engine, base.model, engine_options)
    runs = plan(base, out, task.answer_kind == "behaviour", analysis, chains)
    if top.heads:
        if not isinstance(engine, HeadAblating):
            raise SeqparError(
                f"engine {base.engine!r} cannot switch heads off (--ablate-top-k); use --engine hf"
            )
        control = random_heads(
            engine.layers, engine.heads_per_layer, len(top.heads), top.heads, base.sampling.seed
        )
        sequential = base.with_strategy(SequentialSpec(base.n, chains))
        for name, heads in ((roles.ABLATE_TOP, top.heads), (roles.ABLATE_RANDOM, control)):
            ablated = replace(sequential, ablation=replace(top, heads=heads))
            runs.append(PlannedRun(name, ablated, base.n))
    if dry_run:
        rate = measure_throughput(engine, base, data_dir)
        total = sum(r.slots_per_problem for r in runs) * problems
        print("| run | strategy | generations |\n|---|---|---:|")
        for run in runs:
            print(
                f"| {run.name} | {run.config.strategy.name} | {run.slots_per_problem * problems} |"
            )
        # Completions rarely use the whole budget; sequential rounds batch less: both
        # effects roughly cancel, so the estimate assumes max_tokens at the measured rate.
        estimate = total * base.sampling.max_tokens / rate
        print(
            f"\n{total} generations of up to {base.sampling.max_tokens} tokens at "
            f"{rate:.0f} tokens/s "
            f"(measured just now): about {estimate / 60:.0f} minutes, plus grading\n"
        )
        print(describe_sensitivity(sensitivity(problems, analysis)))
        return None
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "base": base.to_json(),
        "analysis": analysis.to_json(),
        "data_dir": data_dir,
        "runs": [r.name for r in runs],
    }
    write_atomic(out / roles.PLAN_FILE, json.dumps(record, indent=2) + "\n")
    planned = sum(r.slots_per_problem for r in runs) * problems
    started, generated_before = time.perf_counter(), stored_slots(out, runs)
    steps = stages(runs) if together else [[run] for run in runs]
    for index, step in enumerate(steps, 1):
        done = stored_slots(out, runs)
        print(
            f"study: step {index}/{len(steps)}: {', '.join(r.name for r in step)} · "
            + eta(done, planned, done - generated_before, time.perf_counter() - started),
            file=sys.stderr,
        )
        execute_together(
            [(r.config, out / r.name) for r in step], engine, data_dir=data_dir, progress=progress
        )
    from seqpar.report.study import write_study_report

    tokenizer = getattr(engine, "tokenizer", None)
    tokenize = (
        (lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]) if tokenizer else None
    )
    return write_study_report(out, [r.name for r in runs], tokenize, analysis)
