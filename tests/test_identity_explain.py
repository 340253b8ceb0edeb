"""`cdp explain` and the explain_identity analysis on the hand-written partner extracts.

The extracts are landed, validated and built once for the module (the flow's own
functions, without Airflow, to keep it fast); every test then asks explain about one
identity an operator would ask about, typed as it appears in the files.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from contextlib import closing
from pathlib import Path

import pytest

from cdp import cli, transform, warehouse
from tests.conftest import _admin_connection, _with_database, land_and_promote, query

PARTNER_EXTRACTS = Path(__file__).parent / "fixtures" / "partner_extracts"
SHARED_DEVICE = "12345678901234567890123456789012345678"


@pytest.fixture(scope="module")
def partner_warehouse(embedded_pgdata, tmp_path_factory):
    """A database of its own in the embedded server, holding the built partner extracts."""
    saved_environment = dict(os.environ)
    folder = tmp_path_factory.mktemp("explain")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CDP_STATE_DIR", str(folder / "state"))
        patch.setenv("CDP_EMBEDDED_PGDATA", str(embedded_pgdata))
        patch.delenv("WAREHOUSE_URL", raising=False)
        base_url = warehouse.start_embedded()
        database = f"cdp_test_{uuid.uuid4().hex[:10]}"
        with closing(_admin_connection(base_url)) as admin, admin.cursor() as cursor:
            cursor.execute(f'create database "{database}"')
        patch.setenv("WAREHOUSE_URL", _with_database(base_url, database))

        shutil.copytree(PARTNER_EXTRACTS, folder / "landing")
        _land_and_build(str(folder / "landing"))
        try:
            yield
        finally:
            # dbt's environment is set on os.environ by the run; leave none of it behind.
            os.environ.clear()
            os.environ.update(saved_environment)
            with closing(_admin_connection(base_url)) as admin, admin.cursor() as cursor:
                cursor.execute(f'drop database if exists "{database}" with (force)')


def _land_and_build(landing_url: str) -> None:
    land_and_promote(landing_url)
    transform.run_dbt("build")


def explain(capsys, *arguments: str) -> tuple[int, str]:
    exit_code = cli.main(["explain", *arguments])
    captured = capsys.readouterr()
    return exit_code, captured.out + captured.err


def profile_of(namespace: str, value: str) -> str:
    rows = query(
        "select profile_id from marts.bdg_profile_identities"
        " where namespace = %s and identity_value = %s",
        (namespace, value),
    )
    assert rows, f"{namespace} {value} is in no profile"
    return rows[0][0]


def section(output: str, title: str) -> str:
    """The lines of one section of explain's output, up to the next blank line."""
    start = output.index(title)
    end = output.find("\n\n", start)
    return output[start : end if end != -1 else None]


@pytest.mark.parametrize(
    ("typed", "namespace", "value"),
    [
        pytest.param("P-1001", "crm_id", "P-1001", id="a crm id as stored"),
        pytest.param(
            "  Maria.Lopez@Example.ORG ", "email", "maria.lopez@example.org",
            id="an email typed as the crm extract wrote it",
        ),
        pytest.param("+34 612 345 678", "phone", "+34612345678", id="a phone with spaces"),
        pytest.param("(212) 555-0199", "phone", "+12125550199", id="a national phone"),
    ],
)  # fmt: skip
def test_a_value_typed_any_way_finds_the_profile_the_warehouse_gave_it(
    partner_warehouse, capsys, typed, namespace, value
):
    exit_code, output = explain(capsys, typed)

    assert exit_code == 0, output
    assert f"Profile {profile_of(namespace, value)}" in output
    assert f"{namespace} {value!r}" in section(output, "Searched:")


def test_a_crm_id_shows_its_loyalty_id_joined_by_customer_id_with_file_and_line(
    partner_warehouse, capsys
):
    exit_code, output = explain(capsys, "P-1001")

    assert exit_code == 0, output
    assert profile_of("loyalty_id", "LY-9001") == profile_of("crm_id", "P-1001")
    assert "anchor: crm_id P-1001" in output
    assert "anonymous: no" in output
    identities = section(output, "Identities")
    assert "loyalty_id" in identities and "LY-9001" in identities

    # The loyalty record names the customer: members.csv line 2 carries customer_id P-1001.
    evidence = section(output, "Links and their evidence")
    assert any(
        "LY-9001" in line and "crm_id P-1001" in line and "members.csv line 2" in line
        for line in evidence.splitlines()
    ), evidence
    assert all("rule " in line for line in evidence.splitlines()[1:]), evidence


