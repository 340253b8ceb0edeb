"""Meta customer-file Custom Audiences, through the Marketing API (Graph API).

The vendor contract (https://graph.facebook.com, version from settings["api_version"]):

    GET    /{version}/act_{ad_account_id}/customaudiences?fields=id,name   find by name
    POST   /{version}/act_{ad_account_id}/customaudiences                  create:
           name, subtype CUSTOM, customer_file_source, description
    POST   /{version}/{custom_audience_id}/users                           add people
    DELETE /{version}/{custom_audience_id}/users                           remove people

A users request holds at most 10,000 rows: {"payload": {"schema": ["EMAIL", "PHONE"],
"data": [[email_hash, phone_hash], ...]}, "session": {...}}. Each row is one person
(multi-key matching); an absent key is an empty string. EMAIL is the SHA-256 of the
trimmed, lower-cased address (identity kind email_sha256); PHONE the SHA-256 of the E.164
digits without '+' (phone_digits_sha256). Meta answers {audience_id, session_id,
num_received, num_invalid_entries, invalid_entry_samples}.

Exactly once: the session's session_id is derived from destination, audience and run,
and its batch_seq is the batch number, so a batch sent again (after a dropped connection
or a timeout) repeats its (session_id, batch_seq) and Meta does not apply it twice.

Rows Meta refuses inside an accepted request are only counted and sampled, never indexed.
The connector matches each sample's hashed values back to the row, and so the member,
that carried them. If the samples account for fewer rows than num_invalid_entries, the
refused rows cannot be told apart, so every member of the batch is reported refused: the
runner sends them again next run, and adding a person Meta already holds changes nothing.

Errors: Meta words outcomes in its error body. Throttling (codes 4, 17, 32, 613, 80003)
and errors marked is_transient are retryable whatever the status; code 190 is a refused
token; error_subcode REMOVAL_BELOW_MINIMUM_SUBCODE means the removal would leave the
audience below its minimum size and becomes RemovalRefused. The token (the Airflow
connection's password) goes in an Authorization: Bearer header, never in a URL.
"""

from __future__ import annotations

import hashlib
import logging
from urllib.parse import urlencode

import httpx

from cdp.activation.connectors.base import (
    Audience,
    Batch,
    BatchResult,
    DeliveryError,
    PermanentError,
    RemovalRefused,
    RetryableError,
)
from cdp.activation.connectors.vendor_http import (
    DEFAULT_TIMEOUT_SECONDS,
    VendorHttp,
    endpoint_from_connection,
    retry_after_seconds,
)

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://graph.facebook.com"
DEFAULT_API_VERSION = "v25.0"
MAX_ROWS = 10_000
# Identity kind -> Meta schema key; the destination's identities give the column order.
SCHEMA_KEYS = {"email_sha256": "EMAIL", "phone_digits_sha256": "PHONE"}
CUSTOMER_FILE_SOURCES = (
    "USER_PROVIDED_ONLY",
    "PARTNER_PROVIDED_ONLY",
    "BOTH_USER_AND_PARTNER_PROVIDED",
)
THROTTLING_CODES = {4, 17, 32, 613, 80003}
INVALID_TOKEN_CODE = 190
# Our vendors' refusal to shrink an audience below its floor (see plugins/cdp/vendors/).
REMOVAL_BELOW_MINIMUM_SUBCODE = 1_870_034
AUDIENCES_PAGE_SIZE = 500


