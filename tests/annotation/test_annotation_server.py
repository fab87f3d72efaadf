"""The station as a real HTTP server: in-process (serve) and as the `spal annotate` command."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from annotation_helpers import TOKEN, Toy

from spal.active import AnnotationLog, Budget, ConstraintGraph
from spal.annotation import HumanSelect, annotate_main, serve

# The command, without depending on the top-level CLI's wiring.
ANNOTATE = "import sys; from spal.annotation.server import annotate_main; sys.exit(annotate_main(sys.argv[1:]))"


@pytest.fixture
def ctrl_c_reaches_children():
    """A background job of a non-interactive shell starts with SIGINT ignored and its children inherit that, so
    a suite started that way (``.ci/run &``) would send a Ctrl-C the station never sees. With a handler here,
    the children start with the default disposition a person's terminal gives them."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_serve_listens_with_the_token_until_stopped(toy: Toy) -> None:
    url, stop = serve(toy.logs_dir, port=0, token=TOKEN)
    try:
        assert re.fullmatch(rf"http://127\.0\.0\.1:\d+/\?token={TOKEN}", url)
        base = url.split("?")[0]
        assert httpx.get(url).status_code == 200
        assert httpx.get(base).status_code == 401
        waiting = httpx.get(f"{base}api/next", params={"annotator": "a"}, headers={"X-SPAL-Token": TOKEN})
        assert waiting.status_code == 200 and waiting.json()["done"] is True
    finally:
        stop()
    with pytest.raises(httpx.TransportError):
        httpx.get(url, timeout=2)


def test_serve_makes_a_random_token_when_none_is_given(toy: Toy) -> None:
    url, stop = serve(toy.logs_dir)
    other_url, other_stop = serve(toy.logs_dir)
    try:
        token = url.split("token=")[1]
        assert len(token) >= 32 and token != other_url.split("token=")[1]
        assert httpx.get(url).status_code == 200
    finally:
        stop()
        other_stop()


def test_annotate_help_explains_host_port_and_token(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        annotate_main(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for needle in ("--logs-dir", "--host", "--port", "--token", "127.0.0.1", "secrets.token_urlsafe", "401"):
        assert needle in text


def test_annotate_refuses_a_missing_logs_dir(toy: Toy, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        annotate_main(["--logs-dir", str(toy.logs_dir / "nope")])
    assert exit_info.value.code == 2
    assert "not a folder" in capsys.readouterr().err


@pytest.mark.usefixtures("ctrl_c_reaches_children")
def test_annotate_prints_the_url_once_and_serves_until_interrupted(toy: Toy) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", ANNOTATE, "--logs-dir", str(toy.logs_dir), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = process.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+/\?token=([A-Za-z0-9_-]+))", line)
        assert match, f"no URL in {line!r}; stderr: {process.stderr.read() if process.poll() is not None else ''}"
        url, token = match.groups()
        assert len(token) >= 32
        assert httpx.get(url).status_code == 200
        assert httpx.get(url.replace(token, "x" * len(token))).status_code == 401
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=20)
        assert process.returncode == 0
        assert token not in out, "the token is printed once"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_human_select_for_the_training_loop_serves_the_page_in_process(toy: Toy) -> None:
    selector = HumanSelect(toy.logs_dir, timeout=0.2)
    graph, budget = ConstraintGraph(toy.n), Budget(10)
    log = AnnotationLog(toy.logs_dir / "annotations.jsonl")
    try:
        result = selector(
            epoch=0,
            labels=toy.labels,
            features=toy.features,
            constraints=graph,
            budget=budget,
            log=log,
            records=toy.records,
        )
        assert result == [] and budget.remaining == 10
        assert selector.url is not None and httpx.get(selector.url).status_code == 200
        token = selector.url.split("token=")[1]
        done = httpx.get(
            selector.url.split("?")[0] + "api/next",
            params={"annotator": "a"},
            headers={"X-SPAL-Token": token},
        ).json()
        assert done["done"] is True and done["progress"]["pending"] == done["progress"]["total"] > 0
    finally:
        selector.close()
    with pytest.raises(httpx.TransportError):
        httpx.get(selector.url, timeout=2)


# Issue 14, case 6: the training run's page link goes to a private file, the log gets the address at INFO.
def test_the_training_side_keeps_the_token_out_of_the_log(toy: Toy, caplog: pytest.LogCaptureFixture) -> None:
    import logging
    import stat

    selector = HumanSelect(toy.logs_dir, timeout=0.1)
    log = AnnotationLog(toy.logs_dir / "annotations.jsonl")
    try:
        with caplog.at_level(logging.INFO, logger="spal"):
            selector(
                epoch=0, labels=toy.labels, features=toy.features, constraints=ConstraintGraph(toy.n),
                budget=Budget(10), log=log, records=toy.records,
            )  # fmt: skip
        token = selector.url.split("token=")[1]
        link = toy.logs_dir / "annotation" / "station-url"
        assert link.read_text().strip() == selector.url
        assert stat.S_IMODE(link.stat().st_mode) == 0o600
        [record] = [r for r in caplog.records if "annotation page" in r.getMessage()]
        assert record.levelname == "INFO"
        assert selector.url.split("?")[0] in record.getMessage() and str(link) in record.getMessage()
        assert token not in caplog.text
    finally:
        selector.close()


@pytest.mark.usefixtures("ctrl_c_reaches_children")
def test_spal_annotate_starts_without_torch_or_faiss(toy: Toy, tmp_path: Path) -> None:
    # -X importtime lists every module the command imports, on stderr (to a file: a pipe nobody reads fills up).
    imports = tmp_path / "imports.txt"
    with imports.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-X", "importtime", "-m", "spal", "annotate", "--logs-dir", str(toy.logs_dir),
             "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        try:
            url = re.search(r"http://\S+", process.stdout.readline())
            assert url, imports.read_text()[-2000:]
            assert httpx.get(url.group(0)).status_code == 200
            process.send_signal(signal.SIGINT)
            process.communicate(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    lines = [line for line in imports.read_text().splitlines() if line.startswith("import time:")]
    imported = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in lines}
    assert {"spal", "fastapi", "uvicorn"} <= imported
    assert not imported & {"torch", "faiss", "torchvision"}
