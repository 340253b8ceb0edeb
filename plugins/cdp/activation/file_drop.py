"""Where file exports are written: a local folder or an S3 prefix.

A run's files are keyed by the run, so writing them again overwrites rather than
duplicates. The manifest is written last: its presence is what tells a consumer,
and a restarted run, that the files are complete.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"


class FileDrop(Protocol):
    def write(self, relative_path: str, content: bytes) -> str:
        """Store the bytes and return the full location written."""

    def exists(self, relative_path: str) -> bool: ...

    def read(self, relative_path: str) -> bytes: ...


@dataclass
class LocalFolderDrop:
    root: Path

    def write(self, relative_path: str, content: bytes) -> str:
        target = self.root / relative_path
        target.parent.mkdir(parents=True, exist_ok=True)

        # Write beside the target and rename, so a reader never sees half a file.
        partial = target.with_name(target.name + ".partial")
        partial.write_bytes(content)
        partial.replace(target)
        return str(target)

    def exists(self, relative_path: str) -> bool:
        return (self.root / relative_path).exists()

    def read(self, relative_path: str) -> bytes:
        return (self.root / relative_path).read_bytes()


@dataclass
class S3Drop:
    bucket: str
    prefix: str
    client: object

    def _key(self, relative_path: str) -> str:
        return f"{self.prefix}/{relative_path}" if self.prefix else relative_path

    def write(self, relative_path: str, content: bytes) -> str:
        key = self._key(relative_path)
        self.client.put_object(Bucket=self.bucket, Key=key, Body=content)
        return f"s3://{self.bucket}/{key}"

    def exists(self, relative_path: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(relative_path))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def read(self, relative_path: str) -> bytes:
        response = self.client.get_object(Bucket=self.bucket, Key=self._key(relative_path))
        return response["Body"].read()


def open_file_drop(location: str, connection_id: str | None = None) -> FileDrop:
    """A folder path or an s3:// URL, with S3 credentials from an Airflow connection."""
    parsed = urlparse(location)
    if parsed.scheme == "s3":
        return S3Drop(
            bucket=parsed.netloc,
            prefix=parsed.path.strip("/"),
            client=s3_client(connection_id),
        )
    if parsed.scheme in ("", "file"):
        return LocalFolderDrop(Path(parsed.path if parsed.scheme else location))
    raise ValueError(f"location {location!r} is neither a folder nor an s3:// URL")


def s3_client(connection_id: str | None):
    """A boto3 S3 client; an Airflow connection may carry keys, region and endpoint."""
    import boto3

    options: dict[str, str] = {}
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
