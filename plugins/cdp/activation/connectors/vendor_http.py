"""The HTTP conversation every API destination shares: auth, timeouts, and errors.

Each vendor speaks JSON over HTTPS at a base URL taken from the destination's Airflow
connection, so the same code talks to the vendor in production and to a local
stand-in in tests. Responses are turned into the three outcomes the runner acts on:
an answer, a RetryableError (429 with its Retry-After, 5xx, timeouts, dropped
connections) or a PermanentError (other 4xx, refused credentials) carrying the
vendor's own message.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import httpx
import msgspec

from cdp.activation.connectors.base import DeliveryError, PermanentError, RetryableError

DEFAULT_TIMEOUT_SECONDS = 30.0
Cursor = TypeVar("Cursor")
# Enough for a vendor's sentence and the field it names; the ledger keeps the message.
MESSAGE_LENGTH = 500


@dataclass(frozen=True)
class VendorEndpoint:
    """Where a vendor lives and how to authenticate, read from an Airflow connection."""

    base_url: str
    token: str
    extra: dict


def endpoint_from_connection(connection_id: str, default_base_url: str = "") -> VendorEndpoint:
    """The base URL is the connection's host (with schema and port); the token its password.

    A connection with no host talks to the vendor itself, at `default_base_url`.
    """
    from cdp.activation.file_drop import airflow_connection

    connection = airflow_connection(connection_id)
    host = connection.host or ""
    if "://" not in host:
        scheme = connection.schema or "https"
        host = f"{scheme}://{host}"
    if connection.port:
        host = f"{host}:{connection.port}"
    base_url = host.rstrip("/")
    if default_base_url and base_url.rstrip(":/") in ("", "https", "http"):
        base_url = default_base_url
    return VendorEndpoint(
        base_url=base_url,
        token=connection.password or "",
        extra=connection.extra_dejson,
    )


class VendorHttp:
    def __init__(
        self,
        vendor: str,
        endpoint: VendorEndpoint,
        headers: dict[str, str],
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    ):
        self.vendor = vendor
        self._client = httpx.Client(
            base_url=endpoint.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout_seconds),
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        json: dict | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict:
        """`headers` add to the client's own for this request (a freshly obtained token)."""
        headers = dict(headers or {})
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        content = None
        if json is not None:
            # A request of ten thousand members is megabytes of JSON: msgspec writes it
            # several times faster than the standard library httpx would use.
            content = msgspec.json.encode(json)
            headers["Content-Type"] = "application/json"
        try:
            response = self._client.request(method, path, content=content, headers=headers)
        except httpx.TimeoutException as error:
            raise RetryableError(
                f"{self.vendor}: no answer in time ({type(error).__name__})"
            ) from error
        except httpx.TransportError as error:
            # Refused, reset or dropped mid-answer: the request may or may not have
            # been applied, which is why every batch carries its idempotency key.
            raise RetryableError(
                f"{self.vendor}: connection failed ({type(error).__name__})"
            ) from error

        if response.status_code < 300:
            return response.json() if response.content else {}

        own_reading = self.vendor_error(response)
        if own_reading is not None:
            raise own_reading

        message = f"{self.vendor} answered {response.status_code}: {vendor_message(response)}"
        if response.status_code == 429:
            raise RetryableError(message, retry_after=retry_after_seconds(response))
        if response.status_code >= 500 or response.status_code == 408:
            raise RetryableError(message, retry_after=retry_after_seconds(response))
        if response.status_code in (401, 403):
            raise PermanentError(f"{message} (check the credentials in the Airflow connection)")
        raise PermanentError(message)

    def pages(
        self,
        path_of: Callable[[Cursor | None], str],
        next_cursor: Callable[[dict, Cursor | None], Cursor | None],
    ) -> Iterator[dict]:
        """A listing's pages, each fetched when read, so a search stops at what it finds.

        Vendors page in their own ways (an offset, an opaque cursor, a next link), so the
        caller says both: `path_of(cursor)` is the page's path, `None` meaning the first;
        `next_cursor(page, cursor)` is the way to the following page, `None` after the last.
        """
        cursor = None
        while True:
            page = self.request("GET", path_of(cursor))
            yield page
            cursor = next_cursor(page, cursor)
            if cursor is None:
                return

    def vendor_error(self, response: httpx.Response) -> DeliveryError | None:
        """A vendor's own reading of an error answer, consulted before the generic one.

        Subclasses override it where a vendor words an outcome in its body rather than
        its status: Meta answers throttling with 400 and a code, for instance.
        """
        return None

    def close(self) -> None:
        self._client.close()


def vendor_message(response: httpx.Response) -> str:
    """The vendor's own explanation, cut short; vendors echo no personal data in errors.

    Three shapes are read: {"error": {"message"}} (Meta, Google, the audience manager);
    JSON:API {"errors": [{"title", "detail", "source": {"pointer"}}]} (Klaviyo); and
    problem documents {"title", "detail", "errors": [{"field", "message"}]} (Mailchimp),
    whose detail may only say to look in `errors`. Each error keeps where it points.
    """
    try:
        body = response.json()
    except ValueError:
        return response.text[:MESSAGE_LENGTH] or response.reason_phrase
    if not isinstance(body, dict):
        return str(body)[:MESSAGE_LENGTH]

    error = body.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or error.get("detail") or error)[:MESSAGE_LENGTH]
    if error:
        return str(error)[:MESSAGE_LENGTH]

    said = [str(body["detail"])] if body.get("detail") else []
    said += [_one_error(entry) for entry in body.get("errors") or [] if isinstance(entry, dict)]
    message = "; ".join(part.rstrip(".") for part in said) or str(body)
    return message[:MESSAGE_LENGTH]


def _one_error(entry: dict) -> str:
    """One entry of an `errors` array, with the field or JSON pointer it names."""
    text = entry.get("detail") or entry.get("message") or entry.get("title") or str(entry)
    where = entry.get("field") or (entry.get("source") or {}).get("pointer")
    return f"{text} (at {where})" if where else str(text)


def retry_after_seconds(response: httpx.Response) -> float | None:
    """Retry-After as seconds, whether the vendor sent a number or an HTTP date."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time()) if when else None
