"""Validating landed batches with Great Expectations, quarantining and promoting rows."""

from __future__ import annotations

import csv
import datetime as dt
import json
import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from cdp import datasets, settings, validation
from tests.conftest import query
from tests.test_landing import ORDERS_HEADER, drop_file, land_all

GOOD_ORDER = "o{n},L{n},,,s1,store,2024-05-01T10:00:00+02:00,{n}.50,EUR"


def orders_file(bad_lines: list[str], good_rows: int = 40) -> str:
    """A header, then the bad lines (from line 2 on), then enough good rows to stay under
    the dataset's bad-row limit."""
    good = [GOOD_ORDER.format(n=n) for n in range(100, 100 + good_rows)]
    return "\n".join([ORDERS_HEADER, *bad_lines, *good]) + "\n"


def quarantined(batch_id: int) -> list[tuple]:
    return query(
        "select line_number, column_name, value, expectation_type, reason "
        "from ops.quarantined_rows where batch_id = %s order by line_number, column_name, "
        "expectation_type",
        (batch_id,),
    )


def batch_counts(batch_id: int) -> tuple:
    [row] = query(
        "select status, rows_landed, rows_promoted, rows_quarantined "
        "from ops.landed_files where batch_id = %s",
        (batch_id,),
    )
    return row


# --- suites -------------------------------------------------------------------------------


def test_every_declared_dataset_has_an_up_to_date_suite_file() -> None:
    stale = validation.stale_suites()

    assert stale == {}, (
        f"suite files out of date with their declarations: {stale}; "
        "run `python -c 'from cdp import validation; validation.write_suites()'`"
    )


def test_a_suite_file_that_lags_its_declaration_is_detected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(settings.EXPECTATIONS_DIR, tmp_path / "expectations")
    monkeypatch.setattr(settings, "EXPECTATIONS_DIR", tmp_path / "expectations")
    path = tmp_path / "expectations" / "offline_orders.json"
    document = json.loads(path.read_text())
    document["expectations"] = [
        expectation
        for expectation in document["expectations"]
        if expectation["kwargs"].get("column") != "channel"
    ]
    path.write_text(json.dumps(document))
    (tmp_path / "expectations" / "web_events.json").unlink()

    stale = validation.stale_suites()

    assert set(stale) == {"offline_orders", "web_events"}
    assert any(
        "expect_column_values_to_be_in_set" in problem and "store" in problem
        for problem in stale["offline_orders"]
    )


