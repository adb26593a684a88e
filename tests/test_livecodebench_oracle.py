"""seqpar's LiveCodeBench grading against the official evaluator, the reference grader.

The official evaluation code (PyPI `nvidia-livecodebench`, module
`livecodebench.evaluation.compute_code_generation_metrics.check_correctness`, which forks a child
that runs `testing_util.run_test` with a 6 s timeout per test) grades every program of
`fixtures/livecodebench_oracle/programs.jsonl` on the problems of `problems.jsonl`; its verdict is
"every public and private test passed". seqpar must give the same verdict on every program,
except the official evaluator's own quirks (programs flagged `"quirk": true`), where seqpar
deliberately differs: it runs the program as a plain script, so `quit()`, `sys.stdin.buffer`,
`open(0)` and a function's `global` naming a top-level variable work, while the official
evaluator disables `quit`, replaces stdin by a text buffer, binds `open` before it patches it,
and wraps the whole program in a function (top-level variables become locals).

Each program row also records the official verdict it was written to show (`official`); the
test checks the oracle still gives it, so that every row tests what its `kind` says.

`run_test` calls `reliability_guard()`, which disables `os.kill`, `os.remove` and more in the
process that calls it: the oracle never runs in the pytest process, only in a subprocess (which
forks a child per program).
"""

from __future__ import annotations

import base64
import json
import pickle
import subprocess
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from seqpar.tasks.code import LiveCodeBenchTask

FIXTURES = Path(__file__).parent / "fixtures" / "livecodebench_oracle"
OFFICIAL_TIMEOUT_S = 6  # the official evaluator's default, per test

# Runs in a subprocess: argv[1] holds [{"sample": ..., "code": ...}], argv[2] gets the results.
# Results go to a file because a functional program's prints reach this process's stdout.
ORACLE = """
import json, sys
from livecodebench.evaluation.compute_code_generation_metrics import check_correctness

jobs = json.loads(open(sys.argv[1], encoding="utf-8").read())
out = []
for job in jobs:
    try:
        results, _ = check_correctness(job["sample"], job["code"], timeout=job["timeout"],
                                       debug=False)
        results = [r.item() if hasattr(r, "item") else r for r in results]
        passed = len(results) == job["tests"] and all(r is True for r in results)
        out.append({"passed": passed, "results": [repr(r) for r in results]})
    except Exception as error:  # the evaluator itself failed: record it, never pass
        out.append({"passed": False, "results": [repr(error)]})
with open(sys.argv[2], "w", encoding="utf-8") as handle:
    json.dump(out, handle)
"""

# The quirks: the documented disagreement, as (official verdict, seqpar verdict).
QUIRKS = {
    "sum_quit": (False, True),
    "sum_stdin_buffer": (False, True),
    "sum_open_0": (False, True),
    "sum_top_level_global": (False, True),
}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def private_cases(field: str) -> list[dict[str, Any]]:
    """Private tests as LiveCodeBench's own loader reads them (independently of seqpar's):
    JSON, else base64(zlib(pickle(JSON string)))."""
    try:
        return json.loads(field)
    except json.JSONDecodeError:
        return json.loads(pickle.loads(zlib.decompress(base64.b64decode(field.encode()))))


def official_sample(row: dict[str, Any]) -> dict[str, str]:
    """The official evaluator's sample: public then private tests, and the function name."""
    cases = json.loads(row["public_test_cases"]) + private_cases(row["private_test_cases"])
    fn_name = json.loads(row.get("metadata") or "{}").get("func_name")
    io = {
        "inputs": [case["input"] for case in cases],
        "outputs": [case["output"] for case in cases],
        "fn_name": fn_name,
    }
    return {"input_output": json.dumps(io)}


