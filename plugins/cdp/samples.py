"""Sample extracts for the landing area, written together with the truth about them.

The generator plays a retailer's source systems: a CRM export, a loyalty programme
export, store and call-centre orders and the website clickstream. The files are as messy
as real extracts (mixed-case emails, phones in many formats, placeholder values, bad rows,
one file with a wrong header), and beside the landing area it writes what is really
there: which person each good row belongs to, which rows and files were broken on
purpose, which customers share an email and which devices are shared. Tests compare
identity stitching, validation and audiences with that truth.

Days. Day 1 holds ninety days of history up to `as_of`. Day N (N >= 2) holds the extracts
of one more day, timestamped in [as_of + (N - 2) days, as_of + (N - 1) days): a CRM
re-export of changed and new customers, a loyalty re-export of changed members, new
orders and new clickstream. A call for day N writes only day N's files; it replays the
earlier days in memory, so the truth always covers days 1..N and never drifts from the
files already landed.

Truth, never in the landing area (line numbers count a CSV header as line 1):
- records.csv: dataset, file_name, line_number, record_key, person_key per good row;
- persons.csv: each person's ids, normalised email, E.164 phone and latest consent;
- bad_rows.csv and bad_files.csv: what was broken on purpose, and how;
- households.csv and shared_devices.csv: the pairs that must stay two profiles;
- generation.json: the arguments, so a later day cannot continue another population.

Bad rows and the rejected file describe nobody in the population, so the truth about
persons holds whatever the platform does with them. Everything a person's records share
is linkable: a loyalty record without a customer_id shows the same email or phone as
the CRM record, an order or event named by email alone uses an email a record shows.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from random import Random
from typing import TextIO

from cdp import datasets

log = logging.getLogger(__name__)

CRM = "crm_customers"
LOYALTY = "loyalty_members"
ORDERS = "offline_orders"
WEB = "web_events"
DATASET_NAMES = (CRM, LOYALTY, ORDERS, WEB)

HISTORY_DAYS = 90
REJECTED_FILE_NAME = "loyalty_members_day1_partner.csv"

# What is wrong with a bad row or file; bad_rows.csv and bad_files.csv use these words.
UNPARSABLE_TIMESTAMP = "unparsable_timestamp"
BAD_NUMBER = "bad_number"
MISSING_REQUIRED = "missing_required"
WRONG_FIELD_COUNT = "wrong_field_count"
INVALID_JSON = "invalid_json"
NOT_ALLOWED_VALUE = "not_allowed_value"
WRONG_HEADER = "wrong_header"

# The column each problem breaks, per dataset; None when the whole line is broken.
BREAKABLE_COLUMNS: dict[str, dict[str, str | None]] = {
    CRM: {
        UNPARSABLE_TIMESTAMP: "updated_at",
        MISSING_REQUIRED: "customer_id",
        WRONG_FIELD_COUNT: None,
    },
    LOYALTY: {
        UNPARSABLE_TIMESTAMP: "updated_at",
        BAD_NUMBER: "points_balance",
        MISSING_REQUIRED: "loyalty_id",
        WRONG_FIELD_COUNT: None,
        NOT_ALLOWED_VALUE: "tier",
    },
    ORDERS: {
        UNPARSABLE_TIMESTAMP: "ordered_at",
        BAD_NUMBER: "order_total",
        MISSING_REQUIRED: "order_id",
        WRONG_FIELD_COUNT: None,
        NOT_ALLOWED_VALUE: "channel",
    },
    WEB: {
        UNPARSABLE_TIMESTAMP: "occurred_at",
        MISSING_REQUIRED: "event_id",
        INVALID_JSON: None,
        NOT_ALLOWED_VALUE: "event_type",
    },
}
_BROKEN_VALUES = {
    UNPARSABLE_TIMESTAMP: ("2024-13-45T99:00:00Z", "yesterday"),
    BAD_NUMBER: ("12,50", "abc"),
    MISSING_REQUIRED: ("",),
}
_NOT_ALLOWED = {"tier": "diamond", "channel": "kiosk", "event_type": "hover"}

EMAIL_PLACEHOLDERS = ("unknown", "n/a", "N/A", "test@test.com", "")
PHONE_PLACEHOLDERS = ("000-000-0000", "0000000000", "unknown", "n/a", "")
_PHONE_STYLES = (
    "+1 {area}-{exchange}-{line}",
    "({area}) {exchange} {line}",
    "{area}{exchange}{line}",
    "001 {area} {exchange} {line}",
    "1-{area}-{exchange}-{line}",
    "+1{area}{exchange}{line}",
    "{area}.{exchange}.{line}",
)
# Real US area codes with the 555 exchange, which is not handed out to subscribers, so
# the numbers parse as valid without belonging to anyone: room for 600,000 phones.
_AREA_CODES = (
    "201 202 203 205 206 207 208 209 210 212 213 214 215 216 217 218 219 224 225 228 "
    "229 231 234 239 240 248 251 252 253 254 256 260 262 267 269 270 276 281 301 302 "
    "303 304 305 307 308 309 310 312 313 314 315 316 317 318 319 320 321 323 325 330"
).split()
_EMAIL_DOMAINS = ("example.com", "example.org", "mail.example.com")
_FIRST_NAMES = (
    "Ada Alan Alice Amir Ana Ben Carla Chen Dana David Elena Emma Farah Grace Hugo Ines "
    "Jack Jamal Julia Kai Lena Liam Maria Mateo Nina Noah Olga Omar Priya Rosa Sam Sofia "
    "Tariq Uma Victor Yara Zoe"
).split()
_LAST_NAMES = (
    "Adams Baker Brown Chen Costa Davis Diaz Evans Fischer Garcia Hall Ito Jones Khan "
    "Kim Lee Lopez Martin Meyer Moore Nguyen Novak Patel Reyes Rossi Silva Smith Taylor "
    "Walker White Wilson Young"
).split()
_TIERS = ("bronze", "silver", "gold", "platinum")
_TIER_WEIGHTS = (50, 30, 15, 5)
_SITE = "https://shop.example.com"
_SECTIONS = ("", "women", "men", "kids", "home", "sale", "new-in", "stores")
_SEARCH_TERMS = ("jacket", "running+shoes", "gift", "lamp", "jeans", "backpack")
# Offsets seen on real extracts: UTC spelt two ways, a US and a European zone.
_ZONES = (
    (UTC, False),
    (UTC, True),
    (timezone(timedelta(hours=-5)), False),
    (timezone(timedelta(hours=1)), False),
)

_DAY_SECONDS = 86_400
# Day 1 crowds activity into recent weeks so that windowed audiences have members:
# (share, newest, oldest) in days before as_of.
_RECENCY = ((0.4, 0, 7), (0.3, 7, 30), (0.3, 30, HISTORY_DAYS))
_SESSIONS_PER_DEVICE = (1, 1, 1, 2, 2, 3)
_PRODUCT_VIEWS_PER_SESSION = (0, 1, 1, 2, 2, 3, 4)
_ORDERS_PER_BUYER = (0, 1, 2, 3, 4, 5)
_ORDERS_WEIGHTS = (30, 25, 20, 12, 8, 5)
_SESSION_ROOM_SECONDS = 3_600


# ---------------------------------------------------------------------------- summary


@dataclass(frozen=True)
class DatasetCounts:
    """What one call wrote for one dataset."""

    dataset: str
    files: int = 0
    rows: int = 0
    bad_rows: int = 0
    bad_files: int = 0


@dataclass(frozen=True)
class GenerationSummary:
    """The files one call wrote, with counts only (never personal data)."""

    day: int
    data_until: datetime
    datasets: tuple[DatasetCounts, ...]
    files: tuple[Path, ...]
    truth_dir: Path
    truth_files: tuple[Path, ...]

    def counts(self, dataset: str) -> DatasetCounts:
        return next(counts for counts in self.datasets if counts.dataset == dataset)

    def __str__(self) -> str:
        lines = [
            f"sample extracts for day {self.day}, data until {self.data_until.isoformat()}",
            f"{'dataset':<18}{'files':>7}{'rows':>10}{'bad rows':>10}{'bad files':>11}",
        ]
        for counts in self.datasets:
            lines.append(
                f"{counts.dataset:<18}{counts.files:>7}{counts.rows:>10}"
                f"{counts.bad_rows:>10}{counts.bad_files:>11}"
            )
        lines.append(f"truth in {self.truth_dir}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------- population


@dataclass(slots=True)
class _Person:
    key: str
    first_name: str
    last_name: str
    email: str | None = None  # normalised
    phone: str | None = None  # ten national digits, country +1
    customer_id: str | None = None
    loyalty_id: str | None = None
    postal_code: str = ""
    birth_date: str = ""
    email_opt_in: bool = False
    sms_opt_in: bool = False
    ads_opt_in: bool = False
    tier: str = "bronze"
    points: int = 0
    enrolled_seconds_before_as_of: int = 0
    # Whether a record shows the real value or a placeholder. Forced on where the
    # value is the only link between two of the person's records.
    crm_shows_email: bool = True
    crm_shows_phone: bool = True
    loyalty_shows_email: bool = True
    loyalty_shows_phone: bool = True
    loyalty_carries_customer_id: bool = False
    loyalty_listed: bool = False  # whether a loyalty extract has carried the member yet
    partner: _Person | None = None  # the other customer in a household
    # What the good rows revealed so far; persons.csv is built from these.
    seen: bool = False
    email_seen: bool = False
    phone_seen: bool = False

    @property
    def email_links(self) -> bool:
        """Whether a record naming this person by email alone can be linked to them."""
        if not self.email or self.partner is not None:
            return False
        shown_on_crm = self.customer_id is not None and self.crm_shows_email
        shown_on_loyalty = self.loyalty_id is not None and self.loyalty_shows_email
        return shown_on_crm or shown_on_loyalty


@dataclass(slots=True)
class _Device:
    ecid: str
    owner: _Person
    co_user: _Person | None = None  # a second customer logging in on a shared device
    awaits_login: bool = False  # a customer's device that has not yet seen a login


@dataclass
class _Sequence:
    prefix: str
    width: int = 6
    last: int = 0

    def next(self) -> str:
        self.last += 1
        return f"{self.prefix}{self.last:0{self.width}d}"


@dataclass
class _Population:
    persons: list[_Person] = field(default_factory=list)
    devices: list[_Device] = field(default_factory=list)
    households: list[tuple[_Person, _Person, str]] = field(default_factory=list)
    customer_ids: _Sequence = field(default_factory=lambda: _Sequence("C"))
    loyalty_ids: _Sequence = field(default_factory=lambda: _Sequence("L"))
    order_ids: _Sequence = field(default_factory=lambda: _Sequence("O", 8))
    decoy_numbers: _Sequence = field(default_factory=lambda: _Sequence(""))
    phones_taken: set[str] = field(default_factory=set)

    def new_phone(self, rng: Random) -> str:
        while True:
            phone = f"{rng.choice(_AREA_CODES)}555{rng.randrange(10_000):04d}"
            if phone not in self.phones_taken:
                self.phones_taken.add(phone)
                return phone

    def add_device(self, owner: _Person, rng: Random) -> _Device:
        ecid = str(rng.randrange(10**37, 10**38))
        device = _Device(ecid, owner, awaits_login=owner.customer_id is not None)
        self.devices.append(device)
        return device


def _build_population(customers: int, seed: int) -> _Population:
    rng = Random(f"cdp-samples/{seed}/population")
    population = _Population()

    for _ in range(customers):
        _add_person(population, rng, has_crm=rng.random() < 0.8)

    _form_households(population, rng)
    _plan_loyalty_links(population, rng)
    _share_devices(population, rng)
    return population


def _add_person(population: _Population, rng: Random, *, has_crm: bool) -> _Person:
    number = len(population.persons) + 1
    is_member = rng.random() < (0.5 if has_crm else 0.25)
    person = _Person(
        key=f"P{number:06d}",
        first_name=rng.choice(_FIRST_NAMES),
        last_name=rng.choice(_LAST_NAMES),
    )
    population.persons.append(person)

    if has_crm or is_member:
        if rng.random() < 0.9:
            local = f"{person.first_name}.{person.last_name}.{number}".lower()
            person.email = f"{local}@{rng.choice(_EMAIL_DOMAINS)}"
        if rng.random() < 0.7:
            person.phone = population.new_phone(rng)
    if has_crm:
        _enrol_in_crm(population, person, rng)
    if is_member:
        _enrol_in_loyalty(population, person, rng)

    # Loyalty-only members never log in on the website (a login names a customer_id),
    # so their browsing could never be linked to them: they do not browse here.
    if has_crm:
        device_count = rng.choice((0, 1, 1, 1, 1, 2, 2, 2))
    else:
        device_count = 0 if is_member else 1
    for _ in range(device_count):
        population.add_device(person, rng)
    return person


def _enrol_in_crm(population: _Population, person: _Person, rng: Random) -> None:
    person.customer_id = population.customer_ids.next()
    person.postal_code = f"{rng.randrange(1_000, 99_999):05d}"
    if rng.random() < 0.9:
        born = date(1950, 1, 1) + timedelta(days=rng.randrange(20_000))
        person.birth_date = born.isoformat()
    person.email_opt_in = rng.random() < 0.6
    person.sms_opt_in = rng.random() < 0.4
    person.ads_opt_in = rng.random() < 0.5
    person.crm_shows_email = rng.random() < 0.9
    person.crm_shows_phone = rng.random() < 0.85


def _enrol_in_loyalty(population: _Population, person: _Person, rng: Random) -> None:
    person.loyalty_id = population.loyalty_ids.next()
    person.tier = rng.choices(_TIERS, _TIER_WEIGHTS)[0]
    person.points = rng.randrange(20_000)
    person.enrolled_seconds_before_as_of = rng.randrange(91 * _DAY_SECONDS, 1_000 * _DAY_SECONDS)
    person.loyalty_shows_email = rng.random() < 0.8
    person.loyalty_shows_phone = rng.random() < 0.7
    person.loyalty_carries_customer_id = person.customer_id is not None


def _form_households(population: _Population, rng: Random) -> None:
    """Pair CRM customers who share an email, and sometimes a phone: two people still."""
    with_email = [person for person in population.persons if person.customer_id and person.email]
    pair_count = min(max(2, round(len(with_email) * 0.015)), len(with_email) // 2)
    chosen = rng.sample(with_email, pair_count * 2)

    for first, second in zip(chosen[::2], chosen[1::2], strict=True):
        second.email = first.email
        second.last_name = first.last_name
        first.partner, second.partner = second, first
        first.crm_shows_email = second.crm_shows_email = True
        shared = "email"
        if first.phone and rng.random() < 0.4:
            second.phone = first.phone
            first.crm_shows_phone = second.crm_shows_phone = True
            shared = "email+phone"
        population.households.append((first, second, shared))


def _plan_loyalty_links(population: _Population, rng: Random) -> None:
    """Decide which members carry their customer_id and which link by email or phone."""
    for person in population.persons:
        if not (person.customer_id and person.loyalty_id) or person.partner is not None:
            continue
        if rng.random() < 0.79:
            continue
        ways = [way for way, value in (("email", person.email), ("phone", person.phone)) if value]
        if not ways:
            continue
        person.loyalty_carries_customer_id = False
        if rng.choice(ways) == "email":
            person.crm_shows_email = person.loyalty_shows_email = True
        else:
            person.crm_shows_phone = person.loyalty_shows_phone = True


def _share_devices(population: _Population, rng: Random) -> None:
    """Let a second customer log in on a few customers' devices, at other times."""
    customers = [person for person in population.persons if person.customer_id]
    owned = [device for device in population.devices if device.owner.customer_id]
    if len(customers) < 2:
        return
    count = min(max(2, round(len(owned) * 0.01)), len(owned))

    for device in rng.sample(owned, count):
        partner = device.owner.partner
        if partner is None or rng.random() < 0.5:
            partner = device.owner
            while partner is device.owner:
                partner = rng.choice(customers)
        device.co_user = partner


