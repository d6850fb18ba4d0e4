"""The receiver: the endpoint Braze's Custom HTTP Currents connector posts event batches to.

`POST /currents/<workspace>` with `{"events": [...]}` and `Authorization: Bearer <token>`. A batch is
acknowledged (2xx) only once every one of its events is committed to the store, so an answer Braze takes
as success never loses an event. The answers follow what Braze does with each status:

- 200: stored. Also for an empty body or an empty `events` list (after the token check), and for a batch
  holding some invalid events: those become dead letters with their reasons. A 400 would make Braze split
  the batch and drop every event that fails again, so one bad event never fails its batch.
- 400: the body is not JSON, or not an object with an `events` list. Braze then re-sends events singly.
- 401: missing or wrong token, and also a workspace this program does not know or that has no receiver
  token: answering 404 there would tell a prober which workspaces exist. Braze stops sending until the
  credentials are fixed, and its dashboard shows the error.
- 408: the body took longer than the read timeout to arrive. 413: the body is larger than
  `max_body_bytes` (Braze splits the batch and re-sends).
- 503 with Retry-After: the store cannot write (disk full, I/O error), the keyring cannot be read to
  check the token, or the batch could not be read and stored within its time (see intake.py). Braze
  retries with backoff.

A request HTTP cannot parse gets only its status line and phrase back, never a quote of what was sent
(aiohttp's own page would echo the offending line, which may be an `Authorization` header).

`GET /healthz` answers 200 `{"status": "ok"}` while batches can be stored, else 503
`{"status": "unhealthy", "reason": ...}`: the receiver is starting, the last commit failed because the
store cannot write, or a batch has waited longer than it may for reading and storing.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from http import HTTPStatus
from pathlib import Path

import orjson
from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError
from aiohttp.web_protocol import RequestHandler, RequestPayloadError

from tui_currents.config import ReceiverSettings
from tui_currents.outbox import Outbox, StoreUnavailable
from tui_currents.received import Received
from tui_currents.sources.batch_body import NotABatch
from tui_currents.sources.ingest import Ingestor, UnknownWorkspace
from tui_currents.sources.intake import MappingPool, answer_seconds
from tui_currents.sources.receiver_auth import KeyringTrouble, TokenCheck

log = logging.getLogger("tui_currents.receiver")

PATH_PREFIX = "/currents/"
VERSION_HEADER = "Braze-Currents-Version"
SUPPORTED_VERSION = "1"
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_READ_TIMEOUT = 30.0  # seconds for a whole body to arrive once its headers are in
STORE_RETRY_AFTER_SECONDS = 30
SOURCE = "receiver"  # as the tail shows where events came from
SHUTDOWN_SECONDS = 10.0  # how long stop() lets requests in progress finish
ANSWER_GRACE_SECONDS = 10.0  # a batch is answered within twice its reading time plus this (see _Handler)

IngestorProvider = Callable[[], Ingestor | None]
TokenProvider = Callable[[str], str | None]
WriteTurn = Callable[[], AbstractContextManager[None]]  # a turn at writing the store (write_turns.py)
Middleware = Callable  # an aiohttp middleware (web.middleware)


def ssl_context_from(cert_file: str | Path, key_file: str | Path) -> ssl.SSLContext:
    """A server TLS context from a PEM certificate (chain) and its private key; a clear ValueError when
    either cannot be loaded."""
    for role, file in (("certificate", cert_file), ("private key", key_file)):
        if not Path(file).is_file():
            raise ValueError(
                f"the receiver's TLS {role} {file} does not exist; fix tls_cert / tls_key in the receiver "
                "settings, or remove both to serve plain HTTP"
            )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(cert_file), str(key_file))
    except (ssl.SSLError, OSError) as exc:
        raise ValueError(
            f"the receiver's TLS certificate {cert_file} and key {key_file} could not be loaded "
            f"({getattr(exc, 'reason', None) or exc}); give a PEM certificate and its matching unencrypted "
            "private key"
        ) from None
    return context


def _json(status: int, body: dict[str, object], headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


def _unauthorised() -> web.Response:
    # The same answer for a wrong token, a missing one and an unknown workspace: nothing to probe.
    return _json(
        401,
        {"error": "missing or wrong receiver token for this URL"},
        {"WWW-Authenticate": 'Bearer realm="tui-currents"'},
    )


class _QuietMalformedRequests(logging.Filter):
    """aiohttp logs every request it cannot parse (bad framing, a TLS hello on plain HTTP, huge headers)
    at ERROR with a traceback. Garbage costs a sender nothing, so it must not buy a traceback per request:
    one plain line a minute says it happens, the rest are counted into that line."""

    def __init__(self, every: float = 60.0):
        super().__init__()
        self.every = every
        self._last = -every
        self._hidden = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Error handling request"):
            return True
        now = time.monotonic()
        if now - self._last < self.every:
            self._hidden += 1
            return False
        kind = type(record.exc_info[1]).__name__ if record.exc_info and record.exc_info[1] else "unknown"
        record.msg = "receiver: refused a malformed HTTP request (%s)%s"
        record.args = (kind, f"; {self._hidden} more since the last report" if self._hidden else "")
        record.exc_info, record.exc_text, record.levelno, record.levelname = None, None, logging.INFO, "INFO"
        self._last, self._hidden = now, 0
        return True


_SERVER_LOG = logging.getLogger("aiohttp.server")
if not any(isinstance(f, _QuietMalformedRequests) for f in _SERVER_LOG.filters):
    _SERVER_LOG.addFilter(_QuietMalformedRequests())


class _PlainErrors(RequestHandler):
    """aiohttp's answer to a request it cannot parse quotes the offending line, which may be an
    `Authorization: Bearer ...` header: here the answer holds only the status and its phrase."""

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        return super().handle_error(request, status, exc, f"{status} {phrase}")


class _PlainErrorsServer(web.Server):
    """aiohttp's server with the protocol above for each connection."""

    def __call__(self) -> RequestHandler:
        return _PlainErrors(self, loop=self._loop, **self._kwargs)


