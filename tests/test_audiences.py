"""Audience definitions end to end: validation, injection, `cdp audiences list|check|explain`.

Generated extracts are landed, validated and built twice for the module (ten days
apart, so the membership history holds ranges), with the flow's own functions rather
than Airflow, to keep it fast. Tests that need other definitions edit a copy of the dbt
project and point the CLI at it; nothing here edits the project itself.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import uuid
from contextlib import closing, redirect_stderr, redirect_stdout
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from cdp import audience_docs, audiences, cli, samples, settings, transform, warehouse
from tests.conftest import _admin_connection, _with_database, land_and_promote, query

DEFINITIONS = Path("models/intermediate/audiences/audiences.yml")
AS_OF = datetime(2026, 11, 30, tzinfo=UTC)
FIRST_EVALUATION = "2026-11-20T00:00:00Z"
EVALUATION = "2026-11-30T00:00:00Z"


@pytest.fixture(scope="module")
def built_warehouse(embedded_pgdata, tmp_path_factory):
    """A database of its own in the embedded server, built from generated extracts."""
    saved_environment = dict(os.environ)
    folder = tmp_path_factory.mktemp("audiences")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CDP_STATE_DIR", str(folder / "state"))
        patch.setenv("CDP_EMBEDDED_PGDATA", str(embedded_pgdata))
        patch.delenv("WAREHOUSE_URL", raising=False)
        base_url = warehouse.start_embedded()
        database = f"cdp_test_{uuid.uuid4().hex[:10]}"
        with closing(_admin_connection(base_url)) as admin, admin.cursor() as cursor:
            cursor.execute(f'create database "{database}"')
        patch.setenv("WAREHOUSE_URL", _with_database(base_url, database))

        samples.generate(folder / "landing", customers=150, seed=5, as_of=AS_OF)
        land_and_promote(str(folder / "landing"))
        transform.run_dbt("build", dbt_vars={"evaluation_time": FIRST_EVALUATION})
        transform.run_dbt("build", dbt_vars={"evaluation_time": EVALUATION})
        try:
            yield folder
        finally:
            # dbt's environment is set on os.environ by the run; leave none of it behind.
            os.environ.clear()
            os.environ.update(saved_environment)
            with closing(_admin_connection(base_url)) as admin, admin.cursor() as cursor:
                cursor.execute(f'drop database if exists "{database}" with (force)')


def cdp(capsys, *arguments: str) -> tuple[int, str]:
    exit_code = cli.main(list(arguments))
    captured = capsys.readouterr()
    return exit_code, captured.out + captured.err


def project_copy(tmp_path: Path, audiences: list[dict], monkeypatch) -> Path:
    """A copy of the dbt project with these definitions, which the CLI and dbt then use."""
    project = tmp_path / "dbt_project"
    shutil.copytree(
        settings.DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs")
    )
    path = project / DEFINITIONS
    document = yaml.safe_load(path.read_text())
    document["models"][0]["config"]["meta"]["audiences"] = audiences
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    monkeypatch.setattr(settings, "DBT_PROJECT_DIR", project)
    return project


def shipped_audiences() -> list[dict]:
    document = yaml.safe_load((settings.DBT_PROJECT_DIR / DEFINITIONS).read_text())
    return document["models"][0]["config"]["meta"]["audiences"]


def audience(audience_id: str, rule: dict, **metadata: str) -> dict:
    defaults = {"name": "A name", "description": "A description", "owner": "a-team"}
    return {"id": audience_id, **{**defaults, **metadata}, "rule": rule}


# ------------------------------------------------------------------------- validation

VALID_RULE = {"attribute": "tier", "operator": "equals", "value": "gold"}
BROKEN = [
    audience("unknown_attribute", {"attribute": "tierr", "operator": "equals", "value": "gold"}),
    audience("unknown_operator", {"attribute": "tier", "operator": "like", "value": "gold"}),
    audience("wrong_type", {"attribute": "points_balance", "operator": "gte", "value": "lots"}),
    audience(
        "unknown_field",
        {"all": [
            {"attribute": "tier", "operator": "not_null"},
            {"event": {"event_type": "purchase",
                       "where": [{"field": "colour", "operator": "equals", "value": "red"}]}},
        ]},
    ),
    audience("unknown_dataset", {"event": {"dataset": "pos_sales"}}),
    audience("unknown_event_type", {"event": {"event_type": "purchse"}}),
    audience("zero_window", {"event": {"event_type": "purchase", "within_last": {"days": 0}}}),
    audience(
        "backwards_window",
        {"event": {"event_type": "purchase",
                   "between": {"from": "2026-11-30", "to": "2026-11-01"}}},
    ),
    audience(
        "two_windows",
        {"event": {"event_type": "purchase", "within_last": {"days": 7},
                   "between": {"from": "2026-11-01", "to": "2026-11-30"}}},
    ),
    audience("unknown_audience", {"audience": {"id": "gold_members"}}),
    audience("cycle_a", {"audience": {"id": "cycle_b"}}),
    audience("cycle_b", {"not": {"audience": {"id": "cycle_a"}}}),
    audience("cycle_b", VALID_RULE),
    {"id": "no_owner", "name": "No owner", "description": "Nobody to ask", "rule": VALID_RULE},
]  # fmt: skip
EXPECTED_PROBLEMS = [
    pytest.param(
        "unknown_attribute", "rule", "attribute 'tierr' is not a dim_profiles column",
        "use one of ", id="an unknown attribute",
    ),
    pytest.param(
        "unknown_operator", "rule", "operator 'like' on attribute 'tier' is unknown",
        "use one of equals, not_equals", id="an unknown operator",
    ),
    pytest.param(
        "wrong_type", "rule.value", "'lots' is not a whole number", "write a whole number",
        id="a value of the wrong type",
    ),
    pytest.param(
        "unknown_field", "rule.all[1].event.where[0].field",
        "'colour' is not a field of profile events", "use one of channel",
        id="an unknown event field",
    ),
    pytest.param(
        "unknown_dataset", "rule.event.dataset", "'pos_sales' is not a profile-enabled event",
        "use one of offline_orders, web_events", id="an unknown dataset",
    ),
    pytest.param(
        "unknown_event_type", "rule.event.event_type", "'purchse' is not an event type",
        "purchase", id="an unknown event type",
    ),
    pytest.param(
        "zero_window", "rule.event.within_last", "days is '0'", "from 1 to",
        id="a zero window",
    ),
    pytest.param(
        "backwards_window", "rule.event.between",
        "from '2026-11-30' is not before to '2026-11-01'", "swap them",
        id="a window from after to",
    ),
    pytest.param(
        "two_windows", "rule.event", "has two windows", "keep one of within_last and between",
        id="two windows",
    ),
    pytest.param(
        "unknown_audience", "rule.audience.id", "audience 'gold_members' is not defined",
        "use one of ", id="an unknown audience",
    ),
    pytest.param(
        "cycle_a", "rule", "cycle: cycle_a -> cycle_b -> cycle_a",
        "remove one of these audience conditions", id="a cycle between audiences",
    ),
    pytest.param(
        "cycle_b", "id", "is used by an earlier audience too", "give each audience its own id",
        id="a duplicate id",
    ),
    pytest.param(
        "no_owner", "owner", "is missing", "give it a non-empty text", id="a missing owner",
    ),
]  # fmt: skip


@pytest.fixture(scope="module")
def broken_check(built_warehouse, tmp_path_factory) -> tuple[int, str]:
    """`cdp audiences check` over a project copy holding every kind of mistake at once."""
    output = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        project_copy(tmp_path_factory.mktemp("broken"), BROKEN, patch)
        with redirect_stdout(output), redirect_stderr(output):
            exit_code = cli.main(["audiences", "check"])
    return exit_code, output.getvalue()


def test_check_refuses_broken_definitions_and_reports_every_problem_at_once(broken_check):
    exit_code, output = broken_check

    assert exit_code == 1
    lines = output.splitlines()
    assert lines[0] == (
        f"{DEFINITIONS}: {len(EXPECTED_PROBLEMS)} problems in the audience definitions;"
        " nothing was run."
    )
    assert len([line for line in lines[1:] if line.startswith("  - ")]) == len(EXPECTED_PROBLEMS)


@pytest.mark.parametrize(("audience_id", "place", "problem", "fix"), EXPECTED_PROBLEMS)
def test_each_problem_names_the_audience_the_place_and_the_fix(
    broken_check, audience_id, place, problem, fix
):
    _, output = broken_check

    lines = [line for line in output.splitlines() if f"audience '{audience_id}', {place}: " in line]
    assert len(lines) == 1, output
    stated, suggested = lines[0].split(f"{place}: ", 1)[1].split("; ", 1)
    assert problem in stated
    assert fix in suggested


# -------------------------------------------------------------------------- injection

CANARY = "public.audience_canary"
INJECTIONS = [
    audience("field_injection", {"event": {"event_type": "purchase", "where": [
        {"field": f"x; drop table {CANARY}", "operator": "equals", "value": "a"}]}}),
    audience("operator_injection", {
        "attribute": "tier", "operator": f"= 'gold'; drop table {CANARY}; --", "value": "gold"}),
    audience("attribute_injection", {
        "attribute": f"tier is null; drop table {CANARY}; --", "operator": "is_null"}),
    audience("number_injection", {
        "attribute": "points_balance", "operator": "gt", "value": f"1; drop table {CANARY}"}),
    audience("reference_injection", {"audience": {"id": f"x'; drop table {CANARY}; --"}}),
]  # fmt: skip


def create_canary() -> None:
    with warehouse.connect() as conn, conn.cursor() as cursor:
        cursor.execute(f"create table if not exists {CANARY} (id int)")


def relations() -> set[tuple]:
    return set(
        query(
            "select namespace.nspname, class.relname, class.oid::bigint from pg_class as class"
            " join pg_namespace as namespace on namespace.oid = class.relnamespace"
            " where namespace.nspname in ('staging', 'intermediate', 'marts', 'activation')"
        )
    )


def test_injection_attempts_refuse_the_whole_build_and_nothing_runs(
    built_warehouse, tmp_path, monkeypatch
):
    create_canary()
    before = relations()
    project_copy(tmp_path, shipped_audiences() + INJECTIONS, monkeypatch)

    with pytest.raises(transform.DbtRunFailed):
        transform.run_dbt("build")

    assert query(f"select to_regclass('{CANARY}') is not null") == [(True,)]
    assert relations() == before, "a model was rebuilt although the definitions were refused"
    assert query("select count(*) from intermediate.int_audience_members_evaluated")[0][0] > 0


def test_hostile_text_values_become_quoted_literals(built_warehouse, tmp_path, monkeypatch):
    create_canary()
    hostile = f"gold'); drop table {CANARY}; --"
    project = project_copy(
        tmp_path,
        [
            audience("hostile_value", {
                "attribute": "tier", "operator": "equals", "value": hostile}),
            audience("hostile_filter", {"event": {"event_type": "purchase", "where": [
                {"field": "product_sku", "operator": "contains", "value": hostile}]}}),
        ],
        monkeypatch,
    )  # fmt: skip

    transform.run_dbt("compile", "--select", "int_audience_members_evaluated")
    compiled = next((project / "target").rglob("int_audience_members_evaluated.sql")).read_text()
    with warehouse.connect() as conn, conn.cursor() as cursor:
        cursor.execute(compiled)  # no parameters: the SQL's own % signs stay as written
        members = cursor.fetchall()

    assert hostile.replace("'", "''") in compiled
    assert members == []
    assert query(f"select to_regclass('{CANARY}') is not null") == [(True,)]


# ----------------------------------------------------------------------- list and check


def test_list_shows_every_audience_with_owner_mode_reason_and_size(built_warehouse, capsys):
    exit_code, output = cdp(capsys, "audiences", "list")

    assert exit_code == 0, output
    sizes = dict(query("select audience_id, realised_member_count from marts.dim_audiences"))
    modes = dict(query("select audience_id, evaluation_reason from marts.dim_audiences"))
    lines = output.splitlines()
    for definition in shipped_audiences():
        row = next(line for line in lines if line.startswith(definition["id"] + " "))
        reason = lines[lines.index(row) + 1].strip()
        assert row.split()[1] == definition["owner"]
        assert row.split()[2] == modes[definition["id"]].split(":")[0]
        assert int(row.split()[3]) == sizes[definition["id"]]
        assert reason == modes[definition["id"]]


def test_the_samples_cover_both_modes_and_every_batch_reason_is_explained(built_warehouse):
    rows = query("select audience_id, evaluation_mode, evaluation_reason from marts.dim_audiences")

    assert len(rows) >= 12
    assert {mode for _, mode, _ in rows} == {"streaming", "batch"}
    assert all(reason.startswith(f"{mode}: ") for _, mode, reason in rows)
    assert sum(size > 0 for (size,) in query(
        "select realised_member_count from marts.dim_audiences")) >= 12  # fmt: skip


def test_check_counts_the_valid_definitions(built_warehouse, capsys):
    exit_code, output = cdp(capsys, "audiences", "check")

    assert exit_code == 0, output
    assert output.startswith(f"{len(shipped_audiences())} audiences valid in {DEFINITIONS}")


def test_streaming_audience_ids_are_the_ones_listed_as_streaming(built_warehouse):
    compiled = transform.compile_inline("{{ tojson(streaming_audience_ids()) }}")
    streaming = query(
        "select audience_id from marts.dim_audiences where evaluation_mode = 'streaming'"
    )

    assert sorted(json.loads(compiled)) == sorted(audience_id for (audience_id,) in streaming)


def test_an_edited_audience_is_reclassified_at_the_next_compile(
    built_warehouse, tmp_path, monkeypatch, capsys
):
    edited = shipped_audiences()
    engaged = next(entry for entry in edited if entry["id"] == "engaged_browsers")
    assert engaged["rule"]["event"]["within_last"] == {"days": 7}
    engaged["rule"]["event"]["within_last"] = {"hours": 12}
    project_copy(tmp_path, edited, monkeypatch)

    exit_code, output = cdp(capsys, "audiences", "list")

    assert exit_code == 0, output
    lines = output.splitlines()
    row = next(line for line in lines if line.startswith("engaged_browsers "))
    assert row.split()[2] == "streaming"
    assert lines[lines.index(row) + 1].strip() == (
        "streaming: product_view events within the last 12 hours"
    )


# ------------------------------------------------------------------------- dbt docs


def test_the_committed_docs_table_lists_every_audience_with_its_mode(built_warehouse):
    listed = audiences.catalog()

    assert audience_docs.stale_problem(listed) is None, "run `cdp audiences docs` and commit"
    modes = dict(query("select audience_id, evaluation_mode from marts.dim_audiences"))
    rows = [line for line in audience_docs.doc_path().read_text().splitlines() if "| `" in line]
    assert len(rows) == len(shipped_audiences())
    for row in rows:
        audience_id, _, mode = (cell.strip(" `*") for cell in row.strip("|").split("|")[:3])
        assert mode == modes[audience_id], row


def test_check_fails_on_a_stale_docs_table_and_docs_brings_dbt_docs_up_to_date(
    built_warehouse, tmp_path, monkeypatch, capsys
):
    edited = shipped_audiences()
    engaged = next(entry for entry in edited if entry["id"] == "engaged_browsers")
    engaged["rule"]["event"]["within_last"] = {"hours": 12}
    project = project_copy(tmp_path, edited, monkeypatch)

    exit_code, output = cdp(capsys, "audiences", "check")
    assert exit_code == 1
    assert f"{audience_docs.DOC_FILE} does not match the audience definitions" in output
    assert "run `cdp audiences docs` and commit it" in output

    exit_code, output = cdp(capsys, "audiences", "docs")
    assert exit_code == 0, output
    assert cdp(capsys, "audiences", "check")[0] == 0

    # What `dbt docs generate` publishes: the description as parsed into the manifest.
    transform.run_dbt("parse", "--target-path", str(tmp_path / "parsed"))
    manifest = json.loads((tmp_path / "parsed" / "manifest.json").read_text())
    description = manifest["nodes"]["model.cdp.dim_audiences"]["description"]
    assert project == settings.DBT_PROJECT_DIR
    assert (
        "| `engaged_browsers` | Engaged browsers | **streaming** | "
        "streaming: product_view events within the last 12 hours | ecommerce |"
    ) in description
    assert description.count("| **batch** |") == 8, "engaged_browsers was the ninth"


# -------------------------------------------------------------------------- explain


def test_explain_agrees_with_membership_for_every_audience_and_profile(built_warehouse):
    """The explain SQL of every audience, for every profile, against the built members.

    One compile for all audiences keeps the test short; it renders the same macro that
    `cdp audiences explain` renders for one.
    """
    profile_ids = [row[0] for row in query("select profile_id from marts.dim_profiles")]
    members = set(
        query("select audience_id, profile_id from intermediate.int_audience_members_evaluated")
    )
    audience_ids = [entry["id"] for entry in shipped_audiences()]
    compiled = transform.compile_inline(
        "{% set explained = {} %}{% for audience_id in var('audiences') %}"
        "{% do explained.update({audience_id: audience_explain_sql("
        "audience_id, var('profiles'))}) %}{% endfor %}{{ tojson(explained) }}",
        {"audiences": audience_ids, "profiles": profile_ids, "evaluation_time": EVALUATION},
    )

    held = set()
    with warehouse.connect() as conn, conn.cursor() as cursor:
        for audience_id, sql in json.loads(compiled).items():
            cursor.execute(sql)
            roots = [row for row in cursor.fetchall() if row[1] == 0]
            assert len(roots) == len(profile_ids), audience_id
            held |= {(audience_id, row[0]) for row in roots if row[5]}

    assert held == members
    assert len({audience_id for audience_id, _ in members}) >= 10, "too few audiences to compare"


def member_and_outsider(audience_id: str) -> tuple[str, str]:
    member = query(
        "select profile_id from intermediate.int_audience_members_evaluated"
        " where audience_id = %s order by 1 limit 1",
        (audience_id,),
    )[0][0]
    outsider = query(
        "select profile_id from marts.dim_profiles where profile_id not in ("
        " select profile_id from intermediate.int_audience_members_evaluated"
        " where audience_id = %s) and customer_id is not null order by 1 limit 1",
        (audience_id,),
    )[0][0]
    return member, outsider


def test_explain_prints_each_node_with_its_deciding_values(built_warehouse, capsys):
    member, _ = member_and_outsider("lapsed_email_subscribers")
    customer_id = query(
        "select customer_id from marts.dim_profiles where profile_id = %s", (member,)
    )

    exit_code, output = cdp(
        capsys, "audiences", "explain", "lapsed_email_subscribers", customer_id[0][0],
        "--at", EVALUATION,
    )  # fmt: skip

    assert exit_code == 0, output
    assert f"Profile {member} (crm_id {customer_id[0][0]})" in output
    lines = output.splitlines()
    assert "  [yes] all of  (2 of 2 held)" in lines
    assert "    [yes] email_opt_in equals true  (email_opt_in is true)" in lines
    assert "    [yes] not  (the condition inside did not hold)" in lines
    assert any(
        line.startswith("      [no]  offline_order or purchase events in the last 60 days")
        and line.endswith("(0 matching events)")
        for line in lines
    ), output
    assert "  Result: IN audience lapsed_email_subscribers" in lines
    assert any(line.startswith("  Recorded membership: realised since") for line in lines)


def test_explain_of_an_outsider_shows_the_failing_condition(built_warehouse, capsys):
    _, outsider = member_and_outsider("high_value_customers")
    total = query(
        "select coalesce(sum(revenue_amount), 0), count(*) from marts.fct_profile_events"
        " where profile_id = %s and event_type in ('offline_order', 'purchase')"
        " and occurred_at <= %s and occurred_at > timestamptz %s - interval '90 days'",
        (outsider, EVALUATION, EVALUATION),
    )[0]

    exit_code, output = cdp(
        capsys, "audiences", "explain", "high_value_customers", outsider, "--at", EVALUATION
    )

    assert exit_code == 0, output
    assert f"({total[1]} matching events, total revenue_amount {total[0]})" in output
    assert "  [no]  offline_order or purchase events in the last 90 days" in output
    assert "  Result: NOT IN audience high_value_customers" in output


def test_explain_of_an_unknown_value_or_audience_says_so(built_warehouse, capsys):
    exit_code, output = cdp(
        capsys, "audiences", "explain", "engaged_browsers", "nobody@example.com"
    )
    assert exit_code == 1
    assert "No identity or profile matches 'nobody@example.com'" in output

    member, _ = member_and_outsider("engaged_browsers")
    exit_code, output = cdp(capsys, "audiences", "explain", "engaged_browserz", member)
    assert exit_code == 1
    assert f"{DEFINITIONS}: audience 'engaged_browserz' is not defined; use one of" in output


def test_explain_logs_ids_and_counts_never_the_value(built_warehouse, capsys, caplog):
    email = query("select email from marts.dim_profiles where email is not null limit 1")[0][0]

    with caplog.at_level(logging.DEBUG):
        exit_code, output = cdp(capsys, "audiences", "explain", "gold_loyalty_members", email)

    assert exit_code == 0, output
    assert caplog.records, "explain logged nothing at all"
    for record in caplog.records:
        assert email not in record.getMessage()
