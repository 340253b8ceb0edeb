"""A local stand-in for Meta's Marketing API customer-file Custom Audiences.

It serves the Graph API paths the connector uses (https://graph.facebook.com in
production):

    GET    /{version}/act_{ad_account_id}/customaudiences   list: id and name
    POST   /{version}/act_{ad_account_id}/customaudiences   create: name, subtype CUSTOM,
                                                            customer_file_source
    POST   /{version}/{custom_audience_id}/users            add people
    DELETE /{version}/{custom_audience_id}/users            remove people

A users request carries {"payload": {"schema": [...], "data": [[...], ...]}, "session":
{session_id, batch_seq, last_batch_flag, estimated_num_total}}. It is refused whole, in
Meta's error shape ({"error": {message, type, code, error_subcode, fbtrace_id}}), when a
hashed key holds anything but 64 lower-case hex characters, when it has more than 10,000
rows, when a row's width differs from the schema's, when the schema names a key Meta does
not know, or when the session lacks a field. A repeated (session_id, batch_seq) gets its
first answer back and is not applied again. The access token is expected as a Bearer
header, which the Graph API accepts in place of the access_token parameter.

Two rules are the stand-in's own, for the tests and the demo: `min_audience_size_for_removal`
refuses a removal that would leave an audience smaller than that (error_subcode
REMOVAL_BELOW_MINIMUM_SUBCODE), and `throttle_next(n)` answers the next n users requests
with Meta's ad-account throttling error (code 80003, HTTP 400). Rows refused by a
`partial` fault are reported the way Meta reports invalid rows: counted in
num_invalid_entries and sampled in invalid_entry_samples, keyed by the row's own values.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import uuid

from cdp.vendors.stand_in import Answer, StandInVendor, VendorError

MAX_ROWS = 10_000
# The keys of Meta's customer-file schema; all but the two ids are sent hashed.
SCHEMA_KEYS = {
    "EMAIL", "PHONE", "FN", "LN", "FI", "GEN", "DOBY", "DOBM", "DOBD", "CT", "ST", "ZIP",
    "COUNTRY", "MADID", "EXTERN_ID",
}  # fmt: skip
UNHASHED_KEYS = {"MADID", "EXTERN_ID"}
CUSTOMER_FILE_SOURCES = {
    "USER_PROVIDED_ONLY",
    "PARTNER_PROVIDED_ONLY",
    "BOTH_USER_AND_PARTNER_PROVIDED",
}
# Meta documents no minimum size for removals; the code is this stand-in's, and the
# connector (plugins/cdp/activation/connectors/meta_custom_audiences.py) knows it.
REMOVAL_BELOW_MINIMUM_SUBCODE = 1_870_034
THROTTLED_CODE = 80003

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_VERSION = r"(?P<version>v\d+\.\d+)"


class MetaCustomAudiencesStandIn(StandInVendor):
    name = "meta"

    def __init__(self, min_audience_size_for_removal: int = 0, invalid_sample_limit: int = 100):
        self.min_audience_size_for_removal = min_audience_size_for_removal
        self.invalid_sample_limit = invalid_sample_limit
        # custom audience id -> its fields; people are frozensets of (key, hash) pairs.
        self.audiences: dict[str, dict] = {}
        self.people: dict[str, set[frozenset]] = {}
        self._ids = itertools.count(23_850_000_000_000_001)
        self._throttled = 0
        super().__init__()

    def register_routes(self) -> None:
        accounts = rf"/{_VERSION}/act_(?P<account>\d+)/customaudiences"
        users = rf"/{_VERSION}/(?P<audience_id>\d+)/users"
        self.route("GET", accounts, self.list_audiences)
        self.route("POST", accounts, self.create_audience)
        self.route("POST", users, self.add_users)
        self.route("DELETE", users, self.remove_users)

    def throttle_next(self, requests: int) -> None:
        """Answer the next users requests with Meta's ad-account throttling error."""
        with self._lock:
            self._throttled += requests

    # -- how Meta words things ------------------------------------------------------

    def error_body(self, error: VendorError) -> dict:
        details = dict(error.details)
        message = error.message
        if error.status == 401:
            details = {"code": 190}
            message = "Invalid OAuth access token - Cannot parse access token"
        body = {
            "message": message,
            "type": details.pop("type", "OAuthException"),
            "code": details.pop("code", 100),
            "fbtrace_id": "A" + uuid.uuid4().hex[:22],
            **details,
        }
        return {"error": body}

    def idempotency_key(self, headers, body: dict) -> str | None:
        session = body.get("session") if isinstance(body, dict) else None
        if isinstance(session, dict) and "session_id" in session and "batch_seq" in session:
            return f"session {session['session_id']} batch {session['batch_seq']}"
        return None

    # -- audiences ------------------------------------------------------------------

    def list_audiences(self, body, partial_share, version, account):
        entries = [
            {"id": audience_id, "name": audience["name"]}
            for audience_id, audience in self.audiences.items()
            if audience["account"] == account
        ]
        return Answer(200, {"data": entries, "paging": {"cursors": {"before": "", "after": ""}}})

    def create_audience(self, body, partial_share, version, account):
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise VendorError(400, "(#100) The parameter name is required")
        if body.get("subtype") != "CUSTOM":
            raise VendorError(400, "(#100) subtype must be CUSTOM for a customer-file audience")
        if body.get("customer_file_source") not in CUSTOMER_FILE_SOURCES:
            raise VendorError(
                400,
                "(#100) customer_file_source must be one of "
                + ", ".join(sorted(CUSTOMER_FILE_SOURCES)),
            )
        audience_id = str(next(self._ids))
        self.audiences[audience_id] = {
            "account": account,
            "name": name,
            "subtype": body["subtype"],
            "customer_file_source": body["customer_file_source"],
            "description": body.get("description", ""),
        }
        self.people[audience_id] = set()
        return Answer(200, {"id": audience_id})

    # -- people ---------------------------------------------------------------------

    def add_users(self, body, partial_share, version, audience_id):
        return self._users(body, partial_share, audience_id, "add")

    def remove_users(self, body, partial_share, version, audience_id):
        return self._users(body, partial_share, audience_id, "remove")

    def _users(self, body, partial_share, audience_id, operation) -> Answer:
        if audience_id not in self.audiences:
            raise VendorError(
                400,
                f"Unsupported request. Object with ID '{audience_id}' does not exist or does "
                "not support this operation",
                code=100,
                error_subcode=33,
            )
        if self._throttled > 0:
            self._throttled -= 1
            raise VendorError(
                400,
                "(#80003) There have been too many calls to this ad account. Wait a bit and "
                "try again.",
                code=THROTTLED_CODE,
                error_subcode=2446079,
                is_transient=True,
            )
        schema, rows = _checked_payload(body.get("payload"))
        session = _checked_session(body.get("session"))

        refused = set(range(math.ceil(len(rows) * partial_share))) if partial_share else set()
        people = [
            frozenset((key, value) for key, value in zip(schema, row, strict=True) if value)
            for index, row in enumerate(rows)
            if index not in refused
        ]
        if operation == "remove":
            self._check_removal_leaves_enough(audience_id, people)

        for person in people:
            if operation == "add":
                self._add_person(audience_id, person)
            else:
                self._remove_person(audience_id, person)

        samples = {
            ",".join(rows[index]): "could not be processed this time; send the row again"
            for index in sorted(refused)[: self.invalid_sample_limit]
        }
        return Answer(
            200,
            {
                "audience_id": audience_id,
                "session_id": str(session["session_id"]),
                "num_received": len(rows),
                "num_invalid_entries": len(refused),
                "invalid_entry_samples": samples,
            },
        )

    def _add_person(self, audience_id: str, person: frozenset) -> None:
        self.people[audience_id].add(person)
        for _key, value in person:
            self.apply_add(audience_id, value)

    def _remove_person(self, audience_id: str, person: frozenset) -> None:
        # Meta matches a removal on any of the row's keys.
        self.people[audience_id] = {held for held in self.people[audience_id] if not held & person}
        for _key, value in person:
            self.apply_remove(audience_id, value)

    def _check_removal_leaves_enough(self, audience_id: str, people: list[frozenset]) -> None:
        minimum = self.min_audience_size_for_removal
        if not minimum:
            return
        leaving = {held for held in self.people[audience_id] if any(held & p for p in people)}
        remaining = len(self.people[audience_id]) - len(leaving)
        if remaining < minimum:
            raise VendorError(
                400,
                f"(#100) Removing {len(leaving)} people would leave this custom audience with "
                f"{remaining}, below its minimum of {minimum}; the removal was not applied",
                code=100,
                error_subcode=REMOVAL_BELOW_MINIMUM_SUBCODE,
                error_user_title="Audience too small",
            )