# ---------------------------------------------------------------------------- time


@dataclass(frozen=True)
class _Window:
    """The span one day's extracts cover, in epoch seconds."""

    as_of: int
    start: int
    end: int
    favour_recent: bool

    @classmethod
    def for_day(cls, as_of: datetime, day: int) -> _Window:
        as_of_seconds = int(as_of.timestamp())
        if day == 1:
            start = as_of_seconds - HISTORY_DAYS * _DAY_SECONDS
            return cls(as_of_seconds, start, as_of_seconds, favour_recent=True)
        end = as_of_seconds + (day - 1) * _DAY_SECONDS
        return cls(as_of_seconds, end - _DAY_SECONDS, end, favour_recent=False)

    def instant(self, rng: Random, room: int = 0) -> int:
        """A moment in the window that leaves `room` seconds before its end."""
        if not self.favour_recent:
            return rng.randrange(self.start, self.end - room)
        share = rng.random()
        # The band the loop stops on is used after it.
        for weight, newest, oldest in _RECENCY:  # noqa: B007
            if share < weight:
                break
            share -= weight
        before_end = rng.randrange(newest * _DAY_SECONDS, oldest * _DAY_SECONDS - room)
        return self.end - room - before_end


def _timestamp(instant: int, rng: Random) -> str:
    zone, zulu = _ZONES[int(rng.random() * len(_ZONES))]
    text = datetime.fromtimestamp(instant, zone).isoformat()
    return text[:-6] + "Z" if zulu else text


