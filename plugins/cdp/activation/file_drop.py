"""Where file exports are written: a local folder, an S3 prefix or an SFTP folder.

A run's files are keyed by the run, so writing them again overwrites rather than
duplicates. The manifest is written last: its presence is what tells a consumer,
and a restarted run, that the files are complete.

Each drop reports failures as the runner's two kinds, naming the location and the
Airflow connection: RetryableError when trying again may help (a lost connection, a
timeout, S3's 5xx and SlowDown) and PermanentError when it cannot (refused
credentials, a missing bucket, no permission).
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

from cdp.activation.connectors.base import PermanentError, RetryableError

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"

# S3 error codes that another attempt can get past; any other 4xx is final.
_S3_RETRYABLE_CODES = {"SlowDown", "RequestTimeout", "RequestTimeTooSkewed", "InternalError",
                       "ServiceUnavailable", "Throttling", "ThrottlingException"}  # fmt: skip


class FileDrop(Protocol):
    def write(self, relative_path: str, content: bytes) -> str:
        """Store the bytes and return the full location written."""

    def exists(self, relative_path: str) -> bool: ...

    def read(self, relative_path: str) -> bytes: ...

    def check(self) -> None:
        """Reach the location once, so refused credentials fail before any file goes."""

    def close(self) -> None: ...


@dataclass
class LocalFolderDrop:
    root: Path

    def write(self, relative_path: str, content: bytes) -> str:
        target = self.root / relative_path
        with self._errors(f"writing {relative_path}"):
            target.parent.mkdir(parents=True, exist_ok=True)

            # Write beside the target and rename, so a reader never sees half a file.
            partial = target.with_name(target.name + ".partial")
            partial.write_bytes(content)
            partial.replace(target)
        return str(target)

    def exists(self, relative_path: str) -> bool:
        return (self.root / relative_path).exists()

    def read(self, relative_path: str) -> bytes:
        with self._errors(f"reading {relative_path}"):
            return (self.root / relative_path).read_bytes()

    def check(self) -> None:
        with self._errors("creating the folder"):
            self.root.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        pass

    @contextlib.contextmanager
    def _errors(self, doing: str):
        try:
            yield
        except (PermissionError, FileNotFoundError, NotADirectoryError) as error:
            raise PermanentError(f"folder {self.root}, {doing}: {error.strerror}") from error
        except OSError as error:
            # A full disk or a network share that went away may be back on a retry.
            raise RetryableError(f"folder {self.root}, {doing}: {error.strerror}") from error


@dataclass
class S3Drop:
    bucket: str
    prefix: str
    client: object
    connection_id: str | None = None

    def _key(self, relative_path: str) -> str:
        return f"{self.prefix}/{relative_path}" if self.prefix else relative_path

    def write(self, relative_path: str, content: bytes) -> str:
        key = self._key(relative_path)
        with self._errors(f"writing {relative_path}"):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=content)
        return f"s3://{self.bucket}/{key}"

    def exists(self, relative_path: str) -> bool:
        from botocore.exceptions import ClientError

        with self._errors(f"looking for {relative_path}"):
            try:
                self.client.head_object(Bucket=self.bucket, Key=self._key(relative_path))
            except ClientError as error:
                code = error.response.get("Error", {}).get("Code")
                if code in ("404", "NoSuchKey", "NotFound"):
                    return False
                raise
        return True

    def read(self, relative_path: str) -> bytes:
        with self._errors(f"reading {relative_path}"):
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(relative_path))
            return response["Body"].read()

    def check(self) -> None:
        with self._errors("opening the bucket"):
            self.client.head_bucket(Bucket=self.bucket)

    def close(self) -> None:
        pass

    @contextlib.contextmanager
    def _errors(self, doing: str):
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        where = f"s3://{self.bucket}/{self.prefix} (Airflow connection {self.connection_id!r})"
        try:
            yield
        except ClientError as error:
            details = error.response.get("Error", {})
            code = str(details.get("Code", ""))
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            message = f"{where}, {doing}: S3 answered {code} {details.get('Message', '')}"
            if code in _S3_RETRYABLE_CODES or status >= 500:
                raise RetryableError(message.strip()) from error
            if code in ("NoSuchKey", "404") and "bucket" not in doing:
                raise PermanentError(message.strip() + "; the file is not there") from error
            raise PermanentError(
                message.strip() + "; check the bucket name and the connection's keys"
            ) from error
        except NoCredentialsError as error:
            raise PermanentError(
                f"{where}, {doing}: no AWS credentials; set the connection's login and password"
            ) from error
        except BotoCoreError as error:
            # Connection refused or closed, timeouts: the endpoint may answer next time.
            raise RetryableError(f"{where}, {doing}: {error}") from error


def open_file_drop(
    location: str, connection_id: str | None = None, *, timeout_seconds: float | None = None
) -> FileDrop:
    """A folder path, an s3:// or an sftp:// URL, with credentials from an Airflow connection."""
    parsed = urlparse(location)
    if parsed.scheme == "s3":
        return S3Drop(
            bucket=parsed.netloc,
            prefix=parsed.path.strip("/"),
            client=s3_client(connection_id, timeout_seconds=timeout_seconds),
            connection_id=connection_id,
        )
    if parsed.scheme == "sftp":
        from cdp.activation.sftp_drop import DEFAULT_TIMEOUT_SECONDS, SftpDrop

        if not connection_id:
            raise ValueError(f"location {location!r} needs a connection_id with the SFTP login")
        return SftpDrop(
            location,
            airflow_connection(connection_id),
            connection_id,
            timeout_seconds=timeout_seconds or DEFAULT_TIMEOUT_SECONDS,
        )
    if parsed.scheme in ("", "file"):
        return LocalFolderDrop(Path(parsed.path if parsed.scheme else location))
    raise ValueError(f"location {location!r} is neither a folder nor an s3:// or sftp:// URL")


def s3_client(connection_id: str | None, *, timeout_seconds: float | None = None):
    """A boto3 S3 client; an Airflow connection may carry keys, region and endpoint.

    With a timeout, the client makes one attempt per call: the activation runner does
    the retrying, with its own back-off, and counts the attempts in the ledger.
    """
    import boto3
    from botocore.config import Config

    options: dict = {}
    if connection_id:
        connection = airflow_connection(connection_id)
        extra = connection.extra_dejson
        if connection.login:
            options["aws_access_key_id"] = connection.login
            options["aws_secret_access_key"] = connection.password or ""
        if extra.get("region_name"):
            options["region_name"] = extra["region_name"]
        if extra.get("endpoint_url"):
            options["endpoint_url"] = extra["endpoint_url"]
    if timeout_seconds is not None:
        options["config"] = Config(
            connect_timeout=timeout_seconds,
            read_timeout=timeout_seconds,
            retries={"total_max_attempts": 1},
        )
    # Otherwise boto3's own chain applies (environment, AWS_ENDPOINT_URL, profile, role).
    return boto3.client("s3", **options)


def airflow_connection(connection_id: str):
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(connection_id)
    except AirflowNotFoundException:
        raise LookupError(
            f"Airflow connection {connection_id!r} is not defined; create it in the UI "
            f"(Admin > Connections) or set AIRFLOW_CONN_{connection_id.upper()} "
            "(see README, 'Your own Postgres and S3')"
        ) from None


def manifest_bytes(manifest: dict) -> bytes:
    return json.dumps(manifest, indent=2, sort_keys=True).encode()
