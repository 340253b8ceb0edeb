"""The activation ledger against a real Postgres, a real folder and a local S3 server.

The activation view is filled by hand here so each case states its membership; the
end-to-end test covers the view dbt builds.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import boto3
import pytest

from cdp import warehouse
from cdp.activation import runner
from cdp.activation.destinations import Destination
from cdp.local_s3 import airflow_connection_uri, start_local_s3
from tests.conftest import warehouse_kinds

AUDIENCE = "engaged_browsers"


def sha(email: str) -> str:
    return hashlib.sha256(email.encode()).hexdigest()


def destination(location: str, *, mode="additions_and_removals", connection=None) -> Destination:
    return Destination(
        name="email_drop", description="", type="file_export", marketing_action="email",
        identity="email_sha256", audiences=(AUDIENCE,), schedule="after_each_build",
        export_mode=mode, location=location, connection_id=connection, declared_in=Path("x.yml"),
    )  # fmt: skip


def set_members(members: list[tuple[str, str | None, bool]]) -> None:
    """Replace the audience with (profile_id, email or None, has_email_consent) rows."""
    with warehouse.connect() as conn, conn.cursor() as cursor:
        cursor.execute("create schema if not exists activation; create schema if not exists marts")
        cursor.execute(
            "create table if not exists marts.dim_audiences (audience_id text primary key)"
        )
        cursor.execute(
            "insert into marts.dim_audiences values (%s) on conflict do nothing", (AUDIENCE,)
        )
        cursor.execute(
            """
            create table if not exists activation.act_audience_members (
                audience_id text, profile_id text, email_sha256 text, phone_e164 text,
                has_email_consent boolean, has_sms_consent boolean, has_ads_consent boolean
            )
            """
        )
        cursor.execute("truncate activation.act_audience_members")
        for profile_id, email, consent in members:
            cursor.execute(
                "insert into activation.act_audience_members"
                " values (%s, %s, %s, null, %s, false, false)",
                (AUDIENCE, profile_id, sha(email) if email else None, consent),
            )


def read_csv(path: Path) -> list[str]:
    rows = list(csv.reader(io.StringIO(path.read_text())))
    assert rows[0] == ["email_sha256"]
    return [row[0] for row in rows[1:]]


@pytest.mark.parametrize("warehouse_env", warehouse_kinds(), indirect=True)
def test_first_run_sends_everyone_then_only_changes_and_a_rerun_sends_nothing(
    warehouse_env, tmp_path
):
    drop = destination(str(tmp_path / "drop"))
    set_members([
        ("p1", "ann@example.com", True),
        ("p2", "bob@example.com", True),
        ("p3", "cy@example.com", False),   # no consent
        ("p4", None, True),                # no email
    ])  # fmt: skip

    first = runner.activate_audience(drop, AUDIENCE, "run-1")
    assert first.is_first_run
    assert (first.rows_added, first.rows_removed) == (2, 0)
    assert first.excluded_by_reason == {"no_email_consent": 1, "missing_email_sha256": 1}
    run_1 = tmp_path / "drop" / AUDIENCE / "run-1"
    assert sorted(read_csv(run_1 / "additions.csv")) == sorted(
        [sha("ann@example.com"), sha("bob@example.com")]
    )
    assert json.loads((run_1 / "manifest.json").read_text())["files"]["additions.csv"]["rows"] == 2

    again = runner.activate_audience(drop, AUDIENCE, "run-1")
    assert again.outcome == "already_sent"
    assert len(list((tmp_path / "drop" / AUDIENCE).iterdir())) == 1

    # Bob leaves, Cy consents: one removal, one addition, Ann untouched.
    set_members([("p1", "ann@example.com", True), ("p3", "cy@example.com", True)])
    second = runner.activate_audience(drop, AUDIENCE, "run-2")
    assert not second.is_first_run
    run_2 = tmp_path / "drop" / AUDIENCE / "run-2"
    assert read_csv(run_2 / "additions.csv") == [sha("cy@example.com")]
    assert read_csv(run_2 / "removals.csv") == [sha("bob@example.com")]

    # Nothing changed: the run is recorded and no file is written.
    third = runner.activate_audience(drop, AUDIENCE, "run-3")
    assert (third.rows_added, third.rows_removed) == (0, 0)
    assert not (tmp_path / "drop" / AUDIENCE / "run-3").exists()


@pytest.mark.parametrize("warehouse_env", warehouse_kinds()[:1], indirect=True)
def test_an_interrupted_delivery_is_finished_before_the_next_run_without_duplicates(
    warehouse_env, tmp_path, monkeypatch
):
    drop = destination(str(tmp_path / "drop"))
    set_members([("p1", "ann@example.com", True), ("p2", "bob@example.com", True)])

    def fail_before_manifest(*args, **kwargs):
        raise TimeoutError("the file share went away")

    with monkeypatch.context() as patched, pytest.raises(TimeoutError):
        patched.setattr(runner, "_deliver", fail_before_manifest)
        runner.activate_audience(drop, AUDIENCE, "run-1")

    # The audience changed meanwhile; the next run first finishes run-1 as planned.
    set_members([("p1", "ann@example.com", True), ("p3", "cy@example.com", True)])
    summary = runner.activate_audience(drop, AUDIENCE, "run-2")

    root = tmp_path / "drop" / AUDIENCE
    assert sorted(read_csv(root / "run-1" / "additions.csv")) == sorted(
        [sha("ann@example.com"), sha("bob@example.com")]
    )
    assert (summary.rows_added, summary.rows_removed) == (1, 1)
    sent = read_csv(root / "run-1" / "additions.csv") + read_csv(root / "run-2" / "additions.csv")
    assert len(sent) == len(set(sent)), "an identity was added twice"


@pytest.mark.parametrize("warehouse_env", warehouse_kinds()[:1], indirect=True)
def test_full_file_mode_writes_every_member_each_run_to_s3(warehouse_env, monkeypatch):
    endpoint = start_local_s3(("audience-files",))
    monkeypatch.setenv("AIRFLOW_CONN_LOCAL_S3", airflow_connection_uri(endpoint))
    drop = destination("s3://audience-files/email", mode="full_file", connection="local_s3")
    set_members([("p1", "ann@example.com", True), ("p2", "bob@example.com", True)])

    runner.activate_audience(drop, AUDIENCE, "run-1")
    set_members([("p1", "ann@example.com", True)])
    runner.activate_audience(drop, AUDIENCE, "run-2")

    client = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id="x", aws_secret_access_key="x",
        region_name="us-east-1",
    )  # fmt: skip
    body = client.get_object(Bucket="audience-files", Key=f"email/{AUDIENCE}/run-2/members.csv")
    assert body["Body"].read().decode().splitlines() == ["email_sha256", sha("ann@example.com")]
    manifest = client.get_object(
        Bucket="audience-files", Key=f"email/{AUDIENCE}/run-2/manifest.json"
    )
    assert json.loads(manifest["Body"].read())["export_mode"] == "full_file"
