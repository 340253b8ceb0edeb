"""The short report printed after a run: what landed, who was built, what was sent.

Counts only: no row of personal data is ever printed.
"""

from __future__ import annotations

from cdp import settings, warehouse
from cdp.validation import data_docs_index


def collect() -> dict:
    with warehouse.connect() as conn, conn.cursor() as cursor:
        return {
            "files": _rows(cursor, """
                select dataset, status, count(*), coalesce(sum(rows_landed), 0),
                       coalesce(sum(rows_promoted), 0), coalesce(sum(rows_quarantined), 0)
                from ops.landed_files group by 1, 2 order by 1, 2
            """),
            "profiles": _rows(cursor, """
                select count(*), count(*) filter (where not is_anonymous)
                from marts.dim_profiles
            """),
            "identities": _rows(cursor, """
                select namespace, count(*) from marts.bdg_profile_identities
                group by 1 order by 1
            """),
            "streaming_disagreements": _rows(cursor, """
                select disagreements.audience_id, count(*)
                from marts.fct_audience_streaming_disagreements as disagreements
                where disagreements.build_evaluated_at = (
                    select max(evaluated_at) from marts.fct_audience_evaluations
                    where evaluation_kind = 'build'
                )
                group by 1 order by 1
            """),
            "audiences": _rows(cursor, """
                select audience_id, evaluation_mode, realised_member_count
                from marts.dim_audiences order by 1
            """),
            "activations": _rows(cursor, """
                select destination, audience_id, count(*),
                       sum(rows_added), sum(rows_removed), sum(history_rows),
                       sum(rows_failed), sum(removals_refused),
                       (array_agg(excluded_by_reason order by planned_at desc))[1]
                from ops.activation_runs
                where status in ('sent', 'partial')
                group by 1, 2 order by 1, 2
            """),
        }  # fmt: skip


def _rows(cursor, sql: str) -> list[tuple]:
    cursor.execute("select to_regclass(%s)", (_first_table(sql),))
    if cursor.fetchone()[0] is None:
        return []
    cursor.execute(sql)
    return cursor.fetchall()


def _first_table(sql: str) -> str:
    words = sql.split()
    return words[words.index("from") + 1]


def render(facts: dict) -> str:
    lines = [f"Warehouse: {warehouse.address().describe()}", ""]

    lines.append("Files landed (dataset, status: files, rows landed / promoted / quarantined)")
    for dataset, status, files, landed, promoted, quarantined in facts["files"]:
        lines.append(
            f"  {dataset:<18} {status:<12} {files:>4} files  "
            f"{landed:>8} / {promoted:>8} / {quarantined:>6}"
        )

    if facts["profiles"]:
        total, known = facts["profiles"][0]
        anonymous = total - known
        lines += ["", f"Profiles: {total} ({known} known people, {anonymous} anonymous visitors)"]
    lines.append(
        "Identities: "
        + ", ".join(f"{namespace} {count}" for namespace, count in facts["identities"])
    )

    disagreements = facts["streaming_disagreements"]
    disagreeing = sum(count for _, count in disagreements)
    lines += [
        "",
        f"Streaming and build disagreements at the last build: {disagreeing}"
        + ("" if disagreeing else " (every streaming verdict checked agreed)"),
    ]
    lines += [f"  {audience:<30} {count:>7} profiles" for audience, count in disagreements]

    lines += ["", "Audience sizes (members now, evaluation mode; `cdp audiences list` says why)"]
    lines += [f"  {audience:<30} {size:>7}  {mode}" for audience, mode, size in facts["audiences"]]

    lines += [
        "",
        "Activations (destination, audience: runs, sent +added -removed (+past memberships),"
        " failed, excluded by reason)",
    ]
    for destination, audience, runs, added, removed, history, failed, refused, excluded in facts[
        "activations"
    ]:
        past = f" (+{history} past)" if history else ""
        refusals = f", {refused} removals refused" if refused else ""
        reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(excluded.items()))
        lines.append(
            f"  {destination:<24} {audience:<28} runs {runs:>2}  +{added:<6} -{removed:<5}"
            f"{past} failed {failed}{refusals}; excluded: {reasons or 'none'}"
        )

    lines += [
        "",
        "Where to look next",
        f"  quarantine reports   {settings.reports_dir()}",
        f"  GX Data Docs         {data_docs_index()}",
        f"  file exports         {settings.exports_dir()}",
        "  tables               README.md, 'Tables analysts query'",
        "  the Airflow UI       make airflow",
    ]
    return "\n".join(lines)
