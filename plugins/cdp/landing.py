"""Land extract files into raw.<dataset>, one batch per file version, recorded in a ledger.

Landing keeps every physical row of a file, good or bad, with the file name and line it
came from: judging values is validation's job. Only a file whose header does not match
its declaration is rejected whole, because its columns cannot be trusted to mean what
they say. A file version is identified by its URL and sha256, so landing it again is a
no-op and a corrected re-export with the same name is a new batch.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import psycopg2.extensions

from cdp import datasets, landing_area, ledger_schema, warehouse
from cdp.datasets import Dataset

log = logging.getLogger(__name__)

# Rows are buffered as CSV and sent with COPY in slices of about this size, which keeps
# memory flat whatever the file size while COPY still does the heavy lifting.
_COPY_SLICE_CHARS = 8 * 1024 * 1024

# Serialises DDL from concurrent tasks: two CREATE SCHEMA IF NOT EXISTS can still collide.
_DDL_LOCK_KEY = 7_220_001


class FileChangedWhileLanding(RuntimeError):
    """The file's bytes no longer match the checksum it was discovered with."""


@dataclass
class _Parsed:
    """What parsing one file produced, besides the rows themselves."""

    rejection_reason: str | None = None
    rows: int = 0
    unparsed_rows: int = 0
    unknown_keys: set[str] = field(default_factory=set)


def ensure_tables() -> None:
    """Create the schemas, the ledger and each declared dataset's raw and validated tables."""
    with warehouse.connect() as conn, conn.cursor() as cursor:
        cursor.execute("select pg_advisory_xact_lock(%s)", (_DDL_LOCK_KEY,))
        cursor.execute(ledger_schema.schemas_ddl())
        cursor.execute(ledger_schema.LEDGER_DDL)

        for dataset in datasets.load_all().values():
            cursor.execute(ledger_schema.raw_table_ddl(dataset))
            cursor.execute(ledger_schema.validated_table_ddl(dataset))
            missing_columns = ledger_schema.added_columns_ddl(
                dataset,
                _existing_columns(cursor, datasets.RAW_SCHEMA, dataset.name),
                _existing_columns(cursor, datasets.VALIDATED_SCHEMA, dataset.name),
            )
            if missing_columns:
                log.info("adding newly declared columns to dataset %s", dataset.name)
                cursor.execute(missing_columns)


def discover_new_files(landing_url: str) -> list[dict]:
    """Files in the landing area whose exact version (URL and sha256) has not been landed."""
    ensure_tables()
    area = landing_area.open_landing_area(landing_url)

    found = []
    for file in area.files():
        fingerprint = landing_area.fingerprint(area, file)
        found.append(
            {
                "dataset": file.dataset,
                "file_url": file.file_url,
                "file_name": file.file_name,
                "checksum_sha256": fingerprint.checksum_sha256,
                "size_bytes": fingerprint.size_bytes,
            }
        )

    with warehouse.connect() as conn, conn.cursor() as cursor:
        cursor.execute("select file_url, checksum_sha256 from ops.landed_files")
        already_landed = set(cursor.fetchall())
    new_files = [f for f in found if (f["file_url"], f["checksum_sha256"]) not in already_landed]

    log.info("found %s files in %s, %s of them new", len(found), area.url, len(new_files))
    return new_files


def land_file(found: dict) -> dict:
    """Load one discovered file into raw.<dataset> as a new batch, all or nothing."""
    dataset = datasets.get(found["dataset"])
    area, file = landing_area.landing_file(found)

    with warehouse.connect() as conn, conn.cursor() as cursor:
        batch_id = _record_batch(cursor, found)
        if batch_id is None:
            return _existing_batch(cursor, found)

        with landing_area.open_contents(area, file) as contents:
            parsed = _copy_rows(cursor, dataset, batch_id, file.file_name, contents.stream)
            fingerprint = contents.fingerprint()
        if fingerprint.checksum_sha256 != found["checksum_sha256"]:
            # Rolling back leaves the new version for the next discovery to pick up.
            raise FileChangedWhileLanding(
                f"{file.file_url} changed between discovery and landing; nothing was "
                "loaded. It will be landed on the next run; upload files under a "
                "temporary name (.part) and rename them when complete."
            )

        status = _finish_batch(cursor, batch_id, parsed)

    log.info(
        "batch %s of %s %s: %s rows (%s unparsed, %s unknown keys ignored)",
        batch_id,
        dataset.name,
        status,
        parsed.rows,
        parsed.unparsed_rows,
        len(parsed.unknown_keys),
    )
    return {
        "batch_id": batch_id,
        "dataset": dataset.name,
        "status": status,
        "rows_landed": parsed.rows,
    }


