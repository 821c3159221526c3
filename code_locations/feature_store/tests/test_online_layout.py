"""Commands sent to Redis in buffers whose replies are read one buffer later."""

from typing import Any

import pytest
import redis
from feature_store import online_layout


def hset(key: bytes, value: bytes) -> bytes:
    return b"*4\r\n$4\r\nHSET\r\n$%d\r\n%s\r\n$1\r\nf\r\n$%d\r\n%s\r\n" % (
        len(key),
        key,
        len(value),
        value,
    )


def test_every_buffer_is_applied_and_its_replies_read(online_store):
    client = online_store.client()
    with online_layout.CommandStream(client) as stream:
        for batch in range(3):
            keys = [b"k%d-%d" % (batch, i) for i in range(100)]
            stream.send(b"".join(hset(k, b"v") for k in keys), len(keys))
    assert client.dbsize() == 300
    # the pooled connection holds no unread reply: the next command gets its own answer
    assert client.hget(b"k2-99", b"f") == b"v" and client.ping() is True


def failing_stream(client: redis.Redis) -> Any:
    """A stream over ``client`` where ``plain`` is a string, so an HSET of it fails."""
    client.set(b"plain", b"a string, not a hash")
    return (
        pytest.raises(redis.ResponseError, match="WRONGTYPE"),
        online_layout.CommandStream(client),
    )


def test_an_error_reply_raises_after_its_buffer_and_drops_the_connection(online_store):
    client = online_store.client()
    raises, stream_context = failing_stream(client)
    with raises, stream_context as stream:
        stream.send(hset(b"a", b"1") + hset(b"plain", b"2") + hset(b"b", b"3"), 3)
        stream.send(hset(b"c", b"4"), 1)
    # the commands around the failing one ran; the client still answers in step
    assert client.hget(b"b", b"f") == b"3" and client.hget(b"c", b"f") == b"4"
    assert client.get(b"plain") == b"a string, not a hash"
    assert client.ping() is True


def test_an_error_in_the_last_buffer_raises_on_leaving(online_store):
    client = online_store.client()
    raises, stream_context = failing_stream(client)
    with raises, stream_context as stream:
        stream.send(hset(b"a", b"1") + hset(b"plain", b"2"), 2)
    assert client.hget(b"a", b"f") == b"1" and client.ping() is True
