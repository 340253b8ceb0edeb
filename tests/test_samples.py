"""The sample extract generator: layout, determinism, messiness and the truth it writes."""

from __future__ import annotations

import csv
import gzip
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import phonenumbers
import pytest

from cdp import datasets, samples

AS_OF = datetime(2025, 6, 1, tzinfo=UTC)
CUSTOMERS = 300
CONTACT_DATASETS = ("crm_customers", "loyalty_members", "offline_orders")


@dataclass(frozen=True)
class Landing:
    out_dir: Path
    truth_dir: Path
    day1_bytes: dict[Path, bytes]
    day2: samples.GenerationSummary
    lines: dict[Path, list[str]] = field(default_factory=dict)

    def line(self, dataset_name: str, file_name: str, line_number: int) -> str:
        path = self.out_dir / dataset_name / file_name
        if path not in self.lines:
            self.lines[path] = _lines(path)
        return self.lines[path][line_number - 1]

    def truth(self, name: str) -> list[dict[str, str]]:
        return _read_truth(self.truth_dir, name)

    def good_rows(self, dataset_name: str, *, day: int | None = None) -> list[tuple[dict, str]]:
        """(row, person_key) for every good row of a dataset, read back from the files."""
        rows = []
        for record in self.truth("records.csv"):
            if record["dataset"] != dataset_name:
                continue
            if day is not None and f"_day{day}" not in record["file_name"]:
                continue
            line = self.line(dataset_name, record["file_name"], int(record["line_number"]))
            rows.append((_parse(dataset_name, line), record["person_key"]))
        return rows


@pytest.fixture(scope="module")
def landing(tmp_path_factory) -> Landing:
    out_dir = tmp_path_factory.mktemp("samples") / "landing"
    samples.generate(out_dir, customers=CUSTOMERS, as_of=AS_OF)
    day1_bytes = _file_bytes(out_dir)
    day2 = samples.generate(out_dir, customers=CUSTOMERS, as_of=AS_OF, day=2)
    return Landing(out_dir, out_dir.parent / "landing_truth", day1_bytes, day2)


