"""What the API connector tests share: a running stand-in, a destination, real batches,
and a runner's retry under an injected fault.

The destination is a plain namespace with the attributes the runner's Destination
has; the Airflow connection comes from an AIRFLOW_CONN_* variable pointing at the
stand-in, as the demo does with a real connection.
"""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest

from cdp.activation.connectors.base import Audience, Batch, BatchResult, Member, RetryableError
from cdp.vendors.stand_in import Fault

FAULT_KINDS = ("rate_limit", "server_error", "slow", "drop_before", "drop_after")
CLIENT_TIMEOUT = 0.3  # seconds; a `slow` fault answers after SLOW_ANSWER
SLOW_ANSWER = 0.6
RETRY_AFTER = 0.2


def serve(stand_in):
    """A stand-in listening on localhost for one test; a fixture does `yield from serve(...)`."""
    stand_in.base_url = stand_in.start()
    try:
        yield stand_in
    finally:
        stand_in.stop()


def make_destination(monkeypatch, vendor, base_url: str, *, token=None, **overrides):
    """A destination whose Airflow connection points at the running stand-in."""
    name = overrides.pop("name", f"{vendor.name}_test")
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{name.upper()}",
        json.dumps(
            {
                "conn_type": "http",
                "host": base_url,
                "password": vendor.token if token is None else token,
                "extra": overrides.pop("extra", {}),
            }
        ),
    )
    attributes = dict(
        name=name,
        type=vendor.name,
        connection_id=name,
        marketing_action="email",
        identities=(),
        attributes={},
        batch_size=100,
        rate_limit_per_second=None,
        timeout_seconds=5.0,
        settings={},
    )
    attributes.update(overrides)
    return SimpleNamespace(**attributes)


def make_audience(audience_id: str = "vip_customers", vendor_audience_id=None) -> Audience:
    return Audience(
        audience_id=audience_id,
        name=audience_id.replace("_", " ").title(),
        description="Customers the CRM team looks after by hand",
        owner="crm-team@example.com",
        evaluation_mode="batch",
        vendor_audience_id=vendor_audience_id,
    )


def opened(connector, audience_id: str = "vip_customers") -> Audience:
    """The audience as the runner hands it to send(): with the vendor's id for it."""
    audience = make_audience(audience_id)
    return make_audience(audience_id, vendor_audience_id=connector.open_audience(audience))


def make_batch(
    audience: Audience, operation: str, members, number: int = 1, run_key: str = "run-1"
) -> Batch:
    return Batch(
        destination="test",
        audience=audience,
        run_key=run_key,
        number=number,
        total=number,
        operation=operation,
        members=tuple(members),
        idempotency_key=f"test:{audience.audience_id}:{run_key}:{number}",
    )


def member(profile_id: str, attributes=None, realised_at=None, exited_at=None, **identities):
    """A Member; each identity kind given as one value or a list of values."""
    return Member(
        profile_id=profile_id,
        identities={kind: [value] if isinstance(value, str) else list(value)
                    for kind, value in identities.items()},
        attributes=attributes or {},
        realised_at=realised_at,
        exited_at=exited_at,
    )  # fmt: skip


def deliver(connector, batch: Batch, attempts: int = 4) -> tuple[BatchResult, list]:
    """Send as the runner does: one attempt per call, again after a retryable error."""
    errors = []
    for _ in range(attempts):
        try:
            return connector.send(batch), errors
        except RetryableError as error:
            errors.append(error)
            time.sleep(min(error.retry_after or 0.05, 1.0))
    raise AssertionError(f"batch not delivered after {attempts} attempts: {errors}")


def delivered_after_a_fault(vendor, connector, batch: Batch, kind: str, path: str) -> BatchResult:
    """One fault of `kind` on requests to `path`, then the batch sent as the runner would.

    The first attempt must fail as retryable (a 429 saying how long to wait) and the
    second deliver; what the vendor then holds is for the test to check.
    """
    vendor.inject(
        Fault(kind, path_pattern=path, retry_after_seconds=RETRY_AFTER, delay_seconds=SLOW_ANSWER)
    )

    result, errors = deliver(connector, batch)

    assert len(errors) == 1, f"expected one retryable failure, got {errors}"
    if kind == "rate_limit":
        assert errors[0].retry_after == pytest.approx(RETRY_AFTER)
    return result
