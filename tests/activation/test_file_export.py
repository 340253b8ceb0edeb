"""The file-export connector against a real folder, a local S3 server and an SFTP server.

Each test sends batches the way the runner does (numbered, removals first, at most
max_rows_per_file members each), then reads what arrived straight from the store,
not through the connector, and checks it against what was sent.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import socket
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh
import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cdp.activation.connectors.base import (
    Audience,
    Batch,
    Member,
    PermanentError,
    RetryableError,
    SentBatchesLost,
)
from cdp.activation.connectors.file_export import FileExportConnector
from cdp.local_s3 import airflow_connection_uri, start_local_s3
from cdp.vendors.sftp_server import StandInSftpServer

AUDIENCE = Audience("lapsed_buyers", "Lapsed buyers", "No order in 90 days", "growth", "batch")
BUCKET = "partner-exports"
ATTRIBUTES = {"first_name": "first_name", "orders": "order_count",
              "lifetime_value": "lifetime_value", "is_vip": "is_vip"}  # fmt: skip


@dataclass
class FileDestination:
    """The attributes of a destination the connector reads (the runner's class has more)."""

    location: str
    connection_id: str | None = None
    file_format: str = "csv"
    export_mode: str = "additions_and_removals"
    max_rows_per_file: int = 10
    name: str = "partner_files"
    type: str = "file_export"
    identities: tuple[str, ...] = ("email_sha256", "crm_id")
    attributes: dict[str, str] = field(default_factory=lambda: dict(ATTRIBUTES))
    timeout_seconds: float = 2.0

    def resolved_location(self) -> str:
        return self.location


def member(n: int) -> Member:
    """A made-up member; every third has no CRM id, every fourth no first name."""
    identities = {"email_sha256": [hashlib.sha256(f"person{n}@example.com".encode()).hexdigest()]}
    if n % 3:
        identities["crm_id"] = [f"CRM-{n:04d}", f"CRM-OLD-{n:04d}"]
    return Member(
        profile_id=f"p{n:03d}",
        identities=identities,
        attributes={
            "first_name": None if n % 4 == 0 else f"Name{n}",
            "orders": n,
            "lifetime_value": n * 10.5,
            "is_vip": n % 5 == 0,
        },
    )


def expected_row(one: Member, *, with_attributes: bool = True) -> dict:
    """What a consumer should read: first value of each identity, then the attributes."""
    row = {
        "email_sha256": one.identities["email_sha256"][0],
        "crm_id": (one.identities.get("crm_id") or [None])[0],
    }
    if with_attributes:
        row.update(one.attributes)
    return row


def send_run(connector, run_key: str, removals: list[Member], additions: list[Member]) -> list:
    """Batches numbered as planning numbers them (removals first); the ledger's rows."""
    size = connector.max_batch_size
    chunks = [("remove", removals[i : i + size]) for i in range(0, len(removals), size)]
    chunks += [("add", additions[i : i + size]) for i in range(0, len(additions), size)]
    batches = [make_batch(run_key, number, len(chunks), operation, members)
               for number, (operation, members) in enumerate(chunks, start=1)]  # fmt: skip
    for batch in batches:
        connector.send(batch)
    return batches


def make_batch(run_key, number, total, operation, members) -> Batch:
    return Batch(
        destination="partner_files",
        audience=AUDIENCE,
        run_key=run_key,
        number=number,
        total=total,
        operation=operation,
        members=tuple(members),
        idempotency_key=f"{run_key}-{number}",
    )


def ledger_rows(batches: list[Batch]) -> list[dict]:
    return [
        {"number": b.number, "operation": b.operation, "rows": len(b.members), "status": "sent",
         "rows_rejected": 0}
        for b in batches
    ]  # fmt: skip


# -- the three stores, read directly ---------------------------------------------------


class Store:
    """Where a destination writes and how a test reads it without the connector."""

    def __init__(self, location: str, connection_id: str | None, files: dict | None = None):
        self.location = location
        self.connection_id = connection_id
        self._files = files

    def destination(self, **overrides) -> FileDestination:
        return FileDestination(location=self.location, connection_id=self.connection_id,
                               **overrides)  # fmt: skip

    def names(self, folder: str) -> list[str]:
        raise NotImplementedError

    def read(self, path: str) -> bytes:
        raise NotImplementedError

    def delete(self, path: str) -> None:
        raise NotImplementedError


class FolderStore(Store):
    def __init__(self, root: Path):
        super().__init__(str(root), None)
        self.root = root

    def names(self, folder: str) -> list[str]:
        base = self.root / folder
        return sorted(p.name for p in base.iterdir()) if base.exists() else []

    def read(self, path: str) -> bytes:
        return (self.root / path).read_bytes()

    def delete(self, path: str) -> None:
        (self.root / path).unlink()


class S3Store(Store):
    def __init__(self, endpoint: str, prefix: str, connection_id: str):
        super().__init__(f"s3://{BUCKET}/{prefix}", connection_id)
        self.prefix = prefix
        self.client = boto3.client(
            "s3", endpoint_url=endpoint, aws_access_key_id="t", aws_secret_access_key="t",
            region_name="us-east-1",
        )  # fmt: skip

    def names(self, folder: str) -> list[str]:
        listing = self.client.list_objects_v2(Bucket=BUCKET, Prefix=f"{self.prefix}/{folder}")
        return sorted(item["Key"].rsplit("/", 1)[1] for item in listing.get("Contents", []))

    def read(self, path: str) -> bytes:
        return self.client.get_object(Bucket=BUCKET, Key=f"{self.prefix}/{path}")["Body"].read()

    def delete(self, path: str) -> None:
        self.client.delete_object(Bucket=BUCKET, Key=f"{self.prefix}/{path}")


class SftpStore(FolderStore):
    def __init__(self, server: StandInSftpServer, connection_id: str):
        super().__init__(server.root / "exports")
        self.server = server
        self.location = server.location("exports")
        self.connection_id = connection_id


@pytest.fixture(scope="module")
def s3_endpoint() -> str:
    return start_local_s3((BUCKET,))


@pytest.fixture
def sftp_server(tmp_path):
    with StandInSftpServer(tmp_path / "sftp-root") as server:
        yield server


@pytest.fixture(params=["folder", "s3", "sftp"])
def store(request, tmp_path, monkeypatch) -> Store:
    if request.param == "folder":
        return FolderStore(tmp_path / "drop")
    if request.param == "s3":
        endpoint = request.getfixturevalue("s3_endpoint")
        monkeypatch.setenv("AIRFLOW_CONN_TEST_S3", airflow_connection_uri(endpoint))
        return S3Store(endpoint, f"{request.node.name}-{id(tmp_path)}", "test_s3")
    server = request.getfixturevalue("sftp_server")
    monkeypatch.setenv("AIRFLOW_CONN_TEST_SFTP", server.airflow_connection())
    return SftpStore(server, "test_sftp")


@pytest.fixture
def sftp_store(sftp_server, monkeypatch) -> SftpStore:
    monkeypatch.setenv("AIRFLOW_CONN_TEST_SFTP", sftp_server.airflow_connection())
    return SftpStore(sftp_server, "test_sftp")


def read_rows(content: bytes, file_format: str) -> tuple[list[str], list[dict]]:
    """Column names and rows as a consumer's own reader sees them."""
    if file_format == "parquet":
        table = pq.read_table(io.BytesIO(content))
        return table.column_names, table.to_pylist()
    reader = csv.DictReader(io.StringIO(content.decode()))
    return list(reader.fieldnames), list(reader)


def as_csv_text(row: dict) -> dict:
    """The expected row as CSV spells it (empty for none, lower-case booleans)."""

    def text(value):
        if value is None:
            return ""
        if isinstance(value, bool):
            return str(value).lower()
        return str(value)

    return {key: text(value) for key, value in row.items()}


def connector_for(destination) -> FileExportConnector:
    connector = FileExportConnector(destination)
    connector.open_audience(AUDIENCE)
    return connector


# -- splitting, naming, the manifest ---------------------------------------------------


@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_parts_split_at_the_row_limit_and_the_manifest_describes_them(store, file_format):
    destination = store.destination(file_format=file_format)
    members = [member(n) for n in range(1, 26)]
    connector = connector_for(destination)
    folder = f"{AUDIENCE.audience_id}/run-1/"
    try:
        batches = send_run(connector, "run-1", [], members)
        parts = [f"additions-{n:05d}.{file_format}" for n in (1, 2, 3)]
        assert store.names(folder) == parts
        assert "manifest.json" not in store.names(folder), "a manifest before finish_run"

        returned = connector.finish_run(AUDIENCE, "run-1", ledger_rows(batches))
    finally:
        connector.close()

    manifest = json.loads(store.read(folder + "manifest.json"))
    assert manifest == returned
    assert (manifest["destination"], manifest["audience_id"], manifest["run_key"]) == (
        "partner_files", AUDIENCE.audience_id, "run-1")  # fmt: skip
    assert (manifest["format"], manifest["identities"]) == (file_format, ["email_sha256", "crm_id"])
    assert [part["name"] for part in manifest["files"]] == parts
    assert [part["rows"] for part in manifest["files"]] == [10, 10, 5]
    assert manifest["rows"] == 25

    read_back = []
    for part in manifest["files"]:
        content = store.read(folder + part["name"])
        assert part["bytes"] == len(content)
        assert part["sha256"] == hashlib.sha256(content).hexdigest()
        assert part["operation"] == "add"
        columns, rows = read_rows(content, file_format)
        assert columns == ["email_sha256", "crm_id", *ATTRIBUTES]
        assert len(rows) == part["rows"]
        read_back += rows

    expected = [expected_row(one) for one in members]
    if file_format == "csv":
        expected = [as_csv_text(row) for row in expected]
    assert read_back == expected


def test_parquet_columns_are_typed_from_the_values(tmp_path):
    connector = connector_for(FileDestination(str(tmp_path), file_format="parquet"))
    send_run(connector, "run-1", [], [member(n) for n in range(1, 8)])

    schema = pq.read_schema(tmp_path / AUDIENCE.audience_id / "run-1" / "additions-00001.parquet")
    assert schema.field("email_sha256").type == pa.string()
    assert schema.field("crm_id").type == pa.string()
    assert schema.field("first_name").type == pa.string()
    assert schema.field("orders").type == pa.int64()
    assert schema.field("lifetime_value").type == pa.float64()
    assert schema.field("is_vip").type == pa.bool_()


def test_mixed_value_types_fall_back_to_text_in_parquet(tmp_path):
    odd = [Member(f"p{n}", {"email_sha256": ["a" * 64]}, {"orders": value})
           for n, value in enumerate([3, "3+", None])]  # fmt: skip
    destination = FileDestination(str(tmp_path), file_format="parquet",
                                  attributes={"orders": "order_count"})  # fmt: skip
    send_run(connector_for(destination), "run-1", [], odd)

    table = pq.read_table(tmp_path / AUDIENCE.audience_id / "run-1" / "additions-00001.parquet")
    assert table.schema.field("orders").type == pa.string()
    assert table.column("orders").to_pylist() == ["3", "3+", None]


def test_removals_carry_identities_only_and_come_first(tmp_path):
    store = FolderStore(tmp_path)
    connector = connector_for(store.destination())
    leaving, joining = [member(n) for n in (1, 2, 3)], [member(n) for n in range(10, 22)]
    batches = send_run(connector, "run-2", leaving, joining)
    manifest = connector.finish_run(AUDIENCE, "run-2", ledger_rows(batches))

    assert [(part["name"], part["operation"], part["rows"]) for part in manifest["files"]] == [
        ("removals-00001.csv", "remove", 3),
        ("additions-00002.csv", "add", 10),
        ("additions-00003.csv", "add", 2),
    ]
    columns, rows = read_rows(store.read(f"{AUDIENCE.audience_id}/run-2/removals-00001.csv"), "csv")
    assert columns == ["email_sha256", "crm_id"]
    assert rows == [as_csv_text(expected_row(one, with_attributes=False)) for one in leaving]


def test_full_file_parts_are_named_members(tmp_path):
    store = FolderStore(tmp_path)
    connector = connector_for(store.destination(export_mode="full_file"))
    batches = send_run(connector, "run-3", [], [member(n) for n in range(1, 13)])
    manifest = connector.finish_run(AUDIENCE, "run-3", ledger_rows(batches))

    assert manifest["export_mode"] == "full_file"
    parts = ["members-00001.csv", "members-00002.csv"]
    assert [part["name"] for part in manifest["files"]] == parts
    assert store.names(f"{AUDIENCE.audience_id}/run-3/") == ["manifest.json", *parts]


def test_an_empty_full_file_run_writes_a_manifest_of_no_parts(tmp_path):
    connector = connector_for(FileDestination(str(tmp_path), export_mode="full_file"))
    manifest = connector.finish_run(AUDIENCE, "run-4", [])

    folder = tmp_path / AUDIENCE.audience_id / "run-4"
    assert [path.name for path in folder.iterdir()] == ["manifest.json"]
    assert (manifest["rows"], manifest["files"]) == (0, [])


def test_airflow_run_ids_make_a_safe_folder_name(tmp_path):
    run_key = "scheduled__2026-03-01T06:00:00+00:00"
    connector = connector_for(FileDestination(str(tmp_path)))
    send_run(connector, run_key, [], [member(1)])

    folder = tmp_path / AUDIENCE.audience_id / "scheduled__2026-03-01T06_00_00_00_00"
    assert [p.name for p in folder.iterdir()] == ["additions-00001.csv"]


# -- exactly once: a batch sent again replaces its file --------------------------------


def test_a_batch_sent_again_overwrites_its_file(store):
    connector = connector_for(store.destination())
    folder = f"{AUDIENCE.audience_id}/run-1/"
    try:
        batches = send_run(connector, "run-1", [], [member(n) for n in range(1, 26)])
        first_copy = store.read(folder + "additions-00002.csv")

        connector.send(batches[1])  # as after a crash before the ledger heard of it
        connector.send(batches[1])
        manifest = connector.finish_run(AUDIENCE, "run-1", ledger_rows(batches))
    finally:
        connector.close()

    parts = [f"additions-{n:05d}.csv" for n in (1, 2, 3)]
    assert store.names(folder) == [*parts, "manifest.json"]
    assert store.read(folder + "additions-00002.csv") == first_copy
    emails = [row["email_sha256"]
              for part in manifest["files"]
              for row in read_rows(store.read(folder + part["name"]), "csv")[1]]  # fmt: skip
    assert len(emails) == len(set(emails)) == 25


@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_an_sftp_connection_dropped_mid_file_is_retryable_and_a_resend_completes(
    sftp_store, file_format
):
    server = sftp_store.server
    connector = connector_for(sftp_store.destination(file_format=file_format))
    members = [member(n) for n in range(1, 26)]
    batches = [make_batch("run-1", n, 3, "add", members[(n - 1) * 10 : n * 10]) for n in (1, 2, 3)]
    folder = f"{AUDIENCE.audience_id}/run-1/"
    try:
        connector.send(batches[0])
        server.drop_connection(after=0)  # the next file's data never lands
        with pytest.raises(RetryableError, match="test_sftp"):
            connector.send(batches[1])
        assert server.dropped_connections == 1
        assert f"additions-00002.{file_format}" not in sftp_store.names(folder)

        connector.send(batches[1])  # the runner's retry: a fresh login, the same name
        connector.send(batches[2])
        manifest = connector.finish_run(AUDIENCE, "run-1", ledger_rows(batches))
    finally:
        connector.close()

    names = [f"additions-{n:05d}.{file_format}" for n in (1, 2, 3)]
    assert sftp_store.names(folder) == sorted([*names, "manifest.json"]), "a .partial was left"
    assert server.arrivals[-1] == f"/exports/{folder}manifest.json"
    read_back = [row for name in names
                 for row in read_rows(sftp_store.read(folder + name), file_format)[1]]  # fmt: skip
    assert [row["email_sha256"] for row in read_back] == [
        one.identities["email_sha256"][0] for one in members]  # fmt: skip
    assert [part["rows"] for part in manifest["files"]] == [10, 10, 5]


def test_a_file_that_landed_before_the_connection_dropped_is_replaced_not_doubled(sftp_store):
    server = sftp_store.server
    connector = connector_for(sftp_store.destination())
    batches = [make_batch("run-1", 1, 1, "add", [member(n) for n in range(1, 8)])]
    folder = f"{AUDIENCE.audience_id}/run-1/"
    try:
        server.drop_connection(after=0, operation="rename", applied=True)
        with pytest.raises(RetryableError):
            connector.send(batches[0])
        landed = sftp_store.read(folder + "additions-00001.csv")  # it did arrive

        connector.send(batches[0])
        connector.finish_run(AUDIENCE, "run-1", ledger_rows(batches))
    finally:
        connector.close()

    assert sftp_store.names(folder) == ["additions-00001.csv", "manifest.json"]
    assert sftp_store.read(folder + "additions-00001.csv") == landed
    assert server.arrivals.count(f"/exports/{folder}additions-00001.csv") == 2


def test_a_lost_part_is_named_and_left_out_of_the_manifest(store):
    connector = connector_for(store.destination())
    batches = send_run(connector, "run-1", [member(1)], [member(n) for n in range(2, 22)])
    folder = f"{AUDIENCE.audience_id}/run-1/"
    # Deleted at the destination after it was written; its content is nowhere else.
    store.delete(folder + "additions-00002.csv")

    with pytest.raises(SentBatchesLost, match="additions-00002.csv is missing") as lost:
        connector.finish_run(AUDIENCE, "run-1", ledger_rows(batches))

    assert set(lost.value.lost) == {2}
    manifest = json.loads(store.read(folder + "manifest.json"))
    assert [part["name"] for part in manifest["files"]] == [
        "removals-00001.csv", "additions-00003.csv",
    ]  # fmt: skip
    assert manifest["rows"] == 1 + 10


def test_a_full_file_with_a_lost_part_gets_no_manifest(tmp_path):
    store = FolderStore(tmp_path)
    connector = connector_for(store.destination(export_mode="full_file"))
    batches = send_run(connector, "run-1", [], [member(n) for n in range(1, 26)])
    (tmp_path / AUDIENCE.audience_id / "run-1" / "members-00002.csv").write_text("email_sha256\n")

    altered = "members-00002.csv holds 0 rows where batch 2 sent 10"
    with pytest.raises(SentBatchesLost, match=altered):
        connector.finish_run(AUDIENCE, "run-1", ledger_rows(batches))
    assert "manifest.json" not in store.names(f"{AUDIENCE.audience_id}/run-1/")


# -- credentials and reachability -------------------------------------------------------


def test_a_refused_sftp_password_is_permanent_and_names_the_connection(sftp_server, monkeypatch):
    wrong = "not-the-password"
    monkeypatch.setenv("AIRFLOW_CONN_PARTNER_SFTP", sftp_server.airflow_connection(password=wrong))
    connector = FileExportConnector(
        FileDestination(sftp_server.location("exports"), connection_id="partner_sftp")
    )

    with pytest.raises(PermanentError, match="'partner_sftp'.*refused the login") as refused:
        connector.open_audience(AUDIENCE)
    connector.close()
    assert wrong not in str(refused.value)
    assert sftp_server.refused_logins >= 1
    assert not (sftp_server.root / "exports").exists()


def test_an_unexpected_sftp_host_key_is_permanent(sftp_server, monkeypatch):
    other_key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    monkeypatch.setenv("AIRFLOW_CONN_PARTNER_SFTP",
                       sftp_server.airflow_connection(host_key=other_key))  # fmt: skip
    connector = FileExportConnector(
        FileDestination(sftp_server.location("exports"), connection_id="partner_sftp")
    )

    with pytest.raises(PermanentError, match="'partner_sftp'.*host_key"):
        connector.open_audience(AUDIENCE)
    connector.close()


def test_sftp_login_with_a_private_key_from_the_connection(sftp_server, monkeypatch):
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    sftp_server.authorized_keys.append(client_key)
    monkeypatch.setenv(
        "AIRFLOW_CONN_PARTNER_SFTP",
        sftp_server.airflow_connection(
            password="", private_key=client_key.export_private_key().decode()
        ),
    )
    connector = connector_for(
        FileDestination(sftp_server.location("exports"), connection_id="partner_sftp")
    )
    send_run(connector, "run-1", [], [member(1)])
    connector.close()

    assert (sftp_server.root / "exports" / AUDIENCE.audience_id / "run-1" / "additions-00001.csv"
            ).exists()  # fmt: skip
    assert sftp_server.refused_logins == 0


def test_an_unreachable_sftp_server_is_retryable(monkeypatch):
    port = free_port()
    monkeypatch.setenv(
        "AIRFLOW_CONN_PARTNER_SFTP",
        json.dumps({"conn_type": "sftp", "login": "cdp", "password": "x",
                    "extra": {"no_host_key_check": True}}),
    )  # fmt: skip
    connector = FileExportConnector(
        FileDestination(f"sftp://127.0.0.1:{port}/exports", connection_id="partner_sftp")
    )
    with pytest.raises(RetryableError, match="cannot connect"):
        connector.open_audience(AUDIENCE)
    connector.close()


def test_an_sftp_server_that_never_answers_is_retryable(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_PARTNER_SFTP",
        json.dumps({"conn_type": "sftp", "login": "cdp", "password": "x",
                    "extra": {"no_host_key_check": True}}),
    )  # fmt: skip
    with socket.socket() as silent:  # accepts the TCP connection, never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        connector = FileExportConnector(
            FileDestination(f"sftp://127.0.0.1:{port}/exports", connection_id="partner_sftp",
                            timeout_seconds=0.3)
        )  # fmt: skip
        with pytest.raises(RetryableError, match="partner_sftp"):
            connector.open_audience(AUDIENCE)
        connector.close()


