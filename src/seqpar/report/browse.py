"""`seqpar browse`: one self-contained HTML page to read the samples of a run or a study.

Per problem, every run's samples stand side by side (parallel samples, sequential rounds,
hybrid and padded runs), each with its answer, grade, token counts and, for rounds that read
earlier solutions, the spans it copied from them: word n-grams also found in the earlier
solutions it read, matched as the copy analysis does (`copy_rate`, on `template.shown`
texts), on word tokens instead of a model's tokens. Code tasks show the feedback each round
received. The data is embedded as JSON and a problem's panels are built only when it is
opened, so a 100-problem study opens at once. Nothing is fetched from the network.
"""

from __future__ import annotations

import functools
import html
import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from seqpar import roles
from seqpar.analysis.copying import copied_spans
from seqpar.errors import SeqparError
from seqpar.report.document import Link
from seqpar.rundata import RunData, load_run
from seqpar.store import write_atomic
from seqpar.strategies.sequential import shown as shown_attempt
from seqpar.types import Problem, Sample

DEFAULT_NGRAM = 4
PAGE = "browse.html"


@dataclass(frozen=True)
class Panel:
    """One slot of one run for one problem, as the page shows it."""

    chain: int
    round: int
    label: str
    scored: bool
    status: str
    text: str
    answer: str | None
    correct: bool
    grade: str  # grade reason, skip reason, or test counts
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    copied: list[tuple[int, int]]  # character spans of `text`
    copy_rate: float | None  # None when the slot reads no earlier solution
    reads: str  # which earlier slots it read ("" for none)
    received: str  # the feedback on the last solution it read
    rejected: list[str]  # texts of earlier draws of this slot rejected as repeats


def runs_of(path: Path) -> dict[str, RunData]:
    """The runs of a study directory (by name, in plan order), or the one run at `path`."""
    if (path / roles.PLAN_FILE).is_file():
        names = json.loads((path / roles.PLAN_FILE).read_text(encoding="utf-8"))["runs"]
        return {n: load_run(str(path / n)) for n in names if (path / n / "manifest.json").exists()}
    if (path / "manifest.json").is_file():
        return {path.name: load_run(str(path))}
    raise SeqparError(f"{path} is neither a seqpar run (manifest.json) nor a study (study.json)")


def plural(count: int, noun: str) -> str:
    """'1 round', '2 rounds'."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


def slot_label(run: RunData, chain: int, round_: int) -> str:
    """How a researcher names the slot: sample i, round r, shared round r, …"""
    strategy, config = run.strategy, run.config
    if config.strategy.name == "parallel":
        return f"sample {chain + 1}"
    if config.strategy.name == "padded-parallel":
        return f"sample {round_} · {plural(round_ - 1, 'filler')}"
    if config.strategy.name == "hybrid":
        if strategy.scored_round and round_ < strategy.scored_round:
            return f"shared round {round_}"
        return f"sample {chain + 1} after {plural(round_ - 1, 'round')}"
    return f"round {round_}" + (f" · chain {chain + 1}" if strategy.chains > 1 else "")


def utf16(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Character spans as UTF-16 offsets, the way JavaScript indexes strings."""
    if text.isascii() or all(ord(c) < 0x10000 for c in text):
        return spans
    before = [0]
    for char in text:
        before.append(before[-1] + (2 if ord(char) >= 0x10000 else 1))
    return [(before[a], before[b]) for a, b in spans]


def grade_text(sample: Sample) -> str:
    """The grade beyond correct/incorrect: its reason, and test counts for code."""
    if sample.status == "skipped":
        return f"skipped: {sample.skip_reason}"
    parts = [sample.grade_reason] if sample.grade_reason else []
    if sample.public_total:
        parts.append(f"public tests {sample.public_passed}/{sample.public_total}")
    if sample.hidden_total and "hidden" not in sample.grade_reason:
        parts.append(f"hidden tests {sample.hidden_passed}/{sample.hidden_total}")
    return " · ".join(parts)


