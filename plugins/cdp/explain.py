"""Why an identity belongs to its profile, and what the linking rules kept apart from it.

`cdp explain VALUE` takes an identity value the way an operator would type it (an email
in any case, a phone in any format, a customer id, a device id) or a profile id, puts it
into the form the warehouse stores (the namespace configuration's normalisers) and reads
the identity models: the profile, its identities and the rule that joined each, the
source records behind every link, who claimed the device over time, and what was kept
apart (conflicts, quarantined identifiers, cuts, never-link entries, blocked values).

The operator asked about these values, so they are printed; they are never logged.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from functools import cache

import psycopg2.extensions
import yaml

from cdp import settings, warehouse

log = logging.getLogger(__name__)

# The relations explain reads. A renamed or moved model is a one-line change here; an
# optional relation that does not exist (an older build) only leaves its section out.
PROFILES = "marts.dim_profiles"
PROFILE_IDENTITIES = "marts.bdg_profile_identities"
OBSERVATIONS = "intermediate.int_identity_observations"
LINKS = "marts.fct_identity_links"
NODES = "intermediate.int_identity_nodes"
# Models whose rows say what was kept apart and why; each is shown column by column.
KEPT_APART = (
    "intermediate.int_identity_conflicts",
    "intermediate.int_identity_quarantine",
)
DEVICE_AUTHENTICATIONS = "intermediate.int_device_authentications"
RECORDS_RESOLVED = "intermediate.int_records_resolved"
NAMESPACES = "reference.identity_namespaces"
BLOCKED_VALUES = "reference.identity_blocked_values"
BLOCKED_PATTERNS = "reference.identity_blocked_patterns"
NEVER_LINK = "reference.identity_never_link"

# Source records shown per identity; a busy device would otherwise print thousands.
EVIDENCE_PER_IDENTITY = 5

# What the warehouse ran before namespaces became configuration; used when the
# namespace seed is not in the warehouse.
_DEFAULT_NAMESPACES = {
    "crm_id": ("trim", ""),
    "loyalty_id": ("trim", ""),
    "email": ("email", r"^[a-z0-9._%+'-]+@[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}$"),
    "phone": ("phone", r"^\+[1-9][0-9]{7,14}$"),
    "email_sha256": ("sha256_hex", r"^[0-9a-f]{64}$"),
    "ecid": ("trim", r"^[0-9]{38}$"),
}
_PROFILE_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class SearchKey:
    """One stored form the typed value may have: a namespace and a normalised value."""

    namespace: str
    value: str

    def __str__(self) -> str:
        return f"{self.namespace} {self.value!r}"


@dataclass
class Explanation:
    """Everything explain found about one typed value."""

    typed: str
    searched: list[SearchKey]
    profiles: list[dict] = field(default_factory=list)
    never_links: list[str] = field(default_factory=list)
    refusals: list[dict] = field(default_factory=list)  # when no profile holds the value

    @property
    def found(self) -> bool:
        return bool(self.profiles or self.never_links or self.refusals)


# ------------------------------------------------------------------------ normalising


def search_keys(typed: str, namespaces: dict[str, tuple[str, str]], only: str | None = None):
    """The stored forms of a typed value: one per namespace whose normaliser accepts it."""
    if only is not None and only not in namespaces:
        known = ", ".join(sorted(namespaces))
        raise ValueError(f"namespace {only!r} is not configured; use one of: {known}")

    keys = []
    for namespace, (normaliser, pattern) in namespaces.items():
        if only is not None and namespace != only:
            continue
        if only is None and normaliser == "sha256_hex" and not _email_or_hash(typed):
            continue
        value = normalise(normaliser, typed)
        # A value of the wrong shape cannot be stored in that namespace; with an explicit
        # --namespace it is still searched, so the answer names what was looked for.
        if value is None or (only is None and pattern and not re.search(pattern, value)):
            continue
        keys.append(SearchKey(namespace, value))
    return keys


def _email_or_hash(typed: str) -> bool:
    return "@" in typed or re.fullmatch(r"[0-9a-f]{64}", typed.strip().lower()) is not None


def normalise(normaliser: str, typed: str) -> str | None:
    """The value as the build's normaliser of that name stores it.

    Mirrors macros/identity/normalize_identity.sql and normalize_phone.sql; the explain
    tests look fixture values up as typed in the extracts, so a drift between the two
    shows up there.
    """
    text = typed.strip(" ")
    if not text:
        return None
    if normaliser == "email":
        return text.lower()
    if normaliser == "phone":
        return _phone_e164(text)
    if normaliser == "sha256_hex":
        if re.fullmatch(r"[0-9a-f]{64}", text.lower()):
            return text.lower()
        return hashlib.sha256(text.lower().encode()).hexdigest()
    return text


def _phone_e164(text: str) -> str | None:
    code = _default_phone_country_code()
    local = re.sub(r"\s*(ext\.?|extension|x|#)\s*[0-9]+$", "", text, flags=re.IGNORECASE)
    digits = re.sub(r"[^0-9]", "", local)
    if not digits:
        return None

    if re.match(r"^(tel:)?\s*\+", local):
        candidate = "+" + digits
    elif digits.startswith("00"):
        candidate = "+" + digits[2:]
    elif digits.startswith(code) and len(digits) > 10:
        candidate = "+" + digits
    else:
        candidate = f"+{code}" + re.sub(r"^0", "", digits)

    # The North American numbering plan: area code and exchange never start with 0 or 1.
    if candidate.startswith("+1") and not re.fullmatch(r"\+1[2-9][0-9]{2}[2-9][0-9]{6}", candidate):
        return None
    return candidate if re.fullmatch(r"\+[1-9][0-9]{7,14}", candidate) else None


@cache
def _default_phone_country_code() -> str:
    project = yaml.safe_load((settings.DBT_PROJECT_DIR / "dbt_project.yml").read_text())
    return str(project["vars"]["default_phone_country_code"]).strip()


# --------------------------------------------------------------------------- reading


def explain(typed: str, namespace: str | None = None) -> Explanation:
    """Look the value up in the identity models and gather what explains its profile."""
    with warehouse.connect() as conn, conn.cursor() as cursor:
        keys, profile_ids = _find_profiles(cursor, typed, namespace)
        explanation = Explanation(typed=typed, searched=keys)
        for profile_id in profile_ids:
            explanation.profiles.append(_profile(cursor, profile_id, keys))
        explanation.never_links = _never_links(cursor, keys)
        if not explanation.profiles:
            explanation.refusals = _kept_apart(cursor, keys)

    log.info(
        "explain searched %d stored forms and found %d profiles",
        len(keys), len(explanation.profiles),
    )  # fmt: skip
    return explanation


def find_profiles(typed: str, namespace: str | None = None) -> tuple[list[SearchKey], list[str]]:
    """The stored forms searched for a typed value and the profiles holding any of them.

    A profile id typed as is also finds its profile; `cdp audiences explain` resolves
    its VALUE the same way.
    """
    with warehouse.connect() as conn, conn.cursor() as cursor:
        return _find_profiles(cursor, typed, namespace)


def profile_anchors(profile_ids: list[str]) -> dict[str, str]:
    """How an operator recognises each profile: its anchor identity."""
    with warehouse.connect() as conn, conn.cursor() as cursor:
        return _anchors(cursor, set(profile_ids))


def _find_profiles(
    cursor: psycopg2.extensions.cursor, typed: str, namespace: str | None
) -> tuple[list[SearchKey], list[str]]:
    _require(cursor, PROFILE_IDENTITIES)
    keys = search_keys(typed, _namespaces(cursor), namespace)
    profile_ids = _profiles_holding(cursor, keys)
    if namespace is None and _PROFILE_ID.match(typed.strip().lower()):
        profile_ids += _existing_profile(cursor, typed.strip().lower())
    return keys, list(dict.fromkeys(profile_ids))


def _require(cursor: psycopg2.extensions.cursor, relation: str) -> None:
    if not _exists(cursor, relation):
        raise RuntimeError(
            f"{relation} does not exist in {warehouse.address().describe()}; "
            "run `cdp run` (or `dbt build`) first"
        )


def _exists(cursor: psycopg2.extensions.cursor, relation: str) -> bool:
    cursor.execute("select to_regclass(%s) is not null", (relation,))
    return cursor.fetchone()[0]


def _rows(cursor: psycopg2.extensions.cursor, sql: str, params: dict) -> list[dict]:
    cursor.execute(sql, params)
    names = [column.name for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _namespaces(cursor: psycopg2.extensions.cursor) -> dict[str, tuple[str, str]]:
    if not _exists(cursor, NAMESPACES):
        return dict(_DEFAULT_NAMESPACES)
    cursor.execute(
        f"select namespace, normaliser, coalesce(validity_pattern, '') from {NAMESPACES}"
        " order by priority"
    )
    return {namespace: (normaliser, pattern) for namespace, normaliser, pattern in cursor}


def _key_filter(keys: list[SearchKey]) -> tuple[str, dict]:
    """A where-clause fragment matching (namespace, identity_value) against the keys."""
    if not keys:
        return "false", {}
    pairs = " or ".join(
        f"(namespace = %(ns{index})s and identity_value = %(value{index})s)"
        for index in range(len(keys))
    )
    params = {}
    for index, key in enumerate(keys):
        params[f"ns{index}"], params[f"value{index}"] = key.namespace, key.value
    return f"({pairs})", params


def _profiles_holding(cursor: psycopg2.extensions.cursor, keys: list[SearchKey]) -> list[str]:
    where, params = _key_filter(keys)
    cursor.execute(
        f"select distinct profile_id from {PROFILE_IDENTITIES} where {where} order by 1", params
    )
    return [profile_id for (profile_id,) in cursor]


def _existing_profile(cursor: psycopg2.extensions.cursor, profile_id: str) -> list[str]:
    cursor.execute(
        f"select profile_id from {PROFILE_IDENTITIES} where profile_id = %s limit 1",
        (profile_id,),
    )
    return [found for (found,) in cursor]


def _profile(cursor: psycopg2.extensions.cursor, profile_id: str, keys: list[SearchKey]) -> dict:
    identities = _rows(
        cursor,
        f"""
        select namespace, identity_value, link_rule, is_anchor, observation_count,
               first_seen_at, last_seen_at
        from {PROFILE_IDENTITIES}
        where profile_id = %(profile_id)s
        order by not is_anchor, namespace, identity_value
        """,
        {"profile_id": profile_id},
    )
    profile = {
        "profile_id": profile_id,
        "is_anonymous": _is_anonymous(cursor, profile_id),
        "identities": identities,
        "evidence": _evidence(cursor, profile_id),
    }
    profile_keys = [SearchKey(row["namespace"], row["identity_value"]) for row in identities]
    devices = [key for key in profile_keys if key.namespace == "ecid"]
    profile["devices"] = _devices(cursor, devices)
    profile["kept_apart"] = _kept_apart(cursor, profile_keys + keys, profile_id)
    profile["anchors"] = _anchors(cursor, _profiles_named(profile))
    return profile


def _profiles_named(profile: dict) -> set[str]:
    named = {profile["profile_id"]}
    for device in profile["devices"]:
        named |= {row["profile_id"] for row in device["logins"] + device["events"]}
    for row in profile["kept_apart"]:
        for name, value in row.items():
            if name.endswith("profile_id") and value:
                named.add(value)
            if name.endswith("profile_ids") and value:
                named.update(value)
    for row in profile["evidence"]:
        named.update(
            value for name, value in row.items() if name.startswith("profile_id") and value
        )
    return named


def _anchors(cursor: psycopg2.extensions.cursor, profile_ids: set[str]) -> dict[str, str]:
    """How an operator recognises a profile: its anchor identity."""
    cursor.execute(
        f"select profile_id, namespace || ' ' || identity_value from {PROFILE_IDENTITIES}"
        " where is_anchor and profile_id = any(%s)",
        (sorted(profile_ids),),
    )
    return dict(cursor.fetchall())


def _is_anonymous(cursor: psycopg2.extensions.cursor, profile_id: str) -> bool | None:
    cursor.execute(f"select is_anonymous from {PROFILES} where profile_id = %s", (profile_id,))
    found = cursor.fetchone()
    return found[0] if found else None


def _evidence(cursor: psycopg2.extensions.cursor, profile_id: str) -> list[dict]:
    """Every link touching the profile with the records that showed it, newest first.

    Without the links model, the records that carried each identity stand in: "with"
    names the profile's other identities on the same record, the link it shows.
    """
    if _exists(cursor, LINKS):
        return _links(cursor, profile_id)
    if not _exists(cursor, OBSERVATIONS):
        return []
    return _rows(
        cursor,
        f"""
        with held as (
            select namespace, identity_value, link_rule
            from {PROFILE_IDENTITIES}
            where profile_id = %(profile_id)s
        ),
        carried as (
            select held.namespace, held.identity_value, held.link_rule,
                   observed.source_record_id, observed.dataset, observed.record_key,
                   observed._file_name as file_name, observed._line_number as line_number,
                   observed.observed_at,
                   row_number() over (
                       partition by held.namespace, held.identity_value
                       order by observed.observed_at desc, observed.source_record_id
                   ) as newest_first,
                   count(*) over (partition by held.namespace, held.identity_value)
                       as record_count
            from held
            inner join {OBSERVATIONS} as observed
                on observed.namespace = held.namespace
                and observed.identity_value = held.identity_value
        )
        select carried.namespace, carried.identity_value, carried.link_rule,
               carried.dataset, carried.record_key, carried.file_name, carried.line_number,
               carried.observed_at, carried.record_count,
               (select string_agg(distinct other.namespace || ' ' || other.identity_value, ', ')
                from {OBSERVATIONS} as other
                inner join held
                    on held.namespace = other.namespace
                    and held.identity_value = other.identity_value
                where other.source_record_id = carried.source_record_id
                    and other.namespace <> carried.namespace) as seen_with
        from carried
        where carried.newest_first <= %(limit)s
        order by carried.namespace, carried.identity_value, carried.newest_first
        """,
        {"profile_id": profile_id, "limit": EVIDENCE_PER_IDENTITY},
    )


def _links(cursor: psycopg2.extensions.cursor, profile_id: str) -> list[dict]:
    return _rows(
        cursor,
        f"""
        with touching as (
            select links.*,
                   row_number() over (
                       partition by links.namespace_a, links.identity_value_a,
                                    links.namespace_b, links.identity_value_b
                       order by links.observed_at desc, links.source_record_id
                   ) as newest_first
            from {LINKS} as links
            where links.profile_id_a = %(profile_id)s or links.profile_id_b = %(profile_id)s
        )
        select touching.namespace_a || ' ' || touching.identity_value_a as identity_a,
               touching.namespace_b || ' ' || touching.identity_value_b as identity_b,
               touching.profile_id_a, touching.profile_id_b, touching.link_rule,
               touching.is_link_kept, touching.is_same_profile, touching.dataset,
               touching.record_key, touching.file_name, touching.line_number,
               touching.observed_at
        from touching
        where touching.newest_first <= %(limit)s
        order by touching.is_same_profile desc, identity_a, identity_b, touching.newest_first
        """,
        {"profile_id": profile_id, "limit": EVIDENCE_PER_IDENTITY},
    )


def _devices(cursor: psycopg2.extensions.cursor, devices: list[SearchKey]) -> list[dict]:
    """Who authenticated on each device and when, and whom its events went to."""
    if not devices or not _exists(cursor, DEVICE_AUTHENTICATIONS):
        return []
    found = []
    for device in devices:
        logins = _rows(
            cursor,
            f"""
            select authentication.authenticated_at, authentication.profile_id,
                   authentication.dataset, observed._file_name as file_name,
                   observed._line_number as line_number
            from {DEVICE_AUTHENTICATIONS} as authentication
            left join {OBSERVATIONS} as observed
                on observed.source_record_id = authentication.source_record_id
                and observed.namespace = 'ecid'
            where authentication.ecid = %(ecid)s
            order by authentication.authenticated_at, authentication._batch_id,
                     authentication._line_number
            """,
            {"ecid": device.value},
        )
        found.append(
            {"ecid": device.value, "logins": logins, "events": _device_events(cursor, device)}
        )
    return found


def _device_events(cursor: psycopg2.extensions.cursor, device: SearchKey) -> list[dict]:
    if not _exists(cursor, RECORDS_RESOLVED):
        return []
    return _rows(
        cursor,
        f"""
        select resolved.profile_id, resolved.link_rule, count(*) as record_count
        from {OBSERVATIONS} as observed
        inner join {RECORDS_RESOLVED} as resolved
            on resolved.source_record_id = observed.source_record_id
        where observed.namespace = 'ecid' and observed.identity_value = %(ecid)s
        group by resolved.profile_id, resolved.link_rule
        order by resolved.profile_id, resolved.link_rule
        """,
        {"ecid": device.value},
    )


def _kept_apart(
    cursor: psycopg2.extensions.cursor, keys: list[SearchKey], profile_id: str | None = None
) -> list[dict]:
    """Conflict, quarantine and cut rows naming one of the identities or the profile.

    Rows are read as they are, every column shown, so a new kind of refusal appears
    here without a change to explain.
    """
    nodes = _node_ids(cursor, keys)
    found = []
    for relation in KEPT_APART:
        if not _exists(cursor, relation):
            continue
        cursor.execute(f"select * from {relation} limit 0")
        columns = {column.name for column in cursor.description}

        conditions, params = ["false"], {"profile_id": profile_id, "node_ids": list(nodes)}
        if {"namespace", "identity_value"} <= columns:
            where, key_params = _key_filter(keys)
            conditions.append(where)
            params.update(key_params)
        conditions += [f"{name} = any(%(node_ids)s)" for name in columns if name.startswith("node")]
        if profile_id is not None:
            conditions += [
                f"{name} = %(profile_id)s" for name in columns if name.endswith("profile_id")
            ]
            conditions += [
                f"%(profile_id)s = any({name})" for name in columns if name.endswith("profile_ids")
            ]

        for row in _rows(
            cursor, f"select * from {relation} where {' or '.join(conditions)}", params
        ):
            found.append({"model": relation.split(".")[-1], **_with_identities(row, nodes)})
    return found


def _node_ids(cursor: psycopg2.extensions.cursor, keys: list[SearchKey]) -> dict[int, SearchKey]:
    if not _exists(cursor, NODES):
        return {}
    where, params = _key_filter(keys)
    cursor.execute(f"select node_id, namespace, identity_value from {NODES} where {where}", params)
    return {node_id: SearchKey(namespace, value) for node_id, namespace, value in cursor.fetchall()}


def _with_identities(row: dict, nodes: dict[int, SearchKey]) -> dict:
    """A row keyed by graph node ids, with the identity it is about named as well."""
    if "namespace" in row:
        return row
    for name, value in list(row.items()):
        if name.startswith("node") and value in nodes:
            row["namespace"], row["identity_value"] = nodes[value].namespace, nodes[value].value
    return row


def _never_links(cursor: psycopg2.extensions.cursor, keys: list[SearchKey]) -> list[str]:
    """Why a searched value never links: a blocked value or pattern, a never-link entry."""
    reasons = []
    for key in keys:
        reasons += _blocked(cursor, key)
        reasons += _never_link_entries(cursor, key)
    # A value blocked for every namespace ("any") reads once, not once per namespace.
    return list(dict.fromkeys(reasons))


def _blocked(cursor: psycopg2.extensions.cursor, key: SearchKey) -> list[str]:
    reasons = []
    if _exists(cursor, BLOCKED_VALUES):
        cursor.execute(
            f"select namespace from {BLOCKED_VALUES}"
            " where namespace in (%s, 'any') and lower(value) = lower(%s)",
            (key.namespace, key.value),
        )
        reasons += [
            f"{key.value!r} never links: blocked, a placeholder on the blocked list for {listed}"
            for (listed,) in cursor.fetchall()
        ]
    if _exists(cursor, BLOCKED_PATTERNS):
        cursor.execute(
            f"select pattern, reason from {BLOCKED_PATTERNS}"
            " where namespace in (%s, 'any') and %s ~ pattern",
            (key.namespace, key.value),
        )
        reasons += [
            f"{key} never links: blocked by pattern {pattern!r} ({reason})"
            for pattern, reason in cursor.fetchall()
        ]
    return reasons


def _never_link_entries(cursor: psycopg2.extensions.cursor, key: SearchKey) -> list[str]:
    if not _exists(cursor, NEVER_LINK):
        return []
    cursor.execute(
        f"""
        select namespace_a, value_a, namespace_b, value_b, reason from {NEVER_LINK}
        where (namespace_a = %(ns)s and value_a = %(value)s)
            or (namespace_b = %(ns)s and value_b = %(value)s)
        """,
        {"ns": key.namespace, "value": key.value},
    )
    reasons = []
    for namespace_a, value_a, namespace_b, value_b, reason in cursor.fetchall():
        if not value_b:
            reasons.append(f"{key} never links to anything: never-link list ({reason})")
            continue
        other = f"{namespace_b} {value_b!r}"
        if (namespace_b, value_b) == (key.namespace, key.value):
            other = f"{namespace_a} {value_a!r}"
        reasons.append(f"{key} never links with {other}: never-link list ({reason})")
    return reasons


# ------------------------------------------------------------------------- rendering


def render(explanation: Explanation) -> str:
    lines = []
    for profile in explanation.profiles:
        lines += _render_profile(profile)
        lines.append("")
    if explanation.never_links:
        lines.append("Never links")
        lines += [f"  {reason}" for reason in explanation.never_links]
        lines.append("")
    if explanation.refusals:
        lines.append("Kept apart (no profile holds it)")
        lines += [f"  {_render_refusal(row, {})}" for row in explanation.refusals]
        lines.append("")
    lines.append("Searched: " + _searched(explanation))
    return "\n".join(lines)


def render_not_found(explanation: Explanation) -> str:
    return (
        f"No identity or profile matches {explanation.typed!r}.\n"
        f"Searched: {_searched(explanation)}.\n"
        "Check the spelling, pass --namespace, or check that the value has been landed "
        "and built."
    )


def _searched(explanation: Explanation) -> str:
    forms = [str(key) for key in explanation.searched]
    if _PROFILE_ID.match(explanation.typed.strip().lower()):
        forms.append(f"profile id {explanation.typed.strip().lower()!r}")
    return ", ".join(forms) or "nothing (no namespace accepts the value)"


def _render_profile(profile: dict) -> list[str]:
    anchors = [row for row in profile["identities"] if row["is_anchor"]]
    anchor = ", ".join(f"{row['namespace']} {row['identity_value']}" for row in anchors) or "none"
    kind = {True: "anonymous", False: "known person", None: "not in dim_profiles"}
    lines = [
        f"Profile {profile['profile_id']}",
        f"  anchor: {anchor}",
        f"  anonymous: {'yes' if profile['is_anonymous'] else 'no'}"
        f" ({kind[profile['is_anonymous']]})",
        "",
        f"Identities ({len(profile['identities'])})",
    ]
    for row in profile["identities"]:
        lines.append(
            f"  {row['namespace']:<12} {row['identity_value']:<40} joined by {row['link_rule']}"
            f"{'  [anchor]' if row['is_anchor'] else ''}  ({row['observation_count']} records)"
        )

    lines += ["", "Links and their evidence (newest records first)"]
    for row in profile["evidence"]:
        lines.append(f"  {_render_evidence(row, profile['profile_id'], profile['anchors'])}")
    lines += _render_devices(profile["devices"], profile["profile_id"], profile["anchors"])
    lines += ["", "Kept apart"]
    refusals = [_render_refusal(row, profile["anchors"]) for row in profile["kept_apart"]]
    lines += [f"  {refusal}" for refusal in refusals] or ["  nothing"]
    return lines


def _render_evidence(row: dict, profile_id: str, anchors: dict[str, str]) -> str:
    record = (
        f"{row['dataset']} record {row['record_key']}, {row['file_name']} line"
        f" {row['line_number']}, observed {row['observed_at']:%Y-%m-%d %H:%M:%S%z}"
    )
    if "identity_a" not in row:
        seen_with = f" with {row['seen_with']}" if row["seen_with"] else ""
        return (
            f"{row['namespace']} {row['identity_value']}: rule {row['link_rule']}; {record}"
            f"{seen_with}"
        )
    if row["is_same_profile"]:
        outcome = "joined"
    else:
        other = row["profile_id_b"] if row["profile_id_a"] == profile_id else row["profile_id_a"]
        kept = "link kept" if row["is_link_kept"] else "link refused"
        outcome = f"{kept}, not joined: the other side is {_named(other, anchors)}"
    return (
        f"{row['identity_a']} <-> {row['identity_b']}: rule {row['link_rule']}, {outcome}; {record}"
    )


def _render_devices(devices: list[dict], profile_id: str, anchors: dict[str, str]) -> list[str]:
    lines = []
    for device in devices:
        lines += [
            "",
            f"Device ecid {device['ecid']}: belongs to whoever authenticated on it last;"
            " each of its events goes to whoever was authenticated on it at or before the"
            " event (time-aware)",
        ]
        for number, login in enumerate(device["logins"], start=1):
            latest = "  <- latest: owner now" if number == len(device["logins"]) else ""
            where = f"{login['file_name']} line {login['line_number']}"
            lines.append(
                f"  authenticated {login['authenticated_at']:%Y-%m-%d %H:%M:%S%z} by"
                f" {_named(login['profile_id'], anchors)} ({login['dataset']} {where}){latest}"
            )
        for events in device["events"]:
            this = " (this profile)" if events["profile_id"] == profile_id else ""
            lines.append(
                f"  {events['record_count']} records attributed to"
                f" {_named(events['profile_id'], anchors)}{this} by {events['link_rule']}"
            )
    return lines


def _named(profile_id: str, anchors: dict[str, str]) -> str:
    return f"profile {profile_id} ({anchors.get(profile_id, 'no anchor')})"


def _render_refusal(row: dict, anchors: dict[str, str]) -> str:
    reason = next(
        (value for name, value in row.items() if name.endswith("reason") and value), "kept apart"
    )
    subject = f"{row.get('namespace', '')} {row.get('identity_value', '')}".strip()
    details = []
    for name, value in row.items():
        hidden = name in ("namespace", "identity_value", "model") or name.startswith("node")
        if value is None or value == reason or hidden:
            continue
        shown = value
        if name.endswith("profile_id"):
            shown = _named(value, anchors)
        elif name.endswith("profile_ids"):
            shown = ", ".join(_named(one, anchors) for one in value)
        details.append(f"{name.replace('_', ' ')}: {shown}")
    return f"{subject}: {reason} ({'; '.join(details)}; from {row['model']})"
