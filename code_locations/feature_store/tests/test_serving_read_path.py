"""The lean /get-online-features answers byte for byte what Feast's own handler answers.

Both run in this process on the same store (real Postgres registry, real Redis filled by the
asset): the server's app (lean path in front) and the Feast app behind it, asked the same.
"""

import asyncio
import json
import math
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from feast.feature_server_utils import _value_to_native
from feast.infra.online_stores.redis import RedisOnlineStore, RedisType
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import DoubleList, Int64List, StringList, Value
from feature_store import online_layout
from feature_store.online_store import ExpiringRedisOnlineStore, HiredisPackingConnection
from feature_store.serving.read_path import _native
from feature_store.serving.server import serving_app
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis import asyncio as redis_asyncio

USER_VIEW = "user_journal_features"
USER_FEATURES = [
    f"{USER_VIEW}:{name}"
    for name in ("entries_7d", "avg_mood_30d", "favorite_game_type", "minutes_30d")
]
MISSING_USER = 987_654
ALL_USER_FEATURES = [
    f"{USER_VIEW}:{name}"
    for name in (
        "entries_7d", "entries_30d", "avg_mood_30d", "avg_score_30d", "minutes_30d",
        "favorite_game_type", "days_since_last_entry", "current_streak_days",
    )
]  # fmt: skip
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


def test_lean_reads_equal_feasts_handler_for_odd_stored_values(
    server_app, feast_env, gold_expected
):
    """Values Feast's conversion treats apart: NaN and infinities (JSON strings), a field
    missing from a hash (an empty Value); every feature, 100 users with repeats."""
    users = sorted(gold_expected())
    project, client = server_app.store.project, feast_env.redis()
    field = online_layout.feature_field
    client.hset(
        online_layout.entity_key(project, "user_id", users[0]),
        mapping={
            field(USER_VIEW, "avg_score_30d"): Value(double_val=math.nan).SerializeToString(),
            field(USER_VIEW, "avg_mood_30d"): Value(double_val=-math.inf).SerializeToString(),
        },
    )
    client.hdel(
        online_layout.entity_key(project, "user_id", users[1]),
        field(USER_VIEW, "favorite_game_type"),
    )
    many = [users[i % len(users)] for i in range(100)]
    bodies = [
        {"features": ALL_USER_FEATURES, "entities": {"user_id": users[:3]}},
        {"features": ALL_USER_FEATURES, "entities": {"user_id": [*many, MISSING_USER]}},
    ]
    answers = asyncio.run(_ask_both(server_app, bodies))
    for body, (ours, theirs, answered) in zip(bodies, answers, strict=True):
        assert answered == 1 and ours.status_code == 200, ours.text
        assert ours.content == theirs.content, body
    columns = dict(
        zip(ours.json()["metadata"]["feature_names"], ours.json()["results"], strict=True)
    )
    assert columns["avg_score_30d"]["values"][0] == "NaN"
    assert columns["avg_mood_30d"]["values"][0] == "-Infinity"
    assert columns["favorite_game_type"]["values"][1] is None