def _existing_columns(cursor: psycopg2.extensions.cursor, schema: str, table: str) -> set[str]:
    cursor.execute(
        "select column_name from information_schema.columns "
        "where table_schema = %s and table_name = %s",
        (schema, table),
    )
    return {name for (name,) in cursor.fetchall()}


def _record_batch(cursor: psycopg2.extensions.cursor, found: dict) -> int | None:
    """A new batch id, or None when this file version already has one."""
    cursor.execute(
        """
        insert into ops.landed_files
            (dataset, file_url, file_name, checksum_sha256, size_bytes)
        values (%s, %s, %s, %s, %s)
        on conflict (file_url, checksum_sha256) do nothing
        returning batch_id
        """,
        (
            found["dataset"],
            found["file_url"],
            found["file_name"],
            found["checksum_sha256"],
            found["size_bytes"],
        ),
    )
    row = cursor.fetchone()
    return row[0] if row else None


def _existing_batch(cursor: psycopg2.extensions.cursor, found: dict) -> dict:
    cursor.execute(
        """
        select batch_id, dataset, status, rows_landed
        from ops.landed_files
        where file_url = %s and checksum_sha256 = %s
        """,
        (found["file_url"], found["checksum_sha256"]),
    )
    batch_id, dataset, status, rows_landed = cursor.fetchone()
    log.info("file version already landed as batch %s; nothing to do", batch_id)
    return {"batch_id": batch_id, "dataset": dataset, "status": status, "rows_landed": rows_landed}


def _finish_batch(cursor: psycopg2.extensions.cursor, batch_id: int, parsed: _Parsed) -> str:
    status = "rejected" if parsed.rejection_reason else "landed"
    cursor.execute(
        """
        update ops.landed_files
        set status = %s,
            rejection_reason = %s,
            rows_landed = %s,
            rows_unparsed = %s,
            unknown_keys_ignored = %s
        where batch_id = %s
        """,
        (
            status,
            parsed.rejection_reason,
            parsed.rows,
            parsed.unparsed_rows,
            len(parsed.unknown_keys),
            batch_id,
        ),
    )
    return status


def _copy_rows(
    cursor: psycopg2.extensions.cursor,
    dataset: Dataset,
    batch_id: int,
    file_name: str,
    stream: BinaryIO,
) -> _Parsed:
    """Parse the file and COPY its rows into raw.<dataset> in bounded slices."""
    lines = _Lines(stream)
    parsed = _Parsed()
    parse = _parse_csv if dataset.format == "csv" else _parse_jsonl
    copy_sql = (
        f"copy {dataset.raw_table} (_batch_id, _file_name, _line_number, "
        + "".join(f'"{name}", ' for name in dataset.column_names)
        + "_parse_error, _raw_record) from stdin with (format csv)"
    )

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for line_number, values, parse_error, raw_record in parse(dataset, file_name, lines, parsed):
        writer.writerow([batch_id, file_name, line_number, *values, parse_error, raw_record])
        parsed.rows += 1
        parsed.unparsed_rows += parse_error is not None
        if buffer.tell() >= _COPY_SLICE_CHARS:
            _send(cursor, copy_sql, buffer)
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")

    if parsed.rejection_reason is None:
        _send(cursor, copy_sql, buffer)
    return parsed


def _send(cursor: psycopg2.extensions.cursor, copy_sql: str, buffer: io.StringIO) -> None:
    buffer.seek(0)
    cursor.copy_expert(copy_sql, buffer)


# A parsed row: line number, declared column values (None for missing), parse error, and
# the record as it was in the file when it could not be parsed.
_Row = tuple[int, list[str | None], str | None, str | None]