def start_oracle(
    rows: dict[str, dict[str, Any]], programs: list[dict[str, Any]], work: Path
) -> tuple[subprocess.Popen, Path]:
    """Start the official evaluator on every program in one subprocess (runs while seqpar
    grades); returns the process and the file its verdicts will be written to."""
    jobs = []
    for program in programs:
        sample = official_sample(rows[program["question_id"]])
        tests = len(json.loads(sample["input_output"])["inputs"])
        jobs.append(
            {
                "sample": sample,
                "code": program["code"],
                "timeout": OFFICIAL_TIMEOUT_S,
                "tests": tests,
            }
        )
    (work / "jobs.json").write_text(json.dumps(jobs), encoding="utf-8")
    results = work / "official.json"
    process = subprocess.Popen(
        [sys.executable, "-c", ORACLE, str(work / "jobs.json"), str(results)],
        cwd=work,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    return process, results


@pytest.mark.slow
def test_seqpar_agrees_with_the_official_livecodebench_evaluator(tmp_path):
    rows = {str(row["question_id"]): row for row in read_jsonl(FIXTURES / "problems.jsonl")}
    programs = read_jsonl(FIXTURES / "programs.jsonl")
    assert {p["question_id"] for p in programs} <= set(rows)
    assert len({p["name"] for p in programs}) == len(programs), "program names must be unique"
    assert {p["name"] for p in programs if p.get("quirk")} == set(QUIRKS)

    data = tmp_path / "data"
    data.mkdir()
    (data / "test.jsonl").write_text(
        (FIXTURES / "problems.jsonl").read_text(encoding="utf-8"), encoding="utf-8"
    )
    work = tmp_path / "oracle"
    work.mkdir()
    oracle, oracle_results = start_oracle(rows, programs, work)

    task = LiveCodeBenchTask(data, release="v1")
    problems = {problem.id: problem for problem in task.load()}
    assert set(problems) == set(rows)

    def seqpar_verdict(program: dict[str, Any]) -> tuple[bool, str]:
        grade = task.grade(
            problems[program["question_id"]], "```python\n" + program["code"] + "\n```"
        )
        return grade.correct, grade.reason

    with ThreadPoolExecutor(2) as pool:
        seqpar = list(pool.map(seqpar_verdict, programs))

    _, stderr = oracle.communicate(timeout=1800)
    assert oracle.returncode == 0, f"the official evaluator failed:\n{stderr[-4000:]}"
    official = json.loads(oracle_results.read_text(encoding="utf-8"))
    assert len(official) == len(programs)

    # Each row shows what it says it shows: the oracle gives the verdict the row records.
    mislabelled = [
        f"{p['name']} ({p['kind']}): recorded {p['official']}, oracle {o['passed']} {o['results']}"
        for p, o in zip(programs, official, strict=True)
        if o["passed"] != p["official"]
    ]
    assert not mislabelled, "rows whose official verdict changed:\n" + "\n".join(mislabelled)

    table = [
        (program, o["passed"], o["results"], correct, reason)
        for program, o, (correct, reason) in zip(programs, official, seqpar, strict=True)
    ]
    plain = [row for row in table if not row[0].get("quirk")]
    quirks = [row for row in table if row[0].get("quirk")]
    disagreements = [
        f"{p['question_id']}/{p['name']} ({p['kind']}): official {passed} {results}, "
        f"seqpar {correct} ({reason})"
        for p, passed, results, correct, reason in plain
        if passed != correct
    ]
    agree = len(plain) - len(disagreements)
    print(
        f"LiveCodeBench oracle: {agree}/{len(plain)} non-quirk programs agree over "
        f"{len({row[0]['question_id'] for row in plain})} problems; quirks: {len(quirks)}"
    )
    assert len(plain) >= 60
    assert len({row[0]["question_id"] for row in plain}) >= 12
    kinds = {
        json.loads(rows[row[0]["question_id"]]["metadata"]).get("func_name") is None
        for row in plain
    }
    assert kinds == {True, False}, "the table needs stdin and functional problems"
    assert not disagreements, (
        f"seqpar disagrees with the official evaluator on {len(disagreements)} of "
        f"{len(plain)} programs:\n" + "\n".join(disagreements)
    )

    wrong_quirks = [
        f"{p['name']} ({p['kind']}): official {passed} {results}, seqpar {correct} ({reason}); "
        f"documented: official {QUIRKS[p['name']][0]}, seqpar {QUIRKS[p['name']][1]}"
        for p, passed, results, correct, reason in quirks
        if (passed, correct) != QUIRKS[p["name"]]
    ]
    assert not wrong_quirks, "quirks not as documented:\n" + "\n".join(wrong_quirks)


def test_the_prelude_is_the_official_evaluators():
    from livecodebench.evaluation.testing_util import import_string

    from seqpar.tasks.code import LCB_IMPORTS

    assert import_string == LCB_IMPORTS