class MetaCustomAudiencesConnector:
    max_batch_size = MAX_ROWS

    def __init__(self, destination):
        self.destination = destination
        settings = destination.settings or {}
        self.ad_account_id = _ad_account_id(destination.name, settings)
        self.api_version = settings.get("api_version", DEFAULT_API_VERSION)
        self.customer_file_source = settings.get("customer_file_source", "USER_PROVIDED_ONLY")
        if self.customer_file_source not in CUSTOMER_FILE_SOURCES:
            raise PermanentError(
                f"destination {destination.name}: settings.customer_file_source must be one of "
                f"{', '.join(CUSTOMER_FILE_SOURCES)}"
            )
        self.kinds = tuple(destination.identities)
        self.schema = _schema(destination.name, self.kinds)
        self.batch_size = min(destination.batch_size or MAX_ROWS, MAX_ROWS)

        endpoint = endpoint_from_connection(destination.connection_id, DEFAULT_BASE_URL)
        self._http = GraphHttp(
            "Meta",
            endpoint,
            headers={"Authorization": f"Bearer {endpoint.token}"},
            timeout_seconds=destination.timeout_seconds or DEFAULT_TIMEOUT_SECONDS,
        )

    # -- the audience ---------------------------------------------------------------

    def open_audience(self, audience: Audience) -> str:
        """The custom audience named for this audience, found or created on the ad account.

        settings.custom_audiences may map an audience id to an existing custom audience.
        """
        configured = (self.destination.settings.get("custom_audiences") or {}).get(
            audience.audience_id
        )
        if configured:
            return str(configured)

        name = custom_audience_name(audience)
        found = self._find_custom_audience(name)
        if found is not None:
            return found

        created = self._http.request(
            "POST",
            self._audiences_path,
            json={
                "name": name,
                "subtype": "CUSTOM",
                "customer_file_source": self.customer_file_source,
                "description": audience.description[:100],
            },
        )
        log.info(
            "Meta: created custom audience %s for audience %s", created["id"], audience.audience_id
        )
        return str(created["id"])

    def _find_custom_audience(self, name: str) -> str | None:
        for page in self._http.pages(self._audiences_page, _next_after):
            for entry in page.get("data", []):
                if entry.get("name") == name:
                    return str(entry["id"])
        return None

    def _audiences_page(self, after: str | None) -> str:
        query = {"fields": "id,name", "limit": AUDIENCES_PAGE_SIZE}
        if after:
            query["after"] = after
        return f"{self._audiences_path}?{urlencode(query)}"

    @property
    def _audiences_path(self) -> str:
        return f"/{self.api_version}/act_{self.ad_account_id}/customaudiences"

    # -- the people -----------------------------------------------------------------

    def send(self, batch: Batch) -> BatchResult:
        if not batch.audience.vendor_audience_id:
            raise PermanentError("Meta: the batch has no custom audience id; open_audience first")
        if len(batch.members) > MAX_ROWS:
            raise PermanentError(
                f"Meta takes at most {MAX_ROWS} rows a request, not {len(batch.members)}"
            )

        rows, row_owners, rejected = [], [], {}
        for member in batch.members:
            row = [_first(member.identities.get(kind)) for kind in self.kinds]
            if not any(row):
                rejected[member.profile_id] = f"no {' or '.join(self.kinds)} to send to Meta"
                continue
            rows.append(row)
            row_owners.append(member.profile_id)
        if not rows:
            return BatchResult(accepted=0, rejected=rejected)

        body = {
            "payload": {"schema": self.schema, "data": rows},
            "session": self._session(batch),
        }
        answer = self._http.request(
            "POST" if batch.operation == "add" else "DELETE",
            f"/{self.api_version}/{batch.audience.vendor_audience_id}/users",
            json=body,
            idempotency_key=batch.idempotency_key,
        )

        refused = _refused_rows(answer, rows, row_owners)
        rejected.update(refused)
        accepted = len(rows) - len(refused)
        log.info(
            "Meta: %s batch %d/%d for custom audience %s: %d rows sent, %d refused",
            batch.operation, batch.number, batch.total, batch.audience.vendor_audience_id,
            len(rows), len(refused),
        )  # fmt: skip
        return BatchResult(
            accepted=accepted,
            rejected=rejected,
            vendor_response={
                "audience_id": answer.get("audience_id"),
                "session_id": answer.get("session_id"),
                "batch_seq": batch.number,
                "num_received": answer.get("num_received"),
                "num_invalid_entries": answer.get("num_invalid_entries", 0),
            },
        )

    def _session(self, batch: Batch) -> dict:
        return {
            "session_id": session_id(batch),
            "batch_seq": batch.number,
            "last_batch_flag": batch.number == batch.total,
            # An upper bound: every batch but the last is full.
            "estimated_num_total": batch.total * self.batch_size,
        }

    def close(self) -> None:
        self._http.close()


