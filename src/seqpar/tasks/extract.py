"""Answer extraction: reasoning blocks, \\boxed{…}, GSM8K '####', 'the answer is'."""

from __future__ import annotations

import re

MAX_ANSWER_CHARS = 1000  # longer "answers" are degenerate output (e.g. endless repetition)
THINK_CLOSE = "</think>"
THINK_OPEN = "<think>"
HASHES = re.compile(r"####\s*([^\n]+)")
ANSWER_IS = re.compile(
    r"the\s+(?:final\s+)?answer\s+is\s*[:=]?\s*(.+?)(?=\.(?:\s|$)|\n|$)", re.IGNORECASE
)


def split_reasoning(text: str) -> tuple[str, str | None]:
    """(reasoning, final text). The final text is None when a think block never closes."""
    close = text.rfind(THINK_CLOSE)
    if close >= 0:
        end = close + len(THINK_CLOSE)
        return text[:end], text[end:]
    if THINK_OPEN in text:
        return text, None
    return "", text


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{…} (or \\fbox{…}), braces balanced; None if there is none."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    rest = text[start:].removeprefix("\\boxed").removeprefix("\\fbox")
    if rest.startswith(" ") and not rest.lstrip().startswith("{"):
        # "\boxed 5": the argument is the next token.
        token = rest.split(None, 1)
        return token[0].rstrip("$.") if token else None
    rest = rest.lstrip()
    if not rest.startswith("{"):
        return None
    depth = 0
    for index, char in enumerate(rest):
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return rest[1:index].strip()
    return None  # unbalanced: the box never closed


def clean_answer(text: str) -> str:
    """Strip the decoration around an answer phrase: $…$, trailing period, bold markers."""
    text = text.strip().strip("*").strip()
    text = re.sub(r"^\$+|\$+$", "", text).strip()
    text = re.sub(r"^\\\(|\\\)$", "", text).strip()
    return text.rstrip(".").strip()


def extract_math_answer(text: str) -> str | None:
    """The final answer of a math solution, from the text after any reasoning block; None
    when there is none or it is longer than MAX_ANSWER_CHARS."""
    answer = find_math_answer(text)
    return answer if answer is None or len(answer) <= MAX_ANSWER_CHARS else None


def find_math_answer(text: str) -> str | None:
    final = split_reasoning(text)[1]
    if final is None:
        return None
    boxed = last_boxed(final)
    if boxed is not None:
        return boxed or None
    for pattern in (HASHES, ANSWER_IS):
        matches = pattern.findall(final)
        if matches:
            answer = clean_answer(matches[-1])
            inner = last_boxed(answer)
            return (inner if inner is not None else answer) or None
    return None


FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)```", re.DOTALL)
OPEN_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*)$", re.DOTALL | re.IGNORECASE)
CODE_START = re.compile(r"^(?:def |class |import |from \S+ import )", re.MULTILINE)


def extract_code(text: str) -> str | None:
    """The solution code: the last ```python block (else the last fenced block, else an
    unclosed fence, else the text itself when it starts like code), after any reasoning."""
    final = split_reasoning(text)[1]
    if final is None:
        return None
    blocks = FENCE.findall(final)
    python = [code for language, code in blocks if language.lower() in ("python", "python3", "py")]
    if python or blocks:
        return (python or [code for _, code in blocks])[-1]
    unclosed = OPEN_FENCE.search(final)
    if unclosed:
        return unclosed.group(1)
    match = CODE_START.search(final)
    return final[match.start() :] if match else None
