"""The development upstream's admin side: a token, capped bodies, bounded changes."""

import httpx
import pytest


@pytest.fixture
def api(start_journal_api):
    return start_journal_api(users=5, entries=50)


def test_admin_endpoints_need_the_token(api):
    for path in ("faults", "advance", "delete", "restore"):
        response = httpx.post(f"{api.url}/admin/{path}", json={})
        assert response.status_code == 401, path
    wrong = {"Authorization": "Bearer not-the-token"}
    assert httpx.get(f"{api.url}/admin/faults", headers=wrong).status_code == 401
    assert api.health()["counts"]["journal_entries"] == 50  # nothing changed
    assert api.advance(new_entries=1)["journal_entries"] == 51  # with the token: fine


def test_bodies_are_capped_and_advance_is_bounded(api):
    headers = {"Authorization": f"Bearer {api.admin_token}"}
    big = httpx.post(f"{api.url}/admin/faults", content=b" " * 100_000, headers=headers)
    assert big.status_code == 413
    huge = httpx.post(f"{api.url}/admin/advance", json={"new_entries": 10**9}, headers=headers)
    assert huge.status_code == 400 and "from 0 to 100000" in huge.json()["error"]
    assert api.health()["counts"]["journal_entries"] == 50


def test_deleting_a_user_deletes_their_entries_in_the_tombstone_feed(api):
    owned = [
        r["id"]
        for r in httpx.get(f"{api.url}/api/v1/journal_entries", params={"limit": 100}).json()[
            "data"
        ]
        if r["user_id"] == 2
    ]
    tombstones = api.delete("users", 2)
    feed = httpx.get(f"{api.url}/api/v1/deletions", params={"limit": 3}).json()
    assert feed["data"] == tombstones[:3] and feed["next_cursor"] is not None
    assert [(t["entity"], t["id"]) for t in tombstones] == [
        *[("journal_entries", i) for i in owned],
        ("users", 2),
    ]
    assert len({t["deleted_at"] for t in tombstones}) == 1  # one deletion, one moment
    assert api.health()["counts"] == {
        "users": 4,
        "game_types": 12,
        "journal_entries": 50 - len(owned),
    }
