"""Typed settings, the registries and the configuration format (pure, no model)."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from seqpar import cli, specs
from seqpar.config import CONFIG_FORMAT, RunConfig, upgrade_format_1
from seqpar.errors import SeqparError
from seqpar.registry import AGGREGATORS, ENGINES, STRATEGIES, TASKS, engine_spec, get_task
from seqpar.sampling import SamplingParams

# A format-1 configuration exactly as seqpar wrote it before the specs (a study's
# padded-parallel run with head ablation and rejection set).
FORMAT_1 = {
    "model": "smollm2-135m-instruct",
    "task": "humaneval",
    "strategy": "padded-parallel",
    "n": 2,
    "chains": 1,
    "limit": 2,
    "max_tokens": 40,
    "temperature": 0.7,
    "top_p": 1.0,
    "top_k": -1,
    "min_p": 0.0,
    "seed": 0,
    "template": {"history": "final", "instruction": "again", "layout": "single"},
    "feedback": "public",
    "match": "/runs/study/sequential",
    "pad_scale": 2.0,
    "filler": "neutral",
    "hybrid_k": 1,
    "ablate_heads": "1.0,2.1",
    "ablation": "mean",
    "reject": "behaviour",
    "max_retries": 3,
    "reject_threshold": 0.8,
    "embedder": "all-minilm-l6-v2",
    "task_options": {},
    "engine": "hf",
}


def test_a_format_1_configuration_upgrades_to_the_same_settings():
    config = RunConfig.from_json(FORMAT_1)
    assert config == RunConfig(
        model="smollm2-135m-instruct",
        engine="hf",
        task=specs.TaskSpec("humaneval", {}, limit=2, feedback="public"),
        strategy=specs.PaddedSpec(2, "/runs/study/sequential", 2.0, "neutral"),
        sampling=SamplingParams(temperature=0.7, max_tokens=40, seed=0),
        template=specs.SequentialTemplate(),
        ablation=specs.AblationSpec(((1, 0), (2, 1)), "mean"),
        novelty=specs.NoveltySpec("behaviour", 3, 0.8, "all-minilm-l6-v2"),
    )
    assert upgrade_format_1(FORMAT_1)["format"] == CONFIG_FORMAT


@pytest.mark.parametrize(
    ("strategy", "extra", "spec"),
    [
        ("parallel", {"chains": 3, "hybrid_k": 2}, specs.ParallelSpec(4)),
        ("sequential", {"chains": 3}, specs.SequentialSpec(4, 3)),
        ("hybrid", {"hybrid_k": 2}, specs.HybridSpec(4, 2)),
    ],
)
def test_format_1_keeps_only_the_strategy_s_own_settings(strategy, extra, spec):
    flat = {**FORMAT_1, "strategy": strategy, "n": 4, **extra}
    assert RunConfig.from_json(flat).strategy == spec


def test_the_format_round_trips_and_is_json():
    import json

    config = RunConfig.from_json(FORMAT_1)
    text = json.dumps(config.to_json())
    assert RunConfig.from_json(json.loads(text)) == config
    assert json.loads(text)["strategy"] == {
        "name": "padded-parallel",
        "n": 2,
        "match": "/runs/study/sequential",
        "pad_scale": 2.0,
        "filler": "neutral",
    }


def test_unknown_keys_and_newer_formats_are_errors_that_name_them():
    data = RunConfig().to_json()
    with pytest.raises(SeqparError, match=r"strategy 'parallel' has no setting 'chains'"):
        RunConfig.from_json({**data, "strategy": {"name": "parallel", "n": 2, "chains": 2}})
    with pytest.raises(SeqparError, match=r"the task spec has no setting 'difficulty'"):
        RunConfig.from_json({**data, "task": {"name": "arith", "difficulty": 2}})
    with pytest.raises(SeqparError, match="unknown strategy 'beam'; known: parallel"):
        RunConfig.from_json({**data, "strategy": {"name": "beam", "n": 2}})
    with pytest.raises(SeqparError, match="format 3 is newer"):
        RunConfig.from_json({**data, "format": 3})


def test_engine_settings_are_typed_per_engine():
    assert engine_spec("llamacpp", {"max_context": 2048}) == specs.LlamaCppEngineSpec(2048)
    with pytest.raises(SeqparError, match=r"--engine llamacpp has no setting 'token_budget'"):
        engine_spec("llamacpp", {"token_budget": 100})
    known = "known: hf, openai, llamacpp, llama-server"
    with pytest.raises(SeqparError, match=f"unknown engine 'vllm'; {known}"):
        engine_spec("vllm", {})


def test_settings_are_checked_where_they_are_made():
    with pytest.raises(SeqparError, match="--n must be >= 1, got 0"):
        specs.SequentialSpec(0)
    with pytest.raises(SeqparError, match="unknown --filler 'loud'"):
        specs.PaddedSpec(2, filler="loud")
    with pytest.raises(SeqparError, match="unknown --feedback 'all'"):
        specs.TaskSpec(feedback="all")
    with pytest.raises(SeqparError, match="unknown task 'gsm9k'; known: arith, gsm8k"):
        RunConfig(task=specs.TaskSpec("gsm9k"))
    with pytest.raises(SeqparError, match=r"sampling\.n must be 1"):
        RunConfig(sampling=SamplingParams(n=4, seed=0))
    with pytest.raises(SeqparError, match=r"sampling\.seed must be set"):
        RunConfig(sampling=SamplingParams())
    with pytest.raises(SeqparError, match="bad head '3-1'"):
        specs.AblationSpec.parse("3-1")
    assert specs.AblationSpec.parse(" 3.1, 10.7").heads == ((3, 1), (10, 7))
    assert specs.AblationSpec(((3, 1), (10, 7))).text() == "3.1,10.7"


def test_every_registered_implementation_loads_and_takes_its_spec():
    for registry in (ENGINES, STRATEGIES, TASKS, AGGREGATORS):
        for entry in registry.entries.values():
            assert callable(entry.load()) or registry is AGGREGATORS, entry.target
    for entry in AGGREGATORS.entries.values():
        assert entry.load().name == entry.name
    for entry in STRATEGIES.entries.values():
        assert entry.spec.name == entry.name
        config = RunConfig(strategy=entry.spec(n=3))
        assert config.build_strategy().name == entry.name  # shape only, no engine
    for entry in ENGINES.entries.values():
        engine = entry.load()
        taken = set(inspect.signature(engine.load).parameters) - {"cls", "model", "options"}
        if "options" in inspect.signature(engine.load).parameters:  # handed to the constructor
            taken |= set(inspect.signature(engine).parameters) - {"model", "tokenizer", "local"}
        settings = {f.name for f in dataclasses.fields(entry.spec)}
        assert settings == taken, (entry.name, settings ^ taken)


def test_math_tasks_in_the_registry_are_the_math_sources():
    from seqpar.tasks.math import MATH_TASKS

    math = [e.name for e in TASKS.entries.values() if e.target == "seqpar.tasks.math:build"]
    assert math == list(MATH_TASKS)
    with pytest.raises(SeqparError, match="task 'arith' does not take the option"):
        get_task("arith", release="v6")


def test_the_command_line_reads_its_choices_and_settings_from_the_registry():
    parser = cli.parser()
    actions = {
        a.dest: a
        for sub in parser._subparsers._group_actions[0].choices.values()
        for a in sub._actions
    }
    assert tuple(actions["engine"].choices) == ENGINES.names
    assert tuple(actions["strategy"].choices) == STRATEGIES.names
    assert tuple(actions["task"].choices) == TASKS.names
    args = parser.parse_args(
        [
            "run",
            "--out",
            "x",
            "--strategy",
            "hybrid",
            "--hybrid-k",
            "2",
            "--chains",
            "5",
            "--ablate-heads",
            "1.2",
            "--reject",
            "answer",
            "--difficulty",
            "3",
            "--limit",
            "4",
        ]
    )
    config = cli.run_config(args)
    assert config.strategy == specs.HybridSpec(4, 2)
    assert config.ablation.heads == ((1, 2),)
    assert config.task == specs.TaskSpec("arith", {"difficulty": 3}, 4, "none")
    assert config.novelty.mode == "answer"
    assert cli.engine_options(args) == {
        "device": "auto",
        "token_budget": None,  # the engine's default for its device
        "max_batch": None,
        "max_context": None,
        "progress": True,
    }
    llama = parser.parse_args(["run", "--out", "x", "--engine", "llamacpp", "--threads", "2"])
    assert cli.engine_options(llama) == {"max_context": None, "threads": 2}
