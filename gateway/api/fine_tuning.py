"""OpenAI's fine-tuning jobs API (``/v1/fine_tuning/jobs``), scoped to the caller's tenant.

Routes stay thin: each calls one ``gateway.finetune`` operation. Another tenant's job is
answered 404, like one that does not exist, so job ids reveal nothing.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from gateway import errors
from gateway.api.deps import KeyFirstRoute, TenantDep
from gateway.api.protocol import ErrorResponse
from gateway.finetune.requests import JobRequest
from gateway.finetune.service import FineTuning, owner_of

ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 409, 413, 429, 503)}
router = APIRouter(
    prefix="/v1/fine_tuning", tags=["fine-tuning"], responses=ERRORS, route_class=KeyFirstRoute
)


def _fine_tuning(request: Request) -> FineTuning:
    found: FineTuning | None = getattr(request.app.state, "finetune", None)
    if found is None:
        raise errors.FineTuningDisabled(
            "fine-tuning is off on this gateway", hint="the operator sets finetune_dir to enable it"
        )
    return found


FineTuningDep = Annotated[FineTuning, Depends(_fine_tuning)]
After = Annotated[str | None, Query(max_length=64)]


@router.post("/jobs")
async def create_job(body: JobRequest, tenant: TenantDep, ft: FineTuningDep) -> dict[str, Any]:
    return ft.create_job(tenant, body)


@router.get("/jobs")
async def list_jobs(
    tenant: TenantDep,
    ft: FineTuningDep,
    after: After = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, Any]:
    return ft.jobs.listing(owner_of(tenant), after, limit)


@router.get("/jobs/{job_id}")
async def get_job(job_id: str, tenant: TenantDep, ft: FineTuningDep) -> dict[str, Any]:
    return ft.jobs.get(owner_of(tenant), job_id)


@router.post("/jobs/{job_id}/cancel")
async def cancel_job(job_id: str, tenant: TenantDep, ft: FineTuningDep) -> dict[str, Any]:
    return await ft.cancel(owner_of(tenant), job_id)


@router.get("/jobs/{job_id}/events")
async def list_events(
    job_id: str,
    tenant: TenantDep,
    ft: FineTuningDep,
    after: After = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> dict[str, Any]:
    return ft.events(owner_of(tenant), job_id, after, limit)


@router.get("/jobs/{job_id}/checkpoints")
async def list_checkpoints(
    job_id: str,
    tenant: TenantDep,
    ft: FineTuningDep,
    after: After = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> dict[str, Any]:
    return ft.checkpoints(owner_of(tenant), job_id, after, limit)