def test_a_household_email_is_kept_apart_from_both_customers_and_says_why(
    partner_warehouse, capsys
):
    exit_code, output = explain(capsys, " FAMILY@example.com", "--namespace", "email")

    assert exit_code == 0, output
    ana, olle = profile_of("crm_id", "P-1003"), profile_of("crm_id", "P-1004")
    assert ana != olle
    assert f"Profile {ana}" not in output and f"Profile {olle}" not in output

    kept_apart = output[output.index("Kept apart") :]
    refusals = [line for line in kept_apart.splitlines() if "family@example.com" in line]
    assert any("P-1003" in line for line in refusals), kept_apart
    assert any("P-1004" in line for line in refusals), kept_apart
    # Each refusal says why: a reason word before the details in brackets.
    for line in refusals:
        reason = line.split(": ", 1)[1].split(" (", 1)[0]
        assert reason and reason != "kept apart", line


def test_a_placeholder_says_it_never_links_because_it_is_blocked(partner_warehouse, capsys):
    exit_code, output = explain(capsys, "unknown")

    assert exit_code == 0, output
    never_links = section(output, "Never links")
    assert "'unknown' never links: blocked" in never_links
    assert "Profile " not in output


def test_a_shared_device_shows_its_latest_owner_and_the_time_aware_rule(partner_warehouse, capsys):
    jon, maria = profile_of("crm_id", "P-1002"), profile_of("crm_id", "P-1001")
    exit_code, output = explain(capsys, SHARED_DEVICE)

    assert exit_code == 0, output
    assert f"Profile {maria}" in output, "Maria logged in last: the device is hers now"
    device = section(output, f"Device ecid {SHARED_DEVICE}")
    assert "time-aware" in device
    logins = [line for line in device.splitlines() if "authenticated 20" in line]
    assert "crm_id P-1002" in logins[0] and "site_2026-11-30.jsonl line 2" in logins[0]
    assert "crm_id P-1001" in logins[-1] and "latest: owner now" in logins[-1], device
    assert sum("latest" in line for line in logins) == 1

    # Jon's browsing stays Jon's: w-1 to w-3 came before Maria logged in.
    attributed = {jon: 0, maria: 0}
    for line in device.splitlines():
        if " records attributed to profile " in line:
            profile_id = line.split(" records attributed to profile ")[1][:32]
            attributed[profile_id] += int(line.split()[0])
    assert attributed == {jon: 3, maria: 2}, device


def test_a_profile_id_explains_that_profile(partner_warehouse, capsys):
    jon = profile_of("crm_id", "P-1002")
    exit_code, output = explain(capsys, jon)

    assert exit_code == 0, output
    assert output.count("Profile ") == 1 and f"Profile {jon}" in output
    identities = section(output, "Identities")
    for expected in ("P-1002", "LY-9002", "jon.smith@example.net", "+12125550199"):
        assert expected in identities
    assert f"profile id {jon!r}" in section(output, "Searched:")


def test_an_unknown_value_says_what_was_searched_and_exits_1(partner_warehouse, capsys):
    exit_code, output = explain(capsys, "  Nobody@Example.com")

    assert exit_code == 1
    assert "No identity or profile matches '  Nobody@Example.com'" in output
    assert "email 'nobody@example.com'" in output


def test_explain_logs_ids_and_counts_never_the_value(partner_warehouse, capsys, caplog):
    with caplog.at_level(logging.DEBUG):
        explain(capsys, "maria.lopez@example.org")

    assert caplog.records, "explain logged nothing at all"
    for record in caplog.records:
        assert "maria" not in record.getMessage().lower()


def test_the_analysis_gives_the_same_identities_and_evidence_as_the_command(
    partner_warehouse, capsys, tmp_path
):
    maria = profile_of("crm_id", "P-1001")
    transform.run_dbt(
        "compile", "--select", "explain_identity", "--target-path", str(tmp_path / "target"),
        dbt_vars={"identity": "  Maria.Lopez@Example.ORG "},
    )  # fmt: skip
    compiled = next((tmp_path / "target").rglob("explain_identity.sql")).read_text()
    compiled = compiled.replace("%", "%%")  # the regexes hold %; no query parameters here
    rows = query(
        "select section, profile_id, namespace, identity_value, file_name, line_number"
        f" from ({compiled}) as explained"
    )

    identities = {(row[2], row[3]) for row in rows if row[0] == "identity"}
    held = set(
        query(
            "select namespace, identity_value from marts.bdg_profile_identities"
            " where profile_id = %s",
            (maria,),
        )
    )
    assert identities == held
    assert {row[1] for row in rows if row[0] == "identity"} == {maria}
    assert ("loyalty_id", "LY-9001", "members.csv", 2) in {
        (row[2], row[3], row[4], row[5]) for row in rows if row[0] == "evidence"
    }
