"""The annotation station's web server: a page where a person answers the support-pair questions of a run.

The server keeps no state of its own beyond short leases: it reads the queue and base graph the training run
writes under ``<logs_dir>/annotation/`` and appends what annotators do to the station's event log (see
(:mod:`spal.annotation.store`), so it can run inside the training process (:func:`serve`) or as
``spal annotate --logs-dir DIR`` (:func:`annotate_main`), and a restart loses nothing.

Every route (page, static files, API, images) requires the access token, as the ``token`` query parameter or
the ``X-SPAL-Token`` header; without it the answer is 401 and nothing is served. API:

- ``GET /api/next?annotator=NAME``: the next pending pair not leased to another annotator (a lease lasts
  ``lease_seconds``; asking again renews it), or ``{"done": true, ...}`` with the reason.
- ``GET /api/image/{pair_id}/{a|b}``: one image of a queued pair (only the queue's files are served).
- ``POST /api/answer {pair_id, same, annotator}``, ``POST /api/skip {pair_id, annotator}``,
  ``POST /api/undo {annotator}``: 404 unknown pair, 410 stale pair or closed queue or spent budget, 409
  already answered / skipped / leased to someone else / nothing to undo, 422 malformed body, 413 a body over
  :data:`MAX_BODY_BYTES`; a refused request changes nothing. No error message repeats what the request sent.
- ``GET /favicon.ico``: the page's icon, the one route without the token (browsers ask for it without one).
"""

from __future__ import annotations

import argparse
import hmac
import logging
import mimetypes
import os
import re
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import uvicorn
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, StrictBool, StringConstraints

from spal.annotation.store import (
    ANSWER,
    ANSWERED,
    KNOWN,
    PENDING,
    SKIP,
    SKIPPED,
    UNDO,
    EpochState,
    StationFiles,
    append_event,
    file_stamp,
    last_action,
    pair_key,
    pair_status,
    parse_pair_id,
    read_base_state,
    read_events,
    read_queue,
    station_lock,
)

__all__ = ["annotate_main", "create_app", "serve", "TOKEN_HEADER", "DEFAULT_PORT", "MAX_BODY_BYTES"]

logger = logging.getLogger(__name__)

TOKEN_HEADER = "X-SPAL-Token"
DEFAULT_PORT = 8765
#: The largest request body read: an answer is well under 1 KiB, anything bigger is refused unread (413).
MAX_BODY_BYTES = 16 * 1024
STATIC_DIR = Path(__file__).with_name("static")
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{8,256}$")
_TOKEN_PLACEHOLDER = "__SPAL_TOKEN__"

Annotator = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class AnswerBody(_Strict):
    pair_id: str
    same: StrictBool
    annotator: Annotator


class SkipBody(_Strict):
    pair_id: str
    annotator: Annotator


class UndoBody(_Strict):
    annotator: Annotator


