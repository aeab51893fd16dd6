"""Team webhook endpoints: registration rules and the delivery log."""

from __future__ import annotations

import base64
import secrets

from sqlalchemy.orm import Session

from core import netguard
from core.errors import InvalidRequest, NotFound
from core.ids import new_id
from core.settings import Settings
from db.models import Team, WebhookDelivery, WebhookEndpoint
from db.repositories import webhooks as repo

EVENT_TYPES = tuple(repo.JOB_EVENT_TYPES.values())
MAX_ENDPOINTS_PER_TEAM = 20


def new_secret() -> str:
    """`whsec_` + base64 of 32 random bytes: the Standard Webhooks secret format OpenAI's SDK verifies."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def create_endpoint(
    session: Session, settings: Settings, team: Team, url: str, events: list[str] | None
) -> WebhookEndpoint:
    """Register a URL for some (default: all) job-ending events; internal targets only where an admin allows."""
    chosen = list(dict.fromkeys(events)) if events else list(EVENT_TYPES)
    unknown = [e for e in chosen if e not in EVENT_TYPES]
    if unknown:
        raise InvalidRequest(f"unknown event {unknown[0]!r}; known: {', '.join(EVENT_TYPES)}", param="events")
    try:
        netguard.check(url, settings.webhook_allowed_host_list)
    except netguard.UnsafeUrl as exc:
        raise InvalidRequest(str(exc), param="url") from None
    if len(repo.list_endpoints(session, team.id)) >= MAX_ENDPOINTS_PER_TEAM:
        raise InvalidRequest(f"a team may register at most {MAX_ENDPOINTS_PER_TEAM} webhooks", param="url")
    return repo.add_endpoint(
        session, WebhookEndpoint(id=new_id("we"), team_id=team.id, url=url, secret=new_secret(), events=chosen)
    )


def get_endpoint(session: Session, team: Team, endpoint_id: str) -> WebhookEndpoint:
    endpoint = repo.get_endpoint(session, team.id, endpoint_id)
    if endpoint is None:
        raise NotFound(f"no webhook {endpoint_id!r}", param="webhook_id")
    return endpoint


def list_endpoints(session: Session, team: Team) -> list[WebhookEndpoint]:
    return repo.list_endpoints(session, team.id)


def delete_endpoint(session: Session, team: Team, endpoint_id: str) -> None:
    if not repo.delete_endpoint(session, team.id, endpoint_id):
        raise NotFound(f"no webhook {endpoint_id!r}", param="webhook_id")


def list_deliveries(session: Session, team: Team, endpoint_id: str, limit: int) -> list[WebhookDelivery]:
    """The endpoint's delivery log, newest first."""
    return repo.list_deliveries(session, get_endpoint(session, team, endpoint_id).id, limit)
