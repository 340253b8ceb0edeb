"""The HTTP server every vendor stand-in is built on.

A stand-in is a plain threaded HTTP server so that faults can be injected at the
socket: a dropped connection really drops, a slow answer really keeps the client
waiting. Requests that carry an Idempotency-Key (or a vendor's own equivalent) are
applied once; a repeat gets the first answer back, as the vendors promise.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, parse_qsl, urlsplit


@dataclass
class Fault:
    """One misbehaviour, applied to the next `times` requests whose path matches."""

    kind: str  # rate_limit | server_error | slow | drop_before | drop_after | partial
    times: int = 1
    path_pattern: str = ""
    retry_after_seconds: float = 1.0
    delay_seconds: float = 0.0
    # For `partial`: refuse this share of the batch's rows with a retryable reason.
    share: float = 0.5


@dataclass
class Answer:
    status: int
    body: dict
    headers: dict[str, str] = field(default_factory=dict)


class VendorError(Exception):
    """Raised by a route to answer with the vendor's error shape."""

    def __init__(self, status: int, message: str, **details):
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details


class StandInVendor:
    """Subclasses register routes and say how their vendor words an error."""

    name = "vendor"
    token = "local-token"

    def __init__(self):
        self._routes: list[tuple[str, re.Pattern, callable]] = []
        self._faults: list[Fault] = []
        self._lock = threading.RLock()
        self._answers_by_key: dict[str, Answer] = {}
        self.requests_received = Counter()  # by route name, every arrival
        # (audience, identity value) -> times an add / remove was applied.
        self.applied_adds: Counter = Counter()
        self.applied_removes: Counter = Counter()
        self.members: dict[str, set[str]] = defaultdict(set)
        self.register_routes()
        self._server: ThreadingHTTPServer | None = None

    # -- for subclasses -------------------------------------------------------------

    def register_routes(self) -> None:
        raise NotImplementedError

    def route(
        self, method: str, pattern: str, handler, *, query: bool = False, public: bool = False
    ) -> None:
        """`query=True` hands the handler the parsed query string as `query` (name -> values).

        `public=True` serves the route without an access token (an OAuth token endpoint,
        which is where a client gets one) and out of `requests_received`, which counts
        the vendor's API calls.
        """
        self._routes.append((method, re.compile(f"^{pattern}$"), handler, query, public))

    def error_body(self, error: VendorError) -> dict:
        return {"error": {"message": error.message, **error.details}}

    def authorized(self, headers) -> bool:
        return headers.get("Authorization") == f"Bearer {self.token}"

    def authentication_error(self, headers) -> VendorError | None:
        """Why a request's credentials are refused (answered 401); None when they are not."""
        if self.authorized(headers):
            return None
        return VendorError(401, "invalid or missing access token")

    def check_headers(self, headers) -> None:
        """Raise VendorError to refuse a request on its headers (a missing API version)."""

    def idempotency_key(self, headers, body: dict) -> str | None:
        return headers.get("Idempotency-Key")

    def apply_add(self, audience: str, identity: str) -> None:
        with self._lock:
            self.applied_adds[(audience, identity)] += 1
            self.members[audience].add(identity)

    def apply_remove(self, audience: str, identity: str) -> None:
        with self._lock:
            self.applied_removes[(audience, identity)] += 1
            self.members[audience].discard(identity)

    # -- for tests and the demo -----------------------------------------------------

    def inject(self, *faults: Fault) -> None:
        with self._lock:
            self._faults.extend(faults)

    def start(self) -> str:
        """Serve on a free loopback port in a daemon thread; return the base URL."""
        vendor = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                vendor._handle(self, "GET")

            def do_POST(self):
                vendor._handle(self, "POST")

            def do_PUT(self):
                vendor._handle(self, "PUT")

            def do_DELETE(self):
                vendor._handle(self, "DELETE")

            def log_message(self, *args):
                pass  # request lines would carry list ids only, but they are noise

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # A short poll interval so that stop() returns at once, not half a second later.
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # -- the request cycle ----------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        path = request.path.split("?", 1)[0]
        handler, arguments, public = self._match(
            method, path, parse_qs(urlsplit(request.path).query)
        )
        fault = self._next_fault(path)

        if fault is not None and fault.kind == "drop_before":
            return _drop(request)
        if fault is not None and fault.kind == "rate_limit":
            return _respond(
                request,
                Answer(429, {"error": {"message": "rate limit reached, slow down"}},
                       {"Retry-After": f"{fault.retry_after_seconds:g}"}),
            )  # fmt: skip
        if fault is not None and fault.kind == "server_error":
            return _respond(request, Answer(500, {"error": {"message": "internal error"}}))

        answer = self._answer(request, method, path, handler, arguments, raw, fault, public)

        if fault is not None and fault.kind == "slow":
            time.sleep(fault.delay_seconds)
        if fault is not None and fault.kind == "drop_after":
            return _drop(request)  # applied, but the client never hears so
        _respond(request, answer)

    def _answer(self, request, method, path, handler, arguments, raw, fault, public) -> Answer:
        if handler is None:
            return Answer(404, {"error": {"message": f"no route for {method} {path}"}})
        if public:
            # A token endpoint: form-encoded, no access token, answered in its own shape.
            with self._lock:
                return handler(dict(parse_qsl(raw.decode(errors="replace"))), **arguments)
        refused = self.authentication_error(request.headers)
        if refused is not None:
            return Answer(401, self.error_body(refused))
        try:
            self.check_headers(request.headers)
        except VendorError as error:
            return Answer(error.status, self.error_body(error))
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            return Answer(400, self.error_body(VendorError(400, "body is not valid JSON")))

        key = self.idempotency_key(request.headers, body)
        with self._lock:
            if key is not None and key in self._answers_by_key:
                return self._answers_by_key[key]
            self.requests_received[handler.__name__] += 1
            try:
                partial_share = fault.share if fault is not None and fault.kind == "partial" else 0
                answer = handler(body, partial_share=partial_share, **arguments)
            except VendorError as error:
                answer = Answer(error.status, self.error_body(error))
            if key is not None and answer.status < 300:
                self._answers_by_key[key] = answer
            return answer

    def _match(self, method: str, path: str, query: dict[str, list[str]]):
        for route_method, pattern, handler, wants_query, public in self._routes:
            found = pattern.match(path)
            if route_method == method and found:
                arguments = found.groupdict()
                if wants_query:
                    arguments["query"] = query
                return handler, arguments, public
        return None, {}, False

    def _next_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.times > 0 and re.search(fault.path_pattern, path):
                    fault.times -= 1
                    return fault
        return None


def _respond(request: BaseHTTPRequestHandler, answer: Answer) -> None:
    # A 204 carries no body: bytes after its headers would be read as the next answer.
    payload = b"" if answer.status == 204 else json.dumps(answer.body).encode()
    request.send_response(answer.status)
    if answer.status != 204:
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(payload)))
    for name, value in answer.headers.items():
        request.send_header(name, value)
    request.end_headers()
    request.wfile.write(payload)


def _drop(request: BaseHTTPRequestHandler) -> None:
    request.close_connection = True
    request.connection.close()
