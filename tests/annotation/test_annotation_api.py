"""The station's HTTP API: the access token on every route, serving pairs and images, answers, skips, undos,
contradictions, leases between annotators, and refusals that change nothing."""

from __future__ import annotations

import json
import time

import pytest
from annotation_helpers import TOKEN, Toy, events_bytes
from fastapi.testclient import TestClient

from spal.active import Budget, ConstraintGraph
from spal.annotation import create_app
from spal.annotation.session import SelectionSession, open_selection
from spal.annotation.store import read_events

# A chain: once (0, 1) and (1, 2) are answered "same", (0, 2) is known by propagation.
CHAIN = [(0, 1, "positive"), (1, 2, "positive"), (0, 2, "positive")]
OTHERS = [(0, 5, "negative"), (5, 9, "negative")]


def open_queue(toy: Toy, candidates=CHAIN, budget: int = 100, epoch: int = 0, graph=None) -> SelectionSession:
    graph = graph or ConstraintGraph(toy.n)
    return open_selection(epoch, candidates, toy.labels, toy.features, graph, Budget(budget), toy.records, toy.logs_dir)


def nxt(client: TestClient, annotator: str = "alice") -> dict:
    response = client.get("/api/next", params={"annotator": annotator})
    assert response.status_code == 200, response.text
    return response.json()


def answer(client: TestClient, pair_id: str, same: bool, annotator: str = "alice"):
    return client.post("/api/answer", json={"pair_id": pair_id, "same": same, "annotator": annotator})


# ------------------------------------------------------------------------------------------------- the token
ROUTES = [
    ("GET", "/", None),
    ("GET", "/static/app.js", None),
    ("GET", "/static/style.css", None),
    ("GET", "/static/index.html", None),
    ("GET", "/api/next?annotator=alice", None),
    ("GET", "/api/image/e0p0/a", None),
    ("GET", "/no/such/route", None),
    ("POST", "/api/answer", {"pair_id": "e0p0", "same": True, "annotator": "alice"}),
    ("POST", "/api/skip", {"pair_id": "e0p0", "annotator": "alice"}),
    ("POST", "/api/undo", {"annotator": "alice"}),
]


@pytest.mark.parametrize("method,path,body", ROUTES)
def test_every_route_refuses_requests_without_the_right_token(toy: Toy, method, path, body) -> None:
    open_queue(toy)
    before = events_bytes(toy)
    bare = TestClient(create_app(toy.logs_dir, TOKEN))
    wrong = TestClient(create_app(toy.logs_dir, TOKEN), headers={"X-SPAL-Token": TOKEN[:-1] + "x"})
    for client in (bare, wrong):
        response = client.request(method, path, json=body)
        assert response.status_code == 401
        assert "token" in response.json()["detail"]
        assert response.headers["content-type"].startswith("application/json")
    almost = path + ("&" if "?" in path else "?") + f"token={TOKEN}x"
    assert bare.request(method, almost, json=body).status_code == 401
    assert events_bytes(toy) == before, "an unauthorised request changed the event log"
    # With the token (query parameter or header) the route answers, whatever its verdict.
    with_query = path + ("&" if "?" in path else "?") + f"token={TOKEN}"
    assert bare.request(method, with_query, json=body).status_code != 401


