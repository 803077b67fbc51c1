"""Orthanc-style ``/jobs`` routes: list, inspect and cancel background jobs."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.web.iweb import IRequest

from dwdaemon.config import Config
from dwdaemon.jobs import ReadyEngine
from dwdaemon.web.errors import ApiError
from dwdaemon.web.query import flag
from dwdaemon.web.responses import json_body
from dwdaemon.web.routing import RouteGroup


class Jobs(RouteGroup):
    """``/jobs``, ``/jobs/{id}`` and ``/jobs/{id}/cancel``."""

    def __init__(self, config: Config, jobs: ReadyEngine) -> None:
        super().__init__(config)
        self.jobs = jobs
        self.route("/jobs", ["GET"], self.list_jobs, endpoint="jobs.list")
        self.route("/jobs/<string:job_id>", ["GET"], self.get_job, endpoint="jobs.get")
        self.route("/jobs/<string:job_id>/cancel", ["POST"], self.cancel_job,
                   endpoint="jobs.cancel")

    @inlineCallbacks
    def list_jobs(self, request: IRequest) -> Any:
        engine = yield self.jobs.ready()
        jobs = yield engine.refresh_all()
        if flag(request, "expand"):
            return json_body(request, [job.to_json() for job in jobs])
        return json_body(request, [job.id for job in jobs])

    @inlineCallbacks
    def get_job(self, request: IRequest, job_id: str) -> Any:
        engine = yield self.jobs.ready()
        job = yield engine.lookup(job_id)
        if job is None:
            raise ApiError(404, f"unknown job {job_id!r}")
        return json_body(request, job.to_json())

    @inlineCallbacks
    def cancel_job(self, request: IRequest, job_id: str) -> Any:
        engine = yield self.jobs.ready()
        job = yield engine.lookup(job_id)
        if job is None:
            raise ApiError(404, f"unknown job {job_id!r}")
        if job.owner != engine.owner and job.state not in ("Success", "Failure"):
            if not engine.reaches(job.owner):
                raise ApiError(409, f"job {job_id} runs on another daemon ({job.owner})")
            yield engine.request_cancel(job_id)  # another worker process runs it
            return json_body(request, {})
        if not engine.cancel(job_id):
            raise ApiError(400, f"job {job_id} is already finished ({job.state})")
        return json_body(request, {})
