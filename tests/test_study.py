"""`seqpar study` end to end with the real bundled SmolLM2 (slow)."""

import json
import re
import shutil
from collections import defaultdict

import pytest

from .conftest import TINY_STUDY as TINY
from .test_e2e import cli

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
RUNS = (
    "parallel",
    "sequential",
    "padded-parallel",
    "padded-parallel-x2",
    "padded-parallel-neutral",
    "hybrid-k1",
)
FIGURES = 4  # accuracy vs N, vs tokens, accuracy vs round (H2), similarity vs round (H3)


def table_row(markdown: str, name: str) -> list[str]:
    line = next(line for line in markdown.splitlines() if line.startswith(f"| {name} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def mean_of(cell: str) -> float:
    return float(cell.split()[0])


def test_study_report_numbers_match_the_samples(study):
    tmp_path = study
    record = json.loads((tmp_path / "study.json").read_text())
    assert set(record["runs"]) == set(RUNS)
    assert record["analysis"] == {
        "margin": 0.1,
        "alpha": 0.05,
        "hybrid_k": 1,
        "long_pad_scale": 2.0,
    }
    markdown = (tmp_path / "report.md").read_text()
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == FIGURES and "src='figures" not in html
    for heading in ("H1 · Aggregation", "H2 · Context length", "H3 · Exploration", "Verdicts"):
        assert heading in markdown
    assert "Grading timeouts (counted incorrect): parallel 0, sequential 0" in markdown
    # The verdicts open the report: 3 problems are too few for any of them.
    summary = markdown.split("## Accuracy at full budget")[0]
    for line in ("H1 \\(aggregation\\)", "H2 \\(context length\\)", "H3 \\(exploration\\)"):
        assert re.search(
            f"^{line} inconclusive: 3 problems are fewer than the 7 an effect needs and the "
            "39 'no effect' needs", summary, re.MULTILINE,
        )  # fmt: skip
    header = table_row(summary, "hypothesis")
    for field in (
        "margin",
        "estimate",
        "95% interval",
        "adjusted p (difference)",
        "MDE (80% power)",
    ):
        assert field in header, field
    h1 = dict(zip(header, table_row(summary, "H1 (aggregation)"), strict=True))
    assert h1["margin"] == "±0.10" and h1["MDE (80% power)"] == "none" and h1["problems"] == "3"
    assert re.fullmatch(r"\[[-+]\d\.\d{3}, [-+]\d\.\d{3}\]", h1["95% interval"])
    assert "Decision rules, fixed in study.json" in summary
    assert table_row(summary, "compared run")[3:] == [
        "generated tokens / problem",
        "prompt tokens / problem",
    ]
    rounds = markdown.split("## H2 · Context length")[1]
    assert table_row(rounds, "round")[1:3] == [
        "prompt tokens: sequential",
        "prompt tokens: padded-parallel",
    ]
    assert re.fullmatch(r"\d+", table_row(rounds, "2")[1])  # whole numbers of tokens

    for run in ("parallel", "sequential"):
        rows = [
            json.loads(line) for line in (tmp_path / run / "samples.jsonl").read_text().splitlines()
        ]
        correct = defaultdict(list)
        for row in rows:
            correct[row["problem_id"]].append(row["correct"])
        accuracy = markdown.split("## Accuracy at full budget")[1]
        cells = table_row(accuracy, run)  # run, last, majority, pass@k, gen tokens, prompt …
        any_correct = sum(any(c) for c in correct.values()) / 3
        assert mean_of(cells[3]) == pytest.approx(any_correct, abs=5e-4)
        if run == "parallel":
            assert mean_of(cells[1]) == pytest.approx(sum(r["correct"] for r in rows) / 6, abs=5e-4)
        else:
            last = [r["correct"] for r in rows if r["round"] == 2]
            assert mean_of(cells[1]) == pytest.approx(sum(last) / 3, abs=5e-4)
        generated = sum(r["completion_tokens"] for r in rows) / 3
        assert float(cells[4]) == pytest.approx(generated, abs=0.5)

    again = cli("study", *TINY, "--out", str(tmp_path))  # resumes: nothing new to generate
    assert again.returncode == 0 and "samples to generate" not in again.stderr


def test_study_dry_run_prints_the_plan(tmp_path):
    result = cli("study", *TINY, "--dry-run", "--out", str(tmp_path / "plan"))
    assert result.returncode == 0, result.stderr
    for arm in ("padded-parallel", "padded-parallel-x2", "padded-parallel-neutral"):
        assert f"| {arm} | padded-parallel | 6 |" in result.stdout
    assert "| hybrid-k1 | hybrid | 9 |" in result.stdout
    assert re.search(r"39 generations of up to 28 tokens at \d+ tokens/s", result.stdout)
    assert "An effect needs at least 7 problems and 'no effect' at least 39; this plan has 3" in (
        result.stdout
    )
    assert "| 0.4 | none | 187 |" in result.stdout  # minimal detectable effect: none
    assert not (tmp_path / "plan").exists()


def test_a_declared_analysis_cannot_change_after_the_samples(study):
    result = cli("study", *TINY, "--margin", "0.2", "--out", str(study))
    assert result.returncode == 2
    assert "declared before any sample is drawn" in result.stderr


def test_report_figure_compares_runs(study, tmp_path):
    figure = tmp_path / "cmp.png"
    report = cli(
        "report", str(study / "parallel"), str(study / "sequential"), "--figure", str(figure)
    )
    assert report.returncode == 0 and figure.read_bytes().startswith(b"\x89PNG")


def test_study_ablation_runs_top_and_random_heads(study, tmp_path):
    table = tmp_path / "heads.json"
    table.write_text(
        json.dumps(
            {"heads": [{"layer": 18, "head": 6, "rank": 1}, {"layer": 17, "head": 3, "rank": 2}]}
        )
    )
    result = cli(
        "study", *TINY, "--ablate-top-k", "2", "--heads-table", str(table), "--out", str(study)
    )
    assert result.returncode == 0, result.stderr
    manifest = json.loads((study / "sequential-ablate-top" / "manifest.json").read_text())
    assert manifest["engine"]["ablated_heads"] == ["18.6", "17.3"]
    control = json.loads((study / "sequential-ablate-random" / "manifest.json").read_text())
    assert len(control["engine"]["ablated_heads"]) == 2
    assert not set(control["engine"]["ablated_heads"]) & {"18.6", "17.3"}
    markdown = (study / "report.md").read_text()
    assert "## Induction-head ablation in sequential sampling" in markdown
    section = markdown.split("## Induction-head ablation in sequential sampling")[1]
    assert table_row(section, "sequential-ablate-top")[1] == "18.6,17.3"
    assert table_row(section, "sequential")[1] == "none"


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        (
            ("task", "name"),
            "gsm8k",
            "must be a sequential run of task 'arith'; it is a sequential run of 'gsm8k'",
        ),
        (("model",), "qwen2.5-coder-0.5b-instruct", "was generated by model 'qwen2.5-coder-0.5b"),
    ],
)
def test_match_of_another_task_or_model_is_refused(study, tmp_path, field, value, reason):
    reference = tmp_path / "reference"
    shutil.copytree(study / "sequential", reference)
    manifest = json.loads((reference / "manifest.json").read_text())
    *parents, key = field
    setting = manifest["identity"]["config"]
    for parent in parents:
        setting = setting[parent]
    setting[key] = value
    if field == ("model",):
        manifest["identity"]["model_sha256"] = "0" * 64
    (reference / "manifest.json").write_text(json.dumps(manifest))
    result = cli(
        "run", *TINY, "--strategy", "padded-parallel", "--match", str(reference),
        "--out", str(tmp_path / "padded"),
    )  # fmt: skip
    assert result.returncode != 0 and reason in result.stderr
    assert not (tmp_path / "padded" / "samples.jsonl").exists()


