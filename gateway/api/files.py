"""OpenAI's files API (``/v1/files``) for fine-tuning data, scoped to the caller's tenant.

The body's size is capped (``finetune_max_file_bytes``) before it is received; the upload
is then streamed to disk in a thread and read by the training readers in a child process
(``gateway.finetune.files``), so the event loop never holds or parses it. Another
tenant's file is answered 404.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import Response

from gateway.api.deps import KeyFirstRoute, TenantDep
from gateway.api.fine_tuning import ERRORS, After, FineTuningDep
from gateway.finetune.pages import page
from gateway.finetune.service import owner_of

router = APIRouter(prefix="/v1/files", tags=["fine-tuning"], responses=ERRORS,
                   route_class=KeyFirstRoute)  # fmt: skip


@router.post("")
async def upload(
    file: Annotated[UploadFile, File()],
    purpose: Annotated[str, Form(max_length=64)],
    tenant: TenantDep,
    ft: FineTuningDep,
) -> dict[str, Any]:
    name = file.filename or "upload.jsonl"
    return await asyncio.to_thread(ft.upload, tenant, name, purpose, file.file)


@router.get("")
async def list_files(
    tenant: TenantDep,
    ft: FineTuningDep,
    after: After = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 10_000,
    order: Literal["asc", "desc"] = "desc",
    purpose: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    if purpose not in (None, "fine-tune"):  # the only purpose kept here
        return page([], None, limit)
    return ft.files.listing(owner_of(tenant), after, limit, order)


@router.get("/{file_id}")
async def get_file(file_id: str, tenant: TenantDep, ft: FineTuningDep) -> dict[str, Any]:
    return ft.files.get(owner_of(tenant), file_id)


@router.delete("/{file_id}")
async def delete_file(file_id: str, tenant: TenantDep, ft: FineTuningDep) -> dict[str, Any]:
    return await asyncio.to_thread(ft.delete_file, tenant, file_id)


@router.get("/{file_id}/content", response_class=Response)
async def file_content(file_id: str, tenant: TenantDep, ft: FineTuningDep) -> Response:
    content = ft.files.content(owner_of(tenant), file_id)
    return Response(content, media_type="application/octet-stream")
