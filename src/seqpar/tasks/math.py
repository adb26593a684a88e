"""Math benchmarks (GSM8K, MATH-500, AIME) from JSONL files or the hub, graded by equivalence."""

from __future__ import annotations

import hashlib
import os
import re
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from seqpar.errors import GRADE_TIMED_OUT, SeqparError
from seqpar.jsonl import read_jsonl
from seqpar.tasks.extract import extract_math_answer
from seqpar.types import Grade, Problem

PROMPT = "{question}\n\nPlease reason step by step, and put your final answer within \\boxed{{}}."
GRADE_TIMEOUT_S = 5
# A plain number: optional minus, digits either bare or in thousands groups of exactly three
# (first group without a leading zero), optional decimal part. ASCII digits only.
PLAIN_NUMBER = re.compile(
    r"-?(?:(?:[0-9]+|[1-9][0-9]{0,2}(?:,[0-9]{3})+)(?:\.[0-9]+)?|\.[0-9]+)", re.ASCII
)


@dataclass(frozen=True)
class MathSource:
    """Where a math benchmark lives offline (file in the data dir) and on the hub."""

    name: str
    file: str
    question: str
    answer: str
    hub: tuple[str, str | None, str]  # (dataset, config, split)
    hub_question: str
    hub_answer: str


MATH_TASKS = {
    s.name: s
    for s in (
        MathSource(
            "gsm8k",
            "gsm8k_test.jsonl",
            "question",
            "final",
            ("openai/gsm8k", "main", "test"),
            "question",
            "answer",
        ),
        MathSource(
            "math500",
            "math500.jsonl",
            "problem",
            "answer",
            ("HuggingFaceH4/MATH-500", None, "test"),
            "problem",
            "answer",
        ),
        MathSource(
            "aime24",
            "aime24.jsonl",
            "problem",
            "answer",
            ("HuggingFaceH4/aime_2024", None, "train"),
            "problem",
            "answer",
        ),
        MathSource(
            "aime25",
            "aime25.jsonl",
            "problem",
            "answer",
            ("math-ai/aime25", None, "test"),
            "problem",
            "answer",
        ),
    )
}


def as_number(answer: str) -> Fraction | None:
    """The exact value of an answer that is a plain number (`-1,234.50`, `.5`, `007`), else None;
    nothing is stripped but surrounding whitespace, so `2k`, `1,2`, `50\\%` and `\\$18` are None."""
    text = answer.strip()
    if not PLAIN_NUMBER.fullmatch(text):
        return None
    return Fraction(text.replace(",", ""))


def equivalent(a: str, b: str) -> bool:
    """Mathematical equivalence as `compare` decides it; a comparison that runs out of time
    counts as not equivalent."""
    return compare(a, b) is True


def compare(a: str, b: str) -> bool | None:
    """Whether `a` (reference) and `b` are equivalent: equal text, else exactly equal values when
    both are plain numbers (`as_number`), else math-verify's verdict; None when math-verify ran
    out of time. docs/concepts.md ("Grading: math answers") lists where this differs from
    math-verify."""
    if a.strip() == b.strip():
        return True
    x, y = as_number(a), as_number(b)
    if x is not None and y is not None:
        return x == y
    from math_verify import parse, verify
    from math_verify.errors import TimeoutException

    # math-verify bounds time with SIGALRM, which only the main thread may use.
    limit = GRADE_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None
    try:
        gold = parse(f"\\boxed{{{a}}}", parsing_timeout=limit, raise_on_error=True)
        pred = parse(f"\\boxed{{{b}}}", parsing_timeout=limit, raise_on_error=True)
        return bool(
            gold and pred and verify(gold, pred, timeout_seconds=limit, raise_on_error=True)
        )
    except TimeoutException:
        return None
    except Exception:  # math-verify raises many kinds on odd LaTeX; no match then
        return False


