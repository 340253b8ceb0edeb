"""A strict stand-in for the Mailchimp Marketing API v3 (lists, members, static segments).

It answers the endpoints the email_provider connector uses (see that module's
docstring) with Mailchimp's shapes: problem documents for errors (a body that fails
the schema gets a generic `detail` and its fields in `errors` [{field, message}]),
`errors` arrays for rows refused inside an accepted request. It is stricter than
Mailchimp in one way on purpose: addresses must arrive normalised (trimmed,
lower-case), because the CDP promises to send them so; Mailchimp would quietly
lower-case them itself.

Bookkeeping for tests: `members[segment_id]` is who is in each segment,
`applied_adds[(segment_id, email)]` how often an address actually entered it. Adding an
address already in the segment, or removing one that is not, changes nothing, as at
Mailchimp, which is why a repeated batch is harmless without an idempotency key.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import re
import uuid

from cdp.vendors.stand_in import Answer, StandInVendor, VendorError

MAX_MEMBERS = 500
MAX_SEGMENT_PAGE = 1000
EMAIL = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")
MERGE_TAG = re.compile(r"^[A-Z0-9_]{1,10}$")
STATUSES = {"subscribed", "unsubscribed", "cleaned", "pending", "transactional"}
SCHEMA_INVALID_DETAIL = (
    "The resource submitted could not be validated. "
    "For field-specific details, see the 'errors' array."
)
TITLES = {400: "Invalid Resource", 401: "API Key Invalid", 404: "Resource Not Found"}
LIST_ID = r"(?P<list_id>[0-9a-z]+)"
DEFAULT_LIST_ID = "a1b2c3d4e5"  # the list a stand-in starts with, for the demo's settings


class EmailProviderStandIn(StandInVendor):
    name = "email_provider"
    token = "local-mailchimp-key-us1"

    def __init__(self, list_ids: tuple[str, ...] = (DEFAULT_LIST_ID,)):
        # list id -> email -> {"status", "merge_fields"}
        self.lists: dict[str, dict[str, dict]] = {list_id: {} for list_id in list_ids}
        # segment id -> {"list_id", "name"}; members live in the base's `members`.
        self.segments: dict[str, dict] = {}
        self._segment_ids = itertools.count(1001)
        super().__init__()

    def register_routes(self) -> None:
        self.route("GET", f"/3.0/lists/{LIST_ID}/segments", self.list_segments, query=True)
        self.route("POST", f"/3.0/lists/{LIST_ID}/segments", self.create_segment)
        self.route("POST", f"/3.0/lists/{LIST_ID}", self.batch_subscribe)
        self.route(
            "POST", f"/3.0/lists/{LIST_ID}/segments/(?P<segment_id>[0-9]+)", self.segment_members
        )

    def authorized(self, headers) -> bool:
        # HTTP Basic: any user name, the API key as password.
        scheme, _, encoded = (headers.get("Authorization") or "").partition(" ")
        if scheme != "Basic":
            return False
        try:
            _, _, key = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            return False
        return key == self.token

    def idempotency_key(self, headers, body: dict) -> str | None:
        return None  # Mailchimp honours no idempotency key; its operations are set-like

    def error_body(self, error: VendorError) -> dict:
        return {
            "type": "https://mailchimp.com/developer/marketing/docs/errors/",
            "title": TITLES.get(error.status, "Error"),
            "status": error.status,
            "detail": error.message,
            "instance": str(uuid.uuid4()),
            **error.details,
        }

    # -- segments -------------------------------------------------------------------

    def list_segments(self, body, partial_share, list_id, query) -> Answer:
        self._list(list_id)
        count = _int_parameter(query, "count", 10, MAX_SEGMENT_PAGE)
        offset = _int_parameter(query, "offset", 0, None)
        wanted_type = (query.get("type") or [None])[0]

        segments = [
            {"id": int(segment_id), "name": segment["name"], "type": "static",
             "member_count": len(self.members[segment_id]), "list_id": list_id}
            for segment_id, segment in self.segments.items()
            if segment["list_id"] == list_id and wanted_type in (None, "static")
        ]  # fmt: skip
        return Answer(
            200,
            {
                "segments": segments[offset : offset + count],
                "list_id": list_id,
                "total_items": len(segments),
            },
        )

    def create_segment(self, body, partial_share, list_id) -> Answer:
        self._list(list_id)
        name = body.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 100:
            raise VendorError(400, "name is required: a segment name of 1 to 100 characters")
        if "static_segment" not in body and "options" not in body:
            raise VendorError(
                400, "either static_segment (a list of emails, may be empty) or options is required"
            )
        emails = body.get("static_segment") or []
        if not isinstance(emails, list):
            raise VendorError(400, "static_segment must be a list of email addresses")
        _check_emails(emails, "static_segment")

        segment_id = str(next(self._segment_ids))
        with self._lock:
            self.segments[segment_id] = {"list_id": list_id, "name": name}
            for email in emails:
                self._enter(segment_id, email)
        return Answer(
            200,
            {"id": int(segment_id), "name": name, "type": "static", "list_id": list_id,
             "member_count": len(self.members[segment_id])},
        )  # fmt: skip

    def segment_members(self, body, partial_share, list_id, segment_id) -> Answer:
        on_list = self._list(list_id)
        if self.segments.get(segment_id, {}).get("list_id") != list_id:
            raise VendorError(404, f"segment {segment_id} does not exist in list {list_id}")
        to_add = body.get("members_to_add")
        to_remove = body.get("members_to_remove")
        if to_add is None and to_remove is None:
            raise VendorError(400, "members_to_add or members_to_remove is required")
        for field, emails in (("members_to_add", to_add), ("members_to_remove", to_remove)):
            if emails is None:
                continue
            if not isinstance(emails, list):
                raise VendorError(400, f"{field} must be a list of email addresses")
            if len(emails) > MAX_MEMBERS:
                raise VendorError(
                    400, f"{field} has {len(emails)} addresses; at most {MAX_MEMBERS} per request"
                )
            _check_emails(emails, field)

        errors, added, removed = [], [], []
        refused_now = set(_partial_share_of(to_add or to_remove, partial_share))
        if refused_now:
            errors.append(
                {
                    "email_addresses": sorted(refused_now),
                    "error": "temporarily unable to update these contacts, try again",
                }
            )
        not_on_list = sorted(e for e in to_add or [] if e not in on_list and e not in refused_now)
        if not_on_list:
            errors.append(
                {
                    "email_addresses": not_on_list,
                    "error": "not a member of this list: add them to the list first",
                }
            )

        with self._lock:
            for email in to_add or []:
                if email not in refused_now and email in on_list:
                    if self._enter(segment_id, email):
                        added.append({"id": _subscriber_hash(email), "email_address": email})
            for email in to_remove or []:
                if email not in refused_now and email in self.members[segment_id]:
                    self.apply_remove(segment_id, email)
                    removed.append({"id": _subscriber_hash(email), "email_address": email})
        return Answer(
            200,
            {
                "members_added": added,
                "members_removed": removed,
                "errors": errors,
                "total_added": len(added),
                "total_removed": len(removed),
                "error_count": sum(len(error["email_addresses"]) for error in errors),
            },
        )

    # -- list members ---------------------------------------------------------------

    def batch_subscribe(self, body, partial_share, list_id) -> Answer:
        on_list = self._list(list_id)
        members = body.get("members")
        if not isinstance(members, list) or not members:
            raise VendorError(400, "members is required: a list of 1 to 500 member objects")
        if len(members) > MAX_MEMBERS:
            raise VendorError(
                400, f"members has {len(members)} entries; at most {MAX_MEMBERS} per request"
            )
        for index, member in enumerate(members):
            _check_member(member, index)

        refused_now = set(
            _partial_share_of([member["email_address"] for member in members], partial_share)
        )
        created, updated, errors = [], [], []
        with self._lock:
            for member in members:
                email = member["email_address"]
                if email in refused_now:
                    errors.append(
                        {
                            "email_address": email,
                            "error_code": "ERROR_GENERIC",
                            "error": "temporarily unable to save this contact, try again",
                        }
                    )
                    continue
                known = on_list.get(email)
                if known is not None and not body.get("update_existing"):
                    errors.append(
                        {
                            "email_address": email,
                            "error_code": "ERROR_CONTACT_EXISTS",
                            "error": "already a list member; set update_existing",
                        }
                    )
                    continue
                if known is None:
                    status = member.get("status") or member["status_if_new"]
                    on_list[email] = {"status": status, "merge_fields": {}}
                    created.append({"id": _subscriber_hash(email), "email_address": email,
                                    "status": status})  # fmt: skip
                else:
                    # status_if_new never touches an existing member's subscription.
                    known["status"] = member.get("status") or known["status"]
                    updated.append({"id": _subscriber_hash(email), "email_address": email,
                                    "status": known["status"]})  # fmt: skip
                on_list[email]["merge_fields"].update(member.get("merge_fields") or {})
        return Answer(
            200,
            {
                "new_members": created,
                "updated_members": updated,
                "errors": errors,
                "total_created": len(created),
                "total_updated": len(updated),
                "error_count": len(errors),
            },
        )

    # -- helpers --------------------------------------------------------------------

    def _list(self, list_id: str) -> dict[str, dict]:
        if list_id not in self.lists:
            raise VendorError(404, f"list {list_id} does not exist; check settings.list_id")
        return self.lists[list_id]

    def _enter(self, segment_id: str, email: str) -> bool:
        if email in self.members[segment_id]:
            return False
        self.apply_add(segment_id, email)
        return True


def _check_member(member, index: int) -> None:
    where = f"members[{index}]"
    if not isinstance(member, dict):
        raise VendorError(400, f"{where} must be an object")
    if "email_address" not in member:
        raise _invalid(f"{where}.email_address", "This value should not be blank.")
    _check_emails([member["email_address"]], f"{where}.email_address", single=True)
    status = member.get("status") or member.get("status_if_new")
    if status is None:
        raise _invalid(f"{where}.status_if_new", "status or status_if_new is required")
    if status not in STATUSES:
        raise _invalid(f"{where}.status", f"must be one of {', '.join(sorted(STATUSES))}")
    merge_fields = member.get("merge_fields", {})
    if not isinstance(merge_fields, dict):
        raise _invalid(f"{where}.merge_fields", "Schema describes object, array found instead")
    for tag, value in merge_fields.items():
        if not MERGE_TAG.match(tag):
            raise _invalid(
                f"{where}.merge_fields",
                f"{tag!r} is not a merge tag (upper-case letters, digits or _, at most 10 "
                "characters, e.g. FNAME); fix the destination's attributes",
            )
        if value is None or isinstance(value, dict | list):
            raise _invalid(f"{where}.merge_fields.{tag}", "must be a string or a number")


def _invalid(field: str, message: str) -> VendorError:
    """Mailchimp's answer to a body that fails its schema: the words are in `errors`."""
    return VendorError(400, SCHEMA_INVALID_DETAIL, errors=[{"field": field, "message": message}])