def _parse_csv(dataset: Dataset, file_name: str, lines: _Lines, parsed: _Parsed) -> Iterator[_Row]:
    reader = csv.reader(lines)
    header = _read_header(reader)
    parsed.rejection_reason = _header_problem(dataset, file_name, header)
    if parsed.rejection_reason:
        return
    positions = [header.index(name) for name in dataset.column_names]
    declared_nulls: list[str | None] = [None] * len(positions)

    while True:
        first_line = reader.line_num + 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            problem = f"the line cannot be read as CSV: {error}"
            yield first_line, declared_nulls, problem, lines.take()
            continue
        raw_record = lines.take()
        if not record:
            continue  # a blank line carries no record

        problem = lines.problem_since(first_line)
        if problem is None and len(record) != len(header):
            problem = f"the line has {len(record)} fields where the header has {len(header)}"
        if problem:
            yield first_line, declared_nulls, problem, raw_record
        else:
            yield first_line, [record[position] or None for position in positions], None, None


def _read_header(reader: Iterator[list[str]]) -> list[str] | None:
    try:
        return [name.strip() for name in next(reader)]
    except (StopIteration, csv.Error):
        return None


def _header_problem(dataset: Dataset, file_name: str, header: list[str] | None) -> str | None:
    declared = set(dataset.column_names)
    if not header:
        return (
            f"{file_name}: the file is empty or its first line is not a CSV header; "
            f"re-export it with the header {','.join(dataset.column_names)}"
        )
    duplicated = sorted({name for name in header if header.count(name) > 1})
    missing = sorted(declared - set(header))
    unexpected = sorted(set(header) - declared)
    if not (duplicated or missing or unexpected):
        return None

    problems = []
    if missing:
        problems.append(f"missing columns {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected columns {', '.join(unexpected)}")
    if duplicated:
        problems.append(f"repeated columns {', '.join(duplicated)}")
    return (
        f"{file_name}: header does not match dataset {dataset.name}: {'; '.join(problems)}. "
        f"Re-export the file with exactly the declared columns "
        f"({', '.join(dataset.column_names)}), in any order, or change the declaration in "
        f"{dataset.declared_in.name} if the extract really changed. No rows were loaded."
    )


def _parse_jsonl(
    dataset: Dataset, file_name: str, lines: _Lines, parsed: _Parsed
) -> Iterator[_Row]:
    declared_nulls: list[str | None] = [None] * len(dataset.columns)
    for line in lines:
        line_number = lines.count
        raw_record = lines.take()
        if not line.strip():
            continue

        problem = lines.problem_since(line_number)
        record = None
        if problem is None:
            record, problem = _json_object(line)
        if problem:
            yield line_number, declared_nulls, problem, raw_record
            continue

        parsed.unknown_keys.update(record.keys() - set(dataset.column_names))
        values = [_as_text(record.get(name)) for name in dataset.column_names]
        yield line_number, values, None, None


def _json_object(line: str) -> tuple[dict | None, str | None]:
    try:
        # Numbers keep the exact text they had in the file; validation judges them.
        value = json.loads(line, parse_int=str, parse_float=str, parse_constant=str)
    except json.JSONDecodeError as error:
        return None, f"the line is not valid JSON: {error.msg} at column {error.colno}"
    if not isinstance(value, dict):
        return None, f"the line is a JSON {type(value).__name__}, not a JSON object"
    return value, None


def _as_text(value: object) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


class _Lines:
    """Text lines of a byte stream, numbered, with bytes Postgres cannot store flagged.

    A line that is not UTF-8 or holds a NUL byte is kept (with the bad bytes replaced) and
    its number remembered, so the row it belongs to lands with a parse error instead of
    failing the whole COPY.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.count = 0
        self._undecodable: set[int] = set()
        self._since_take: list[str] = []

    def __iter__(self) -> Iterator[str]:
        for raw in self._stream:
            self.count += 1
            if self.count == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # a byte order mark some spreadsheet exports add
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                line = raw.decode("utf-8", errors="replace")
                self._undecodable.add(self.count)
            if "\x00" in line:
                line = line.replace("\x00", "\ufffd")
                self._undecodable.add(self.count)
            self._since_take.append(line)
            yield line

    def take(self) -> str:
        """The text read since the last call: the record just parsed, as it was."""
        text = "".join(self._since_take).rstrip("\r\n")
        self._since_take = []
        return text

    def problem_since(self, first_line: int) -> str | None:
        if any(number in self._undecodable for number in range(first_line, self.count + 1)):
            return "the line is not UTF-8 text or holds a NUL byte (bad bytes shown as \ufffd)"
        return None