class _Station:
    """The server's view of a run: the queue, the epoch's graph replayed from the events, and the leases.

    ``_lock`` guards the cached state and the leases; handlers that append also hold the station's file lock
    (always taken first), which serialises them with other server processes and the trainer.
    """

    def __init__(self, logs_dir: Path, lease_seconds: float) -> None:
        self.files = StationFiles.of(logs_dir)
        self.lease_seconds = lease_seconds
        self._lock = threading.Lock()
        self._leases: dict[str, tuple[str, float]] = {}
        self._state: EpochState | None = None
        self._stamps: tuple[Any, ...] | None = None

    # -------------------------------------------------------------------------------- state
    def _snapshot(self) -> tuple[dict[str, Any] | None, EpochState | None]:
        """The queue and the epoch's state, re-read only when their files changed (hold ``_lock``)."""
        queue = read_queue(self.files)
        if queue is None:
            return None, None
        base_key = (queue["epoch"], queue["budget_start"], file_stamp(self.files.graph(queue["epoch"])))
        events_stamp = file_stamp(self.files.events)
        if self._state is None or self._stamps is None or self._stamps[0] != base_key:
            self._state = EpochState(read_base_state(self.files, queue["epoch"]), queue["epoch"], queue["budget_start"])
            self._leases.clear()
            self._stamps = (base_key, None)
        if self._stamps[1] != events_stamp or events_stamp is None:
            self._state.sync(read_events(self.files))
            self._stamps = (base_key, events_stamp)
        return queue, self._state

    def _resync(self) -> None:
        """Re-read the events after this process appended one (hold both locks)."""
        assert self._state is not None and self._stamps is not None
        self._state.sync(read_events(self.files))
        self._stamps = (self._stamps[0], file_stamp(self.files.events))

    @staticmethod
    def _progress(queue: dict[str, Any], state: EpochState) -> dict[str, Any]:
        statuses = [pair_status(p, state) for p in queue["pairs"]]
        return {
            "epoch": queue["epoch"],
            "total": len(statuses),
            "answered": statuses.count(ANSWERED),
            "skipped": statuses.count(SKIPPED),
            "known": statuses.count(KNOWN),
            "pending": statuses.count(PENDING),
            "budget_spent": queue["budget_start"] - state.remaining,
            "budget_remaining": state.remaining,
            "budget_total": queue["budget_total"],
        }

    def _live_leases(self) -> dict[str, tuple[str, float]]:
        now = time.monotonic()
        self._leases = {pid: lease for pid, lease in self._leases.items() if lease[1] > now}
        return self._leases

    # -------------------------------------------------------------------------------- handlers
    def next_pair(self, annotator: str) -> dict[str, Any]:
        with self._lock:
            queue, state = self._snapshot()
            if queue is None or state is None:
                return {
                    "done": True,
                    "message": "No question yet: the training run has not reached a selection "
                    "step. This page checks again by itself.",
                }
            progress = self._progress(queue, state)
            if queue["status"] != "open" or state.remaining <= 0:
                why = "the budget is spent" if state.remaining <= 0 else "the selection step has closed"
                return {
                    "done": True,
                    "progress": progress,
                    "message": f"Epoch {queue['epoch']}: {why}; the next questions come with the next epoch.",
                }
            pending = [p for p in queue["pairs"] if pair_status(p, state) == PENDING]
            leases = self._live_leases()
            chosen = next((p for p in pending if leases.get(p["id"], ("",))[0] == annotator), None)
            if chosen is None:
                chosen = next((p for p in pending if p["id"] not in leases), None)
            if chosen is None:
                message = (
                    f"The {len(pending)} open questions are with other annotators right now."
                    if pending
                    else f"Epoch {queue['epoch']}: every question is settled."
                )
                return {"done": True, "progress": progress, "message": message}
            leases[chosen["id"]] = (annotator, time.monotonic() + self.lease_seconds)
            return {
                "done": False,
                "pair_id": chosen["id"],
                "epoch": queue["epoch"],
                "kind": chosen["kind"],
                "reason": chosen["reason"],
                "camids": chosen["camids"],
                "number": progress["answered"] + progress["skipped"] + 1,
                "progress": progress,
                "images": {side: f"/api/image/{chosen['id']}/{side}" for side in ("a", "b")},
            }

    def image_path(self, pair_id: str, side: str) -> Path:
        queue = read_queue(self.files)
        pair = self._find(queue, pair_id)
        if side not in ("a", "b"):
            raise HTTPException(404, "no such image side: use a or b")
        path = Path(pair["paths"][0 if side == "a" else 1])
        if not path.is_file():
            raise HTTPException(404, "the image file of this pair is missing on the server")
        return path

    def answer(self, body: AnswerBody) -> dict[str, Any]:
        with station_lock(self.files), self._lock:
            queue, state, pair = self._open_pair(body.pair_id, body.annotator)
            if state.remaining <= 0:
                raise HTTPException(410, "the query budget is spent: no more answers are taken")
            a, b = pair["a"], pair["b"]
            relation = state.graph.relation(a, b)
            expected = 1 if body.same else -1
            refused_before = len(state.graph.contradictions)
            record = append_event(
                self.files,
                {
                    "event": ANSWER,
                    "epoch": queue["epoch"],
                    "pair_id": pair["id"],
                    "a": a,
                    "b": b,
                    "kind": pair["kind"],
                    "same": body.same,
                    "annotator": body.annotator,
                    "paths": pair["paths"],
                    "known": relation != 0,
                    "contradiction": relation not in (0, expected),
                },
            )
            self._leases.pop(pair["id"], None)
            self._resync()
            # Without propagation the graph can refuse an answer to a pair it calls unknown; say so too.
            contradiction = record["contradiction"] or len(state.graph.contradictions) > refused_before
            message = ""
            if contradiction:
                earlier = "different people" if body.same else "the same person"
                message = (
                    f"This answer contradicts earlier answers, which say these are {earlier}. It was "
                    "logged, and the earlier answers are kept."
                )
            elif relation != 0:
                message = "Already known from earlier answers; logged, nothing changes."
            return {
                "ok": True,
                "pair_id": pair["id"],
                "applied": relation == 0 and not contradiction,
                "contradiction": contradiction,
                "message": message,
                "progress": self._progress(queue, state),
            }

    def skip(self, body: SkipBody) -> dict[str, Any]:
        with station_lock(self.files), self._lock:
            queue, state, pair = self._open_pair(body.pair_id, body.annotator)
            append_event(
                self.files,
                {
                    "event": SKIP,
                    "epoch": queue["epoch"],
                    "pair_id": pair["id"],
                    "a": pair["a"],
                    "b": pair["b"],
                    "kind": pair["kind"],
                    "annotator": body.annotator,
                    "paths": pair["paths"],
                },
            )
            self._leases.pop(pair["id"], None)
            self._resync()
            return {"ok": True, "pair_id": pair["id"], "progress": self._progress(queue, state)}

    def undo(self, body: UndoBody) -> dict[str, Any]:
        with station_lock(self.files), self._lock:
            queue, state = self._snapshot()
            self._require_open(queue)
            assert queue is not None and state is not None
            target = last_action(read_events(self.files), queue["epoch"], body.annotator)
            if target is None:
                raise HTTPException(409, f"you have no answer or skip in epoch {queue['epoch']} left to undo")
            append_event(
                self.files,
                {
                    "event": UNDO,
                    "target": target["id"],
                    "epoch": queue["epoch"],
                    "pair_id": target["pair_id"],
                    "a": target["a"],
                    "b": target["b"],
                    "kind": target["kind"],
                    "annotator": body.annotator,
                },
            )
            self._resync()
            # The pair comes back to whoever undid it, so the page shows it again next.
            key = pair_key(target["a"], target["b"])
            for pair in queue["pairs"]:
                if pair_key(pair["a"], pair["b"]) == key:
                    self._leases[pair["id"]] = (body.annotator, time.monotonic() + self.lease_seconds)
            return {
                "ok": True,
                "undone": {
                    "pair_id": target["pair_id"],
                    "event": target["event"],
                    "same": target.get("same"),
                },
                "progress": self._progress(queue, state),
            }

    # -------------------------------------------------------------------------------- checks
    @staticmethod
    def _require_open(queue: dict[str, Any] | None) -> None:
        if queue is None:
            raise HTTPException(409, "no selection step has started yet: nothing to answer")
        if queue["status"] != "open":
            raise HTTPException(
                410,
                f"the selection step of epoch {queue['epoch']} has closed (training "
                "started); wait for the next epoch's questions",
            )

    @staticmethod
    def _find(queue: dict[str, Any] | None, pair_id: str) -> dict[str, Any]:
        parsed = parse_pair_id(pair_id)
        if queue is None or parsed is None:
            raise HTTPException(404, "unknown pair id")
        if parsed[0] != queue["epoch"]:
            raise HTTPException(
                410,
                # The epoch is the number parsed from the id, not the text sent.
                f"this pair belongs to epoch {parsed[0]}, the current epoch is {queue['epoch']}: "
                "load the next question",
            )
        for pair in queue["pairs"]:
            if pair["id"] == pair_id:
                return pair
        raise HTTPException(404, f"unknown pair id in epoch {queue['epoch']}")

    def _open_pair(self, pair_id: str, annotator: str) -> tuple[dict[str, Any], EpochState, dict[str, Any]]:
        """The queued pair an answer or skip is about, after every check that refuses the request."""
        queue, state = self._snapshot()
        pair = self._find(queue, pair_id)
        self._require_open(queue)
        assert queue is not None and state is not None
        key = pair_key(pair["a"], pair["b"])
        if key in state.view.answered:
            raise HTTPException(409, "this pair is already answered (undo it first to change the answer)")
        if key in state.view.skipped:
            raise HTTPException(409, "this pair was skipped; it is not asked again this epoch")
        holder = self._live_leases().get(pair_id, (annotator,))[0]
        if holder != annotator:
            # The name another annotator gave (checked at their request), not anything of this request.
            raise HTTPException(409, f"this pair is being answered by {holder}")
        return queue, state, pair