# ---------------------------------------------------------------------------- messy values


def _messy_email(email: str, rng: Random) -> str:
    style = rng.random()
    if style < 0.55:
        text = email
    elif style < 0.75:
        text = email.title()
    elif style < 0.85:
        text = email.upper()
    else:
        text = email[0].upper() + email[1:]
    if rng.random() < 0.12:
        text = " " + text
    if rng.random() < 0.12:
        text = text + "  "
    return text


def _messy_phone(phone: str, rng: Random) -> str:
    style = rng.choice(_PHONE_STYLES)
    return style.format(area=phone[:3], exchange=phone[3:6], line=phone[6:])


def _email_value(person: _Person, shown: bool, rng: Random) -> str:
    if shown and person.email:
        person.email_seen = True
        return _messy_email(person.email, rng)
    return rng.choice(EMAIL_PLACEHOLDERS + ("",))


def _phone_value(person: _Person, shown: bool, rng: Random) -> str:
    if shown and person.phone:
        person.phone_seen = True
        return _messy_phone(person.phone, rng)
    return rng.choice(PHONE_PLACEHOLDERS + ("",))


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


# ---------------------------------------------------------------------------- truth


class _Truth:
    """Collects the truth while the extracts are produced and writes it out at the end."""

    def __init__(self, truth_dir: Path) -> None:
        truth_dir.mkdir(parents=True, exist_ok=True)
        self.truth_dir = truth_dir
        self._records_file = (truth_dir / "records.csv").open("w", newline="")
        self._bad_rows_file = (truth_dir / "bad_rows.csv").open("w", newline="")
        self._records = csv.writer(self._records_file, lineterminator="\n")
        self._bad_rows = csv.writer(self._bad_rows_file, lineterminator="\n")
        self._records.writerow(("dataset", "file_name", "line_number", "record_key", "person_key"))
        self._bad_rows.writerow(("dataset", "file_name", "line_number", "column_name", "problem"))
        self.bad_files: list[tuple[str, str, str]] = []

    def record(self, dataset: str, file_name: str, line: int, key: str, person: _Person) -> None:
        self._records.writerow((dataset, file_name, line, key, person.key))
        person.seen = True

    def bad_row(self, dataset: str, file_name: str, line: int, column: str | None, problem: str):
        self._bad_rows.writerow((dataset, file_name, line, column or "", problem))

    def close(self) -> None:
        self._records_file.close()
        self._bad_rows_file.close()

    def finish(self, population: _Population, manifest: dict) -> tuple[Path, ...]:
        self.close()
        households = [
            (first.customer_id, second.customer_id, shared)
            for first, second, shared in population.households
        ]
        shared_devices = [
            (device.ecid, device.owner.customer_id, device.co_user.customer_id)
            for device in population.devices
            if device.co_user is not None
        ]
        written = [
            self.truth_dir / "records.csv",
            self.truth_dir / "bad_rows.csv",
            self._write("bad_files.csv", ("dataset", "file_name", "problem"), self.bad_files),
            self._write("persons.csv", _PERSON_COLUMNS, _person_rows(population)),
            self._write("households.csv", _HOUSEHOLD_COLUMNS, households),
            self._write("shared_devices.csv", _SHARED_DEVICE_COLUMNS, shared_devices),
        ]
        manifest_path = self.truth_dir / MANIFEST_NAME
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
        written.append(manifest_path)
        return tuple(written)

    def _write(self, name: str, header: tuple[str, ...], rows) -> Path:
        path = self.truth_dir / name
        with path.open("w", newline="") as stream:
            writer = csv.writer(stream, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)
        return path


