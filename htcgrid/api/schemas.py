"""The API's request and answer bodies, as its OpenAPI schema states them. The bounds come
from the models' constants; the service checks every rule of a submission (``htcgrid.submission``),
on every path, and its answer is the one a caller gets."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from htcgrid.models import (
    DEFAULT_FUNCTION,
    MAX_ATTEMPTS,
    MAX_PRIORITY,
    MAX_RETENTION_SECONDS,
    MAX_TIMEOUT_SECONDS,
    MIN_PRIORITY,
    NAME_PATTERN,
    SESSION_ID_PATTERN,
    json_loads,
)
from htcgrid.task_names import MAX_NAMED_TASKS

# The bounds a submit's options document; htcgrid.submission checks them (and says so).
Priority = Annotated[int, Field(ge=MIN_PRIORITY, le=MAX_PRIORITY)]
Attempts = Annotated[int, Field(ge=1, le=MAX_ATTEMPTS)]
Seconds = Annotated[float, Field(gt=0, le=MAX_TIMEOUT_SECONDS)]


class SubmitBody(BaseModel):
    """A session, as the OpenAPI document states it. The route reads the body itself and the
    service checks every rule (the bounds here are its constants), a server's limits too."""

    model_config = ConfigDict(extra="forbid")
    tasks: list[Any] = Field(
        min_length=1, description="One JSON value per task: the handler's event."
    )
    session_id: str | None = Field(
        None,
        pattern=SESSION_ID_PATTERN.pattern,
        description="Client-chosen id; re-submitting it with the same content is a no-op.",
    )
    priority: Priority = Field(0, description="0-9, higher runs first.")
    task_priorities: list[Priority] | None = None
    function: str = Field(DEFAULT_FUNCTION, pattern=NAME_PATTERN.pattern)
    max_attempts: Attempts | None = Field(None, description="Default: the grid's setting.")
    timeout_seconds: Seconds | None = Field(None, description="Default: the grid's setting.")
    retry_on_error: StrictBool = False
    retention_seconds: float | None = Field(
        None,
        ge=0,
        le=MAX_RETENTION_SECONDS,
        description="How long the session is kept after it ends (default: the server's).",
    )
    poison_after: Attempts | None = Field(
        None, description="Worker deaths after which a task fails as poison (default: the agents')."
    )
    cache: StrictBool | Annotated[float, Field(gt=0, le=MAX_RETENTION_SECONDS)] | None = Field(
        None,
        description="Memoization: answer a task from an earlier finished task of yours with the "
        "same function version and input, without running it; true, or the oldest answer's age "
        "in seconds (default: off).",
    )
    deps: list[list[int | str] | None] | None = Field(
        None,
        description="One entry per task: the tasks it depends on (indexes in this session, or "
        "task ids of this or an earlier session of yours), or null. A task runs once they all "
        "finished and gets their outputs (context.inputs); it fails if one fails.",
    )


def json_body(raw: bytes) -> Any:
    """A request body decoded with the fast JSON reader; not JSON is an ``invalid_request``."""
    try:
        return json_loads(raw)
    except (ValueError, RecursionError):
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body",), "msg": "JSON decode error"}]
        ) from None


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads its body itself: ``model``'s schema, with its
    ``$defs`` written in place (OpenAPI has no ``$defs``)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return resolve(dict(defs[ref.removeprefix("#/$defs/")]))
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    content = {"application/json": {"schema": resolve(schema)}}
    return {"requestBody": {"required": True, "content": content}}


class SubmitAnswer(BaseModel):
    session_id: str
    task_count: int
    created: bool
    warning: str | None = Field(None, description="e.g. that no agent serves this grid")
    results: ResultsAnswer | None = Field(
        None, description="with `?wait=`: the first page of results, as `GET …/results` gives it"
    )


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorAnswer(BaseModel):
    error: ErrorBody


class SessionAnswer(BaseModel):
    session_id: str
    task_count: int
    function: str
    priority: int
    max_attempts: int
    timeout_seconds: float
    owner: str
    created_at: float
    complete: bool
    cancelled: bool
    done_count: int
    counts: dict[str, int]


class SessionList(BaseModel):
    sessions: list[SessionAnswer]
    cursor: int | None = None  # where the next page starts (as ``offset``); null: no more


class TaskError(BaseModel):
    type: str
    message: str
    traceback: str


class TaskResult(BaseModel):
    task_id: str
    index: int
    state: str
    attempts: int
    output: Any = None
    output_url: str | None = Field(
        None, description="Set when the output is too big for this answer: GET it on its own."
    )
    cached: bool = Field(
        False, description="Answered from an earlier task's output without running (cache)."
    )
    error: TaskError | None = None


class ResultsAnswer(BaseModel):
    results: list[TaskResult]
    cursor: int = Field(description="Pass it as `?cursor=` to get the next page.")
    next: int = Field(description="The old name of `cursor`, kept for older clients.")
    complete: bool


class TasksAnswer(BaseModel):
    tasks: list[TaskResult]
    cursor: str | None = Field(
        description="Pass it as `?cursor=` to get the next page; null after the last. A page "
        "may be short, even empty, before the end."
    )


class CancelBody(BaseModel):
    # Any items: each name is checked by ``htcgrid.task_names``, in the in-process words.
    tasks: list[Any] | None = Field(
        None,
        max_length=MAX_NAMED_TASKS,
        description="Only these tasks: task ids of the session, or indexes (default: all).",
        json_schema_extra={"items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
    )


class CancelAnswer(BaseModel):
    session_id: str
    cancelled_pending: int
    cancelled_processing: int
    total_cancelled_tasks: int


class AttemptDeath(BaseModel):
    """One attempt that killed its worker: a poison task's evidence."""

    attempt: int
    kind: str = Field(description="WorkerCrashed, MemoryLimitExceeded or TaskTimeout")
    reason: str
    exit_code: int | None = Field(None, description="Null when a signal ended the worker")
    signal: str | None = Field(None, description="The signal that ended the worker, e.g. SIGKILL")
    peak_rss_mb: int = Field(description="The worker's highest sampled RSS while the task ran")
    agent: str
    host: str
    log_tail: str = Field(description="The last 4 KiB the worker's fds 1 and 2 held, if any")


class TaskDetail(TaskResult):
    session_id: str
    payload: Any = None
    payload_url: str | None = Field(
        None, description="Set when the payload is too big for this answer: GET it on its own."
    )
    log: str
    owner: str | None = None
    submitted_at: float
    started_at: float | None = None
    finished_at: float | None = None
    evidence: list[AttemptDeath] = Field(
        default_factory=list, description="The attempts that killed their worker (last 10)"
    )


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorAnswer} for code in (400, 401, 403, 404, 409, 413, 429, 503)
}
