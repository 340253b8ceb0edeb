"""Validate landed batches with Great Expectations and promote the rows that pass.

Each dataset's suite is generated from its declaration into `expectations/<dataset>.json`
and read back from that file at validation time, so an analyst can add an expectation by
editing the JSON. Values are checked while still text in raw.<dataset>; only rows whose
every value passes are cast into validated.<dataset>. Each bad value becomes one row of
ops.quarantined_rows that names the file, line, column, value and the fix. When more of a
batch fails than the dataset allows, nothing of it is promoted: a file that bad is more
likely wrong as a whole than wrong in a few rows.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import psycopg2.extensions

from cdp import datasets, settings, warehouse
from cdp.datasets import Dataset

if TYPE_CHECKING:
    import great_expectations as gx

log = logging.getLogger(__name__)

# Spellings of true and false accepted in extracts; promotion maps exactly these, so a
# spelling added here must be added to both lists.
TRUE_SPELLINGS = ("true", "t", "yes", "y", "1")
FALSE_SPELLINGS = ("false", "f", "no", "n", "0")
BOOLEAN_SPELLINGS = tuple(
    variant
    for spelling in TRUE_SPELLINGS + FALSE_SPELLINGS
    for variant in dict.fromkeys((spelling, spelling.capitalize(), spelling.upper()))
)

# Text shapes each declared type must have before Postgres is asked to cast it. Dates and
# timestamps are also checked with dateutil, which rejects impossible days like 02-30.
ISO_TIMESTAMP_WITH_OFFSET = (
    r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?"
    r"(?:Z|[+-](?:0\d|1[0-4])(?::?[0-5]\d)?)$"
)
ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"
INTEGER = r"^[+-]?\d{1,18}$"
DECIMAL_NUMBER = r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d{1,3})?$"

# Marks the expectations this module writes, so regenerating a suite replaces them and
# keeps the ones an analyst added by hand.
GENERATED = "generated_from_declaration"
PARSE_ERROR_COLUMN = "_parse_error"
LINE_NUMBER_COLUMN = "_line_number"
FIX = "fix the extract or re-export the file"


class SuiteError(RuntimeError):
    """A suite file that cannot be used as it stands; the message names the file and fix."""


@dataclass(frozen=True)
class BadValue:
    line_number: int
    column_name: str
    value: str | None
    expectation_type: str
    reason: str


# --- suites ------------------------------------------------------------------------------


def build_suite(dataset: Dataset) -> gx.ExpectationSuite:
    """The suite the declaration implies: parse errors, required, types, allowed values."""
    gx = _gx()
    expect = gx.expectations
    expectations = []

    def add(expectation: Any, problem: str) -> None:
        expectation.meta = {GENERATED: True, "problem": problem}
        expectations.append(expectation)

    add(
        expect.ExpectColumnValuesToBeNull(column=PARSE_ERROR_COLUMN),
        "the line could not be split into the declared columns",
    )
    for column in dataset.columns:
        name = column.name
        if column.required:
            add(expect.ExpectColumnValuesToNotBeNull(column=name), "is empty but required")
        if column.data_type == "timestamptz":
            add(
                expect.ExpectColumnValuesToMatchRegex(column=name, regex=ISO_TIMESTAMP_WITH_OFFSET),
                "is not an ISO 8601 timestamp with offset, like 2024-05-01T13:45:00+02:00",
            )
            add(
                expect.ExpectColumnValuesToBeDateutilParseable(column=name),
                "is not a real date and time",
            )
        elif column.data_type == "date":
            add(
                expect.ExpectColumnValuesToMatchRegex(column=name, regex=ISO_DATE),
                "is not an ISO 8601 date, like 2024-05-01",
            )
            add(expect.ExpectColumnValuesToBeDateutilParseable(column=name), "is not a real date")
        elif column.data_type == "integer":
            add(
                expect.ExpectColumnValuesToMatchRegex(column=name, regex=INTEGER),
                "is not a whole number of at most 18 digits",
            )
        elif column.data_type == "numeric":
            add(
                expect.ExpectColumnValuesToMatchRegex(column=name, regex=DECIMAL_NUMBER),
                "is not a number, like 12.50",
            )
        elif column.data_type == "boolean":
            add(
                expect.ExpectColumnValuesToBeInSet(column=name, value_set=list(BOOLEAN_SPELLINGS)),
                "is not true or false (accepted: "
                + ", ".join(TRUE_SPELLINGS + FALSE_SPELLINGS)
                + ")",
            )
        if column.allowed_values:
            add(
                expect.ExpectColumnValuesToBeInSet(
                    column=name, value_set=list(column.allowed_values)
                ),
                "is not one of " + ", ".join(column.allowed_values),
            )
    if dataset.require_any_of:
        add(
            expect.ExpectColumnValuesToBeInSet(
                column=any_of_column(dataset.require_any_of), value_set=[True]
            ),
            "are all empty; at least one of them is needed",
        )
    # Built in one go: adding to a suite one by one needs a saved GX context.
    return gx.ExpectationSuite(name=dataset.name, expectations=expectations)


def any_of_column(columns: tuple[str, ...]) -> str:
    """The helper column, computed before validation, that is true when any column is set."""
    return "_any_of__" + "__".join(columns)


def suite_path(dataset_name: str) -> Path:
    return settings.EXPECTATIONS_DIR / f"{dataset_name}.json"


def write_suites() -> list[Path]:
    """Regenerate every suite file, keeping the expectations analysts added by hand."""
    written = []
    for dataset in datasets.load_all().values():
        path = suite_path(dataset.name)
        document = build_suite(dataset).to_json_dict()
        document["expectations"] += [
            expectation
            for expectation in _read_suite_document(path).get("expectations", [])
            if not expectation.get("meta", {}).get(GENERATED)
        ]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
        written.append(path)
    log.info("wrote %s suite files to %s", len(written), settings.EXPECTATIONS_DIR)
    return written


def stale_suites() -> dict[str, list[str]]:
    """For each dataset whose suite file lags its declaration, what is missing or extra."""
    stale = {}
    for dataset in datasets.load_all().values():
        path = suite_path(dataset.name)
        if not path.exists():
            stale[dataset.name] = [f"{path} does not exist"]
            continue
        in_file = _read_suite_document(path).get("expectations", [])
        on_file = {_signature(e) for e in in_file if e.get("meta", {}).get(GENERATED)}
        declared = {_signature(e) for e in build_suite(dataset).to_json_dict()["expectations"]}
        problems = [f"missing {sig}" for sig in sorted(declared - on_file)]
        problems += [f"no longer declared {sig}" for sig in sorted(on_file - declared)]
        if problems:
            stale[dataset.name] = problems
    return stale


def load_suite(dataset: Dataset) -> gx.ExpectationSuite:
    """The suite as committed in `expectations/`, refusing one GX would silently shorten."""
    path = suite_path(dataset.name)
    document = _read_suite_document(path)
    if not document:
        raise SuiteError(f"{path} is missing; run `cdp.validation.write_suites()` to create it")

    gx = _gx()
    expectations = document.get("expectations", [])
    for number, expectation in enumerate(expectations, start=1):
        _check_expectation(path, number, expectation)
    suite = gx.ExpectationSuite(
        name=dataset.name, expectations=expectations, meta=document.get("meta")
    )
    # GX drops an expectation it cannot understand with only a log line; a typo in the
    # file must not quietly weaken validation.
    if len(suite.expectations) != len(expectations):
        raise SuiteError(
            f"{path}: {len(expectations) - len(suite.expectations)} expectation(s) "
            "are not valid GX expectations; fix their type or arguments"
        )
    return suite


def _check_expectation(path: Path, number: int, expectation: dict) -> None:
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    try:
        ExpectationConfiguration(
            type=expectation["type"], kwargs=expectation["kwargs"]
        ).to_domain_obj()
    except Exception as error:  # GX raises pydantic, key and lookup errors alike
        raise SuiteError(
            f"{path}: expectation {number} ({expectation.get('type')}) is not valid: "
            f"{error}; fix its type or arguments"
        ) from error


def _read_suite_document(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise SuiteError(f"{path} is not valid JSON: {error}; fix the file") from error


def _signature(expectation: dict) -> str:
    kwargs = {key: value for key, value in expectation["kwargs"].items() if key != "batch_id"}
    return f"{expectation['type']} {json.dumps(kwargs, sort_keys=True)}"


# --- validating a batch ------------------------------------------------------------------


def validate_pending_batches() -> list[dict]:
    """Validate every batch still waiting in status `landed`, oldest first."""
    with warehouse.connect() as conn, conn.cursor() as cursor:
        cursor.execute(
            "select batch_id from ops.landed_files where status = 'landed' order by batch_id"
        )
        batch_ids = [batch_id for (batch_id,) in cursor.fetchall()]

    # One batch that cannot be validated (a broken suite file, say) must not hold back
    # the batches of other datasets; it stays `landed` and is named in the error.
    results, failed = [], []
    for batch_id in batch_ids:
        try:
            results.append(validate_batch(batch_id))
        except Exception:
            log.exception("batch %s could not be validated; it stays landed", batch_id)
            failed.append(batch_id)
    if failed:
        raise RuntimeError(
            f"batches {failed} could not be validated and stay landed; the others were "
            "validated. See the log above for each cause, fix it and run validation again."
        )
    return results


def validate_batch(batch_id: int) -> dict:
    """Validate one landed batch, quarantine its bad rows and promote the rest."""
    with warehouse.connect() as conn, conn.cursor() as cursor:
        batch = _lock_batch(cursor, batch_id)
        if batch["status"] != "landed":
            log.info("batch %s is already %s; nothing to do", batch_id, batch["status"])
            return batch
        dataset = datasets.get(batch["dataset"])

        rows = _read_batch(cursor, dataset, batch_id)
        bad_values, batch_problem = _run_suite(dataset, batch_id, rows)
        bad_lines = sorted({bad.line_number for bad in bad_values})
        report = _write_report(batch, bad_values)
        _record_quarantine(cursor, batch, bad_values)

        quarantine_reason = batch_problem or _threshold_problem(dataset, len(bad_lines), len(rows))
        if quarantine_reason:
            promoted = 0
            quarantined = len(rows)
        else:
            promoted = _promote(cursor, dataset, batch_id, bad_lines)
            quarantined = len(bad_lines)
        if promoted + quarantined != batch["rows_landed"]:
            raise RuntimeError(
                f"batch {batch_id}: {promoted} promoted + {quarantined} quarantined != "
                f"{batch['rows_landed']} landed; nothing was committed"
            )

        result = _finish(cursor, batch, promoted, quarantined, quarantine_reason, report)

    log.info(
        "batch %s of %s %s: %s promoted, %s quarantined, %s bad values",
        batch_id,
        dataset.name,
        result["status"],
        promoted,
        quarantined,
        len(bad_values),
    )
    return result


def _lock_batch(cursor: psycopg2.extensions.cursor, batch_id: int) -> dict:
    # The row lock makes a second validation of the same batch wait, then see it done.
    cursor.execute(
        """
        select batch_id, dataset, file_name, status, rows_landed, rows_promoted,
            rows_quarantined, failure_report
        from ops.landed_files
        where batch_id = %s
        for update
        """,
        (batch_id,),
    )
    row = cursor.fetchone()
    if row is None:
        raise LookupError(f"no batch {batch_id} in ops.landed_files")
    return dict(zip([column.name for column in cursor.description], row, strict=True))


def _read_batch(
    cursor: psycopg2.extensions.cursor, dataset: Dataset, batch_id: int
) -> pd.DataFrame:
    columns = [LINE_NUMBER_COLUMN, *dataset.column_names, PARSE_ERROR_COLUMN, "_raw_record"]
    cursor.execute(
        "select "
        + ", ".join(f'"{name}"' for name in columns)
        + f" from {dataset.raw_table} where _batch_id = %s order by _line_number",
        (batch_id,),
    )
    rows = pd.DataFrame.from_records(cursor.fetchall(), columns=columns)
    if dataset.require_any_of:
        rows[any_of_column(dataset.require_any_of)] = (
            rows[list(dataset.require_any_of)].notna().any(axis=1)
        )
    return rows


def _run_suite(
    dataset: Dataset, batch_id: int, rows: pd.DataFrame
) -> tuple[list[BadValue], str | None]:
    """Bad values found by the suite, and a reason when a failure is not about rows."""
    suite = load_suite(dataset)
    checkpoint = _checkpoint(dataset, suite)
    run_id = _gx().core.run_identifier.RunIdentifier(run_name=f"batch-{batch_id}")
    result = checkpoint.run(batch_parameters={"dataframe": rows}, run_id=run_id)

    bad_values: list[BadValue] = []
    batch_problems: list[str] = []
    for validation in result.run_results.values():
        for outcome in validation.results:
            if outcome.success:
                continue
            config = outcome.expectation_config
            if outcome.exception_info and outcome.exception_info.get("raised_exception"):
                raise SuiteError(
                    f"{suite_path(dataset.name)}: {config.type} on "
                    f"{config.kwargs.get('column')} could not run: "
                    f"{outcome.exception_info.get('exception_message')}; fix the expectation"
                )
            failures = outcome.result.get("unexpected_index_list")
            if failures is None:
                batch_problems.append(f"the batch fails {config.type} {dict(config.kwargs)}")
                continue
            bad_values += _bad_values(dataset, config, failures)

    bad_values = _explain_parse_errors(bad_values, rows)
    return bad_values, "; ".join(batch_problems) or None


def _bad_values(dataset: Dataset, config: Any, failures: list[dict]) -> list[BadValue]:
    column = config.kwargs["column"]
    problem = (config.meta or {}).get("problem") or f"fails {config.type}"
    is_any_of = bool(dataset.require_any_of) and column == any_of_column(dataset.require_any_of)

    bad = []
    for failure in failures:
        line_number = int(failure[LINE_NUMBER_COLUMN])
        if is_any_of:
            shown_column = "|".join(dataset.require_any_of)
            value = None
            where = f"line {line_number}, columns {', '.join(dataset.require_any_of)}:"
        else:
            shown_column = column
            value = None if pd.isna(failure.get(column)) else str(failure[column])
            where = f"line {line_number}, column {column}: {_shown(value)}"
        bad.append(
            BadValue(
                line_number=line_number,
                column_name=shown_column,
                value=value,
                expectation_type=config.type,
                reason=f"{where} {problem} ({config.type}); {FIX}",
            )
        )
    return bad


def _shown(value: str | None) -> str:
    if value is None:
        return "the value"
    return repr(value if len(value) <= 80 else value[:77] + "...")


def _explain_parse_errors(bad_values: list[BadValue], rows: pd.DataFrame) -> list[BadValue]:
    """Show an unparsed line as it was in the file, and not also each of its empty columns.

    An unparsed line has every declared column empty, so its required-column failures only
    repeat that the line could not be read.
    """
    unparsed = rows[rows[PARSE_ERROR_COLUMN].notna()].set_index(LINE_NUMBER_COLUMN)
    explained = []
    for bad in bad_values:
        if bad.column_name == PARSE_ERROR_COLUMN:
            line = unparsed.loc[bad.line_number]
            reason = (
                f"line {bad.line_number}: {line[PARSE_ERROR_COLUMN]} ({bad.expectation_type}); "
                f"{FIX}"
            )
            explained.append(
                BadValue(
                    bad.line_number,
                    bad.column_name,
                    line["_raw_record"],
                    bad.expectation_type,
                    reason,
                )
            )
        elif bad.line_number not in unparsed.index:
            explained.append(bad)
    return explained


def _threshold_problem(dataset: Dataset, bad_rows: int, all_rows: int) -> str | None:
    if not all_rows or bad_rows / all_rows <= dataset.max_bad_row_share:
        return None
    return (
        f"{bad_rows} of {all_rows} rows ({bad_rows / all_rows:.0%}) failed validation, more "
        f"than the {dataset.max_bad_row_share:.0%} allowed for {dataset.name}; no row was "
        f"promoted. Fix the extract and re-export the file (see ops.quarantined_rows)."
    )


# --- Great Expectations plumbing --------------------------------------------------------


def _gx() -> Any:
    """GX, imported on first use with analytics off, so importing this module stays cheap."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations

    return great_expectations