def test_regenerating_suites_keeps_expectations_added_by_hand(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(settings.EXPECTATIONS_DIR, tmp_path / "expectations")
    monkeypatch.setattr(settings, "EXPECTATIONS_DIR", tmp_path / "expectations")
    path = tmp_path / "expectations" / "offline_orders.json"
    document = json.loads(path.read_text())
    added = {
        "type": "expect_column_values_to_be_in_set",
        "kwargs": {"column": "currency", "value_set": ["EUR"]},
        "meta": {},
    }
    document["expectations"].append(added)
    path.write_text(json.dumps(document))

    validation.write_suites()

    rewritten = json.loads(path.read_text())["expectations"]
    assert sum(e["kwargs"].get("column") == "currency" for e in rewritten) == 1
    assert validation.stale_suites() == {}


def test_the_generated_suite_follows_the_declaration() -> None:
    suite = validation.build_suite(datasets.get("offline_orders")).to_json_dict()
    checks = {(e["type"], e["kwargs"]["column"]) for e in suite["expectations"]}

    assert ("expect_column_values_to_be_null", "_parse_error") in checks
    assert ("expect_column_values_to_not_be_null", "order_id") in checks
    assert ("expect_column_values_to_not_be_null", "email") not in checks
    assert ("expect_column_values_to_match_regex", "ordered_at") in checks
    assert ("expect_column_values_to_be_dateutil_parseable", "ordered_at") in checks
    assert ("expect_column_values_to_match_regex", "order_total") in checks
    assert ("expect_column_values_to_be_in_set", "channel") in checks
    assert (
        "expect_column_values_to_be_in_set",
        validation.any_of_column(("loyalty_id", "customer_id", "email")),
    ) in checks


# --- validating a batch -------------------------------------------------------------------


def test_only_the_bad_rows_are_quarantined_and_the_rest_promoted_typed(
    landing_dir: Path,
) -> None:
    drop_file(
        landing_dir,
        "offline_orders",
        "orders_2024_05_01.csv",
        orders_file(
            [
                "o1,L1,,,s1,store,yesterday,1,EUR",  # line 2
                "o2,L2,,,s1,web,2024-02-30T10:00:00Z,abc,EUR",  # line 3: three bad values
                "o3,,,,s1,store,2024-05-01T10:00:00Z,1,EUR",  # line 4: no buyer
                ",L4,,,s1,store,2024-05-01T10:00:00Z,1,EUR",  # line 5: no order id
                "o5,L5,only three",  # line 6: cannot be split
                "o6,,C6,,s1,call_centre,2024-05-01 10:00+0100,1e3,EUR",  # line 7: good
            ]
        ),
    )
    [landed] = land_all(landing_dir)

    result = validation.validate_batch(landed["batch_id"])

    rows = quarantined(landed["batch_id"])
    assert [(line, column, value, check) for line, column, value, check, _ in rows] == [
        (2, "ordered_at", "yesterday", "expect_column_values_to_be_dateutil_parseable"),
        (2, "ordered_at", "yesterday", "expect_column_values_to_match_regex"),
        (3, "channel", "web", "expect_column_values_to_be_in_set"),
        (3, "order_total", "abc", "expect_column_values_to_match_regex"),
        (3, "ordered_at", "2024-02-30T10:00:00Z", "expect_column_values_to_be_dateutil_parseable"),
        (4, "loyalty_id|customer_id|email", None, "expect_column_values_to_be_in_set"),
        (5, "order_id", None, "expect_column_values_to_not_be_null"),
        (6, "_parse_error", "o5,L5,only three", "expect_column_values_to_be_null"),
    ]
    reasons = {(line, column): reason for line, column, _, _, reason in rows}
    assert reasons[(2, "ordered_at")].startswith("line 2, column ordered_at: 'yesterday' is not")
    assert "expect_column_values_to_" in reasons[(2, "ordered_at")]
    assert "re-export the file" in reasons[(2, "ordered_at")]
    assert reasons[(6, "_parse_error")].startswith(
        "line 6: the line has 3 fields where the header has 9"
    )
    assert "loyalty_id, customer_id, email" in reasons[(4, "loyalty_id|customer_id|email")]
    assert query(
        "select distinct file_name from ops.quarantined_rows where batch_id = %s",
        (landed["batch_id"],),
    ) == [("orders_2024_05_01.csv",)]

    assert result["status"] == "promoted"
    assert (result["rows_promoted"], result["rows_quarantined"]) == (41, 5)
    assert batch_counts(landed["batch_id"]) == ("promoted", 46, 41, 5)
    [promoted] = query(
        "select ordered_at, order_total, channel from validated.offline_orders "
        "where _batch_id = %s and _line_number = 7",
        (landed["batch_id"],),
    )
    assert promoted == (
        dt.datetime(2024, 5, 1, 9, 0, tzinfo=dt.UTC),
        Decimal("1E+3"),
        "call_centre",
    )
    promoted_lines = query(
        "select _line_number from validated.offline_orders where _batch_id = %s",
        (landed["batch_id"],),
    )
    assert {line for (line,) in promoted_lines}.isdisjoint({2, 3, 4, 5, 6})


def test_booleans_dates_and_integers_are_cast_on_promotion(landing_dir: Path) -> None:
    header = (
        "customer_id,email,phone,first_name,last_name,postal_code,country,birth_date,"
        "email_opt_in,sms_opt_in,ads_opt_in,updated_at"
    )
    good = [f"C{n},,,,,,,1990-01-0{n},Yes,f,1,2024-05-01T10:00:00Z" for n in range(1, 10)]
    drop_file(
        landing_dir,
        "crm_customers",
        "crm.csv",
        "\n".join([header, *good, "C99,,,,,,,1990-02-30,maybe,,,2024-05-01T10:00:00Z"]) + "\n",
    )
    drop_file(
        landing_dir,
        "loyalty_members",
        "loyalty.csv",
        "loyalty_id,customer_id,email,phone,tier,points_balance,enrolled_at,updated_at\n"
        "L1,C1,,,gold,3000000000,2023-01-01T00:00:00Z,2024-05-01T10:00:00Z\n",
    )
    crm, loyalty = sorted(land_all(landing_dir), key=lambda batch: batch["dataset"])

    validation.validate_batch(crm["batch_id"])
    validation.validate_batch(loyalty["batch_id"])

    assert query(
        "select birth_date, email_opt_in, sms_opt_in, ads_opt_in from validated.crm_customers "
        "where _batch_id = %s and customer_id = 'C1'",
        (crm["batch_id"],),
    ) == [(dt.date(1990, 1, 1), True, False, True)]
    assert [(column, value) for _, column, value, _, _ in quarantined(crm["batch_id"])] == [
        ("birth_date", "1990-02-30"),
        ("email_opt_in", "maybe"),
    ]
    assert batch_counts(crm["batch_id"]) == ("promoted", 10, 9, 1)
    assert query(
        "select points_balance from validated.loyalty_members where _batch_id = %s",
        (loyalty["batch_id"],),
    ) == [(3_000_000_000,)]


def test_a_batch_with_too_many_bad_rows_is_quarantined_whole(landing_dir: Path) -> None:
    bad = [f"o{n},L{n},,,s1,store,soon,1,EUR" for n in range(1, 4)]
    drop_file(landing_dir, "offline_orders", "mostly_bad.csv", orders_file(bad, good_rows=5))
    [landed] = land_all(landing_dir)

    result = validation.validate_batch(landed["batch_id"])

    assert batch_counts(landed["batch_id"]) == ("quarantined", 8, 0, 8)
    assert result["status"] == "quarantined"
    [(reason,)] = query(
        "select quarantine_reason from ops.landed_files where batch_id = %s",
        (landed["batch_id"],),
    )
    assert "3 of 8 rows" in reason and "20%" in reason
    assert query(
        "select count(*) from validated.offline_orders where _batch_id = %s",
        (landed["batch_id"],),
    ) == [(0,)]
    assert {line for line, *_ in quarantined(landed["batch_id"])} == {2, 3, 4}


def test_validating_a_batch_twice_changes_nothing(landing_dir: Path) -> None:
    drop_file(landing_dir, "offline_orders", "o.csv", orders_file(["o1,,,,s1,store,x,1,EUR"]))
    [landed] = land_all(landing_dir)
    first = validation.validate_batch(landed["batch_id"])

    again = validation.validate_batch(landed["batch_id"])

    assert again["status"] == first["status"] == "promoted"
    assert again["rows_promoted"] == first["rows_promoted"] == 40
    assert query(
        "select count(*) from validated.offline_orders where _batch_id = %s",
        (landed["batch_id"],),
    ) == [(40,)]
    assert len(quarantined(landed["batch_id"])) == 3  # no buyer; ordered_at regex and dateutil


def test_the_failure_report_lists_file_line_column_value_and_reason(landing_dir: Path) -> None:
    drop_file(landing_dir, "offline_orders", "o.csv", orders_file(["o1,L1,,,s1,store,soon,1,EUR"]))
    [landed] = land_all(landing_dir)

    result = validation.validate_batch(landed["batch_id"])

    report = Path(result["failure_report"])
    assert report.parent == settings.reports_dir()
    rows = list(csv.DictReader(report.open()))
    assert [(r["file"], r["line"], r["column"], r["value"]) for r in rows] == [
        ("o.csv", "2", "ordered_at", "soon"),
        ("o.csv", "2", "ordered_at", "soon"),
    ]
    assert {r["expectation"] for r in rows} == {
        "expect_column_values_to_match_regex",
        "expect_column_values_to_be_dateutil_parseable",
    }
    assert all(r["reason"].startswith("line 2, column ordered_at: 'soon'") for r in rows)
    assert validation.data_docs_index().exists()


def test_jsonl_rows_that_are_not_objects_are_quarantined(landing_dir: Path) -> None:
    good = [
        json.dumps(
            {
                "event_id": f"e{n}",
                "ecid": f"{n:038d}",
                "event_type": "purchase",
                "occurred_at": "2024-05-01T10:00:00.123+02:00",
                "revenue": 9.99,
            }
        )
        for n in range(10)
    ]
    drop_file(landing_dir, "web_events", "w.jsonl", "\n".join(["[1, 2]", *good]) + "\n")
    [landed] = land_all(landing_dir)

    result = validation.validate_batch(landed["batch_id"])

    assert (result["rows_promoted"], result["rows_quarantined"]) == (10, 1)
    rows = quarantined(landed["batch_id"])
    assert [(line, column, value) for line, column, value, _, _ in rows] == [
        (1, "_parse_error", "[1, 2]")
    ]
    assert query(
        "select revenue from validated.web_events where _batch_id = %s limit 1",
        (landed["batch_id"],),
    ) == [(Decimal("9.99"),)]


def test_an_expectation_added_to_the_suite_file_is_applied(
    landing_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(settings.EXPECTATIONS_DIR, tmp_path / "expectations")
    monkeypatch.setattr(settings, "EXPECTATIONS_DIR", tmp_path / "expectations")
    path = tmp_path / "expectations" / "offline_orders.json"
    document = json.loads(path.read_text())
    document["expectations"].append(
        {
            "type": "expect_column_values_to_be_in_set",
            "kwargs": {"column": "currency", "value_set": ["EUR"]},
            "meta": {"problem": "is not a currency we sell in"},
        }
    )
    path.write_text(json.dumps(document))
    dollars = "o1,L1,,,s1,store,2024-05-01T10:00:00Z,1,USD"
    drop_file(landing_dir, "offline_orders", "o.csv", orders_file([dollars]))
    [landed] = land_all(landing_dir)

    validation.validate_batch(landed["batch_id"])

    [(line, column, value, _, reason)] = quarantined(landed["batch_id"])
    assert (line, column, value) == (2, "currency", "USD")
    assert "is not a currency we sell in" in reason


def test_a_suite_file_with_an_invalid_expectation_stops_validation(
    landing_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(settings.EXPECTATIONS_DIR, tmp_path / "expectations")
    monkeypatch.setattr(settings, "EXPECTATIONS_DIR", tmp_path / "expectations")
    path = tmp_path / "expectations" / "offline_orders.json"
    document = json.loads(path.read_text())
    document["expectations"].append(
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "currency"}}
    )
    path.write_text(json.dumps(document))
    drop_file(landing_dir, "offline_orders", "o.csv", orders_file([]))
    [landed] = land_all(landing_dir)

    with pytest.raises(validation.SuiteError, match="offline_orders.json"):
        validation.validate_batch(landed["batch_id"])

    assert batch_counts(landed["batch_id"]) == ("landed", 40, None, None)


def test_pending_batches_are_all_validated(landing_dir: Path) -> None:
    drop_file(landing_dir, "offline_orders", "a.csv", orders_file([]))
    drop_file(landing_dir, "offline_orders", "b.csv", orders_file([], good_rows=3))
    landed = land_all(landing_dir)

    results = validation.validate_pending_batches()

    mine = {r["batch_id"]: r for r in results if r["batch_id"] in {b["batch_id"] for b in landed}}
    assert len(mine) == 2
    assert all(r["status"] == "promoted" for r in mine.values())
    assert query("select count(*) from ops.landed_files where status = 'landed'") == [(0,)]
