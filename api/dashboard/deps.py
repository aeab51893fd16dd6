"""Dashboard dependencies: the cookie session, CSRF checks and the template renderer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Form, Request
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException
from starlette.responses import Response

from api import ratelimit
from api.dashboard import format as fmt
from api.dashboard.session import COOKIE, DashboardSession, csrf_ok, read_token
from api.deps import SessionDep, SettingsDep
from core.settings import Settings

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters.update(
    when=fmt.when, size=fmt.size, duration=fmt.duration, number=fmt.number, eta=fmt.eta
)


class LoginRequired(HTTPException):
    """Raised by page routes without a session; the app's handler turns it into a redirect."""

    def __init__(self, next_url: str) -> None:
        super().__init__(303, "sign in first", headers={"Location": f"/login?next={next_url}"})


def _signed_in(request: Request, session: SessionDep, settings: SettingsDep) -> DashboardSession:
    found = read_token(session, settings, request.cookies.get(COOKIE))
    if found is None:
        if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
            raise LoginRequired(request.url.path)
        raise HTTPException(401, "sign in first")
    return found


Browser = Annotated[DashboardSession, Depends(_signed_in)]


def same_origin(request: Request) -> None:
    """Refuse a request a browser marks as sent from another site (Origin, or Sec-Fetch-Site)."""
    # Belt and braces next to SameSite=Lax and the CSRF token; for POST /login it is the CSRF defence.
    origin = request.headers.get("origin")
    if origin and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise HTTPException(403, "cross-site request refused")
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        raise HTTPException(403, "cross-site request refused")


def _writer(request: Request, browser: DashboardSession, token: str | None, settings: Settings) -> DashboardSession:
    same_origin(request)
    if not csrf_ok(browser.csrf, token):
        raise HTTPException(403, "missing or stale CSRF token; reload the page")
    # The API's limiter and the same bucket as the signed-in key: the dashboard is no way around it.
    ratelimit.check_write(settings, browser.key_hash[:32])
    return browser


def _csrf_form(
    request: Request, browser: Browser, settings: SettingsDep, csrf_token: Annotated[str, Form()] = ""
) -> DashboardSession:
    return _writer(request, browser, csrf_token or request.headers.get("x-csrf-token"), settings)


def _csrf_header(request: Request, browser: Browser, settings: SettingsDep) -> DashboardSession:
    return _writer(request, browser, request.headers.get("x-csrf-token"), settings)


# Form posts carry the token in a hidden field; fetch() calls send it as X-CSRF-Token.
FormWriter = Annotated[DashboardSession, Depends(_csrf_form)]
FetchWriter = Annotated[DashboardSession, Depends(_csrf_header)]


def render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> Response:
    """A page; every page gets the session (for the nav and the CSRF token) when there is one."""
    return templates.TemplateResponse(request, name, context, status_code=status_code)
