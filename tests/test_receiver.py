"""The Braze Currents receiver, over real HTTP on 127.0.0.1, with a real store file, a real config file and
receiver tokens in a real (encrypted-file) keyring."""

from __future__ import annotations

import asyncio
import copy
import gzip
import logging
import sqlite3
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest

from tests import support
from tui_currents import catalog, config
from tui_currents.config import Connector, ReceiverSettings, Workspace
from tui_currents.paths import Home
from tui_currents.secrets import Secrets, SecretsUnavailable
from tui_currents.sources import intake
from tui_currents.sources import receiver as receiver_module
from tui_currents.sources.ingest import NO_CONNECTOR, Ingestor
from tui_currents.sources.receiver import Receiver
from tui_currents.store import Store

from .fixtures.currents_events import EVENTS, event

pytestmark = pytest.mark.timeout(30)

MARKETING = "marketing"  # two connectors: the supported events, and the additional ones
LONELY = "lonely"  # a token, no connector
TOKENLESS = "tokenless"  # a connector, no token
MAIN = "Marketing main"
EXTRAS = "Marketing extras"
SUPPORTED = [e.event_type for e in catalog.CATALOG if e.supported]
ADDITIONAL = [e.event_type for e in catalog.CATALOG if not e.supported and e.forwardable]
NOT_FORWARDABLE = [e.event_type for e in catalog.CATALOG if not e.forwardable]
KEYRING_PASSPHRASE = "receiver tests (not a secret)"


@pytest.fixture(scope="module")
def vault(tmp_path_factory: pytest.TempPathFactory) -> Secrets:
    """Receiver tokens in the encrypted-file keyring (unlocked once per module: it costs ~0.5 s)."""
    keyring_home = Home.at(tmp_path_factory.mktemp("keyring")).ensure()
    secrets = Secrets(keyring_home, backend="file", passphrase=KEYRING_PASSPHRASE)
    for workspace in (MARKETING, LONELY):
        secrets.set_receiver_token(workspace, secrets.generate_receiver_token())
    return secrets


def _write_config(home: Home) -> config.Config:
    for name in (MARKETING, LONELY, TOKENLESS):
        config.add_workspace(home, Workspace(name))
    for name, workspace, events in (
        (MAIN, MARKETING, SUPPORTED),
        (EXTRAS, MARKETING, ADDITIONAL),
        ("Tokenless", TOKENLESS, SUPPORTED),
    ):
        config.add_connector(
            home, Connector(name=name, workspace=workspace, contact_email="ops@example.com", events=events)
        )
    return config.load(home)


@dataclass
class Running:
    url: str
    port: int
    store: Store
    ingestor: Ingestor
    receiver: Receiver
    vault: Secrets

    def token(self, workspace: str) -> str:
        token = self.vault.get_receiver_token(workspace)
        assert token
        return token

    async def post(
        self,
        client: httpx.AsyncClient,
        workspace: str,
        body: object = None,
        *,
        token: str | None = "own",
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        sent = {"Braze-Currents-Version": "1", "Content-Type": "application/json"}
        if token == "own":
            token = self.token(workspace)
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        sent.update(headers or {})
        data = content if content is not None else orjson.dumps(body)
        return await client.post(f"{self.url}/currents/{workspace}", content=data, headers=sent)


Start = Callable[..., "asyncio.Future[Running]"]


@pytest.fixture
async def start(home: Home, vault: Secrets) -> AsyncIterator[Start]:
    """Start a receiver on 127.0.0.1 (free port) over the home's config and a store file."""
    cfg = _write_config(home)
    started: list[tuple[Receiver, Store]] = []

    async def _start(
        *, store_path: Path | None = None, read_timeout: float = 30.0, **settings: object
    ) -> Running:
        store = Store(store_path or home.store_file)
        ingestor = Ingestor(cfg, store)
        receiver = Receiver(
            lambda: ingestor,
            vault.get_receiver_token,
            ReceiverSettings(port=0, **settings),
            read_timeout=read_timeout,
        )
        url = await receiver.start("127.0.0.1", 0)
        started.append((receiver, store))
        return Running(url, receiver.port, store, ingestor, receiver, vault)

    yield _start
    for receiver, store in started:
        await receiver.stop()
        store.close()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10.0) as http:
        yield http