def test_html_report_renders_every_figure_in_chromium(study, tmp_path):
    from PIL import Image, ImageStat
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        failed: list[str] = []
        page.on("requestfailed", lambda request: failed.append(request.url))
        page.goto((study / "report.html").as_uri(), wait_until="load")
        images = page.locator("img")
        assert images.count() == FIGURES
        page.screenshot(path=tmp_path / "report.png", full_page=True)
        for index in range(images.count()):
            image = images.nth(index)
            assert image.evaluate("i => i.complete && i.naturalWidth > 0"), f"image {index} broken"
            image.screenshot(path=tmp_path / f"figure{index}.png")
        links = page.eval_on_selector_all("a[href]", "as => as.map(a => a.href)")
        browser.close()
    assert not failed
    browser = (study / "browse.html").as_uri()
    assert browser in links  # the sample browser, written beside the report
    assert all(
        link.startswith(("data:", "http", "#")) or "#" in link or link == browser for link in links
    )
    assert Image.open(tmp_path / "report.png").height > 900
    for index in range(FIGURES):
        pixels = ImageStat.Stat(Image.open(tmp_path / f"figure{index}.png").convert("L"))
        assert pixels.stddev[0] > 10, f"figure {index} is blank"


def test_a_study_killed_at_random_moments_ends_as_the_uninterrupted_study(study, tmp_path):
    from .test_crash_safety import identities, kill_on_progress, stored

    out = tmp_path / "killed"

    def generating():  # a run of the plan has started generating
        return lambda lines: any("samples to generate" in line for line in lines)

    def new_samples():  # samples were stored since this start
        before = stored(out)
        return lambda lines: stored(out) > before

    def second_run():  # the study moved on to the next step of its plan
        return lambda lines: sum(line.startswith("study: step ") for line in lines) >= 2

    final, after_kills = kill_on_progress(
        ["study", *TINY, "--out", str(out)],
        4,
        [generating, new_samples, second_run],
        seed=11,
        observe=lambda: stored(out),
    )
    assert final.returncode == 0, final.stderr
    assert any(count > 0 for count in after_kills), after_kills
    for run in RUNS:
        assert identities(out / run) == identities(study / run)
    assert (out / "report.md").read_text().count("| parallel |") >= 1


def test_study_progress_counts_generations_and_extrapolates_this_session_s_rate():
    from seqpar.study import eta

    assert eta(0, 24, 0, 0.0) == "0/24 generations"
    # 6 generated in 60 s this session: 18 left take 180 s
    assert eta(6, 24, 6, 60.0) == "6/24 generations, about 3 min left at this session's rate"
    assert eta(24, 24, 6, 60.0) == "24/24 generations"
