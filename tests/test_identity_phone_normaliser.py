"""The SQL phone normaliser agrees with the `phonenumbers` library.

Profiles link on phones normalised in the warehouse by the dbt macro `phone_e164`;
the library is the reference for what a number is. Each format below is run
through the compiled macro on a real Postgres and compared with the library's
E.164 form (None when the library finds the number invalid).
"""

from __future__ import annotations

import os

import phonenumbers
import pytest

from cdp import settings
from tests.conftest import query, warehouse_kinds

# Formats seen in the extracts (see cdp.samples) and in the wild, for the default
# country of dbt_project.yml (+1, region US).
PHONE_FORMATS = [
    "+1 201-555-0123",
    "(201) 555 0123",
    "2015550123",
    "1-201-555-0123",
    "+12015550123",
    "201.555.0123",
    " +1 (212) 555-0187 ",
    "212-555-0187 ext. 42",
    "212 555 0187 x7",
    "(303) 555-0142 #12",
    "tel:+1-303-555-0142",
    "011 44 20 7946 0018",
    "+44 20 7946 0018",
    "+33 1 42 68 53 00",
    "000-000-0000",
    "0000000000",
    "555-0123",
    "123-456-7890",
    "+1 201 555 012",
    "n/a",
    "unknown",
]

# 00 is the international prefix almost everywhere except North America, and the
# extracts write "001 ..." for US numbers: the macro reads 00 as "+", where the
# library, told the number is American, does not. Compared as "+" instead.
INTERNATIONAL_00_FORMATS = [
    "001 201 555 0123",
    "0044 20 7946 0018",
]


def library_e164(raw: str) -> str | None:
    try:
        number = phonenumbers.parse(raw, "US")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def compiled_phone_e164(column: str) -> str:
    """The macro's SQL for `column`, compiled by dbt with the project's vars."""
    from dbt.cli.main import dbtRunner

    from cdp import transform

    os.environ.update(transform.dbt_environment())
    outcome = dbtRunner().invoke(
        [
            "compile",
            "--inline",
            f"select {{{{ phone_e164('{column}') }}}}",
            "--project-dir",
            str(settings.DBT_PROJECT_DIR),
            "--profiles-dir",
            str(settings.DBT_PROJECT_DIR),
            "--quiet",
        ]
    )
    assert outcome.success, outcome.exception
    return outcome.result.results[0].node.compiled_code.removeprefix("select ")


def sql_e164(raws: list[str]) -> dict[str, str | None]:
    # The compiled SQL holds LIKE patterns; % is the driver's placeholder sign.
    expression = compiled_phone_e164("raw.phone").replace("%", "%%")
    rows = query(
        f"select raw.phone, {expression} from unnest(%s::text[]) as raw (phone)",
        (raws,),
    )
    return dict(rows)


@pytest.mark.parametrize("warehouse_env", warehouse_kinds()[:1], indirect=True)
def test_sql_phone_normaliser_matches_the_phonenumbers_library(warehouse_env):
    from_sql = sql_e164(PHONE_FORMATS + INTERNATIONAL_00_FORMATS)

    expected = {raw: library_e164(raw) for raw in PHONE_FORMATS}
    expected |= {raw: library_e164("+" + raw.strip()[2:]) for raw in INTERNATIONAL_00_FORMATS}
    assert from_sql == expected
    assert sum(value is not None for value in expected.values()) >= 12