def binary_feedback(grade: Grade, level: str) -> str:
    """Math feedback: nothing, or whether the answer is correct."""
    if level == "binary":
        return f"Feedback: the answer is {'correct' if grade.correct else 'incorrect'}."
    return ""


class AnswerTask:
    """Shared by tasks with a final answer: the math prompt, extraction, equivalence grading
    and binary feedback."""

    feedback_levels = ("none", "binary")
    answer_kind = "answer"

    def prompt(self, problem: Problem) -> str:
        return PROMPT.format(question=problem.question)

    def grade(self, problem: Problem, text: str) -> Grade:
        answer = extract_math_answer(text)
        if answer is None:
            return Grade(None, False, "no answer found")
        verdict = compare(problem.answer, answer) if problem.answer is not None else False
        if verdict is None:
            return Grade(answer, False, GRADE_TIMED_OUT)
        return Grade(answer, verdict, "equivalent" if verdict else "not equivalent")

    def equivalent(self, a: str, b: str) -> bool:
        return equivalent(a, b)

    def feedback(self, problem: Problem, grade: Grade, level: str) -> str:
        return binary_feedback(grade, level)


class MathTask(AnswerTask):
    """A math benchmark: problems with reference answers; answers extracted and compared."""

    def __init__(self, source: MathSource, data_dir: str | Path | None = None) -> None:
        self.source = source
        self.name = source.name
        directory = data_dir or os.environ.get("SEQPAR_DATA_DIR")
        self.data_dir = Path(directory).expanduser() if directory else None

    @property
    def path(self) -> Path | None:
        return self.data_dir / self.source.file if self.data_dir else None

    def load(self) -> list[Problem]:
        if self.path is None:
            return self.load_hub()
        if not self.path.is_file():
            raise SeqparError(
                f"task {self.name!r}: data file {self.path} not found; pass --data-dir with a "
                f"folder holding {self.source.file} (or set SEQPAR_DATA_DIR)"
            )
        problems = []
        for index, (number, row) in enumerate(read_jsonl(self.path)):
            fields = (self.source.question, self.source.answer)
            missing = [f for f in fields if not isinstance(row.get(f), str | int | float)]
            if missing:
                raise SeqparError(
                    f"{self.path}:{number}: missing or empty field(s) {', '.join(missing)}"
                )
            problems.append(
                Problem(
                    id=str(row.get("id", f"{self.name}-{index}")),
                    question=row[self.source.question],
                    answer=str(row[self.source.answer]),
                )
            )
        if not problems:
            raise SeqparError(f"task {self.name!r}: {self.path} holds no problems")
        return problems

    def load_hub(self) -> list[Problem]:
        dataset, config, split = self.source.hub
        try:
            from datasets import load_dataset

            rows = load_dataset(dataset, config, split=split)
        except Exception as error:  # no datasets package, or no network
            raise SeqparError(
                f"task {self.name!r}: no --data-dir/SEQPAR_DATA_DIR given and the hub dataset "
                f"{dataset} could not be loaded ({error}); offline, pass --data-dir with a "
                f"folder holding {self.source.file}"
            ) from error
        problems = []
        for index, row in enumerate(rows):
            answer = str(row[self.source.hub_answer])
            if self.name == "gsm8k":
                answer = answer.split("####")[-1].strip().replace(",", "")
            problems.append(Problem(f"{self.name}-{index}", row[self.source.hub_question], answer))
        return problems

    def describe(self) -> dict[str, Any]:
        if self.path is None:
            dataset, config, split = self.source.hub
            return {"task": self.name, "source": f"hub:{dataset}/{config or ''}:{split}"}
        digest = hashlib.sha256(self.path.read_bytes()).hexdigest()
        return {"task": self.name, "source": self.source.file, "sha256": digest}


def build(name: str, data_dir: str | Path | None = None, **options: Any) -> MathTask:
    """The registry's builder of the math task `name` (no options)."""
    if options:
        raise SeqparError(f"task {name!r} takes no options; got {', '.join(options)}")
    return MathTask(MATH_TASKS[name], data_dir)
