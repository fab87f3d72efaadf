"""A person at the annotation page, played by Chromium through Playwright: answers with the keyboard, undoes a
wrong answer, sees a contradiction notice; the log and the graph must come out as the ground truth's.

Needs Debian's Chromium at /usr/bin/chromium and the ``browser`` extra (playwright). Without them the test is
skipped, unless SPAL_REQUIRE_BROWSER=1, which makes their absence a failure. Saves a screenshot of the page to
docs/annotation-station.png.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from annotation_helpers import Background, Toy, queue_pair

from spal.active import AnnotationLog, Budget, ConstraintGraph, GroundTruthOracle, select_support_pairs
from spal.annotation import human_select, serve
from spal.annotation.session import open_selection
from spal.annotation.store import read_events

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "annotation-station.png"
WAIT_MS = 15_000


def _playwright() -> Any:
    """``sync_playwright``, or skip (fail under SPAL_REQUIRE_BROWSER=1) saying what is missing."""
    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "playwright is not installed: pip install -e '.[browser]'"
    if missing is None and not os.access(CHROMIUM, os.X_OK):
        missing = f"Chromium is missing at {CHROMIUM}: apt-get update && apt-get install -y chromium"
    if missing is not None:
        if os.environ.get("SPAL_REQUIRE_BROWSER") == "1":
            pytest.fail(f"SPAL_REQUIRE_BROWSER=1 but {missing}")
        pytest.skip(missing)
    return sync_playwright


def _settled(page: Any) -> str:
    """Wait until the page shows a question or the waiting state; the pair id on screen ('' when waiting)."""
    page.wait_for_function("['question', 'waiting'].includes(document.body.dataset.state)", timeout=WAIT_MS)
    return page.evaluate("document.body.dataset.pairId || ''")


def _press(page: Any, key: str) -> str:
    """Press ``key`` and wait for the page to load what comes next; the pair id then on screen."""
    with page.expect_response(lambda r: "/api/next" in r.url, timeout=WAIT_MS):
        page.keyboard.press(key)
    return _settled(page)


def _truth(toy: Toy, pair_id: str) -> bool:
    pair = queue_pair(toy, pair_id)
    return bool(toy.pids[pair["a"]] == toy.pids[pair["b"]])


def test_a_person_answers_with_the_keyboard_undoes_and_sees_contradictions(toy: Toy) -> None:
    sync_playwright = _playwright()
    graph, budget = ConstraintGraph(toy.n), Budget(100)
    log = AnnotationLog(toy.logs_dir / "annotations.jsonl")
    url, stop = serve(toy.logs_dir, port=0)
    worker = Background(
        human_select,
        0,
        toy.labels,
        toy.features,
        graph,
        budget,
        log,
        toy.records,
        toy.logs_dir,
        timeout=90.0,
        poll=0.05,
        progress=False,
    )
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1000, "height": 860})
            page.goto(url)
            page.fill("#annotator", "alice")
            page.press("#annotator", "Enter")
            shown = _settled(page)
            while not shown:  # the trainer thread may not have written its queue yet
                page.wait_for_timeout(200)
                shown = _settled(page)
            assert page.evaluate("localStorage.getItem('spal.annotator')") == "alice"

            # Epoch 0: the first pair right, the second one wrong, undone with "u" and answered again.
            seen = [shown]
            shown = _press(page, "y" if _truth(toy, shown) else "n")
            wrong, wrong_truth = shown, _truth(toy, shown)
            assert _press(page, "n" if wrong_truth else "y") != wrong
            assert _press(page, "u") == wrong, "after an undo the page shows the undone pair again"
            assert "Undone" in page.inner_text("#notice")
            page.screenshot(path=str(_screenshot_path()), full_page=True)
            while shown:
                seen.append(shown)
                assert page.is_visible("#img-a") and page.is_visible("#img-b")
                assert page.evaluate("document.getElementById('img-a').naturalHeight") == 128
                shown = _press(page, "y" if _truth(toy, shown) else "n")
            assert page.is_visible("#waiting") and not page.is_visible("#question")
            result = worker.join()

            # Epoch 1: bob and carol hold (0, 1) and (1, 3) through the API; alice's page gets (0, 3). Their
            # "same" answers make (0, 3) known, so alice's "different" is a contradiction the page must show.
            chain = [(0, 1, "positive"), (1, 3, "positive"), (0, 3, "positive")]
            open_selection(1, chain, toy.labels, toy.features, graph, budget, toy.records, toy.logs_dir)
            api = httpx.Client(base_url=url.split("?")[0], headers={"X-SPAL-Token": url.split("token=")[1]})
            held = [api.get("/api/next", params={"annotator": name}).json()["pair_id"] for name in ("bob", "carol")]
            assert held == ["e1p0", "e1p1"]
            page.wait_for_function("document.body.dataset.pairId === 'e1p2'", timeout=WAIT_MS)
            for pair_id, name in zip(held, ("bob", "carol")):
                response = api.post("/api/answer", json={"pair_id": pair_id, "same": True, "annotator": name})
                assert response.status_code == 200
            _press(page, "n")
            notice = page.locator("#notice")
            assert notice.is_visible() and notice.get_attribute("class") == "warning"
            assert "contradicts" in notice.inner_text()
            browser.close()
    finally:
        stop()

    reference, reference_budget = ConstraintGraph(toy.n), Budget(100)
    expected = select_support_pairs(toy.labels, toy.features, reference, reference_budget, GroundTruthOracle(toy.pids))
    assert result == expected and len(seen) == len(expected)
    assert graph.answers() == reference.answers() and budget.remaining == reference_budget.remaining
    np.testing.assert_array_equal(graph.component_ids(), reference.component_ids())
    assert [(r["a"], r["b"], r["same"]) for r in AnnotationLog(log.path).records()] == expected
    events = read_events(toy.files)
    undos = [e for e in events if e["event"] == "undo"]
    assert len(undos) == 1
    undone = next(e for e in events if e["id"] == undos[0]["target"])
    assert undone["pair_id"] == wrong and undone["same"] is not wrong_truth
    assert [e["contradiction"] for e in events if e["event"] == "answer" and e["epoch"] == 1] == [
        False,
        False,
        True,
    ]
    assert SCREENSHOT.stat().st_size > 10_000


def _screenshot_path() -> Path:
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    return SCREENSHOT


def test_a_missing_browser_skips_or_fails_as_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "CHROMIUM", "/nonexistent/chromium")
    monkeypatch.delenv("SPAL_REQUIRE_BROWSER", raising=False)
    with pytest.raises(pytest.skip.Exception, match="chromium|playwright"):
        _playwright()
    monkeypatch.setenv("SPAL_REQUIRE_BROWSER", "1")
    with pytest.raises(pytest.fail.Exception, match="SPAL_REQUIRE_BROWSER=1 but"):
        _playwright()
