"""File exports: each batch one CSV or Parquet file, and a manifest written last.

Contract with the consumer (the partner reading the folder):

- A run's files live under `<location>/<audience_id>/<run>/`, where location is a
  folder (`${CDP_EXPORTS_DIR}` allowed), `s3://bucket/prefix` or
  `sftp://host:port/path` (see file_drop.py and sftp_drop.py for credentials).
- Each batch is one part file named after its operation and batch number:
  `additions-00001.csv`, `removals-00002.csv`, or in `full_file` mode
  `members-00001.parquet` (the whole audience, removals implied). A part holds at most
  `max_rows_per_file` rows. A batch sent again after a crash has the same name and
  replaces the earlier copy, so nothing is ever doubled.
- Columns: one per identity kind the destination accepts, in its order of preference,
  holding the member's first value of that kind (empty when it has none), then, in
  additions and members files, one per mapped attribute. There is no profile id: the
  file carries only what the destination was declared to receive.
- `manifest.json` is written last, once every batch of the run is in place: the
  destination, audience, run, format, identities and, for every part, its name,
  operation, rows, bytes and SHA-256. A folder without a manifest is incomplete and
  must be ignored; a consumer verifies each part against its checksum and reads only
  the parts the manifest lists (a part lost before the manifest is left out of it).
"""

from __future__ import annotations

import hashlib
import logging
import re

from cdp.activation.connectors.base import (
    Audience,
    Batch,
    BatchResult,
    Member,
    PermanentError,
    SentBatchesLost,
)
from cdp.activation.file_drop import MANIFEST_NAME, FileDrop, manifest_bytes, open_file_drop
from cdp.activation.file_formats import EXTENSIONS, count_rows, encode

log = logging.getLogger(__name__)

_PART_PREFIX = {"add": "additions", "remove": "removals"}


def run_folder(audience_id: str, run_key: str) -> str:
    """The run's folder, relative to the location; Airflow run ids hold ':' and '+'."""
    return f"{audience_id}/{re.sub(r'[^A-Za-z0-9_.-]', '_', run_key)}/"


