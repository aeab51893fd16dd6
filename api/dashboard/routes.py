"""Dashboard pages (server-rendered): sign-in, jobs list, job, new job, pool."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote, unquote

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from api.dashboard import views
from api.dashboard.deps import Browser, FormWriter, render, same_origin
from api.dashboard.session import COOKIE, LIFETIME_S, end_session, issue_token, read_token
from api.deps import SessionDep, SettingsDep
from api.services import jobs as jobs_service
from api.services import teams
from core.errors import DomainError, NotFound, Unauthorized
from db import doorbell

router = APIRouter(include_in_schema=False)
LOOPBACK = {"localhost", "127.0.0.1", "::1"}
NOTICE_COOKIE = "tunepool_notice"


def _local_path(url: str | None) -> str:
    # Only same-site paths: `next=//evil.example` must not turn sign-in into an open redirect.
    return url if url and url.startswith("/") and not url.startswith("//") else "/jobs"


@router.get("/")
def home(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    signed_in = read_token(session, settings, request.cookies.get(COOKIE)) is not None
    return RedirectResponse("/jobs" if signed_in else "/login", 303)


@router.get("/login")
def login_form(request: Request, next: str | None = None) -> Response:
    return render(request, "login.html", {"next": _local_path(next), "error": None})


@router.post("/login")
def login(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    api_key: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/jobs",
) -> Response:
    # Login CSRF: a foreign page must not sign this browser into the attacker's team.
    same_origin(request)
    try:
        teams.authenticate(session, api_key.strip())
    except Unauthorized:
        context = {"next": _local_path(next), "error": "That API key is not valid (or was revoked)."}
        return render(request, "login.html", context, status_code=401)
    response = RedirectResponse(_local_path(next), 303)
    # Secure whenever the browser will send it back: over HTTPS, and on loopback, which browsers trust;
    # a plain-HTTP LAN address gets a non-Secure cookie, as a Secure one would never return there.
    secure = request.url.scheme == "https" or request.url.hostname in LOOPBACK
    cookie = issue_token(session, settings, api_key.strip())
    session.commit()
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=LIFETIME_S,
        httponly=True,
        secure=secure,
        samesite="lax",
        path="/",
    )
    return response


@router.post("/logout")
def logout(request: Request, session: SessionDep, settings: SettingsDep, _: FormWriter) -> Response:
    end_session(session, settings, request.cookies.get(COOKIE))
    session.commit()
    response = RedirectResponse("/login", 303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/jobs")
def jobs_list(
    request: Request,
    session: SessionDep,
    browser: Browser,
    status: Annotated[str | None, Query()] = None,
    after: str | None = None,
) -> Response:
    status = status if status in views.STATUSES else None
    jobs, next_cursor = views.jobs_page(session, browser.team, status=status, after=after)
    context = {"browser": browser, "jobs": jobs, "status": status, "statuses": views.STATUSES}
    context.update(after=after, next_cursor=next_cursor, nav="jobs")
    return render(request, "jobs.html", context)


@router.get("/jobs/new")
def new_job(request: Request, session: SessionDep, settings: SettingsDep, browser: Browser) -> Response:
    context = views.new_job_page(session, settings, browser.team)
    return render(request, "new_job.html", {**context, "browser": browser, "nav": "new"})


@router.get("/jobs/{job_id}")
def job_detail(job_id: str, request: Request, session: SessionDep, browser: Browser) -> Response:
    try:
        context = views.job_page(session, browser.team, job_id)
    except NotFound:
        return render(request, "not_found.html", {"browser": browser, "what": job_id}, status_code=404)
    notice = unquote(request.cookies.get(NOTICE_COOKIE, ""))
    response = render(request, "job.html", {**context, "browser": browser, "notice": notice, "nav": "jobs"})
    if notice:
        response.delete_cookie(NOTICE_COOKIE, path=f"/jobs/{job_id}")
    return response


@router.get("/pool")
def pool(request: Request, session: SessionDep, settings: SettingsDep, browser: Browser) -> Response:
    context = views.pool_page(session, settings, browser.team)
    return render(request, "pool.html", {**context, "browser": browser, "nav": "pool"})


@router.post("/jobs/{job_id}/{action}")
def job_action(job_id: str, action: str, session: SessionDep, browser: FormWriter) -> Response:
    """Cancel, pause or resume from the job page's buttons; refusals come back as a notice."""
    handlers = {
        "cancel": jobs_service.cancel_job,
        "pause": jobs_service.pause_job,
        "resume": jobs_service.resume_job,
    }
    handler = handlers.get(action)
    if handler is None:
        raise NotFound(f"no action {action!r}")
    try:
        handler(session, browser.team, job_id)
        session.commit()
        doorbell.ring()  # a resumed job needs the dispatcher; a cancelled one frees a slot
    except NotFound:
        raise
    except DomainError as exc:
        # A one-shot cookie, not a query string: nobody can craft a link that shows their own "notice".
        response = RedirectResponse(f"/jobs/{job_id}", 303)
        response.set_cookie(
            NOTICE_COOKIE, quote(exc.message), max_age=60, httponly=True, samesite="lax", path=f"/jobs/{job_id}"
        )
        return response
    return RedirectResponse(f"/jobs/{job_id}", 303)
