"""A strict stand-in for the Klaviyo REST API: lists and SMS subscription jobs.

It answers the endpoints the sms_provider connector uses (see that module's
docstring) with Klaviyo's JSON:API shapes and refuses what Klaviyo refuses: a missing
or unknown `revision` header, a key not sent as `Klaviyo-API-Key`, phone numbers not
in E.164, profiles without an SMS marketing consent block, more than 1,000 profiles
a job, list pages over 100, unknown lists. Subscription jobs are applied at once
rather than queued, and since Klaviyo's jobs report no per-row failures, a `partial`
fault has no effect here.

Bookkeeping for tests: `members[list_id]` is the set of phone numbers on each list,
`applied_adds[(list_id, phone)]` how often a phone actually joined it, and
`sms_consent[phone]` each profile's SMS marketing consent, which removal from a list
must leave alone.
"""

from __future__ import annotations

import itertools
import json
import re
import uuid
from urllib.parse import urlencode

from cdp.vendors.stand_in import Answer, StandInVendor, VendorError

OLDEST_REVISION = "2025-01-15"
REVISION_FORMAT = re.compile(r"^\d{4}-\d{2}-\d{2}(\.[a-z]+)?$")
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
MAX_SUBSCRIBE_PROFILES = 1000
MAX_REMOVE_PROFILES = 1000
MAX_PAGE_SIZE = 100
CODES = {
    400: ("invalid", "Invalid input."),
    401: ("not_authenticated", "Not authenticated."),
    404: ("not_found", "Not found."),
    405: ("method_not_allowed", "Method not allowed."),
}