class _Runner(web.AppRunner):
    """The app's runner, serving with `_PlainErrorsServer`."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # The same server, only its connections' protocol class differs (aiohttp offers no setting).
        server.__class__ = _PlainErrorsServer
        return server


class _GroupCommit:
    """Commits the batches of concurrent requests together.

    While one commit runs, the batches that arrive wait; the next commit takes all of them in one
    transaction (one fsync), so the store keeps up with many senders. Every batch is still all-or-nothing:
    a failed transaction fails every request in it (each answered 503 or 500, so Braze sends each again),
    and after an unexpected error the batches are committed one by one so that one bad batch cannot keep
    failing the others.
    """

    MAX_ITEMS = 5_000  # per transaction, to keep each one short

    def __init__(self, executor: ThreadPoolExecutor, write_turn: WriteTurn | None = None):
        self.executor = executor
        self.write_turn = write_turn  # taken around each commit when another process writes the store too
        self._waiting: list[tuple[Outbox, Received, asyncio.Future[None]]] = []
        self._draining: asyncio.Task[None] | None = None

    async def commit(self, store: Outbox, batch: Received) -> None:
        """Return once the batch is committed; raise what the store raised otherwise."""
        done = asyncio.get_running_loop().create_future()
        done.add_done_callback(_retrieved)  # the answer may be given up on; its error is not news then
        self._waiting.append((store, batch, done))
        if self._draining is None or self._draining.done():
            self._draining = asyncio.create_task(self._drain())
        await asyncio.shield(done)  # a request given up on still has its batch committed or failed

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting:
            group: list[tuple[Outbox, Received, asyncio.Future[None]]] = []
            size = 0
            store = self._waiting[0][0]
            while self._waiting and self._waiting[0][0] is store and (not group or size < self.MAX_ITEMS):
                entry = self._waiting.pop(0)
                group.append(entry)
                size += entry[1].items
            try:
                errors = await loop.run_in_executor(self.executor, self._in_turn, store, group)
            except BaseException as exc:  # the worker is gone (shutting down): no batch stays unanswered
                for _, _, done in group + self._waiting:
                    if not done.done():
                        done.set_exception(exc if isinstance(exc, Exception) else RuntimeError("stopped"))
                self._waiting.clear()
                raise
            for (_, _, done), error in zip(group, errors, strict=True):
                if done.done():
                    continue
                if error is None:
                    done.set_result(None)
                else:
                    done.set_exception(error)

    def _in_turn(
        self, store: Outbox, group: list[tuple[Outbox, Received, asyncio.Future[None]]]
    ) -> list[BaseException | None]:
        with self.write_turn() if self.write_turn is not None else contextlib.nullcontext():
            return self._commit_group(store, group)

    @staticmethod
    def _commit_group(
        store: Outbox, group: list[tuple[Outbox, Received, asyncio.Future[None]]]
    ) -> list[BaseException | None]:
        try:
            store.commit(Received.merged(batch for _, batch, _ in group), source=SOURCE)
            return [None] * len(group)
        except StoreUnavailable as exc:
            return [exc] * len(group)
        except Exception as exc:
            if len(group) == 1:
                return [exc]
        errors: list[BaseException | None] = []
        for _, batch, _ in group:
            try:
                store.commit(batch, source=SOURCE)
                errors.append(None)
            except Exception as exc:
                errors.append(exc)
        return errors


def _retrieved(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


class _Handler:
    """The request handlers, with what they need from the engine."""

    def __init__(
        self,
        ingestor_provider: IngestorProvider,
        token_provider: TokenProvider,
        settings: ReceiverSettings,
        read_timeout: float,
        mapping_process: bool | None = None,
        tokens: TokenCheck | None = None,
        write_turn: WriteTurn | None = None,
    ):
        self.ingestor_provider = ingestor_provider
        self.token_provider = token_provider
        self.max_body_bytes = int(settings.max_body_bytes or DEFAULT_MAX_BODY_BYTES)
        self.read_timeout = read_timeout
        # Bodies are parsed and mapped in mapping processes (two, see intake.py) while a worker thread
        # commits the previous ones (SQLite lets go of the GIL while it writes): the event loop stays free.
        self.mapping = MappingPool(use_process=mapping_process)
        self.committing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="receiver-commit")
        self.group_commit = _GroupCommit(self.committing, write_turn)
        self.tokens = tokens or TokenCheck(token_provider)
        self.warnings = self.tokens.warnings  # Braze repeats a misconfigured request every few seconds
        self._due: dict[int, float] = {}  # batches being read and stored: when each is overdue
        self._batch_numbers = itertools.count()
        self._store_trouble = False  # the last commit failed because the store cannot write

    async def close(self) -> None:
        """Wait for the worker threads to finish what they have (requests in progress are done)."""
        await asyncio.to_thread(self.mapping.close)
        await asyncio.to_thread(self.committing.shutdown, wait=True)

    def trouble(self) -> str | None:
        """Why batches cannot be stored right now, or None."""
        if self.ingestor_provider() is None:
            return "the receiver is starting"
        if self._store_trouble:
            return "the store cannot save events (disk full or an I/O error; see the log)"
        now = time.monotonic()
        late = [due for due in self._due.values() if now > due]
        if late:
            return f"{len(late)} batch(es) waited more than their time to be read and stored"
        return None

    async def healthz(self, request: web.Request) -> web.Response:
        reason = self.trouble()
        if reason is not None:
            return _json(503, {"status": "unhealthy", "reason": reason}, {"Retry-After": "5"})
        return _json(200, {"status": "ok"})

    async def _read_and_store(self, workspace: str, ingestor: Ingestor, body: bytes) -> int:
        """Map the body and commit its batch; the number of events. Counted as in progress for /healthz."""
        # A number of its own: id(body) is shared by equal small bodies (b"" is one object), so two requests
        # of an empty body at once would take each other's place.
        key = next(self._batch_numbers)
        self._due[key] = time.monotonic() + answer_seconds(body)
        try:
            connectors = ingestor.connector_rules(workspace)
            events, batch = await self.mapping.read(workspace, connectors, body)
            if batch.items:
                try:
                    await self.group_commit.commit(ingestor.store, batch)
                except StoreUnavailable:
                    self._store_trouble = True
                    raise
                self._store_trouble = False
            return events
        finally:
            del self._due[key]

    async def _authorised(self, request: web.Request, workspace: str, ingestor: Ingestor) -> bool:
        """Whether the request carries the workspace's token (the same work whether the workspace exists
        or not; see receiver_auth.py). Raises KeyringTrouble when the token cannot be read: the request
        is then answered 503, since the sender's credentials are not at fault."""
        header = request.headers.get("Authorization", "")
        return await self.tokens.authorised(workspace, ingestor.has_workspace(workspace), header)

    def _check_version(self, request: web.Request) -> None:
        version = request.headers.get(VERSION_HEADER)
        if version != SUPPORTED_VERSION:
            self.warnings.warn(
                "version header",
                str(version)[:40],
                "receiver: %s is %r, this program knows version %s; events are accepted, but check for an "
                "update if they look wrong (logged once)",
                VERSION_HEADER,
                version if version is None else version[:40],
                SUPPORTED_VERSION,
            )

    async def currents(self, request: web.Request) -> web.Response:
        workspace = request.match_info["workspace"]
        ingestor = self.ingestor_provider()
        if ingestor is None:
            return _json(503, {"error": "the receiver is starting"}, {"Retry-After": "5"})
        try:
            if not await self._authorised(request, workspace, ingestor):
                return _unauthorised()
        except KeyringTrouble:
            return _json(
                503,
                {"error": "the receiver cannot check tokens right now; send the batch again later"},
                {"Retry-After": str(STORE_RETRY_AFTER_SECONDS)},
            )
        self._check_version(request)
        length = request.content_length
        if length is not None and length > self.max_body_bytes:
            return self._too_large(workspace, length)
        try:
            async with asyncio.timeout(self.read_timeout):
                body = await request.read()  # also stops at client_max_size while reading
        except TimeoutError:
            log.warning("receiver: a request for %r was not fully received within %g s (answered 408)",
                        workspace, self.read_timeout)  # fmt: skip
            return _json(408, {"error": f"the body did not arrive within {self.read_timeout:g} s"})
        except web.HTTPRequestEntityTooLarge:
            return self._too_large(workspace, None)
        except (RequestPayloadError, ContentEncodingError, zlib.error) as exc:
            # A body that is not what its Content-Encoding says: nothing of it can be read.
            log.info("receiver: a request for %r was refused (400): its body could not be decoded", workspace)
            return _json(400, {"error": f"the body could not be decoded ({type(exc).__name__})"})
        # Bounded: reading has its deadline in the mapping process and a fallback in this one, but an
        # answer must come whatever hangs. The batch may still be committed after a 503: Braze sends it
        # again and the store takes its events once.
        within = 2 * answer_seconds(body) + ANSWER_GRACE_SECONDS
        try:
            async with asyncio.timeout(within):
                events = await self._read_and_store(workspace, ingestor, body)
        except TimeoutError:
            log.error("receiver: a batch for %r was not read and stored within %.0f s; answered 503 so "
                      "that Braze sends it again", workspace, within)  # fmt: skip
            return _json(
                503,
                {"error": "the batch could not be stored in time; send it again later"},
                {"Retry-After": str(STORE_RETRY_AFTER_SECONDS)},
            )
        except NotABatch as exc:
            log.info("receiver: a request for %r was refused (400): %s", workspace, exc)
            return _json(400, {"error": str(exc)})
        except UnknownWorkspace:
            # The workspace was removed from the config while its request was on the way.
            return _unauthorised()
        except StoreUnavailable as exc:
            log.error("receiver: a batch for %r was not stored and Braze will send it again (503): %s",
                      workspace, exc)  # fmt: skip
            return _json(
                503,
                {"error": "the store cannot save events right now; send the batch again later"},
                {"Retry-After": str(STORE_RETRY_AFTER_SECONDS)},
            )
        except Exception:
            log.exception("receiver: a batch for %r was not stored because of an unexpected error (500); "
                          "Braze will send it again", workspace)  # fmt: skip
            return _json(500, {"error": "the batch was not stored; send it again later"})
        return _json(200, {"received": events})

    def _too_large(self, workspace: str, length: int | None) -> web.Response:
        size = f"{length:,} bytes" if length is not None else "over the limit"
        log.warning(
            "receiver: a request for %r was refused (413): the body is %s; the limit is %s bytes "
            "(receiver setting max_body_bytes). Braze splits the batch and sends it again.",
            workspace,
            size,
            f"{self.max_body_bytes:,}",
        )
        return _json(413, {"error": f"the body is larger than {self.max_body_bytes} bytes"})


