"""Destination declarations: one YAML file per destination under `destinations/`.

Files are checked as a whole before anything is sent, and every problem is reported
at once with the file, the key and how to fix it. Credentials never live in a file:
each destination names an Airflow connection that holds the vendor's base URL and key.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cdp import settings
from cdp.activation.governance import policy_violations, profile_attributes
from cdp.activation.identities import IDENTITY_KINDS

# The consent a marketing action needs. Analytics and audience sharing reach systems of
# our own, which apply their own channel consent when they act on a member.
CONSENT_BY_ACTION = {
    "email": "has_email_consent",
    "sms": "has_sms_consent",
    "advertising": "has_ads_consent",
    "analytics": None,
    "audience_sharing": None,
}
AFTER_EACH_BUILD = "after_each_build"
EXPORT_MODES = ("additions_and_removals", "full_file")

# How many of a member's identities go: the most preferred one it has, each accepted
# kind it has (multi-key matching), or every value of each kind (audience sharing).
IDENTITY_MATCHES = ("first_available", "all_available", "every_value")


@dataclass(frozen=True)
class DestinationType:
    identities: tuple[str, ...]
    actions: tuple[str, ...]
    max_batch_size: int
    identity_match: str
    takes_attributes: bool = True
    required_settings: tuple[str, ...] = ()
    # The vendor finds people by identity value (a list of emails, ad platform hashes),
    # so removing a value removes everyone who has it.
    matches_by_value: bool = False


# What each vendor accepts, from its API documentation (see the connector modules).
DESTINATION_TYPES = {
    "file_export": DestinationType(
        tuple(IDENTITY_KINDS), tuple(CONSENT_BY_ACTION), 1_000_000, "first_available"
    ),
    "email_provider": DestinationType(("email",), ("email",), 500, "first_available",
                                      required_settings=("list_id",), matches_by_value=True),
    "sms_provider": DestinationType(("phone_e164",), ("sms",), 100, "first_available",
                                    takes_attributes=False, matches_by_value=True),
    "meta_custom_audiences": DestinationType(
        ("email_sha256", "phone_digits_sha256"), ("advertising",), 10_000, "all_available",
        takes_attributes=False, required_settings=("ad_account_id",), matches_by_value=True,
    ),
    "google_customer_match": DestinationType(
        ("email_sha256", "phone_sha256"), ("advertising",), 10_000, "all_available",
        takes_attributes=False, required_settings=("operating_account_id", "user_lists"),
        matches_by_value=True,
    ),
    "audience_sharing": DestinationType(
        tuple(IDENTITY_KINDS), ("audience_sharing", "analytics"), 5_000, "every_value"
    ),
}  # fmt: skip

_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_ENV_REFERENCE = re.compile(r"\$\{([A-Z0-9_]+)\}")
_KNOWN_KEYS = {
    "name", "description", "type", "connection_id", "marketing_action", "identities",
    "identity_match", "attributes", "audiences", "schedule", "export_mode", "batch_size",
    "rate_limit_per_second", "timeout_seconds", "retry", "settings", "location",
    "file_format", "max_rows_per_file",
}  # fmt: skip


class DestinationConfigError(ValueError):
    """A destination file that cannot be used; the message lists every problem."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    initial_backoff_seconds: float = 1.0
    max_backoff_seconds: float = 60.0


@dataclass(frozen=True)
class Destination:
    name: str
    description: str
    type: str
    connection_id: str | None
    marketing_action: str
    identities: tuple[str, ...]
    identity_match: str
    attributes: dict[str, str]
    audiences: tuple[str, ...]
    schedule: str
    export_mode: str
    batch_size: int
    rate_limit_per_second: float | None
    timeout_seconds: float
    retry: RetryPolicy
    settings: dict = field(default_factory=dict)
    location: str | None = None
    file_format: str = "csv"
    declared_in: Path = Path()

    @property
    def consent_column(self) -> str | None:
        return CONSENT_BY_ACTION[self.marketing_action]

    @property
    def runs_after_each_build(self) -> bool:
        return self.schedule == AFTER_EACH_BUILD

    @property
    def max_rows_per_file(self) -> int:
        return self.batch_size

    def resolved_location(self) -> str | None:
        """The location with ${VARIABLES} filled in; read at run time, not parse time."""
        if self.location is None:
            return None
        defaults = {"CDP_EXPORTS_DIR": str(settings.exports_dir())}
        return _ENV_REFERENCE.sub(
            lambda match: os.environ.get(match[1], defaults.get(match[1], match[0])),
            self.location,
        )


