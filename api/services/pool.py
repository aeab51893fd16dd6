"""The pool as a team sees it: workers, their GPUs and jobs, and queue depth per team."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from api.schemas import PoolJob, PoolOtherTeams, PoolPublic, PoolServingBackend, PoolTeamQueue, PoolWorker, WorkerState
from core.enums import JobStatus
from core.placement import GB
from core.settings import Settings
from db.models import ServingBackend, Team, TrainingJob, Worker
from db.repositories import jobs, serving, teams, workers


def pool_view(session: Session, settings: Settings, team: Team) -> PoolPublic:
    """Job ids appear only for the caller's own team's jobs; an admin sees them all."""
    lost_before = datetime.now(UTC) - timedelta(seconds=settings.worker_lost_seconds)
    rows = workers.all_workers(session)
    busy_ids = {w.current_job_id or w.reserved_job_id for w in rows} - {None}
    job_rows = jobs.jobs_by_ids(session, [i for i in busy_ids if i])
    out = [_worker(w, job_rows, team, lost_before) for w in rows]
    counts = jobs.count_by_team_status(session, [JobStatus.VALIDATING_FILES, JobStatus.QUEUED, JobStatus.RUNNING])
    waiting: dict[str, list[str]] = {}
    for team_id, job_id in jobs.waiting_jobs(session, None if team.is_admin else team.id):
        waiting.setdefault(team_id, []).append(job_id)
    names = {t.id: t.name for t in teams.list_teams(session)}
    queues, others = [], PoolOtherTeams(teams=0, queued=0, running=0)
    for team_id in sorted({t for t, _ in counts}, key=lambda t: names.get(t, t)):
        queued = counts.get((team_id, JobStatus.VALIDATING_FILES.value), 0) + counts.get(
            (team_id, JobStatus.QUEUED.value), 0
        )
        running = counts.get((team_id, JobStatus.RUNNING.value), 0)
        if not (team.is_admin or team_id == team.id):
            # Other teams' names, ids and counts are theirs: a tenant sees only the total.
            others.teams += 1
            others.queued += queued
            others.running += running
            continue
        queues.append(
            PoolTeamQueue(
                team_id=team_id,
                team_name=names.get(team_id, team_id),
                queued=queued,
                running=running,
                job_ids=waiting.get(team_id, []),
            )
        )
    return PoolPublic(
        workers=out,
        serving_backends=[_backend(b, team, lost_before) for b in serving.all_backends(session)],
        queues=queues,
        other_teams=None if team.is_admin else others,
        idle_workers=sum(1 for w in out if w.state == "idle"),
        busy_workers=sum(1 for w in out if w.state in ("busy", "starting")),
        lost_workers=sum(1 for w in out if w.state == "lost"),
    )


def _worker(w: Worker, job_rows: dict[str, TrainingJob], team: Team, lost_before: datetime) -> PoolWorker:
    job_id = w.current_job_id or w.reserved_job_id
    job = job_rows.get(job_id) if job_id else None
    pool_job = None
    if job is not None:
        own = team.is_admin or job.team_id == team.id
        pool_job = PoolJob(id=job.id if own else None, own=job.team_id == team.id, status=job.status if own else None)
    state: WorkerState
    if w.last_heartbeat < lost_before:
        state = "lost"
    elif w.current_job_id:
        state = "busy"
    elif w.reserved_job_id:
        state = "starting"
    else:
        state = "idle"
    return PoolWorker(
        id=w.id,
        host_id=w.host_id,
        gpu_index=w.gpu_index,
        hostname=w.hostname,
        device=w.device,
        gpu_name=w.gpu_name,
        gpu_memory_total_gb=round(w.gpu_memory_total / GB, 2) if w.gpu_memory_total else None,
        gpu_memory_free_gb=round(w.gpu_memory_free / GB, 2) if w.gpu_memory_free else None,
        state=state,
        job=pool_job,
        last_heartbeat=int(w.last_heartbeat.timestamp()),
        started_at=int(w.started_at.timestamp()),
    )


def _backend(b: ServingBackend, team: Team, lost_before: datetime) -> PoolServingBackend:
    adapters = [str(a) for a in b.loaded_adapters or []]
    # ft:<base>:<team name>:<suffix>:<id>: another team's fine-tune names stay theirs.
    own = adapters if team.is_admin else [a for a in adapters if a.split(":")[2:3] == [team.name]]
    return PoolServingBackend(
        id=b.id,
        base_model=b.base_model,
        engine=b.engine,
        hostname=b.hostname,
        device=b.device,
        state="lost" if b.last_heartbeat < lost_before else "up",
        loaded_adapters=len(adapters),
        max_adapters=b.max_adapters,
        own_adapters=own,
        last_heartbeat=int(b.last_heartbeat.timestamp()),
        started_at=int(b.started_at.timestamp()),
    )
