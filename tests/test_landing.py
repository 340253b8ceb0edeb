"""Landing extract files into raw tables, against a real Postgres and a local S3 server."""

from __future__ import annotations

import dataclasses
import gzip
import json
import logging
import uuid
from pathlib import Path

import pytest

from cdp import datasets, landing
from tests.conftest import query

ORDERS_HEADER = (
    "order_id,loyalty_id,customer_id,email,store_id,channel,ordered_at,order_total,currency"
)


# --- helpers shared with test_validation.py ---------------------------------------------


def drop_file(landing_dir: Path, dataset: str, name: str, text: str) -> Path:
    path = landing_dir / dataset / name
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode()
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return path


def land_all(landing_url: str | Path) -> list[dict]:
    return [landing.land_file(found) for found in landing.discover_new_files(str(landing_url))]


def raw_rows(dataset: str, batch_id: int, columns: str) -> list[tuple]:
    return query(
        f'select {columns} from raw."{dataset}" where _batch_id = %s order by _line_number',
        (batch_id,),
    )


# --- CSV ----------------------------------------------------------------------------------


def test_csv_lands_every_row_with_its_line_number(landing_dir: Path) -> None:
    # Columns in a different order from the declaration: matched by name.
    drop_file(
        landing_dir,
        "offline_orders",
        "orders_2024_05_01.csv",
        "currency,order_total,ordered_at,channel,store_id,email,customer_id,loyalty_id,order_id\n"
        "EUR,12.50,2024-05-01T10:00:00+02:00,store,s1,,C1,,o1\n"
        'EUR,3,2024-05-01T11:00:00Z,call_centre,s2,"a,b@example.com",,L9,o2\n',
    )

    [result] = land_all(landing_dir)

    assert result["status"] == "landed"
    assert result["rows_landed"] == 2
    assert raw_rows(
        "offline_orders",
        result["batch_id"],
        "_line_number, _file_name, order_id, customer_id, email, order_total, _parse_error",
    ) == [
        (2, "orders_2024_05_01.csv", "o1", "C1", None, "12.50", None),
        (3, "orders_2024_05_01.csv", "o2", None, "a,b@example.com", "3", None),
    ]


def test_a_quoted_field_spanning_lines_keeps_the_line_it_starts_on(landing_dir: Path) -> None:
    drop_file(
        landing_dir,
        "offline_orders",
        "multiline.csv",
        f"{ORDERS_HEADER}\n"
        'o1,L1,,,"store\n42",store,2024-05-01T10:00:00Z,1,EUR\n'
        "o2,L1,,,s1,store,2024-05-01T10:00:00Z,1,EUR\n",
    )

    [result] = land_all(landing_dir)

    assert raw_rows("offline_orders", result["batch_id"], "_line_number, store_id") == [
        (2, "store\n42"),
        (4, "s1"),
    ]


def test_landing_the_same_file_again_is_a_no_op(landing_dir: Path) -> None:
    drop_file(
        landing_dir,
        "offline_orders",
        "orders.csv",
        f"{ORDERS_HEADER}\no1,L1,,,s1,store,2024-05-01T10:00:00Z,1,EUR\n",
    )
    found = landing.discover_new_files(str(landing_dir))
    first = landing.land_file(found[0])

    again = landing.land_file(found[0])

    assert again["batch_id"] == first["batch_id"]
    assert landing.discover_new_files(str(landing_dir)) == []
    assert len(raw_rows("offline_orders", first["batch_id"], "order_id")) == 1
    assert query(
        "select count(*) from ops.landed_files where file_url = %s", (found[0]["file_url"],)
    ) == [(1,)]


def test_a_changed_file_with_the_same_name_is_a_new_batch(landing_dir: Path) -> None:
    path = drop_file(
        landing_dir,
        "offline_orders",
        "orders.csv",
        f"{ORDERS_HEADER}\no1,L1,,,s1,store,2024-05-01T10:00:00Z,1,EUR\n",
    )
    [first] = land_all(landing_dir)

    path.write_text(path.read_text() + "o2,L2,,,s1,store,2024-05-02T10:00:00Z,2,EUR\n")
    [second] = land_all(landing_dir)

    assert second["batch_id"] != first["batch_id"]
    assert second["rows_landed"] == 2
    assert len(raw_rows("offline_orders", first["batch_id"], "order_id")) == 1


