"""SMS provider destinations: the Klaviyo REST API shape (JSON:API, revision 2026-07-15).

A CDP audience is one Klaviyo list: `settings["lists"]` may name the list id per
audience id; otherwise the list named after the audience id is found or created.
Every request carries `Authorization: Klaviyo-API-Key <private key>` (the key is
the connection's password), the `revision` header pinning the API version, and JSON:API
bodies. The base URL is https://a.klaviyo.com.

Endpoints used:

- GET  /api/lists/{id}  checks a list named in settings exists;
- GET  /api/lists?filter=equals(name,"<audience id>")  finds the audience's list;
- POST /api/lists  {"data": {"type": "list", "attributes": {"name"}}}  creates it;
- POST /api/profile-subscription-bulk-create-jobs  (Bulk Subscribe Profiles) adds:
    {"data": {"type": "profile-subscription-bulk-create-job", "attributes":
    {"custom_source", "profiles": {"data": [{"type": "profile", "attributes":
    {"phone_number": E.164, "subscriptions": {"sms": {"marketing": {"consent":
    "SUBSCRIBED"}}}}}]}}, "relationships": {"list": {"data": {"type": "list", "id"}}}}}.
    Klaviyo takes up to 1,000 profiles a job and answers 202 with no body: the job
    runs later, so there are no per-row failures to read back, and the stand-in's
    `partial` fault does not apply here. The runner sends only members with SMS
    marketing consent, which is why every profile states it. Use single opt-in
    lists: on a double opt-in list Klaviyo texts each new profile for confirmation
    and adds it only once confirmed. Accounts with SMS age-gating also need a date of
    birth per profile, which this connector does not send.
- GET  /api/lists/{id}/profiles?filter=any(phone_number,[...])&page[size]=100
    then DELETE /api/lists/{id}/relationships/profiles  {"data": [{"type": "profile",
    "id"}]} for removals. Leaving an audience is not withdrawing consent, so removal
    takes the profile off the list (Remove Profiles from List) and never calls Bulk
    Unsubscribe (profile-subscription-bulk-delete-jobs), which would end the
    person's SMS subscription everywhere. Remove Profiles from List wants Klaviyo's
    profile ids, hence the lookup, which pages at most 100 profiles: a batch is
    therefore at most 100 members, in both directions. Its rate limit is the
    tightest (10/s burst, 150/min steady; the others 75/s, 750/min), so keep
    `rate_limit_per_second` at 2 or less for destinations that remove a lot.

Klaviyo has no idempotency key, but subscribing a subscribed list member and
removing a profile no longer on the list both change nothing, so a batch whose answer
was lost can be sent again. Errors arrive as {"errors": [{"status", "code", "title",
"detail", "source": {"pointer"}}]}; a task stopped by a 4xx reports each detail with
the JSON pointer to what was refused (vendor_http.vendor_message).
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from urllib.parse import quote

import httpx

from cdp.activation.connectors.base import Audience, Batch, BatchResult, Member
from cdp.activation.connectors.vendor_http import (
    DEFAULT_TIMEOUT_SECONDS,
    VendorHttp,
    endpoint_from_connection,
)

log = logging.getLogger(__name__)


class _NoPhonesInRequestLogs(logging.Filter):
    """httpx logs every request's URL at INFO; the list lookup's URL holds phone numbers.

    Airflow's logging config keeps httpx at WARNING, but a deployment may lower it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        if len(args) > 1 and isinstance(args[1], httpx.URL) and b"phone_number" in args[1].query:
            record.args = (args[0], args[1].copy_with(query=None), *args[2:])
        return True


_httpx_log = logging.getLogger("httpx")
if not any(isinstance(f, _NoPhonesInRequestLogs) for f in _httpx_log.filters):
    _httpx_log.addFilter(_NoPhonesInRequestLogs())

REVISION = "2026-07-15"
LOOKUP_PAGE_SIZE = 100  # Klaviyo's largest page of list profiles
MAX_PROFILES_PER_BATCH = LOOKUP_PAGE_SIZE  # a subscribe job would take 1,000
SUBSCRIBED_FOR_SMS_MARKETING = {"sms": {"marketing": {"consent": "SUBSCRIBED"}}}


