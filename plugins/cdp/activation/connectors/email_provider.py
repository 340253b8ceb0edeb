"""Email provider destinations: the Mailchimp Marketing API v3 shape.

A CDP audience is one static segment (what Mailchimp's UI calls a tag) of one
Mailchimp list (an "audience" in their UI), the list named by `settings["list_id"]`.
The base URL is the data centre's API host (https://<dc>.api.mailchimp.com); the API
key is sent with HTTP Basic auth, any user name and the key as password.

Endpoints used:

- GET  /3.0/lists/{list_id}/segments?type=static&count=1000&offset=N
    pages through the list's static segments to find ours by name;
- POST /3.0/lists/{list_id}/segments  {"name", "static_segment": []}
    creates it when missing; its numeric id is the vendor audience id;
- POST /3.0/lists/{list_id}  {"members": [...], "update_existing": true}
    batch subscribe/update: each member {"email_address", "status_if_new":
    "subscribed", "merge_fields"}; at most 500 members. Only `status_if_new` is
    sent, never `status`, so a person who unsubscribed in Mailchimp stays
    unsubscribed. Refused rows come back in `errors` [{email_address, error,
    error_code}];
- POST /3.0/lists/{list_id}/segments/{segment_id}  {"members_to_add": [...]} or
    {"members_to_remove": [...]}: at most 500 addresses each. Removal takes the
    person out of the segment only; they stay on the list with their subscription.
    Refused addresses come back in `errors` [{email_addresses: [...], error}].

An add batch makes both calls: members must be on the list before the segment can
take them. Mailchimp has no idempotency key, but both calls are set operations (an
upsert, a membership), so repeating a batch whose answer was lost changes nothing.
Errors arrive as problem documents {type, title, status, detail, instance}; when the
body fails Mailchimp's schema, `detail` only points to `errors` [{field, message}],
so a task stopped by a 4xx reports both (vendor_http.vendor_message).
"""

from __future__ import annotations

import base64
import logging
from collections import defaultdict

from cdp.activation.connectors.base import (
    Audience,
    Batch,
    BatchResult,
    Member,
    PermanentError,
)
from cdp.activation.connectors.vendor_http import (
    DEFAULT_TIMEOUT_SECONDS,
    VendorHttp,
    endpoint_from_connection,
)

log = logging.getLogger(__name__)

MAX_MEMBERS_PER_REQUEST = 500
SEGMENT_PAGE_SIZE = 1000


class EmailProviderConnector:
    max_batch_size = MAX_MEMBERS_PER_REQUEST

    def __init__(self, destination):
        self.destination = destination
        self.list_id = (destination.settings or {}).get("list_id")
        if not self.list_id:
            raise PermanentError(
                f"destination {destination.name}: settings.list_id is missing; set it to "
                "the Mailchimp audience id (Audience > Settings > Audience name and defaults)"
            )
        endpoint = endpoint_from_connection(destination.connection_id)
        credentials = base64.b64encode(f"cdp:{endpoint.token}".encode()).decode()
        self._http = VendorHttp(
            destination.name,
            endpoint,
            {"Authorization": f"Basic {credentials}"},
            timeout_seconds=destination.timeout_seconds or DEFAULT_TIMEOUT_SECONDS,
        )

    def open_audience(self, audience: Audience) -> str:
        # Named after the audience id, which never changes: a renamed audience keeps
        # its segment and the members the ledger says it holds.
        name = audience.audience_id
        found = self._find_segment(name)
        if found is not None:
            return found

        created = self._http.request(
            "POST", f"/3.0/lists/{self.list_id}/segments", json={"name": name, "static_segment": []}
        )
        log.info("%s: created static segment %s for audience %s",
                 self.destination.name, created["id"], audience.audience_id)  # fmt: skip
        return str(created["id"])

    def send(self, batch: Batch) -> BatchResult:
        segment_id = batch.audience.vendor_audience_id
        profiles_by_email, rejected = _emails_of(batch.members)
        if not profiles_by_email:
            return BatchResult(accepted=0, rejected=rejected)

        if batch.operation == "add":
            refused = self._subscribe(batch.members, profiles_by_email)
            rejected.update(_by_profile(refused, profiles_by_email))
            for email in refused:
                del profiles_by_email[email]
            if not profiles_by_email:
                return BatchResult(accepted=0, rejected=rejected)

        field = "members_to_add" if batch.operation == "add" else "members_to_remove"
        answer = self._http.request(
            "POST",
            f"/3.0/lists/{self.list_id}/segments/{segment_id}",
            json={field: sorted(profiles_by_email)},
        )
        refused = {
            email: error["error"]
            for error in answer.get("errors") or []
            for email in error.get("email_addresses") or []
        }
        rejected.update(_by_profile(refused, profiles_by_email))

        accepted = sum(
            len(profiles) for email, profiles in profiles_by_email.items() if email not in refused
        )
        return BatchResult(
            accepted=accepted,
            rejected=rejected,
            vendor_response={
                "total_added": answer.get("total_added", 0),
                "total_removed": answer.get("total_removed", 0),
                "error_count": answer.get("error_count", 0),
            },
        )

    def close(self) -> None:
        self._http.close()

    # -- the two halves of an add, and the segment lookup --------------------------

    def _subscribe(self, members, profiles_by_email: dict[str, list[str]]) -> dict[str, str]:
        """Put the members on the list (new ones subscribed); the refused rows by email."""
        merge_fields = {}
        for member in members:
            emails = member.identities.get("email") or []
            if emails and emails[0] in profiles_by_email:
                # Mailchimp refuses null merge values; an unknown attribute is left out.
                merge_fields[emails[0]] = {
                    tag: value for tag, value in member.attributes.items() if value is not None
                }

        answer = self._http.request(
            "POST",
            f"/3.0/lists/{self.list_id}",
            json={
                "members": [
                    {
                        "email_address": email,
                        "status_if_new": "subscribed",
                        "merge_fields": merge_fields.get(email, {}),
                    }
                    for email in sorted(profiles_by_email)
                ],
                "update_existing": True,
            },
        )
        return {error["email_address"]: error["error"] for error in answer.get("errors") or []}

    def _find_segment(self, name: str) -> str | None:
        for page in self._http.pages(self._segments_page, _next_offset):
            for segment in page.get("segments") or []:
                if segment.get("name") == name:
                    return str(segment["id"])
        return None

    def _segments_page(self, offset: int | None) -> str:
        return (
            f"/3.0/lists/{self.list_id}/segments"
            f"?type=static&count={SEGMENT_PAGE_SIZE}&offset={offset or 0}"
        )


def _next_offset(page: dict, offset: int | None) -> int | None:
    """Mailchimp pages by offset, and each page says how many there are in all."""
    segments = page.get("segments") or []
    following = (offset or 0) + len(segments)
    return following if segments and following < page.get("total_items", 0) else None


def _emails_of(members: tuple[Member, ...]) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Each member's email (the first, the only one the runner sends) to its profiles.

    Two profiles can share an address; Mailchimp holds it once, so it is sent once and
    its outcome applies to both.
    """
    profiles_by_email: dict[str, list[str]] = defaultdict(list)
    rejected = {}
    for member in members:
        emails = member.identities.get("email") or []
        if emails:
            profiles_by_email[emails[0]].append(member.profile_id)
        else:
            rejected[member.profile_id] = "no email identity to send"
    return dict(profiles_by_email), rejected


def _by_profile(refused: dict[str, str], profiles_by_email: dict[str, list[str]]) -> dict:
    return {
        profile_id: reason
        for email, reason in refused.items()
        for profile_id in profiles_by_email.get(email, [])
    }
