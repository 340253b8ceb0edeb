"""File drops to an SFTP server (asyncssh), with credentials from an Airflow connection.

The location is `sftp://host[:port]/path`: the path is absolute on the server, or
relative to the login's home folder when it starts with `/~/`. The connection
(conn_type sftp, as Airflow's SFTP provider reads it) gives the login and either a
password or, in its extra, `private_key` (the key's text) or `key_file` (a path),
with `private_key_passphrase` when the key is encrypted. Its host and port, when set,
take precedence over the location's, as an API destination's base URL lives in its
connection: the same destination file then reaches a test or demo server. The server's host key is
checked against the extra's `host_key` (OpenSSH public key form) when given, else
against ~/.ssh/known_hosts; `no_host_key_check: true` turns the check off.

Each file is written under a `.partial` name and renamed over the final name
(OpenSSH's posix-rename), so a reader never sees half a file and a file sent again
replaces the first. One connection is kept per drop and opened again after a drop.
Failures come out as the runner's two kinds: RetryableError (connection refused,
lost or timed out) and PermanentError (refused login or host key, no permission),
each naming the connection.
"""

from __future__ import annotations

import asyncio
import logging
import posixpath
import threading
from urllib.parse import urlparse

import asyncssh

from cdp.activation.connectors.base import PermanentError, RetryableError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 30.0
_READ_CHUNK = 1 << 20