MANIFEST_NAME = "generation.json"
_PERSON_COLUMNS = (
    "person_key",
    "customer_id",
    "loyalty_id",
    "email",
    "phone_e164",
    "email_opt_in",
    "sms_opt_in",
    "ads_opt_in",
)
_HOUSEHOLD_COLUMNS = ("customer_id_a", "customer_id_b", "shared")
_SHARED_DEVICE_COLUMNS = ("ecid", "customer_id_a", "customer_id_b")


def _person_rows(population: _Population):
    for person in population.persons:
        if not person.seen:
            continue
        consent = (
            (_flag(person.email_opt_in), _flag(person.sms_opt_in), _flag(person.ads_opt_in))
            if person.customer_id
            else ("", "", "")
        )
        yield (
            person.key,
            person.customer_id or "",
            person.loyalty_id if person.loyalty_listed else "",
            person.email if person.email_seen else "",
            f"+1{person.phone}" if person.phone_seen else "",
            *consent,
        )


# ---------------------------------------------------------------------------- files


class _Run:
    """Where one call writes: the day it writes and the counts of what it wrote."""

    def __init__(self, out_dir: Path, truth: _Truth, write_day: int) -> None:
        self.out_dir = out_dir
        self.truth = truth
        self.write_day = write_day
        self.counts = {name: DatasetCounts(name) for name in DATASET_NAMES}
        self.files: list[Path] = []

    def open(self, dataset_name: str, file_name: str, day: int, header=None) -> _ExtractFile:
        path = self.out_dir / dataset_name / file_name if day == self.write_day else None
        return _ExtractFile(self, datasets.get(dataset_name), file_name, path, header)

    def tally(self, extract: _ExtractFile, rejected: bool) -> None:
        if extract.path is None:
            return
        before = self.counts[extract.dataset.name]
        self.counts[extract.dataset.name] = DatasetCounts(
            before.dataset,
            files=before.files + 1,
            rows=before.rows + (0 if rejected else extract.good_rows),
            bad_rows=before.bad_rows + extract.bad_rows,
            bad_files=before.bad_files + int(rejected),
        )
        self.files.append(extract.path)