@pytest.fixture
def loop():
    """One event loop for every example of a test: the async Redis client belongs to the
    loop that first used it."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


# stored values of every kind the conversion treats apart, a few of them often (values
# repeat across users, and the lean path remembers each distinct one)
STORED_VALUES = st.one_of(
    st.none(),  # a field Redis does not hold
    st.sampled_from([Value(), Value(int64_val=3), Value(double_val=2.5), Value(string_val="a")]),
    st.integers(-(2**63), 2**63 - 1).map(lambda v: Value(int64_val=v)),
    st.integers(-(2**31), 2**31 - 1).map(lambda v: Value(int32_val=v)),
    st.floats().map(lambda v: Value(double_val=v)),  # NaN and infinities included
    st.text(max_size=4).map(lambda v: Value(string_val=v)),
    st.booleans().map(lambda v: Value(bool_val=v)),
    st.lists(st.integers(-5, 5), max_size=3).map(lambda v: Value(int64_list_val=Int64List(val=v))),
)
STAMPS = st.sampled_from(
    [Timestamp(seconds=1_750_000_000), Timestamp(seconds=1_750_000_000, nanos=123_456_789)]
)
PROPERTY_USERS = range(900_001, 900_007)  # users gold does not hold


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_lean_reads_equal_feasts_handler_for_any_stored_rows(server_app, feast_env, loop, data):
    """Whatever the hashes hold (every kind of value, fields or whole rows missing, the same
    values and timestamps across users) and whatever is asked (features in any order,
    users repeated or missing, full names), the lean path answers what Feast's handler
    answers, byte for byte."""
    project, client = server_app.store.project, feast_env.redis()
    names = [ref.split(":")[1] for ref in ALL_USER_FEATURES]
    for user in PROPERTY_USERS:
        key = online_layout.entity_key(project, "user_id", user)
        client.delete(key)
        if data.draw(st.booleans(), label=f"user {user} has a row"):
            row = {
                online_layout.feature_field(USER_VIEW, name): value.SerializeToString()
                for name in names
                if (value := data.draw(STORED_VALUES, label=name)) is not None
            }
            row[online_layout.timestamp_field(USER_VIEW)] = data.draw(STAMPS).SerializeToString()
            client.hset(key, mapping=row)
    features = data.draw(st.lists(st.sampled_from(ALL_USER_FEATURES), min_size=1, unique=True))
    users = data.draw(st.lists(st.sampled_from(PROPERTY_USERS), min_size=1, max_size=12))
    body = {
        "features": features,
        "entities": {"user_id": users},
        "full_feature_names": data.draw(st.booleans()),
    }
    ((ours, theirs, answered),) = loop.run_until_complete(_ask_both(server_app, [body]))
    assert answered == 1 and ours.status_code == 200, ours.text
    assert ours.content == theirs.content


def test_natives_are_feasts_conversion():
    """The lean path reads plain scalars directly; every kind of stored value converts as
    Feast's ``_value_to_native`` converts the Value its Redis store parses."""
    cells = [
        Value(), Value(null_val=0), Value(int32_val=-3), Value(int64_val=2**62),
        Value(double_val=0.1), Value(double_val=-0.0), Value(double_val=math.nan),
        Value(double_val=5.9604644775390625e-08), Value(double_val=1e20), Value(double_val=1e16),
        Value(double_val=math.inf), Value(double_val=-math.inf), Value(float_val=1.5),
        Value(string_val="é"), Value(string_val=""), Value(bool_val=False),
        Value(bytes_val=b"\x00\xff"), Value(unix_timestamp_val=5),
        Value(int64_list_val=Int64List(val=[1, 2])), Value(string_list_val=StringList(val=["a"])),
        Value(double_list_val=DoubleList(val=[1e-08, 0.5, -1e300])),
    ]  # fmt: skip
    stored = [cell.SerializeToString() for cell in cells]
    ours = orjson.dumps([*map(_native, [*stored, None, b""])])
    # a field Redis does not hold, or an empty one: Feast's empty Value
    natives = [*map(_value_to_native, cells), _value_to_native(Value()), None]
    # as Feast's handler writes them: Starlette's JSONResponse (the json module, compact)
    assert ours == json.dumps(natives, ensure_ascii=False, separators=(",", ":")).encode()