def panels(run: RunData, problem_id: str, draws: list[Sample], ngram: int) -> list[Panel]:
    """Every used slot of `problem_id` in `run` (whose stored lines for it are `draws`), in
    chain and round order."""
    stored = {s.key: s for s in draws if s.status != "rejected"}
    rejected: dict[tuple[str, int, int], list[str]] = {}
    for draw in draws:
        if draw.status == "rejected":
            rejected.setdefault(draw.key, []).append(draw.text)
    strategy, shown = run.strategy, functools.partial(shown_attempt, run.config.template)
    out = []
    for chain in range(strategy.chains):
        for round_ in range(1, strategy.rounds + 1):
            reads = strategy.history(chain, round_)
            sample = stored.get((problem_id, chain, round_))
            if reads is None or sample is None:
                continue
            earlier = [stored.get((problem_id, c, r)) for c, r in reads]
            copied, rate = [], None
            if reads and sample.status == "ok" and all(e and e.status == "ok" for e in earlier):
                final = shown(sample.text)
                offset = sample.text.find(final) if final else -1
                if offset >= 0:
                    found = copied_spans(final, [shown(e.text) for e in earlier if e], ngram)
                    copied = utf16(sample.text, [(offset + a, offset + b) for a, b in found.spans])
                    rate = None if math.isnan(found.rate) else found.rate
            last = earlier[-1] if earlier else None
            out.append(
                Panel(
                    chain=chain,
                    round=round_,
                    label=slot_label(run, chain, round_),
                    scored=not strategy.scored_round or round_ == strategy.scored_round,
                    status=sample.status,
                    text=sample.text,
                    answer=sample.answer,
                    correct=sample.correct,
                    grade=grade_text(sample),
                    prompt_tokens=sample.prompt_tokens,
                    completion_tokens=sample.completion_tokens,
                    finish_reason=sample.finish_reason,
                    copied=copied,
                    copy_rate=rate,
                    reads=", ".join(slot_label(run, c, r) for c, r in reads),
                    received=last.feedback if last else "",
                    rejected=rejected.get(sample.key, []),
                )
            )
    return out


def problems_of(run: RunData) -> dict[str, Problem]:
    """The run's problems by id; empty when the task's data cannot be read here."""
    try:
        return {p.id: p for p in run.task.load()}
    except (SeqparError, OSError):
        return {}


def browser_data(
    title: str, runs: Mapping[str, RunData], ngram: int
) -> tuple[dict[str, Any], list[list[list[Panel]]]]:
    """The page's index (runs, and per problem its question and counts per run) and, per
    problem, the panels of each run."""
    first = next(iter(runs.values()))
    known = problems_of(first)
    ids = list(dict.fromkeys(pid for run in runs.values() for pid in run.problem_ids))
    draws: list[dict[str, list[Sample]]] = []
    for run in runs.values():
        by_problem: dict[str, list[Sample]] = {}
        for draw in run.draws:
            by_problem.setdefault(draw.problem_id, []).append(draw)
        draws.append(by_problem)
    index, bodies = [], []
    for pid in ids:
        problem = known.get(pid)
        body = [
            panels(run, pid, own.get(pid, []), ngram)
            for run, own in zip(runs.values(), draws, strict=True)
        ]
        counts = []
        for column in body:
            scored = [p for p in column if p.scored and p.status == "ok"]
            right = sum(p.correct for p in scored)
            counts.append([right, len(scored) - right, len(column)])
        index.append(
            {
                "id": pid,
                "question": problem.question if problem else "",
                "reference": problem.answer if problem else None,
                "counts": counts,
            }
        )
        bodies.append(body)
    config = first.config
    data = {
        "title": title,
        "meta": f"{config.model} · {config.task.name} · N = {config.n} · {len(ids)} problems · "
        f"max {config.sampling.max_tokens} tokens · temperature {config.sampling.temperature}",
        "ngram": ngram,
        "report": "",
        "runs": [
            {
                "name": name,
                "strategy": run.config.strategy.name,
                "feedback": run.config.task.feedback,
            }
            for name, run in runs.items()
        ],
        "problems": index,
    }
    return data, bodies


