"""Dataset declarations, read from the dbt source files that hold them.

Each extract is declared once, as a dbt source whose table and column `meta` say how
the file is laid out and what its columns mean. From that one declaration the platform
derives the raw landing table, the validated table dbt reads, and the Great
Expectations suite. Adding a dataset means adding one source file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml

from cdp import settings

SUPPORTED_TYPES = ("text", "integer", "numeric", "boolean", "date", "timestamptz")
SUPPORTED_FORMATS = ("csv", "jsonl")
SUPPORTED_KINDS = ("record", "event")

RAW_SCHEMA = "raw"
VALIDATED_SCHEMA = "validated"

# Columns the platform adds to every landed row, so each row can be traced back to
# the file and line it came from.
LINEAGE_COLUMNS = ("_batch_id", "_file_name", "_line_number")


class DeclarationError(ValueError):
    """A dataset declaration that cannot be used; the message names file and fix."""


@dataclass(frozen=True)
class Column:
    name: str
    data_type: str
    required: bool = False
    identity: str | None = None
    profile_attribute: bool = False
    allowed_values: tuple[str, ...] = ()
    pii: bool = False
    # Data-usage labels (for instance "sensitive"): destinations/policies/data_usage.yml
    # says which marketing actions each label forbids.
    data_usage: tuple[str, ...] = ()


@dataclass(frozen=True)
class Dataset:
    name: str
    source: str
    format: str
    kind: str
    profile_enabled: bool
    record_key: str
    timestamp_column: str
    columns: tuple[Column, ...]
    max_bad_row_share: float = 0.1
    require_any_of: tuple[str, ...] = ()
    event_type: str | None = None
    event_type_column: str | None = None
    declared_in: Path = field(default=Path(), compare=False)

    @property
    def column_names(self) -> list[str]:
        return [column.name for column in self.columns]

    @property
    def raw_table(self) -> str:
        return f'{RAW_SCHEMA}."{self.name}"'

    @property
    def validated_table(self) -> str:
        return f'{VALIDATED_SCHEMA}."{self.name}"'

    def column(self, name: str) -> Column:
        return next(column for column in self.columns if column.name == name)


def _declaration_files() -> list[Path]:
    staging = settings.DBT_PROJECT_DIR / "models" / "staging"
    return sorted(staging.glob("*/_*__sources.yml"))


@cache
def load_all() -> dict[str, Dataset]:
    """Every declared dataset by name, checked for mistakes before any file is read."""
    datasets: dict[str, Dataset] = {}
    for path in _declaration_files():
        document = yaml.safe_load(path.read_text()) or {}
        for source in document.get("sources", []):
            for table in source.get("tables", []):
                meta = (table.get("config") or {}).get("meta", {}).get("dataset")
                if meta is None:
                    continue
                dataset = _parse_table(path, source["name"], table, meta)
                if dataset.name in datasets:
                    raise DeclarationError(
                        f"{path}: dataset {dataset.name!r} is also declared in "
                        f"{datasets[dataset.name].declared_in}; keep one declaration."
                    )
                datasets[dataset.name] = dataset
    return datasets


def get(name: str) -> Dataset:
    datasets = load_all()
    if name not in datasets:
        raise DeclarationError(
            f"no dataset named {name!r}; declared datasets are {sorted(datasets)}. "
            "Add a source file under dbt_project/models/staging/ to declare it."
        )
    return datasets[name]


def _parse_table(path: Path, source_name: str, table: dict, meta: dict) -> Dataset:
    name = table["name"]
    problems: list[str] = []

    columns = []
    for raw_column in table.get("columns", []):
        column_meta = (raw_column.get("config") or {}).get("meta", {})
        data_type = raw_column.get("data_type", "text")
        if data_type not in SUPPORTED_TYPES:
            problems.append(
                f"column {raw_column['name']!r} has data_type {data_type!r}; "
                f"use one of {', '.join(SUPPORTED_TYPES)}"
            )
        columns.append(
            Column(
                name=raw_column["name"],
                data_type=data_type,
                required=bool(column_meta.get("required", False)),
                identity=column_meta.get("identity"),
                profile_attribute=bool(column_meta.get("profile_attribute", False)),
                allowed_values=tuple(column_meta.get("allowed_values", ())),
                pii=bool(column_meta.get("pii", False)),
                data_usage=tuple(column_meta.get("data_usage", ())),
            )
        )
    names = {column.name for column in columns}

    if meta.get("format") not in SUPPORTED_FORMATS:
        problems.append(f"format {meta.get('format')!r}; use one of {SUPPORTED_FORMATS}")
    if meta.get("kind") not in SUPPORTED_KINDS:
        problems.append(f"kind {meta.get('kind')!r}; use one of {SUPPORTED_KINDS}")
    for key in ("record_key", "timestamp_column"):
        if meta.get(key) not in names:
            problems.append(f"{key} {meta.get(key)!r} is not one of the declared columns")
    for column_name in meta.get("require_any_of", []):
        if column_name not in names:
            problems.append(f"require_any_of names {column_name!r}, which is not declared")
    if problems:
        raise DeclarationError(
            f"{path}: dataset {name!r} cannot be used:\n  - " + "\n  - ".join(problems)
        )

    return Dataset(
        name=name,
        source=source_name,
        format=meta["format"],
        kind=meta["kind"],
        profile_enabled=bool(meta.get("profile_enabled", False)),
        record_key=meta["record_key"],
        timestamp_column=meta["timestamp_column"],
        columns=tuple(columns),
        max_bad_row_share=float(meta.get("max_bad_row_share", 0.1)),
        require_any_of=tuple(meta.get("require_any_of", ())),
        event_type=meta.get("event_type"),
        event_type_column=meta.get("event_type_column"),
        declared_in=path,
    )