class _ExtractFile:
    """One extract being produced. Every line goes through here, so the line numbers in
    the truth are the line numbers of the file; on replayed days nothing is written."""

    def __init__(
        self,
        run: _Run,
        dataset: datasets.Dataset,
        file_name: str,
        path: Path | None,
        header: list[str] | None,
    ) -> None:
        self.run = run
        self.dataset = dataset
        self.columns = dataset.column_names
        self.file_name = file_name
        self.path = path
        self.good_rows = 0
        self.bad_rows = 0
        self.line_number = 0
        self._stream = _open_for_writing(path) if path is not None else None
        self._csv = csv.writer(self._stream, lineterminator="\n") if self._stream else None
        if dataset.format == "csv":
            self._write_line(header or self.columns)

    def add(self, row: dict, person: _Person) -> None:
        self._write_line(row)
        self.good_rows += 1
        key = row[self.dataset.record_key]
        self.run.truth.record(self.dataset.name, self.file_name, self.line_number, key, person)

    def add_bad(self, line: dict | list | str, column: str | None, problem: str) -> None:
        self._write_line(line)
        self.bad_rows += 1
        self.run.truth.bad_row(self.dataset.name, self.file_name, self.line_number, column, problem)

    def add_unchecked(self, row: dict) -> None:
        self._write_line(row)

    def close(self, *, rejected: bool = False) -> None:
        if self._stream is not None:
            self._stream.close()
        self.run.tally(self, rejected)

    def _write_line(self, line: dict | list | str) -> None:
        self.line_number += 1
        if self._stream is None:
            return
        if isinstance(line, str):
            self._stream.write(line + "\n")
        elif self.dataset.format == "jsonl":
            self._stream.write(json.dumps(line) + "\n")
        elif isinstance(line, dict):
            self._csv.writerow([line.get(column) or "" for column in self.columns])
        else:
            self._csv.writerow(line)


def _open_for_writing(path: Path) -> TextIO:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix != ".gz":
        return path.open("w", newline="", encoding="utf-8")
    # No name and no timestamp in the gzip header, so the bytes depend on content only.
    raw = gzip.GzipFile(filename="", mode="wb", fileobj=path.open("wb"), mtime=0, compresslevel=1)
    return _ClosingTextWrapper(raw)


class _ClosingTextWrapper(io.TextIOWrapper):
    """A text stream over a gzip stream that also closes the file under the gzip stream."""

    def __init__(self, raw: gzip.GzipFile) -> None:
        super().__init__(raw, encoding="utf-8", newline="")
        self._underlying = raw.fileobj

    def close(self) -> None:
        super().close()
        self._underlying.close()


# ---------------------------------------------------------------------------- bad rows


class _BadRows:
    """Slips broken rows between one dataset's good rows for one day.

    The problems take turns so each kind occurs; on day 1 any kind still missing is added
    at the end. Bad rows never pass 5% of a file's good rows, far below the share that
    would quarantine the file. They describe nobody in the population, so the truth about
    persons does not depend on how the platform treats them.
    """

    RATE = 0.02
    MAX_SHARE = 0.05

    def __init__(
        self, dataset_name: str, decoy: Callable[[Random], dict], rng: Random, *, every_kind: bool
    ) -> None:
        self.columns_broken = BREAKABLE_COLUMNS[dataset_name]
        self.kinds = list(self.columns_broken)
        self.decoy = decoy
        self.rng = rng
        self.every_kind = every_kind
        self.used: set[str] = set()
        self.turn = 0

    def maybe_before(self, extract: _ExtractFile) -> None:
        if self.rng.random() >= self.RATE:
            return
        if extract.bad_rows + 1 > self.MAX_SHARE * extract.good_rows:
            return
        self._insert(extract, self.kinds[self.turn % len(self.kinds)])
        self.turn += 1

    def finish(self, extract: _ExtractFile) -> None:
        if self.every_kind:
            for kind in self.kinds:
                if kind not in self.used:
                    self._insert(extract, kind)

    def _insert(self, extract: _ExtractFile, kind: str) -> None:
        column = self.columns_broken[kind]
        line = _break(self.decoy(self.rng), kind, column, extract.columns, self.rng)
        extract.add_bad(line, column, kind)
        self.used.add(kind)


def _break(row: dict, kind: str, column: str | None, columns: list[str], rng: Random):
    if kind == WRONG_FIELD_COUNT:
        fields = [row.get(name) or "" for name in columns]
        if rng.random() < 0.5:
            fields.append(fields[-1])
        else:
            fields.pop()
        return fields
    if kind == INVALID_JSON:
        text = json.dumps({name: row.get(name) for name in columns})
        return text[:-1] if rng.random() < 0.5 else text.replace('"', "'")

    broken = dict(row)
    if kind == NOT_ALLOWED_VALUE:
        broken[column] = _NOT_ALLOWED[column]
    else:
        broken[column] = rng.choice(_BROKEN_VALUES[kind])
    return broken


def _decoy_email(population: _Population, rng: Random) -> str:
    number = population.decoy_numbers.next()
    return f"{rng.choice(_FIRST_NAMES)}.{number}@example.net".lower()


def _crm_decoy(population: _Population, window: _Window, rng: Random) -> dict:
    return {
        "customer_id": population.customer_ids.next(),
        "email": _decoy_email(population, rng),
        "first_name": rng.choice(_FIRST_NAMES),
        "last_name": rng.choice(_LAST_NAMES),
        "country": "US",
        "email_opt_in": "true",
        "sms_opt_in": "false",
        "ads_opt_in": "false",
        "updated_at": _timestamp(window.instant(rng), rng),
    }


