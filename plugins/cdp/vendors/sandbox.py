"""Start a local stand-in for every destination type and point connections at them.

`cdp demo` and `cdp airflow` call `start_for_destinations()` so the shipped
destination files deliver somewhere real on this machine: each API destination's
Airflow connection (AIRFLOW_CONN_<ID>) is set to its type's stand-in, the SFTP export
to a local SFTP server rooted in the exports folder.

The stand-ins live, in memory, as long as the process: the next command starts empty
ones while the ledger remembers what earlier runs sent, so they would receive only
changes. That is fine for a demo and wrong for anything else; the command warns when
the ledger says a destination already holds members. Tests that need one vendor across
several `cdp run` processes start the stand-ins themselves (`start_stand_in`) and pass
each connection as AIRFLOW_CONN_<ID> (tests/test_end_to_end.py).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from cdp import settings

log = logging.getLogger(__name__)

_STAND_INS = {
    "email_provider": "cdp.vendors.email_provider:EmailProviderStandIn",
    "sms_provider": "cdp.vendors.sms_provider:SmsProviderStandIn",
    "meta_custom_audiences": "cdp.vendors.meta_custom_audiences:MetaCustomAudiencesStandIn",
    "google_customer_match": "cdp.vendors.google_customer_match:GoogleDataManagerStandIn",
    "audience_sharing": "cdp.vendors.audience_sharing:AudienceSharingStandIn",
}


def start_stand_in(destination_type: str, **options):
    """Start one stand-in; return it and the Airflow connection that reaches it."""
    import importlib

    module_name, class_name = _STAND_INS[destination_type].split(":")
    vendor = getattr(importlib.import_module(module_name), class_name)(**options)
    base_url = vendor.start()
    connection = {"conn_type": "http", "host": base_url, "password": vendor.token, "extra": {}}
    return vendor, connection


def start_for_destinations(exports_dir: Path | None = None) -> dict[str, object]:
    """A stand-in per API destination type and an SFTP server; returns them by type."""
    from cdp.activation.destinations import load_all
    from cdp.vendors.sftp_server import StandInSftpServer

    started: dict[str, object] = {}
    api_destinations = []
    for destination in load_all().values():
        if destination.type == "file_export":
            location = destination.location or ""
            if location.startswith("sftp://") and "sftp" not in started:
                root = Path(exports_dir or settings.exports_dir()) / "sftp"
                started["sftp"] = StandInSftpServer(root).start()
            if location.startswith("sftp://"):
                started["sftp"].use_for_demo_destinations(destination.connection_id)
            continue

        if destination.type not in started:
            options = {}
            if destination.type == "email_provider":
                options["list_ids"] = (destination.settings["list_id"],)
            started[destination.type] = start_stand_in(destination.type, **options)
        _vendor, connection = started[destination.type]
        os.environ[f"AIRFLOW_CONN_{destination.connection_id.upper()}"] = json.dumps(connection)
        api_destinations.append(destination.name)

    remembered = destinations_holding_members(api_destinations)
    if remembered:
        log.warning(
            "The ledger says %s already hold members from earlier runs, but these local "
            "stand-ins start empty: they will receive only this run's changes and will not "
            "match the ledger. Local stand-ins are for demos (docs/activation.md, Local "
            "stand-ins); start over with a fresh warehouse for a consistent demo.",
            ", ".join(remembered),
        )
    return started


def destinations_holding_members(names: list[str]) -> list[str]:
    """Those of the named destinations that the activation ledger says hold members now."""
    from cdp import warehouse

    with warehouse.connect() as conn, conn.cursor() as cursor:
        cursor.execute("select to_regclass('ops.activation_state') is not null")
        if not cursor.fetchone()[0]:
            return []
        cursor.execute(
            "select distinct destination from ops.activation_state"
            " where is_member and destination = any(%s) order by destination",
            (list(names),),
        )
        return [row[0] for row in cursor.fetchall()]
