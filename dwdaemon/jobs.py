"""The job engine: long operations (remote STOW, retrieve) run in the background.

A job has a ``State`` (Pending, Running, Success, Failure), a ``Progress``
(0-100), an ``ErrorDescription``, its request (``Content``) and its
``Result``.  Jobs are kept in the index (table ``dw_jobs``): each state change,
and progress at most every :data:`SAVE_INTERVAL` seconds, is written in the
``db_write`` pool.  At start-up a job found Pending or Running was interrupted
by a stop of the daemon: it is marked Failure ("interrupted by a restart of
the daemon"), its partial result (instances already stored) kept.
"""

from __future__ import annotations

import itertools
import json
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from dwdaemon.config import Config
from dwdaemon.store.index.base import Index
from dwdaemon.store.index.sql import now_text

log = Logger()

PENDING, RUNNING, SUCCESS, FAILURE = "Pending", "Running", "Success", "Failure"
#: Minimum delay between two progress writes of one job (seconds).
SAVE_INTERVAL = 0.5
#: Finished jobs kept in the index.
KEEP_FINISHED = 500
#: Jobs running at once (Orthanc's ``ConcurrentJobs`` default).
CONCURRENT_JOBS = 2

#: Seconds between two looks for cancel requests of sibling processes (worker processes).
CANCEL_POLL = 0.25
#: Property of the index asking the owner of a job to cancel it (``cancel-job:<id>``).
CANCEL_PROPERTY = "cancel-job:"

INTERRUPTED = "interrupted by a restart of the daemon"
CANCELLED = "cancelled by a user request"


@dataclass
class Job:
    """One job and what is shown of it."""

    id: str
    type: str
    content: dict[str, Any]
    state: str = PENDING
    progress: int = 0
    error: str | None = None
    result: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=now_text)
    completed: str | None = None
    seq: int = 0
    #: The daemon running the job (several daemons may share one index).
    owner: str = ""
    started_at: float | None = None
    finished_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The Orthanc-style description of ``GET /jobs/{id}``."""
        runtime = 0.0
        if self.started_at is not None:
            runtime = (self.finished_at or time.time()) - self.started_at
        return {
            "ID": self.id,
            "Type": self.type,
            "State": self.state,
            "Progress": self.progress,
            "ErrorCode": 0 if self.error is None else 1,
            "ErrorDescription": "Success" if self.state == SUCCESS else (self.error or ""),
            "Content": self.content,
            "Result": self.result,
            "CreationTime": self.created,
            "CompletionTime": self.completed,
            "EffectiveRuntime": round(runtime, 3),
            "Priority": 0,
            "Owner": self.owner,
            "Timestamp": now_text(),
        }

    def row(self) -> tuple[Any, ...]:
        return (
            self.id, self.type, self.state, self.progress, self.error,
            json.dumps(self.content), json.dumps(self.result), self.created,
            self.completed, self.seq, self.owner,
        )

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Job:
        return cls(
            id=row[0], type=row[1], state=row[2], progress=int(row[3]), error=row[4],
            content=json.loads(row[5]), result=json.loads(row[6]), created=row[7],
            completed=row[8], seq=int(row[9]), owner=row[10] or "",
        )


class JobHandle:
    """What a running job's code uses to report progress and partial results."""

    def __init__(self, engine: JobEngine, job: Job) -> None:
        self._engine = engine
        self.job = job

    def progress(self, done: int, total: int, result: dict[str, Any] | None = None) -> None:
        """Report ``done`` of ``total`` units (and the result so far)."""
        pct = 100 if total <= 0 else max(0, min(99, int(100 * done / total)))
        self.job.progress = max(self.job.progress, pct)
        if result is not None:
            self.job.result = result
        self._engine.save_soon(self.job)


Runner = Callable[[JobHandle], Deferred]