def load_all(directory: Path | None = None) -> dict[str, Destination]:
    """Every destination file in the folder, by destination name."""
    directory = directory or settings.destinations_dir()
    destinations: dict[str, Destination] = {}
    for path in sorted(directory.glob("*.yml")):
        destination = parse_file(path)
        if destination.name in destinations:
            raise DestinationConfigError(
                f"{path}: name {destination.name!r} is already used by "
                f"{destinations[destination.name].declared_in}; names must be unique."
            )
        destinations[destination.name] = destination
    return destinations


def parse_file(path: Path) -> Destination:
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise DestinationConfigError(f"{path}: not valid YAML ({error})") from None
    problems = _problems(document, path)
    if problems:
        raise DestinationConfigError(f"{path}:\n  - " + "\n  - ".join(problems))

    kind = DESTINATION_TYPES[document["type"]]
    retry = document.get("retry") or {}
    return Destination(
        name=document["name"],
        description=document.get("description", ""),
        type=document["type"],
        connection_id=document.get("connection_id"),
        marketing_action=document["marketing_action"],
        identities=tuple(document["identities"]),
        identity_match=document.get("identity_match", kind.identity_match),
        attributes=dict(document.get("attributes") or {}),
        audiences=tuple(document["audiences"]),
        schedule=str(document.get("schedule", AFTER_EACH_BUILD)),
        export_mode=document.get("export_mode", "additions_and_removals"),
        batch_size=int(
            document.get("batch_size", document.get("max_rows_per_file", kind.max_batch_size))
        ),
        rate_limit_per_second=document.get("rate_limit_per_second"),
        timeout_seconds=float(document.get("timeout_seconds", 30)),
        retry=RetryPolicy(**retry),
        settings=dict(document.get("settings") or {}),
        location=document.get("location"),
        file_format=document.get("file_format", "csv"),
        declared_in=path,
    )


def _problems(document: dict, path: Path) -> list[str]:
    problems = []
    for key in sorted(set(document) - _KNOWN_KEYS):
        problems.append(f"key {key!r} is not a destination setting; remove it or fix its spelling")
    for key in ("name", "type", "marketing_action", "identities", "audiences"):
        if key not in document:
            problems.append(f"key {key!r} is missing; add it (see docs/activation.md)")

    name = document.get("name")
    if name is not None and not _NAME_PATTERN.match(str(name)):
        problems.append(
            f"name {name!r} must be lower-case letters, digits and underscores "
            "(it becomes part of the DAG id)"
        )
    if name is not None and path.stem != name:
        problems.append(f"name {name!r} differs from the file name; rename the file {name}.yml")

    _check_choice(problems, document, "type", tuple(DESTINATION_TYPES))
    _check_choice(problems, document, "export_mode", EXPORT_MODES)
    _check_choice(problems, document, "identity_match", IDENTITY_MATCHES)
    kind = DESTINATION_TYPES.get(document.get("type"))
    if kind is not None:
        problems += _type_problems(document, kind)

    audiences = document.get("audiences")
    if audiences is not None and (
        not isinstance(audiences, list)
        or not audiences
        or not all(isinstance(audience, str) for audience in audiences)
    ):
        problems.append("audiences must be a non-empty list of audience ids")

    schedule = str(document.get("schedule", AFTER_EACH_BUILD))
    if schedule != AFTER_EACH_BUILD and len(schedule.split()) != 5 and not schedule.startswith("@"):
        problems.append(
            f"schedule {schedule!r} is neither {AFTER_EACH_BUILD!r} nor a cron expression "
            "such as '0 6 * * *'"
        )
    for key in ("rate_limit_per_second", "timeout_seconds"):
        value = document.get(key)
        if value is not None and (not isinstance(value, int | float) or value <= 0):
            problems.append(f"{key} {value!r} must be a positive number")
    retry = document.get("retry")
    if retry is not None and (
        not isinstance(retry, dict) or set(retry) - set(RetryPolicy().__dict__)
    ):
        problems.append(
            "retry must be a mapping of attempts, initial_backoff_seconds, max_backoff_seconds"
        )
    return problems