def _checkpoint(dataset: Dataset, suite: gx.ExpectationSuite) -> gx.Checkpoint:
    gx = _gx()
    context = _context()
    source = context.data_sources.add_or_update_pandas("landed_batches")
    asset = next((a for a in source.assets if a.name == dataset.name), None)
    asset = asset or source.add_dataframe_asset(dataset.name)
    batch = next((b for b in asset.batch_definitions if b.name == "whole batch"), None)
    batch = batch or asset.add_batch_definition_whole_dataframe("whole batch")

    suite = context.suites.add_or_update(suite)
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=dataset.name, data=batch, suite=suite)
    )
    return context.checkpoints.add_or_update(
        gx.Checkpoint(
            name=dataset.name,
            validation_definitions=[definition],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="update_data_docs")],
            result_format={
                "result_format": "COMPLETE",
                "unexpected_index_column_names": [LINE_NUMBER_COLUMN],
            },
        )
    )


def _context() -> Any:
    gx = _gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    root = settings.state_dir() / "gx"
    root.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="file", project_root_dir=root)
    # Reloaded from great_expectations.yml the setting comes back as a plain dict.
    bars = context.variables.progress_bars
    bars = bars if isinstance(bars, dict) or bars is None else vars(bars)
    if not bars or bars.get("globally", True):
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        context.variables.save()
    return context


