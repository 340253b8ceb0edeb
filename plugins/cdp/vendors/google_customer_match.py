"""A local stand-in for Google's Data Manager API, Customer Match audience members.

It serves the two methods the connector uses (https://datamanager.googleapis.com in
production):

    POST /v1/audienceMembers:ingest   add members to user lists
    POST /v1/audienceMembers:remove   remove members from user lists

Both take {destinations: [{operatingAccount {accountType, accountId}, loginAccount?,
productDestinationId}], audienceMembers: [{userData: {userIdentifiers: [{emailAddress} |
{phoneNumber}]}}], encoding, validateOnly}; ingest adds consent and termsOfService. Both
answer {requestId}.

Like Google, it is fast-fail: a request with any invalid member is refused whole (400
INVALID_ARGUMENT) and nothing in it is applied; the error's BadRequest detail names each
offending field, such as audienceMembers[3].userData.userIdentifiers[0].emailAddress.
It refuses identifiers that are not 64 lower-case hex characters, more than 10,000
members or 10 identifiers a member, missing destinations, accounts or fields, an
ingest whose Customer Match terms are not ACCEPTED, and (when constructed with
`user_lists`) a user list the operating account does not own. A `partial` fault refuses
that share of otherwise valid members in the same shape (reason INVALID_AUDIENCE_MEMBER).

Google offers no idempotency key for these methods; membership is a set, so a repeat
changes nothing there. The stand-in dedupes by the Idempotency-Key header the connector
sends anyway, so its counters show whether a batch was applied more than once.

Access tokens: it also serves Google's OAuth 2.0 token endpoint
(https://oauth2.googleapis.com/token in production) at POST /token. A form-encoded
grant_type=refresh_token with the known client id, secret and refresh token is
answered {access_token, expires_in, scope, token_type: Bearer}; the token lapses after
`token_lifetime_seconds` (Google's is about an hour), so a test can let one expire in
the middle of a run, or `expire_tokens()` at once. A revoked or unknown refresh token
is answered 400 invalid_grant, a wrong client 401 invalid_client, as Google words
them. The API refuses an expired or unknown access token with Google's 401
UNAUTHENTICATED. `token` (the class attribute) is a static access token, issued
elsewhere and never expiring here, for connections that hold a token in their password.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import time
import uuid

from cdp.vendors.stand_in import Answer, StandInVendor, VendorError

MAX_MEMBERS = 10_000
MAX_IDENTIFIERS = 10
MAX_DESTINATIONS = 10
ACCOUNT_TYPES = {"GOOGLE_ADS", "DISPLAY_VIDEO_PARTNER", "DISPLAY_VIDEO_ADVERTISER", "DATA_PARTNER"}
CONSENT_STATUSES = {"CONSENT_STATUS_UNSPECIFIED", "CONSENT_GRANTED", "CONSENT_DENIED"}
HASHED_IDENTIFIERS = ("emailAddress", "phoneNumber")
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
}

DATAMANAGER_SCOPE = "https://www.googleapis.com/auth/datamanager"
UNAUTHENTICATED_MESSAGE = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
    "cookie or other valid authentication credential."
)

_LOWER_HEX = re.compile(r"^[0-9a-f]*$")


class GoogleDataManagerStandIn(StandInVendor):
    name = "google"
    # The OAuth client and refresh token a connection holds to reach this stand-in.
    client_id = "local-client.apps.googleusercontent.com"
    client_secret = "local-client-secret"
    refresh_token = "1//local-refresh-token"

    def __init__(
        self, user_lists: dict[str, str] | None = None, token_lifetime_seconds: float = 3599
    ):
        # User list id -> the operating account that owns it; None accepts any list.
        self.user_lists = user_lists
        self.token_lifetime_seconds = token_lifetime_seconds
        self.refresh_tokens = {self.refresh_token}
        # Access token -> when it lapses (time.monotonic()).
        self.access_tokens: dict[str, float] = {}
        self.tokens_issued = 0
        self.tokens_refused = 0  # API requests answered 401
        super().__init__()

    def register_routes(self) -> None:
        self.route("POST", r"/v1/audienceMembers:ingest", self.ingest)
        self.route("POST", r"/v1/audienceMembers:remove", self.remove)
        self.route("POST", r"/token", self.issue_token, public=True)

    def oauth_connection(self, base_url: str) -> dict:
        """An Airflow connection that reaches this stand-in with a refresh token."""
        return {
            "conn_type": "http",
            "host": base_url,
            "extra": {
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "refresh_token": self.refresh_token,
                "token_uri": f"{base_url}/token",
            },
        }

    def expire_tokens(self) -> None:
        """Let every access token issued so far lapse now, as an hour passing would."""
        with self._lock:
            self.access_tokens = dict.fromkeys(self.access_tokens, 0.0)

    # -- OAuth 2.0 --------------------------------------------------------------------

    def issue_token(self, form: dict) -> Answer:
        if form.get("grant_type") != "refresh_token":
            return _oauth_error(400, "unsupported_grant_type", "Invalid grant_type: "
                                + form.get("grant_type", ""))  # fmt: skip
        for field in ("client_id", "client_secret", "refresh_token"):
            if not form.get(field):
                return _oauth_error(400, "invalid_request", f"Missing required parameter: {field}")
        if (form["client_id"], form["client_secret"]) != (self.client_id, self.client_secret):
            return _oauth_error(401, "invalid_client", "The OAuth client was not found.")
        if form["refresh_token"] not in self.refresh_tokens:
            return _oauth_error(400, "invalid_grant", "Token has been expired or revoked.")

        token = f"ya29.local-{uuid.uuid4().hex}"
        with self._lock:
            self.access_tokens[token] = time.monotonic() + self.token_lifetime_seconds
            self.tokens_issued += 1
        return Answer(
            200,
            {
                "access_token": token,
                "expires_in": int(self.token_lifetime_seconds),
                "scope": DATAMANAGER_SCOPE,
                "token_type": "Bearer",
            },
            {"Cache-Control": "no-store"},
        )

    def authentication_error(self, headers) -> VendorError | None:
        scheme, _, token = (headers.get("Authorization") or "").partition(" ")
        if scheme == "Bearer" and token == self.token:
            return None
        with self._lock:
            lapses_at = self.access_tokens.get(token) if scheme == "Bearer" else None
            if lapses_at is not None and time.monotonic() < lapses_at:
                return None
            self.tokens_refused += 1
        if not token:
            reason = "CREDENTIALS_MISSING"
        elif lapses_at is not None:
            reason = "ACCESS_TOKEN_EXPIRED"
        else:
            reason = "ACCESS_TOKEN_TYPE_UNSUPPORTED"
        return VendorError(401, UNAUTHENTICATED_MESSAGE, reason=reason)

    def error_body(self, error: VendorError) -> dict:
        message = error.message
        if error.status == 401:
            message = UNAUTHENTICATED_MESSAGE
        details = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": error.details.get("reason", STATUS_NAMES.get(error.status, "UNKNOWN")),
                "domain": "datamanager.googleapis.com",
            }
        ]
        if error.details.get("violations"):
            details.append(
                {
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": error.details["violations"],
                }
            )
        return {
            "error": {
                "code": error.status,
                "message": message,
                "status": STATUS_NAMES.get(error.status, "UNKNOWN"),
                "details": details,
            }
        }

    # -- the two methods ------------------------------------------------------------

    def ingest(self, body, partial_share):
        terms = (body.get("termsOfService") or {}).get("customerMatchTermsOfServiceStatus")
        if terms != "ACCEPTED":
            raise _invalid(
                "The Customer Match terms of service are not accepted",
                "termsOfService.customerMatchTermsOfServiceStatus",
                "TERMS_AND_CONDITIONS_NOT_SIGNED",
                "set it to ACCEPTED once the terms are accepted for the account",
            )
        _check_consent(body.get("consent"))
        return self._change(body, partial_share, self.apply_add)

    def remove(self, body, partial_share):
        return self._change(body, partial_share, self.apply_remove)

    def _change(self, body, partial_share, apply) -> Answer:
        destinations = self._checked_destinations(body.get("destinations"))
        members = _checked_members(body.get("audienceMembers"), body.get("encoding"))

        # Fast-fail: a refused member refuses the request, and nothing is applied.
        refused = math.ceil(len(members) * partial_share) if partial_share else 0
        if refused:
            raise _invalid(
                f"There was a problem with the request: {refused} audience members are invalid",
                [f"audienceMembers[{index}]" for index in range(refused)],
                "INVALID_AUDIENCE_MEMBER",
                "this audience member could not be processed; send it again",
            )
        if body.get("validateOnly") is True:
            return Answer(200, {"requestId": str(uuid.uuid4())})

        for destination in destinations:
            for member in members:
                for identifier in member["userData"]["userIdentifiers"]:
                    for value in identifier.values():
                        apply(destination["productDestinationId"], value)
        return Answer(200, {"requestId": str(uuid.uuid4())})

    def _checked_destinations(self, destinations) -> list[dict]:
        if not isinstance(destinations, list) or not destinations:
            raise _invalid("destinations is required", "destinations", "REQUIRED_FIELD_MISSING")
        if len(destinations) > MAX_DESTINATIONS:
            raise _invalid(
                f"At most {MAX_DESTINATIONS} destinations a request",
                "destinations",
                "TOO_MANY_DESTINATIONS",
            )
        for index, destination in enumerate(destinations):
            where = f"destinations[{index}]"
            if not isinstance(destination, dict):
                raise _invalid(f"{where} must be an object", where, "INVALID_DESTINATION")
            _check_account(destination.get("operatingAccount"), f"{where}.operatingAccount")
            if destination.get("loginAccount") is not None:
                _check_account(destination["loginAccount"], f"{where}.loginAccount")

            user_list = destination.get("productDestinationId")
            if not isinstance(user_list, str) or not user_list.isdigit():
                raise _invalid(
                    f"{where}.productDestinationId is required: the user list id",
                    f"{where}.productDestinationId",
                    "REQUIRED_FIELD_MISSING",
                )
            owner = destination["operatingAccount"]["accountId"]
            if self.user_lists is not None and self.user_lists.get(user_list) != owner:
                raise _invalid(
                    f"User list {user_list} is not a Customer Match list of account {owner}",
                    f"{where}.productDestinationId",
                    "INVALID_USER_LIST_ID",
                )
        return destinations


def _oauth_error(status: int, error: str, description: str) -> Answer:
    """Google's token endpoint answers errors in OAuth's own shape, not the API's."""
    return Answer(status, {"error": error, "error_description": description})


