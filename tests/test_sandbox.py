"""The Segment sandbox, exercised with real HTTP requests on loopback: every contract rule and fault knob."""

from __future__ import annotations

import asyncio
import base64
import gzip
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import pytest

from tui_currents.sandbox import SegmentSandbox, ViolationKind, read_write_keys

KEY = "sandbox-test-key-1"
OTHER_KEY = "sandbox-test-key-2"

pytestmark = pytest.mark.timeout(30)


def message(**overrides: object) -> dict:
    msg = {
        "type": "track",
        "event": "Email Sent",
        "anonymousId": "5f9c2a1b3c4d5e6f7a8b9c0d",
        "userId": "customer-1",
        "messageId": str(uuid.uuid4()),
        "timestamp": "2025-03-01T12:00:00.000Z",
        "properties": {"campaign_name": "Spring Sale"},
    }
    msg.update(overrides)
    return {k: v for k, v in msg.items() if v is not None}


def body(batch: list, *, key: str | None = None, sent_at: bool = True) -> dict:
    payload: dict = {"batch": batch}
    if key is not None:
        payload["writeKey"] = key
    if sent_at:
        payload["sentAt"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return payload


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


async def post(
    client: httpx.AsyncClient, url: str, payload: object, *, key: str | None = KEY, **kw
) -> httpx.Response:
    headers = {"Content-Type": "application/json", **(basic(key) if key else {}), **kw.pop("headers", {})}
    content = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return await client.post(url + "/v1/batch", content=content, headers=headers, **kw)


@pytest.fixture
async def sandbox():
    async with SegmentSandbox({KEY, OTHER_KEY}, reject_unknown_keys=True) as sb:
        yield sb


@pytest.fixture
async def client():
    async with httpx.AsyncClient(timeout=5.0) as c:
        yield c


def kinds(sb: SegmentSandbox) -> list[ViolationKind]:
    return [v.kind for v in sb.violations]


# ---------------------------------------------------------------------- accepting


async def test_valid_batch_is_accepted_and_recorded(sandbox, client):
    batch = [message() for _ in range(3)]
    response = await post(client, sandbox.url, body(batch), headers={"X-Retry-Count": "2"})
    assert response.status_code == 200
    assert response.json() == {"success": True}
    assert sandbox.accepted_count == 3
    assert [m["messageId"] for m in sandbox.recent(10)] == [m["messageId"] for m in batch]
    assert set(sandbox.message_ids) == {m["messageId"] for m in batch}
    assert sandbox.violations == []
    assert sandbox.accepted_for(KEY) == 3 and sandbox.accepted_for(OTHER_KEY) == 0
    (record,) = sandbox.requests
    assert (record.status, record.messages, record.accepted, record.retry_count) == (200, 3, 3, 2)
    assert record.gzip is False and record.bytes == record.body_bytes > 0
    assert record.sent_at is not None and record.sent_at.endswith("Z")


async def test_import_alias_and_single_track(sandbox, client):
    r1 = await client.post(sandbox.url + "/v1/import", json=body([message()]), headers=basic(KEY))
    single = {**message(), "sentAt": datetime.now(UTC).isoformat()}
    r2 = await client.post(sandbox.url + "/v1/track", json=single, headers=basic(KEY))
    assert (r1.status_code, r2.status_code) == (200, 200)
    assert sandbox.accepted_count == 2
    assert "sentAt" not in sandbox.recent(1)[0]


async def test_gzip_body_is_accepted_and_flagged(sandbox, client):
    batch = [message(properties={"text": "x" * 500}) for _ in range(20)]
    raw = orjson.dumps(body(batch))
    response = await post(client, sandbox.url, gzip.compress(raw), headers={"Content-Encoding": "gzip"})
    assert response.status_code == 200
    assert sandbox.accepted_count == 20
    record = sandbox.requests[-1]
    assert record.gzip is True
    assert record.body_bytes == len(raw) and record.bytes < record.body_bytes


# ---------------------------------------------------------------------- authentication


async def test_write_key_in_body_only_is_enough(sandbox, client):
    response = await post(client, sandbox.url, body([message()], key=OTHER_KEY), key=None)
    assert response.status_code == 200
    assert sandbox.accepted_for(OTHER_KEY) == 1
    assert sandbox.violations == []


async def test_missing_write_key_is_400(sandbox, client):
    response = await post(client, sandbox.url, body([message()]), key=None)
    assert response.status_code == 400
    assert sandbox.accepted_count == 0
    assert kinds(sandbox) == [ViolationKind.MISSING_WRITE_KEY]


async def test_unknown_key_is_401_when_rejecting(sandbox, client):
    response = await post(client, sandbox.url, body([message()]), key="not-a-key-of-ours")
    assert response.status_code == 401
    assert sandbox.accepted_count == 0
    assert kinds(sandbox) == [ViolationKind.UNKNOWN_WRITE_KEY]
    assert "not-a-key-of-ours" not in repr(sandbox.violations)


async def test_unknown_key_is_200_and_dropped_like_segment_by_default(client):
    async with SegmentSandbox({KEY}) as sb:
        response = await post(client, sb.url, body([message(), message()]), key="stale-key")
        assert response.status_code == 200
        assert sb.accepted_count == 0 and sb.dropped == 2
        assert kinds(sb) == [ViolationKind.UNKNOWN_WRITE_KEY]


async def test_any_key_is_accepted_when_no_keys_are_given(client):
    async with SegmentSandbox() as sb:
        response = await post(client, sb.url, body([message()]), key="whatever")
        assert response.status_code == 200 and sb.accepted_count == 1


async def test_header_and_body_keys_that_differ_are_a_violation(sandbox, client):
    response = await post(client, sandbox.url, body([message()], key=OTHER_KEY), key=KEY)
    assert response.status_code == 200
    assert sandbox.accepted_for(KEY) == 1  # the Authorization header decides
    assert kinds(sandbox) == [ViolationKind.WRITE_KEY_MISMATCH]


# ---------------------------------------------------------------------- limits


async def test_body_over_500000_bytes_is_400_and_just_under_is_accepted(sandbox, client):
    def batch_of(count: int) -> list:
        return [message(properties={"pad": "p" * 31_000}) for _ in range(count)]

    under = orjson.dumps(body(batch_of(16)))
    over = orjson.dumps(body(batch_of(17)))
    assert len(under) < 500_000 < len(over)
    assert (await post(client, sandbox.url, under)).status_code == 200
    assert sandbox.accepted_count == 16
    assert (await post(client, sandbox.url, over)).status_code == 400
    assert sandbox.accepted_count == 16
    assert kinds(sandbox) == [ViolationKind.BODY_TOO_LARGE]


async def test_gzip_body_that_inflates_over_the_limit_is_400(sandbox, client):
    raw = orjson.dumps(body([message(properties={"pad": "z" * 30_000}) for _ in range(20)]))
    assert len(raw) > 500_000
    response = await post(client, sandbox.url, gzip.compress(raw), headers={"Content-Encoding": "gzip"})
    assert response.status_code == 400
    assert sandbox.accepted_count == 0
    assert kinds(sandbox) == [ViolationKind.BODY_TOO_LARGE]


async def test_bad_gzip_is_400(sandbox, client):
    raw = orjson.dumps(body([message()]))
    response = await post(client, sandbox.url, raw, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 400
    truncated = gzip.compress(raw)[:-12]
    response = await post(client, sandbox.url, truncated, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 400
    assert sandbox.accepted_count == 0
    assert kinds(sandbox) == [ViolationKind.BAD_GZIP, ViolationKind.BAD_GZIP]


async def test_more_than_2500_messages_is_400_when_strict(sandbox, client):
    tiny = [{"type": "track", "event": "E", "anonymousId": "a", "messageId": f"m{i}"} for i in range(2_501)]
    response = await post(client, sandbox.url, body(tiny))
    assert response.status_code == 400
    assert sandbox.accepted_count == 0
    assert kinds(sandbox) == [ViolationKind.TOO_MANY_MESSAGES]
    response = await post(client, sandbox.url, body(tiny[:2_500]))
    assert response.status_code == 200
    assert sandbox.accepted_count == 2_500


async def test_more_than_2500_messages_is_200_and_dropped_when_lenient(client):
    async with SegmentSandbox({KEY}, strict=False) as sb:
        tiny = [
            {"type": "track", "event": "E", "anonymousId": "a", "messageId": f"m{i}"} for i in range(2_600)
        ]
        response = await post(client, sb.url, body(tiny))
        assert response.status_code == 200
        assert sb.accepted_count == 0 and sb.dropped == 2_600
        assert kinds(sb) == [ViolationKind.TOO_MANY_MESSAGES]


def message_of_size(size: int) -> dict:
    msg = message(properties={"pad": ""})
    msg["properties"]["pad"] = "q" * (size - len(orjson.dumps(msg)))
    assert len(orjson.dumps(msg)) == size
    return msg


async def test_message_over_32768_bytes_spoils_the_batch_and_at_the_limit_is_fine(sandbox, client):
    at_limit = message_of_size(32_768)
    over = message_of_size(32_769)
    good = message()
    assert (await post(client, sandbox.url, body([good, over]))).status_code == 400
    assert sandbox.accepted_count == 0
    assert kinds(sandbox) == [ViolationKind.MESSAGE_TOO_LARGE]
    assert sandbox.violations[0].message_id == over["messageId"]
    assert (await post(client, sandbox.url, body([good, at_limit]))).status_code == 200
    assert sandbox.accepted_count == 2


async def test_invalid_json_is_400_bad_request(sandbox, client):
    response = await post(client, sandbox.url, b'{"batch": [ {"type": "track",')
    assert response.status_code == 400
    assert response.text == "Bad Request"
    response = await post(client, sandbox.url, b'{"batch": {"not": "a list"}}')
    assert response.status_code == 400
    assert kinds(sandbox) == [ViolationKind.INVALID_JSON, ViolationKind.NOT_A_BATCH]


# ---------------------------------------------------------------------- messages Segment silently drops


@pytest.mark.parametrize(
    ("bad", "kind"),
    [
        (message(type=None), ViolationKind.MISSING_TYPE),
        (message(type="trak"), ViolationKind.UNKNOWN_TYPE),
        (message(event=None), ViolationKind.MISSING_EVENT),
        (message(event=""), ViolationKind.MISSING_EVENT),
        (message(userId=None, anonymousId=None), ViolationKind.MISSING_USER),
        (message(userId="", anonymousId=None), ViolationKind.MISSING_USER),
        (message(messageId="m" * 101), ViolationKind.MESSAGE_ID_TOO_LONG),
        (message(messageId=None), ViolationKind.MISSING_MESSAGE_ID),
    ],
)
async def test_bad_message_is_200_dropped_and_recorded(sandbox, client, bad, kind):
    good = message()
    response = await post(client, sandbox.url, body([bad, good]))
    assert response.status_code == 200
    assert [m["messageId"] for m in sandbox.recent(10)] == [good["messageId"]]
    assert sandbox.dropped == 1 and sandbox.requests[-1].dropped == 1
    assert kinds(sandbox) == [kind]


async def test_message_id_of_100_characters_and_user_id_alone_are_fine(sandbox, client):
    batch = [message(messageId="m" * 100), message(anonymousId=None), message(userId=None)]
    assert (await post(client, sandbox.url, body(batch))).status_code == 200
    assert sandbox.accepted_count == 3
    assert sandbox.violations == []


async def test_missing_sent_at_is_a_violation_but_accepted(sandbox, client):
    response = await post(client, sandbox.url, body([message()], sent_at=False))
    assert response.status_code == 200
    assert sandbox.accepted_count == 1
    assert kinds(sandbox) == [ViolationKind.MISSING_SENT_AT]
    await post(client, sandbox.url, {**body([message()]), "sentAt": "yesterday"})
    assert kinds(sandbox)[-1] == ViolationKind.INVALID_SENT_AT


async def test_wrong_content_type_is_a_violation(sandbox, client):
    response = await post(client, sandbox.url, body([message()]), headers={"Content-Type": "text/plain"})
    assert response.status_code == 200
    assert kinds(sandbox) == [ViolationKind.CONTENT_TYPE]


# ---------------------------------------------------------------------- deduplication and keeping


async def test_duplicate_message_ids_are_accepted_once(sandbox, client):
    first, second = message(), message()
    await post(client, sandbox.url, body([first, second, first]))
    await post(client, sandbox.url, body([second]))
    assert sandbox.accepted_count == 2
    assert sandbox.duplicates == 2
    assert sandbox.message_ids == {first["messageId"]: 2, second["messageId"]: 2}
    assert [(r.accepted, r.duplicates) for r in sandbox.requests] == [(2, 1), (0, 1)]


async def test_keep_bounds_the_viewable_messages_but_counts_stay_exact(client):
    async with SegmentSandbox({KEY}, keep=5) as sb:
        batch = [message() for _ in range(12)]
        await post(client, sb.url, body(batch))
        assert sb.accepted_count == 12 and len(sb.message_ids) == 12
        assert [m["messageId"] for m in sb.recent(100)] == [m["messageId"] for m in batch[-5:]]


# ---------------------------------------------------------------------- fault knobs


async def test_fail_rate_answers_from_the_status_list_and_keeps_nothing_of_failures(sandbox, client):
    sandbox.faults.update(fail_rate=0.5, fail_statuses=[500, 503], seed=7)
    statuses = [(await post(client, sandbox.url, body([message()]))).status_code for _ in range(40)]
    assert set(statuses) == {200, 500, 503}
    assert 8 <= statuses.count(200) <= 32
    assert sandbox.accepted_count == statuses.count(200)
    sandbox.faults.update(fail_rate=1.0, fail_statuses=[502])
    assert (await post(client, sandbox.url, body([message()]))).status_code == 502


async def test_next_statuses_with_retry_after(sandbox, client):
    sandbox.faults.update(next_statuses=[429, 429], retry_after=2)
    first = await post(client, sandbox.url, body([message()]))
    second = await post(client, sandbox.url, body([message()]))
    third = await post(client, sandbox.url, body([message()]))
    assert [first.status_code, second.status_code, third.status_code] == [429, 429, 200]
    for answer in (first, second):
        assert answer.headers["Retry-After"] == "2"
        assert answer.headers["X-RateLimit-Reset"] == "2"
    assert "Retry-After" not in third.headers
    assert sandbox.accepted_count == 1
    assert [r.fault for r in sandbox.requests] == ["next_statuses", "next_statuses", None]


async def test_latency_delays_the_answer(sandbox, client):
    sandbox.faults.update(latency=0.3)
    started = time.monotonic()
    response = await post(client, sandbox.url, body([message()]))
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.29


async def test_dropped_connection_keeps_nothing(sandbox, client):
    sandbox.faults.update(drop_connection_rate=1.0)
    with pytest.raises(httpx.TransportError):
        await post(client, sandbox.url, body([message()]))
    assert sandbox.accepted_count == 0
    assert sandbox.requests[-1].status == 0 and sandbox.requests[-1].fault == "drop_connection"


async def test_lost_response_keeps_the_messages_and_a_retry_is_deduplicated(sandbox, client):
    batch = [message(), message()]
    sandbox.faults.update(lose_response_rate=1.0)
    with pytest.raises(httpx.TransportError):
        await post(client, sandbox.url, body(batch))
    assert sandbox.accepted_count == 2
    sandbox.faults.update(lose_response_rate=0.0)
    assert (await post(client, sandbox.url, body(batch), headers={"X-Retry-Count": "1"})).status_code == 200
    assert sandbox.accepted_count == 2 and sandbox.duplicates == 2


async def test_timeout_holds_the_request_and_a_client_that_gave_up_delivers_nothing(sandbox, client):
    sandbox.faults.update(timeout=0.4)
    with pytest.raises(httpx.ReadTimeout):
        await post(client, sandbox.url, body([message()]), timeout=0.1)
    for _ in range(100):  # the held request finishes after 0.4 s
        if sandbox.request_count:
            break
        await asyncio.sleep(0.02)
    assert sandbox.requests[-1].fault == "timeout"
    assert sandbox.accepted_count == 0
    started = time.monotonic()
    response = await post(client, sandbox.url, body([message()]), timeout=3.0)
    assert response.status_code == 200 and time.monotonic() - started >= 0.39
    assert sandbox.accepted_count == 1


async def test_outage_503_then_recovery(sandbox, client):
    sandbox.faults.update(outage=True, retry_after=1.5)
    response = await post(client, sandbox.url, body([message()]))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == response.headers["X-RateLimit-Reset"] == "1.5"
    sandbox.faults.update(outage=False)
    assert (await post(client, sandbox.url, body([message()]))).status_code == 200
    assert sandbox.accepted_count == 1


async def test_outage_with_connection_reset(sandbox, client):
    sandbox.faults.update(outage=True, outage_reset=True)
    for _ in range(2):
        with pytest.raises(httpx.TransportError):
            await post(client, sandbox.url, body([message()]))
    assert sandbox.accepted_count == 0
    sandbox.faults.reset()
    assert (await post(client, sandbox.url, body([message()]))).status_code == 200


async def test_rejected_message_id_spoils_only_its_batch(sandbox, client):
    poison = message()
    sandbox.faults.update(reject_message_ids=[poison["messageId"]])
    assert (await post(client, sandbox.url, body([message(), poison]))).status_code == 400
    assert sandbox.accepted_count == 0
    assert (await post(client, sandbox.url, body([message(), message()]))).status_code == 200
    assert sandbox.accepted_count == 2
    assert sandbox.violations == []  # an injected fault is not the client's mistake


async def test_status_for_keys(sandbox, client):
    sandbox.faults.update(status_for_keys={OTHER_KEY: 403})
    assert (await post(client, sandbox.url, body([message()]), key=OTHER_KEY)).status_code == 403
    assert (await post(client, sandbox.url, body([message()]), key=KEY)).status_code == 200
    assert sandbox.accepted_count == 1
    assert OTHER_KEY not in orjson.dumps(sandbox.stats()).decode()


def test_faults_refuse_bad_values_and_leave_knobs_unchanged():
    sb = SegmentSandbox()
    with pytest.raises(ValueError, match="fail_rate"):
        sb.faults.update(latency=1.0, fail_rate=2.0)
    assert sb.faults.latency == 0.0
    with pytest.raises(ValueError, match="unknown fault"):
        sb.faults.update(explode=True)
    with pytest.raises(ValueError, match="HTTP status"):
        sb.faults.update(next_statuses=[42])


# ---------------------------------------------------------------------- control endpoints


async def test_faults_stats_and_recent_over_http(sandbox, client):
    r = await client.post(sandbox.url + "/_sandbox/faults", json={"next_statuses": [503], "retry_after": 1})
    assert r.status_code == 200 and r.json()["next_statuses"] == [503]
    assert (await post(client, sandbox.url, body([message()]))).status_code == 503
    batch = [message() for _ in range(3)]
    await post(client, sandbox.url, body(batch))
    bad = await client.post(sandbox.url + "/_sandbox/faults", json={"fail_rate": -1})
    assert bad.status_code == 400 and "fail_rate" in bad.json()["error"]

    stats = await client.get(sandbox.url + "/_sandbox/stats")
    data = stats.json()
    assert data["accepted"] == 3 and data["requests"] == 2
    assert data["statuses"] == {"200": 1, "503": 1}
    assert KEY not in stats.text

    recent = await client.get(sandbox.url + "/_sandbox/recent", params={"limit": 2})
    assert [m["messageId"] for m in recent.json()["messages"]] == [m["messageId"] for m in batch[-2:]]
    assert KEY not in recent.text

    r = await client.post(sandbox.url + "/_sandbox/faults", json={"reset": True, "latency": 0.01})
    assert r.json()["latency"] == 0.01 and r.json()["next_statuses"] == []
    r = await client.post(sandbox.url + "/_sandbox/reset")
    assert r.json()["accepted"] == 0 and sandbox.accepted_count == 0


async def test_recent_never_shows_a_write_key_inside_a_message(sandbox, client):
    await post(client, sandbox.url, body([message(writeKey=KEY)]))
    recent = await client.get(sandbox.url + "/_sandbox/recent")
    assert len(recent.json()["messages"]) == 1
    assert KEY not in recent.text


async def test_control_endpoints_can_be_switched_off(client):
    async with SegmentSandbox(control=False) as sb:
        assert (await client.get(sb.url + "/_sandbox/stats")).status_code == 404
        assert (await client.post(sb.url + "/_sandbox/faults", json={"outage": True})).status_code == 404


# ---------------------------------------------------------------------- other ways to run it


def test_run_in_thread_for_synchronous_code():
    handle = SegmentSandbox({KEY}, reject_unknown_keys=True).run_in_thread()
    try:
        with httpx.Client(timeout=5.0) as client:
            response = client.post(handle.url + "/v1/batch", json=body([message()]), headers=basic(KEY))
        assert response.status_code == 200
        assert handle.wait_accepted(1, timeout=2.0)
        assert handle.sandbox.accepted_count == 1
    finally:
        handle.stop()
    with httpx.Client(timeout=2.0) as client, pytest.raises(httpx.ConnectError):
        client.post(handle.url + "/v1/batch", json=body([message()]), headers=basic(KEY))


def test_separate_process_reads_keys_from_a_file(tmp_path: Path):
    key_file = tmp_path / "keys"
    key_file.write_text(f"# sandbox keys\n{KEY}\n")
    env = {k: v for k, v in os.environ.items() if k != "TUI_CURRENTS_SANDBOX_WRITE_KEYS"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tui_currents.sandbox",
            "--write-key-file",
            str(key_file),
            "--reject-unknown-keys",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        with httpx.Client(timeout=5.0) as client:
            ok = client.post(url + "/v1/batch", json=body([message()]), headers=basic(KEY))
            refused = client.post(url + "/v1/batch", json=body([message()]), headers=basic(OTHER_KEY))
            stats = client.get(url + "/_sandbox/stats").json()
        assert (ok.status_code, refused.status_code) == (200, 401)
        assert stats["accepted"] == 1
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert process.returncode == 0
    assert KEY not in process.stdout.read() + process.stderr.read()


def test_write_keys_from_the_environment(tmp_path: Path):
    assert read_write_keys(None, {"TUI_CURRENTS_SANDBOX_WRITE_KEYS": "a1, b2\nc3"}) == {"a1", "b2", "c3"}
    assert read_write_keys(None, {}) is None
    key_file = tmp_path / "k"
    key_file.write_text("\n  k1  \n#comment\n")
    assert read_write_keys(str(key_file), {}) == {"k1"}
