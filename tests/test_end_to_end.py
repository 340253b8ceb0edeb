"""The whole flow through the real DAGs, dbt, Great Expectations and Postgres.

Runs `cdp run` (the documented command) in a fresh process over generated extracts
whose true people are known, then checks the warehouse against that truth: nothing
lost, bad rows quarantined with reasons, people stitched without merging households
or shared devices, audiences activated once and only their changes afterwards.

The API destinations deliver to vendor stand-ins this test process starts and hands
to each `cdp run` through AIRFLOW_CONN_<ID>, so one vendor lives across the runs, as
the real one would: after each run it must hold exactly the consenting members of
each audience, under their accepted identities, each applied once.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cdp import samples, settings
from cdp.activation.destinations import Destination, parse_file
from cdp.local_s3 import DEMO_CONNECTION_ID, airflow_connection_uri, start_local_s3
from cdp.vendors import sandbox
from cdp.vendors.stand_in import StandInVendor
from tests.conftest import query, warehouse_kinds

CUSTOMERS = 300


def run_cdp(env: dict[str, str], *args: str) -> str:
    completed = subprocess.run(
        [sys.executable, "-m", "cdp.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=1200,
    )
    assert completed.returncode == 0, (
        f"cdp {' '.join(args)} failed:\n{completed.stdout[-4000:]}\n{completed.stderr[-6000:]}"
    )
    return completed.stdout


def read_truth(truth_dir: Path, name: str) -> list[dict]:
    with open(truth_dir / name, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def flow_env(warehouse_env, tmp_path) -> dict[str, str]:
    endpoint = start_local_s3(("cdp-exports",))
    # The file exports; the `vendors` fixture adds the API destinations.
    destinations = tmp_path / "destinations"
    destinations.mkdir()
    for name in ("email_file_drop_local.yml", "email_file_drop_s3.yml"):
        shutil.copy(settings.DESTINATIONS_DIR / name, destinations / name)
    return {
        **warehouse_env,
        "CDP_DESTINATIONS_DIR": str(destinations),
        "CDP_EXPORTS_DIR": str(tmp_path / "exports"),
        f"AIRFLOW_CONN_{DEMO_CONNECTION_ID.upper()}": airflow_connection_uri(endpoint),
    }


# The shipped API destinations, one of each type. (partner_sftp_drop is a file export
# over SFTP, covered in tests/test_activation_runs.py.)
API_DESTINATIONS = (
    "newsletter_esp", "sms_promotions", "meta_retargeting", "google_customer_match",
    "audience_manager_sharing",
)  # fmt: skip


@dataclass
class Vendor:
    destination: Destination
    stand_in: StandInVendor


@pytest.fixture
def vendors(flow_env) -> Iterator[dict[str, Vendor]]:
    """A stand-in per shipped API destination, living in this process across every run.

    Each destination file is copied unchanged into the run's destinations folder and its
    connection, pointing at the stand-in, added to `flow_env`.
    """
    started: dict[str, Vendor] = {}
    for name in API_DESTINATIONS:
        path = Path(flow_env["CDP_DESTINATIONS_DIR"]) / f"{name}.yml"
        shutil.copy(settings.DESTINATIONS_DIR / f"{name}.yml", path)
        destination = parse_file(path)
        stand_in, connection = sandbox.start_stand_in(
            destination.type, **stand_in_options(destination)
        )
        flow_env[f"AIRFLOW_CONN_{destination.connection_id.upper()}"] = json.dumps(connection)
        started[name] = Vendor(destination, stand_in)
    yield started
    for vendor in started.values():
        vendor.stand_in.stop()


def stand_in_options(destination: Destination) -> dict:
    """The vendor-side setup a destination file assumes: the list, the user lists."""
    if destination.type == "email_provider":
        return {"list_ids": (destination.settings["list_id"],)}
    if destination.type == "google_customer_match":
        account = destination.settings["operating_account_id"]
        return {"user_lists": dict.fromkeys(destination.settings["user_lists"].values(), account)}
    return {}


@pytest.mark.parametrize("warehouse_env", warehouse_kinds(), indirect=True)
def test_generated_extracts_flow_end_to_end_and_twice_changes_nothing(flow_env, vendors, tmp_path):
    landing = tmp_path / "landing"
    samples.generate(landing, customers=CUSTOMERS, seed=11)
    truth = tmp_path / "landing_truth"

    output = run_cdp(flow_env, "run", "--landing", str(landing))
    assert "Audience sizes" in output

    check_nothing_lost_and_bad_input_quarantined(truth)
    check_people_stitched_as_the_truth_says(truth)
    exports_dir = Path(flow_env["CDP_EXPORTS_DIR"])
    check_first_activation_sent_consenting_members()
    exports_after_first = sorted(exports_dir.rglob("*.csv"))
    assert exports_after_first, "the local file drop received no files"
    check_vendors_hold_the_consenting_members(vendors, truth)
    for vendor in vendors.values():
        assert set(vendor.stand_in.applied_adds.values()) == {1}, vendor.destination.name
        assert not vendor.stand_in.applied_removes, vendor.destination.name

    # The same landing area again: nothing new lands, nothing is sent again.
    counts_before = table_counts()
    requests_before = vendor_requests(vendors)
    run_cdp(flow_env, "run", "--landing", str(landing))
    assert table_counts() == counts_before
    assert sorted(exports_dir.rglob("*.csv")) == exports_after_first
    assert vendor_requests(vendors) == requests_before

    # The next day's extracts: only additions and removals are sent.
    samples.generate(landing, customers=CUSTOMERS, seed=11, day=2)
    run_cdp(flow_env, "run", "--landing", str(landing))
    check_second_activation_sent_only_changes()
    check_vendors_hold_the_consenting_members(vendors, truth)
    assert sum(sum(v.stand_in.applied_removes.values()) for v in vendors.values()) > 0

    # Stand-ins started afresh by `cdp run --local-vendors` would hold none of this:
    # the command warns about each destination the ledger says holds members.
    assert sandbox.destinations_holding_members(list(API_DESTINATIONS)) == sorted(API_DESTINATIONS)


def table_counts() -> dict[str, int]:
    tables = [
        "ops.landed_files", "ops.quarantined_rows", "validated.crm_customers",
        "validated.web_events", "marts.dim_profiles", "ops.activation_state",
        "ops.activation_changes", "marts.fct_audience_membership_history",
    ]  # fmt: skip
    return {table: query(f"select count(*) from {table}")[0][0] for table in tables}


def check_nothing_lost_and_bad_input_quarantined(truth: Path) -> None:
    batches = query(
        "select file_name, status, rows_landed, rows_promoted, rows_quarantined,"
        " rejection_reason from ops.landed_files"
    )
    for file_name, status, landed, promoted, quarantined, _ in batches:
        if status != "rejected":
            assert promoted + quarantined == landed, file_name

    rejected = {row[0]: row[5] for row in batches if row[1] == "rejected"}
    expected_rejected = {row["file_name"] for row in read_truth(truth, "bad_files.csv")}
    assert set(rejected) == expected_rejected
    for reason in rejected.values():
        assert "column" in reason

    quarantined = {
        (file_name, line)
        for file_name, line in query(
            "select distinct file_name, line_number from ops.quarantined_rows"
        )
    }
    expected_bad = {
        (row["file_name"], int(row["line_number"]))
        for row in read_truth(truth, "bad_rows.csv")
        if row["file_name"] not in expected_rejected
    }
    assert quarantined == expected_bad

    reasons = query(
        "select file_name, line_number, column_name, expectation_type, reason"
        " from ops.quarantined_rows"
    )
    for file_name, line, column, expectation, reason in reasons:
        assert file_name and line and column and expectation and reason

    promoted = {
        (dataset, file_name, line)
        for dataset in ("crm_customers", "loyalty_members", "offline_orders", "web_events")
        for file_name, line in query(f"select _file_name, _line_number from validated.{dataset}")
    }
    good = {
        (row["dataset"], row["file_name"], int(row["line_number"]))
        for row in read_truth(truth, "records.csv")
    }
    assert promoted == good


def check_people_stitched_as_the_truth_says(truth: Path) -> None:
    unique_namespace_breaches = query(
        """
        select profile_id, namespace, count(*) from marts.bdg_profile_identities
        where namespace in ('crm_id', 'loyalty_id') group by 1, 2 having count(*) > 1
        """
    )
    assert unique_namespace_breaches == []

    profile_of = dict(
        query(
            "select identity_value, profile_id from marts.bdg_profile_identities"
            " where namespace = 'crm_id'"
        )
    )
    for pair in read_truth(truth, "households.csv"):
        assert profile_of[pair["customer_id_a"]] != profile_of[pair["customer_id_b"]]
    for device in read_truth(truth, "shared_devices.csv"):
        a, b = device["customer_id_a"], device["customer_id_b"]
        if a in profile_of and b in profile_of:
            assert profile_of[a] != profile_of[b]

    # Pairwise precision and recall over CRM and loyalty records of known people.
    person_of_record = {
        (row["dataset"], row["record_key"]): row["person_key"]
        for row in read_truth(truth, "records.csv")
        if row["dataset"] in ("crm_customers", "loyalty_members")
    }
    profile_of_record = {}
    for namespace, dataset in (("crm_id", "crm_customers"), ("loyalty_id", "loyalty_members")):
        for value, profile_id in query(
            "select identity_value, profile_id from marts.bdg_profile_identities"
            " where namespace = %s",
            (namespace,),
        ):
            profile_of_record[(dataset, value)] = profile_id
    records = sorted(set(person_of_record) & set(profile_of_record))
    assert len(records) > CUSTOMERS

    true_pairs = found_pairs = both = 0
    by_person = defaultdict(list)
    for record in records:
        by_person[person_of_record[record]].append(record)
    for a, b in itertools.combinations(records, 2):
        same_person = person_of_record[a] == person_of_record[b]
        same_profile = profile_of_record[a] == profile_of_record[b]
        true_pairs += same_person
        found_pairs += same_profile
        both += same_person and same_profile
    precision = both / found_pairs
    recall = both / true_pairs
    print(f"pairwise precision {precision:.4f} recall {recall:.4f} over {len(records)} records")
    assert precision == 1.0
    assert recall >= 0.9


def check_first_activation_sent_consenting_members() -> None:
    runs = query(
        "select destination, audience_id, status, is_first_run, rows_added, rows_removed,"
        " members_eligible from ops.activation_runs"
    )
    assert runs, "no activation ran"
    for destination, audience, status, first, added, removed, eligible in runs:
        assert status == "sent"
        assert first and removed == 0 and added == eligible, (destination, audience)

    # Only consenting members with an email were ever sent to the file drops.
    not_allowed = query(
        """
        select count(*) from ops.activation_state as held
        join activation.act_audience_members as member
            on member.audience_id = held.audience_id and member.profile_id = held.profile_id
        where held.destination in ('email_file_drop_local', 'email_file_drop_s3')
            and (not member.has_email_consent or member.email_sha256 is null)
        """
    )
    assert not_allowed == [(0,)]


def check_second_activation_sent_only_changes() -> None:
    later = query(
        "select sum(rows_added), sum(rows_removed) from ops.activation_runs where not is_first_run"
    )[0]
    assert later[0] > 0 and later[1] > 0, later

    # Each identity alternates add/remove per destination and audience: never added twice.
    sequences = query(
        """
        select destination, audience_id, identity_value,
               string_agg(change, ',' order by run.planned_at)
        from ops.activation_changes as change_row
        join ops.activation_runs as run using (destination, audience_id, run_key)
        group by 1, 2, 3
        """
    )
    for *_, changes in sequences:
        assert ",add,add" not in f",{changes}" and ",remove,remove" not in f",{changes}"


def check_vendors_hold_the_consenting_members(vendors: dict[str, Vendor], truth: Path) -> None:
    """Each vendor holds exactly the consenting members of each audience, under their
    accepted identities, and every value it holds was applied once more than removed."""
    facts = Facts.read(truth)
    sizes = {}
    for name, vendor in vendors.items():
        held = held_by_audience(vendor)
        assert set(held) <= set(vendor.destination.audiences), (name, sorted(held))
        for audience_id in vendor.destination.audiences:
            found = held.get(audience_id, set())
            expected = facts.expected_at(vendor.destination, audience_id)
            # Counts only: the values are email addresses and phone numbers.
            assert (len(found - expected), len(expected - found)) == (0, 0), (
                f"{name} {audience_id}: (held but not expected, expected but not held)"
            )
            sizes[(name, audience_id)] = len(found)
        assert sum(size for (held_by, _), size in sizes.items() if held_by == name) > 0, name

        stand_in = vendor.stand_in
        for key, adds in stand_in.applied_adds.items():
            vendor_audience, value = key
            is_held = value in stand_in.members[vendor_audience]
            assert adds - stand_in.applied_removes[key] == is_held, (name, vendor_audience)
            assert adds <= 2, (name, vendor_audience)  # at most once a run that sent
    print(f"vendors hold {sizes}")


@dataclass
class Facts:
    """What each vendor should hold, worked out apart from the activation view and the
    planning query: who is in each audience (marts.fct_audience_membership, checked
    against the extracts by test_audience_oracle.py), each member's consent from the
    generator's truth (a profile's crm id names the person; a profile without one has
    no consent), and its identities from the profile, hashed here by each vendor's rule.
    """

    members: dict[str, set[str]]
    person_of_customer: dict[str, dict]
    identities: dict[str, dict[str, set[str]]]
    contact_of_profile: dict[str, tuple[str | None, str | None]]

    @classmethod
    def read(cls, truth: Path) -> Facts:
        members = defaultdict(set)
        for audience_id, profile_id in query(
            "select audience_id, profile_id from marts.fct_audience_membership"
            " where status = 'realised'"
        ):
            members[audience_id].add(profile_id)
        identities = defaultdict(lambda: defaultdict(set))
        for profile_id, namespace, value in query(
            "select profile_id, namespace, identity_value from marts.bdg_profile_identities"
        ):
            identities[profile_id][namespace].add(value)
        contact = query("select profile_id, email, phone_e164 from marts.dim_profiles")
        return cls(
            members=members,
            person_of_customer={
                row["customer_id"]: row for row in read_truth(truth, "persons.csv")
            },
            identities=identities,
            contact_of_profile={profile_id: (email, phone) for profile_id, email, phone in contact},
        )

    def expected_at(self, destination: Destination, audience_id: str) -> set[str]:
        if destination.type == "audience_sharing":
            # No channel consent; every member holding an identity of an accepted kind.
            namespaces = {"email", "phone", "crm_id", "loyalty_id", "ecid"}
            return {
                profile_id
                for profile_id in self.members[audience_id]
                if namespaces & set(self.identities[profile_id])
            }
        return {
            value
            for profile_id in self.members[audience_id]
            for value in self._values_sent(destination, profile_id)
        }

    def _values_sent(self, destination: Destination, profile_id: str) -> set[str]:
        email, phone = self.contact_of_profile[profile_id]
        if destination.type == "email_provider":
            return {email} if email and self._consents(profile_id, "email_opt_in") else set()
        if destination.type == "sms_provider":
            return {phone} if phone and self._consents(profile_id, "sms_opt_in") else set()
        if not self._consents(profile_id, "ads_opt_in"):
            return set()
        if phone and destination.type == "meta_custom_audiences":
            phone = phone.lstrip("+")  # Meta hashes the digits, Google the E.164 string
        return {sha256_hex(value) for value in (email, phone) if value}

    def _consents(self, profile_id: str, flag: str) -> bool:
        (customer_id,) = self.identities[profile_id]["crm_id"] or {None}
        return self.person_of_customer.get(customer_id, {}).get(flag) == "true"


def held_by_audience(vendor: Vendor) -> dict[str, set[str]]:
    """What the vendor holds now, by the CDP audience id, found from the vendor's side."""
    destination, stand_in = vendor.destination, vendor.stand_in
    if destination.type == "email_provider":
        return {
            segment["name"]: stand_in.members[segment_id]
            for segment_id, segment in stand_in.segments.items()
            if segment["list_id"] == destination.settings["list_id"]
        }
    if destination.type == "sms_provider":
        return {
            found["name"]: stand_in.members[list_id] for list_id, found in stand_in.lists.items()
        }
    if destination.type == "meta_custom_audiences":
        named = {
            re.search(r"\[cdp:(\w+)\]$", found["name"])[1]: audience_id
            for audience_id, found in stand_in.audiences.items()
        }
        return {audience: stand_in.members[vendor_id] for audience, vendor_id in named.items()}
    if destination.type == "google_customer_match":
        user_lists = destination.settings["user_lists"]
        return {audience: stand_in.members[user_lists[audience]] for audience in user_lists}
    return {audience: stand_in.members[audience] for audience in stand_in.audiences}


