"""Sessions uploaded in parts: any total size, visible all or nothing (design §2 and §8).

A client whose session does not fit one request

1. uploads each big payload on its own (``stage_payload``); it is written where its task will
   read it, and its size and sha256 are recorded;
2. sends the task list in parts of bounded size (``stage_part``): small payloads inline, big
   ones marked ``staged``;
3. commits (``commit``): the session and all its tasks are created in one store transaction.

Every step is idempotent, so a client may retry any of them. The first step records who
uploads; nobody else may add to that upload or commit it. A re-submit of a committed session
goes through the same steps without rewriting any payload, and the commit compares content
hashes as a one-request submit does: the same content is a no-op, another is a Conflict.

An upload not committed within ``Settings.upload_expiry_seconds`` is refused at commit, and
submitting it again starts it afresh. Its data is removed by a sweep that runs when a later
upload begins (at most once a minute per process): every upload registers itself in a bucket
of its start time, so the sweep finds the expired ones without listing the data plane, and it
waits ``SWEEP_GRACE_SECONDS`` more, so a commit under way is never swept from under.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from htcgrid.dataplane import DataPlane, keys
from htcgrid.errors import Conflict, NotFound, PayloadTooLarge, ValidationError
from htcgrid.graph import Graph, GraphBuilder
from htcgrid.graph_submit import check_graph, with_graph
from htcgrid.models import (
    MAX_PRIORITY,
    MIN_PRIORITY,
    SESSION_ID_PATTERN,
    NewTask,
    SessionSpec,
    json_dumps,
    json_loads,
)
from htcgrid.submission import int_in

if TYPE_CHECKING:
    from htcgrid.service import GridService, SubmitRequest, SubmitResult

BUCKET_SECONDS = 600  # uploads are registered for expiry by the 10 minutes they began in
SWEEP_GRACE_SECONDS = 600.0  # between refusing a commit and deleting the upload's data
SWEEP_EVERY_SECONDS = 60.0
INLINE_BUDGET_BYTES = 64 * 1024 * 1024  # small payloads a commit keeps in memory; the rest
MAX_PARTS = 1_000_000  # go to the data plane


def refuse_others_common(data: DataPlane, session_id: str | None, owner: str) -> None:
    """Refuse to submit ``session_id`` for ``owner`` when another user put common data under
    that id (``put_common`` records who did, before the data): it is not theirs to read."""
    if session_id:
        with contextlib.suppress(NotFound):
            if data.get(keys.session_common_owner(session_id)) != owner.encode():
                raise Conflict(f"session id {session_id} is already in use")


class SessionUploads:
    """The three steps of an upload, on a ``GridService``'s store, data plane and settings."""

    def __init__(self, service: GridService) -> None:
        self.service = service
        self.data = service.data
        self.store = service.store
        self._next_sweep = 0.0
        self._slot_hint: dict[int, int] = {}

    # ---- common data --------------------------------------------------------------------

    def put_common(self, session_id: str, blob: bytes, owner: str) -> dict[str, Any]:
        """Store a session's common data (``htcgrid.common_data.encode``), before its submit.
        Once set it never changes: the same blob again is a no-op, another is a Conflict."""
        if not SESSION_ID_PATTERN.fullmatch(session_id):
            raise ValidationError("session_id must be 1-64 letters, digits or '-'")
        limit = self.service.settings.max_payload_bytes
        if len(blob) > limit:
            raise PayloadTooLarge(f"common data is {len(blob)} bytes; the limit is {limit}")
        if blob[:1] not in (b"b", b"j"):
            raise ValidationError("common data must be encoded by htcgrid.common_data")
        found = self.store.get_session(session_id)
        if found is not None and found.spec.owner != owner:
            raise Conflict(f"session id {session_id} is already in use")
        claim = keys.session_common_owner(session_id)  # before the blob: no one else's to read
        if (
            not self.data.put_if_absent(claim, owner.encode())
            and self.data.get(claim) != owner.encode()
        ):
            raise Conflict(f"session id {session_id} is already in use")
        key = keys.session_common(session_id)
        if not self.data.put_if_absent(key, blob) and self.data.get(key) != blob:
            raise Conflict(f"session {session_id} has other common data already")
        return {"session_id": session_id, "bytes": len(blob)}

    # ---- the three steps ------------------------------------------------------------------

    def stage_payload(
        self, session_id: str, index: int, payload: bytes, owner: str
    ) -> dict[str, Any]:
        """Upload task ``index``'s payload (its JSON). Returns its ``bytes`` and ``sha256``."""
        self._payload_json(self._index(index), payload)
        committed = self._begin(session_id, owner)
        if not committed:  # a re-submit never touches a live session's data
            self.data.put(keys.task_input(session_id, index), payload)
        record = {"bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
        self.data.put(keys.upload_digest(session_id, index), json_dumps(record))
        return {"index": index, **record}

    def stage_part(self, session_id: str, part: int, tasks: Sequence[Any], owner: str) -> int:
        """Record part ``part`` of the task list: ``{"index", "priority"?, "payload"}`` or
        ``{"index", "priority"?, "staged": true}`` each (no payload: null). Returns how many
        tasks it holds. What a commit then finds missing or twice is a Conflict (409)."""
        int_in("part", part, 0, MAX_PARTS)
        if not isinstance(tasks, list | tuple) or not tasks:
            raise ValidationError("a part needs a non-empty list of tasks")
        rows = [self._row(entry) for entry in tasks]
        committed = self._begin(session_id, owner)
        for row in rows:  # a payload over the inline limit goes where its task will read it
            payload = row[2]
            if payload is not None and len(payload) > self.service.settings.inline_limit_bytes:
                ref = None  # where it was put (the task's own key unless the plane packs it)
                if not committed:
                    ref = self.data.put_ref(keys.task_input(session_id, row[0]), payload)
                row[2:4] = [ref, hashlib.sha256(payload).hexdigest()]
            elif payload is not None:
                row[2] = payload.decode()
        self.data.put(keys.upload_part(session_id, part), json_dumps(rows))
        return len(rows)

    def commit(
        self, request: SubmitRequest, task_count: int, parts: int, owner: str
    ) -> SubmitResult:
        """Create the session from its parts, all or nothing; the upload is then removed."""
        from htcgrid.service import SubmitResult, content_hash

        if not request.session_id:
            raise ValidationError("a commit needs the session_id its parts were uploaded to")
        self.service.check_task_count(int_in("task_count", task_count, 0, 2**63 - 1))
        int_in("parts", parts, 1, MAX_PARTS)
        session_id = request.session_id
        existing = self.store.get_session(session_id)
        if existing is not None and existing.spec.owner != owner:
            raise Conflict(f"session id {session_id} is already in use")
        started = self._started(session_id, owner)
        if started is None:
            if existing is not None:  # this commit was done already; its answer got lost
                return SubmitResult(session_id, existing.spec.task_count, False)
            raise NotFound(f"no upload of session {session_id}: upload its parts first")
        if self._expired(started, self.service.clock()):
            raise Conflict(f"the upload of session {session_id} expired; submit it again")
        spec = self.service.spec(request, owner, task_count)
        deps = GraphBuilder(spec.id, task_count)
        hashed = content_hash(spec, self._digests(spec, parts, deps))
        graph = check_graph(self.store, None if deps.empty else deps.build(), owner)
        spec = replace(spec, content_hash=with_graph(hashed, graph))
        tasks = PartedTasks(self, spec, parts, offload=existing is None, graph=graph)
        answer = self.service.create(spec, tasks, graph, existing is None)
        self.data.delete_prefix(keys.upload_prefix(spec.id))
        return answer

    # ---- helpers ---------------------------------------------------------------------------

    def _index(self, index: Any) -> int:
        return int_in("index", index, 0, self.service.settings.max_tasks_per_submit - 1)

    def _row(self, entry: Any) -> list[Any]:
        """One task of a part as stored: ``[index, priority or None, payload text or None,
        sha256 of a payload put in the data plane or None]``; both None: staged on its own.
        With a sha256, the third entry is where the payload was put (``put_ref``), or None
        for the task's own key. A task with dependencies has a fifth entry, its ``deps`` as
        given (checked at commit, when the session's size is known)."""
        if not isinstance(entry, dict) or "index" not in entry:
            raise ValidationError("each task of a part is {index, priority?, payload | staged}")
        index = self._index(entry["index"])
        priority = entry.get("priority")
        if priority is not None:
            int_in("priority", priority, MIN_PRIORITY, MAX_PRIORITY)
        deps = [entry["deps"]] if entry.get("deps") is not None else []
        if entry.get("staged") is True:
            return [index, priority, None, None, *deps]
        if "payload_json" in entry:  # a framed part's payload, as its JSON: checked, not re-made
            return [index, priority, self._payload_json(index, entry["payload_json"]), None, *deps]
        return [index, priority, self.service.encode(index, entry.get("payload")), None, *deps]

    def _payload_json(self, index: int, payload: Any) -> bytes:
        """A payload sent as its JSON (uploaded on its own, or framed in a part), checked."""
        if not isinstance(payload, bytes):
            raise ValidationError(f"task {index}'s payload must be its JSON, as bytes")
        _check_json(index, self.service.within_limit(index, payload))
        return payload

    def _begin(self, session_id: str, owner: str) -> bool:
        """Claim the upload of ``session_id`` for ``owner`` (or find it theirs already);
        returns whether the session is committed already."""
        existing = self.store.get_session(session_id)
        if existing is not None and existing.spec.owner != owner:
            raise Conflict(f"session id {session_id} is already in use")
        now = self.service.clock()
        started = self._started(session_id, owner)  # a read first: most calls find it begun
        if started is not None and self._expired(started, now):
            self._discard(session_id)  # the owner submits it again: start afresh
            started = None
        if started is None:
            claim = json_dumps({"owner": owner, "started_at": now})
            if self.data.put_if_absent(keys.upload_owner(session_id), claim):
                self._register(session_id, now)
                self._sweep_now_and_then(now)
                return existing is not None
            self._started(session_id, owner)  # someone else's, or ours from a racing call
        return existing is not None

    def _expired(self, started: float, now: float, grace: float = 0.0) -> bool:
        return started + self.service.settings.upload_expiry_seconds + grace < now

    def _discard(self, session_id: str) -> None:
        """Remove an upload, and its payloads unless its session is committed."""
        if self.store.get_session(session_id) is None:
            self.data.delete_prefix(keys.session_prefix(session_id))
        self.data.delete_prefix(keys.upload_prefix(session_id))

    def _started(self, session_id: str, owner: str) -> float | None:
        """When ``owner`` began uploading ``session_id``; None if no upload is under way."""
        try:
            claim = json.loads(self.data.get(keys.upload_owner(session_id)))
        except NotFound:
            return None
        if claim["owner"] != owner:
            raise Conflict(f"session id {session_id} is being uploaded by someone else")
        return float(claim["started_at"])

    def _rows(self, session_id: str, part: int) -> list[list[Any]]:
        try:
            return json.loads(self.data.get(keys.upload_part(session_id, part)))  # type: ignore[no-any-return]
        except NotFound:
            raise Conflict(f"part {part} of session {session_id} was not uploaded") from None

    def _digests(
        self, spec: SessionSpec, parts: int, deps: GraphBuilder
    ) -> Iterator[tuple[int, bytes]]:
        """Every task's (priority, digest) in index order, checking each index comes once.
        One part is read at a time; tasks that come before their turn wait in ``early``,
        which stays empty when the parts are in index order (as ``htcgrid.client`` sends
        them), so a session of any size is hashed in bounded memory. Each task's
        dependencies go to ``deps``."""
        early: dict[int, tuple[int, bytes]] = {}
        turn = 0
        for part in range(parts):
            for row in self._rows(spec.id, part):
                index, priority, text, sha256 = row[:4]
                if not turn <= index < spec.task_count or index in early:
                    raise Conflict(f"task {index} is out of range or given twice")
                if len(row) > 4:
                    deps.add(index, row[4])
                priority = spec.priority if priority is None else priority
                if sha256 is not None:
                    digest = bytes.fromhex(sha256)
                elif text is None:
                    digest = self._staged_digest(spec.id, index)
                else:
                    digest = hashlib.sha256(text.encode()).digest()
                if index != turn:
                    early[index] = (priority, digest)
                    continue
                yield priority, digest
                turn += 1
                while turn in early:
                    yield early.pop(turn)
                    turn += 1
        if turn < spec.task_count:
            raise Conflict(f"task(s) missing from the parts, first {turn}")

    def _staged_digest(self, session_id: str, index: int) -> bytes:
        try:
            record = json.loads(self.data.get(keys.upload_digest(session_id, index)))
        except NotFound:
            raise Conflict(f"the payload of task {index} was not uploaded") from None
        return bytes.fromhex(record["sha256"])

    # ---- expiry ----------------------------------------------------------------------------

    def _register(self, session_id: str, now: float) -> None:
        bucket = int(now // BUCKET_SECONDS)
        self.data.put_if_absent(keys.upload_swept(), str(bucket - 1).encode())
        slot = self._slot_hint.get(bucket, 0)
        while not self.data.put_if_absent(keys.upload_expiry(bucket, slot), session_id.encode()):
            slot += 1
        self._slot_hint = {bucket: slot + 1}

    def _sweep_now_and_then(self, now: float) -> None:
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_EVERY_SECONDS
            self.sweep(now)

    def sweep(self, now: float) -> int:
        """Remove the uploads that expired (and their payloads, unless committed); returns
        how many. Safe to run anywhere, any number of times."""
        try:
            swept = int(self.data.get(keys.upload_swept()))
        except NotFound:
            return 0
        horizon = now - self.service.settings.upload_expiry_seconds - SWEEP_GRACE_SECONDS
        removed = 0
        bucket = swept + 1
        while (bucket + 1) * BUCKET_SECONDS <= horizon:
            removed += self._sweep_bucket(bucket, now)
            self.data.put(keys.upload_swept(), str(bucket).encode())
            bucket += 1
        return removed

    def _sweep_bucket(self, bucket: int, now: float) -> int:
        removed = 0
        slot = 0
        while True:
            try:
                session_id = self.data.get(keys.upload_expiry(bucket, slot)).decode()
            except NotFound:
                break
            try:
                started = float(
                    json.loads(self.data.get(keys.upload_owner(session_id)))["started_at"]
                )
            except NotFound:
                started = None  # committed, or discarded already
            if started is None or self._expired(started, now, SWEEP_GRACE_SECONDS):
                self._discard(session_id)  # not a newer upload of the same session id
                removed += started is not None
            slot += 1
        self.data.delete_prefix(keys.upload_expiry_bucket(bucket))
        return removed


class PartedTasks(Sequence[NewTask]):
    """The tasks of an upload's parts (checked by ``SessionUploads._digests`` first), read
    one part at a time whenever the store goes through them: a store that streams its insert
    (SQLite, PostgreSQL) never holds the session's tasks at once. Inline payloads beyond
    ``INLINE_BUDGET_BYTES`` of them go to the data plane, for a store that holds them all."""

    def __init__(
        self,
        uploads: SessionUploads,
        spec: SessionSpec,
        parts: int,
        offload: bool,
        graph: Graph | None = None,
    ):
        self.uploads = uploads
        self.spec = spec
        self.parts = parts
        self.offload = offload
        self.graph = graph

    def __len__(self) -> int:
        return self.spec.task_count

    def __iter__(self) -> Iterator[NewTask]:
        spec, inline, graph = self.spec, 0, self.graph
        for part in range(self.parts):
            for row in self.uploads._rows(spec.id, part):
                index, priority, text, sha256 = row[:4]
                priority = spec.priority if priority is None else priority
                held = graph is not None and graph.has_deps(index)
                key = keys.task_input(spec.id, index)
                if sha256 is not None or text is None:
                    ref = text if sha256 is not None and text is not None else key
                    yield NewTask(index, priority, payload_ref=ref, held=held)
                    continue
                payload = text.encode()
                inline += len(payload)
                if self.offload and inline > INLINE_BUDGET_BYTES:
                    self.uploads.data.put(key, payload)
                    yield NewTask(index, priority, payload_ref=key, held=held)
                else:
                    yield NewTask(index, priority, payload, held=held)

    def __getitem__(self, at: Any) -> Any:  # a Sequence's; stores go through it in order
        tasks = sorted(self, key=lambda t: t.index)
        return tasks[at]


def _check_json(index: int, payload: bytes) -> None:
    try:
        json_loads(payload)
    except (ValueError, RecursionError) as exc:
        raise ValidationError(f"task {index} is not valid JSON: {exc}") from None