def _loyalty_decoy(population: _Population, window: _Window, rng: Random) -> dict:
    return {
        "loyalty_id": population.loyalty_ids.next(),
        "email": _decoy_email(population, rng),
        "tier": rng.choice(_TIERS),
        "points_balance": str(rng.randrange(5_000)),
        "enrolled_at": _timestamp(window.instant(rng), rng),
        "updated_at": _timestamp(window.instant(rng), rng),
    }


def _order_decoy(population: _Population, window: _Window, rng: Random) -> dict:
    return {
        "order_id": population.order_ids.next(),
        "email": _decoy_email(population, rng),
        "store_id": f"S{rng.randint(1, 40):03d}",
        "channel": "store",
        "ordered_at": _timestamp(window.instant(rng), rng),
        "order_total": _money(rng.randrange(500, 40_000)),
        "currency": "USD",
    }


def _web_decoy(window: _Window, rng: Random) -> dict:
    ecid = str(rng.randrange(10**37, 10**38))
    return _web_row(ecid, "page_view", window.instant(rng), rng)


# ---------------------------------------------------------------------------- CRM


def _write_crm(run: _Run, population: _Population, day: int, window: _Window, rng: Random):
    if day == 1:
        customers = [person for person in population.persons if person.customer_id]
    else:
        customers = _change_customers(population, rng) + _join_customers(population, rng)

    extract = run.open(CRM, f"crm_customers_day{day}.csv", day)
    bad_rows = _BadRows(CRM, lambda r: _crm_decoy(population, window, r), rng, every_kind=day == 1)
    for person in customers:
        bad_rows.maybe_before(extract)
        extract.add(_crm_row(person, window.instant(rng), rng), person)
    bad_rows.finish(extract)
    extract.close()


def _crm_row(person: _Person, updated_at: int, rng: Random) -> dict:
    return {
        "customer_id": person.customer_id,
        "email": _email_value(person, person.crm_shows_email, rng),
        "phone": _phone_value(person, person.crm_shows_phone, rng),
        "first_name": person.first_name,
        "last_name": person.last_name,
        "postal_code": person.postal_code,
        "country": "US",
        "birth_date": person.birth_date,
        "email_opt_in": _flag(person.email_opt_in),
        "sms_opt_in": _flag(person.sms_opt_in),
        "ads_opt_in": _flag(person.ads_opt_in),
        "updated_at": _timestamp(updated_at, rng),
    }


def _change_customers(population: _Population, rng: Random) -> list[_Person]:
    """Flip consent for about 5% of customers: next day's additions and removals."""
    customers = [person for person in population.persons if person.customer_id]
    changed = []
    for person in customers:
        flips_email, flips_sms = rng.random() < 0.05, rng.random() < 0.02
        if flips_email:
            person.email_opt_in = not person.email_opt_in
        if flips_sms:
            person.sms_opt_in = not person.sms_opt_in
        if flips_email or flips_sms:
            changed.append(person)
    if not changed and customers:
        person = rng.choice(customers)
        person.email_opt_in = not person.email_opt_in
        changed.append(person)
    return changed


def _join_customers(population: _Population, rng: Random) -> list[_Person]:
    existing = sum(1 for person in population.persons if person.customer_id)
    return [
        _add_person(population, rng, has_crm=True) for _ in range(max(1, round(existing * 0.01)))
    ]


# ---------------------------------------------------------------------------- loyalty


def _write_loyalty(run: _Run, population: _Population, day: int, window: _Window, rng: Random):
    members = [person for person in population.persons if person.loyalty_id]
    if day > 1:
        # Re-export the members who changed, and send the ones who joined since.
        listed = [person for person in members if person.loyalty_listed]
        members = _change_memberships(listed, rng) + [
            person for person in members if not person.loyalty_listed
        ]

    extract = run.open(LOYALTY, f"loyalty_members_day{day}.csv", day)
    bad_rows = _BadRows(
        LOYALTY, lambda r: _loyalty_decoy(population, window, r), rng, every_kind=day == 1
    )
    for person in members:
        bad_rows.maybe_before(extract)
        extract.add(_loyalty_row(person, window, rng), person)
    bad_rows.finish(extract)
    extract.close()

    if day == 1:
        _write_rejected_loyalty_file(run, population, window, rng)


def _loyalty_row(person: _Person, window: _Window, rng: Random) -> dict:
    enrolled_at = window.as_of - person.enrolled_seconds_before_as_of
    person.loyalty_listed = True
    return {
        "loyalty_id": person.loyalty_id,
        "customer_id": person.customer_id if person.loyalty_carries_customer_id else None,
        "email": _email_value(person, person.loyalty_shows_email, rng),
        "phone": _phone_value(person, person.loyalty_shows_phone, rng),
        "tier": person.tier,
        "points_balance": str(person.points),
        "enrolled_at": _timestamp(enrolled_at, rng),
        "updated_at": _timestamp(window.instant(rng), rng),
    }


def _change_memberships(members: list[_Person], rng: Random) -> list[_Person]:
    """Move about 3% of members to another tier, so tier audiences change too."""
    changed = [person for person in members if rng.random() < 0.03]
    if not changed and members:
        changed = [rng.choice(members)]
    for person in changed:
        person.tier = rng.choice([tier for tier in _TIERS if tier != person.tier])
        person.points = max(0, person.points + rng.randrange(-2_000, 3_000))
    return changed


