"""`cdp audiences list|check`: the audience definitions as the build sees them.

Validation and classification (streaming or batch, and why) live once, in the dbt
macros that build the audiences; this module asks dbt for them through
`dbt compile --inline` and prints the answer, adding each audience's current size when
the warehouse holds `dim_audiences`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from cdp import transform, warehouse

log = logging.getLogger(__name__)

DEFINITIONS_FILE = "models/intermediate/audiences/audiences.yml"
DIM_AUDIENCES = "marts.dim_audiences"


class AudienceDefinitionError(ValueError):
    """The definitions did not validate; `problems` holds one line per problem."""

    def __init__(self, problems: list[str], message: str) -> None:
        super().__init__(message)
        self.problems = problems


@dataclass(frozen=True)
class Audience:
    """One audience as listed: its metadata, how it is evaluated, and its size now."""

    audience_id: str
    audience_name: str
    owner: str
    description: str
    evaluation_mode: str
    evaluation_reason: str
    realised_member_count: int | None = None


def compile_checked(sql: str, dbt_vars: dict | None = None) -> str:
    """Compile a snippet that validates the definitions, turning their errors into ours."""
    try:
        return transform.compile_inline(sql, dbt_vars)
    except transform.DbtCompileFailed as failure:
        raise _definition_error(str(failure)) from None


def _definition_error(message: str) -> Exception:
    """dbt wraps the macros' message in its own lines; keep only the macros' part."""
    start = message.find(DEFINITIONS_FILE)
    if start == -1:
        return transform.DbtCompileFailed(message)
    lines = [line.strip() for line in message[start:].splitlines()]
    lines = [line for line in lines if line and not line.startswith(">")]
    problems = [line[2:] for line in lines if line.startswith("- ")]
    indented = [f"  {line}" for line in lines[1:]]
    return AudienceDefinitionError(problems, "\n".join(lines[:1] + indented))


def catalog() -> list[Audience]:
    """Every audience with its classification, from dbt, and its size when built."""
    listed = json.loads(compile_checked("{{ tojson(audience_catalog()) }}"))
    sizes = _sizes()
    log.info("listed %d audiences, %d with a size", len(listed), len(sizes))
    return [
        Audience(**entry, realised_member_count=sizes.get(entry["audience_id"])) for entry in listed
    ]


def _sizes() -> dict[str, int]:
    with warehouse.connect() as conn, conn.cursor() as cursor:
        cursor.execute("select to_regclass(%s) is not null", (DIM_AUDIENCES,))
        if not cursor.fetchone()[0]:
            return {}
        cursor.execute(f"select audience_id, realised_member_count from {DIM_AUDIENCES}")
        return dict(cursor.fetchall())


def render_list(audiences: list[Audience]) -> str:
    id_width = max([len("audience"), *(len(audience.audience_id) for audience in audiences)])
    owner_width = max([len("owner"), *(len(audience.owner) for audience in audiences)])
    lines = [f"{'audience':<{id_width}}  {'owner':<{owner_width}}  {'mode':<9}  members  name"]
    for audience in audiences:
        size = audience.realised_member_count
        lines += [
            f"{audience.audience_id:<{id_width}}  {audience.owner:<{owner_width}}  "
            f"{audience.evaluation_mode:<9}  {'-' if size is None else size:>7}  "
            f"{audience.audience_name}",
            f"    {audience.evaluation_reason}",
        ]
    if all(audience.realised_member_count is None for audience in audiences):
        lines.append(f"\nmembers: '-' until a build has written {DIM_AUDIENCES}")
    return "\n".join(lines)


def render_check(audiences: list[Audience]) -> str:
    streaming = sum(audience.evaluation_mode == "streaming" for audience in audiences)
    return (
        f"{len(audiences)} audiences valid in {DEFINITIONS_FILE} "
        f"({streaming} streaming, {len(audiences) - streaming} batch)"
    )
