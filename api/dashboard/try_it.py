"""The job page's "Try it" box: the same chat completions as /v1/chat/completions, for the signed-in browser."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from api.dashboard.deps import FetchWriter
from api.deps import SessionDep, SettingsDep
from api.schemas_inference import ChatCompletionCreate
from api.services import inference

router = APIRouter(include_in_schema=False)


@router.post("/try/chat/completions")
async def try_chat(
    body: ChatCompletionCreate, session: SessionDep, settings: SettingsDep, browser: FetchWriter
) -> Response:
    path, payload = "/v1/chat/completions", body.backend_body(body.model)
    return await inference.answer(session, settings, browser.team, body.model, path, payload, body.stream)
