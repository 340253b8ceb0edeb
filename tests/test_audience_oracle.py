"""Every sample audience, computed again in plain Python, equals the realised membership.

Generated extracts (ninety days up to 5 November 2026, and the extracts of 29
November) are landed and every audience is evaluated as of 30 November 2026, a fixed
instant, so the test means the same whatever day it runs: the 24-hour audiences see
the last day's events, the Black Friday audience its weekend. high_value_customers is
then evaluated as of two earlier days and everything again as of 30 November, so
high_value_win_back ("high-value at some point in the last 30 days, not any more")
reads a real history. Finally the daily build's own path (profiles as they are, now)
is checked the same way. Each time, for every audience in audiences.yml, the profiles
`marts.fct_audience_membership` holds as realised must be exactly those this module
computes from the extract files, at the same evaluation instant.

What comes from the warehouse, and why:
- which profile each source record belongs to (`int_records_resolved`), each
  profile's id, when it was first seen and its phone identity: that is identity
  resolution, which tests of its own check against the generator's truth;
- when the audiences were evaluated (`fct_audience_evaluations`): the instants to
  compute at, not what was found there.

Everything else is computed here from the parsed files and the audience definitions
read as YAML: each attribute merged by the documented survivorship rule (the latest
non-null value by record timestamp, later batch and line on a tie; as of a past
instant only records observed by then), the latest version of each event, filters,
thresholds, windows, audiences used by other audiences, all/any/not with null-safe
conditions, and membership at any time in a window from the step-function history of
the evaluations. No audience needed a weaker check.
"""

from __future__ import annotations

import csv
import gzip
import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from cdp import audience_backfill, datasets, samples, settings, transform
from tests.conftest import land_and_promote, query, warehouse_kinds

CUSTOMERS = 300
DEFINITIONS = settings.DBT_PROJECT_DIR / "models/intermediate/audiences/audiences.yml"
AUDIENCE_MODELS = ("--select", "int_audience_members_evaluated+", "--exclude", "test_type:unit")
DATA_AS_OF = datetime(2026, 11, 5, tzinfo=UTC)
LAST_DAY = 26  # day 26's extracts cover 29 November, the day before the evaluation
EVALUATED_AT = datetime(2026, 11, 30, tzinfo=UTC)
# Earlier evaluations of the audience high_value_win_back looks back on.
HISTORY_AUDIENCE = "high_value_customers"
HISTORY_DAYS_BEFORE = (28, 14)


@pytest.mark.parametrize("warehouse_env", warehouse_kinds()[:1], indirect=True)
def test_every_sample_audience_equals_an_independent_computation(warehouse_env, tmp_path):
    landing = tmp_path / "landing"
    samples.generate(landing, customers=CUSTOMERS, seed=21, as_of=DATA_AS_OF)
    samples.generate(landing, customers=CUSTOMERS, seed=21, as_of=DATA_AS_OF, day=LAST_DAY)
    land_and_promote(str(landing))
    evaluation = {"evaluation_time": EVALUATED_AT.isoformat()}
    transform.run_dbt("build", dbt_vars=evaluation)
    for days in HISTORY_DAYS_BEFORE:
        audience_backfill.evaluate_as_of(EVALUATED_AT - timedelta(days=days), [HISTORY_AUDIENCE])
    transform.run_dbt("build", *AUDIENCE_MODELS, dbt_vars=evaluation)
    extracts = read_extracts(landing)

    oracle = Oracle(extracts, read_profiles(), read_evaluations())
    realised = check_realised_members_equal_the_oracle(oracle, EVALUATED_AT, as_of=True)
    # Equal empty sets would prove nothing: at the fixed instant every audience has members.
    empty = [audience_id for audience_id in oracle.audiences if not realised[audience_id]]
    assert empty == []

    # The daily build evaluates now, on the profiles as they are.
    transform.run_dbt("build", *AUDIENCE_MODELS)
    oracle = Oracle(extracts, read_profiles(), read_evaluations())
    check_realised_members_equal_the_oracle(oracle, oracle.latest_build(), as_of=False)


def check_realised_members_equal_the_oracle(
    oracle: Oracle, instant: datetime, *, as_of: bool
) -> dict[str, set[str]]:
    realised = realised_members()
    mismatches = {}
    for audience_id in oracle.audiences:
        expected = oracle.members(audience_id, instant, as_of)
        found = realised[audience_id]
        if found != expected:
            mismatches[audience_id] = {
                "only_in_warehouse": sorted(found - expected)[:5],
                "only_in_python": sorted(expected - found)[:5],
            }
    assert mismatches == {}, f"evaluated at {instant.isoformat()}"
    return realised