def vendor_requests(vendors: dict[str, Vendor]) -> dict[str, int]:
    return {name: sum(v.stand_in.requests_received.values()) for name, v in vendors.items()}


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


PARTNER_EXTRACTS = Path(__file__).parent / "fixtures" / "partner_extracts"


@pytest.mark.parametrize("warehouse_env", warehouse_kinds()[:1], indirect=True)
def test_extracts_written_by_someone_else_land_from_s3_into_the_documented_tables(flow_env):
    import boto3

    endpoint = start_local_s3(("partner-landing",))
    client = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id="x", aws_secret_access_key="x",
        region_name="us-east-1",
    )  # fmt: skip
    for path in PARTNER_EXTRACTS.rglob("*.*"):
        key = f"drops/{path.relative_to(PARTNER_EXTRACTS)}"
        client.upload_file(str(path), "partner-landing", key)

    env = {
        **flow_env,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    run_cdp(env, "run", "--landing", "s3://partner-landing/drops")

    landed = query("select dataset, status, rows_landed, rows_promoted from ops.landed_files")
    assert sorted(landed) == [
        ("crm_customers", "promoted", 5, 5),
        ("loyalty_members", "promoted", 3, 3),
        ("offline_orders", "promoted", 8, 7),
        ("web_events", "promoted", 6, 6),
    ]
    (reason,) = query("select reason from ops.quarantined_rows where line_number = 5")[0]
    assert "loyalty_id" in reason and "email" in reason

    profile_of = dict(query("select identity_value, profile_id from marts.bdg_profile_identities"))
    assert profile_of["P-1002"] == profile_of["LY-9002"], "loyalty joins CRM by its unique email"
    # Jon, then Maria, logged in on one browser: it is Maria's now, and merges nobody.
    assert profile_of["P-1001"] == profile_of["12345678901234567890123456789012345678"]
    assert profile_of["P-1001"] != profile_of["P-1002"]
    assert profile_of["P-1001"] == profile_of["LY-9001"]
    assert profile_of["P-1003"] != profile_of["P-1004"], "a family email merged a household"
    assert "unknown" not in profile_of, "a placeholder email linked"
    household = profile_of["family@example.com"]
    assert household not in (profile_of["P-1003"], profile_of["P-1004"])

    # Maria, Jon, the two Bergs and their shared address, the test account, the new
    # member, the walk-in buyer and one anonymous visitor.
    assert query(
        "select count(*), count(*) filter (where is_anonymous) from marts.dim_profiles"
    ) == [(9, 1)]
    (attributed,) = query("select profile_id from marts.fct_profile_events where event_id = 'w-3'")[
        0
    ]
    assert attributed == profile_of["P-1002"], "an event goes to whoever was logged in then"
    (tier, email_sha256) = query(
        "select tier, email_sha256 from marts.dim_profiles where profile_id = %s",
        (profile_of["P-1001"],),
    )[0]
    assert tier == "gold"
    assert email_sha256 == hashlib.sha256(b"maria.lopez@example.org").hexdigest()

    # An analyst runs dbt by hand with the environment `cdp warehouse env` prints.
    exports = run_cdp(env, "warehouse", "env")
    dbt_env = dict(
        line.removeprefix("export ").split("=", 1)
        for line in exports.splitlines()
        if line.startswith("export CDP_")
    )
    dbt_env = {key: value.strip("'") for key, value in dbt_env.items()}
    for command in (["build"], ["docs", "generate"]):
        completed = subprocess.run(
            [str(Path(sys.executable).parent / "dbt"), *command],
            cwd=Path(__file__).parents[1] / "dbt_project",
            capture_output=True,
            text=True,
            env={**os.environ, **dbt_env},
            timeout=900,
        )
        assert completed.returncode == 0, completed.stdout[-4000:]
