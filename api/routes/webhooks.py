"""/v1/webhooks: a team's webhook endpoints and their delivery log."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from api.deps import CurrentTeam, SessionDep, SettingsDep
from api.schemas import DeletedObject, ListPage
from api.services import webhooks as service
from db.models import WebhookDelivery, WebhookEndpoint

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2048, description="http(s) URL that receives the signed POSTs.")
    events: list[str] | None = Field(default=None, description="Event types to send; default all.")


class WebhookPublic(BaseModel):
    id: str
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    url: str
    events: list[str]
    created_at: int
    secret: str | None = Field(default=None, description="Signing secret; shown only when created.")


class WebhookDeliveryPublic(BaseModel):
    id: str = Field(description="The `webhook-id` header; the same on every retry.")
    object: Literal["webhook_delivery"] = "webhook_delivery"
    event_id: str
    type: str
    status: Literal["pending", "succeeded", "failed"]
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: int
    next_attempt_at: int | None
    delivered_at: int | None


def _endpoint(e: WebhookEndpoint, *, with_secret: bool = False) -> WebhookPublic:
    return WebhookPublic(
        id=e.id,
        url=e.url,
        events=list(e.events),
        created_at=int(e.created_at.timestamp()),
        secret=e.secret if with_secret else None,
    )


def _delivery(d: WebhookDelivery) -> WebhookDeliveryPublic:
    return WebhookDeliveryPublic(
        id=d.id,
        event_id=d.event_id,
        type=d.event_type,
        status=d.status,
        attempts=d.attempts,
        last_status_code=d.last_status_code,
        last_error=d.last_error,
        created_at=int(d.created_at.timestamp()),
        next_attempt_at=int(d.next_attempt_at.timestamp()) if d.status == "pending" else None,
        delivered_at=int(d.delivered_at.timestamp()) if d.delivered_at else None,
    )


@router.post("", response_model=WebhookPublic)
def create_webhook(
    body: WebhookCreate, session: SessionDep, settings: SettingsDep, team: CurrentTeam
) -> WebhookPublic:
    endpoint = service.create_endpoint(session, settings, team, body.url, body.events)
    session.commit()
    return _endpoint(endpoint, with_secret=True)


@router.get("", response_model=ListPage[WebhookPublic])
def list_webhooks(session: SessionDep, team: CurrentTeam) -> ListPage[WebhookPublic]:
    return ListPage(data=[_endpoint(e) for e in service.list_endpoints(session, team)])


@router.get("/{webhook_id}", response_model=WebhookPublic)
def get_webhook(webhook_id: str, session: SessionDep, team: CurrentTeam) -> WebhookPublic:
    return _endpoint(service.get_endpoint(session, team, webhook_id))


@router.delete("/{webhook_id}", response_model=DeletedObject)
def delete_webhook(webhook_id: str, session: SessionDep, team: CurrentTeam) -> DeletedObject:
    service.delete_endpoint(session, team, webhook_id)
    session.commit()
    return DeletedObject(id=webhook_id, object="webhook_endpoint")


@router.get("/{webhook_id}/deliveries", response_model=ListPage[WebhookDeliveryPublic])
def list_deliveries(
    webhook_id: str, session: SessionDep, team: CurrentTeam, limit: int = Query(default=100, ge=1, le=1000)
) -> ListPage[WebhookDeliveryPublic]:
    return ListPage(data=[_delivery(d) for d in service.list_deliveries(session, team, webhook_id, limit)])
