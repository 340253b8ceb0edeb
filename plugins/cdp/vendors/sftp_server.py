"""A stand-in SFTP server for file-export tests and the demo.

It is a real SSH server (asyncssh) on a free loopback port, speaking SFTP version 3
with OpenSSH's `posix-rename@openssh.com` extension, as the usual partner's OpenSSH
`internal-sftp` does. Clients log in with a user name and password (or a public key
the test registers) and see only the folder the server is rooted in, so a test reads
what arrived straight from disk. The host key is generated at start: nothing is read
from, or written to, ~/.ssh.

Faults: `drop_connection(after=N, operation=...)` closes the client's connection at
the N+1-th write (or rename) request, without applying it or, with `applied=True`,
after applying it but before answering: the two ways a dropped link can leave a
transfer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import asyncssh

log = logging.getLogger(__name__)

# The connection the shipped partner_sftp_drop destination names.
DEMO_CONNECTION_ID = "cdp_partner_sftp"
DEFAULT_USER = "cdp-exports"
DEFAULT_PASSWORD = "stand-in-password"


@dataclass
class _DropFault:
    operation: str  # "write" or "rename"
    after: int  # this many requests of the kind go through first
    applied: bool
    times: int
    seen: int = 0


class StandInSftpServer:
    """Start with `start()`, point a connection at `airflow_connection(...)`, `stop()` after."""

    def __init__(self, root: Path, user: str = DEFAULT_USER, password: str = DEFAULT_PASSWORD):
        self.root = Path(root)
        self.user = user
        self.password = password
        self.authorized_keys: list[asyncssh.SSHKey] = []
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.port = 0

        # What the tests assert on: requests seen, logins refused, connections dropped.
        self.writes = 0
        self.renames = 0
        self.refused_logins = 0
        self.dropped_connections = 0
        # Paths (as the client named them) in the order files arrived under their names.
        self.arrivals: list[str] = []

        self._faults: list[_DropFault] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._listener: asyncssh.SSHAcceptor | None = None

    # -- life cycle ------------------------------------------------------------------

    def start(self) -> StandInSftpServer:
        self.root.mkdir(parents=True, exist_ok=True)
        if logging.getLogger("asyncssh").level == logging.NOTSET:
            logging.getLogger("asyncssh").setLevel(logging.WARNING)  # a line per channel
        self._thread.start()
        self._listener = self._call(self._listen())
        self.port = self._listener.get_port()
        log.info("stand-in SFTP server on 127.0.0.1:%d rooted in %s", self.port, self.root)
        return self

    def stop(self) -> None:
        if self._listener is not None:
            self._call(self._close_listener())
            self._listener = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def __enter__(self) -> StandInSftpServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def host_public_key(self) -> str:
        """The host key in OpenSSH form, as a connection's `host_key` extra takes it."""
        return self.host_key.export_public_key().decode().strip()

    def airflow_connection(self, *, password: str | None = None, **extra) -> str:
        """The AIRFLOW_CONN_* value for this server (login, password, pinned host key)."""
        return json.dumps(
            {
                "conn_type": "sftp",
                "host": "127.0.0.1",
                "port": self.port,
                "login": self.user,
                "password": self.password if password is None else password,
                "extra": {"host_key": self.host_public_key, **extra},
            }
        )

    def use_for_demo_destinations(self, connection_id: str = DEMO_CONNECTION_ID) -> None:
        """Point the demo's SFTP destination at this server (its location's path is kept)."""
        os.environ[f"AIRFLOW_CONN_{connection_id.upper()}"] = self.airflow_connection()

    def location(self, folder: str = "exports") -> str:
        return f"sftp://127.0.0.1:{self.port}/{folder.strip('/')}"

    # -- faults ----------------------------------------------------------------------

    def drop_connection(
        self, *, after: int, operation: str = "write", applied: bool = False, times: int = 1
    ) -> None:
        """Close the connection at the (after+1)-th `operation` request from now."""
        if operation not in ("write", "rename"):
            raise ValueError(f"operation {operation!r}: expected 'write' or 'rename'")
        with self._lock:
            self._faults.append(_DropFault(operation, after, applied, times))

    def _fault_for(self, operation: str) -> _DropFault | None:
        """Count one request; return the fault it trips, if any."""
        with self._lock:
            for fault in self._faults:
                if fault.operation != operation or fault.times <= 0:
                    continue
                fault.seen += 1
                if fault.seen > fault.after:
                    fault.times -= 1
                    fault.seen = 0
                    return fault
        return None

    # -- the server ------------------------------------------------------------------

    def _call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    async def _close_listener(self) -> None:
        # On the loop's own thread: asyncio's server is not safe to close from another.
        self._listener.close()
        await self._listener.wait_closed()

    async def _listen(self) -> asyncssh.SSHAcceptor:
        stand_in = self

        class Logins(asyncssh.SSHServer):
            def begin_auth(self, username: str) -> bool:
                return True  # every user must authenticate

            def password_auth_supported(self) -> bool:
                return True

            def validate_password(self, username: str, password: str) -> bool:
                accepted = username == stand_in.user and password == stand_in.password
                if not accepted:
                    stand_in.refused_logins += 1
                return accepted

            def public_key_auth_supported(self) -> bool:
                return bool(stand_in.authorized_keys)

            def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
                wanted = {known.export_public_key() for known in stand_in.authorized_keys}
                return username == stand_in.user and key.export_public_key() in wanted

        def sftp_session(channel) -> _RootedSftp:
            return _RootedSftp(channel, stand_in)

        return await asyncssh.listen(
            "127.0.0.1",
            0,
            server_host_keys=[self.host_key],
            server_factory=Logins,
            sftp_factory=sftp_session,
            allow_scp=False,
        )


class _RootedSftp(asyncssh.SFTPServer):
    """asyncssh's local-filesystem SFTP server, chrooted, counting and dropping on cue."""

    def __init__(self, channel, stand_in: StandInSftpServer):
        super().__init__(channel, chroot=str(stand_in.root).encode())
        self._stand_in = stand_in

    def write(self, file_obj, offset: int, data: bytes):
        self._stand_in.writes += 1
        fault = self._stand_in._fault_for("write")
        if fault is not None and not fault.applied:
            self._drop()
        written = super().write(file_obj, offset, data)
        if fault is not None:
            file_obj.flush()
            self._drop()
        return written

    def posix_rename(self, oldpath: bytes, newpath: bytes):
        self._stand_in.renames += 1
        fault = self._stand_in._fault_for("rename")
        if fault is not None and not fault.applied:
            self._drop()
        super().posix_rename(oldpath, newpath)
        self._stand_in.arrivals.append(newpath.decode())
        if fault is not None:
            self._drop()
        return None

    def _drop(self):
        # Abort the TCP connection: the client gets no answer to this request (the
        # error raised here only ends the request on the server's side).
        self._stand_in.dropped_connections += 1
        self.connection.abort()
        raise asyncssh.SFTPConnectionLost("connection dropped by the stand-in")
