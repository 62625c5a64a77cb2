"""The edge between htcgrid and boto3, shared by the AWS task store and the S3 data plane.

- ``AwsConfig`` is read from the URL (``region``, ``endpoint_url``, ``tag``); credentials come
  from the usual AWS chain (environment, profile, instance or pod role), never from a URL.
- Clients retry in botocore's ``adaptive`` mode (client-side rate limiting on throttling, 10
  attempts). ``Calls`` adds a second, bounded layer: throttling, 5xx and dropped connections
  that outlast botocore's attempts are retried with capped exponential backoff and full
  jitter, then raised as ``BackendUnavailable`` (which agents and servers ride out).
- A failed condition is not an error here: callers catch ``ConditionFailed`` as a lost race.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    HTTPClientError,
    NoCredentialsError,
)

from htcgrid.errors import (
    BackendUnavailable,
    ConfigurationError,
    GridError,
    NotFound,
    ResourceMissing,
)
from htcgrid.urls import query

THROTTLING = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "SlowDown",
        "TooManyRequestsException",
        "RequestThrottled",
        "TransactionInProgressException",
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
        "InternalError",
        "ConditionalRequestConflict",
        "OperationAborted",
    }
)
MISSING = frozenset(
    {
        "ResourceNotFoundException",
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "NoSuchBucket",
    }
)
CONDITION = frozenset({"ConditionalCheckFailedException", "PreconditionFailed"})
BOTO_RETRIES = {"max_attempts": 10, "mode": "adaptive"}


class ConditionFailed(Exception):
    """A conditional write lost its race (internal to the AWS modules, never escapes them)."""

    def __init__(self, item: dict[str, Any] | None = None) -> None:
        super().__init__("condition failed")
        self.item = item


class TransactionCancelled(Exception):
    """A DynamoDB transaction was cancelled; ``reasons`` has one code per item, in order
    (``ConditionalCheckFailed``, ``TransactionConflict``, ``None`` …)."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__(f"transaction cancelled: {reasons}")
        self.reasons = reasons


@dataclass(frozen=True)
class AwsConfig:
    region: str | None = None
    endpoint_url: str | None = None
    tag: str = "htcgrid"

    @classmethod
    def from_url(cls, url: str) -> AwsConfig:
        q = query(url)
        return cls(q.get("region"), q.get("endpoint_url"), q.get("tag", "htcgrid"))

    def client(self, service: str) -> Any:
        """A boto3 client for ``service`` with adaptive retries; thread-safe."""
        config = Config(
            retries=BOTO_RETRIES,
            max_pool_connections=32,
            connect_timeout=5,
            read_timeout=30,
            # S3-compatible stores (MinIO, Ceph) behind an endpoint expect path-style URLs
            s3={"addressing_style": "path"} if service == "s3" and self.endpoint_url else None,
        )
        try:
            return boto3.session.Session().client(
                service, region_name=self.region, endpoint_url=self.endpoint_url, config=config
            )
        except Exception as exc:  # NoRegionError and friends
            raise ConfigurationError(
                f"cannot build an AWS {service} client ({exc}); set region=… in the URL "
                "or AWS_DEFAULT_REGION"
            ) from exc


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def is_transient(exc: BaseException) -> bool:
    """Throttling, a 5xx or a dropped connection: worth another try after a pause."""
    if isinstance(exc, ConnectionError | HTTPClientError):
        return True
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return error_code(exc) in THROTTLING or int(status or 0) >= 500
    return False


class Calls:
    """Runs boto3 calls with the retry policy above and htcgrid's error mapping.

    ``sleep`` and ``rng`` are parameters so tests can check the backoff without waiting.
    """

    def __init__(
        self,
        attempts: int = 6,
        first_delay_seconds: float = 0.05,
        max_delay_seconds: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.attempts = attempts
        self.first_delay_seconds = first_delay_seconds
        self.max_delay_seconds = max_delay_seconds
        self.sleep = sleep
        self.rng = rng or random.Random()

    def delay(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(max, first * 2**attempt)]."""
        cap = min(self.max_delay_seconds, self.first_delay_seconds * 2**attempt)
        return self.rng.uniform(0, cap)

    def __call__(self, fn: Callable[..., Any], **kwargs: Any) -> Any:
        """``fn(**kwargs)``; ConditionFailed on a failed condition, else GridError on failure."""
        for attempt in range(self.attempts):
            try:
                return fn(**kwargs)
            except Exception as exc:
                if error_code(exc) in CONDITION:
                    item = getattr(exc, "response", {}).get("Item")
                    raise ConditionFailed(item) from None
                if error_code(exc) == "TransactionCanceledException":
                    reasons = getattr(exc, "response", {}).get("CancellationReasons", [])
                    raise TransactionCancelled([str(r.get("Code")) for r in reasons]) from None
                if not is_transient(exc):
                    raise translate(exc) from exc
                if attempt == self.attempts - 1:
                    raise BackendUnavailable(f"AWS did not answer in time: {exc}") from exc
                self.sleep(self.delay(attempt))
        raise AssertionError("unreachable")


def translate(exc: BaseException) -> GridError:
    """A boto3 error as the htcgrid error a caller can act on."""
    code = error_code(exc)
    if code in MISSING:
        return ResourceMissing(
            f"an AWS resource of this grid is missing ({exc}); "
            "create it with `htcgrid aws create --tag …`"
        )
    if code in ("NoSuchKey", "404"):
        return NotFound(str(exc))
    if code in ("AccessDenied", "AccessDeniedException", "UnrecognizedClientException"):
        return ConfigurationError(f"AWS refused the credentials: {exc}")
    if isinstance(exc, GridError):
        return exc
    if isinstance(exc, NoCredentialsError):
        return ConfigurationError(
            "no AWS credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile or a role"
        )
    if isinstance(exc, BotoCoreError) or code:
        return BackendUnavailable(f"AWS call failed: {exc}")
    raise exc