def test_a_header_that_does_not_match_rejects_the_whole_file(landing_dir: Path) -> None:
    drop_file(
        landing_dir,
        "offline_orders",
        "renamed_column.csv",
        "order_id,loyalty_id,customer_id,email,store_id,channel,order_date,order_total,"
        "currency,discount\n"
        "o1,L1,,,s1,store,2024-05-01,1,EUR,0\n",
    )

    [result] = land_all(landing_dir)

    assert result["status"] == "rejected"
    assert result["rows_landed"] == 0
    assert raw_rows("offline_orders", result["batch_id"], "order_id") == []
    [(reason,)] = query(
        "select rejection_reason from ops.landed_files where batch_id = %s", (result["batch_id"],)
    )
    assert "renamed_column.csv" in reason
    assert "missing columns ordered_at" in reason
    assert "unexpected columns discount, order_date" in reason
    assert "Re-export the file" in reason


def test_malformed_lines_land_with_a_parse_error_and_the_line_as_it_was(
    landing_dir: Path,
) -> None:
    drop_file(
        landing_dir,
        "offline_orders",
        "ragged.csv",
        f"{ORDERS_HEADER}\n"
        "o1,L1,,,s1,store,2024-05-01T10:00:00Z,1,EUR\n"
        "o2,L2,too few fields\n"
        "\n"
        "o3,L3,,,s1,store,2024-05-01T10:00:00Z,1,EUR,extra\n",
    )
    # A byte sequence that is not UTF-8 on the last line.
    path = landing_dir / "offline_orders" / "ragged.csv"
    path.write_bytes(path.read_bytes() + b"o4,L4,,,s\xff1,store,2024-05-01T10:00:00Z,1,EUR\n")

    [result] = land_all(landing_dir)

    assert result["rows_landed"] == 4
    rows = raw_rows(
        "offline_orders", result["batch_id"], "_line_number, order_id, _parse_error, _raw_record"
    )
    assert rows[0] == (2, "o1", None, None)
    assert rows[1] == (
        3,
        None,
        "the line has 3 fields where the header has 9",
        "o2,L2,too few fields",
    )
    assert rows[2][:3] == (5, None, "the line has 10 fields where the header has 9")
    assert rows[3][0] == 6
    assert "not UTF-8" in rows[3][2]
    assert rows[3][3].startswith("o4,L4,,,s\ufffd1")
    assert query(
        "select rows_unparsed from ops.landed_files where batch_id = %s", (result["batch_id"],)
    ) == [(3,)]