def test_online_store_reads_what_feasts_redis_store_reads(feast_env, run_feature_store, gold):
    """The store's faster keys and decoding give Feast's Redis store's rows (sync and async),
    except a row Redis does not hold: NOT_FOUND (None), where Feast gives empty values."""
    assert run_feature_store().success
    store = feast_env.store()
    ours, feasts = store._get_provider().online_store, RedisOnlineStore()
    assert isinstance(ours, ExpiringRedisOnlineStore)
    config = store.config

    def int_keys(join_key: str, values: list[int]) -> list[EntityKey]:
        return [EntityKey(join_keys=[join_key], entity_values=[Value(int64_val=v)]) for v in values]

    # keys: the framed INT64 path, and Feast's serializer for anything else
    for keys in (
        int_keys("user_id", [1, -2, 0, 2**63 - 1, -(2**63)]),
        [EntityKey(join_keys=["user_id"], entity_values=[Value(string_val="1")])],
        [*int_keys("user_id", [1]), *int_keys("game_type_id", [1])],
        [EntityKey(join_keys=["a", "b"], entity_values=[Value(int64_val=1), Value(int64_val=2)])],
        [*int_keys("user_id", [1]), EntityKey(join_keys=["user_id"], entity_values=[Value(int32_val=1)])],
        [],
    ):  # fmt: skip
        assert ours._generate_redis_keys_for_entities(config, keys) == (
            feasts._generate_redis_keys_for_entities(config, keys)
        ), keys

    missing = 987_654
    users = sorted(gold.latest("user_journal_features", "user_id"))
    client = feast_env.redis()
    client.hdel(
        online_layout.entity_key(store.project, "user_id", users[2]),
        online_layout.feature_field(USER_VIEW, "entries_7d"),
    )
    client.hset(  # a stamp with nanoseconds (Feast's goes through a float)
        online_layout.entity_key(store.project, "user_id", users[4]),
        online_layout.timestamp_field(USER_VIEW),
        Timestamp(seconds=1_750_000_000, nanos=123_456_789).SerializeToString(),
    )
    games = sorted(gold.latest("game_type_stats", "game_type_id"))
    reads = [
        (store.get_feature_view(view), keys, features)
        for view, keys, features in (
            (USER_VIEW, int_keys("user_id", [*users, missing]), None),
            (USER_VIEW, int_keys("user_id", [users[3], missing, users[3]]), ["minutes_30d", "entries_7d"]),
            (USER_VIEW, int_keys("user_id", users[:2]), ["entries_7d", "entries_7d"]),  # repeated
            ("game_type_stats", int_keys("game_type_id", [*games, missing]), None),
        )
    ]  # fmt: skip
    reads = [(v, k, f or [feature.name for feature in v.features]) for v, k, f in reads]

    # the stored bytes the feature server reads instead (stored_reader)
    stored_users = [users[4], missing, users[2]]
    read_stored = ours.stored_reader(
        config, store.get_feature_view(USER_VIEW), "user_id", ["minutes_30d", "entries_7d"]
    )
    assert read_stored is not None

    async def read_async() -> tuple[list[Any], list[Any]]:  # one event loop: the client's
        rows = [await ours.online_read_async(config, v, k, list(f)) for v, k, f in reads]
        return rows, await read_stored(stored_users)

    rows_async_all, stored = asyncio.run(read_async())
    for (view, keys, features), rows_async in zip(reads, rows_async_all, strict=True):
        theirs = feasts.online_read(config, view, keys, list(features))
        for rows in (ours.online_read(config, view, keys, list(features)), rows_async):
            for key, row, feast_row in zip(keys, rows, theirs, strict=True):
                if key.entity_values[0].int64_val == missing:
                    assert row == (None, None)
                    assert feast_row[0] == datetime.fromtimestamp(0, UTC)  # Feast: epoch, empty
                else:
                    assert row == feast_row and isinstance(row[0], datetime), (view.name, key)
                    assert list(row[1]) == list(feast_row[1])  # same features, same order
    assert ours._client_async.connection_pool.connection_class is HiredisPackingConnection

    fields = [
        online_layout.feature_field(USER_VIEW, "minutes_30d"),
        online_layout.feature_field(USER_VIEW, "entries_7d"),
        online_layout.timestamp_field(USER_VIEW),
    ]
    stored_keys = [online_layout.entity_key(store.project, "user_id", u) for u in stored_users]
    assert stored == [client.hmget(key, fields) for key in stored_keys]
    assert stored[1] == [None, None, None] and stored[2][1] is None and stored[2][2]
    # none for a cluster (its keys route by slot) or another entity key serialization
    cluster = config.model_copy(
        update={
            "online_config": config.online_store.model_copy(
                update={"redis_type": RedisType.redis_cluster}
            )
        }
    )
    cluster._online_store = None  # RepoConfig builds online_store from online_config once
    assert cluster.online_store.redis_type == RedisType.redis_cluster
    for other in (cluster, config.model_copy(update={"entity_key_serialization_version": 2})):
        assert ours.stored_reader(other, reads[0][0], "user_id", ["entries_7d"]) is None


