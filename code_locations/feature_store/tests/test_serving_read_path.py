"""The lean /get-online-features answers byte for byte what Feast's own handler answers.

Both run in this process on the same store (real Postgres registry, real Redis filled by the
asset): the server's app (lean path in front) and the Feast app behind it, asked the same.
"""

import asyncio
import json
from typing import Any

import httpx
import pytest
from feature_store.serving.server import serving_app

USER_VIEW = "user_journal_features"
USER_FEATURES = [
    f"{USER_VIEW}:{name}"
    for name in ("entries_7d", "avg_mood_30d", "favorite_game_type", "minutes_30d")
]
MISSING_USER = 987_654
READ_ONE = json.dumps({"features": USER_FEATURES, "entities": {"user_id": [1]}}).encode()


async def _ask_both(
    app: Any, bodies: list[Any]
) -> list[tuple[httpx.Response, httpx.Response, int]]:
    """Each body posted to the server's app and to Feast's app: both responses, and how many
    of them the lean path answered itself."""
    answers = []
    lean = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://t"
    )
    feast = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app.app, raise_app_exceptions=False),
        base_url="http://t",
    )
    async with lean, feast:
        for body in bodies:
            before = app.answered
            if isinstance(body, tuple):  # (content type, body)
                kwargs: dict[str, Any] = {
                    "content": body[1],
                    "headers": {"content-type": body[0]} if body[0] else {},
                }
            else:
                kwargs = {"json": body}
            ours = await lean.post("/get-online-features", **kwargs)
            theirs = await feast.post("/get-online-features", **kwargs)
            answers.append((ours, theirs, app.answered - before))
    return answers


@pytest.fixture
def server_app(feast_env, run_feature_store):
    assert run_feature_store().success
    return serving_app(feast_env.store())


def test_lean_reads_equal_feasts_handler(server_app, gold_expected):
    expected = gold_expected()
    users = sorted(expected)
    null_mood = next(u for u in users if expected[u]["avg_mood_30d"] is None)
    bodies = [
        {"features": USER_FEATURES, "entities": {"user_id": [users[0]]}},
        # a missing user (NOT_FOUND, null values, epoch timestamps), a repeated one, a null
        {
            "features": USER_FEATURES,
            "entities": {"user_id": [users[1], MISSING_USER, users[1], null_mood]},
        },
        {
            "features": USER_FEATURES[:2],
            "entities": {"user_id": users[:3]},
            "full_feature_names": True,
        },
        # the analyzer's service: two views, two join keys, one game type missing
        {
            "feature_service": "analyzer_v1",
            "entities": {"user_id": users[:3], "game_type_id": [1, 2, 99]},
        },
        {
            "feature_service": "analyzer_v1",
            "entities": {"game_type_id": [3, 1], "user_id": [users[4], MISSING_USER]},
            "full_feature_names": True,
        },
    ]
    answers = asyncio.run(_ask_both(server_app, bodies))
    for body, (ours, theirs, answered) in zip(bodies, answers, strict=True):
        assert answered == 1, f"Feast's handler answered {body}"
        assert (ours.status_code, theirs.status_code) == (200, 200), (ours.text, theirs.text)
        assert ours.headers["content-type"] == theirs.headers["content-type"]
        assert ours.content == theirs.content, body

    # and the values are gold's: present, missing, null
    columns = {
        name: result
        for name, result in zip(
            answers[1][0].json()["metadata"]["feature_names"],
            answers[1][0].json()["results"],
            strict=True,
        )
    }
    assert columns["user_id"]["values"] == [users[1], MISSING_USER, users[1], null_mood]
    assert columns["entries_7d"]["values"] == [
        expected[users[1]]["entries_7d"],
        None,
        expected[users[1]]["entries_7d"],
        expected[null_mood]["entries_7d"],
    ]
    assert columns["entries_7d"]["statuses"] == ["PRESENT", "NOT_FOUND", "PRESENT", "PRESENT"]
    assert columns["entries_7d"]["event_timestamps"][1] == "1970-01-01T00:00:00Z"
    assert columns["entries_7d"]["event_timestamps"][0] != "1970-01-01T00:00:00Z"
    assert columns["avg_mood_30d"]["values"][3] is None


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (("application/json", b"{not json"), 422),
        # FastAPI reads JSON only under a JSON content type
        (("text/plain", READ_ONE), 422),
        (("", READ_ONE), 422),
        ({"features": USER_FEATURES}, 422),  # no entities
        ({"features": USER_FEATURES, "entities": {"user_id": 7}}, 422),
        ({"features": ["nope:x"], "entities": {"user_id": [1]}}, 404),
        ({"features": [f"{USER_VIEW}:nope"], "entities": {"user_id": [1]}}, 500),
        ({"feature_service": "nope", "entities": {"user_id": [1]}}, 404),
        ({"features": USER_FEATURES, "entities": {"user_id": ["one"]}}, 500),
        ({"features": [], "entities": {"user_id": [1]}}, 500),
    ],
)
def test_bad_requests_get_feasts_refusal(server_app, body, status):
    ((ours, theirs, answered),) = asyncio.run(_ask_both(server_app, [body]))
    assert answered == 0
    assert ours.status_code == theirs.status_code == status, ours.text
    assert ours.content == theirs.content


def test_requests_it_does_not_handle_go_to_feast(server_app, gold_expected):
    """Same answers for what the lean path leaves to Feast: an entity name instead of its join
    key, a join key of a view not asked for, ragged entity lists."""
    users = sorted(gold_expected())[:2]
    bodies = [
        {"features": USER_FEATURES, "entities": {"user": users}},
        {"features": USER_FEATURES, "entities": {"user_id": users, "game_type_id": [1, 2]}},
        {"features": USER_FEATURES, "entities": {"user_id": users, "unknown": [1, 2]}},
    ]
    for ours, theirs, answered in asyncio.run(_ask_both(server_app, bodies)):
        assert answered == 0
        assert ours.status_code == theirs.status_code
        assert ours.content == theirs.content


def test_only_reads_are_served(server_app):
    async def post(path: str) -> int:
        transport = httpx.ASGITransport(app=server_app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return (await client.post(path, json={})).status_code

    for write in ("/push", "/write-to-online-store", "/materialize", "/materialize-incremental"):
        assert asyncio.run(post(write)) == 404, write


def test_a_registry_refresh_reaches_the_lean_path(server_app, feast_env, gold_expected):
    """A feature service applied after start-up: unknown (Feast's 404) until the server's
    registry refreshes, then answered by the lean path like Feast's handler."""
    from feast import FeatureService

    users = sorted(gold_expected())[:2]
    body = {"feature_service": "analyzer_v2", "entities": {"user_id": users}}
    ((ours, theirs, answered),) = asyncio.run(_ask_both(server_app, [body]))
    assert (ours.status_code, theirs.status_code, answered) == (404, 404, 0)

    deployer = feast_env.store()
    view = deployer.get_feature_view(USER_VIEW)
    deployer.apply([FeatureService(name="analyzer_v2", features=[view[["entries_7d"]]])])
    server_app.store.refresh_registry()  # what the server's refresh timer does

    ((ours, theirs, answered),) = asyncio.run(_ask_both(server_app, [body]))
    assert (ours.status_code, answered) == (200, 1), ours.text
    assert ours.content == theirs.content
    assert ours.json()["metadata"]["feature_names"] == ["user_id", "entries_7d"]
