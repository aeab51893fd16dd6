"""/v1/chat/completions and /v1/completions: OpenAI's shapes, proxied to a serving backend of the model's base."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from api.deps import CurrentTeam, SessionDep, SettingsDep
from api.schemas_inference import ChatCompletionCreate, CompletionCreate
from api.services import inference as service

router = APIRouter(prefix="/v1", tags=["inference"])


@router.post("/chat/completions")
async def create_chat_completion(
    body: ChatCompletionCreate, session: SessionDep, settings: SettingsDep, team: CurrentTeam
) -> Response:
    path, payload = "/v1/chat/completions", body.backend_body(body.model)
    return await service.answer(session, settings, team, body.model, path, payload, body.stream)


@router.post("/completions")
async def create_completion(
    body: CompletionCreate, session: SessionDep, settings: SettingsDep, team: CurrentTeam
) -> Response:
    path, payload = "/v1/completions", body.backend_body(body.model)
    return await service.answer(session, settings, team, body.model, path, payload, body.stream)
