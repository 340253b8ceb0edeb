"""Destination declarations: one YAML file per destination under `destinations/`.

Files are checked as a whole before anything is sent, and every problem is reported
at once with the file, the key and how to fix it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from cdp import settings

# Which consent a marketing action needs and which identities it may use. A destination
# can only be sent an identity its action allows.
CONSENT_BY_ACTION = {
    "email": "has_email_consent",
    "sms": "has_sms_consent",
    "advertising": "has_ads_consent",
}
IDENTITIES = ("email_sha256", "phone_e164")
DESTINATION_TYPES = ("file_export",)
EXPORT_MODES = ("additions_and_removals", "full_file")
AFTER_EACH_BUILD = "after_each_build"

_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_ENV_REFERENCE = re.compile(r"\$\{([A-Z0-9_]+)\}")


class DestinationConfigError(ValueError):
    """A destination file that cannot be used; the message lists every problem."""


@dataclass(frozen=True)
class Destination:
    name: str
    description: str
    type: str
    marketing_action: str
    identity: str
    audiences: tuple[str, ...]
    schedule: str
    export_mode: str
    location: str
    connection_id: str | None
    declared_in: Path

    @property
    def consent_column(self) -> str:
        return CONSENT_BY_ACTION[self.marketing_action]

    @property
    def runs_after_each_build(self) -> bool:
        return self.schedule == AFTER_EACH_BUILD

    def resolved_location(self) -> str:
        """The location with ${VARIABLES} filled in; read at run time, not parse time."""
        defaults = {"CDP_EXPORTS_DIR": str(settings.exports_dir())}
        return _ENV_REFERENCE.sub(
            lambda match: os.environ.get(match[1], defaults.get(match[1], match[0])),
            self.location,
        )


def load_all(directory: Path | None = None) -> dict[str, Destination]:
    """Every destination file in the folder, by destination name."""
    directory = directory or settings.DESTINATIONS_DIR
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
    document = yaml.safe_load(path.read_text()) or {}
    problems = _problems(document, path)
    if problems:
        raise DestinationConfigError(f"{path}:\n  - " + "\n  - ".join(problems))

    return Destination(
        name=document["name"],
        description=document.get("description", ""),
        type=document["type"],
        marketing_action=document["marketing_action"],
        identity=document["identity"],
        audiences=tuple(document["audiences"]),
        schedule=str(document.get("schedule", AFTER_EACH_BUILD)),
        export_mode=document.get("export_mode", "additions_and_removals"),
        location=document["location"],
        connection_id=document.get("connection_id"),
        declared_in=path,
    )


def _problems(document: dict, path: Path) -> list[str]:
    problems = []
    known_keys = {
        "name", "description", "type", "marketing_action", "identity", "audiences",
        "schedule", "export_mode", "location", "connection_id",
    }  # fmt: skip

    for key in sorted(set(document) - known_keys):
        problems.append(f"key {key!r} is not a destination setting; remove it or fix its spelling")
    for key in ("name", "type", "marketing_action", "identity", "audiences", "location"):
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
    _check_choice(problems, document, "type", DESTINATION_TYPES)
    _check_choice(problems, document, "marketing_action", tuple(CONSENT_BY_ACTION))
    _check_choice(problems, document, "identity", IDENTITIES)
    _check_choice(problems, document, "export_mode", EXPORT_MODES)

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
    return problems


def _check_choice(problems: list[str], document: dict, key: str, choices: tuple) -> None:
    if key in document and document[key] not in choices:
        problems.append(f"{key} {document[key]!r} is not one of {', '.join(choices)}")