def data_docs_index() -> Path:
    """The Data Docs page listing every validation run."""
    return (
        settings.state_dir()
        / "gx"
        / "gx"
        / "uncommitted"
        / "data_docs"
        / "local_site"
        / ("index.html")
    )


# --- writing the outcome -----------------------------------------------------------------


def _write_report(batch: dict, bad_values: list[BadValue]) -> Path:
    path = settings.reports_dir() / f"batch-{batch['batch_id']}-{batch['dataset']}-failures.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as report:
        writer = csv.writer(report)
        writer.writerow(["file", "line", "column", "value", "expectation", "reason"])
        for bad in bad_values:
            writer.writerow(
                [
                    batch["file_name"],
                    bad.line_number,
                    bad.column_name,
                    bad.value,
                    bad.expectation_type,
                    bad.reason,
                ]
            )
    return path


def _record_quarantine(
    cursor: psycopg2.extensions.cursor, batch: dict, bad_values: list[BadValue]
) -> None:
    from psycopg2.extras import execute_values

    execute_values(
        cursor,
        """
        insert into ops.quarantined_rows
            (batch_id, dataset, file_name, line_number, column_name, value,
             expectation_type, reason)
        values %s
        """,
        [
            (
                batch["batch_id"],
                batch["dataset"],
                batch["file_name"],
                bad.line_number,
                bad.column_name,
                bad.value,
                bad.expectation_type,
                bad.reason,
            )
            for bad in bad_values
        ],
        page_size=1000,
    )


