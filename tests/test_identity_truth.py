"""Identity resolution judged against generated extracts whose true people are known.

One landing and build of messy sample extracts (households sharing an email or phone,
devices shared by two customers, placeholder values), then: unique namespaces hold,
households and shared devices stay apart, pairwise precision and recall over every
record of a known person, profile ids survive a full rebuild, and a never-link entry
an operator adds splits a person on the next build.
"""

from __future__ import annotations

import csv
import os
import shutil
from collections import Counter
from pathlib import Path

import pytest

from cdp import samples, settings, transform
from tests.conftest import land_and_promote, query, warehouse_kinds

CUSTOMERS = 300


@pytest.mark.parametrize("warehouse_env", warehouse_kinds()[:1], indirect=True)
def test_generated_people_are_stitched_as_the_truth_says(warehouse_env, tmp_path):
    samples.generate(tmp_path / "landing", customers=CUSTOMERS, seed=23)
    truth = tmp_path / "landing_truth"
    land_and_build(str(tmp_path / "landing"))

    check_no_profile_holds_two_unique_ids()
    check_households_and_shared_devices_stay_apart(truth)
    check_pairwise_precision_and_recall(truth)
    check_profile_ids_survive_a_full_rebuild()
    check_a_never_link_entry_splits_a_person_on_rebuild(tmp_path)


def land_and_build(landing_url: str) -> None:
    land_and_promote(landing_url)
    transform.run_dbt("build")


def read_truth(truth: Path, name: str) -> list[dict]:
    with open(truth / name, newline="") as handle:
        return list(csv.DictReader(handle))


def profile_of(namespace: str) -> dict[str, str]:
    return dict(
        query(
            "select identity_value, profile_id from marts.bdg_profile_identities"
            " where namespace = %s",
            (namespace,),
        )
    )


def check_no_profile_holds_two_unique_ids() -> None:
    breaches = query(
        """
        select profile_id, namespace, count(*) from marts.bdg_profile_identities
        where namespace in ('crm_id', 'loyalty_id') group by 1, 2 having count(*) > 1
        """
    )
    assert breaches == []


def check_households_and_shared_devices_stay_apart(truth: Path) -> None:
    customers = profile_of("crm_id")
    households = read_truth(truth, "households.csv")
    devices = read_truth(truth, "shared_devices.csv")
    assert households and devices, "the generator made no households or shared devices"

    for pair in households + devices:
        a, b = pair["customer_id_a"], pair["customer_id_b"]
        assert customers[a] != customers[b], pair

    # A shared device belongs to one of the two customers, never to a merge of them.
    device_owner = profile_of("ecid")
    for device in devices:
        if device["ecid"] in device_owner:
            assert device_owner[device["ecid"]] in (
                customers[device["customer_id_a"]],
                customers[device["customer_id_b"]],
            ), device


def check_pairwise_precision_and_recall(truth: Path) -> None:
    """Every pair of records of known people: same person vs same profile.

    Records are CRM and loyalty records (by their ids) and every order and web event
    (by the profile it is attributed to); a record with no profile is a profile of its
    own. Pairs are counted per group, so the check stays linear in records.
    """
    person_of = {
        (row["dataset"], row["record_key"]): row["person_key"]
        for row in read_truth(truth, "records.csv")
    }
    profile_by_record = {
        ("crm_customers", value): profile for value, profile in profile_of("crm_id").items()
    }
    profile_by_record |= {
        ("loyalty_members", value): profile for value, profile in profile_of("loyalty_id").items()
    }
    for dataset, event_id, profile_id in query(
        "select dataset, event_id, profile_id from marts.fct_profile_events"
    ):
        profile_by_record[(dataset, event_id)] = profile_id
    missing = set(person_of) - set(profile_by_record)
    assert not missing, f"{len(missing)} records of known people are not in the marts"

    profiles = {
        record: profile_by_record[record] or f"unattributed {record}" for record in person_of
    }
    true_pairs = pair_count(Counter(person_of.values()))
    found_pairs = pair_count(Counter(profiles.values()))
    both = pair_count(Counter((person_of[record], profiles[record]) for record in person_of))
    precision, recall = both / found_pairs, both / true_pairs
    print(
        f"pairwise precision {precision:.4f} recall {recall:.4f} over {len(person_of)} records"
        f" of {len(set(person_of.values()))} people"
    )
    assert precision == 1.0
    assert recall >= 0.95


def pair_count(group_sizes: Counter) -> int:
    return sum(size * (size - 1) // 2 for size in group_sizes.values())


def identity_profiles() -> set[tuple]:
    return set(
        query("select namespace, identity_value, profile_id from marts.bdg_profile_identities")
    )


def check_profile_ids_survive_a_full_rebuild() -> None:
    before = identity_profiles()
    transform.run_dbt("run", "--full-refresh", "--select", "+bdg_profile_identities")
    assert identity_profiles() == before


def check_a_never_link_entry_splits_a_person_on_rebuild(tmp_path: Path) -> None:
    """The operator's list lives in the repo: the test edits a copy of the dbt project."""
    loyalty_id, customer_id = loyalty_card_linked_only_by_its_customer_id()
    customers, members = profile_of("crm_id"), profile_of("loyalty_id")
    assert members[loyalty_id] == customers[customer_id]

    project = tmp_path / "dbt_project"
    shutil.copytree(
        settings.DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs")
    )
    with open(project / "seeds" / "identity_never_link.csv", "a", newline="") as seed:
        csv.writer(seed, lineterminator="\n").writerow(
            ["loyalty_id", loyalty_id, "crm_id", customer_id, "card given to a relative"]
        )
    run_dbt_in(project, "seed", "--select", "identity_never_link")
    run_dbt_in(project, "run", "--select", "+bdg_profile_identities")

    customers_after, members_after = profile_of("crm_id"), profile_of("loyalty_id")
    assert members_after[loyalty_id] != customers_after[customer_id]
    assert customers_after[customer_id] == customers[customer_id], "the person kept their id"


def loyalty_card_linked_only_by_its_customer_id() -> tuple[str, str]:
    """A loyalty id whose records name no other person identifier than one customer id."""
    rows = query(
        """
        select card.identity_value, min(other.identity_value)
        from intermediate.int_identity_observations as card
        inner join intermediate.int_identity_observations as other
            on other.source_record_id = card.source_record_id
            and other.observation_id <> card.observation_id
            and other.is_linkable
            and other.namespace <> 'ecid'
        where card.namespace = 'loyalty_id' and card.is_linkable
        group by card.identity_value
        having count(distinct (other.namespace, other.identity_value)) = 1
            and min(other.namespace) = 'crm_id'
        order by 1
        limit 1
        """
    )
    assert rows, "the generated extracts hold no loyalty card linked by customer id alone"
    return rows[0]


def run_dbt_in(project: Path, *arguments: str) -> None:
    from dbt.cli.main import dbtRunner

    os.environ.update(transform.dbt_environment())
    outcome = dbtRunner().invoke(
        [*arguments, "--project-dir", str(project), "--profiles-dir", str(project)]
    )
    assert outcome.success, f"dbt {' '.join(arguments)} failed in the project copy"
