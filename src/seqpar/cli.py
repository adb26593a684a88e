"""Command line: thin argument parsing over the library. `seqpar COMMAND --help` for each."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

from seqpar import specs
from seqpar.errors import SeqparError
from seqpar.registry import ENGINES, STRATEGIES, TASKS
from seqpar.specs import DEFAULT_MODEL

DEMO_PROBLEMS = 6


def add_run_options(parser: argparse.ArgumentParser, *, demo: bool = False) -> None:
    model = parser.add_argument_group("model and engine")
    model.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="bundled name (see `seqpar models`), .gguf file, HF model directory "
        f"or hub id (default: {DEFAULT_MODEL})",
    )
    model.add_argument(
        "--engine",
        default="hf",
        choices=ENGINES.names,
        help=ENGINES.listing() + "; see docs/engines.md (default: hf)",
    )
    model.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 … (default: auto)")
    model.add_argument(
        "--token-budget",
        type=int,
        default=None,
        help="hf: max padded tokens (prompt + max-tokens) × rows in the running batch (default: "
        "on CPU 2 GiB of keys and values, at most 131072; 32768 on GPUs)",
    )
    model.add_argument(
        "--max-batch",
        type=int,
        default=None,
        help="hf: max rows in the running batch (default: 64)",
    )
    model.add_argument(
        "--max-context",
        type=int,
        default=None,
        help="cap the context length (tokens) below the model's own",
    )
    server = parser.add_argument_group("openai engine")
    server.add_argument(
        "--base-url",
        action="append",
        default=None,
        help="server URL ending in /v1; repeat to spread requests evenly (env: OPENAI_BASE_URL)",
    )
    server.add_argument("--api", default="chat", choices=["chat", "completions"])
    model.add_argument(
        "--threads",
        type=int,
        default=None,
        help="llamacpp, llama-server: CPU threads (default: every core)",
    )
    model.add_argument(
        "--slots",
        type=int,
        default=8,
        help="llama-server: requests decoded together, each with its own prompt cache (default: 8)",
    )
    server.add_argument(
        "--api-key-env",
        default="OPENAI_API_KEY",
        help="environment variable holding the API key (default: OPENAI_API_KEY)",
    )
    server.add_argument(
        "--max-in-flight", type=int, default=16, help="concurrent requests (default: 16)"
    )
    server.add_argument(
        "--server-n",
        action="store_true",
        help="ask for all n samples in one request (servers that support n>1); default: "
        "one request per sample, each with its own seed",
    )
    server.add_argument(
        "--http-retries",
        type=int,
        default=6,
        help="retries of a failed request, with exponential backoff (default: 6)",
    )
    server.add_argument(
        "--request-timeout",
        type=float,
        default=600.0,
        help="seconds a request may take (a stalled server counts as failed, then retried; "
        "default: 600)",
    )
    server.add_argument(
        "--tokenizer",
        default=None,
        help="local tokenizer for prompt lengths and --api completions "
        "(default: --model when it is a bundled name or local path)",
    )
    sampling = parser.add_argument_group("sampling")
    sampling.add_argument(
        "--n", type=int, default=4, help="samples (parallel) or rounds (sequential)"
    )
    sampling.add_argument("--max-tokens", type=int, default=512 if not demo else 300)
    sampling.add_argument("--temperature", type=float, default=0.7)
    sampling.add_argument("--top-p", type=float, default=1.0)
    sampling.add_argument("--top-k", type=int, default=-1)
    sampling.add_argument("--min-p", type=float, default=0.0)
    sampling.add_argument("--seed", type=int, default=0)
    template = parser.add_argument_group("sequential template, feedback and rejection")
    template.add_argument(
        "--chains", type=int, default=1, help="independent sequential chains per problem"
    )
    template.add_argument(
        "--history",
        default="final",
        choices=specs.HISTORIES,
        help="show previous solutions without (final) or with (full) reasoning",
    )
    template.add_argument("--instruction", default="again", choices=specs.INSTRUCTION_NAMES)
    template.add_argument(
        "--feedback",
        default="none",
        choices=specs.FEEDBACK_LEVELS,
        help="what the environment tells the next round (code: all; math: none, binary)",
    )
    template.add_argument(
        "--match",
        default=None,
        help="padded-parallel: the sequential run whose prompt lengths to match",
    )
    template.add_argument(
        "--pad-scale",
        type=float,
        default=1.0,
        help="padded-parallel: filler length × this (default 1)",
    )
    template.add_argument(
        "--filler",
        default="other",
        choices=specs.FILLERS,
        help="padded-parallel: other problems' solutions, or neutral prose",
    )
    template.add_argument(
        "--hybrid-k",
        type=int,
        default=1,
        help="hybrid: sequential rounds before the --n parallel samples",
    )
    template.add_argument(
        "--ablate-heads",
        default="",
        help="switch off these heads while generating: LAYER.HEAD,… (hf engine)",
    )
    template.add_argument(
        "--ablate-top-k",
        type=int,
        default=None,
        help="switch off the top K heads of --heads-table instead",
    )
    template.add_argument(
        "--heads-table",
        default=None,
        help="heads.json from `seqpar interp heads` (for --ablate-top-k)",
    )
    template.add_argument(
        "--ablation",
        default="zero",
        choices=specs.ABLATION_MODES,
        help="replace ablated head outputs with zero or their mean",
    )
    template.add_argument(
        "--reject",
        default="none",
        choices=specs.NOVELTY_MODES,
        help="redraw a solution that repeats an accepted one of its problem (math: answer; "
        "code: behaviour; any: embedding)",
    )
    template.add_argument("--max-retries", type=int, default=2, help="redraws per sample")
    template.add_argument(
        "--reject-threshold",
        type=float,
        default=0.9,
        help="embedding: cosine that counts as a repeat",
    )
    template.add_argument(
        "--embedder",
        default=specs.DEFAULT_EMBEDDER,
        help="embedding: model name, directory or hub id",
    )
    template.add_argument(
        "--layout",
        default="single",
        choices=specs.LAYOUTS,
        help="previous solutions in one user message, or as chat turns",
    )
    task = parser.add_argument_group("task")
    task.add_argument(
        "--data-dir",
        default=None,
        help="folder with the benchmark JSONL files (default: $SEQPAR_DATA_DIR, else the hub)",
    )
    task.add_argument(
        "--difficulty", type=int, default=None, help="arith: operations per problem (default 2)"
    )
    task.add_argument("--release", default=None, help="livecodebench: release v1 … v6 (default v6)")
    task.add_argument("--since", default=None, help="livecodebench: first contest date, YYYY-MM-DD")
    task.add_argument("--until", default=None, help="livecodebench: last contest date, YYYY-MM-DD")
    task.add_argument("--no-progress", action="store_true", help="hide progress bars")


TASK_OPTIONS = ("difficulty", "release", "since", "until")


def run_config(args: argparse.Namespace, **overrides: Any) -> Any:
    """The run configuration of parsed arguments; `overrides` replace task, strategy or
    limit where the command fixes them (demo, study)."""
    from seqpar.config import RunConfig
    from seqpar.sampling import SamplingParams

    chosen = {
        name: overrides.get(name, getattr(args, name, None))
        for name in ("task", "strategy", "limit")
    }
    values = {**vars(args), "match": str(Path(args.match).resolve()) if args.match else None}
    strategy = STRATEGIES[chosen["strategy"] or "parallel"].spec
    assert strategy is not None
    settings = {f.name: values[f.name] for f in dataclasses.fields(strategy) if f.name in values}
    return RunConfig(
        model=args.model,
        engine=args.engine,
        task=specs.TaskSpec(
            chosen["task"] or "arith",
            {n: getattr(args, n) for n in TASK_OPTIONS if getattr(args, n) is not None},
            chosen["limit"],
            args.feedback,
        ),
        strategy=strategy(**settings),
        sampling=SamplingParams(
            temperature=args.temperature,
            top_p=args.top_p,
            top_k=args.top_k,
            min_p=args.min_p,
            max_tokens=args.max_tokens,
            seed=args.seed,
        ),
        template=specs.SequentialTemplate(args.history, args.instruction, args.layout),
        ablation=ablation(args),
        novelty=specs.NoveltySpec(
            args.reject, args.max_retries, args.reject_threshold, args.embedder
        ),
    )


def ablation(args: argparse.Namespace) -> specs.AblationSpec:
    """--ablate-heads as given, or the top K heads of --heads-table."""
    if args.ablate_top_k is None:
        return specs.AblationSpec.parse(args.ablate_heads, args.ablation)
    if not args.heads_table:
        raise SeqparError(
            "--ablate-top-k needs --heads-table (a heads.json of `seqpar interp heads`)"
        )
    from seqpar.interp import top_heads

    return specs.AblationSpec(tuple(top_heads(args.heads_table, args.ablate_top_k)), args.ablation)


def engine_options(args: argparse.Namespace) -> dict[str, Any]:
    """The settings of the chosen engine, read from the arguments of the same names."""
    spec = ENGINES[args.engine].spec
    assert spec is not None
    values = {**vars(args), "progress": not args.no_progress}
    return {f.name: values[f.name] for f in dataclasses.fields(spec) if f.name in values}


def command_run(args: argparse.Namespace) -> None:
    from seqpar.report.summary import markdown, summarize
    from seqpar.run import execute

    store = execute(
        run_config(args),
        args.out,
        data_dir=args.data_dir,
        engine_options=engine_options(args),
        executor=args.executor,
        workers=args.workers,
        progress=not args.no_progress,
    )
    print(markdown([summarize(str(store.path))]))


def command_demo(args: argparse.Namespace) -> None:
    from seqpar.registry import load_engine
    from seqpar.report.summary import markdown, summarize
    from seqpar.run import execute_together

    engine = load_engine(args.engine, args.model, engine_options(args))
    runs = [
        (run_config(args, task="arith", strategy=s, limit=args.problems), Path(args.out) / s)
        for s in ("parallel", "sequential")
    ]
    stores = execute_together(runs, engine, progress=not args.no_progress)
    print(markdown([summarize(str(store.path)) for store in stores]))


def command_study(args: argparse.Namespace) -> None:
    from seqpar.analysis.hypotheses import AnalysisPlan, default_hybrid_k
    from seqpar.study import run_study

    if args.pad_scale != 1.0 or args.filler != "other":
        raise SeqparError(
            "study runs padded-parallel at --pad-scale 1 with both fillers, and once at "
            "--long-pad-scale (default 2); use --long-pad-scale instead of --pad-scale/--filler"
        )
    config = run_config(args, strategy="parallel")
    analysis = AnalysisPlan(
        margin=args.margin,
        hybrid_k=args.h3_k if args.h3_k is not None else default_hybrid_k(args.n),
        long_pad_scale=args.long_pad_scale,
    )
    report = run_study(
        config,
        args.out,
        data_dir=args.data_dir,
        engine_options=engine_options(args),
        dry_run=args.dry_run,
        analysis=analysis,
        progress=not args.no_progress,
        chains=args.chains,
    )
    if report is not None:
        print(f"report: {report} (and report.md beside it)")


def command_interp(args: argparse.Namespace) -> None:
    from seqpar.engines.hf import HFEngine
    from seqpar.interp import find_heads, measure_copying

    if args.interp_command == "heads":
        engine = HFEngine.load(args.model, device=args.device, progress=False)
        lengths = tuple(int(x) for x in args.lengths.split(","))
        rows = find_heads(
            engine,
            Path(args.out),
            run=args.run,
            lengths=lengths,
            seeds=args.seeds,
            limit=args.limit,
        )
        extra = [c for c in ("real_prompts",) if c in rows[0]]
        print("| rank | layer.head | prefix matching |" + "".join(f" {c} |" for c in extra))
        print("|---:|---|---:|" + "---:|" * len(extra))
        for row in rows[: args.top]:
            print(
                f"| {row['rank']} | {row['layer']}.{row['head']} | {row['prefix_matching']:.3f} | "
                + " | ".join(f"{row[c]:.3f}" for c in extra)
                + " |"
            )
        print(f"\nwritten: {args.out}/heads.csv, heads.json, heads_*.png")
        return
    from seqpar.rundata import load_run

    model = load_run(args.run).config.model
    engine = HFEngine.load(model, device=args.device, progress=False)
    out = Path(args.out or Path(args.run) / "copy")
    summary = measure_copying(
        engine, args.run, out, control=args.control, padded=args.padded, limit=args.limit
    )
    print(
        "| source | round | samples | copy rate n=4 | copy rate n=8 | attention to previous | "
        "attention to problem |\n|---|---:|---:|---:|---:|---:|---:|"
    )
    for source, rounds in summary.items():
        for round_, row in rounds.items():
            print(
                f"| {source} | {round_} | {row['samples']} | {row['copy_rate_4']:.3f} | "
                f"{row['copy_rate_8']:.3f} | {row['attention_to_previous']:.3f} | "
                f"{row['attention_to_problem']:.3f} |"
            )
    print(f"\nwritten: {out}/copy.json, copy_by_round.png, attention_to_previous_by_head.png")


def command_grade(args: argparse.Namespace) -> None:
    from seqpar.run import regrade
    from seqpar.store import RunStore

    for path in args.runs:
        changed = regrade(RunStore(path), args.data_dir, progress=not args.no_progress)
        print(f"{path}: re-graded; {changed} grade(s) changed")


def command_report(args: argparse.Namespace) -> None:
    from seqpar.report.summary import markdown, summarize

    summaries = [summarize(path) for path in args.runs]
    if args.figure:
        from seqpar.report.study import comparison_figure

        Path(args.figure).write_bytes(comparison_figure(args.runs).png)
    if args.json:
        print(json.dumps([s.to_json() for s in summaries], indent=2))
    else:
        print(markdown(summaries))


def command_browse(args: argparse.Namespace) -> None:
    from seqpar.report.browse import write_browser

    page = write_browser(Path(args.path), Path(args.out) if args.out else None, ngram=args.ngram)
    print(f"written: {page} (open it in a browser; it works offline)")


def command_models(args: argparse.Namespace) -> None:
    from seqpar.engines.models import cache_root, describe_models

    for row in describe_models():
        print(
            f"{row['name']}\n  {row['description']}\n  installed: {row['installed']}\n"
            f"  converted cache: {row['converted cache']}"
        )
    print(f"\ncache: {cache_root()} (set SEQPAR_CACHE to move it)")
    print("also accepted: a .gguf file, a Hugging Face model directory, or a hub id (online)")


def command_tasks(args: argparse.Namespace) -> None:
    from seqpar.tasks.math import MATH_TASKS

    for entry in TASKS.entries.values():
        line = f"{entry.name:14} {entry.summary}"
        if entry.name in MATH_TASKS:
            source = MATH_TASKS[entry.name]
            dataset, _, split = source.hub
            line += (
                f": {source.file} in --data-dir / $SEQPAR_DATA_DIR, else hub {dataset} ({split})"
            )
        elif entry.name == "livecodebench":
            line += " in --data-dir, else the hub"
        print(line)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="seqpar",
        description="Parallel vs sequential sampling for reasoning models: run, grade, report.",
    )
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="generate and grade one run into a run directory")
    run.add_argument(
        "--task", default="arith", choices=TASKS.names, help="see `seqpar tasks` (default: arith)"
    )
    run.add_argument(
        "--strategy",
        default="parallel",
        choices=STRATEGIES.names,
        help=STRATEGIES.listing() + " (default: parallel)",
    )
    run.add_argument("--limit", type=int, default=None, help="use only the first K problems")
    run.add_argument(
        "--out", required=True, help="run directory (re-run the same command to resume)"
    )
    add_run_options(run)
    scale = run.add_argument_group("scale-out")
    scale.add_argument(
        "--executor",
        default="local",
        choices=["local", "ray"],
        help="local, or ray: problems spread over Ray actors, one engine each; joins the "
        "cluster at RAY_ADDRESS or starts a local one (default: local)",
    )
    scale.add_argument(
        "--workers", type=int, default=2, help="Ray actors for --executor ray (default: 2)"
    )
    run.set_defaults(handler=command_run)

    demo = commands.add_parser(
        "demo", help="bundled model on arith: parallel vs sequential, offline"
    )
    demo.add_argument(
        "--out", default="runs/demo", help="where the two runs go (default: runs/demo)"
    )
    demo.add_argument(
        "--problems",
        type=int,
        default=DEMO_PROBLEMS,
        help=f"arith problems (default: {DEMO_PROBLEMS})",
    )
    add_run_options(demo, demo=True)
    demo.set_defaults(handler=command_demo)

    study = commands.add_parser(
        "study", help="every hypothesis experiment for one model and task, one report"
    )
    study.add_argument(
        "--task", default="arith", choices=TASKS.names, help="see `seqpar tasks` (default: arith)"
    )
    study.add_argument("--limit", type=int, default=None, help="use only the first K problems")
    study.add_argument("--out", required=True, help="study directory (re-run to resume)")
    study.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan, a time estimate from a quick measurement, and the smallest "
        "effect the planned number of problems can detect",
    )
    verdicts = study.add_argument_group("verdicts (declared before any sample is drawn)")
    verdicts.add_argument(
        "--margin",
        type=float,
        default=0.1,
        help="equivalence margin: accuracy differences within ±MARGIN do not matter; 'no "
        "effect' is claimed only when a difference is shown to be within it (default: 0.1)",
    )
    verdicts.add_argument(
        "--h3-k",
        type=int,
        default=None,
        help="H3's primary test: samples after K sequential rounds vs fresh parallel ones "
        "(default: N/2, at least 1)",
    )
    verdicts.add_argument(
        "--long-pad-scale",
        type=float,
        default=2.0,
        help="the longer padded-parallel arm: filler × this, at least 2 (default: 2)",
    )
    add_run_options(study)
    study.set_defaults(handler=command_study)

    interp = commands.add_parser("interp", help="induction heads and copying (hf engine)")
    interp_commands = interp.add_subparsers(dest="interp_command", required=True, metavar="WHAT")
    heads = interp_commands.add_parser("heads", help="rank every head by its induction score")
    heads.add_argument("--model", default=DEFAULT_MODEL)
    heads.add_argument("--run", default=None, help="also score real prompts of this sequential run")
    heads.add_argument("--lengths", default="32,64", help="random sequence lengths (default 32,64)")
    heads.add_argument("--seeds", type=int, default=3, help="random sequences per length")
    heads.add_argument("--limit", type=int, default=8, help="--run: prompts to use (default 8)")
    heads.add_argument("--top", type=int, default=10, help="rows to print (all are written)")
    heads.add_argument("--device", default="auto")
    heads.add_argument("--out", default="heads", help="output folder (default: heads)")
    heads.set_defaults(handler=command_interp)
    copy = interp_commands.add_parser("copy", help="attention and copying into previous solutions")
    copy.add_argument("run", metavar="RUN", help="a sequential run")
    copy.add_argument("--control", default=None, help="a parallel run of the same problems")
    copy.add_argument("--padded", default=None, help="a padded-parallel run matched to RUN")
    copy.add_argument("--limit", type=int, default=8, help="problems to analyse (default 8)")
    copy.add_argument("--device", default="auto")
    copy.add_argument("--out", default=None, help="output folder (default: RUN/copy)")
    copy.set_defaults(handler=command_interp)

    grade = commands.add_parser("grade", help="re-grade stored samples (generations untouched)")
    grade.add_argument("runs", nargs="+", metavar="RUN")
    grade.add_argument(
        "--data-dir", default=None, help="override the data folder recorded in the run"
    )
    grade.add_argument("--no-progress", action="store_true")
    grade.set_defaults(handler=command_grade)

    report = commands.add_parser("report", help="accuracy per aggregator and k, tokens, time")
    report.add_argument("runs", nargs="+", metavar="RUN")
    report.add_argument("--json", action="store_true", help="machine-readable output")
    report.add_argument(
        "--figure",
        default=None,
        metavar="PNG",
        help="also draw accuracy vs N of every run (majority) into this file",
    )
    report.set_defaults(handler=command_report)

    browse = commands.add_parser(
        "browse", help="one HTML page to read samples side by side, copied spans highlighted"
    )
    browse.add_argument("path", metavar="RUN_OR_STUDY", help="a run or a study directory")
    browse.add_argument("--out", default=None, help="HTML file (default: RUN_OR_STUDY/browse.html)")
    browse.add_argument(
        "--ngram", type=int, default=4, help="words per n-gram that counts as copied (default: 4)"
    )
    browse.set_defaults(handler=command_browse)

    commands.add_parser("models", help="bundled models and the conversion cache").set_defaults(
        handler=command_models
    )
    commands.add_parser("tasks", help="available tasks and their data").set_defaults(
        handler=command_tasks
    )
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        args.handler(args)
    except SeqparError as error:
        print(f"seqpar: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("seqpar: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