def _write_rejected_loyalty_file(
    run: _Run, population: _Population, window: _Window, rng: Random
) -> None:
    """A partner's export whose header renames a column: the platform rejects it whole."""
    columns = datasets.get(LOYALTY).column_names
    header = ["points" if name == "points_balance" else name for name in columns]
    if header == columns:
        header = columns[:-1]

    extract = run.open(LOYALTY, REJECTED_FILE_NAME, 1, header=header)
    for _ in range(rng.randint(5, 12)):
        extract.add_unchecked(_loyalty_decoy(population, window, rng))
    extract.close(rejected=True)
    run.truth.bad_files.append((LOYALTY, REJECTED_FILE_NAME, WRONG_HEADER))


# ---------------------------------------------------------------------------- orders


def _write_orders(run: _Run, population: _Population, day: int, window: _Window, rng: Random):
    buyers = [person for person in population.persons if person.customer_id or person.loyalty_id]
    extract = run.open(ORDERS, f"offline_orders_day{day}.csv", day)
    bad_rows = _BadRows(
        ORDERS, lambda r: _order_decoy(population, window, r), rng, every_kind=day == 1
    )

    for person in buyers:
        if day == 1:
            order_count = rng.choices(_ORDERS_PER_BUYER, _ORDERS_WEIGHTS)[0]
        else:
            order_count = int(rng.random() < 0.05)
        for _ in range(order_count):
            bad_rows.maybe_before(extract)
            row = _order_row(population.order_ids.next(), person, window.instant(rng), rng)
            extract.add(row, person)
    bad_rows.finish(extract)
    extract.close()


def _order_row(order_id: str, person: _Person, ordered_at: int, rng: Random) -> dict:
    buyer_ids = [
        name
        for name, usable in (
            ("loyalty_id", person.loyalty_id is not None),
            ("customer_id", person.customer_id is not None),
            ("email", person.email_links),
        )
        if usable
    ]
    named = rng.sample(buyer_ids, min(len(buyer_ids), rng.choices((1, 2, 3), (6, 3, 1))[0]))
    at_store = rng.random() < 0.8
    row = {
        "order_id": order_id,
        "loyalty_id": person.loyalty_id if "loyalty_id" in named else None,
        "customer_id": person.customer_id if "customer_id" in named else None,
        "email": _email_value(person, True, rng) if "email" in named else None,
        "store_id": f"S{rng.randint(1, 40):03d}" if at_store else None,
        "channel": "store" if at_store else "call_centre",
        "ordered_at": _timestamp(ordered_at, rng),
        "order_total": _money(rng.randrange(500, 40_000)),
        "currency": "USD",
    }
    return row


# ---------------------------------------------------------------------------- clickstream


def _write_web(run: _Run, population: _Population, day: int, window: _Window, rng: Random):
    if day == 1:
        active = list(population.devices)
    else:
        active = [
            device for device in population.devices if device.awaits_login or rng.random() < 0.12
        ]
    part_count = min(rng.choice((2, 3)), len(active))
    part_size = math.ceil(len(active) / part_count) if part_count else 0
    bad_rows = _BadRows(WEB, lambda r: _web_decoy(window, r), rng, every_kind=day == 1)

    for part in range(part_count):
        suffix = ".jsonl" if part == 0 else ".jsonl.gz"
        extract = run.open(WEB, f"web_events_day{day}_part{part + 1}{suffix}", day)
        for device in active[part * part_size : (part + 1) * part_size]:
            for row, person in _device_events(device, window, rng):
                bad_rows.maybe_before(extract)
                extract.add(row, person)
        if part == part_count - 1:
            bad_rows.finish(extract)
        extract.close()


def _device_events(device: _Device, window: _Window, rng: Random) -> list[tuple[dict, _Person]]:
    sessions = _plan_sessions(device, window, rng)
    events = []
    for start, user, logged_in in sessions:
        events.extend(_session_events(device, user, logged_in, start, rng))
    return events


def _plan_sessions(device: _Device, window: _Window, rng: Random):
    """(start, user, logged in) for each visit, oldest first.

    Every customer's device sees at least one login, the evidence that links it; on a
    shared device every visit is logged in, so each event names who was there.
    """
    owner, shared = device.owner, device.co_user is not None
    count = rng.choice(_SESSIONS_PER_DEVICE) if window.favour_recent else 1
    logged_in = [
        owner.customer_id is not None and (shared or rng.random() < 0.55) for _ in range(count)
    ]
    if owner.customer_id and device.awaits_login and not any(logged_in):
        logged_in[-1] = True
    sessions = [(window.instant(rng, _SESSION_ROOM_SECONDS), owner, flag) for flag in logged_in]

    if shared and window.favour_recent:
        sessions += [
            (window.instant(rng, _SESSION_ROOM_SECONDS), device.co_user, True)
            for _ in range(rng.randint(1, 2))
        ]
    if any(logged_in):
        device.awaits_login = False
    return sorted(sessions, key=lambda session: session[0])


def _session_events(
    device: _Device, user: _Person, logged_in: bool, start: int, rng: Random
) -> list[tuple[dict, _Person]]:
    steps = _session_steps(logged_in, login_first=device.co_user is not None, rng=rng)
    events = []
    instant = start
    identified = False
    for step in steps:
        identified = identified or step == "login"
        row = _web_row(device.ecid, step, instant, rng)
        if identified:
            _identify(row, user, customer_id_only=device.co_user is not None, rng=rng)
        events.append((row, user))
        instant += 5 + int(rng.random() * 175)
    return events


def _session_steps(logged_in: bool, *, login_first: bool, rng: Random) -> list[str]:
    steps = ["page_view"]
    if rng.random() < 0.3:
        steps.append("search")
    steps += ["product_view"] * rng.choice(_PRODUCT_VIEWS_PER_SESSION)
    if "product_view" in steps and rng.random() < 0.35:
        steps.append("add_to_cart")
        if rng.random() < 0.4:
            steps.append("purchase")
    if logged_in:
        steps.insert(0 if login_first else 1, "login")
        if rng.random() < 0.3:
            steps.append("logout")
    return steps


