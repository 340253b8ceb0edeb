"""DDL for the tables Python owns: the landing ledger, quarantine and per-dataset tables.

Raw and validated tables are generated from the dataset declarations, so a column added
to a declaration reaches the warehouse on the next run without a hand-written migration.
"""

from __future__ import annotations

from cdp.datasets import RAW_SCHEMA, VALIDATED_SCHEMA, Dataset

OPS_SCHEMA = "ops"

# Postgres types for the declared types. `integer` becomes bigint so a loyalty points
# balance or a count above two billion does not fail promotion after passing validation.
WAREHOUSE_TYPES = {
    "text": "text",
    "integer": "bigint",
    "numeric": "numeric",
    "boolean": "boolean",
    "date": "date",
    "timestamptz": "timestamptz",
}

LEDGER_DDL = """
create table if not exists ops.landed_files (
    batch_id bigint generated always as identity primary key,
    dataset text not null,
    file_url text not null,
    file_name text not null,
    checksum_sha256 text not null,
    size_bytes bigint not null,
    status text not null default 'landed'
        check (status in ('landed', 'promoted', 'quarantined', 'rejected')),
    rejection_reason text,
    quarantine_reason text,
    rows_landed bigint not null default 0,
    rows_unparsed bigint not null default 0,
    unknown_keys_ignored bigint not null default 0,
    rows_promoted bigint,
    rows_quarantined bigint,
    failure_report text,
    landed_at timestamptz not null default now(),
    validated_at timestamptz,
    unique (file_url, checksum_sha256)
);

create index if not exists landed_files_status_idx on ops.landed_files (status);

create table if not exists ops.quarantined_rows (
    quarantined_row_id bigint generated always as identity primary key,
    batch_id bigint not null references ops.landed_files (batch_id),
    dataset text not null,
    file_name text not null,
    line_number bigint not null,
    column_name text not null,
    value text,
    expectation_type text not null,
    reason text not null,
    quarantined_at timestamptz not null default now()
);

create index if not exists quarantined_rows_batch_idx on ops.quarantined_rows (batch_id);

-- The streaming path's ledger: event batches already evaluated for streaming audiences.
create table if not exists ops.streamed_batches (
    batch_id bigint primary key,
    dataset text not null,
    streamed_at timestamptz not null default now()
);

-- The batches the running streaming evaluation looks at; dbt reads them from here.
create table if not exists ops.streaming_pending (
    batch_id bigint primary key
);
"""


def schemas_ddl() -> str:
    return "".join(
        f"create schema if not exists {schema};\n"
        for schema in (RAW_SCHEMA, VALIDATED_SCHEMA, OPS_SCHEMA)
    )


def raw_table_ddl(dataset: Dataset) -> str:
    """Every declared column as text, so any file lands whatever its values look like."""
    columns = "".join(f'    "{name}" text,\n' for name in dataset.column_names)
    return (
        f"create table if not exists {dataset.raw_table} (\n"
        "    _batch_id bigint not null,\n"
        "    _file_name text not null,\n"
        "    _line_number bigint not null,\n"
        f"{columns}"
        "    _parse_error text,\n"
        "    _raw_record text\n"
        ");\n"
        f'create index if not exists "{dataset.name}__batch_idx"\n'
        f"    on {dataset.raw_table} (_batch_id, _line_number);\n"
    )


def validated_table_ddl(dataset: Dataset) -> str:
    columns = "".join(
        f'    "{column.name}" {WAREHOUSE_TYPES[column.data_type]},\n' for column in dataset.columns
    )
    return (
        f"create table if not exists {dataset.validated_table} (\n"
        "    _batch_id bigint not null,\n"
        "    _file_name text not null,\n"
        "    _line_number bigint not null,\n"
        f"{columns}"
        "    _promoted_at timestamptz not null default now()\n"
        ");\n"
        f'create index if not exists "{dataset.name}__batch_idx"\n'
        f"    on {dataset.validated_table} (_batch_id);\n"
    )


def added_columns_ddl(dataset: Dataset, raw_columns: set[str], validated_columns: set[str]) -> str:
    """ALTERs for declared columns the existing tables lack (a declaration that grew)."""
    statements = []
    for column in dataset.columns:
        if column.name not in raw_columns:
            statements.append(
                f'alter table {dataset.raw_table} add column if not exists "{column.name}" text;'
            )
        if column.name not in validated_columns:
            statements.append(
                f"alter table {dataset.validated_table} add column if not exists "
                f'"{column.name}" {WAREHOUSE_TYPES[column.data_type]};'
            )
    return "\n".join(statements)
