"""Whole activation runs (plan, deliver, finish) against real stand-ins and Postgres.

The connectors are tested alone in tests/activation; here the runner drives them with
its ledger: the first run sends everyone who consented and has an accepted identity,
faults are retried inside the run, a batch whose retries run out goes again next run,
a re-run of a run sends nothing, and every identity arrives exactly once.
"""

from __future__ import annotations

import json
import logging

import pytest

from cdp.activation import runner
from cdp.activation.delivery import DeliveryIncomplete
from cdp.vendors.sandbox import start_stand_in
from cdp.vendors.sftp_server import StandInSftpServer
from cdp.vendors.stand_in import Fault
from tests.activation_fixtures import AUDIENCE, Person, make_destination, set_audience, sha256
from tests.conftest import query, warehouse_kinds

USER_LIST = "5550001"


def people(count: int) -> list[Person]:
    return [
        Person(f"p{n:03}", email=f"person{n}@example.com", phone=f"+4477009{n:05}",
               ads_consent=n % 5 != 0)  # every fifth has not consented to advertising
        for n in range(count)
    ]  # fmt: skip


def expected_hashes(members: list[Person]) -> set[str]:
    return {
        value
        for person in members
        if person.ads_consent
        for value in (sha256(person.email), sha256(person.phone))
    }


@pytest.fixture
def google(monkeypatch):
    vendor, connection = start_stand_in("google_customer_match")
    destination = make_destination("google_customer_match", batch_size=7)
    monkeypatch.setenv(f"AIRFLOW_CONN_{destination.connection_id.upper()}", json.dumps(connection))
    yield vendor, destination
    vendor.stop()


@pytest.mark.parametrize("warehouse_env", warehouse_kinds()[:1], indirect=True)
def test_under_faults_every_consenting_member_arrives_exactly_once(warehouse_env, google, caplog):
    vendor, destination = google
    members = people(40)
    set_audience(members)
    vendor.inject(
        Fault("rate_limit", retry_after_seconds=0.2),
        Fault("server_error"),
        Fault("drop_after"),  # applied, but the answer never arrives
        Fault("slow", delay_seconds=1.0),  # past the 0.5 s timeout, applied
        Fault("drop_before"),
    )

    with caplog.at_level(logging.INFO, logger="cdp"):
        first = runner.activate_audience(destination, AUDIENCE, "run-1")

    assert first.excluded_by_reason == {"no_advertising_consent": 8}
    assert first.rows_added == 32 and first.batch_count == 5
    assert vendor.members[USER_LIST] == expected_hashes(members)
    assert set(vendor.applied_adds.values()) == {1}, "an identity was applied twice"
    attempts = query("select sum(attempts) from ops.activation_batches where run_key = 'run-1'")
    assert attempts == [(10,)], "five faults, five retries"

    # Nothing personal in the log: ids and counts only.
    for person in members:
        assert person.email not in caplog.text and person.phone not in caplog.text

    # The same run again sends nothing; a new run with no change sends nothing either.
    requests_before = sum(vendor.requests_received.values())
    assert runner.activate_audience(destination, AUDIENCE, "run-1").outcome == "already_sent"
    unchanged = runner.activate_audience(destination, AUDIENCE, "run-2")
    assert (unchanged.rows_added, unchanged.rows_removed) == (0, 0)
    assert sum(vendor.requests_received.values()) == requests_before

    # Five leave: they are removed, once.
    set_audience(members[5:])
    third = runner.activate_audience(destination, AUDIENCE, "run-3")
    assert third.rows_removed == 4  # p000 had no consent, so was never sent
    assert vendor.members[USER_LIST] == expected_hashes(members[5:])
    assert set(vendor.applied_removes.values()) == {1}


@pytest.mark.parametrize("warehouse_env", warehouse_kinds()[:1], indirect=True)
def test_a_batch_whose_retries_run_out_goes_again_next_run(warehouse_env, google):
    vendor, destination = google
    members = people(20)
    set_audience(members)
    vendor.inject(Fault("server_error", times=6))  # as many as the retry policy's attempts

    with pytest.raises(DeliveryIncomplete):
        runner.activate_audience(destination, AUDIENCE, "run-1")
    failed = query(
        "select status, row_count from ops.activation_batches where run_key = 'run-1'"
        " order by batch_number"
    )
    assert failed[0] == ("failed", 7) and all(status == "sent" for status, _ in failed[1:])
    assert query("select status, rows_failed from ops.activation_runs") == [("partial", 7)]

    second = runner.activate_audience(destination, AUDIENCE, "run-2")
    assert second.rows_added == 7
    assert vendor.members[USER_LIST] == expected_hashes(members)
    assert set(vendor.applied_adds.values()) == {1}


@pytest.mark.parametrize("warehouse_env", warehouse_kinds()[:1], indirect=True)
def test_a_dry_run_counts_without_sending(warehouse_env, google):
    vendor, destination = google
    set_audience(people(12))
    summary = runner.activate_audience(destination, AUDIENCE, "dry", dry_run=True)
    assert summary.outcome == "dry_run"
    assert summary.members_eligible == 9
    assert summary.excluded_by_reason == {"no_advertising_consent": 3}
    assert len(summary.sample_profile_ids) == 5
    assert sum(vendor.requests_received.values()) == 0
    assert query("select count(*) from ops.activation_runs") == [(0,)]


@pytest.mark.parametrize("warehouse_env", warehouse_kinds()[:1], indirect=True)
def test_files_over_sftp_survive_a_dropped_connection_without_duplicates(
    warehouse_env, tmp_path, monkeypatch
):
    with StandInSftpServer(tmp_path / "root") as server:
        monkeypatch.setenv("AIRFLOW_CONN_TEST_FILE_EXPORT", server.airflow_connection())
        destination = make_destination(
            "file_export", location="sftp://partner/out", batch_size=2, file_format="csv"
        )
        members = [Person(f"p{n}", email=f"x{n}@example.com") for n in range(5)]
        set_audience(members)
        server.drop_connection(after=1)
        runner.activate_audience(destination, AUDIENCE, "run-1")
        set_audience(members[1:])
        runner.activate_audience(destination, AUDIENCE, "run-2")

        first = server.root / "out" / AUDIENCE / "run-1"
        second = server.root / "out" / AUDIENCE / "run-2"
        assert server.dropped_connections >= 1
        assert sorted(path.name for path in first.iterdir()) == [
            "additions-00001.csv", "additions-00002.csv", "additions-00003.csv", "manifest.json",
        ]  # fmt: skip
        added = [
            line for path in sorted(first.glob("additions-*.csv"))
            for line in path.read_text().splitlines()[1:]
        ]  # fmt: skip
        assert sorted(added) == sorted(sha256(person.email) for person in members)
        assert (second / "removals-00001.csv").read_text().splitlines()[1:] == [
            sha256("x0@example.com")
        ]
        manifest = json.loads((second / "manifest.json").read_text())
        assert manifest["run_key"] == "run-2"