def inert_json(value: Any) -> str:
    """JSON that no text inside can end a script element with."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def render(data: Mapping[str, Any], bodies: list[list[list[Panel]]]) -> str:
    """The page: inline CSS and script; the index as JSON, and each problem's panels as a
    JSON element of its own that is parsed only when the problem is opened."""
    problems = "".join(
        f"<script type='application/json' id='p{number}'>"
        + inert_json([[asdict(p) for p in column] for column in body])
        + "</script>"
        for number, body in enumerate(bodies)
    )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{html.escape(str(data['title']))}</title><style>{STYLE}</style></head><body>"
        f"{BODY}<script type='application/json' id='data'>{inert_json(data)}</script>"
        f"{problems}<script>{SCRIPT}</script></body></html>"
    )


def write_browser(path: Path, out: Path | None = None, *, ngram: int = DEFAULT_NGRAM) -> Path:
    """Write the browser of the run or study at `path` to `out` (default PATH/browse.html)."""
    study = (path / roles.PLAN_FILE).is_file()
    return write_page(runs_of(path), path, out or path / PAGE, ngram=ngram, study=study)


def write_page(
    runs: Mapping[str, RunData], path: Path, out: Path, *, ngram: int, study: bool
) -> Path:
    """Write the browser of `runs` (those of the run or study directory `path`) to `out`."""
    if ngram < 1:
        raise SeqparError(f"--ngram must be >= 1, got {ngram}")
    title = f"seqpar samples: {path.resolve().name}" + (" (study)" if study else "")
    data, bodies = browser_data(title, runs, ngram)
    if study:  # the study report links here and is written next
        data["report"] = os.path.relpath(path / "report.html", out.parent)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, render(data, bodies))
    return out


def browser_link(study: Path, runs: Mapping[str, RunData]) -> Link:
    """Write the browser of a study's `runs` beside its report; the report's link to it."""
    page = write_page(runs, study, study / PAGE, ngram=DEFAULT_NGRAM, study=True)
    return Link(page.name, "Sample browser: every sample side by side, copied spans highlighted")


STYLE = """
body{font-family:system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
header{position:sticky;top:0;z-index:2;background:#fff;border-bottom:1px solid #ddd;
padding:.5em 1em}
h1{font-size:1.2em;margin:.2em 0}.meta,.legend{color:#555;font-size:90%;margin:.2em 0}
#filters{display:flex;flex-wrap:wrap;gap:.4em 1.2em;align-items:center;font-size:90%}
#filters fieldset{border:0;padding:0;margin:0;display:flex;gap:.6em;flex-wrap:wrap}
main{padding:.5em 1em}
details.problem{background:#fff;border:1px solid #ddd;border-radius:4px;margin:.4em 0}
details.problem>summary{cursor:pointer;padding:.4em .6em;display:flex;gap:1em;
flex-wrap:wrap;align-items:baseline}
.pid{font-weight:600}.reference{margin:0 .8em}
.chip{font-size:85%;color:#444;background:#eee;border-radius:3px;padding:0 .4em}
.question{white-space:pre-wrap;margin:.4em .8em;padding:.4em;background:#f6f6ff;
border-left:3px solid #99c;max-height:16em;overflow:auto}
.columns{display:flex;gap:.6em;overflow-x:auto;padding:.4em .8em .8em;align-items:flex-start}
.column{flex:1 0 300px;max-width:560px;min-width:0}
.column h3{font-size:95%;margin:.2em 0;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.panel{border:1px solid #ccc;border-left:5px solid #aaa;border-radius:3px;margin:.4em 0;
background:#fff;font-size:90%}
.panel.correct{border-left-color:#2a9d3a}.panel.incorrect{border-left-color:#d0453a}
.panel.skipped{opacity:.6}.panel.context{background:#f7f7f7}
.panel .head{display:flex;justify-content:space-between;padding:.2em .4em;
background:#f4f4f4;font-weight:600}
.panel .facts{padding:.2em .4em;color:#333}.panel .facts span{margin-right:.8em}
.panel pre{white-space:pre-wrap;word-break:break-word;margin:0;padding:.4em;
max-height:24em;overflow:auto;font-size:95%}
mark.copied{background:#ffd76e;color:inherit}
.feedback{white-space:pre-wrap;margin:0;padding:.3em .4em;background:#eef6ff;
border-top:1px dashed #9bc;font-size:90%;max-height:12em;overflow:auto}
.rejected{padding:.2em .4em;color:#666}.hidden{display:none}
"""

BODY = """
<header><h1 id='title'></h1><p class='meta' id='meta'></p>
<div id='filters'>
<label>Problem <input id='query' type='search' placeholder='id or words of the question'></label>
<label>Samples <select id='outcome'><option value='all'>all</option>
<option value='correct'>correct</option><option value='incorrect'>incorrect</option></select>
</label>
<fieldset id='strategies'><legend class='hidden'>runs</legend></fieldset>
<button id='open-all' type='button'>open all</button>
<button id='close-all' type='button'>close all</button>
<span id='count'></span><a id='report' class='hidden'>study report</a></div>
<p class='legend'><mark class='copied'>highlighted</mark>: spans made of word
<span id='ngram'></span>-grams that also occur in the earlier solutions the sample read
(the copy analysis' n-gram matching). Left border: green correct, red incorrect.</p>
</header><main id='problems'></main>
"""

SCRIPT = """
'use strict';
const DATA = JSON.parse(document.getElementById('data').textContent);
const state = {query: '', outcome: 'all', runs: DATA.runs.map(() => true)};
function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}
function keep(panel) {
  if (state.outcome === 'all') return true;
  if (panel.status !== 'ok' || !panel.scored) return false;
  return (state.outcome === 'correct') === panel.correct;
}
function highlighted(text, spans) {
  const pre = el('pre', 'text');
  let at = 0;
  for (const [start, end] of spans) {
    if (start > at) pre.appendChild(document.createTextNode(text.slice(at, start)));
    pre.appendChild(el('mark', 'copied', text.slice(start, end)));
    at = end;
  }
  if (at < text.length) pre.appendChild(document.createTextNode(text.slice(at)));
  return pre;
}
function renderPanel(panel, run) {
  const verdict = panel.status === 'skipped' ? 'skipped'
    : (panel.correct ? 'correct' : 'incorrect');
  const node = el('article', 'panel ' + verdict + (panel.scored ? '' : ' context'));
  node.dataset.run = run.name;
  node.dataset.chain = panel.chain;
  node.dataset.round = panel.round;
  if (panel.copy_rate !== null) node.dataset.copyRate = panel.copy_rate;
  const head = el('div', 'head');
  head.appendChild(el('span', 'label', panel.label + (panel.scored ? '' : ' (context)')));
  head.appendChild(el('span', 'verdict', panel.status === 'skipped' ? 'skipped'
    : (panel.correct ? '\u2713 correct' : '\u2717 incorrect')));
  node.appendChild(head);
  const facts = el('div', 'facts');
  const fact = (name, value) => facts.appendChild(el('span', 'fact-' + name, value));
  fact('answer', 'answer: ' + (panel.answer === null ? '\u2014' : panel.answer));
  if (panel.grade) fact('grade', panel.grade);
  fact('tokens', 'tokens: ' + panel.prompt_tokens + ' prompt \u00b7 '
    + panel.completion_tokens + ' generated' + (panel.finish_reason === 'length'
    ? ' (cut at max tokens)' : ''));
  if (panel.copy_rate !== null) fact('copy', 'copied ' + DATA.ngram + '-grams: '
    + (100 * panel.copy_rate).toFixed(0) + '%');
  if (panel.reads) fact('reads', 'read: ' + panel.reads);
  node.appendChild(facts);
  if (panel.received) {
    const box = el('pre', 'feedback', 'feedback received: ' + panel.received);
    node.appendChild(box);
  }
  node.appendChild(highlighted(panel.text, panel.copied));
  if (panel.rejected.length) {
    const more = el('details', 'rejected');
    more.appendChild(el('summary', '', panel.rejected.length
      + ' earlier draw(s) rejected as repeats'));
    for (const text of panel.rejected) more.appendChild(el('pre', 'text', text));
    node.appendChild(more);
  }
  return node;
}
function panelsOf(item) {
  if (!item.panels) {
    item.panels = JSON.parse(document.getElementById('p' + item.number).textContent);
  }
  return item.panels;
}
function renderBody(item) {
  const {details, problem} = item;
  const runs = panelsOf(item);
  details.querySelectorAll('.body').forEach(n => n.remove());
  const body = el('div', 'body');
  if (problem.question) body.appendChild(el('div', 'question', problem.question));
  if (problem.reference !== null) body.appendChild(el('div', 'facts reference',
    'reference answer: ' + problem.reference));
  const columns = el('div', 'columns');
  DATA.runs.forEach((run, index) => {
    if (!state.runs[index]) return;
    const column = el('section', 'column');
    column.dataset.run = run.name;
    const heading = el('h3', '', run.name + (run.name === run.strategy ? ''
      : ' (' + run.strategy + ')') + (run.feedback !== 'none'
      ? ' \u00b7 feedback ' + run.feedback : ''));
    heading.title = heading.textContent;
    column.appendChild(heading);
    for (const panel of runs[index]) {
      if (keep(panel)) column.appendChild(renderPanel(panel, run));
    }
    columns.appendChild(column);
  });
  body.appendChild(columns);
  details.appendChild(body);
  item.rendered = true;
}
function chips(problem) {
  return DATA.runs.map((run, index) => {
    const [right, wrong] = problem.counts[index];
    return run.name + ' ' + right + '/' + (right + wrong);
  });
}
const items = DATA.problems.map((problem, number) => {
  const details = el('details', 'problem');
  details.dataset.problem = problem.id;
  const summary = el('summary');
  summary.appendChild(el('span', 'pid', problem.id));
  for (const chip of chips(problem)) summary.appendChild(el('span', 'chip', chip));
  details.appendChild(summary);
  const item = {details, problem, number, rendered: false, panels: null};
  details.addEventListener('toggle', () => {
    if (details.open && !item.rendered) renderBody(item);
  });
  return item;
});
function matches(item) {
  const {problem} = item;
  const query = state.query.trim().toLowerCase();
  if (query && !problem.id.toLowerCase().includes(query)
      && !problem.question.toLowerCase().includes(query)) return false;
  const slot = {all: 2, correct: 0, incorrect: 1}[state.outcome];
  return DATA.runs.some((run, index) => state.runs[index] && problem.counts[index][slot] > 0);
}
function apply() {
  let shown = 0;
  for (const item of items) {
    const visible = matches(item);
    item.details.classList.toggle('hidden', !visible);
    shown += visible;
    item.rendered = false;
    if (visible && item.details.open) renderBody(item);
  }
  document.getElementById('count').textContent = shown + ' of ' + items.length + ' problems';
}
function setup() {
  document.title = DATA.title;
  document.getElementById('title').textContent = DATA.title;
  document.getElementById('meta').textContent = DATA.meta;
  document.getElementById('ngram').textContent = DATA.ngram;
  if (DATA.report) {
    const link = document.getElementById('report');
    link.href = DATA.report;
    link.classList.remove('hidden');
  }
  const box = document.getElementById('strategies');
  DATA.runs.forEach((run, index) => {
    const label = el('label');
    const input = el('input');
    input.type = 'checkbox';
    input.checked = true;
    input.value = run.name;
    input.addEventListener('change', () => { state.runs[index] = input.checked; apply(); });
    label.appendChild(input);
    label.appendChild(document.createTextNode(' ' + run.name));
    box.appendChild(label);
  });
  document.getElementById('query').addEventListener('input', event => {
    state.query = event.target.value; apply();
  });
  document.getElementById('outcome').addEventListener('change', event => {
    state.outcome = event.target.value; apply();
  });
  const openAll = open => () => {
    for (const item of items) {
      if (item.details.classList.contains('hidden')) continue;
      if (open && !item.rendered) renderBody(item);
      item.details.open = open;
    }
  };
  document.getElementById('open-all').addEventListener('click', openAll(true));
  document.getElementById('close-all').addEventListener('click', openAll(false));
  const main = document.getElementById('problems');
  const fragment = document.createDocumentFragment();
  for (const item of items) fragment.appendChild(item.details);
  main.appendChild(fragment);
  if (items.length) items[0].details.open = true;
  apply();
}
setup();
"""