def _leased(store: Store, connector: str) -> list[dict]:
    rows = store.lease(connector, max_messages=1000, max_bytes=10**8, lease_seconds=60)
    return [orjson.loads(row.body) for row in rows]


def _renumbered(events: list[dict], prefix: str) -> list[dict]:
    fresh = [copy.deepcopy(item) for item in events]
    for index, item in enumerate(fresh):
        item["id"] = f"{prefix}-{index:06d}"
    return fresh


# ------------------------------------------------------------------------------------------ accepting


async def test_every_event_type_is_stored_for_the_connector_that_selects_it(start, client) -> None:
    running = await start()
    batch = [event(name) for name in EVENTS]
    response = await running.post(client, MARKETING, {"events": batch})

    assert response.status_code == 200
    assert response.json() == {"received": len(batch)}
    # Acknowledged means committed: a second connection to the file sees every message.
    with Store(running.store.path, readonly=True) as reader:
        assert reader.backlog(MAIN).messages == len(SUPPORTED)
        assert reader.backlog(EXTRAS).messages == len(ADDITIONAL)
    main = _leased(running.store, MAIN)
    extras = _leased(running.store, EXTRAS)
    assert {m["event"] for m in main} == {catalog.find(t).segment_event for t in SUPPORTED}
    assert sorted(m["messageId"] for m in extras) == sorted(EVENTS[t]["id"] for t in ADDITIONAL)
    assert {m["event"] for m in extras} >= {"Order Completed", "Application Opened", "Added To Wishlist"}
    assert sorted(m["messageId"] for m in main) == sorted(EVENTS[t]["id"] for t in SUPPORTED)
    totals = running.store.counter_totals(MAIN)
    assert totals["received"] == len(batch)
    assert totals["not_selected"] == len(ADDITIONAL)
    # Types with no meaningful Segment call are counted as such, with the reason in the tail.
    assert totals["not_forwardable"] == len(NOT_FORWARDABLE)
    tail = {row.event_type: row for row in running.store.tail(connector=MAIN)}
    deletion = tail["users.UserDeleteRequest"]
    assert deletion.fate == "not forwardable"
    assert deletion.reason == catalog.not_forwardable_reason("users.UserDeleteRequest")


async def test_invalid_events_become_dead_letters_and_the_batch_is_accepted(start, client) -> None:
    running = await start()
    good = event("users.messages.email.Send")
    no_id = event("users.messages.email.Open")
    del no_id["id"]
    bad_time = event("users.messages.email.Click")
    bad_time["time"] = "soon"
    nobody = event("users.messages.pushnotification.Send")
    nobody["user"] = {"timezone": "UTC"}
    response = await running.post(
        client, MARKETING, {"events": [good, no_id, "not an object", bad_time, nobody]}
    )

    assert response.status_code == 200
    assert [m["messageId"] for m in _leased(running.store, MAIN)] == [good["id"]]
    reasons = sorted(d.reason for d in running.store.dead_letters(MAIN))
    assert len(reasons) == 4
    assert any("`id`" in r for r in reasons)
    assert any("`time`" in r for r in reasons)
    assert any("not a JSON object" in r for r in reasons)
    assert any("user_id" in r and "external_user_id" in r for r in reasons)
    kept = {d.message_id: orjson.loads(d.event) for d in running.store.dead_letters(MAIN) if d.message_id}
    assert kept[bad_time["id"]] == bad_time  # the record as received, for the user to inspect