def _web_row(ecid: str, event_type: str, instant: int, rng: Random) -> dict:
    row = _blank_event().copy()
    row["event_id"] = _event_id(rng)
    row["ecid"] = ecid
    row["event_type"] = event_type
    row["occurred_at"] = _timestamp(instant, rng)
    if event_type in ("product_view", "add_to_cart", "purchase"):
        sku = f"SKU-{10_000 + int(rng.random() * 400)}"
        row["product_sku"] = sku
        row["page_url"] = f"{_SITE}/p/{sku.lower()}"
    elif event_type == "search":
        row["page_url"] = f"{_SITE}/search?q={rng.choice(_SEARCH_TERMS)}"
    elif event_type in ("login", "logout"):
        row["page_url"] = f"{_SITE}/account/{event_type}"
    else:
        row["page_url"] = f"{_SITE}/{rng.choice(_SECTIONS)}"
    if event_type == "purchase":
        row["revenue"] = rng.randrange(500, 40_000) / 100
        row["currency"] = "USD"
    return row


def _identify(row: dict, user: _Person, *, customer_id_only: bool, rng: Random) -> None:
    """Name the logged-in visitor: a login always by customer_id, others as sites do."""
    email_allowed = user.email_links and not customer_id_only
    if row["event_type"] == "login":
        row["customer_id"] = user.customer_id
        if email_allowed and rng.random() < 0.2:
            row["email"] = _email_value(user, True, rng)
        return

    style = rng.random()
    if style < 0.75 or not email_allowed:
        row["customer_id"] = user.customer_id
    elif style < 0.85:
        row["customer_id"] = user.customer_id
        row["email"] = _email_value(user, True, rng)
    else:
        row["email"] = _email_value(user, True, rng)


@cache
def _blank_event() -> dict:
    """Every declared key, in declared order, so an event is written as built."""
    return dict.fromkeys(datasets.get(WEB).column_names)


def _event_id(rng: Random) -> str:
    """A random (version 4) UUID drawn from `rng`, so reruns give the same ids."""
    digits = f"{rng.getrandbits(122):031x}"
    variant = "89ab"[int(digits[15], 16) & 3]
    return f"{digits[:8]}-{digits[8:12]}-4{digits[12:15]}-{variant}{digits[16:19]}-{digits[19:]}"


# ---------------------------------------------------------------------------- entry point


def generate(
    out_dir: Path,
    *,
    customers: int = 1000,
    seed: int = 7,
    as_of: datetime | None = None,
    day: int = 1,
    truth_dir: Path | None = None,
) -> GenerationSummary:
    """Write day `day`'s sample extracts under `out_dir` and the truth up to that day.

    `as_of` (default: today, midnight UTC; a naive value is read as UTC) is the end of
    day 1's history; day N's data ends at as_of + (N - 1) days. The truth goes to
    `truth_dir`, by default a sibling of `out_dir` named `<out_dir name>_truth`.
    """
    _check_arguments(customers, day)
    out_dir = Path(out_dir)
    as_of = _as_of_instant(as_of)
    truth_dir = Path(truth_dir) if truth_dir else out_dir.parent / f"{out_dir.name}_truth"
    manifest = {"customers": customers, "seed": seed, "as_of": as_of.isoformat(), "day": day}
    _check_continuation(truth_dir, manifest)

    population = _build_population(customers, seed)
    truth = _Truth(truth_dir)
    run = _Run(out_dir, truth, write_day=day)
    try:
        for replayed_day in range(1, day + 1):
            _produce_day(run, population, seed, replayed_day, _Window.for_day(as_of, replayed_day))
    finally:
        truth.close()
    truth_files = truth.finish(population, manifest)

    summary = GenerationSummary(
        day=day,
        data_until=as_of + timedelta(days=day - 1),
        datasets=tuple(run.counts[name] for name in DATASET_NAMES),
        files=tuple(run.files),
        truth_dir=truth_dir,
        truth_files=truth_files,
    )
    log.info("wrote %s sample files for day %s (%s customers)", len(run.files), day, customers)
    return summary


def _produce_day(run: _Run, population: _Population, seed: int, day: int, window: _Window):
    # One random stream per dataset and day: a change to how one extract is made leaves
    # the others as they were.
    writers = (
        (CRM, _write_crm),
        (LOYALTY, _write_loyalty),
        (ORDERS, _write_orders),
        (WEB, _write_web),
    )
    for dataset_name, write in writers:
        write(run, population, day, window, Random(f"cdp-samples/{seed}/day{day}/{dataset_name}"))


def _as_of_instant(as_of: datetime | None) -> datetime:
    if as_of is None:
        return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=UTC)
    return as_of.astimezone(UTC).replace(microsecond=0)


def _check_arguments(customers: int, day: int) -> None:
    if customers < 1:
        raise ValueError(
            f"customers={customers}: generate at least 1 customer "
            "(200 or more for every kind of messy row)."
        )
    if day < 1:
        raise ValueError(f"day={day}: days count from 1 (the first extract).")


def _check_continuation(truth_dir: Path, manifest: dict) -> None:
    """Refuse a day N that would not continue the population the earlier days landed."""
    path = truth_dir / MANIFEST_NAME
    if manifest["day"] == 1 or not path.exists():
        return
    earlier = json.loads(path.read_text())
    differing = [key for key in ("customers", "seed", "as_of") if earlier.get(key) != manifest[key]]
    if differing:
        settings = ", ".join(f"{key}={earlier.get(key)!r}" for key in differing)
        raise ValueError(
            f"{path} records day {earlier.get('day')} generated with {settings}; day "
            f"{manifest['day']} must continue the same population. Pass the same "
            "customers, seed and as_of, or a fresh truth_dir."
        )
