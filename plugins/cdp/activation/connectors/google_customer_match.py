"""Google Customer Match, through the Data Manager API.

The vendor contract (https://datamanager.googleapis.com, or the Airflow connection's host):

    POST /v1/audienceMembers:ingest   add members to a Customer Match user list
    POST /v1/audienceMembers:remove   remove them

The body names one destination, {operatingAccount {accountType, accountId}, loginAccount
(optional), productDestinationId: the user list id}, and at most 10,000 audienceMembers,
each {userData: {userIdentifiers: [{emailAddress: hash}, {phoneNumber: hash}]}} (up to 10
identifiers). Hashes are lower-hex SHA-256 ("encoding": "HEX"): emailAddress of the
trimmed, lower-cased address (identity kind email_sha256), phoneNumber of the E.164
number with its '+' (phone_sha256). Ingest also carries consent {adUserData,
adPersonalization}, granted because members reach this connector only with advertising
consent, and termsOfService {customerMatchTermsOfServiceStatus: ACCEPTED}. Google answers
{requestId}.

Settings: operating_account_id (dashes allowed), operating_account_type (GOOGLE_ADS),
optional login_account_id / login_account_type for a manager account, and user_lists,
mapping each audience id to its user list id. User lists are created in Google Ads and
named here; open_audience returns the mapping and refuses an audience without one.

Refused members: the Data Manager API is fast-fail. A request with an invalid member is
refused whole (400 INVALID_ARGUMENT, nothing applied) with BadRequest field violations
naming audienceMembers[i]; it reports no per-member outcome for an accepted request
(processing diagnostics come later, from requestStatus:retrieve, per request). So when
every violation names members, the connector reports those members as rejected, with
Google's reason, and sends the rest again at once, as a new request; any other refusal
is a PermanentError in Google's words.

Idempotency: Data Manager takes no idempotency key. The connector sends the batch's
Idempotency-Key header anyway (Google ignores it; the stand-in dedupes on it) and relies
on Customer Match lists being sets: an ingest or removal repeated after a lost answer
leaves the list as one would.

Credentials: an OAuth 2.0 access token with the datamanager scope, sent as
Authorization: Bearer. The connection holds a refresh token with its OAuth client id
and secret in its extra (google_oauth.py trades them for access tokens, and again
before each lapses), or a static access token in its password. When Google answers
401 UNAUTHENTICATED, the token is refreshed and the request sent once more; a second
401, or a refresh token Google refuses, is a PermanentError in Google's words.
"""

from __future__ import annotations

import hashlib
import logging
import re

import httpx

from cdp.activation.connectors.base import (
    Audience,
    Batch,
    BatchResult,
    DeliveryError,
    PermanentError,
)
from cdp.activation.connectors.google_oauth import access_token_from_connection
from cdp.activation.connectors.vendor_http import (
    DEFAULT_TIMEOUT_SECONDS,
    VendorHttp,
    endpoint_from_connection,
    vendor_message,
)

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://datamanager.googleapis.com"
MAX_MEMBERS = 10_000
MAX_IDENTIFIERS = 10
# Identity kind -> the userIdentifiers field that carries it.
IDENTIFIER_FIELDS = {"email_sha256": "emailAddress", "phone_sha256": "phoneNumber"}
GRANTED = {"adUserData": "CONSENT_GRANTED", "adPersonalization": "CONSENT_GRANTED"}
_MEMBER_FIELD = re.compile(r"^audience_?members\[(\d+)\]", re.IGNORECASE)


class MembersRefused(PermanentError):
    """Google refused the request because of these members (by position in the request)."""

    def __init__(self, message: str, reasons: dict[int, str]):
        super().__init__(message)
        self.reasons = reasons


