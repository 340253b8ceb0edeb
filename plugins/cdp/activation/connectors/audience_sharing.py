"""Audience sharing: the CDP's own audience manager API, version 1.

There is no vendor to copy, so this docstring is the contract. JSON over HTTPS at the
base URL of the destination's Airflow connection; `Authorization: Bearer <token>`
(the connection's password) on every request. Times are ISO 8601 with a UTC offset.

PUT /v1/audiences/{audience_id}
    {"name", "description", "owner", "evaluation_mode": "batch" | "streaming"}
    Creates or updates the audience's metadata (201 the first time, then 200). It must
    come first: memberships of an audience whose metadata the manager has not
    received are refused with 409. `description` and `owner` may be empty strings,
    none of the four may be missing.

POST /v1/audiences/{audience_id}/memberships:batchAdd
    {"memberships": [{"profile_id", "identities": [{"namespace", "value"}, ...],
      "realised_at", "exited_at": null | time, "attributes": {...}}]}
    One membership is one period in the audience, keyed by profile id and
    `realised_at`: sending it again updates it rather than adding a second. A period
    with `exited_at` is history (a member who left before the sharing began); without,
    the profile is a member now. `identities` lists every identity of the member,
    every kind and every value; namespaces are the CDP's identity kinds (email,
    email_sha256, phone_e164, phone_sha256, phone_digits_sha256, crm_id, loyalty_id,
    ecid) and values are checked against them (hashes are 64 lower-hex characters,
    phones E.164, emails normalised).

POST /v1/audiences/{audience_id}/memberships:batchRemove
    {"memberships": [{"profile_id", "exited_at", "identities": [...] (optional)}]}
    Ends the profile's open period at `exited_at`; a profile with no open period is
    counted as `not_open` and left alone, so a repeated removal changes nothing.

Both membership calls take at most 5,000 memberships and honour an `Idempotency-Key`
header (the connector always sends the batch's): a repeated key gets the first answer
back and is not applied again. They
answer 200 {"accepted", "opened" | "closed", "history", "unchanged" | "not_open",
"rejected": [{"index", "profile_id", "reason"}]}: rows in `rejected` were not applied
and may be sent again. Errors are {"error": {"code", "message", "details"?}}.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from cdp.activation.connectors.base import Audience, Batch, BatchResult, Member
from cdp.activation.connectors.vendor_http import (
    DEFAULT_TIMEOUT_SECONDS,
    VendorHttp,
    endpoint_from_connection,
)

log = logging.getLogger(__name__)

MAX_MEMBERSHIPS_PER_REQUEST = 5_000


class AudienceSharingConnector:
    max_batch_size = MAX_MEMBERSHIPS_PER_REQUEST

    def __init__(self, destination):
        self.destination = destination
        endpoint = endpoint_from_connection(destination.connection_id)
        self._http = VendorHttp(
            destination.name,
            endpoint,
            {"Authorization": f"Bearer {endpoint.token}"},
            timeout_seconds=destination.timeout_seconds or DEFAULT_TIMEOUT_SECONDS,
        )

    def open_audience(self, audience: Audience) -> str:
        # Sent every run, not only the first: the manager then always has the current
        # name, description and owner before any membership arrives.
        self._http.request(
            "PUT",
            f"/v1/audiences/{audience.audience_id}",
            json={
                "name": audience.name,
                "description": audience.description,
                "owner": audience.owner,
                "evaluation_mode": audience.evaluation_mode,
            },
        )
        return audience.audience_id

    def send(self, batch: Batch) -> BatchResult:
        audience_id = batch.audience.vendor_audience_id or batch.audience.audience_id
        if batch.operation == "add":
            action, memberships = "batchAdd", [_added(member) for member in batch.members]
        else:
            action, memberships = "batchRemove", [_removed(member) for member in batch.members]

        answer = self._http.request(
            "POST",
            f"/v1/audiences/{audience_id}/memberships:{action}",
            json={"memberships": memberships},
            idempotency_key=batch.idempotency_key,
        )

        rejected = {row["profile_id"]: row["reason"] for row in answer.get("rejected") or []}
        counts = ("accepted", "opened", "closed", "history", "unchanged", "not_open")
        return BatchResult(
            accepted=answer.get("accepted", 0),
            rejected=rejected,
            vendor_response={name: answer[name] for name in counts if name in answer},
        )

    def close(self) -> None:
        self._http.close()


def _added(member: Member) -> dict:
    return {
        "profile_id": member.profile_id,
        "identities": _identities(member),
        "realised_at": _timestamp(member.realised_at),
        "exited_at": None if member.exited_at is None else _timestamp(member.exited_at),
        "attributes": dict(member.attributes),
    }


def _removed(member: Member) -> dict:
    return {
        "profile_id": member.profile_id,
        "identities": _identities(member),
        "exited_at": _timestamp(member.exited_at),
    }


def _identities(member: Member) -> list[dict]:
    """Every kind and every value, in a stable order so a resent batch is byte-identical."""
    return [
        {"namespace": kind, "value": value}
        for kind in sorted(member.identities)
        for value in member.identities[kind]
    ]


def _timestamp(value) -> str:
    """ISO 8601 with an offset, from a datetime or the string the ledger's JSON holds.

    A missing time (the planner always sets one) falls back to now; the batch's
    idempotency key still makes a resend replay the first answer.
    """
    if value is None:
        return datetime.now(UTC).isoformat()
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)  # the warehouse keeps times in UTC
    return value.isoformat()
