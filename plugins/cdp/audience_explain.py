"""`cdp audiences explain AUDIENCE VALUE`: why a profile is in an audience, or out of it.

VALUE is resolved to profiles the way `cdp explain` does (any identity as typed, or a
profile id). The dbt macro `audience_explain_sql` compiles each node of the audience's
rule tree with the build's own compiler into a select of whether it held for the
profile at the evaluation time and the values that decided it; this module runs that
SQL and prints the tree. The operator asked about the profile, so attribute values are
printed; logs carry only ids and counts.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from cdp import audiences, explain, warehouse

log = logging.getLogger(__name__)

MEMBERSHIP = "marts.fct_audience_membership"


@dataclass
class ProfileVerdict:
    """The rule tree of one audience evaluated for one profile."""

    profile_id: str
    anchor: str
    nodes: list[dict]
    recorded: dict | None = None  # the profile's row in fct_audience_membership

    @property
    def held(self) -> bool:
        return bool(self.nodes and self.nodes[0]["held"])


@dataclass
class AudienceExplanation:
    typed: str
    searched: list[explain.SearchKey]
    audience: dict | None = None
    verdicts: list[ProfileVerdict] = field(default_factory=list)

    @property
    def found(self) -> bool:
        return bool(self.verdicts)


def explain_audience(
    audience_id: str, typed: str, namespace: str | None = None, at: str | None = None
) -> AudienceExplanation:
    """Evaluate the audience's rule tree, node by node, for the profiles VALUE names."""
    keys, profile_ids = explain.find_profiles(typed, namespace)
    explanation = AudienceExplanation(typed=typed, searched=keys)
    if not profile_ids:
        return explanation

    explanation.audience, rows = evaluate_nodes(audience_id, profile_ids, at)
    anchors = explain.profile_anchors(profile_ids)
    recorded = _recorded_membership(audience_id, profile_ids)
    for profile_id in profile_ids:
        explanation.verdicts.append(
            ProfileVerdict(
                profile_id=profile_id,
                anchor=anchors.get(profile_id, "no anchor"),
                nodes=[row for row in rows if row["profile_id"] == profile_id],
                recorded=recorded.get(profile_id),
            )
        )
    log.info("explained audience %s for %d profiles", audience_id, len(profile_ids))
    return explanation


def evaluate_nodes(
    audience_id: str, profile_ids: list[str], at: str | None = None
) -> tuple[dict, list[dict]]:
    """The audience as listed, and one row per profile and rule node, in tree order."""
    compiled = audiences.compile_checked(
        "{{ audience_explain_request(var('explain_audience'), var('explain_profiles')) }}",
        {
            "explain_audience": audience_id,
            "explain_profiles": profile_ids,
            "evaluation_time": at or "",
        },
    )
    request = json.loads(compiled)
    with warehouse.connect() as conn, conn.cursor() as cursor:
        # No parameters: the compiled SQL holds only literals, some of which may hold %.
        cursor.execute(request["sql"])
        names = [column.name for column in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    return request["audience"], rows


def _recorded_membership(audience_id: str, profile_ids: list[str]) -> dict[str, dict]:
    with warehouse.connect() as conn, conn.cursor() as cursor:
        cursor.execute("select to_regclass(%s) is not null", (MEMBERSHIP,))
        if not cursor.fetchone()[0]:
            return {}
        cursor.execute(
            f"select profile_id, status, qualified_at, exited_at from {MEMBERSHIP}"
            " where audience_id = %s and profile_id = any(%s)",
            (audience_id, profile_ids),
        )
        return {
            profile_id: {"status": status, "qualified_at": qualified, "exited_at": exited}
            for profile_id, status, qualified, exited in cursor.fetchall()
        }


def render(explanation: AudienceExplanation) -> str:
    audience = explanation.audience
    lines = [
        f"Audience {audience['audience_id']}: {audience['audience_name']}",
        f"  {audience['evaluation_reason']}",
    ]
    for verdict in explanation.verdicts:
        lines += ["", *_render_verdict(audience["audience_id"], verdict)]
    return "\n".join(lines)


def _render_verdict(audience_id: str, verdict: ProfileVerdict) -> list[str]:
    if not verdict.nodes:
        return [
            f"Profile {verdict.profile_id} ({verdict.anchor})",
            "  not in marts.dim_profiles, so in no audience; rebuild if it is new",
        ]
    lines = [
        f"Profile {verdict.profile_id} ({verdict.anchor})",
        f"  evaluated at {verdict.nodes[0]['evaluated_at']:%Y-%m-%d %H:%M:%S%z}",
    ]
    for node in verdict.nodes:
        indent = "  " * (node["depth"] + 1)
        mark = "[yes]" if node["held"] else "[no] "
        lines.append(f"{indent}{mark} {node['condition']}  ({node['decided_by']})")
        lines.append(f"{indent}      at {node['place']}")
    outcome = "IN" if verdict.held else "NOT IN"
    lines += ["", f"  Result: {outcome} audience {audience_id}"]
    lines.append(f"  Recorded membership: {_render_recorded(verdict.recorded)}")
    return lines


def _render_recorded(recorded: dict | None) -> str:
    if recorded is None:
        return "never in it (fct_audience_membership)"
    if recorded["status"] == "realised":
        return f"realised since {recorded['qualified_at']:%Y-%m-%d %H:%M:%S%z}"
    return (
        f"exited at {recorded['exited_at']:%Y-%m-%d %H:%M:%S%z}"
        f" (in it from {recorded['qualified_at']:%Y-%m-%d %H:%M:%S%z})"
    )


def render_not_found(explanation: AudienceExplanation) -> str:
    return explain.render_not_found(
        explain.Explanation(typed=explanation.typed, searched=explanation.searched)
    )