# ---------------------------------------------------------------------------- the files


@dataclass(frozen=True)
class Event:
    dataset: str
    event_id: str
    fields: dict  # event_type, revenue_amount, currency, channel, store_id, product_sku
    occurred_at: datetime
    version: tuple[int, int]  # (batch, line): the latest version of an event wins


@dataclass
class Extracts:
    attribute_records: dict = field(default_factory=lambda: defaultdict(list))
    events: dict = field(default_factory=lambda: defaultdict(list))
    attribute_types: dict = field(default_factory=dict)


def read_extracts(landing: Path) -> Extracts:
    """Parse every landed file; keep the rows the warehouse attributed to a profile."""
    profile_of_line = {
        (file_name, line): (profile_id, batch_id)
        for file_name, line, profile_id, batch_id in query("""
            select landed.file_name, resolved._line_number, resolved.profile_id, landed.batch_id
            from intermediate.int_records_resolved as resolved
            inner join ops.landed_files as landed
                on landed.batch_id = resolved._batch_id
        """)
    }  # fmt: skip
    extracts = Extracts()
    latest_events: dict[tuple[str, str], tuple[str, Event]] = {}

    for dataset in datasets.load_all().values():
        if not dataset.profile_enabled:
            continue
        types = {column.name: column.data_type for column in dataset.columns}
        attributes = [column.name for column in dataset.columns if column.profile_attribute]
        extracts.attribute_types.update({name: types[name] for name in attributes})

        for path in sorted((landing / dataset.name).iterdir()):
            for line, row in read_rows(path, dataset.format):
                attributed = profile_of_line.get((path.name, line))
                if attributed is None:
                    continue  # quarantined, rejected, or no identity to link
                profile_id, batch_id = attributed
                values = {name: parse(types[name], row.get(name)) for name in types}

                if dataset.kind == "record":
                    extracts.attribute_records[profile_id].append(
                        (values[dataset.timestamp_column], batch_id, line,
                         {name: values[name] for name in attributes})
                    )  # fmt: skip
                    continue
                event = to_event(dataset, values, (batch_id, line))
                key = (dataset.name, event.event_id)
                if key not in latest_events or latest_events[key][1].version < event.version:
                    latest_events[key] = (profile_id, event)

    for profile_id, event in latest_events.values():
        extracts.events[profile_id].append(event)
    return extracts


def read_rows(path: Path, file_format: str):
    """(line number, row) per data line; a CSV header is line 1, as the landing counts."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="", encoding="utf-8") as handle:
        if file_format == "csv":
            reader = csv.DictReader(handle)
            for row in reader:
                yield reader.line_num, row
            return
        for line, text in enumerate(handle, start=1):
            try:
                yield line, json.loads(text)
            except json.JSONDecodeError:
                continue  # a broken line: quarantined, never attributed


def parse(data_type: str, raw) -> object:
    """A value as the extract's declaration types it; empty means null."""
    if raw is None or str(raw).strip() == "":
        return None
    text = str(raw).strip()
    if data_type == "boolean":
        return {"true": True, "false": False}[text.lower()]
    if data_type == "integer":
        return int(text)
    if data_type == "numeric":
        return Decimal(text)
    if data_type == "timestamptz":
        return datetime.fromisoformat(text)
    if data_type == "date":
        return date.fromisoformat(text)
    return text


def to_event(dataset: datasets.Dataset, values: dict, version: tuple[int, int]) -> Event:
    """An event in the profile events' terms (docs/audiences.md, "Event conditions")."""
    revenue = next(
        (values[name] for name in ("revenue_amount", "revenue", "order_total") if name in values),
        None,
    )
    currency = values.get("currency")
    event_type = dataset.event_type or values[dataset.event_type_column]
    return Event(
        dataset=dataset.name,
        event_id=values[dataset.record_key],
        occurred_at=values[dataset.timestamp_column],
        version=version,
        fields={
            "event_id": values[dataset.record_key],
            "dataset": dataset.name,
            "event_type": event_type,
            "revenue_amount": revenue,
            "currency": currency.upper() if currency else None,
            "channel": values.get("channel"),
            "store_id": values.get("store_id"),
            "product_sku": values.get("product_sku"),
        },
    )


# ---------------------------------------------------------------------------- the warehouse


def read_profiles() -> dict[str, dict]:
    """Identity facts per profile: when first seen, and whether it holds a phone."""
    rows = query("select profile_id, first_seen_at, phone_e164 from marts.dim_profiles")
    return {
        profile_id: {"first_seen_at": first_seen_at, "phone_e164": phone}
        for profile_id, first_seen_at, phone in rows
    }