def create_app(
    ingestor_provider: IngestorProvider,
    token_provider: TokenProvider,
    settings: ReceiverSettings,
    *,
    read_timeout: float = DEFAULT_READ_TIMEOUT,
    mapping_process: bool | None = None,
    middlewares: Sequence[Middleware] = (),
    tokens: TokenCheck | None = None,
    write_turn: WriteTurn | None = None,
) -> web.Application:
    """The receiver's aiohttp application. `ingestor_provider()` gives the current Ingestor (the engine
    swaps it on config changes), `token_provider(workspace)` the workspace's receiver token or None.
    `settings` is the config's receiver settings (`max_body_bytes` is read from it). A body must arrive
    within `read_timeout` seconds of its headers. `mapping_process`: read bodies in a mapping process
    (None: when there is a second core for it; see intake.py). `tokens`: the token check to use (by
    default one over `token_provider`). `write_turn()`: a context held around each commit (the store's
    turns shared with a delivery process, see write_turns.py)."""
    handler = _Handler(
        ingestor_provider, token_provider, settings, read_timeout, mapping_process, tokens, write_turn
    )
    # client_max_size makes aiohttp stop reading a body (413) once it grows past the limit, whatever
    # Content-Length said (or when there is none: chunked bodies).
    app = web.Application(client_max_size=handler.max_body_bytes, middlewares=middlewares)
    app.router.add_get("/healthz", handler.healthz)
    app.router.add_post(PATH_PREFIX + "{workspace}", handler.currents)

    async def _close(_app: web.Application) -> None:
        await handler.close()

    app.on_cleanup.append(_close)
    return app


