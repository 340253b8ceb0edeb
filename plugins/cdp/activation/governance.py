"""Data-usage labels and the policy that says which marketing actions each forbids.

Labels sit on dataset columns (column meta `data_usage` in the dbt sources), so they
travel with the data an analyst declares; the policy lives beside the destinations in
`destinations/policies/data_usage.yml`. A destination that maps a labelled attribute
to an action the policy forbids is refused when the file is checked, before any DAG
exists for it, so nothing is ever sent in breach.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from cdp import datasets, settings


@dataclass(frozen=True)
class LabelledAttribute:
    attribute: str
    labels: tuple[str, ...]
    declared_in: Path


def policy_path() -> Path:
    return settings.DESTINATIONS_DIR / "policies" / "data_usage.yml"


def forbidden_actions_by_label(path: Path | None = None) -> dict[str, tuple[str, ...]]:
    path = path or policy_path()
    if not path.exists():
        return {}
    document = yaml.safe_load(path.read_text()) or {}
    return {
        label: tuple((rule or {}).get("forbidden_actions", ()))
        for label, rule in (document.get("labels") or {}).items()
    }


def profile_attributes() -> dict[str, LabelledAttribute]:
    """Every profile attribute a destination may map, with its data-usage labels."""
    attributes: dict[str, LabelledAttribute] = {}
    for dataset in datasets.load_all().values():
        for column in dataset.columns:
            if not column.profile_attribute:
                continue
            known = attributes.get(column.name)
            labels = tuple(sorted({*column.data_usage, *(known.labels if known else ())}))
            attributes[column.name] = LabelledAttribute(column.name, labels, dataset.declared_in)

    # Identity columns of dim_profiles that carry no label of their own.
    for name in ("customer_id", "loyalty_id", "first_seen_at", "last_seen_at"):
        attributes.setdefault(name, LabelledAttribute(name, (), Path("dim_profiles")))
    return attributes


def policy_violations(action: str, mapped: dict[str, str]) -> list[str]:
    """One message per mapped attribute whose labels forbid the action."""
    forbidden = forbidden_actions_by_label()
    known = profile_attributes()
    problems = []
    for field_name, attribute in mapped.items():
        labelled = known.get(attribute)
        if labelled is None:
            continue
        for label in labelled.labels:
            if action in forbidden.get(label, ()):
                problems.append(
                    f"attributes.{field_name} maps {attribute!r}, labelled {label!r} in "
                    f"{labelled.declared_in}, and {policy_path().name} forbids {label!r} data "
                    f"for marketing action {action!r}; remove the mapping, or send it only "
                    "to a destination whose action the policy allows"
                )
    return problems