def _check_token(token: str) -> None:
    if not _TOKEN_RE.match(token):
        raise ValueError(
            "the access token must be 8 to 256 URL-safe characters (letters, digits, '-', '_'); "
            "leave it out to get a random one"
        )


class _BodyLimit:
    """ASGI middleware: refuse (413) a request whose body is over ``limit`` bytes, before the app reads it.

    A declared ``Content-Length`` over the limit is refused at once; a body without one (chunked) is read up to
    the limit and then handed to the app in one piece.
    """

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.limit:
            await self._refuse(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                await self._refuse(scope, receive, send)
                return
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        response = JSONResponse(
            {"detail": f"request body too large: at most {self.limit} bytes"},
            status_code=413,
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


def _validation_detail(error: RequestValidationError) -> list[dict[str, Any]]:
    """Where and what is wrong in a malformed request, without repeating any of it: pydantic's errors carry the
    input (``input``, and an unknown field's name in ``loc``), which a shared page must not reflect."""
    fields = {"body", "query", "path", "pair_id", "same", "annotator", "side"}
    return [
        {
            "loc": [part if part in fields else "(unexpected field)" for part in item.get("loc", ())],
            "msg": item.get("msg", "invalid value"),
        }
        for item in error.errors()
    ]


def create_app(logs_dir: str | os.PathLike[str], token: str, lease_seconds: float = 300.0) -> FastAPI:
    """The annotation station of the run in ``logs_dir``, every route behind ``token``.

    Args:
        logs_dir: the run's logs dir (its ``annotation/`` folder may not exist yet: the page then waits).
        token: the access token (URL-safe characters, e.g. from ``secrets.token_urlsafe``).
        lease_seconds: how long a pair shown to one annotator is kept from the others.
    """
    _check_token(token)
    expected = token.encode("ascii")
    station = _Station(Path(logs_dir), lease_seconds)
    page = (STATIC_DIR / "index.html").read_text(encoding="utf-8").replace(_TOKEN_PLACEHOLDER, token)
    app = FastAPI(title="SPAL annotation station", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(RequestValidationError)
    async def malformed(request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_detail(error)}, status_code=422)

    @app.middleware("http")
    async def require_token(request: Request, call_next: Callable[[Request], Any]) -> Response:
        if request.url.path == "/favicon.ico" and request.method == "GET":
            # Browsers fetch the icon without the page's query string; it reveals nothing about the run.
            return FileResponse(STATIC_DIR / "favicon.ico", media_type="image/x-icon")
        given = request.headers.get(TOKEN_HEADER) or request.query_params.get("token") or ""
        if not hmac.compare_digest(given.encode("utf-8"), expected):
            return JSONResponse(
                {
                    "detail": "missing or wrong access token: open the URL that `spal annotate` "
                    "(or the training run) printed, which ends in ?token=..."
                },
                status_code=401,
            )
        response = await call_next(request)
        # The token travels in URLs: never leak them to other sites, never let a shared cache keep a page.
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/api/next")
    def next_pair(annotator: Annotated[str, Query(min_length=1, max_length=64)]) -> dict[str, Any]:
        name = annotator.strip()
        if not name:
            raise HTTPException(422, "annotator must not be blank: enter your name on the page")
        return station.next_pair(name)

    @app.get("/api/image/{pair_id}/{side}")
    def image(pair_id: str, side: str) -> FileResponse:
        path = station.image_path(pair_id, side)
        return FileResponse(path, media_type=mimetypes.guess_type(path.name)[0] or "application/octet-stream")

    @app.post("/api/answer")
    def answer(body: AnswerBody) -> dict[str, Any]:
        return station.answer(body)

    @app.post("/api/skip")
    def skip(body: SkipBody) -> dict[str, Any]:
        return station.skip(body)

    @app.post("/api/undo")
    def undo(body: UndoBody) -> dict[str, Any]:
        return station.undo(body)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(_BodyLimit, limit=MAX_BODY_BYTES)
    return app


class _ServerThread:
    """A uvicorn server running ``app`` in a daemon thread."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="spal-annotation-server", daemon=True)
        self.host = host

    def start(self, timeout: float = 20.0) -> int:
        """Start and wait until it listens; returns the bound port."""
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"the annotation server could not listen on {self.host}:"
                    f"{self.server.config.port}: is the port in use? Pick another with --port "
                    "(0 takes a free one)"
                )
            time.sleep(0.02)
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout=5)
        if self.thread.is_alive():
            # Still waiting for open connections (a browser's keep-alive): close them rather than hang Ctrl-C.
            self.server.force_exit = True
            self.thread.join(timeout=5)


def _url(host: str, port: int, token: str) -> str:
    # A wildcard address is not something a browser can open; this machine's loopback is.
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/?token={token}"


def serve(
    logs_dir: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 0,
    token: str | None = None,
    lease_seconds: float = 300.0,
) -> tuple[str, Callable[[], None]]:
    """Run the station for ``logs_dir`` in a background thread of this process.

    Args:
        port: ``0`` takes a free port.
        token: the access token; ``None`` makes a random one (``secrets.token_urlsafe``).

    Returns:
        ``(url, stop)``: the page's URL with the token, and a callable that stops the server.
    """
    token = token or secrets.token_urlsafe(24)
    runner = _ServerThread(create_app(logs_dir, token, lease_seconds), host, port)
    bound = runner.start()
    return _url(host, bound, token), runner.stop


def annotate_main(argv: list[str] | None = None) -> int:
    """``spal annotate --logs-dir DIR [--host H] [--port P] [--token T]``: serve the page until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="spal annotate",
        description="Serve the annotation page of a training run started with --oracle human: a person "
        "answers "
        "the run's support-pair questions (same person or not) in a browser while it trains. Open "
        "the URL printed at start.",
    )
    parser.add_argument("--logs-dir", required=True, help="the --logs-dir of the training run")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: only this machine can open the page; "
        "0.0.0.0 lets other machines in, over plain HTTP, to anyone holding the token)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"TCP port to listen on (default {DEFAULT_PORT}; 0 takes a free one)",
    )
    parser.add_argument(
        "--token",
        help="access token every request must carry (default: a random one made with "
        "secrets.token_urlsafe at start and printed once, as part of the URL "
        "http://HOST:PORT/?token=...; requests without it get 401)",
    )
    parser.add_argument(
        "--lease",
        type=float,
        default=300.0,
        help="seconds a question shown to one annotator is kept from the others (default 300)",
    )
    args = parser.parse_args(argv)
    logs_dir = Path(args.logs_dir)
    if not logs_dir.is_dir():
        parser.error(
            f"--logs-dir {logs_dir} is not a folder: give the --logs-dir of a training run (started "
            "with --oracle human)"
        )
    token = args.token or secrets.token_urlsafe(24)
    try:
        runner = _ServerThread(create_app(logs_dir, token, args.lease), args.host, args.port)
        bound = runner.start()
    except (ValueError, RuntimeError) as error:
        parser.error(str(error))
    # The URL (with its token) is this command's output: printed once, on stdout.
    print(f"SPAL annotation station for {logs_dir}: open {_url(args.host, bound, token)}", flush=True)
    try:
        while runner.thread.is_alive():
            runner.thread.join(timeout=1.0)
    except KeyboardInterrupt:
        logger.info("stopping the annotation station")
    finally:
        runner.stop()
    return 0