def test_the_connection_host_and_port_win_over_the_location(sftp_server, monkeypatch):
    # As shipped in destinations/partner_sftp_drop.yml: the demo repoints the connection.
    monkeypatch.setenv("AIRFLOW_CONN_PARTNER_SFTP", "")  # removed again after the test
    sftp_server.use_for_demo_destinations("partner_sftp")
    connector = connector_for(
        FileDestination("sftp://partner/incoming/cdp", connection_id="partner_sftp")
    )
    send_run(connector, "run-1", [], [member(1)])
    connector.close()

    arrived = sftp_server.root / "incoming" / "cdp" / AUDIENCE.audience_id / "run-1"
    assert [path.name for path in arrived.iterdir()] == ["additions-00001.csv"]


def test_a_missing_bucket_is_permanent_and_names_the_connection(s3_endpoint, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_PARTNER_S3", airflow_connection_uri(s3_endpoint))
    connector = FileExportConnector(
        FileDestination("s3://no-such-bucket/exports", connection_id="partner_s3")
    )
    with pytest.raises(PermanentError, match="'partner_s3'.*bucket name"):
        connector.open_audience(AUDIENCE)


def test_an_unreachable_s3_endpoint_is_retryable(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_PARTNER_S3", airflow_connection_uri(f"http://127.0.0.1:{free_port()}")
    )
    connector = FileExportConnector(
        FileDestination(f"s3://{BUCKET}/exports", connection_id="partner_s3", timeout_seconds=0.5)
    )
    with pytest.raises(RetryableError, match="'partner_s3'"):
        connector.open_audience(AUDIENCE)


def test_a_connection_that_is_not_defined_is_permanent(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_NOWHERE", raising=False)
    connector = FileExportConnector(
        FileDestination("sftp://127.0.0.1:2222/exports", connection_id="nowhere")
    )
    with pytest.raises(PermanentError, match="'nowhere' is not defined"):
        connector.open_audience(AUDIENCE)


def free_port() -> int:
    """A loopback port nothing listens on (bound, read, released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