class SmsProviderStandIn(StandInVendor):
    name = "sms_provider"
    token = "pk_local_klaviyo_key"

    def __init__(self):
        self.lists: dict[str, dict] = {}  # list id -> {"name"}
        self.profiles: dict[str, str] = {}  # phone -> Klaviyo profile id
        self.sms_consent: dict[str, str] = {}  # phone -> SUBSCRIBED / UNSUBSCRIBED
        self._ids = itertools.count(1)
        self.base_url = ""
        super().__init__()

    def start(self) -> str:
        self.base_url = super().start()
        return self.base_url

    def register_routes(self) -> None:
        self.route("GET", "/api/lists/?", self.find_lists, query=True)
        self.route("POST", "/api/lists/?", self.create_list)
        self.route("GET", "/api/lists/(?P<list_id>[A-Za-z0-9]+)/?", self.get_list)
        self.route(
            "GET", "/api/lists/(?P<list_id>[A-Za-z0-9]+)/profiles/?", self.list_profiles, query=True
        )
        self.route(
            "DELETE",
            "/api/lists/(?P<list_id>[A-Za-z0-9]+)/relationships/profiles/?",
            self.remove_from_list,
        )
        self.route("POST", "/api/profile-subscription-bulk-create-jobs/?", self.bulk_subscribe)

    def authorized(self, headers) -> bool:
        return headers.get("Authorization") == f"Klaviyo-API-Key {self.token}"

    def check_headers(self, headers) -> None:
        revision = headers.get("revision")
        if not revision:
            raise VendorError(400, "the revision header is required (format YYYY-MM-DD)")
        if not REVISION_FORMAT.match(revision):
            raise VendorError(400, "the revision header must be a date, YYYY-MM-DD[.suffix]")
        if revision[:10] < OLDEST_REVISION:
            raise VendorError(
                400, f"revision {revision} is retired; send {OLDEST_REVISION} or later"
            )

    def idempotency_key(self, headers, body: dict) -> str | None:
        return None  # Klaviyo honours no idempotency key; these calls are set-like

    def error_body(self, error: VendorError) -> dict:
        code, title = CODES.get(error.status, ("error", "Error."))
        problem = {
            "id": str(uuid.uuid4()),
            "status": error.status,
            "code": code,
            "title": title,
            "detail": error.message,
        }
        if "pointer" in error.details:
            problem["source"] = {"pointer": error.details["pointer"]}
        return {"errors": [problem]}

    # -- lists ----------------------------------------------------------------------

    def find_lists(self, body, partial_share, query) -> Answer:
        selector = (query.get("filter") or [""])[0]
        if not selector:
            found = list(self.lists.items())
        else:
            wanted = re.fullmatch(r'equals\(name,"([^"]*)"\)', selector)
            if wanted is None:
                raise VendorError(
                    400, 'unsupported filter; lists filter on name, e.g. equals(name,"VIP")'
                )
            found = [
                (id_, list_) for id_, list_ in self.lists.items() if list_["name"] == wanted[1]
            ]
        return Answer(
            200,
            {
                "data": [_list_resource(id_, list_) for id_, list_ in found],
                "links": {"self": f"{self.base_url}/api/lists", "next": None},
            },
        )

    def create_list(self, body, partial_share) -> Answer:
        data = _resource(body, "list")
        name = (data.get("attributes") or {}).get("name")
        if not isinstance(name, str) or not name.strip():
            raise VendorError(400, "a list needs a name", pointer="/data/attributes/name")
        list_id = f"L{next(self._ids):05d}"
        with self._lock:
            self.lists[list_id] = {"name": name}
        return Answer(201, {"data": _list_resource(list_id, self.lists[list_id])})

    def get_list(self, body, partial_share, list_id) -> Answer:
        return Answer(200, {"data": _list_resource(list_id, self._list(list_id))})

    def list_profiles(self, body, partial_share, list_id, query) -> Answer:
        self._list(list_id)
        size = (query.get("page[size]") or ["20"])[0]
        if not size.isdigit() or not 1 <= int(size) <= MAX_PAGE_SIZE:
            raise VendorError(400, f"page[size] must be between 1 and {MAX_PAGE_SIZE}")
        cursor = (query.get("page[cursor]") or ["0"])[0]
        if not cursor.isdigit():
            raise VendorError(400, "page[cursor] is not a cursor this API gave out")
        phones = _phone_filter((query.get("filter") or [""])[0])

        on_list = sorted(p for p in self.members[list_id] if phones is None or p in phones)
        start, size = int(cursor), int(size)
        page = on_list[start : start + size]
        next_link = None
        if start + size < len(on_list):
            next_query = [
                (name, value)
                for name, values in query.items()
                if name != "page[cursor]"
                for value in values
            ]
            next_query.append(("page[cursor]", str(start + size)))
            next_link = f"{self.base_url}/api/lists/{list_id}/profiles?{urlencode(next_query)}"
        return Answer(
            200,
            {
                "data": [
                    {
                        "type": "profile",
                        "id": self.profiles[phone],
                        "attributes": {"phone_number": phone},
                    }
                    for phone in page
                ],
                "links": {
                    "self": f"{self.base_url}/api/lists/{list_id}/profiles",
                    "next": next_link,
                },
            },
        )

    def remove_from_list(self, body, partial_share, list_id) -> Answer:
        self._list(list_id)
        data = body.get("data")
        if not isinstance(data, list) or not data:
            raise VendorError(400, "data must be a list of profile identifiers", pointer="/data")
        if len(data) > MAX_REMOVE_PROFILES:
            raise VendorError(
                400,
                f"{len(data)} profiles given; at most {MAX_REMOVE_PROFILES} a call",
                pointer="/data",
            )
        phone_of = {profile_id: phone for phone, profile_id in self.profiles.items()}
        for index, item in enumerate(data):
            if not isinstance(item, dict) or item.get("type") != "profile" or "id" not in item:
                raise VendorError(
                    400,
                    'each entry must be {"type": "profile", "id": ...}',
                    pointer=f"/data/{index}",
                )
            if item["id"] not in phone_of:
                raise VendorError(404, f"profile {item['id']} does not exist")

        with self._lock:
            for item in data:
                phone = phone_of[item["id"]]
                if phone in self.members[list_id]:
                    self.apply_remove(list_id, phone)
        return Answer(204, {})

    # -- subscriptions --------------------------------------------------------------

    def bulk_subscribe(self, body, partial_share) -> Answer:
        data = _resource(body, "profile-subscription-bulk-create-job")
        attributes = data.get("attributes") or {}
        profiles = (attributes.get("profiles") or {}).get("data")
        if not isinstance(profiles, list) or not profiles:
            raise VendorError(
                400,
                "profiles.data must list the profiles to subscribe",
                pointer="/data/attributes/profiles/data",
            )
        if len(profiles) > MAX_SUBSCRIBE_PROFILES:
            raise VendorError(
                400,
                f"{len(profiles)} profiles given; at most {MAX_SUBSCRIBE_PROFILES} a job",
                pointer="/data/attributes/profiles/data",
            )
        for index, profile in enumerate(profiles):
            _check_sms_profile(profile, index, attributes.get("historical_import"))

        list_ref = (((data.get("relationships") or {}).get("list") or {}).get("data")) or {}
        list_id = list_ref.get("id")
        if list_id is not None:
            self._list(list_id)

        # A partial fault cannot apply: the job answers before it runs, row by row.
        with self._lock:
            for profile in profiles:
                phone = profile["attributes"]["phone_number"]
                self.profiles.setdefault(phone, f"P{next(self._ids):08d}")
                self.sms_consent[phone] = "SUBSCRIBED"
                if list_id is not None and phone not in self.members[list_id]:
                    self.apply_add(list_id, phone)
        return Answer(202, {})

    # -- helpers --------------------------------------------------------------------

    def _list(self, list_id: str) -> dict:
        if list_id not in self.lists:
            raise VendorError(404, f"list {list_id} does not exist")
        return self.lists[list_id]