def read_evaluations() -> dict[str, list[tuple[datetime, str]]]:
    evaluations = defaultdict(list)
    for audience_id, evaluated_at, kind in query(
        "select audience_id, evaluated_at, evaluation_kind from marts.fct_audience_evaluations"
        " order by evaluated_at"
    ):
        evaluations[audience_id].append((evaluated_at, kind))
    return evaluations


def realised_members() -> dict[str, set[str]]:
    members = defaultdict(set)
    for audience_id, profile_id in query(
        "select audience_id, profile_id from marts.fct_audience_membership"
        " where status = 'realised'"
    ):
        members[audience_id].add(profile_id)
    return members


# ---------------------------------------------------------------------------- the oracle


IDENTITY_COLUMNS = {"phone_e164": "text"}
COMPARISONS = {
    "equals": lambda value, limit: value == limit,
    "not_equals": lambda value, limit: value != limit,
    "gt": lambda value, limit: value > limit,
    "gte": lambda value, limit: value >= limit,
    "lt": lambda value, limit: value < limit,
    "lte": lambda value, limit: value <= limit,
}


class Oracle:
    """The audience rules of docs/audiences.md, read from the YAML and applied in Python."""

    def __init__(self, extracts: Extracts, profiles: dict, evaluations: dict) -> None:
        document = yaml.safe_load(DEFINITIONS.read_text())
        definitions = document["models"][0]["config"]["meta"]["audiences"]
        self.audiences = {definition["id"]: definition for definition in definitions}
        self.extracts = extracts
        self.profiles = profiles
        self.evaluations = evaluations
        self._members: dict[tuple[str, datetime, bool], set[str]] = {}

    def latest_build(self) -> datetime:
        """The instant of the latest evaluation of every profile at its own start."""
        return max(
            instant
            for evaluations in self.evaluations.values()
            for instant, kind in evaluations
            if kind == "build"
        )

    def members(self, audience_id: str, instant: datetime, as_of: bool = False) -> set[str]:
        """Who qualifies at an instant; as_of: a backfill's view (only what was known)."""
        key = (audience_id, instant, as_of)
        if key not in self._members:
            rule = self.audiences[audience_id]["rule"]
            self._members[key] = {
                profile_id
                for profile_id in self.profiles
                if self.in_scope(profile_id, instant, as_of)
                and self.holds(rule, profile_id, instant, as_of)
            }
        return self._members[key]

    def in_scope(self, profile_id: str, instant: datetime, as_of: bool) -> bool:
        return not as_of or self.profiles[profile_id]["first_seen_at"] <= instant

    def holds(self, node: dict, profile_id: str, instant: datetime, as_of: bool) -> bool:
        def child(inner: dict) -> bool:
            return self.holds(inner, profile_id, instant, as_of)

        if "all" in node:
            return all(child(inner) for inner in node["all"])
        if "any" in node:
            return any(child(inner) for inner in node["any"])
        if "not" in node:
            return not child(node["not"])
        if "attribute" in node:
            value = self.attribute(profile_id, node["attribute"], instant if as_of else None)
            return condition_holds(node, value, self.attribute_type(node["attribute"]), instant)
        if "event" in node:
            return self.event_holds(node["event"], profile_id, instant)
        return self.membership_holds(node["audience"], profile_id, instant, as_of)

    def attribute_type(self, name: str) -> str:
        types = {**self.extracts.attribute_types, **IDENTITY_COLUMNS}
        assert name in types, f"the oracle does not compute profile column {name}; add it"
        return types[name]

    def attribute(self, profile_id: str, name: str, observed_until: datetime | None):
        """The latest non-null value by record timestamp (then batch, then line)."""
        if name in IDENTITY_COLUMNS:
            return self.profiles[profile_id][name]
        candidates = [
            (observed_at, batch_id, line, values[name])
            for observed_at, batch_id, line, values in self.extracts.attribute_records[profile_id]
            if values.get(name) is not None
            and (observed_until is None or observed_at <= observed_until)
        ]
        return max(candidates, key=lambda candidate: candidate[:3])[3] if candidates else None

    def event_holds(self, event: dict, profile_id: str, instant: datetime) -> bool:
        start, end = event_window(event, instant)
        matching = [
            happened
            for happened in self.extracts.events[profile_id]
            if start < happened.occurred_at <= instant
            and (end is None or happened.occurred_at < end)
            and event_matches(event, happened, instant)
        ]

        kind = next((kind for kind in ("count", "sum", "min", "max") if kind in event), "count")
        threshold = event.get(kind, {"gte": 1})
        comparison = next(name for name in COMPARISONS if name in threshold)
        if kind == "count":
            measure = len(matching)
        else:
            values = [
                happened.fields[threshold["field"]]
                for happened in matching
                if happened.fields[threshold["field"]] is not None
            ]
            aggregate = {"sum": sum, "min": min, "max": max}[kind]
            measure = aggregate(values) if values or kind == "sum" else None
        if measure is None:
            return False  # min and max over no events hold never
        return COMPARISONS[comparison](Decimal(measure), Decimal(str(threshold[comparison])))

    def membership_holds(
        self, reference: dict, profile_id: str, instant: datetime, as_of: bool
    ) -> bool:
        now = self.holds(self.audiences[reference["id"]]["rule"], profile_id, instant, as_of)
        if now or "within_last" not in reference:
            return now

        # The history is a step function over the evaluations recorded before this one: a
        # profile found in at one stays in until the next. A step overlapping the window
        # (instant - N, instant] counts.
        window_start = instant - duration(reference["within_last"])
        earlier = [
            (evaluated_at, kind)
            for evaluated_at, kind in self.evaluations[reference["id"]]
            if evaluated_at < instant
        ]
        for index, (evaluated_at, kind) in enumerate(earlier):
            step_end = earlier[index + 1][0] if index + 1 < len(earlier) else None
            if step_end is not None and step_end <= window_start:
                continue
            if profile_id in self.members(reference["id"], evaluated_at, kind == "as_of"):
                return True
        return False