def test_a_large_file_is_copied_in_slices(
    landing_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(landing, "_COPY_SLICE_CHARS", 2_000)
    lines = [f"o{n},L{n},,,s1,store,2024-05-01T10:00:00Z,{n},EUR" for n in range(1, 1_001)]
    drop_file(landing_dir, "offline_orders", "big.csv", ORDERS_HEADER + "\n" + "\n".join(lines))

    [result] = land_all(landing_dir)

    rows = raw_rows("offline_orders", result["batch_id"], "_line_number, order_id")
    assert result["rows_landed"] == 1_000
    assert rows[0] == (2, "o1")
    assert rows[-1] == (1_001, "o1000")
    assert len({line for line, _ in rows}) == 1_000


def test_a_file_replaced_between_discovery_and_landing_lands_nothing(landing_dir: Path) -> None:
    path = drop_file(
        landing_dir,
        "offline_orders",
        "orders.csv",
        f"{ORDERS_HEADER}\no1,L1,,,s1,store,2024-05-01T10:00:00Z,1,EUR\n",
    )
    [found] = landing.discover_new_files(str(landing_dir))
    path.write_text(f"{ORDERS_HEADER}\no9,L9,,,s1,store,2024-05-01T10:00:00Z,9,EUR\n")

    with pytest.raises(landing.FileChangedWhileLanding, match="orders.csv changed"):
        landing.land_file(found)

    assert query(
        "select count(*) from ops.landed_files where file_url = %s", (found["file_url"],)
    ) == [(0,)]
    assert len(landing.discover_new_files(str(landing_dir))) == 1


# --- JSONL --------------------------------------------------------------------------------


def test_jsonl_gz_lands_values_as_text_and_counts_unknown_keys(landing_dir: Path) -> None:
    events = [
        {
            "event_id": "e1",
            "ecid": "1" * 38,
            "event_type": "purchase",
            "occurred_at": "2024-05-01T10:00:00Z",
            "revenue": 12.50,
            "customer_id": None,
            "session": {"id": 7},
        },
        {"event_id": "e2", "ecid": "2" * 38, "event_type": "page_view", "referrer": "x"},
    ]
    text = "\n".join(json.dumps(event) for event in events)
    text += '\n["not", "an", "object"]\n{"event_id": "e3", broken\n'
    drop_file(landing_dir, "web_events", "events_2024_05_01.jsonl.gz", text)

    [result] = land_all(landing_dir)

    assert result["rows_landed"] == 4
    rows = raw_rows(
        "web_events",
        result["batch_id"],
        "_line_number, event_id, revenue, customer_id, _parse_error, _raw_record",
    )
    assert rows[0] == (1, "e1", "12.5", None, None, None)
    assert rows[1] == (2, "e2", None, None, None, None)
    assert rows[2] == (
        3,
        None,
        None,
        None,
        "the line is a JSON list, not a JSON object",
        '["not", "an", "object"]',
    )
    assert rows[3][0] == 4
    assert rows[3][4].startswith("the line is not valid JSON")
    assert query(
        "select unknown_keys_ignored, rows_unparsed from ops.landed_files where batch_id = %s",
        (result["batch_id"],),
    ) == [(2, 2)]


def test_json_numbers_keep_the_text_they_had_in_the_file(landing_dir: Path) -> None:
    drop_file(
        landing_dir,
        "web_events",
        "events.jsonl",
        '{"event_id": "e1", "revenue": 19.990, "product_sku": 12345678901234567890}\n',
    )

    [result] = land_all(landing_dir)

    assert raw_rows("web_events", result["batch_id"], "revenue, product_sku") == [
        ("19.990", "12345678901234567890")
    ]


# --- the landing area ---------------------------------------------------------------------


def test_unknown_folders_and_uploads_in_progress_are_skipped(
    landing_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    drop_file(landing_dir, "ordres", "a.csv", ORDERS_HEADER + "\n")
    drop_file(landing_dir, "ordres", "b.csv", ORDERS_HEADER + "\n")
    drop_file(landing_dir, "offline_orders", "c.csv.part", ORDERS_HEADER + "\n")
    drop_file(landing_dir, "offline_orders", ".d.csv", ORDERS_HEADER + "\n")

    with caplog.at_level(logging.WARNING, logger="cdp.landing_area"):
        found = landing.discover_new_files(str(landing_dir))

    assert found == []
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1
    assert "'ordres' is not a declared dataset" in warnings[0]


def test_files_land_from_an_s3_prefix(project_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        bucket = f"landing-{uuid.uuid4().hex[:8]}"
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=bucket)
        body = f"{ORDERS_HEADER}\no1,L1,,,s1,store,2024-05-01T10:00:00Z,1,EUR\n".encode()
        s3.put_object(
            Bucket=bucket, Key="extracts/offline_orders/orders.csv.gz", Body=gzip.compress(body)
        )
        s3.put_object(Bucket=bucket, Key="extracts/unknown/x.csv", Body=b"a\n")

        [found] = landing.discover_new_files(f"s3://{bucket}/extracts")
        result = landing.land_file(found)
        again = landing.discover_new_files(f"s3://{bucket}/extracts")
    finally:
        server.stop()

    assert found["file_url"] == f"s3://{bucket}/extracts/offline_orders/orders.csv.gz"
    assert found["size_bytes"] == len(gzip.compress(body))
    assert result["rows_landed"] == 1
    assert raw_rows("offline_orders", result["batch_id"], "_line_number, order_id") == [(2, "o1")]
    assert again == []


def test_a_column_added_to_a_declaration_is_added_to_the_tables(
    project_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    declared = datasets.load_all()
    name = f"grown_{uuid.uuid4().hex[:8]}"
    before = dataclasses.replace(declared["offline_orders"], name=name)
    extra = datasets.Column(name="coupon_code", data_type="text")
    after = dataclasses.replace(before, columns=(*before.columns, extra))

    try:
        monkeypatch.setattr(datasets, "load_all", lambda: {name: before})
        landing.ensure_tables()
        monkeypatch.setattr(datasets, "load_all", lambda: {name: after})
        landing.ensure_tables()

        columns = query(
            "select table_schema, data_type from information_schema.columns "
            "where table_name = %s and column_name = 'coupon_code' order by table_schema",
            (name,),
        )
        assert columns == [("raw", "text"), ("validated", "text")]
    finally:
        query(f'drop table raw."{name}", validated."{name}"; select 1')