def _check_account(account, where: str) -> None:
    if not isinstance(account, dict):
        raise _invalid(f"{where} is required", where, "REQUIRED_FIELD_MISSING")
    if account.get("accountType") not in ACCOUNT_TYPES:
        raise _invalid(
            f"{where}.accountType must be one of {', '.join(sorted(ACCOUNT_TYPES))}",
            f"{where}.accountType",
            "INVALID_ENUM_VALUE",
        )
    account_id = account.get("accountId")
    if not isinstance(account_id, str) or not account_id.isdigit():
        raise _invalid(
            f"{where}.accountId must be the account's digits, without dashes",
            f"{where}.accountId",
            "INVALID_FORMAT",
        )


def _check_consent(consent) -> None:
    if consent is None:
        return
    for field in ("adUserData", "adPersonalization"):
        if consent.get(field, "CONSENT_STATUS_UNSPECIFIED") not in CONSENT_STATUSES:
            raise _invalid(f"consent.{field} is not a consent status", f"consent.{field}",
                           "INVALID_ENUM_VALUE")  # fmt: skip


def _checked_members(members, encoding) -> list[dict]:
    if not isinstance(members, list) or not members:
        raise _invalid("audienceMembers is required", "audienceMembers", "REQUIRED_FIELD_MISSING")
    if len(members) > MAX_MEMBERS:
        raise _invalid(
            f"audienceMembers has {len(members)} members; at most {MAX_MEMBERS} a request",
            "audienceMembers",
            "TOO_MANY_AUDIENCE_MEMBERS",
        )
    if encoding not in ("HEX", "BASE64"):
        raise _invalid(
            "encoding is required for user data: HEX or BASE64",
            "encoding",
            "REQUIRED_FIELD_MISSING",
        )

    violations = []
    for index, member in enumerate(members):
        if not _is_plainly_valid(member, encoding):
            violations.extend(_member_violations(f"audienceMembers[{index}]", member, encoding))
    if violations:
        raise VendorError(
            400,
            f"There was a problem with the request: {len(violations)} invalid fields",
            reason=violations[0]["reason"],
            violations=violations,
        )
    return members