async def test_unknown_event_types_and_fields_are_accepted_and_counted(start, client) -> None:
    running = await start()
    session = event("users.messages.email.Send")
    session.update(event_type="users.behaviors.app.SessionHologram", id="session-1")
    future = event("users.messages.email.Send")
    future.update(event_type="users.messages.hologram.Send", id="future-1", brand_new_top_level={"x": 1})
    known = event("users.messages.email.Send")
    known["properties"]["field_added_next_month"] = "kept"
    response = await running.post(client, MARKETING, {"events": [session, future, known]})

    assert response.status_code == 200
    counters = running.store.counters(MAIN)[MAIN]
    assert counters["users.behaviors.app.SessionHologram"]["unsupported"] == 1
    assert counters["users.messages.hologram.Send"]["unsupported"] == 1
    [message] = _leased(running.store, MAIN)
    assert message["properties"]["field_added_next_month"] == "kept"


async def test_duplicates_collapse_within_and_across_batches(start, client) -> None:
    running = await start()
    batch = [event(name) for name in SUPPORTED[:10]]
    first = await running.post(client, MARKETING, {"events": batch + batch[:3]})
    again = await running.post(client, MARKETING, {"events": batch})

    assert (first.status_code, again.status_code) == (200, 200)
    assert running.store.backlog(MAIN).messages == 10
    assert running.store.counter_totals(MAIN)["duplicate"] == 13


async def test_a_workspace_without_connectors_still_counts_its_events(start, client) -> None:
    running = await start()
    invalid = event("users.messages.email.Send")
    del invalid["id"]
    invalid["event_type"] = None
    response = await running.post(client, LONELY, {"events": [event("users.messages.sms.Send"), invalid]})

    assert response.status_code == 200
    assert running.ingestor.connectors_of(LONELY) == []
    totals = running.store.counter_totals(NO_CONNECTOR)
    assert totals["received"] == 2
    assert totals["not_selected"] == 1
    [letter] = running.store.dead_letters(NO_CONNECTOR)
    assert "event_type" in letter.reason
    [row] = [r for r in running.store.tail(connector=NO_CONNECTOR) if r.fate == "not selected"]
    assert LONELY in row.reason


async def test_a_new_config_applies_to_the_next_batch(start, client, home: Home) -> None:
    running = await start()
    cfg = config.load(home)
    cfg.connector(EXTRAS).enabled = False
    running.ingestor.update_config(cfg)
    response = await running.post(client, MARKETING, {"events": [event(ADDITIONAL[0])]})

    assert response.status_code == 200
    assert running.store.backlog(EXTRAS).messages == 0
    assert running.store.counter_totals(MAIN)["not_selected"] == 1


async def test_concurrent_batches_are_all_stored_before_their_answers(start, client) -> None:
    running = await start()
    rounds = [_renumbered([event(name) for name in SUPPORTED], f"round{n}") for n in range(12)]

    responses = await asyncio.gather(*(running.post(client, MARKETING, {"events": b}) for b in rounds))

    assert [r.status_code for r in responses] == [200] * len(rounds)
    with Store(running.store.path, readonly=True) as reader:
        assert reader.backlog(MAIN).messages == len(SUPPORTED) * len(rounds)
        assert reader.counter_totals(MAIN)["received"] == len(SUPPORTED) * len(rounds)


async def test_equal_bodies_at_the_same_moment_are_each_answered(start, client) -> None:
    # Equal small bodies can be one object in memory (b"" always is): each request is still its own.
    running = await start()
    bodies = [b"", b'{"events": []}'] * 12

    responses = await asyncio.gather(*(running.post(client, MARKETING, content=b) for b in bodies))

    assert [r.status_code for r in responses] == [200] * len(bodies)


# ------------------------------------------------------------------------------------------- refusing


@pytest.mark.parametrize("body", [b"", b'{"events": []}'], ids=["empty body", "empty events"])
async def test_the_token_is_checked_even_for_an_empty_batch(start, client, body: bytes) -> None:
    running = await start()
    wrong = running.token(MARKETING)[:-4] + "abcd"
    assert (await running.post(client, MARKETING, content=body)).status_code == 200
    assert (await running.post(client, MARKETING, content=body, token=wrong)).status_code == 401
    assert (await running.post(client, MARKETING, content=body, token=None)).status_code == 401
    assert (
        await running.post(client, MARKETING, content=body, token=running.token(LONELY))
    ).status_code == 401
    basic = {"Authorization": f"Basic {running.token(MARKETING)}"}
    assert (await running.post(client, MARKETING, content=body, token=None, headers=basic)).status_code == 401
    assert running.store.counter_totals() == {}