class JobEngine:
    """Runs, tracks and persists jobs."""

    def __init__(self, index: Index, pools: Any, reactor: Any = None,
                 concurrency: int = CONCURRENT_JOBS, owner: str = "") -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.index = index
        self.pools = pools
        self.reactor = reactor
        self.concurrency = concurrency
        self.owner = owner
        self.jobs: dict[str, Job] = {}
        self._queue: list[tuple[Job, Runner]] = []
        self._running: dict[str, Deferred] = {}
        self._seq = itertools.count(1)
        self._save_calls: dict[str, Any] = {}
        self._last_save: dict[str, float] = {}
        self._writes: Deferred = succeed(None)
        self._stopping = False
        self._waiters: dict[str, list[Deferred]] = {}
        #: Owners starting with this are sibling worker processes sharing the index: their jobs
        #: are cancelled through the index (None: a single process, no polling).
        self.siblings: str | None = None
        self._cancel_poll: Any = None

    # -- life cycle -----------------------------------------------------------------------

    def load(self) -> Deferred:
        """Load known jobs, fail those a stop of this daemon interrupted
        (jobs of other daemons sharing the index are left to them)."""

        def blocking() -> list[Job]:
            jobs = [Job.from_row(r) for r in self.index.jobs()]
            for job in jobs:
                if job.state in (PENDING, RUNNING) and job.owner == self.owner:
                    job.state = FAILURE
                    job.error = INTERRUPTED
                    job.completed = now_text()
                    self.index.save_job(job.row())
            return jobs

        def loaded(jobs: list[Job]) -> None:
            for job in jobs:
                self.jobs[job.id] = job
            last = max((j.seq for j in jobs), default=0)
            self._seq = itertools.count(last + 1)
            interrupted = [j.id for j in jobs if j.error == INTERRUPTED]
            if interrupted:
                log.warn("jobs interrupted by the last stop, marked failed: {ids}",
                         ids=interrupted)

        return self.pools.db_write(blocking).addCallback(loaded)

    def stop(self) -> Deferred:
        """Stop: running jobs are cancelled in memory but stay Running in the index, so
        that the next start shows them as interrupted (failed)."""
        self._stopping = True
        for call in self._save_calls.values():
            if call.active():
                call.cancel()
        self._save_calls.clear()
        writes = self._writes
        for d in list(self._running.values()):
            d.cancel()
        return writes

    # -- API ------------------------------------------------------------------------------

    def submit(self, job_type: str, content: dict[str, Any], runner: Runner) -> Job:
        """Queue a job; ``runner(handle)`` returns a Deferred firing with the result dict."""
        job = Job(id=str(uuid.uuid4()), type=job_type, content=content, seq=next(self._seq),
                  owner=self.owner)
        self.jobs[job.id] = job
        self._save(job)
        self._queue.append((job, runner))
        self._pump()
        return job

    def wait(self, job: Job) -> Deferred:
        """A Deferred firing with ``job`` once it is finished (Success or Failure)."""
        if job.state in (SUCCESS, FAILURE):
            return succeed(job)
        d: Deferred = Deferred()
        self._waiters.setdefault(job.id, []).append(d)
        return d

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def list(self) -> list[Job]:
        return sorted(self.jobs.values(), key=lambda j: j.seq)

    def lookup(self, job_id: str) -> Deferred:
        """A job as it is now: this daemon's from memory, another daemon's from the index."""
        job = self.jobs.get(job_id)
        if job is not None and job.owner == self.owner:
            return succeed(job)

        def fetch() -> Job | None:
            row = self.index.job(job_id)
            return Job.from_row(row) if row is not None else None

        def got(found: Job | None) -> Job | None:
            if found is not None:
                self.jobs[found.id] = found
            return found

        return self.pools.db_read(fetch).addCallback(got)

    def refresh_all(self) -> Deferred:
        """Every job, the other daemons' ones re-read from the index."""

        def fetch() -> list[Job]:
            return [Job.from_row(r) for r in self.index.jobs()]

        def got(rows: list[Job]) -> list[Job]:
            for found in rows:
                if found.owner != self.owner or found.id not in self.jobs:
                    self.jobs[found.id] = found
            return self.list()

        return self.pools.db_read(fetch).addCallback(got)

    def cancel(self, job_id: str) -> bool:
        """Cancel a pending or running job of this daemon; False if unknown or finished."""
        job = self.jobs.get(job_id)
        if job is None or job.state in (SUCCESS, FAILURE) or job.owner != self.owner:
            return False
        for i, (queued, _) in enumerate(self._queue):
            if queued.id == job_id:
                del self._queue[i]
                self._finish(job, Failure(CancelledError()))
                return True
        d = self._running.get(job_id)
        if d is not None:
            d.cancel()
        return True

    def reaches(self, owner: str) -> bool:
        """Whether this engine can cancel a job of ``owner`` (its own or a sibling's)."""
        return owner == self.owner or (self.siblings is not None
                                       and owner.startswith(self.siblings))

    def request_cancel(self, job_id: str, timeout: float = 10.0) -> Deferred:
        """Ask the sibling process running ``job_id`` to cancel it (through the index); fires
        once the job is finished, or after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout

        def finished(_: Any = None) -> Deferred:
            return self.pools.db_read(self.index.job, job_id).addCallback(check)

        def check(row: tuple[Any, ...] | None) -> Any:
            if row is None or Job.from_row(row).state in (SUCCESS, FAILURE):
                return None
            if time.monotonic() > deadline:
                return None
            d: Deferred = Deferred()
            self.reactor.callLater(CANCEL_POLL / 2, d.callback, None)
            return d.addCallback(finished)

        return self.pools.db_write(self.index.set_property, CANCEL_PROPERTY + job_id,
                                   self.owner).addCallback(finished)

    def _poll_cancels(self) -> None:
        """While jobs run or wait, look for cancel requests of sibling processes."""
        if self.siblings is None or self._stopping:
            return
        if self._cancel_poll is not None and self._cancel_poll.active():
            return
        self._cancel_poll = self.reactor.callLater(CANCEL_POLL, self._look_for_cancels)

    def _look_for_cancels(self) -> None:
        ids = [j.id for j, _ in self._queue] + list(self._running)
        if not ids or self._stopping:
            return

        def look() -> list[str]:
            wanted = [i for i in ids if self.index.get_property(CANCEL_PROPERTY + i)]
            for job_id in wanted:
                self.index.set_property(CANCEL_PROPERTY + job_id, None)
            return wanted

        def cancel(wanted: list[str]) -> None:
            for job_id in wanted:
                self.cancel(job_id)
            self._poll_cancels()

        def failed(f: Failure) -> None:
            log.failure("cannot read cancel requests", failure=f)
            self._poll_cancels()

        self.pools.db_write(look).addCallbacks(cancel, failed)

    # -- internals ------------------------------------------------------------------------

    def _pump(self) -> None:
        self._poll_cancels()
        while self._queue and len(self._running) < self.concurrency and not self._stopping:
            job, runner = self._queue.pop(0)
            self._start(job, runner)

    def _start(self, job: Job, runner: Runner) -> None:
        job.state = RUNNING
        job.started_at = time.time()
        self._save(job)
        handle = JobHandle(self, job)
        d = maybeDeferred(runner, handle)
        self._running[job.id] = d

        def done(result: Any) -> None:
            self._running.pop(job.id, None)
            self._finish(job, result)
            self._pump()

        d.addBoth(done)

    def _finish(self, job: Job, result: Any) -> None:
        job.finished_at = time.time()
        job.completed = now_text()
        if isinstance(result, Failure):
            job.state = FAILURE
            if result.check(CancelledError):
                job.error = CANCELLED
            else:
                job.error = str(result.value) or type(result.value).__name__
                log.warn("job {id} ({type}) failed: {error}", id=job.id, type=job.type,
                         error=job.error)
                if not hasattr(result.value, "outcome"):  # not a RemoteError: show the trace
                    log.failure("job {id} failure", failure=result, id=job.id)
            outcome = getattr(result.value, "outcome", None)
            if outcome is not None and hasattr(outcome, "to_json"):
                job.result = outcome.to_json()
        else:
            job.state = SUCCESS
            job.progress = 100
            if isinstance(result, dict):
                job.result = result
        self._save(job)
        for waiter in self._waiters.pop(job.id, []):
            waiter.callback(job)

    def save_soon(self, job: Job) -> None:
        """Persist a running job's progress, at most every ``SAVE_INTERVAL`` seconds (called
        by its :class:`JobHandle`)."""
        if self._stopping or job.id in self._save_calls:
            return
        wait = SAVE_INTERVAL - (time.monotonic() - self._last_save.get(job.id, 0.0))
        if wait <= 0:
            self._save(job)
            return

        def later() -> None:
            self._save_calls.pop(job.id, None)
            if job.state == RUNNING:
                self._save(job)

        self._save_calls[job.id] = self.reactor.callLater(wait, later)

    def _save(self, job: Job) -> None:
        if self._stopping:
            return  # after stop() the index keeps the last saved state
        call = self._save_calls.pop(job.id, None)
        if call is not None and call.active():
            call.cancel()
        self._last_save[job.id] = time.monotonic()
        row = job.row()
        finished = job.state in (SUCCESS, FAILURE)

        def write(_: Any) -> Deferred:
            d = self.pools.db_write(self.index.save_job, row)
            if finished and job.seq % 50 == 0:
                d.addCallback(
                    lambda _: self.pools.db_write(self.index.forget_old_jobs,
                                                  KEEP_FINISHED))
            return d

        def failed(f: Failure) -> None:
            log.failure("cannot save job {id}", failure=f, id=job.id)

        self._writes.addCallback(write)
        self._writes.addErrback(failed)


class JobsService(Service):
    """Loads the jobs at start-up (failing interrupted ones) and stops the engine."""

    def __init__(self, engine: ReadyEngine) -> None:
        self.engine = engine

    def startService(self) -> None:
        super().startService()
        self.engine.ready()

    def stopService(self) -> Deferred:
        super().stopService()
        return self.engine.engine.stop()


class ReadyEngine:
    """The job engine of a daemon, loaded from the index on first use."""

    def __init__(self, index: Index, pools: Any, reactor: Any, owner: str) -> None:
        self.engine = JobEngine(index, pools, reactor, owner=owner)
        self._loaded: Deferred | None = None
        self._done = False

    def ready(self) -> Deferred:
        """Fires once the jobs of the index are loaded."""
        if self._done:
            return succeed(self.engine)
        if self._loaded is None:
            self._loaded = self.engine.load()

            def loaded(_: Any) -> JobEngine:
                self._done = True
                return self.engine

            self._loaded.addCallback(loaded)
        waiting: Deferred = Deferred()
        self._loaded.addBoth(lambda r: (waiting.callback(r), r)[1])
        return waiting


def job_owner(config: Config) -> str:
    """The owner name of this daemon's jobs: ``host:Name:HttpPort``."""
    return f"{socket.gethostname()}:{config.name}:{config.http_port}"