class FileExportConnector:
    def __init__(self, destination):
        self.destination = destination
        self.max_batch_size = destination.max_rows_per_file
        self.file_format = destination.file_format
        if self.file_format not in EXTENSIONS:
            raise PermanentError(
                f"destination {destination.name}: file_format {self.file_format!r} is not "
                f"one of {', '.join(EXTENSIONS)}"
            )
        self.full_file = destination.export_mode == "full_file"
        self.identity_columns = list(destination.identities)
        self.attribute_columns = list(destination.attributes)

        clashes = sorted(set(self.identity_columns) & set(self.attribute_columns))
        if clashes:
            raise PermanentError(
                f"destination {destination.name}: attribute field(s) {', '.join(clashes)} "
                "would share a column with the identity of that name; rename them under "
                "'attributes'"
            )
        self._drop: FileDrop | None = None

    # -- the Connector protocol ------------------------------------------------------

    def open_audience(self, audience: Audience) -> str:
        """Reach the location once (refused credentials fail here); the folder is the id."""
        self._files().check()
        return f"{self._location().rstrip('/')}/{audience.audience_id}"

    def send(self, batch: Batch) -> BatchResult:
        name = self.part_name(batch.operation, batch.number)
        columns = self._columns(batch.operation)
        rows = [self._row(member, columns) for member in batch.members]
        content = encode(
            columns, rows, self.file_format, text_columns=frozenset(self.identity_columns)
        )

        path = run_folder(batch.audience.audience_id, batch.run_key) + name
        self._files().write(path, content)
        log.info(
            "destination=%s audience=%s run=%s part=%s rows=%d bytes=%d written",
            batch.destination, batch.audience.audience_id, batch.run_key, name, len(rows),
            len(content),
        )  # fmt: skip
        return BatchResult(
            accepted=len(rows),
            vendor_response={
                "file": name,
                "bytes": len(content),
                "sha256": hashlib.sha256(content).hexdigest(),
            },
        )

    def finish_run(self, audience: Audience, run_key: str, batches: list[dict]) -> dict:
        """Describe every part as it now stands in the folder, then write the manifest.

        Parts are read back rather than remembered: a run finished after a crash is
        finished by a process that never wrote its earlier parts, and the manifest must
        describe what the consumer will read.

        A part that is gone, or no longer holds the rows its batch sent, cannot be
        written again: its content left the ledger when the batch was confirmed. Then
        the run is finished without it and SentBatchesLost names it, so the runner
        records its batch as failed and its additions go again next run. An additions
        and removals run gets the manifest of the parts that are intact; a full file
        gets none, since it would tell the consumer that members are gone who are not,
        and the next full file replaces it.
        """
        unsent = [batch["number"] for batch in batches if batch.get("status", "sent") != "sent"]
        if unsent:
            raise ValueError(
                f"run {run_key}: batches {unsent} are not sent; a manifest would mark an "
                "incomplete folder complete"
            )

        folder = run_folder(audience.audience_id, run_key)
        files, lost = [], {}
        for batch in sorted(batches, key=lambda batch: batch["number"]):
            name = self.part_name(batch["operation"], batch["number"])
            if not self._files().exists(folder + name):
                lost[batch["number"]] = f"{name} is missing"
                continue
            content = self._files().read(folder + name)
            rows = count_rows(content, self.file_format)
            if rows != batch["rows"]:
                lost[batch["number"]] = (
                    f"{name} holds {rows} rows where batch {batch['number']} sent {batch['rows']}"
                )
                continue
            files.append(
                {
                    "name": name,
                    "operation": batch["operation"],
                    "rows": rows,
                    "bytes": len(content),
                    "sha256": hashlib.sha256(content).hexdigest(),
                }
            )

        manifest = {
            "destination": self.destination.name,
            "audience_id": audience.audience_id,
            "audience_name": audience.name,
            "run_key": run_key,
            "export_mode": self.destination.export_mode,
            "format": self.file_format,
            "identities": self.identity_columns,
            "attributes": self.attribute_columns,
            "rows": sum(part["rows"] for part in files),
            "files": files,
        }
        if not (lost and self.full_file):
            self._files().write(folder + MANIFEST_NAME, manifest_bytes(manifest))
            log.info(
                "destination=%s audience=%s run=%s manifest written: parts=%d rows=%d",
                self.destination.name, audience.audience_id, run_key, len(files),
                manifest["rows"],
            )  # fmt: skip
        if lost:
            raise self._lost(folder, lost)
        return manifest

    def _lost(self, folder: str, lost: dict[int, str]) -> SentBatchesLost:
        where = f"{self._location().rstrip('/')}/{folder}"
        if self.full_file:
            outcome = (
                "no manifest was written, so the consumer ignores this run; the next run "
                "sends the whole audience again"
            )
        else:
            outcome = (
                "the manifest lists the intact parts only; the additions of the lost parts "
                "go again next run, their removals cannot be rebuilt (docs/activation.md)"
            )
        return SentBatchesLost(
            f"{where}: {'; '.join(lost.values())} (deleted or overwritten at the destination "
            f"after it was written); {outcome}",
            lost,
        )

    def close(self) -> None:
        if self._drop is not None:
            self._drop.close()
            self._drop = None

    # -- files -----------------------------------------------------------------------

    def part_name(self, operation: str, number: int) -> str:
        prefix = "members" if self.full_file else _PART_PREFIX.get(operation, operation)
        return f"{prefix}-{number:05d}.{EXTENSIONS[self.file_format]}"

    def _columns(self, operation: str) -> list[str]:
        # A removal needs only the identities it removes.
        if operation == "remove":
            return self.identity_columns
        return self.identity_columns + self.attribute_columns

    def _row(self, member: Member, columns: list[str]) -> dict:
        row = {}
        for kind in self.identity_columns:
            values = member.identities.get(kind) or []
            row[kind] = values[0] if values else None
        for field in columns[len(self.identity_columns) :]:
            row[field] = member.attributes.get(field)
        return row

    def _location(self) -> str:
        location = self.destination.resolved_location()
        if not location:
            raise PermanentError(
                f"destination {self.destination.name}: no location; set 'location' to a "
                "folder, s3://bucket/prefix or sftp://host/path"
            )
        return location

    def _files(self) -> FileDrop:
        if self._drop is None:
            try:
                self._drop = open_file_drop(
                    self._location(),
                    self.destination.connection_id,
                    timeout_seconds=self.destination.timeout_seconds,
                )
            except (LookupError, ValueError) as error:
                raise PermanentError(f"destination {self.destination.name}: {error}") from None
        return self._drop