async def test_wrong_tokens_store_nothing_and_tell_nothing(start, client) -> None:
    running = await start()
    batch = {"events": [event("users.messages.email.Send")]}
    wrong = await running.post(client, MARKETING, batch, token="x" * 43)
    unknown = await running.post(client, "nowhere", batch, token=running.token(MARKETING))
    no_token_stored = await running.post(client, TOKENLESS, batch, token=running.token(MARKETING))

    for response in (wrong, unknown, no_token_stored):
        assert response.status_code == 401
        assert response.json() == wrong.json()  # an unknown workspace looks like a wrong token
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert running.store.counter_totals() == {}


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1, 2]", b'"events"', b'{"events": {"a": 1}}', b'{"evts": []}'],
    ids=["not json", "a list", "a string", "events not a list", "no events"],
)
async def test_a_body_that_is_not_a_batch_is_400(start, client, body: bytes) -> None:
    running = await start()
    response = await running.post(client, MARKETING, content=body)
    assert response.status_code == 400
    assert response.json()["error"]
    # The token still comes first.
    assert (await running.post(client, MARKETING, content=body, token="y" * 43)).status_code == 401
    assert running.store.counter_totals() == {}


async def test_a_body_over_the_limit_is_413_whether_announced_or_streamed(start, client) -> None:
    running = await start(max_body_bytes=4096)
    batch = [event(name) for name in SUPPORTED[:30]]
    body = orjson.dumps({"events": batch})
    assert len(body) > 4096

    announced = await running.post(client, MARKETING, content=body)

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit holds while reading
        for start_at in range(0, len(body), 1000):
            yield body[start_at : start_at + 1000]

    streamed = await client.post(
        f"{running.url}/currents/{MARKETING}",
        content=chunks(),
        headers={"Authorization": f"Bearer {running.token(MARKETING)}"},
    )
    small = await running.post(client, MARKETING, {"events": batch[:2]})

    assert announced.status_code == 413
    assert streamed.status_code == 413
    assert small.status_code == 200
    assert running.store.counter_totals(MAIN)["received"] == 2


async def test_a_gzip_body_is_accepted_and_limited_by_its_unpacked_size(start, client) -> None:
    running = await start(max_body_bytes=64_000)
    batch = orjson.dumps({"events": [event(name) for name in SUPPORTED]})
    bomb = b'{"events": [' + b" " * 2_000_000 + b"]}"  # tiny once compressed
    gzipped = {"Content-Encoding": "gzip"}

    packed = await running.post(client, MARKETING, content=gzip.compress(batch), headers=gzipped)
    exploded = await running.post(client, MARKETING, content=gzip.compress(bomb), headers=gzipped)

    assert len(gzip.compress(bomb)) < 64_000 < len(bomb)
    assert packed.status_code == 200
    assert exploded.status_code == 413
    assert running.store.backlog(MAIN).messages == len(SUPPORTED)