def _type_problems(document: dict, kind: DestinationType) -> list[str]:
    """What the chosen destination type cannot take."""
    problems = []
    type_name = document["type"]

    action = document.get("marketing_action")
    if action is not None and action not in kind.actions:
        problems.append(
            f"marketing_action {action!r} is not one a {type_name} destination serves; "
            f"use one of {', '.join(kind.actions)}"
        )

    identities = document.get("identities")
    if identities is not None:
        if not isinstance(identities, list) or not identities:
            problems.append("identities must be a non-empty list, most preferred first")
        else:
            for identity in identities:
                if identity not in kind.identities:
                    problems.append(
                        f"identities: {identity!r} is not accepted by {type_name}; "
                        f"use one or more of {', '.join(kind.identities)}"
                    )

    attributes = document.get("attributes") or {}
    if not isinstance(attributes, dict):
        problems.append("attributes must map destination field names to profile attributes")
        attributes = {}
    if attributes and not kind.takes_attributes:
        problems.append(f"attributes: a {type_name} destination takes identities only; remove them")
    known = profile_attributes()
    for field_name, attribute in attributes.items():
        if attribute not in known:
            problems.append(
                f"attributes.{field_name}: {attribute!r} is not a profile attribute; use one of "
                f"{', '.join(sorted(known))}"
            )
    if action is not None:
        problems += policy_violations(action, attributes)

    batch_size = document.get("batch_size", document.get("max_rows_per_file"))
    if batch_size is not None and (
        not isinstance(batch_size, int) or not 1 <= batch_size <= kind.max_batch_size
    ):
        problems.append(
            f"batch_size {batch_size!r} must be a whole number from 1 to "
            f"{kind.max_batch_size:,} (the vendor's limit per request)"
        )

    settings_given = document.get("settings") or {}
    for key in kind.required_settings:
        if key not in settings_given:
            problems.append(f"settings.{key} is required for a {type_name} destination")
    if type_name == "sms_provider" and isinstance(settings_given, dict):
        problems += _list_ids_problems(settings_given.get("lists"), document.get("audiences"))

    if type_name == "file_export":
        if "location" not in document:
            problems.append(
                "key 'location' is missing: a folder, s3://bucket/prefix or sftp://host/path"
            )
        location = str(document.get("location", ""))
        if location.startswith(("s3://", "sftp://")) and "connection_id" not in document:
            problems.append(
                f"connection_id is required for {location.split(':')[0]} locations; "
                "name the Airflow connection holding the credentials"
            )
        _check_choice(problems, document, "file_format", ("csv", "parquet"))
    else:
        if "connection_id" not in document:
            problems.append(
                "connection_id is missing: name the Airflow connection holding the vendor's "
                "base URL (host) and key (password)"
            )
        if document.get("export_mode", "additions_and_removals") != "additions_and_removals":
            problems.append(
                f"export_mode {document['export_mode']!r}: a {type_name} destination takes "
                "additions and removals only"
            )
        for key in ("location", "file_format", "max_rows_per_file"):
            if key in document:
                problems.append(f"key {key!r} is for file_export destinations only; remove it")
    return problems


def _list_ids_problems(lists, audiences) -> list[str]:
    """settings.lists may name the SMS provider's list for some of the file's audiences."""
    if lists is None:
        return []
    if not isinstance(lists, dict):
        return ["settings.lists must map audience ids to list ids, e.g. {vip_customers: Y6nRLr}"]
    problems = []
    audiences = audiences if isinstance(audiences, list) else []
    for audience, list_id in lists.items():
        if audience not in audiences:
            problems.append(
                f"settings.lists.{audience}: not one of this destination's audiences; "
                "add it to `audiences` or remove the entry"
            )
        if not isinstance(list_id, str) or not list_id.isalnum():
            problems.append(
                f"settings.lists.{audience}: {list_id!r} is not a list id; copy it from the "
                "list's settings page at the provider (letters and digits, e.g. Y6nRLr)"
            )
    return problems


def _check_choice(problems: list[str], document: dict, key: str, choices: tuple) -> None:
    if key in document and document[key] not in choices:
        problems.append(f"{key} {document[key]!r} is not one of {', '.join(choices)}")
