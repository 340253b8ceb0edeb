"""OAuth 2.0 access tokens for Google's APIs, kept fresh from a refresh token.

Google's access tokens lapse after about an hour, so a scheduled integration keeps a
refresh token with its OAuth client id and secret (what `gcloud auth
application-default login` or Google's OAuth consent flow hands out) and trades them
at the token endpoint for a new access token whenever it needs one:

    POST https://oauth2.googleapis.com/token      (form-encoded)
        grant_type=refresh_token, client_id, client_secret, refresh_token
    200 {"access_token", "expires_in": seconds, "scope", "token_type": "Bearer"}
    4xx {"error": "invalid_grant" | "invalid_client" | ..., "error_description"}

A token is fetched before the first request and again shortly before it lapses, or
when the API refuses it. An `invalid_grant` (the refresh token was revoked, expired or
never valid) or `invalid_client` cannot be retried away: it is a PermanentError naming
the Airflow connection. The token endpoint's 429, 5xx and timeouts are retryable, as
the API's are. Nothing here logs or raises a secret, a refresh token or an access token.

A connection may hold a static access token in its password instead; it is sent as it
is, and once it lapses the run fails with Google's answer.
"""

from __future__ import annotations

import logging
import time

import httpx

from cdp.activation.connectors.base import PermanentError, RetryableError

log = logging.getLogger(__name__)

DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
# Refresh this long before the token lapses (at most a tenth of its life), so a request
# never leaves with a token that lapses on its way.
REFRESH_MARGIN_SECONDS = 60.0
OAUTH_EXTRAS = ("client_id", "client_secret", "refresh_token")


class StaticAccessToken:
    """An access token held in the connection's password: sent as it is, never renewed."""

    can_refresh = False

    def __init__(self, token: str):
        self._token = token

    def current(self) -> str:
        return self._token

    def refresh(self) -> None:
        raise PermanentError("a static access token cannot be refreshed")

    def close(self) -> None:
        pass


class RefreshedAccessToken:
    """An access token obtained from a refresh token, and obtained again before it lapses."""

    can_refresh = True

    def __init__(
        self,
        *,
        connection_id: str,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        token_uri: str = DEFAULT_TOKEN_URI,
        timeout_seconds: float = 30.0,
        clock=time.monotonic,
    ):
        self.connection_id = connection_id
        self.token_uri = token_uri
        self._grant = {
            "grant_type": "refresh_token",
            "client_id": client_id,
            "client_secret": client_secret,
            "refresh_token": refresh_token,
        }
        self._clock = clock
        self._client = httpx.Client(timeout=httpx.Timeout(timeout_seconds))
        self._token: str | None = None
        self._refresh_at = 0.0

    def current(self) -> str:
        """A token that has a while to live, fetched first if the one held is about to lapse."""
        if self._token is None or self._clock() >= self._refresh_at:
            self.refresh()
        return self._token

    def refresh(self) -> None:
        # A token that needed replacing is not used again, even if no new one comes.
        self._token = None
        # Timed from before the request, so the token's life is never overestimated.
        asked_at = self._clock()
        answer = self._ask_for_token()

        token = answer.get("access_token")
        if not token or str(answer.get("token_type", "Bearer")).lower() != "bearer":
            raise PermanentError(
                f"Google's token endpoint {self.token_uri} answered without a Bearer access "
                f"token (Airflow connection {self.connection_id!r}); check extra token_uri"
            )
        lifetime = float(answer.get("expires_in") or 3600)
        self._token = token
        self._refresh_at = asked_at + lifetime - min(REFRESH_MARGIN_SECONDS, lifetime / 10)
        log.info(
            "Google: access token obtained for Airflow connection %s, valid for %d s",
            self.connection_id, lifetime,
        )  # fmt: skip

    def close(self) -> None:
        self._client.close()

    def _ask_for_token(self) -> dict:
        where = f"Google's token endpoint {self.token_uri}"
        try:
            response = self._client.post(self.token_uri, data=self._grant)
        except httpx.TimeoutException as error:
            raise RetryableError(f"{where}: no answer in time") from error
        except httpx.TransportError as error:
            raise RetryableError(f"{where}: connection failed ({type(error).__name__})") from error

        if response.status_code < 300:
            try:
                return response.json()
            except ValueError:
                raise PermanentError(f"{where} answered something other than JSON") from None
        if response.status_code == 429 or response.status_code >= 500:
            raise RetryableError(f"{where} answered {response.status_code}")
        raise PermanentError(self._refusal(response))

    def _refusal(self, response: httpx.Response) -> str:
        """Google's own words for a refused grant, and what to do about it."""
        try:
            body = response.json()
        except ValueError:
            body = {}
        error = str(body.get("error") or response.status_code)
        said = f"{error}: {body.get('error_description', response.reason_phrase)}"
        fix = {
            "invalid_grant": "the refresh token was revoked, has expired or belongs to another "
            "client; authorise again and store the new one in the connection's extra "
            "refresh_token",
            "invalid_client": "check the connection's extra client_id and client_secret",
        }.get(error, "check the connection's extra client_id, client_secret and refresh_token")
        return (
            f"Google refused the credentials of Airflow connection {self.connection_id!r} "
            f"({said}); {fix}"
        )


def access_token_from_connection(
    connection_id: str, password: str, extra: dict, *, timeout_seconds: float
) -> StaticAccessToken | RefreshedAccessToken:
    """A refresh token and client in the extra, or else a static token in the password."""
    given = [key for key in OAUTH_EXTRAS if extra.get(key)]
    if given and password:
        raise PermanentError(
            f"Airflow connection {connection_id!r} holds both a password (a static access "
            "token) and an OAuth refresh token in its extra; keep one: clear the password to "
            "refresh tokens automatically"
        )
    if given:
        missing = [key for key in OAUTH_EXTRAS if key not in given]
        if missing:
            raise PermanentError(
                f"Airflow connection {connection_id!r}: the extra lacks {', '.join(missing)}; "
                "a refresh token needs client_id, client_secret and refresh_token together"
            )
        return RefreshedAccessToken(
            connection_id=connection_id,
            client_id=str(extra["client_id"]),
            client_secret=str(extra["client_secret"]),
            refresh_token=str(extra["refresh_token"]),
            token_uri=str(extra.get("token_uri") or DEFAULT_TOKEN_URI),
            timeout_seconds=timeout_seconds,
        )
    if password:
        return StaticAccessToken(password)
    raise PermanentError(
        f"Airflow connection {connection_id!r} holds no Google credentials: put client_id, "
        "client_secret and refresh_token in its extra (or a static access token in its "
        "password); see docs/activation.md"
    )