async def test_a_body_that_arrives_too_slowly_is_408(start) -> None:
    running = await start(read_timeout=0.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    try:
        head = (
            f"POST /currents/{MARKETING} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {running.token(MARKETING)}\r\nContent-Type: application/json\r\n"
            "Content-Length: 5000\r\n\r\n"
        )
        writer.write(head.encode() + b'{"events": [')
        await writer.drain()
        began = time.monotonic()
        status = await asyncio.wait_for(reader.readline(), timeout=10)
        waited = time.monotonic() - began
    finally:
        writer.close()
    assert status.split()[1] == b"408"
    assert 0.3 <= waited < 5
    assert running.store.counter_totals() == {}


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    with support.tiny_disk(tmp_path / "tiny", megabytes=2) as folder:
        yield folder


async def test_a_full_disk_is_503_with_retry_after_and_nothing_is_half_stored(
    start, client, tiny_disk
) -> None:
    running = await start(store_path=tiny_disk / "currents.db")
    batch = {"events": _renumbered([event(name) for _ in range(4) for name in SUPPORTED], "full")}
    filler = support.fill_disk(tiny_disk)

    refused = await running.post(client, MARKETING, batch)
    healthy = await client.get(f"{running.url}/healthz")

    assert refused.status_code == 503
    assert int(refused.headers["Retry-After"]) > 0
    # A load balancer sees it too: the receiver cannot store, and says why.
    assert healthy.status_code == 503
    assert healthy.json()["status"] == "unhealthy" and "store" in healthy.json()["reason"]
    assert running.store.counter_totals() == {}
    assert running.store.backlog(MAIN).messages == 0

    filler.unlink()  # space again: Braze's retry goes through
    retried = await running.post(client, MARKETING, batch)
    assert retried.status_code == 200
    assert running.store.backlog(MAIN).messages == len(batch["events"])
    assert (await client.get(f"{running.url}/healthz")).json() == {"status": "ok"}


# --------------------------------------------------------------------------------------------- others


async def test_a_keyring_that_cannot_be_read_is_503_not_401(home: Home, client) -> None:
    cfg = _write_config(home)

    def locked_keyring(workspace: str) -> str | None:
        raise SecretsUnavailable("the keyring is locked")

    with Store(home.store_file) as store:
        receiver = Receiver(lambda: Ingestor(cfg, store), locked_keyring, ReceiverSettings(port=0))
        url = await receiver.start(port=0)
        try:
            response = await client.post(
                f"{url}/currents/{MARKETING}", content=b"{}", headers={"Authorization": "Bearer " + "t" * 43}
            )
        finally:
            await receiver.stop()
    assert response.status_code == 503  # Braze retries; a 401 would stop it until credentials change
    assert int(response.headers["Retry-After"]) > 0


async def test_healthz_says_ok_and_nothing_more(start, client) -> None:
    running = await start()
    response = await client.get(f"{running.url}/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.fixture
def locked_store(home: Home) -> Iterator[Callable[[], None]]:
    """The store file write-locked by another program (a `BEGIN EXCLUSIVE` connection) until released."""
    Store(home.store_file).close()
    holder = sqlite3.connect(home.store_file, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")

    def release() -> None:
        if holder.in_transaction:
            holder.execute("ROLLBACK")

    yield release
    release()
    holder.close()


async def test_healthz_is_503_with_the_reason_while_batches_wait_too_long(
    start, client, locked_store, monkeypatch
) -> None:
    monkeypatch.setattr(intake, "BASE_SECONDS", 0.5)  # a batch is due within about half a second
    running = await start()
    batch = {"events": _renumbered([event(name) for name in SUPPORTED], "late")}
    posting = asyncio.create_task(running.post(client, MARKETING, batch))
    await asyncio.sleep(1.5)
    waiting = await client.get(f"{running.url}/healthz")
    locked_store()  # the other program lets go: the batch is stored and answered
    answer = await posting
    after = await client.get(f"{running.url}/healthz")

    assert waiting.status_code == 503 and int(waiting.headers["Retry-After"]) > 0
    assert waiting.json()["status"] == "unhealthy" and "waited" in waiting.json()["reason"]
    assert answer.status_code == 200
    assert running.store.backlog(MAIN).messages == len(SUPPORTED)
    assert (after.status_code, after.json()) == (200, {"status": "ok"})


async def test_a_batch_that_cannot_be_stored_in_time_is_answered_503_not_left_waiting(
    start, client, locked_store, monkeypatch
) -> None:
    monkeypatch.setattr(intake, "BASE_SECONDS", 0.5)
    monkeypatch.setattr(receiver_module, "ANSWER_GRACE_SECONDS", 1.0)  # answered within about 2 s here
    running = await start()
    batch = {"events": _renumbered([event(name) for name in SUPPORTED], "bounded")}
    began = time.monotonic()
    answer = await running.post(client, MARKETING, batch)  # the store waits 10 s for the lock
    waited = time.monotonic() - began
    locked_store()
    again = await running.post(client, MARKETING, batch)  # Braze sends it again

    assert answer.status_code == 503 and int(answer.headers["Retry-After"]) > 0
    assert waited < 6.0
    assert again.status_code == 200
    assert running.store.backlog(MAIN).messages == len(SUPPORTED)  # once, though committed maybe twice


@pytest.mark.parametrize(
    "bad_line",
    [
        b"Authorization: Bearer {token}\x01",  # the token's own line is the malformed one
        b"Bad header line without a colon",
        b"X-Odd\x01: value",
        b"Content-Length: twelve",
        b" folded: line",
    ],
)
async def test_a_malformed_request_is_refused_without_echoing_anything_sent(start, bad_line: bytes) -> None:
    running = await start()
    token = running.token(MARKETING)
    bad_line = bad_line.replace(b"{token}", token.encode())
    request = (
        f"POST /currents/{MARKETING} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
        + f"Authorization: Bearer {token}\r\n".encode() * (b"Authorization" not in bad_line)
        + bad_line
        + b"\r\nContent-Type: application/json\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    try:
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=10)  # the server closes the connection
    finally:
        writer.close()

    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split()[1] == b"400"
    assert token.encode() not in answer
    assert b"Bearer" not in answer and b"Authorization" not in answer
    assert bad_line.strip() not in answer and b"currents" not in answer.lower()
    assert body.strip() == b"400 Bad Request"
    assert running.store.counter_totals() == {}


async def test_an_unexpected_version_is_logged_once_and_tokens_never(start, client, caplog) -> None:
    running = await start()
    caplog.set_level(logging.DEBUG, logger="tui_currents")
    batch = {"events": [event("users.messages.email.Send")]}
    headers = {"Braze-Currents-Version": "2"}
    first = await running.post(client, MARKETING, batch, headers=headers)
    second = await running.post(client, MARKETING, batch, headers=headers)
    wrong = "w" * 43
    await running.post(client, MARKETING, batch, token=wrong)
    await running.post(client, TOKENLESS, batch, token=running.token(MARKETING))

    assert (first.status_code, second.status_code) == (200, 200)
    version_lines = [r for r in caplog.records if "Braze-Currents-Version" in r.getMessage()]
    assert len(version_lines) == 1
    assert "'2'" in version_lines[0].getMessage()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert running.token(MARKETING) not in text
    assert wrong not in text


async def test_it_listens_on_loopback_by_default(home: Home, vault: Secrets) -> None:
    cfg = _write_config(home)
    with Store(home.store_file) as store:
        receiver = Receiver(lambda: Ingestor(cfg, store), vault.get_receiver_token, cfg.receiver)
        url = await receiver.start(port=0)
        try:
            assert url == f"http://127.0.0.1:{receiver.port}"
            assert cfg.receiver.host == "127.0.0.1"
        finally:
            await receiver.stop()


async def test_it_serves_https_with_the_configured_certificate(start, tmp_path: Path) -> None:
    cert_file, key_file = support.self_signed_certificate(tmp_path)
    running = await start(tls_cert=str(cert_file), tls_key=str(key_file))
    assert running.url.startswith("https://127.0.0.1:")
    trust = ssl.create_default_context(cafile=str(cert_file))
    async with httpx.AsyncClient(verify=trust, timeout=10.0) as https:
        response = await running.post(https, MARKETING, {"events": [event("users.messages.email.Send")]})
    assert response.status_code == 200
    assert running.store.backlog(MAIN).messages == 1


async def test_a_missing_certificate_is_reported_before_listening(
    home: Home, vault: Secrets, tmp_path
) -> None:
    cfg = _write_config(home)
    settings = ReceiverSettings(tls_cert=str(tmp_path / "absent.pem"), tls_key=str(tmp_path / "absent.key"))
    with Store(home.store_file) as store:
        receiver = Receiver(lambda: Ingestor(cfg, store), vault.get_receiver_token, settings)
        with pytest.raises(ValueError, match="absent.pem"):
            await receiver.start(port=0)