def _is_plainly_valid(member, encoding: str) -> bool:
    """The common case, checked without building a message: hex SHA-256 digests only.

    Anything else (base64, or any doubt) gets the full check below, which names each
    problem; a benchmark sends ten thousand members a request through this.
    """
    try:
        identifiers = member["userData"]["userIdentifiers"]
        if encoding != "HEX" or not 0 < len(identifiers) <= MAX_IDENTIFIERS:
            return False
        for identifier in identifiers:
            ((name, value),) = identifier.items()
            if name not in HASHED_IDENTIFIERS or len(value) != 64 or not _LOWER_HEX.match(value):
                return False
    except (AttributeError, KeyError, TypeError, ValueError):
        return False
    return True


def _member_violations(where: str, member, encoding: str) -> list[dict]:
    identifiers = ((member or {}).get("userData") or {}).get("userIdentifiers")
    if not isinstance(identifiers, list) or not identifiers:
        return [_violation(f"{where}.userData.userIdentifiers", "REQUIRED_FIELD_MISSING",
                           "at least one user identifier is required")]  # fmt: skip
    if len(identifiers) > MAX_IDENTIFIERS:
        return [_violation(f"{where}.userData.userIdentifiers", "TOO_MANY_USER_IDENTIFIERS",
                           f"at most {MAX_IDENTIFIERS} identifiers a member")]  # fmt: skip

    violations = []
    for position, identifier in enumerate(identifiers):
        field_where = f"{where}.userData.userIdentifiers[{position}]"
        fields = [name for name in HASHED_IDENTIFIERS if name in (identifier or {})]
        if len(fields) != 1 or len(identifier) != 1:
            violations.append(_violation(field_where, "INVALID_FORMAT",
                                         "exactly one of emailAddress or phoneNumber"))  # fmt: skip
            continue
        problem = _hash_problem(identifier[fields[0]], encoding)
        if problem:
            violations.append(_violation(f"{field_where}.{fields[0]}", *problem))
    return violations


def _hash_problem(value, encoding: str) -> tuple[str, str] | None:
    """Why a value is not a SHA-256 digest in the declared encoding; None when it is."""
    if not isinstance(value, str):
        return "INVALID_FORMAT", "must be a string"
    if encoding == "HEX":
        if not _LOWER_HEX.match(value):
            return "INVALID_HEX_ENCODING", "not lower-case hex: normalise, hash, then hex-encode"
        digest_length = len(value) // 2
    else:
        try:
            digest_length = len(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            return "INVALID_BASE64_ENCODING", "not base64"
    if digest_length != 32 or (encoding == "HEX" and len(value) != 64):
        return "INVALID_SHA256_FORMAT", "not a SHA-256 digest (64 hex characters)"
    return None


def _violation(field: str, reason: str, description: str) -> dict:
    # Descriptions never repeat the value sent.
    return {"field": field, "description": description, "reason": reason}


def _invalid(message: str, fields, reason: str, description: str = "") -> VendorError:
    fields = [fields] if isinstance(fields, str) else fields
    return VendorError(
        400,
        message,
        reason=reason,
        violations=[_violation(field, reason, description or message) for field in fields],
    )