def _resource(body: dict, kind: str) -> dict:
    data = body.get("data")
    if not isinstance(data, dict):
        raise VendorError(400, "the body must be a JSON:API document with a data object")
    if data.get("type") != kind:
        raise VendorError(400, f"data.type must be {kind!r}", pointer="/data/type")
    return data


def _check_sms_profile(profile, index: int, historical_import) -> None:
    pointer = f"/data/attributes/profiles/data/{index}"
    if not isinstance(profile, dict) or profile.get("type") != "profile":
        raise VendorError(400, 'each profile must be {"type": "profile", ...}', pointer=pointer)
    attributes = profile.get("attributes") or {}
    phone = attributes.get("phone_number")
    if phone is None:
        raise VendorError(
            400,
            "phone_number is required for an SMS subscription",
            pointer=f"{pointer}/attributes/phone_number",
        )
    if not isinstance(phone, str) or not E164.match(phone):
        # The message never repeats the number.
        raise VendorError(
            400,
            "phone_number must be in E.164 format: +, country code, number, no spaces",
            pointer=f"{pointer}/attributes/phone_number",
        )
    marketing = ((attributes.get("subscriptions") or {}).get("sms") or {}).get("marketing")
    if not isinstance(marketing, dict) or marketing.get("consent") != "SUBSCRIBED":
        raise VendorError(
            400,
            'subscriptions.sms.marketing.consent must be "SUBSCRIBED" to subscribe to SMS',
            pointer=f"{pointer}/attributes/subscriptions",
        )
    if "consented_at" in marketing and not historical_import:
        raise VendorError(
            400,
            "consented_at is only allowed with historical_import",
            pointer=f"{pointer}/attributes/subscriptions/sms/marketing/consented_at",
        )


def _phone_filter(selector: str) -> set[str] | None:
    if not selector:
        return None
    single = re.fullmatch(r'equals\(phone_number,"([^"]*)"\)', selector)
    if single:
        return {single[1]}
    several = re.fullmatch(r"any\(phone_number,(\[.*\])\)", selector)
    if several:
        try:
            values = json.loads(several[1])
        except ValueError:
            values = None
        if isinstance(values, list) and all(isinstance(v, str) for v in values):
            return set(values)
    raise VendorError(
        400, 'unsupported filter; use equals(phone_number,"...") or any(phone_number,[...])'
    )


def _list_resource(list_id: str, list_: dict) -> dict:
    return {"type": "list", "id": list_id, "attributes": {"name": list_["name"]}}