def _checked_payload(payload) -> tuple[list[str], list[list[str]]]:
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError:
            raise VendorError(400, "(#100) payload is not valid JSON") from None
    if not isinstance(payload, dict):
        raise VendorError(400, "(#100) The parameter payload is required")

    schema = payload.get("schema")
    if isinstance(schema, str):
        schema = [schema]
    if not isinstance(schema, list) or not schema:
        raise VendorError(400, "(#100) payload.schema is required: a list of keys such as EMAIL")
    unknown = [key for key in schema if key not in SCHEMA_KEYS]
    if unknown:
        raise VendorError(
            400,
            f"(#100) Unknown schema key(s) {unknown}; use keys from "
            + ", ".join(sorted(SCHEMA_KEYS)),
        )
    if len(set(schema)) != len(schema):
        raise VendorError(400, "(#100) payload.schema names a key twice")

    data = payload.get("data")
    if not isinstance(data, list) or not data:
        raise VendorError(400, "(#100) payload.data is required: a list of rows")
    if len(data) > MAX_ROWS:
        raise VendorError(
            400, f"(#100) payload.data has {len(data)} rows; at most {MAX_ROWS} per request"
        )
    for index, row in enumerate(data):
        _check_row(index, row, schema)
    return schema, data


def _check_row(index: int, row, schema: list[str]) -> None:
    if not isinstance(row, list) or len(row) != len(schema):
        width = len(row) if isinstance(row, list) else "no"
        raise VendorError(
            400,
            f"(#100) payload.data[{index}] has {width} values but the schema has "
            f"{len(schema)} keys",
        )
    if not any(row):
        raise VendorError(400, f"(#100) payload.data[{index}] has no value")
    for key, value in zip(schema, row, strict=True):
        if not isinstance(value, str):
            raise VendorError(400, f"(#100) payload.data[{index}] {key} must be a string")
        if value and key not in UNHASHED_KEYS and not _SHA256_HEX.match(value):
            # Never echo the value: it may be a raw address or number.
            raise VendorError(
                400,
                f"(#100) payload.data[{index}] {key} is not a SHA-256 hash (64 lower-case hex "
                "characters); normalise and hash the value before sending it",
            )


def _checked_session(session) -> dict:
    if not isinstance(session, dict):
        raise VendorError(400, "(#100) session is required: session_id, batch_seq, last_batch_flag")
    for field, kind in (("session_id", int), ("batch_seq", int), ("last_batch_flag", bool)):
        value = session.get(field)
        if value is None:
            raise VendorError(400, f"(#100) session.{field} is required")
        if not isinstance(value, kind) or (kind is int and (isinstance(value, bool) or value < 1)):
            raise VendorError(400, f"(#100) session.{field} must be a positive {kind.__name__}")
    total = session.get("estimated_num_total")
    if total is not None and (not isinstance(total, int) or total < 0):
        raise VendorError(400, "(#100) session.estimated_num_total must be a whole number")
    return session