def event_window(event: dict, instant: datetime) -> tuple[datetime, datetime | None]:
    """(exclusive start, exclusive end or None) of the events that count."""
    if "within_last" in event:
        return instant - duration(event["within_last"]), None
    if "between" in event:
        start = to_instant(event["between"]["from"])
        to = event["between"]["to"]
        # A date `to` includes that whole day; an instant is itself excluded.
        end = to_instant(to) + (timedelta(days=1) if is_date_only(to) else timedelta(0))
        return start - timedelta(microseconds=1), end
    return datetime.min.replace(tzinfo=UTC), None


def event_matches(event: dict, happened: Event, instant: datetime) -> bool:
    event_types = event.get("event_type")
    if isinstance(event_types, str):
        event_types = [event_types]
    if event_types is not None and happened.fields["event_type"] not in event_types:
        return False
    if "dataset" in event and happened.dataset != event["dataset"]:
        return False
    return all(
        condition_holds(
            where, happened.fields[where["field"]], event_field_type(where["field"]), instant
        )
        for where in event.get("where", [])
    )


def event_field_type(name: str) -> str:
    return "numeric" if name == "revenue_amount" else "text"


def condition_holds(condition: dict, value, data_type: str, instant: datetime) -> bool:
    """One operator, null-safe: a missing value satisfies only is_null."""
    operator = condition["operator"]
    if operator == "is_null":
        return value is None
    if value is None:
        return False
    if operator == "not_null":
        return True
    literal = condition.get("value")
    if operator in ("in", "not_in"):
        listed = {typed(data_type, item) for item in literal}
        return (value in listed) == (operator == "in")
    if operator == "between":
        return typed(data_type, literal["from"]) <= value <= typed(data_type, literal["to"])
    if operator == "contains":
        return str(literal) in value
    if operator == "starts_with":
        return value.startswith(str(literal))
    if operator in ("within_last", "more_than_ago"):
        moment = value if isinstance(value, datetime) else to_instant(value)
        start = instant - duration(literal)
        if operator == "within_last":
            return start < moment <= instant
        return moment <= start
    return COMPARISONS[operator](value, typed(data_type, literal))


def typed(data_type: str, literal):
    if data_type in ("integer", "numeric"):
        return Decimal(str(literal))
    if data_type == "timestamptz":
        return to_instant(literal)
    if data_type == "date":
        return literal if isinstance(literal, date) else date.fromisoformat(str(literal))
    return literal


def duration(value: dict) -> timedelta:
    return timedelta(days=value.get("days", 0), hours=value.get("hours", 0))


def is_date_only(value) -> bool:
    return (
        isinstance(value, date)
        and not isinstance(value, datetime)
        or (isinstance(value, str) and len(value) == 10)
    )


def to_instant(value) -> datetime:
    """A date counts from its midnight UTC; an instant without an offset is UTC."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(0), tzinfo=UTC)
    return to_instant(datetime.fromisoformat(str(value)))
