"""The landing area where extracts arrive: a local folder or an S3 prefix, one interface.

Files are laid out as `<landing>/<dataset>/<file>`. A dataset folder whose name is not a
declared dataset is skipped and reported, so a typo in an upload path is visible rather
than silently ignored. Files whose names start with `.` or `_`, or end with `.part` or
`.tmp`, are uploads in progress or markers, and are never listed.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import urlparse

from cdp import datasets

log = logging.getLogger(__name__)

_IN_PROGRESS_SUFFIXES = (".part", ".tmp")
_READ_CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True)
class LandingFile:
    """One file as found in the landing area, before its contents are read."""

    dataset: str
    file_name: str
    file_url: str


@dataclass(frozen=True)
class Fingerprint:
    """What identifies one version of a file: the sha256 and size of its stored bytes."""

    checksum_sha256: str
    size_bytes: int


class LandingArea(Protocol):
    url: str

    def files(self) -> list[LandingFile]:
        """Files under declared dataset folders, sorted by URL."""
        ...

    def open_stored(self, file: LandingFile) -> BinaryIO:
        """The file's bytes as stored (still compressed for `*.gz`)."""
        ...


class LocalFolder:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.url = str(self.root)

    def files(self) -> list[LandingFile]:
        if not self.root.is_dir():
            log.warning("landing folder %s does not exist; no files to land", self.root)
            return []
        relative_paths = (
            path.relative_to(self.root).as_posix()
            for path in self.root.rglob("*")
            if path.is_file()
        )
        return _declared_files(self.url, relative_paths)

    def open_stored(self, file: LandingFile) -> BinaryIO:
        return open(file.file_url, "rb")


class S3Prefix:
    """An `s3://bucket/prefix`; boto3 finds the endpoint (AWS_ENDPOINT_URL) and credentials."""

    def __init__(self, bucket: str, prefix: str) -> None:
        import boto3

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self._client = boto3.client("s3")

    def files(self) -> list[LandingFile]:
        key_prefix = f"{self.prefix}/" if self.prefix else ""
        paginator = self._client.get_paginator("list_objects_v2")
        relative_keys = (
            item["Key"][len(key_prefix) :]
            for page in paginator.paginate(Bucket=self.bucket, Prefix=key_prefix)
            for item in page.get("Contents", [])
            if not item["Key"].endswith("/")
        )
        return _declared_files(self.url, relative_keys)

    def open_stored(self, file: LandingFile) -> BinaryIO:
        key = urlparse(file.file_url).path.lstrip("/")
        return self._client.get_object(Bucket=self.bucket, Key=key)["Body"]


def open_landing_area(url: str) -> LandingArea:
    """The landing area named by a folder path or an `s3://bucket/prefix` URL."""
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ValueError(f"landing URL {url!r} names no bucket; use s3://bucket/prefix")
        return S3Prefix(parsed.netloc, parsed.path)
    if parsed.scheme in ("", "file"):
        return LocalFolder(Path(parsed.path if parsed.scheme == "file" else url))
    raise ValueError(
        f"landing URL {url!r} has scheme {parsed.scheme!r}; use a folder path or s3://bucket/prefix"
    )


class FileContents:
    """A landed file opened for reading: decompressed bytes, fingerprinted as they stream.

    Fingerprinting the very bytes that are parsed means the checksum recorded for a batch
    always describes the rows loaded from it, even if the file is replaced mid-read.
    """

    def __init__(self, stored: BinaryIO, compressed: bool) -> None:
        self._stored = _FingerprintingReader(stored)
        buffered = io.BufferedReader(self._stored, buffer_size=_READ_CHUNK_BYTES)
        self.stream: BinaryIO = gzip.GzipFile(fileobj=buffered) if compressed else buffered

    def fingerprint(self) -> Fingerprint:
        """The stored bytes' fingerprint; reads whatever the parser left unread."""
        while self._stored.read(_READ_CHUNK_BYTES):
            pass
        return Fingerprint(self._stored.sha256.hexdigest(), self._stored.size_bytes)

    def close(self) -> None:
        self.stream.close()
        self._stored.close()

    def __enter__(self) -> FileContents:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def landing_file(found: dict) -> tuple[LandingArea, LandingFile]:
    """The area and file behind a discovered file's dict (as it travels through XCom)."""
    root_url = found["file_url"].rsplit("/", 2)[0]
    file = LandingFile(found["dataset"], found["file_name"], found["file_url"])
    return open_landing_area(root_url), file


def open_contents(area: LandingArea, file: LandingFile) -> FileContents:
    return FileContents(area.open_stored(file), compressed=file.file_name.endswith(".gz"))


def fingerprint(area: LandingArea, file: LandingFile) -> Fingerprint:
    with FileContents(area.open_stored(file), compressed=False) as contents:
        return contents.fingerprint()


class _FingerprintingReader(io.RawIOBase):
    def __init__(self, stored: BinaryIO) -> None:
        self._stored = stored
        self.sha256 = hashlib.sha256()
        self.size_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        chunk = self._stored.read(len(buffer))
        self.sha256.update(chunk)
        self.size_bytes += len(chunk)
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def close(self) -> None:
        self._stored.close()
        super().close()


def _declared_files(root_url: str, relative_paths: Iterable[str]) -> list[LandingFile]:
    declared = datasets.load_all()
    found = []
    unknown_folders: set[str] = set()
    for relative in relative_paths:
        folder, _, file_name = relative.partition("/")
        if not file_name or "/" in file_name or _is_in_progress(file_name):
            continue
        if folder not in declared:
            unknown_folders.add(folder)
            continue
        found.append(LandingFile(folder, file_name, f"{root_url}/{folder}/{file_name}"))

    for folder in sorted(unknown_folders):
        log.warning(
            "landing folder %r is not a declared dataset; its files are skipped (declared: %s)",
            folder,
            ", ".join(sorted(declared)),
        )
    return sorted(found, key=lambda file: file.file_url)


def _is_in_progress(file_name: str) -> bool:
    return file_name.startswith((".", "_")) or file_name.endswith(_IN_PROGRESS_SUFFIXES)