class GraphHttp(VendorHttp):
    """Reads Meta's error body, where throttling and refusals are said by code."""

    def vendor_error(self, response: httpx.Response) -> DeliveryError | None:
        try:
            error = response.json().get("error") or {}
        except (ValueError, AttributeError):
            return None
        if not isinstance(error, dict):
            return None

        code, subcode = error.get("code"), error.get("error_subcode")
        message = f"Meta answered {response.status_code}: {str(error.get('message'))[:300]}"
        if code in THROTTLING_CODES:
            return RetryableError(
                f"{message} (throttled)", retry_after=retry_after_seconds(response)
            )
        if subcode == REMOVAL_BELOW_MINIMUM_SUBCODE:
            return RemovalRefused(message)
        if code == INVALID_TOKEN_CODE:
            return PermanentError(
                f"{message} (check the access token in the Airflow connection's password)"
            )
        if error.get("is_transient"):
            return RetryableError(message, retry_after=retry_after_seconds(response))
        return None


def custom_audience_name(audience: Audience) -> str:
    """Names carry the audience id so the audience is found again after a rename."""
    return f"{audience.name} [cdp:{audience.audience_id}]"


def session_id(batch: Batch) -> int:
    """A positive id, the same for every batch of one run of one audience."""
    seed = f"{batch.destination}\x1f{batch.audience.audience_id}\x1f{batch.run_key}"
    # Six bytes keep it below 2**53, exact in every JSON reader.
    return int.from_bytes(hashlib.sha256(seed.encode()).digest()[:6], "big") or 1


def _refused_rows(answer: dict, rows: list[list[str]], owners: list[str]) -> dict[str, str]:
    invalid = int(answer.get("num_invalid_entries") or 0)
    if not invalid:
        return {}

    owners_by_value: dict[str, set[str]] = {}
    for row, owner in zip(rows, owners, strict=True):
        for value in filter(None, row):
            owners_by_value.setdefault(value, set()).add(owner)

    # A sample names a refused row by its values (the whole row, comma-joined, or one value).
    refused: dict[str, str] = {}
    for sample, reason in (answer.get("invalid_entry_samples") or {}).items():
        for value in str(sample).split(","):
            for owner in owners_by_value.get(value.strip(), ()):
                refused[owner] = f"Meta refused the row: {reason}"

    if len(refused) < invalid:
        reason = (
            f"Meta refused {invalid} rows of this batch but named only {len(refused)}; "
            "the whole batch goes again next run"
        )
        return dict.fromkeys(owners, reason)
    return refused


def _next_after(page: dict, after: str | None) -> str | None:
    """The Graph API pages by cursor; a page without a `next` link is the last."""
    paging = page.get("paging") or {}
    following = (paging.get("cursors") or {}).get("after")
    return following if paging.get("next") and following else None


def _first(values: list[str] | None) -> str:
    return values[0] if values else ""


def _ad_account_id(destination: str, settings: dict) -> str:
    account = str(settings.get("ad_account_id") or "").strip().removeprefix("act_")
    if not account.isdigit():
        raise PermanentError(
            f"destination {destination}: settings.ad_account_id must be the ad account's "
            "number (with or without 'act_'), as shown in Meta Ads Manager"
        )
    return account


def _schema(destination: str, kinds: tuple[str, ...]) -> list[str]:
    """Meta's schema key for each identity kind the destination sends, in its order.

    Which kinds a meta_custom_audiences destination may declare is decided once, in
    DESTINATION_TYPES, and checked with its file; only a destination built by hand can
    bring a kind that has no column at Meta.
    """
    try:
        return [SCHEMA_KEYS[kind] for kind in kinds]
    except KeyError as unknown:
        raise PermanentError(
            f"destination {destination}: Meta has no schema key for identity {unknown}; "
            "`cdp destinations check` lists the identities meta_custom_audiences accepts"
        ) from None