class SmsProviderConnector:
    max_batch_size = MAX_PROFILES_PER_BATCH

    def __init__(self, destination):
        self.destination = destination
        # `cdp destinations check` has refused attributes (the subscription job carries a
        # phone number and consent only) and list ids that are not list ids.
        self.list_ids: dict[str, str] = (destination.settings or {}).get("lists") or {}
        endpoint = endpoint_from_connection(destination.connection_id)
        self._http = VendorHttp(
            destination.name,
            endpoint,
            {
                "Authorization": f"Klaviyo-API-Key {endpoint.token}",
                "revision": REVISION,
                "Accept": "application/vnd.api+json",
            },
            timeout_seconds=destination.timeout_seconds or DEFAULT_TIMEOUT_SECONDS,
        )

    def open_audience(self, audience: Audience) -> str:
        named = self.list_ids.get(audience.audience_id)
        if named:
            self._http.request("GET", f"/api/lists/{named}")  # a 404 says the id is wrong
            return named

        # Named after the audience id, which never changes, so a renamed audience
        # keeps its list and the members the ledger says it holds.
        name = audience.audience_id
        found = self._http.request("GET", "/api/lists?filter=" + quote(f'equals(name,"{name}")'))
        if found.get("data"):
            return found["data"][0]["id"]

        created = self._http.request(
            "POST", "/api/lists", json={"data": {"type": "list", "attributes": {"name": name}}}
        )
        list_id = created["data"]["id"]
        log.info("%s: created list %s for audience %s",
                 self.destination.name, list_id, audience.audience_id)  # fmt: skip
        return list_id

    def send(self, batch: Batch) -> BatchResult:
        list_id = batch.audience.vendor_audience_id
        profiles_by_phone, rejected = _phones_of(batch.members)
        if not profiles_by_phone:
            return BatchResult(accepted=0, rejected=rejected)

        if batch.operation == "add":
            self._subscribe(list_id, batch.audience.audience_id, sorted(profiles_by_phone))
            response = {"subscribed": len(profiles_by_phone)}
        else:
            klaviyo_ids = self._list_members(list_id, sorted(profiles_by_phone))
            if klaviyo_ids:
                self._http.request(
                    "DELETE",
                    f"/api/lists/{list_id}/relationships/profiles",
                    json={"data": [{"type": "profile", "id": id_} for id_ in klaviyo_ids]},
                )
            # A phone not found on the list is already off it: the removal holds.
            response = {
                "removed": len(klaviyo_ids),
                "not_on_list": len(profiles_by_phone) - len(klaviyo_ids),
            }

        accepted = sum(len(profiles) for profiles in profiles_by_phone.values())
        return BatchResult(accepted=accepted, rejected=rejected, vendor_response=response)

    def close(self) -> None:
        self._http.close()

    # -- the calls ---------------------------------------------------------------------

    def _subscribe(self, list_id: str, audience_id: str, phones: list[str]) -> None:
        self._http.request(
            "POST",
            "/api/profile-subscription-bulk-create-jobs",
            json={
                "data": {
                    "type": "profile-subscription-bulk-create-job",
                    "attributes": {
                        "custom_source": f"CDP audience {audience_id}",
                        "profiles": {
                            "data": [
                                {
                                    "type": "profile",
                                    "attributes": {
                                        "phone_number": phone,
                                        "subscriptions": SUBSCRIBED_FOR_SMS_MARKETING,
                                    },
                                }
                                for phone in phones
                            ]
                        },
                    },
                    "relationships": {"list": {"data": {"type": "list", "id": list_id}}},
                }
            },
        )

    def _list_members(self, list_id: str, phones: list[str]) -> list[str]:
        """Klaviyo's profile ids for those of these phones that are on the list."""
        selector = f"any(phone_number,{json.dumps(phones, separators=(',', ':'))})"
        first = (
            f"/api/lists/{list_id}/profiles?filter={quote(selector)}"
            f"&page[size]={LOOKUP_PAGE_SIZE}&fields[profile]=phone_number"
        )
        pages = self._http.pages(lambda link: link or first, _next_link)
        return [profile["id"] for page in pages for profile in page.get("data") or []]


def _next_link(page: dict, link: str | None) -> str | None:
    """JSON:API pages by link: each page carries the whole URL of the next, or null."""
    return (page.get("links") or {}).get("next")


def _phones_of(members: tuple[Member, ...]) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Each member's phone (the first, the only one the runner sends) to its profiles."""
    profiles_by_phone: dict[str, list[str]] = defaultdict(list)
    rejected = {}
    for member in members:
        phones = member.identities.get("phone_e164") or []
        if phones:
            profiles_by_phone[phones[0]].append(member.profile_id)
        else:
            rejected[member.profile_id] = "no phone_e164 identity to send"
    return dict(profiles_by_phone), rejected
