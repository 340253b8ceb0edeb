"""Which connector class speaks for each destination type.

Imported lazily: a DAG file that only lists destinations should not load an HTTP
client, boto3 or an SSH library.
"""

from __future__ import annotations

import importlib

CONNECTOR_CLASSES = {
    "file_export": "cdp.activation.connectors.file_export:FileExportConnector",
    "email_provider": "cdp.activation.connectors.email_provider:EmailProviderConnector",
    "sms_provider": "cdp.activation.connectors.sms_provider:SmsProviderConnector",
    "meta_custom_audiences":
        "cdp.activation.connectors.meta_custom_audiences:MetaCustomAudiencesConnector",
    "google_customer_match":
        "cdp.activation.connectors.google_customer_match:GoogleCustomerMatchConnector",
    "audience_sharing": "cdp.activation.connectors.audience_sharing:AudienceSharingConnector",
}  # fmt: skip


def open_connector(destination):
    module_name, class_name = CONNECTOR_CLASSES[destination.type].split(":")
    connector_class = getattr(importlib.import_module(module_name), class_name)
    return connector_class(destination)
