"""Orthanc-style ``/jobs`` routes: list, inspect and cancel background jobs."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.web.iweb import IRequest

from dwdaemon.jobs import ReadyEngine
from dwdaemon.web.context import Context
from dwdaemon.web.errors import ApiError
from dwdaemon.web.query import flag
from dwdaemon.web.responses import json_body


def engine_for(ctx: Context) -> ReadyEngine:
    """The daemon's job engine (built by :func:`dwdaemon.tap.build_site`)."""
    if ctx.jobs is None:
        raise RuntimeError("the job engine is built by dwdaemon.tap.build_site")
    return ctx.jobs


def install(app: Any, ctx: Context) -> None:
    """Register ``/jobs``, ``/jobs/{id}`` and ``/jobs/{id}/cancel``."""
    ready = engine_for(ctx)

    @ctx.route("/jobs", methods=["GET"], endpoint="jobs.list")
    @inlineCallbacks
    def list_jobs(request: IRequest) -> Any:
        engine = yield ready.ready()
        jobs = yield engine.refresh_all()
        if flag(request, "expand"):
            return json_body(request, [job.to_json() for job in jobs])
        return json_body(request, [job.id for job in jobs])

    @ctx.route("/jobs/<string:job_id>", methods=["GET"], endpoint="jobs.get")
    @inlineCallbacks
    def get_job(request: IRequest, job_id: str) -> Any:
        engine = yield ready.ready()
        job = yield engine.lookup(job_id)
        if job is None:
            raise ApiError(404, f"unknown job {job_id!r}")
        return json_body(request, job.to_json())

    @ctx.route("/jobs/<string:job_id>/cancel", methods=["POST"], endpoint="jobs.cancel")
    @inlineCallbacks
    def cancel_job(request: IRequest, job_id: str) -> Any:
        engine = yield ready.ready()
        job = yield engine.lookup(job_id)
        if job is None:
            raise ApiError(404, f"unknown job {job_id!r}")
        if job.owner != engine.owner and job.state not in ("Success", "Failure"):
            raise ApiError(409, f"job {job_id} runs on another daemon ({job.owner})")
        if not engine.cancel(job_id):
            raise ApiError(400, f"job {job_id} is already finished ({job.state})")
        return json_body(request, {})
