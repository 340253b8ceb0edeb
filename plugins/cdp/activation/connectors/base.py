"""What every destination connector receives and answers.

The runner owns the ledger, batching, retries and exactly-once; a connector only
knows how to say one batch in its vendor's language and how to read the answer.
Everything a connector is handed is already normalised and hashed as the destination
declared, and already cleared for consent and data-usage policy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

Operation = Literal["add", "remove"]


@dataclass(frozen=True)
class Member:
    profile_id: str
    # Identity kind (e.g. "email_sha256") to the value to send, in the destination's
    # order of preference. Audience sharing may send several values of one kind.
    identities: dict[str, list[str]]
    attributes: dict[str, object] = field(default_factory=dict)
    # For audience sharing's backfill: when the membership began and ended.
    realised_at: datetime | None = None
    exited_at: datetime | None = None


@dataclass(frozen=True)
class Audience:
    audience_id: str
    name: str
    description: str
    owner: str
    evaluation_mode: str
    # The vendor's own id for this audience (a list, a custom audience), once known.
    vendor_audience_id: str | None = None


@dataclass(frozen=True)
class Batch:
    destination: str
    audience: Audience
    run_key: str
    number: int  # 1-based within the run, stable across retries and resumptions
    total: int
    operation: Operation
    members: tuple[Member, ...]
    # Derived from destination, audience, run and batch number: the same batch sent
    # again carries the same key, so a vendor that honours it applies it once.
    idempotency_key: str


@dataclass
class BatchResult:
    accepted: int
    # Members the vendor refused inside an otherwise accepted batch, by profile id,
    # with the vendor's reason. They are not recorded as held and go again next run.
    rejected: dict[str, str] = field(default_factory=dict)
    # A short answer worth keeping in the ledger: request ids, counts. Never personal data.
    vendor_response: dict = field(default_factory=dict)


class DeliveryError(Exception):
    """The vendor did not take the batch; the message is the vendor's own words."""


class RetryableError(DeliveryError):
    """Worth trying again: rate limits, 5xx, timeouts, dropped connections."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(DeliveryError):
    """Trying again cannot help (bad request, bad credentials): the task fails at once."""


class SentBatchesLost(PermanentError):
    """Batches the destination had taken are gone before the run could be finished.

    A file export's part deleted at the destination before the manifest was written,
    for instance. `lost` maps each batch number to what became of it. The runner
    records those batches as failed, so the rows they added go again next run.
    """

    def __init__(self, message: str, lost: dict[int, str]):
        super().__init__(message)
        self.lost = lost


class RemovalRefused(DeliveryError):
    """The vendor refuses this removal (for instance below its minimum audience size).

    The members stay recorded as held, and the removal is tried again next run.
    """


class Connector(Protocol):
    # The vendor's documented maximum members per request.
    max_batch_size: int

    def open_audience(self, audience: Audience) -> str:
        """Make sure the vendor knows the audience; return the vendor's id for it."""

    def send(self, batch: Batch) -> BatchResult:
        """Deliver one batch; raise a DeliveryError subclass when it was not taken."""

    def close(self) -> None: ...