def test_async_connection_packs_as_redis_py_does():
    """hiredis packs a command into the bytes redis-py's asyncio connection packs."""
    args = ("HMGET", b"\x02\x00key\xff", b"field", "_ts:view", 7, 1.5, "é", 2**70, -0.0, 1e20)
    packed = HiredisPackingConnection().pack_command(*args)
    assert b"".join(packed) == b"".join(redis_asyncio.Connection().pack_command(*args))


def test_concurrent_requests_share_reads_and_get_feasts_answers(server_app, gold_expected):
    """Requests arriving together (one user, several, a missing one, the two-view service)
    are read together, and each gets what Feast's handler answers it alone."""
    users = sorted(gold_expected())
    bodies: list[Any] = [
        *({"features": USER_FEATURES, "entities": {"user_id": [user]}} for user in users[:8]),
        {"features": USER_FEATURES, "entities": {"user_id": [MISSING_USER, users[9], users[9]]}},
        {"features": ALL_USER_FEATURES, "entities": {"user_id": users[:5]}},
        {"feature_service": "analyzer_v1", "entities": {"user_id": users[:2], "game_type_id": [2, 1]}},
        {"feature_service": "analyzer_v1", "entities": {"user_id": [users[3]], "game_type_id": [99]}},
    ]  # fmt: skip
    counts: dict[str, int] = {}

    async def alone_then_together() -> tuple[list[httpx.Response], list[httpx.Response]]:
        # one event loop: the online store's async client belongs to the first that uses it
        alone = [theirs for _, theirs, _ in await _ask_both(server_app, bodies)]
        counts.update(reads=_online_reads(server_app), answered=server_app.answered)
        transport = httpx.ASGITransport(app=server_app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            posts = (client.post("/get-online-features", json=body) for body in bodies)
            return alone, await asyncio.gather(*posts)

    alone, answers = asyncio.run(alone_then_together())
    assert server_app.answered - counts["answered"] == len(bodies)
    for body, ours, theirs in zip(bodies, answers, alone, strict=True):
        assert ours.status_code == theirs.status_code == 200, ours.text
        assert ours.content == theirs.content, body
    # one read per distinct (view, features): the 9 requests of USER_FEATURES share one,
    # ALL_USER_FEATURES has its own, and the 2 service requests share one per view
    reads = _online_reads(server_app) - counts["reads"]
    assert reads == 4, f"{len(bodies)} requests made {reads} online reads"


def _online_reads(app: Any) -> int:
    return sum(read.reads.reads for plan in app._plans.values() if plan for read in plan.views)


def test_an_async_read_fails_and_recovers_as_feasts_pipeline(feast_env, run_feature_store, gold):
    """A key Redis cannot HMGET fails the read, as it fails Feast's pipeline, and the next
    read on the same client is right (no reply left on the connection); so is a read after
    Redis dropped every client connection."""
    from redis.exceptions import ResponseError

    assert run_feature_store().success
    store = feast_env.store()
    ours, config = store._get_provider().online_store, store.config
    view = store.get_feature_view(USER_VIEW)
    users = sorted(gold.latest(USER_VIEW, "user_id"))[:3]
    features = [feature.name for feature in view.features]
    client = feast_env.redis()
    client.set(online_layout.entity_key(store.project, "user_id", MISSING_USER), b"not a hash")

    def keys(values: list[int]) -> list[EntityKey]:
        return [
            EntityKey(join_keys=["user_id"], entity_values=[Value(int64_val=v)]) for v in values
        ]

    expected = RedisOnlineStore().online_read(config, view, keys(users), list(features))
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        RedisOnlineStore().online_read(config, view, keys([users[0], MISSING_USER]), features[:])

    async def reads() -> list[Any]:
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await ours.online_read_async(
                config, view, keys([users[0], MISSING_USER, users[1]]), list(features)
            )
        after_error = await ours.online_read_async(config, view, keys(users), list(features))
        client.client_kill_filter(_type="normal", skipme=True)
        after_kill = await ours.online_read_async(config, view, keys(users), list(features))
        return [after_error, after_kill]

    for rows in asyncio.run(reads()):
        assert rows == expected