def _check_emails(emails: list, where: str, single: bool = False) -> None:
    """Refuse the request on the first bad address; the message never repeats it."""
    for index, email in enumerate(emails):
        at = where if single else f"{where}[{index}]"
        if not isinstance(email, str):
            raise VendorError(400, f"{at} must be a string email address")
        if email != email.strip().lower():
            raise VendorError(
                400, f"{at} is not normalised: send the address trimmed and lower-cased"
            )
        if not EMAIL.match(email):
            raise VendorError(400, f"{at} is not a valid email address")


def _partial_share_of(values: list, share: float) -> list:
    """The rows a `partial` fault refuses: the first share of them, at least one."""
    if not share or not values:
        return []
    return list(values)[: max(1, int(len(values) * share))]


def _int_parameter(query: dict, name: str, default: int, maximum: int | None) -> int:
    raw = (query.get(name) or [str(default)])[0]
    if not raw.isdigit():
        raise VendorError(400, f"{name} must be a non-negative integer")
    value = int(raw)
    if maximum is not None and value > maximum:
        raise VendorError(400, f"{name} may be at most {maximum}")
    return value


def _subscriber_hash(email: str) -> str:
    # Mailchimp's member id: MD5 of the lower-cased address.
    return hashlib.md5(email.encode()).hexdigest()
