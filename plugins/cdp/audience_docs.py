"""`cdp audiences docs`: each audience's evaluation mode and reason, in dbt docs.

The classification is decided by the dbt macros at every compile, but dbt docs only
shows text written in the project. This module writes that text: a docs block holding
a table of every audience (id, name, mode, reason, owner), which `dim_audiences`'
description includes with `{{ doc('audience_modes') }}`. The file is generated, so it
can fall behind an edited definition; `cdp audiences check` and the tests compare it
with what the macros say now and name the command that brings it up to date.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cdp import settings
from cdp.audiences import Audience

log = logging.getLogger(__name__)

DOC_BLOCK = "audience_modes"
DOC_FILE = Path("models/marts/audiences/_audiences__modes.md")

_HEADER = f"""\
{{% docs {DOC_BLOCK} %}}
<!-- Written by `cdp audiences docs` from the audience definitions; do not edit. -->
Each declared audience and how the platform evaluates it: **streaming** audiences on
every new batch of events and in the daily build, **batch** audiences in the daily
build only. The reason is the classifier's, by the fixed rules in docs/audiences.md.

"""


def doc_path() -> Path:
    return settings.DBT_PROJECT_DIR / DOC_FILE


def render(audiences: list[Audience]) -> str:
    """The docs block: a markdown table, one row per audience in definition order."""
    rows = [
        "| audience | name | mode | reason | owner |",
        "|---|---|---|---|---|",
    ]
    for audience in audiences:
        cells = [
            f"`{audience.audience_id}`",
            audience.audience_name,
            f"**{audience.evaluation_mode}**",
            audience.evaluation_reason,
            audience.owner,
        ]
        rows.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")

    # Definitions are free text: raw keeps a stray `{{` in a name from being read as Jinja.
    table = "\n".join(rows)
    return f"{_HEADER}{{% raw %}}\n{table}\n{{% endraw %}}\n{{% enddocs %}}\n"


def ensure_exists() -> None:
    """dbt refuses to compile while the description names a missing block: write an empty
    one, so the first `cdp audiences docs` can compile the definitions it fills it from."""
    path = doc_path()
    if not path.exists():
        path.write_text(f"{{% docs {DOC_BLOCK} %}}\n{{% enddocs %}}\n")
        log.info("wrote an empty %s until the definitions are compiled", DOC_FILE)


def write(audiences: list[Audience]) -> Path:
    path = doc_path()
    path.write_text(render(audiences))
    log.info("wrote the modes of %d audiences to %s", len(audiences), DOC_FILE)
    return path


def stale_problem(audiences: list[Audience]) -> str | None:
    """Why the committed docs block differs from the definitions, or None when it matches."""
    path = doc_path()
    if not path.exists():
        return f"{DOC_FILE} is missing; run `cdp audiences docs` to write it"
    if path.read_text() != render(audiences):
        return (
            f"{DOC_FILE} does not match the audience definitions (an audience was added, "
            "removed, renamed or re-classified); run `cdp audiences docs` and commit it"
        )
    return None


def _cell(text: str) -> str:
    """One line of table text: a pipe or a line break would end the cell or the row."""
    return " ".join(str(text).split()).replace("|", "\\|")
