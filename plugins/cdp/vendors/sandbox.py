"""Start a local stand-in for every destination type and point connections at them.

`cdp demo` and `cdp airflow` call `start_for_destinations()` so the shipped
destination files deliver somewhere real on this machine: each API destination's
Airflow connection (AIRFLOW_CONN_<ID>) is set to its type's stand-in, the SFTP export
to a local SFTP server rooted in the exports folder. The stand-ins live as long as
the process.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cdp import settings

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
    return started