class SftpDrop:
    def __init__(self, location: str, connection, connection_id: str,
                 timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS):  # fmt: skip
        parsed = urlparse(location)
        if parsed.scheme != "sftp" or not (parsed.hostname or connection.host):
            raise ValueError(f"location {location!r} is not an sftp://host/path URL")
        self.host = connection.host or parsed.hostname
        self.port = connection.port or parsed.port or 22
        self.root = parsed.path.rstrip("/") or "/"
        if self.root.startswith("/~/") or self.root == "/~":
            self.root = self.root[3:] or "."  # relative to the login's home folder
        self.where = f"sftp://{self.host}:{self.port}{parsed.path.rstrip('/')}"
        self.connection_id = connection_id
        self.timeout_seconds = timeout_seconds
        self._options = _connect_options(connection, connection_id)

        # asyncssh logs every channel opened and closed at INFO; a run's log keeps to
        # one line per batch. Its warnings and errors still show.
        if logging.getLogger("asyncssh").level == logging.NOTSET:
            logging.getLogger("asyncssh").setLevel(logging.WARNING)

        # asyncssh is asynchronous and the runner is not: the drop owns an event loop
        # in a thread of its own, whatever loop (if any) the caller runs in.
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._ssh: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None
        # Folders known to exist: makedirs costs a round trip per path component.
        self._folders: set[str] = set()

    # -- the FileDrop interface ------------------------------------------------------

    def write(self, relative_path: str, content: bytes) -> str:
        self._run(self._write(self._path(relative_path), content), f"writing {relative_path}")
        return f"{self.where}/{relative_path}"

    def exists(self, relative_path: str) -> bool:
        return self._run(self._exists(self._path(relative_path)), f"looking for {relative_path}")

    def read(self, relative_path: str) -> bytes:
        return self._run(self._read(self._path(relative_path)), f"reading {relative_path}")

    def check(self) -> None:
        """Log in and make sure the root folder exists: bad credentials show up at once."""
        self._run(self._makedirs(self.root), "opening the folder")

    def close(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._disconnect(), self._loop).result(timeout=5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)

    # -- the conversation ------------------------------------------------------------

    def _path(self, relative_path: str) -> str:
        return posixpath.join(self.root, relative_path)

    async def _write(self, target: str, content: bytes) -> None:
        sftp = await self._session()
        await self._makedirs(posixpath.dirname(target))

        partial = target + ".partial"
        async with sftp.open(partial, "wb") as file:
            await file.write(content)
        try:
            await sftp.posix_rename(partial, target)
        except asyncssh.SFTPOpUnsupported:
            # A server without posix-rename will not rename over an existing file.
            if await sftp.exists(target):
                await sftp.remove(target)
            await sftp.rename(partial, target)

    async def _exists(self, target: str) -> bool:
        return await (await self._session()).exists(target)

    async def _read(self, target: str) -> bytes:
        sftp = await self._session()
        async with sftp.open(target, "rb", block_size=_READ_CHUNK) as file:
            return await file.read()

    async def _makedirs(self, folder: str) -> None:
        sftp = await self._session()
        if folder not in ("", ".", "/") and folder not in self._folders:
            await sftp.makedirs(folder, exist_ok=True)
            self._folders.add(folder)

    async def _session(self) -> asyncssh.SFTPClient:
        if self._sftp is None:
            self._ssh = await asyncssh.connect(
                self.host, self.port, connect_timeout=self.timeout_seconds, **self._options
            )
            self._sftp = await self._ssh.start_sftp_client()
        return self._sftp

    async def _disconnect(self) -> None:
        if self._sftp is not None:
            self._sftp.exit()
        if self._ssh is not None:
            self._ssh.abort()
        self._sftp = self._ssh = None
        self._folders.clear()

    def _run(self, coroutine, doing: str):
        """Run one operation on the drop's loop, with a timeout and the runner's errors."""
        bounded = asyncio.wait_for(coroutine, self.timeout_seconds)
        future = asyncio.run_coroutine_threadsafe(bounded, self._loop)
        try:
            return future.result()
        except Exception as error:
            translated = self._translate(error, doing)
            if translated is error:
                raise
            if isinstance(translated, RetryableError):
                # The link is in an unknown state: the next operation logs in afresh.
                asyncio.run_coroutine_threadsafe(self._disconnect(), self._loop).result(5)
            raise translated from error

    def _translate(self, error: Exception, doing: str) -> Exception:
        where = f"SFTP {self.where} (Airflow connection {self.connection_id!r}), {doing}"
        if isinstance(error, asyncssh.PermissionDenied):
            return PermanentError(
                f"{where}: the server refused the login ({error.reason}); check the "
                "connection's login and password or private_key"
            )
        if isinstance(error, asyncssh.HostKeyNotVerifiable):
            return PermanentError(
                f"{where}: the server's host key is not the one expected ({error.reason}); "
                "set the connection's extra 'host_key' to the server's public key"
            )
        if isinstance(error, asyncssh.SFTPPermissionDenied | asyncssh.SFTPNoSuchFile):
            return PermanentError(f"{where}: the server answered '{error.reason}'")
        if isinstance(error, asyncssh.SFTPError):
            return RetryableError(f"{where}: the server answered '{error.reason}'")
        if isinstance(error, asyncssh.DisconnectError):
            return RetryableError(f"{where}: the connection was lost ({error.reason})")
        if isinstance(error, TimeoutError):
            return RetryableError(f"{where}: no answer within {self.timeout_seconds:g} s")
        if isinstance(error, OSError):
            return RetryableError(f"{where}: cannot connect ({error.strerror or error})")
        return error


def _connect_options(connection, connection_id: str) -> dict:
    """asyncssh.connect options from an Airflow connection, as Airflow's SFTP hook reads it."""
    extra = connection.extra_dejson
    if not connection.login:
        raise PermanentError(
            f"Airflow connection {connection_id!r} has no login; set the SFTP user name"
        )
    options: dict = {"username": connection.login, "password": connection.password or None}

    passphrase = extra.get("private_key_passphrase")
    if extra.get("private_key"):
        options["client_keys"] = [
            asyncssh.import_private_key(extra["private_key"], passphrase=passphrase)
        ]
    elif extra.get("key_file"):
        options["client_keys"] = [extra["key_file"]]
        options["passphrase"] = passphrase
    else:
        # No key given: do not offer the worker's own ~/.ssh keys to a partner's server.
        options["client_keys"] = None

    if str(extra.get("no_host_key_check", "false")).lower() == "true":
        options["known_hosts"] = None
    elif extra.get("host_key"):
        options["known_hosts"] = ([asyncssh.import_public_key(extra["host_key"])], [], [])
    return options