def _file_bytes(root: Path, *, relative: bool = False) -> dict[Path, bytes]:
    return {
        path.relative_to(root) if relative else path: path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _lines(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as stream:
        return stream.read().splitlines()


def _fields(line: str) -> list[str]:
    return next(csv.reader([line]))


def _parse(dataset_name: str, line: str) -> dict:
    dataset = datasets.get(dataset_name)
    if dataset.format == "jsonl":
        return json.loads(line)
    return dict(zip(dataset.column_names, _fields(line), strict=True))


def _read_truth(truth_dir: Path, name: str) -> list[dict[str, str]]:
    with (truth_dir / name).open(newline="") as stream:
        return list(csv.DictReader(stream))


def _normalised_email(value: str | None) -> str | None:
    text = (value or "").strip().lower()
    return None if text in {"", "unknown", "n/a", "test@test.com"} else text


def _normalised_phone(value: str | None) -> str | None:
    text = (value or "").strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    digits = re.sub(r"\D", "", text)
    if not digits or set(digits) == {"0"}:
        return None
    number = phonenumbers.parse(text, "US")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _at(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


# ---------------------------------------------------------------------------- layout


def test_same_arguments_give_byte_identical_files(tmp_path):
    for copy in ("first", "second"):
        for day in (1, 2):
            out_dir = tmp_path / copy / "landing"
            samples.generate(out_dir, customers=200, seed=3, as_of=AS_OF, day=day)

    first, second = (_file_bytes(tmp_path / copy, relative=True) for copy in ("first", "second"))
    assert first.keys() == second.keys()
    assert [name for name in first if first[name] != second[name]] == []


def test_another_seed_gives_other_extracts(tmp_path):
    samples.generate(tmp_path / "a", customers=200, seed=1, as_of=AS_OF)
    samples.generate(tmp_path / "b", customers=200, seed=2, as_of=AS_OF)

    crm = "crm_customers/crm_customers_day1.csv"
    assert (tmp_path / "a" / crm).read_bytes() != (tmp_path / "b" / crm).read_bytes()


def test_files_are_laid_out_per_dataset_with_the_day_in_their_names(landing):
    names = {path.relative_to(landing.out_dir).as_posix() for path in landing.day1_bytes}

    assert {name.split("/")[0] for name in names} == set(samples.DATASET_NAMES)
    assert "crm_customers/crm_customers_day1.csv" in names
    assert "offline_orders/offline_orders_day1.csv" in names
    web_parts = sorted(name for name in names if name.startswith("web_events/"))
    assert 2 <= len(web_parts) <= 3
    assert web_parts[0].endswith("_day1_part1.jsonl")
    assert all(name.endswith(".jsonl.gz") for name in web_parts[1:])


def test_headers_and_keys_match_the_declarations(landing):
    rejected = {row["file_name"] for row in landing.truth("bad_files.csv")}
    for path in landing.out_dir.rglob("*.*"):
        dataset = datasets.get(path.parent.name)
        first_line = _lines(path)[0]
        if dataset.format == "csv":
            header_matches = _fields(first_line) == dataset.column_names
            assert header_matches != (path.name in rejected), path.name
        else:
            assert list(json.loads(first_line)) == dataset.column_names, path.name


def test_summary_counts_what_was_written_and_shows_no_personal_data(landing):
    summary = landing.day2
    web = summary.counts("web_events")
    web_lines = sum(len(_lines(path)) for path in summary.files if "web_events" in path.name)
    text = str(summary)

    assert summary.day == 2
    assert summary.data_until == AS_OF + timedelta(days=1)
    assert all(path.exists() and "_day2" in path.name for path in summary.files)
    assert web.rows + web.bad_rows == web_lines
    assert "web_events" in text and str(web.rows) in text
    assert "@" not in text and "C0" not in text


# ---------------------------------------------------------------------------- truth


def test_truth_line_numbers_point_at_the_rows_they_name(landing):
    records = landing.truth("records.csv")
    assert "crm_customers_day2.csv" in {record["file_name"] for record in records}

    for record in records:
        line = landing.line(record["dataset"], record["file_name"], int(record["line_number"]))
        record_key = datasets.get(record["dataset"]).record_key
        assert _parse(record["dataset"], line)[record_key] == record["record_key"], record


def test_every_line_is_either_a_good_row_or_a_listed_bad_row(landing):
    listed = Counter(row["file_name"] for row in landing.truth("records.csv"))
    listed.update(row["file_name"] for row in landing.truth("bad_rows.csv"))
    rejected = {row["file_name"] for row in landing.truth("bad_files.csv")}

    for path in landing.out_dir.rglob("*.*"):
        if path.name in rejected:
            assert path.name not in listed
            continue
        header_lines = 1 if datasets.get(path.parent.name).format == "csv" else 0
        assert listed[path.name] == len(_lines(path)) - header_lines, path.name


@pytest.mark.parametrize(
    "dataset_name, problem",
    [
        pytest.param(name, problem, id=f"{name} has a row with {problem}")
        for name, problems in samples.BREAKABLE_COLUMNS.items()
        for problem in problems
    ],
)
def test_each_kind_of_bad_row_occurs_where_the_truth_says(landing, dataset_name, problem):
    dataset = datasets.get(dataset_name)
    bad_rows = [
        row
        for row in landing.truth("bad_rows.csv")
        if row["dataset"] == dataset_name and row["problem"] == problem
    ]
    assert bad_rows, f"no {problem} row in {dataset_name}"

    for bad in bad_rows:
        line = landing.line(dataset_name, bad["file_name"], int(bad["line_number"]))
        assert _shows_problem(dataset, line, bad["column_name"], problem), (bad, line)


def _shows_problem(dataset: datasets.Dataset, line: str, column: str, problem: str) -> bool:
    if problem == samples.INVALID_JSON:
        try:
            json.loads(line)
        except ValueError:
            return True
        return False
    if problem == samples.WRONG_FIELD_COUNT:
        return len(_fields(line)) != len(dataset.column_names)

    value = _parse(dataset.name, line)[column]
    if problem == samples.MISSING_REQUIRED:
        return value in ("", None)
    if problem == samples.NOT_ALLOWED_VALUE:
        return value not in dataset.column(column).allowed_values
    if problem == samples.BAD_NUMBER:
        return re.fullmatch(r"-?\d+(\.\d+)?", value) is None
    if problem == samples.UNPARSABLE_TIMESTAMP:
        try:
            _at(value)
        except ValueError:
            return True
    return False


def test_bad_rows_stay_well_under_a_tenth_of_each_file(landing):
    good = Counter(row["file_name"] for row in landing.truth("records.csv"))
    bad = Counter(row["file_name"] for row in landing.truth("bad_rows.csv"))

    assert bad, "no bad rows at all"
    for file_name, count in bad.items():
        assert count / (good[file_name] + count) < 0.07, file_name


def test_a_loyalty_file_with_a_renamed_column_is_listed_as_a_bad_file(landing):
    bad_files = landing.truth("bad_files.csv")
    assert [(row["dataset"], row["problem"]) for row in bad_files] == [
        ("loyalty_members", samples.WRONG_HEADER)
    ]

    lines = _lines(landing.out_dir / "loyalty_members" / bad_files[0]["file_name"])
    assert _fields(lines[0]) != datasets.get("loyalty_members").column_names
    assert len(lines) > 1


def test_identities_in_good_rows_belong_to_one_person_except_in_households(landing):
    """The truth must be reachable: no email or phone is shared by accident."""
    owners: dict[tuple[str, str], set[str]] = defaultdict(set)
    for dataset_name in CONTACT_DATASETS:
        for row, person_key in landing.good_rows(dataset_name):
            if email := _normalised_email(row["email"]):
                owners["email", email].add(person_key)
            if phone := _normalised_phone(row.get("phone")):
                owners["phone", phone].add(person_key)
    shared = [keys for keys in owners.values() if len(keys) > 1]

    person_of = {row["customer_id"]: row["person_key"] for row in landing.truth("persons.csv")}
    households = [
        {person_of[row["customer_id_a"]], person_of[row["customer_id_b"]]}
        for row in landing.truth("households.csv")
    ]
    assert shared, "households should share at least one email"
    assert all(keys in households for keys in shared)


def test_persons_hold_the_normalised_identities_their_rows_show(landing):
    persons = {row["person_key"]: row for row in landing.truth("persons.csv")}
    for dataset_name in CONTACT_DATASETS:
        for row, person_key in landing.good_rows(dataset_name):
            if email := _normalised_email(row["email"]):
                assert persons[person_key]["email"] == email
            if phone := _normalised_phone(row.get("phone")):
                assert persons[person_key]["phone_e164"] == phone

    phones = [person["phone_e164"] for person in persons.values() if person["phone_e164"]]
    assert phones
    assert all(phonenumbers.is_valid_number(phonenumbers.parse(phone)) for phone in phones)


def test_loyalty_members_without_a_customer_id_link_by_email_or_phone(landing):
    crm = {person_key: row for row, person_key in landing.good_rows("crm_customers")}
    linked_by_contact = 0
    for member, person_key in landing.good_rows("loyalty_members"):
        if member["customer_id"] or person_key not in crm:
            continue
        customer = crm[person_key]
        email = _normalised_email(member["email"])
        phone = _normalised_phone(member["phone"])
        same_email = email is not None and email == _normalised_email(customer["email"])
        same_phone = phone is not None and phone == _normalised_phone(customer["phone"])
        assert same_email or same_phone, member["loyalty_id"]
        linked_by_contact += 1
    assert linked_by_contact > 0


# ---------------------------------------------------------------------------- messiness


def test_emails_come_in_mixed_case_with_stray_spaces(landing):
    emails = [row["email"] for row, _ in landing.good_rows("crm_customers")]

    assert any(email != email.strip() for email in emails)
    assert any(email.strip() != email.strip().lower() for email in emails if "@" in email)


@pytest.mark.parametrize(
    "pattern",
    [
        r"\+1 \d{3}-\d{3}-\d{4}",
        r"\(\d{3}\) \d{3} \d{4}",
        r"[1-9]\d{9}",
        r"001 \d{3} \d{3} \d{4}",
        r"1-\d{3}-\d{3}-\d{4}",
    ],
)
def test_phones_come_in_many_formats(landing, pattern):
    phones = [row["phone"] for row, _ in landing.good_rows("crm_customers")]
    assert any(re.fullmatch(pattern, phone) for phone in phones)


@pytest.mark.parametrize("column", ["email", "phone"])
def test_placeholders_appear_in_contact_columns(landing, column):
    placeholders = samples.EMAIL_PLACEHOLDERS if column == "email" else samples.PHONE_PLACEHOLDERS
    values = Counter(
        row[column]
        for dataset_name in ("crm_customers", "loyalty_members")
        for row, _ in landing.good_rows(dataset_name)
    )
    assert [placeholder for placeholder in placeholders if not values[placeholder]] == []


def test_timestamps_mix_offsets(landing):
    stamps = [row["updated_at"] for row, _ in landing.good_rows("crm_customers")]
    stamps += [row["occurred_at"] for row, _ in landing.good_rows("web_events")]

    offsets = {"Z" if stamp.endswith("Z") else stamp[-6:] for stamp in stamps}
    assert offsets == {"+00:00", "Z", "-05:00", "+01:00"}


def test_households_are_two_customers_with_one_email(landing):
    crm = {row["customer_id"]: (row, key) for row, key in landing.good_rows("crm_customers")}
    households = landing.truth("households.csv")

    assert len(households) >= 2
    for household in households:
        first, first_person = crm[household["customer_id_a"]]
        second, second_person = crm[household["customer_id_b"]]
        assert first_person != second_person
        assert _normalised_email(first["email"]) is not None
        assert _normalised_email(first["email"]) == _normalised_email(second["email"])
        if "phone" in household["shared"]:
            assert _normalised_phone(first["phone"]) == _normalised_phone(second["phone"])


def test_shared_devices_see_two_customers_log_in(landing):
    shared_devices = landing.truth("shared_devices.csv")
    shared_ecids = {device["ecid"] for device in shared_devices}
    logins: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for row, person_key in landing.good_rows("web_events"):
        if row["event_type"] == "login":
            logins[row["ecid"]].add((row["customer_id"], person_key))
        if row["ecid"] in shared_ecids:
            # Otherwise the truth could not say who was on the device.
            assert row["customer_id"], row["event_id"]

    assert len(shared_devices) >= 2
    for device in shared_devices:
        customers = {customer_id for customer_id, _ in logins[device["ecid"]]}
        persons = {person_key for _, person_key in logins[device["ecid"]]}
        assert customers == {device["customer_id_a"], device["customer_id_b"]}
        assert len(persons) == 2


def test_every_login_names_a_customer_and_ecids_are_38_digits(landing):
    events = [row for row, _ in landing.good_rows("web_events")]
    event_types = datasets.get("web_events").column("event_type").allowed_values

    assert all(re.fullmatch(r"[1-9]\d{37}", row["ecid"]) for row in events)
    assert all(row["customer_id"] for row in events if row["event_type"] == "login")
    assert {row["event_type"] for row in events} == set(event_types)


def test_recent_activity_fills_windowed_audiences(landing):
    week_ago, month_ago = AS_OF - timedelta(days=7), AS_OF - timedelta(days=30)
    views = Counter(
        person_key
        for row, person_key in landing.good_rows("web_events", day=1)
        if row["event_type"] == "product_view" and _at(row["occurred_at"]) >= week_ago
    )
    recent_buyers = {
        person_key
        for row, person_key in landing.good_rows("offline_orders", day=1)
        if _at(row["ordered_at"]) >= month_ago
    }

    assert sum(1 for count in views.values() if count >= 3) >= 10
    assert len(recent_buyers) >= 20


def test_day_one_history_spans_the_ninety_days_before_as_of(landing):
    stamps = [_at(row["occurred_at"]) for row, _ in landing.good_rows("web_events", day=1)]

    assert AS_OF - timedelta(days=90) <= min(stamps) < AS_OF - timedelta(days=80)
    assert AS_OF - timedelta(days=1) < max(stamps) < AS_OF


# ---------------------------------------------------------------------------- day 2


def test_day_two_adds_files_without_touching_day_one(landing):
    for path, content in landing.day1_bytes.items():
        assert path.read_bytes() == content, path

    day2_files = set(_file_bytes(landing.out_dir)) - set(landing.day1_bytes)
    assert day2_files == set(landing.day2.files)
    assert {path.parent.name for path in day2_files} == set(samples.DATASET_NAMES)


@pytest.mark.parametrize(
    "dataset_name, column",
    [
        ("crm_customers", "updated_at"),
        ("loyalty_members", "updated_at"),
        ("offline_orders", "ordered_at"),
        ("web_events", "occurred_at"),
    ],
)
def test_day_two_rows_fall_in_the_following_day(landing, dataset_name, column):
    rows = landing.good_rows(dataset_name, day=2)

    assert rows
    assert all(AS_OF <= _at(row[column]) < AS_OF + timedelta(days=1) for row, _ in rows)


def test_day_two_changes_consent_both_ways_and_adds_customers(landing):
    day1 = {row["customer_id"]: row for row, _ in landing.good_rows("crm_customers", day=1)}
    day2 = {row["customer_id"]: row for row, _ in landing.good_rows("crm_customers", day=2)}
    persons = {row["customer_id"]: row for row in landing.truth("persons.csv")}

    changes = Counter(
        (day1[customer_id]["email_opt_in"], day2[customer_id]["email_opt_in"])
        for customer_id in day2.keys() & day1.keys()
    )
    assert changes["true", "false"] and changes["false", "true"]
    assert day2.keys() - day1.keys(), "no new customer on day 2"
    for customer_id, row in day2.items():
        assert persons[customer_id]["email_opt_in"] == row["email_opt_in"]


def test_a_later_day_refuses_a_different_population(landing):
    with pytest.raises(ValueError, match="as_of"):
        samples.generate(
            landing.out_dir,
            customers=CUSTOMERS,
            as_of=AS_OF + timedelta(days=1),
            day=3,
            truth_dir=landing.truth_dir,
        )


def test_day_three_truth_covers_all_days_even_in_a_fresh_folder(tmp_path):
    samples.generate(tmp_path / "landing", customers=200, as_of=AS_OF, day=3)

    records = _read_truth(tmp_path / "landing_truth", "records.csv")
    truth_files = {record["file_name"] for record in records}
    written = {path.name for path in (tmp_path / "landing").rglob("*.*")}
    for day in (1, 2, 3):
        assert f"crm_customers_day{day}.csv" in truth_files
    assert written and all("_day3" in name for name in written)
