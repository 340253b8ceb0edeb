"""A local S3 protocol server (moto) for the demo and the tests.

It stands in for a real bucket the way a vendor sandbox would: boto3 talks to it over
HTTP exactly as it talks to AWS, only the endpoint differs. Its contents live in
memory and go when the process ends.
"""

from __future__ import annotations

import json
import os

DEMO_CONNECTION_ID = "cdp_exports_s3"
_ACCESS_KEY = "local-s3"


def start_local_s3(buckets: tuple[str, ...] = ()) -> str:
    """Start the server on a free loopback port, create the buckets, return the endpoint."""
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    # The server logs one line per request; the demo's output has no room for them.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=_ACCESS_KEY,
        aws_secret_access_key=_ACCESS_KEY,
        region_name="us-east-1",
    )
    for bucket in buckets:
        client.create_bucket(Bucket=bucket)
    return endpoint


def airflow_connection_uri(endpoint: str) -> str:
    """The AIRFLOW_CONN_* value that points an S3 destination at the local server."""
    return json.dumps(
        {
            "conn_type": "aws",
            "login": _ACCESS_KEY,
            "password": _ACCESS_KEY,
            "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"},
        }
    )


def use_for_demo_destinations(endpoint: str) -> None:
    os.environ[f"AIRFLOW_CONN_{DEMO_CONNECTION_ID.upper()}"] = airflow_connection_uri(endpoint)