class GoogleCustomerMatchConnector:
    max_batch_size = MAX_MEMBERS

    def __init__(self, destination):
        self.destination = destination
        settings = destination.settings or {}
        self.target = _destination_body(destination.name, settings)
        self.user_lists = {str(k): str(v) for k, v in (settings.get("user_lists") or {}).items()}
        # The destination file's identities were checked against what Google takes.
        self.kinds = list(destination.identities)

        timeout = destination.timeout_seconds or DEFAULT_TIMEOUT_SECONDS
        endpoint = endpoint_from_connection(destination.connection_id, DEFAULT_BASE_URL)
        self._token = access_token_from_connection(
            destination.connection_id, endpoint.token, endpoint.extra, timeout_seconds=timeout
        )
        self._http = DataManagerHttp("Google Data Manager", endpoint, headers={},
                                     timeout_seconds=timeout)  # fmt: skip

    def open_audience(self, audience: Audience) -> str:
        user_list = self.user_lists.get(audience.audience_id)
        if not user_list:
            raise PermanentError(
                f"destination {self.destination.name}: no Customer Match user list for audience "
                f"{audience.audience_id!r}; create the list in Google Ads and add "
                f"settings.user_lists.{audience.audience_id}: <user list id> to "
                f"destinations/{self.destination.name}.yml"
            )
        return user_list

    def send(self, batch: Batch) -> BatchResult:
        if not batch.audience.vendor_audience_id:
            raise PermanentError("Google: the batch has no user list id; open_audience first")
        if len(batch.members) > MAX_MEMBERS:
            raise PermanentError(
                f"Google takes at most {MAX_MEMBERS} members a request, not {len(batch.members)}"
            )

        pending, rejected = [], {}
        for member in batch.members:
            identifiers = [
                {IDENTIFIER_FIELDS[kind]: value}
                for kind in self.kinds
                for value in member.identities.get(kind) or ()
            ][:MAX_IDENTIFIERS]
            if identifiers:
                pending.append((member.profile_id, identifiers))
            else:
                rejected[member.profile_id] = f"no {' or '.join(self.kinds)} to send to Google"

        # Fast-fail: drop the members Google names and send the others, until it takes them.
        path = (
            "/v1/audienceMembers:ingest"
            if batch.operation == "add"
            else "/v1/audienceMembers:remove"
        )
        request_ids, key = [], batch.idempotency_key
        while pending:
            try:
                answer = self._post(
                    path, self._body(batch, [identifiers for _, identifiers in pending]), key
                )
            except MembersRefused as refused:
                named = {
                    pending[i][0]: reason
                    for i, reason in refused.reasons.items()
                    if i < len(pending)
                }
                if not named:
                    raise
                rejected.update(named)
                pending = [entry for entry in pending if entry[0] not in named]
                key = _key_without(batch.idempotency_key, rejected)
                continue
            request_ids.append(answer.get("requestId"))
            break

        accepted = len(pending)
        log.info(
            "Google: %s batch %d/%d for user list %s: %d members taken, %d refused",
            batch.operation, batch.number, batch.total, batch.audience.vendor_audience_id,
            accepted, len(rejected),
        )  # fmt: skip
        return BatchResult(
            accepted=accepted,
            rejected=rejected,
            vendor_response={"request_ids": request_ids, "members_sent": accepted},
        )

    def _post(self, path: str, body: dict, key: str) -> dict:
        """One request, sent once more with a new token if Google no longer takes the old."""
        try:
            return self._http.request(
                "POST", path, json=body, idempotency_key=key, headers=self._authorization()
            )
        except TokenRefused as refused:
            if not self._token.can_refresh:
                raise PermanentError(
                    f"{refused}; the connection's password is a static access token, and "
                    "Google's lapse after about an hour: put client_id, client_secret and "
                    "refresh_token in the connection's extra instead (docs/activation.md)"
                ) from None

        # Revoked, or lapsed early: a 401 applied nothing, so the same request goes again.
        log.info("Google: access token refused; obtaining a new one and sending again")
        self._token.refresh()
        try:
            return self._http.request(
                "POST", path, json=body, idempotency_key=key, headers=self._authorization()
            )
        except TokenRefused as refused:
            raise PermanentError(
                f"{refused}; a newly obtained token was refused too: check that the OAuth "
                "client may use the Data Manager API (scope "
                "https://www.googleapis.com/auth/datamanager) for this account"
            ) from None

    def _authorization(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token.current()}"}

    def _body(self, batch: Batch, identifiers: list[list[dict]]) -> dict:
        body = {
            "destinations": [
                {**self.target, "productDestinationId": batch.audience.vendor_audience_id}
            ],
            "audienceMembers": [{"userData": {"userIdentifiers": ids}} for ids in identifiers],
            "encoding": "HEX",
            "validateOnly": False,
        }
        if batch.operation == "add":
            body["consent"] = dict(GRANTED)
            body["termsOfService"] = {"customerMatchTermsOfServiceStatus": "ACCEPTED"}
        return body

    def close(self) -> None:
        self._http.close()
        self._token.close()


class TokenRefused(PermanentError):
    """Google answered 401 UNAUTHENTICATED: the access token lapsed or was revoked."""


class DataManagerHttp(VendorHttp):
    """Reads Google's errors: a refused token, and refused members told from a bad request."""

    def vendor_error(self, response: httpx.Response) -> DeliveryError | None:
        if response.status_code == 401:
            return TokenRefused(f"Google answered 401: {vendor_message(response)}")
        if response.status_code != 400:
            return None
        try:
            error = response.json().get("error") or {}
        except (ValueError, AttributeError):
            return None

        violations = [
            violation
            for detail in error.get("details") or []
            for violation in detail.get("fieldViolations") or []
        ]
        if not violations:
            return None
        said = "; ".join(
            f"{v.get('field')}: {v.get('reason', '')} {v.get('description', '')}".strip()
            for v in violations[:5]
        )
        message = f"Google answered 400: {error.get('message')} ({said})"

        reasons = {}
        for violation in violations:
            found = _MEMBER_FIELD.match(str(violation.get("field", "")))
            if found is None:
                return PermanentError(message)  # the request itself is wrong, not a member
            index = int(found.group(1))
            reason = f"{violation.get('reason', 'INVALID')} {violation.get('description', '')}"
            reasons.setdefault(index, f"Google refused the member: {reason.strip()}")
        return MembersRefused(message, reasons)


def _key_without(key: str, rejected: dict[str, str]) -> str:
    """A new key for the request without the refused members, stable across retries."""
    digest = hashlib.sha256("\n".join(sorted(rejected)).encode()).hexdigest()[:16]
    return f"{key}-without-{digest}"


def _destination_body(destination: str, settings: dict) -> dict:
    account = _account_id(settings.get("operating_account_id"))
    if account is None:
        raise PermanentError(
            f"destination {destination}: settings.operating_account_id must be the Google Ads "
            "customer id that owns the user lists (for example 123-456-7890)"
        )
    body = {
        "operatingAccount": {
            "accountType": settings.get("operating_account_type", "GOOGLE_ADS"),
            "accountId": account,
        }
    }
    if settings.get("login_account_id"):
        login = _account_id(settings["login_account_id"])
        if login is None:
            raise PermanentError(
                f"destination {destination}: settings.login_account_id must be a customer id"
            )
        body["loginAccount"] = {
            "accountType": settings.get("login_account_type", "GOOGLE_ADS"),
            "accountId": login,
        }
    return body


def _account_id(value) -> str | None:
    digits = str(value or "").replace("-", "").strip()
    return digits if digits.isdigit() else None
