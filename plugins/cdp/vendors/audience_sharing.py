"""A strict stand-in for the CDP's audience manager API (v1).

The contract is in the audience_sharing connector's docstring. This server holds
each audience's metadata and its membership periods, refuses memberships before
metadata (409), checks identity namespaces and values and the timestamps, and keeps
every period with its realised and exited times, so a test can read back a backfill
of history exactly as it arrived.

Bookkeeping for tests: `audiences[audience_id]` is the metadata,
`memberships[audience_id][(profile_id, realised_at)]` each period (times as aware
datetimes), `members[audience_id]` the profiles with an open period now, and
`applied_adds[(audience_id, profile_id)]` how many periods a profile was given.
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import datetime

from cdp.vendors.stand_in import Answer, StandInVendor, VendorError

MAX_MEMBERSHIPS = 5_000
EVALUATION_MODES = {"batch", "streaming"}
SHA256 = re.compile(r"^[0-9a-f]{64}$")
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")
ID = re.compile(r"^\S{1,200}$")
NAMESPACES = {
    "email": (EMAIL, "a trimmed, lower-cased email address"),
    "email_sha256": (SHA256, "64 lower-case hex characters (SHA-256 of the normalised email)"),
    "phone_e164": (E164, "an E.164 phone number: +, country code, number"),
    "phone_sha256": (SHA256, "64 lower-case hex characters (SHA-256 of the E.164 phone)"),
    "phone_digits_sha256": (SHA256, "64 lower-case hex characters (SHA-256 of the digits)"),
    "crm_id": (ID, "an id without spaces"),
    "loyalty_id": (ID, "an id without spaces"),
    "ecid": (ID, "an id without spaces"),
}
AUDIENCE = r"/v1/audiences/(?P<audience_id>[a-z0-9_]+)"
CODES = {400: "invalid_argument", 401: "unauthenticated", 404: "not_found", 409: "conflict"}


class AudienceSharingStandIn(StandInVendor):
    name = "audience_sharing"
    token = "local-audience-manager-token"

    def __init__(self):
        self.audiences: dict[str, dict] = {}
        self.memberships: dict[str, dict[tuple[str, datetime], dict]] = defaultdict(dict)
        super().__init__()

    def register_routes(self) -> None:
        self.route("PUT", AUDIENCE, self.put_audience)
        self.route("POST", f"{AUDIENCE}/memberships:batchAdd", self.batch_add)
        self.route("POST", f"{AUDIENCE}/memberships:batchRemove", self.batch_remove)

    def error_body(self, error: VendorError) -> dict:
        body = {"code": CODES.get(error.status, "error"), "message": error.message}
        if error.details:
            body["details"] = error.details
        return {"error": body}

    # -- metadata -------------------------------------------------------------------

    def put_audience(self, body, partial_share, audience_id) -> Answer:
        for field in ("name", "description", "owner", "evaluation_mode"):
            if not isinstance(body.get(field), str):
                raise VendorError(400, f"{field} is required (a string)", field=field)
        if not body["name"].strip():
            raise VendorError(400, "name must not be empty", field="name")
        if body["evaluation_mode"] not in EVALUATION_MODES:
            raise VendorError(400, "evaluation_mode must be batch or streaming")

        with self._lock:
            created = audience_id not in self.audiences
            self.audiences[audience_id] = {
                field: body[field] for field in ("name", "description", "owner", "evaluation_mode")
            }
        return Answer(201 if created else 200, {"audience_id": audience_id, **body})

    # -- memberships ----------------------------------------------------------------

    def batch_add(self, body, partial_share, audience_id) -> Answer:
        rows = self._memberships(body, audience_id)
        parsed = [_check_addition(row, index) for index, row in enumerate(rows)]

        refused = _partial_share_of(len(rows), partial_share)
        counts = {"accepted": 0, "opened": 0, "history": 0, "unchanged": 0}
        with self._lock:
            periods = self.memberships[audience_id]
            for index, (row, (realised_at, exited_at)) in enumerate(zip(rows, parsed, strict=True)):
                if index in refused:
                    continue
                key = (row["profile_id"], realised_at)
                period = {
                    "identities": row["identities"],
                    "realised_at": realised_at,
                    "exited_at": exited_at,
                    "attributes": row.get("attributes") or {},
                }
                if key in periods:
                    counts["unchanged"] += 1
                else:
                    self.apply_add(audience_id, row["profile_id"])
                    counts["history" if exited_at else "opened"] += 1
                periods[key] = period
                self._refresh_member(audience_id, row["profile_id"])
                counts["accepted"] += 1
        return Answer(200, {**counts, "rejected": _rejected(rows, refused)})

    def batch_remove(self, body, partial_share, audience_id) -> Answer:
        rows = self._memberships(body, audience_id)
        exits = [_check_removal(row, index) for index, row in enumerate(rows)]

        refused = _partial_share_of(len(rows), partial_share)
        counts = {"accepted": 0, "closed": 0, "not_open": 0}
        with self._lock:
            periods = self.memberships[audience_id]
            for index, (row, exited_at) in enumerate(zip(rows, exits, strict=True)):
                if index in refused:
                    continue
                profile_id = row["profile_id"]
                open_periods = [
                    key
                    for key, period in periods.items()
                    if key[0] == profile_id and period["exited_at"] is None
                ]
                for key in open_periods:
                    periods[key]["exited_at"] = exited_at
                if open_periods:
                    self.apply_remove(audience_id, profile_id)
                    counts["closed"] += 1
                else:
                    counts["not_open"] += 1
                counts["accepted"] += 1
        return Answer(200, {**counts, "rejected": _rejected(rows, refused)})

    # -- helpers --------------------------------------------------------------------

    def idempotency_key(self, headers, body: dict) -> str | None:
        return headers.get("Idempotency-Key")

    def _memberships(self, body: dict, audience_id: str) -> list:
        if audience_id not in self.audiences:
            raise VendorError(
                409,
                f"audience {audience_id} has no metadata yet: send PUT /v1/audiences/"
                f"{audience_id} with name, description, owner and evaluation_mode first",
            )
        rows = body.get("memberships")
        if not isinstance(rows, list) or not rows:
            raise VendorError(400, "memberships is required: a list of 1 to 5,000 memberships")
        if len(rows) > MAX_MEMBERSHIPS:
            raise VendorError(
                400, f"{len(rows)} memberships given; at most {MAX_MEMBERSHIPS} per request"
            )
        return rows

    def _refresh_member(self, audience_id: str, profile_id: str) -> None:
        """A profile is a member now while one of its periods is open."""
        is_open = any(
            key[0] == profile_id and period["exited_at"] is None
            for key, period in self.memberships[audience_id].items()
        )
        if is_open:
            self.members[audience_id].add(profile_id)
        else:
            self.members[audience_id].discard(profile_id)


def _check_addition(row, index: int) -> tuple[datetime, datetime | None]:
    where = f"memberships[{index}]"
    _check_profile(row, where)
    identities = row.get("identities")
    if not isinstance(identities, list) or not identities:
        raise VendorError(400, f"{where}.identities is required: at least one identity")
    for number, identity in enumerate(identities):
        _check_identity(identity, f"{where}.identities[{number}]")
    if "attributes" in row and not isinstance(row["attributes"], dict):
        raise VendorError(400, f"{where}.attributes must be an object")

    realised_at = _time(row, "realised_at", where, required=True)
    exited_at = _time(row, "exited_at", where, required=False)
    if exited_at is not None and exited_at < realised_at:
        raise VendorError(400, f"{where}: exited_at is before realised_at")
    return realised_at, exited_at


def _check_removal(row, index: int) -> datetime:
    where = f"memberships[{index}]"
    _check_profile(row, where)
    for number, identity in enumerate(row.get("identities") or []):
        _check_identity(identity, f"{where}.identities[{number}]")
    return _time(row, "exited_at", where, required=True)


def _check_profile(row, where: str) -> None:
    if not isinstance(row, dict):
        raise VendorError(400, f"{where} must be an object")
    if not isinstance(row.get("profile_id"), str) or not ID.match(row["profile_id"]):
        raise VendorError(400, f"{where}.profile_id is required: a non-empty id without spaces")


def _check_identity(identity, where: str) -> None:
    if not isinstance(identity, dict) or not {"namespace", "value"} <= identity.keys():
        raise VendorError(400, f"{where} must be an object with namespace and value")
    namespace, value = identity["namespace"], identity["value"]
    if namespace not in NAMESPACES:
        raise VendorError(
            400, f"{where}.namespace {namespace!r} is unknown; use one of {sorted(NAMESPACES)}"
        )
    pattern, shape = NAMESPACES[namespace]
    normalised = not isinstance(value, str) or namespace != "email" or value == value.lower()
    if not isinstance(value, str) or not pattern.match(value) or not normalised:
        # The message names the rule, never the value: it may be personal data.
        raise VendorError(400, f"{where}.value is not {shape}")


def _time(row: dict, field: str, where: str, required: bool) -> datetime | None:
    value = row.get(field)
    if value is None:
        if required:
            raise VendorError(400, f"{where}.{field} is required (ISO 8601 with an offset)")
        if field not in row:
            raise VendorError(400, f"{where}.{field} is required; send null for an open period")
        return None
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise VendorError(
            400, f"{where}.{field} must be ISO 8601 with a UTC offset, e.g. 2026-01-31T09:00:00Z"
        )
    return moment


def _partial_share_of(count: int, share: float) -> set[int]:
    """Indexes a `partial` fault refuses: the first share of the rows, at least one."""
    if not share or not count:
        return set()
    return set(range(max(1, int(count * share))))


def _rejected(rows: list, refused: set[int]) -> list[dict]:
    return [
        {
            "index": index,
            "profile_id": rows[index]["profile_id"],
            "reason": "temporarily unavailable, send again",
        }
        for index in sorted(refused)
    ]
