"""The bytes of one export file: CSV (stdlib) or Parquet (pyarrow), header or schema first.

CSV is UTF-8 with a header row and `\\n` line ends; an absent value is an empty field,
booleans are `true` / `false`, and nested values are written as JSON. Parquet columns
take their type from the values (integers, floats, booleans, text); identity columns
and columns with no value are text, and a column whose values disagree in type falls
back to text rather than failing the export.
"""

from __future__ import annotations

import csv
import io
import json

FORMATS = ("csv", "parquet")
EXTENSIONS = {"csv": "csv", "parquet": "parquet"}


def encode(columns: list[str], rows: list[dict], file_format: str, *,
           text_columns: frozenset[str] = frozenset()) -> bytes:  # fmt: skip
    """One file holding `rows` (dicts keyed by column name) in `file_format`."""
    if file_format == "csv":
        return _csv(columns, rows)
    if file_format == "parquet":
        return _parquet(columns, rows, text_columns)
    raise ValueError(f"file_format {file_format!r}: expected one of {', '.join(FORMATS)}")


def count_rows(content: bytes, file_format: str) -> int:
    """The data rows in a file as a reader sees them (the header is not a row)."""
    if file_format == "csv":
        return max(0, sum(1 for _ in csv.reader(io.StringIO(content.decode()))) - 1)

    import pyarrow as pa
    import pyarrow.parquet as pq

    return pq.read_metadata(pa.BufferReader(content)).num_rows


def _csv(columns: list[str], rows: list[dict]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_text(row.get(column)) for column in columns])
    return buffer.getvalue().encode()


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _parquet(columns: list[str], rows: list[dict], text_columns: frozenset[str]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = []
    for column in columns:
        values = [row.get(column) for row in rows]
        arrays.append(_typed_array(pa, values, as_text=column in text_columns))
    table = pa.Table.from_arrays(arrays, names=columns)

    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def _typed_array(pa, values: list, *, as_text: bool):
    """The values' own Arrow type when they agree on one; text otherwise."""
    if not as_text and any(value is not None for value in values):
        try:
            return pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass  # mixed types (say 3 and "3+"): keep every value, as text
    return pa.array([None if value is None else _text(value) for value in values], pa.string())