class Receiver:
    """Runs the receiver app on a host and port until stopped (the engine owns one)."""

    def __init__(
        self,
        ingestor_provider: IngestorProvider,
        token_provider: TokenProvider,
        settings: ReceiverSettings,
        *,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        mapping_process: bool | None = None,
        middlewares: Sequence[Middleware] = (),  # e.g. the service's metrics
        token_version: Callable[[], object] | None = None,
        write_turn: WriteTurn | None = None,
    ):
        self.middlewares = tuple(middlewares)
        self.write_turn = write_turn
        self.ingestor_provider = ingestor_provider
        self.token_provider = token_provider
        # Token digests are kept until `token_version()` changes (Secrets.version when the provider is a
        # Secrets' get_receiver_token); the engine refreshes them ahead of requests.
        self.tokens = TokenCheck(token_provider, token_version)
        self.settings = settings
        self.read_timeout = read_timeout
        self.mapping_process = mapping_process
        self.url: str | None = None
        self.port: int | None = None
        self._runner: web.AppRunner | None = None

    def _ssl_context(self) -> ssl.SSLContext | None:
        cert, key = self.settings.tls_cert, self.settings.tls_key
        if cert and key:
            return ssl_context_from(cert, key)
        if cert or key:
            raise ValueError(
                "the receiver has only one of tls_cert and tls_key set; give both to serve HTTPS, or neither"
            )
        return None

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None
    ) -> str:
        """Start serving; returns the base URL (e.g. `http://127.0.0.1:8787`). Port 0 picks a free port.
        Without `ssl_context`, TLS comes from the settings' `tls_cert`/`tls_key` when set."""
        if ssl_context is None:
            ssl_context = self._ssl_context()
        app = create_app(
            self.ingestor_provider,
            self.token_provider,
            self.settings,
            read_timeout=self.read_timeout,
            mapping_process=self.mapping_process,
            middlewares=self.middlewares,
            write_turn=self.write_turn,
            tokens=self.tokens,
        )
        # keepalive_timeout also bounds a connection that never finishes its headers (slow-loris): the
        # body's own read timeout only starts once the headers are in.
        runner = _Runner(
            app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=SHUTDOWN_SECONDS,
            keepalive_timeout=self.read_timeout,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise OSError(
                exc.errno,
                f"the receiver could not listen on {host}:{port} ({exc.strerror or exc}); choose another "
                "port (--port or the receiver settings) or stop the program using it",
            ) from None
        self._runner = runner
        bound = runner.addresses[0]
        self.port = int(bound[1])
        scheme = "https" if ssl_context else "http"
        shown = f"[{host}]" if ":" in host else host
        self.url = f"{scheme}://{shown}:{self.port}"
        log.info("receiver listening on %s%s<workspace>", self.url, PATH_PREFIX)
        return self.url

    async def stop(self) -> None:
        """Stop listening, let requests in progress finish (up to a few seconds), release the port."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
            log.info("receiver stopped")