def test_page_and_assets_carry_the_token_and_the_controls(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert f'content="{TOKEN}"' in page.text
    assert f"/static/app.js?token={TOKEN}" in page.text and f"/static/style.css?token={TOKEN}" in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    for asset, marker in (("app.js", "/api/next"), ("style.css", "image-rendering: pixelated")):
        response = client.get(f"/static/{asset}")
        assert response.status_code == 200 and marker in response.text
    assert "__SPAL_TOKEN__" not in page.text


def test_create_app_rejects_tokens_that_are_not_url_safe(toy: Toy) -> None:
    for bad in ("", "short", 'a"b<script>0123'):
        with pytest.raises(ValueError, match="URL-safe"):
            create_app(toy.logs_dir, bad)


# --------------------------------------------------------------------------------------------------- serving
def test_waits_while_no_queue_exists(client: TestClient) -> None:
    body = nxt(client)
    assert body["done"] is True and "selection step" in body["message"]


def test_next_serves_the_queue_in_order_without_identities(client: TestClient, toy: Toy) -> None:
    open_queue(toy)
    body = nxt(client)
    assert body["done"] is False
    assert body["pair_id"] == "e0p0" and body["kind"] == "positive" and body["number"] == 1
    assert body["camids"] == [toy.records[0][2], toy.records[1][2]]
    assert "cluster 0" in body["reason"]
    assert body["progress"] == {
        "epoch": 0,
        "total": 3,
        "answered": 0,
        "skipped": 0,
        "known": 0,
        "pending": 3,
        "budget_spent": 0,
        "budget_remaining": 100,
        "budget_total": 100,
    }
    text = json.dumps(body)
    assert "paths" not in body and ".jpg" not in text, "file names hold the identity: never send them"


def test_images_are_the_queued_files_and_nothing_else(client: TestClient, toy: Toy) -> None:
    open_queue(toy)
    for side, index in (("a", 0), ("b", 1)):
        response = client.get(f"/api/image/e0p0/{side}")
        assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
        with open(toy.records[index][0], "rb") as handle:
            assert response.content == handle.read()
    assert client.get("/api/image/e0p0/c").status_code == 404
    assert client.get("/api/image/e0p7/a").status_code == 404
    assert client.get("/api/image/e3p0/a").status_code == 410
    assert client.get("/api/image/..%2F..%2Fetc%2Fpasswd/a").status_code == 404
    assert client.get("/api/image/e0p0/..%2F..%2Fetc%2Fpasswd").status_code == 404


# --------------------------------------------------------------------------------------------------- answers
def test_answers_are_logged_with_annotator_time_and_paths_and_charged(client: TestClient, toy: Toy) -> None:
    session = open_queue(toy)
    response = answer(client, "e0p0", True)
    assert response.status_code == 200
    assert response.json()["applied"] is True and response.json()["contradiction"] is False
    (event,) = read_events(toy.files)
    assert event["event"] == "answer" and event["annotator"] == "alice" and event["same"] is True
    assert (event["a"], event["b"], event["epoch"], event["kind"]) == (0, 1, 0, "positive")
    assert event["paths"] == [toy.records[0][0], toy.records[1][0]] and event["time"]
    session.refresh()
    assert session.state.remaining == 99 and session.state.answers() == [(0, 1, True)]
    assert nxt(client)["progress"]["budget_spent"] == 1


def test_pairs_known_by_propagation_are_never_shown(client: TestClient, toy: Toy) -> None:
    session = open_queue(toy)
    assert answer(client, nxt(client)["pair_id"], True).status_code == 200
    assert answer(client, nxt(client)["pair_id"], True).status_code == 200
    assert nxt(client)["done"] is True
    session.refresh()
    assert [p["status"] for p in session.queue["pairs"]] == ["answered", "answered", "known"]
    assert session.done and session.state.remaining == 98


REFUSALS = [
    ("unknown pair id", {"pair_id": "e0p9", "same": True, "annotator": "alice"}, 404),
    ("not a pair id", {"pair_id": "../etc", "same": True, "annotator": "alice"}, 404),
    ("stale pair id", {"pair_id": "e5p0", "same": True, "annotator": "alice"}, 410),
    ("same missing", {"pair_id": "e0p0", "annotator": "alice"}, 422),
    ("same not a bool", {"pair_id": "e0p0", "same": "yes", "annotator": "alice"}, 422),
    ("same as a number", {"pair_id": "e0p0", "same": 1, "annotator": "alice"}, 422),
    ("blank annotator", {"pair_id": "e0p0", "same": True, "annotator": "  "}, 422),
    ("extra field", {"pair_id": "e0p0", "same": True, "annotator": "alice", "a": 3}, 422),
]


@pytest.mark.parametrize("case,body,status", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_malformed_or_unknown_answers_change_nothing(client: TestClient, toy: Toy, case, body, status) -> None:
    open_queue(toy)
    assert answer(client, "e0p1", False).status_code == 200
    before = events_bytes(toy)
    response = client.post("/api/answer", json=body)
    assert response.status_code == status, response.text
    assert events_bytes(toy) == before
    assert (
        client.post("/api/answer", content=b"{not json", headers={"content-type": "application/json"}).status_code
        == 422
    )
    assert events_bytes(toy) == before


def test_answering_twice_after_close_or_after_the_budget_is_refused(client: TestClient, toy: Toy) -> None:
    session = open_queue(toy, CHAIN + OTHERS, budget=2)
    assert answer(client, "e0p0", True).status_code == 200
    before = events_bytes(toy)
    again = answer(client, "e0p0", False)
    assert again.status_code == 409 and "already answered" in again.json()["detail"]
    assert events_bytes(toy) == before
    assert answer(client, "e0p3", False).status_code == 200  # budget 2: now spent
    before = events_bytes(toy)
    spent = answer(client, "e0p4", True)
    assert spent.status_code == 410 and "budget" in spent.json()["detail"]
    assert nxt(client)["done"] is True
    session.refresh()
    assert session.done
    session.close()
    closed = client.post("/api/skip", json={"pair_id": "e0p1", "annotator": "alice"})
    assert closed.status_code == 410 and "closed" in closed.json()["detail"]
    assert client.post("/api/undo", json={"annotator": "alice"}).status_code == 410
    assert events_bytes(toy) == before


def test_a_new_epoch_makes_old_pair_ids_stale(client: TestClient, toy: Toy) -> None:
    first = open_queue(toy)
    first.close()
    open_queue(toy, OTHERS, epoch=1)
    response = answer(client, "e0p0", True)
    assert response.status_code == 410 and "epoch 0" in response.json()["detail"]
    assert nxt(client)["pair_id"] == "e1p0"


# --------------------------------------------------------------------------------------------- skip and undo
def test_skip_is_logged_free_and_not_offered_again(client: TestClient, toy: Toy) -> None:
    session = open_queue(toy)
    response = client.post("/api/skip", json={"pair_id": "e0p0", "annotator": "alice"})
    assert response.status_code == 200
    assert read_events(toy.files)[-1]["event"] == "skip"
    assert nxt(client)["pair_id"] == "e0p1"
    assert nxt(client, "bob")["pair_id"] == "e0p2", "a skipped pair is offered to nobody this epoch"
    before = events_bytes(toy)
    assert answer(client, "e0p0", True).status_code == 409
    assert client.post("/api/skip", json={"pair_id": "e0p0", "annotator": "alice"}).status_code == 409
    assert events_bytes(toy) == before
    session.refresh()
    assert session.queue["pairs"][0]["status"] == "skipped" and session.state.remaining == 100


def test_undo_takes_back_the_last_answer_and_shows_the_pair_again(client: TestClient, toy: Toy) -> None:
    session = open_queue(toy)
    assert answer(client, "e0p0", True).status_code == 200
    assert answer(client, "e0p1", True).status_code == 200
    session.refresh()
    assert session.queue["pairs"][2]["status"] == "known"
    assert client.post("/api/undo", json={"annotator": "bob"}).status_code == 409, "bob has nothing to undo"
    response = client.post("/api/undo", json={"annotator": "alice"})
    assert response.status_code == 200
    assert response.json()["undone"] == {"pair_id": "e0p1", "event": "answer", "same": True}
    assert read_events(toy.files)[-1]["event"] == "undo"
    # The graph is replayed without the answer: (0, 2) is unknown again and e0p1 comes back to alice first.
    assert nxt(client)["pair_id"] == "e0p1"
    assert nxt(client, "bob")["pair_id"] == "e0p2"
    session.refresh()
    assert session.state.answers() == [(0, 1, True)] and session.state.remaining == 99
    assert [p["status"] for p in session.queue["pairs"]] == ["answered", "pending", "pending"]
    assert answer(client, "e0p1", False).status_code == 200, "an undone pair can be answered again"
    session.refresh()
    assert session.state.answers() == [(0, 1, True), (1, 2, False)]


def test_undo_of_a_skip_offers_the_pair_again(client: TestClient, toy: Toy) -> None:
    open_queue(toy)
    assert client.post("/api/skip", json={"pair_id": "e0p0", "annotator": "alice"}).status_code == 200
    response = client.post("/api/undo", json={"annotator": "alice"})
    assert response.json()["undone"]["event"] == "skip"
    assert nxt(client)["pair_id"] == "e0p0"
    assert client.post("/api/undo", json={"annotator": "alice"}).status_code == 409


# -------------------------------------------------------------------------------------------- contradictions
def test_a_contradicting_answer_is_logged_flagged_and_reported(client: TestClient, toy: Toy) -> None:
    session = open_queue(toy)
    # Three annotators hold the three pairs; the first two answers make the third pair known ("same").
    assert [nxt(client, name)["pair_id"] for name in ("alice", "bob", "carol")] == ["e0p0", "e0p1", "e0p2"]
    assert answer(client, "e0p0", True, "alice").status_code == 200
    assert answer(client, "e0p1", True, "bob").status_code == 200
    response = answer(client, "e0p2", False, "carol")
    assert response.status_code == 200
    body = response.json()
    assert body["contradiction"] is True and body["applied"] is False
    assert "contradicts" in body["message"] and "same person" in body["message"]
    event = read_events(toy.files)[-1]
    assert event["contradiction"] is True and event["known"] is True and event["same"] is False
    session.refresh()
    assert session.state.graph.relation(0, 2) == 1, "the earlier answers are kept"
    assert session.state.remaining == 98, "a pair already known costs nothing"


def test_an_agreeing_answer_to_a_known_pair_is_no_contradiction(client: TestClient, toy: Toy) -> None:
    open_queue(toy)
    for name in ("alice", "bob", "carol"):
        nxt(client, name)
    answer(client, "e0p0", True, "alice")
    answer(client, "e0p1", True, "bob")
    body = answer(client, "e0p2", True, "carol").json()
    assert body["contradiction"] is False and body["applied"] is False and "Already known" in body["message"]


# ------------------------------------------------------------------------------------------------ annotators
def test_two_annotators_get_different_pairs(client: TestClient, toy: Toy) -> None:
    open_queue(toy, CHAIN + OTHERS)
    alice, bob = nxt(client, "alice"), nxt(client, "bob")
    assert alice["pair_id"] != bob["pair_id"]
    assert nxt(client, "alice")["pair_id"] == alice["pair_id"], "asking again keeps one's own pair"
    before = events_bytes(toy)
    taken = answer(client, alice["pair_id"], True, "bob")
    assert taken.status_code == 409 and "alice" in taken.json()["detail"]
    assert events_bytes(toy) == before
    assert answer(client, alice["pair_id"], True, "alice").status_code == 200
    assert nxt(client, "carol")["pair_id"] not in {alice["pair_id"], bob["pair_id"]}


def test_a_lease_expires(toy: Toy) -> None:
    client = TestClient(create_app(toy.logs_dir, TOKEN, lease_seconds=0.05), headers={"X-SPAL-Token": TOKEN})
    open_queue(toy)
    first = nxt(client, "alice")["pair_id"]
    assert nxt(client, "bob")["pair_id"] != first
    time.sleep(0.1)
    assert nxt(client, "carol")["pair_id"] == first


# Issue 14, case 6: request bodies are capped, errors never repeat the request, the icon is served.
def test_a_large_body_is_refused_unread_and_changes_nothing(client: TestClient, toy: Toy) -> None:
    from spal.annotation.server import MAX_BODY_BYTES

    open_queue(toy)
    before = events_bytes(toy)
    big = json.dumps({"pair_id": "e0p0", "same": True, "annotator": "x" * (10 * 1024 * 1024)})
    response = client.post("/api/answer", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert len(response.content) < 200 and "xxxx" not in response.text
    # Without a Content-Length (chunked), the body is still cut off at the limit.
    chunks = (b"x" * 4096 for _ in range(MAX_BODY_BYTES // 4096 + 2))
    response = client.post("/api/answer", content=chunks, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert events_bytes(toy) == before
    assert answer(client, "e0p0", True).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"pair_id": "e0p0", "same": "<script>alert(1)</script>", "annotator": "alice"},
        {"pair_id": "e0p0", "same": True, "annotator": "alice", "<script>alert(1)</script>": 1},
        {"pair_id": "<script>alert(1)</script>", "same": True, "annotator": "alice"},
        {"pair_id": "e0p0", "same": True, "annotator": "<script>alert(1)</script>" * 20},
    ],
)
def test_errors_never_repeat_what_the_request_sent(client: TestClient, toy: Toy, body: dict) -> None:
    open_queue(toy)
    response = client.post("/api/answer", json=body)
    assert response.status_code in (404, 422), response.text
    assert "script" not in response.text and "alert" not in response.text
    response = client.get("/api/next", params={"annotator": "<script>" * 20})
    assert response.status_code == 422 and "script" not in response.text
    response = client.get("/api/image/<script>/a")
    assert response.status_code == 404 and "script" not in response.text


def test_the_icon_is_served_without_the_token(toy: Toy) -> None:
    response = TestClient(create_app(toy.logs_dir, TOKEN)).get("/favicon.ico")
    assert response.status_code == 200 and response.headers["content-type"] == "image/x-icon"
    assert response.content[:4] == b"\0\0\1\0"  # the ICO header
    assert TestClient(create_app(toy.logs_dir, TOKEN)).get("/static/favicon.ico").status_code == 401