def _promote(
    cursor: psycopg2.extensions.cursor, dataset: Dataset, batch_id: int, bad_lines: list[int]
) -> int:
    """Cast the rows that passed into validated.<dataset>; returns how many."""
    columns = "".join(f'    "{name}",\n' for name in dataset.column_names)
    casts = "".join(f"    {_cast(column)},\n" for column in dataset.columns)
    cursor.execute(
        f"""
        with landed_rows as (
            select *
            from {dataset.raw_table}
            where _batch_id = %(batch_id)s
        ),

        passed_rows as (
            select *
            from landed_rows
            where landed_rows._line_number <> all(%(bad_lines)s::bigint[])
        )

        insert into {dataset.validated_table} (
            _batch_id,
            _file_name,
            _line_number,
        {columns}    _promoted_at
        )
        select
            passed_rows._batch_id,
            passed_rows._file_name,
            passed_rows._line_number,
        {casts}    now()
        from passed_rows
        """,
        {"batch_id": batch_id, "bad_lines": bad_lines},
    )
    return cursor.rowcount


def _cast(column: datasets.Column) -> str:
    value = f'passed_rows."{column.name}"'
    if column.data_type == "text":
        return value
    if column.data_type == "boolean":
        true_list = ", ".join(f"'{spelling}'" for spelling in TRUE_SPELLINGS)
        false_list = ", ".join(f"'{spelling}'" for spelling in FALSE_SPELLINGS)
        return (
            f"case when lower({value}) in ({true_list}) then true "
            f"when lower({value}) in ({false_list}) then false end"
        )
    if column.data_type == "integer":
        return f"{value}::bigint"
    return f"{value}::{column.data_type}"


def _finish(
    cursor: psycopg2.extensions.cursor,
    batch: dict,
    promoted: int,
    quarantined: int,
    quarantine_reason: str | None,
    report: Path,
) -> dict:
    status = "quarantined" if quarantine_reason else "promoted"
    cursor.execute(
        """
        update ops.landed_files
        set status = %s,
            quarantine_reason = %s,
            rows_promoted = %s,
            rows_quarantined = %s,
            failure_report = %s,
            validated_at = now()
        where batch_id = %s
        """,
        (status, quarantine_reason, promoted, quarantined, str(report), batch["batch_id"]),
    )
    return {
        **batch,
        "status": status,
        "rows_promoted": promoted,
        "rows_quarantined": quarantined,
        "failure_report": str(report),
    }
