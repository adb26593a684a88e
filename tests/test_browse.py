"""`seqpar browse`: copied spans, and the page of a real tiny study in Chromium."""

from __future__ import annotations

import functools
import json
import math

import pytest

from seqpar.analysis.copying import copied_spans, word_spans
from seqpar.analysis.induction import copied_ngrams, copy_rate
from seqpar.strategies.sequential import shown as shown_attempt

from .test_e2e import cli

CHROMIUM = "/usr/bin/chromium"


def test_copied_spans_cover_the_copied_ngrams_and_give_the_copy_rate():
    text = "Ravi has 13 cards. Then Ravi gives 10 cards to a friend."
    sources = ["So Ravi has 13 cards. He", "gives 10 cards to a friend"]
    found = copied_spans(text, sources, 3)
    assert [text[a:b] for a, b in found.spans] == [
        "Ravi has 13 cards.",
        "gives 10 cards to a friend",
    ]
    words = [w for w, _, _ in word_spans(text)]
    source = [w for s in sources for w, _, _ in word_spans(s)]
    assert found.rate == copy_rate(words, source, 3) == 7 / 12
    assert copied_spans("too short", sources, 3).spans == ()
    assert math.isnan(copied_spans("too short", sources, 3).rate)
    assert copied_spans("nothing in common here at all", sources, 2).spans == ()


def test_embedded_data_cannot_close_its_script_element_and_bad_paths_are_refused(tmp_path):
    from seqpar.cli import main
    from seqpar.report.browse import inert_json

    hostile = {"text": "</script><script>alert(1)</script>\u2028<!--", "n": [1, None]}
    embedded = inert_json(hostile)
    assert "<" not in embedded and json.loads(embedded) == hostile
    assert main(["browse", str(tmp_path)]) == 2  # neither a run nor a study


def expected_marks(text: str, sources: list[str], n: int) -> list[str]:
    """The copy analysis' verdict as marked strings: runs of overlapping copied n-grams."""
    tokens = word_spans(text)
    source = [w for s in sources for w, _, _ in word_spans(s)]
    runs: list[list[int]] = []
    for start, hit in enumerate(copied_ngrams([w for w, _, _ in tokens], source, n)):
        if hit and runs and start <= runs[-1][1]:
            runs[-1][1] = start + n - 1
        elif hit:
            runs.append([start, start + n - 1])
    return [text[tokens[a][1] : tokens[b][2]] for a, b in runs]


@pytest.mark.slow
def test_browser_of_a_real_study_renders_every_panel_and_the_copied_spans(study, tmp_path):
    from PIL import Image, ImageStat
    from playwright.sync_api import sync_playwright

    import seqpar

    page_path = tmp_path / "browse.html"
    result = cli("browse", str(study), "--out", str(page_path))
    assert result.returncode == 0, result.stderr
    loaded = seqpar.load_study(study)
    assert "written:" in result.stdout
    slots = {name: len(run.data.samples) for name, run in loaded.runs.items()}

    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        failed: list[str] = []
        errors: list[str] = []
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        page.on("requestfailed", lambda request: failed.append(request.url))
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(page_path.as_uri(), wait_until="load")
        assert page.locator("details.problem").count() == 3
        assert page.locator("details.problem[open] article.panel").count() > 0  # first one
        page.click("#open-all")
        for name, count in slots.items():
            assert page.locator(f"article.panel[data-run='{name}']").count() == count, name
        assert page.locator("article.panel pre.text").count() == sum(slots.values())
        panels = page.eval_on_selector_all(
            "article.panel[data-run='sequential']",
            """ps => ps.map(p => ({
                problem: p.closest('details').dataset.problem, round: +p.dataset.round,
                rate: p.dataset.copyRate === undefined ? null : +p.dataset.copyRate,
                marks: [...p.querySelectorAll('mark.copied')].map(m => m.textContent),
                text: p.querySelector('pre.text').textContent}))""",
        )
        page.screenshot(path=tmp_path / "browse.png", full_page=True)

        page.select_option("#outcome", "incorrect")
        wrong = sum(s.status == "ok" and not s.correct for s in loaded["parallel"].data.samples)
        assert page.locator("article.panel[data-run='parallel']").count() == wrong
        page.select_option("#outcome", "all")
        page.uncheck("#strategies input[value='sequential']")
        assert page.locator("article.panel[data-run='sequential']").count() == 0
        assert page.locator("article.panel[data-run='parallel']").count() == slots["parallel"]
        first = loaded["parallel"].data.problem_ids[1]
        page.fill("#query", first)
        assert page.locator("details.problem:not(.hidden)").count() == 1
        browser.close()
    assert not failed and not errors
    assert requests == [page_path.as_uri()]  # self-contained: nothing else is fetched

    run = loaded["sequential"].data
    shown = functools.partial(shown_attempt, run.config.template)
    texts = {(s.problem_id, s.round): s.text for s in run.samples}
    checked = 0
    for panel in panels:
        assert panel["text"] == texts[(panel["problem"], panel["round"])]
        if panel["round"] == 1:
            assert panel["rate"] is None and not panel["marks"]
            continue
        earlier = [shown(texts[(panel["problem"], r)]) for r in range(1, panel["round"])]
        final = shown(panel["text"])
        assert panel["marks"] == expected_marks(final, earlier, 4)
        words = [w for w, _, _ in word_spans(final)]
        source = [w for e in earlier for w, _, _ in word_spans(e)]
        rate = copy_rate(words, source, 4)
        assert panel["rate"] is None if math.isnan(rate) else panel["rate"] == pytest.approx(rate)
        checked += bool(panel["marks"])
    assert checked >= 1, "no sequential round copied a 4-gram: the highlight is untested"
    shot = Image.open(tmp_path / "browse.png")
    assert shot.height > 900 and ImageStat.Stat(shot.convert("L")).stddev[0] > 10
