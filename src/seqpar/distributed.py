"""Scale-out on Ray: a run's problems spread over actors, each holding one engine.

The unit of work is a problem with all its chains (hybrid chains read chain 0 and rejection
compares a problem's samples, so a problem never spans workers). Each actor runs the same
`Generation` as a local run, into memory, and hands back the new samples of one problem;
the driver alone appends them to the run store. So there is one writer, nothing is stored
twice, and an interrupted run resumes from the store like a local one: a problem is re-sent
with what is already stored of it, and only its missing slots are generated.

Workers read the task data and (for padded-parallel) the `--match` run from the same paths
as the driver: on a multi-node cluster, put them on a shared filesystem.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from seqpar.config import RunConfig
from seqpar.errors import SeqparError
from seqpar.registry import load_engine
from seqpar.scheduler import Clock, MemoryStore, prepare_generation
from seqpar.store import RunStore
from seqpar.types import Problem, Sample


class Worker:
    """One engine on one Ray actor, generating whole problems on request."""

    def __init__(
        self, config: Mapping[str, Any], data_dir: str | None, options: Mapping[str, Any]
    ) -> None:
        self.config = RunConfig.from_json(config)
        self.task = self.config.build_task(data_dir)
        self.problems = {p.id: p for p in self.task.load()}
        self.engine = load_engine(self.config.engine, self.config.model, options)

    def describe(self) -> dict[str, Any]:
        return self.engine.describe()

    def generate(self, problem_id: str, stored: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The samples of `problem_id` missing from `stored`, generated and graded."""
        store = MemoryStore(Sample.from_json(s) for s in stored)
        generation = prepare_generation(self.config, self.engine, self.task, store, False)
        generation.run([self.problems[problem_id]])
        return [s.to_json() for s in store.new]


class RayPool:
    """`workers` Ray actors for one run; connects to a running cluster (RAY_ADDRESS) or
    starts a local one."""

    def __init__(
        self,
        config: RunConfig,
        data_dir: str | Path | None,
        options: Mapping[str, Any],
        workers: int,
    ) -> None:
        try:
            import ray
        except ImportError as error:
            raise SeqparError(
                "--executor ray needs Ray: pip install 'seqpar[ray]' (or ./setup.sh)"
            ) from error
        if workers < 1:
            raise SeqparError(f"--workers must be >= 1, got {workers}")
        if not ray.is_initialized():
            ray.init(include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
        gpus = 1 if str(options.get("device", "")).startswith("cuda") else 0
        actor = ray.remote(num_cpus=1, num_gpus=gpus)(Worker)
        directory = str(Path(data_dir).resolve()) if data_dir else None
        if "progress" in options:  # an engine's own bars would interleave across actors
            options = {**options, "progress": False}
        self.ray = ray
        self.actors = [actor.remote(config.to_json(), directory, options) for _ in range(workers)]

    def describe(self) -> dict[str, Any]:
        # every actor, so that no engine is still loading when the clock starts
        described = self.ray.get([actor.describe.remote() for actor in self.actors])[0]
        return {**described, "workers": len(self.actors)}

    def runner(self, store: RunStore, clock: Clock) -> Callable[[list[Problem]], None]:
        """Generate every problem's missing samples across the actors into `store`; `clock`
        counts the actors busy while any problem is out."""

        def run(problems: list[Problem]) -> None:
            from tqdm.auto import tqdm

            stored: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
            for sample in store.samples():
                stored[sample.problem_id].append(sample.to_json())
            queue = [p.id for p in problems]
            running: dict[Any, Any] = {}
            idle = list(self.actors)
            bar = tqdm(total=len(queue), desc="problems", unit="problem")
            try:
                while queue or running:
                    while queue and idle:
                        actor, problem_id = idle.pop(), queue.pop(0)
                        running[actor.generate.remote(problem_id, stored[problem_id])] = actor
                        clock.sent()
                    ready, _ = self.ray.wait(list(running), num_returns=1)
                    actor = running.pop(ready[0])
                    clock.back()
                    try:
                        samples = self.ray.get(ready[0])
                    except self.ray.exceptions.RayError as error:
                        cause = getattr(error, "cause", None) or error
                        raise SeqparError(f"a Ray worker failed: {cause}") from error
                    store.append(Sample.from_json(s) for s in samples)
                    idle.append(actor)
                    bar.update(1)
            finally:
                bar.close()

        return run
