"""Which fine-tunes and checkpoints a team may use: its own, and those another team shared with it.

A name (`ft:…` or `ft:…:ckpt-step-N`) resolves to a job and a step; everything else about another team's
job (its page, events, metrics, files) stays invisible: only the shared model and its artifacts are seen.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from core.enums import ArtifactKind, JobStatus
from core.errors import Forbidden, InvalidRequest, NotFound
from core.ids import new_id
from core.naming import checkpoint_model_name, fine_tuned_model_name, parse_fine_tuned_name
from db.models import Artifact, ModelPermission, Team, TrainingJob
from db.repositories import artifacts, jobs, permissions, teams


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    job: TrainingJob
    step: int | None  # None: the fine-tune; else that checkpoint
    own: bool
    checkpoint: Artifact | None = None


def model_name_of(session: Session, job: TrainingJob) -> str:
    """The job's fine-tuned model name, known from its creation (so checkpoints are `ft:` names early)."""
    if job.fine_tuned_model:
        return job.fine_tuned_model
    owner = teams.get_team(session, job.team_id)
    return fine_tuned_model_name(job.model, owner.name if owner else job.team_id, job.suffix, job.id)


def resolve(session: Session, team: Team, name: str, param: str = "model") -> ResolvedModel:
    """The fine-tune or checkpoint `name` names, if this team may use it; else NotFound (never "forbidden")."""
    missing = NotFound(f"model {name!r} does not exist", param=param)
    parsed = parse_fine_tuned_name(name)
    job = jobs.get_job_by_id(session, parsed.job_id) if parsed else None
    if parsed is None or job is None or job.model_deleted_at is not None:
        raise missing
    if model_name_of(session, job) != parsed.fine_tuned_model:
        raise missing
    own = job.team_id == team.id
    if not own and not permissions.is_granted(session, team.id, job.id, parsed.step):
        raise missing
    if parsed.step is None:
        if job.status != JobStatus.SUCCEEDED:
            raise missing
        return ResolvedModel(name, job, None, own)
    checkpoint = _checkpoint(session, job.id, parsed.step)
    if checkpoint is None:
        raise missing
    return ResolvedModel(name, job, parsed.step, own, checkpoint)


def _checkpoint(session: Session, job_id: str, step: int) -> Artifact | None:
    rows = artifacts.list_artifacts(session, job_id, kind=ArtifactKind.CHECKPOINT.value)
    return next((a for a in rows if a.step == step), None)


def model_artifacts(session: Session, model: ResolvedModel) -> list[Artifact]:
    """What using the model means downloading: the published adapter/merged archives, or the checkpoint."""
    if model.checkpoint is not None:
        return [model.checkpoint]
    published = {ArtifactKind.ADAPTER.value, ArtifactKind.MERGED.value}
    return [a for a in artifacts.list_artifacts(session, model.job.id) if a.kind in published]


def may_download(session: Session, team: Team, artifact: Artifact) -> bool:
    """Own artifacts, and those of a model shared with the team (the fine-tune's archives or that checkpoint)."""
    if artifact.team_id == team.id:
        return True
    job = jobs.get_job_by_id(session, artifact.job_id)
    if job is None or job.model_deleted_at is not None:
        return False
    if artifact.kind == ArtifactKind.CHECKPOINT.value:
        return permissions.is_granted(session, team.id, job.id, artifact.step)
    published = artifact.kind in (ArtifactKind.ADAPTER.value, ArtifactKind.MERGED.value)
    return published and permissions.is_granted(session, team.id, job.id, None)


def owned(session: Session, team: Team, name: str) -> ResolvedModel:
    """A model the caller's team owns: sharing and deleting are the owner's."""
    model = resolve(session, team, name)
    if not model.own:
        raise Forbidden(f"model {name!r} is shared with your team; only its owner can change it", param="model")
    return model


def grant(session: Session, team: Team, name: str, project_ids: list[str]) -> list[ModelPermission]:
    """Share the model with each team (project id = team id); granting twice returns the first grant."""
    model = owned(session, team, name)
    if not project_ids:
        raise InvalidRequest("project_ids must name at least one team", param="project_ids")
    granted = []
    for team_id in dict.fromkeys(project_ids):
        if team_id == team.id:
            raise InvalidRequest("a model is always visible to its own team", param="project_ids")
        if teams.get_team(session, team_id) is None:
            raise InvalidRequest(f"project_ids: no team {team_id!r}", param="project_ids")
        existing = permissions.find_permission(session, name, team_id)
        granted.append(
            existing
            or permissions.add_permission(
                session,
                ModelPermission(
                    id=new_id("cp"), job_id=model.job.id, step=model.step, model_name=name, grantee_team_id=team_id
                ),
            )
        )
    return granted


def list_grants(
    session: Session,
    team: Team,
    name: str,
    *,
    project_id: str | None,
    after: str | None,
    ascending: bool,
    limit: int,
) -> tuple[list[ModelPermission], bool]:
    owned(session, team, name)
    cursor = permissions.get_permission(session, name, after) if after else None
    if after and cursor is None:
        raise InvalidRequest(f"after: no permission {after!r}", param="after")
    rows = permissions.list_permissions(
        session, name, grantee_team_id=project_id, after=cursor, ascending=ascending, limit=limit + 1
    )
    return rows[:limit], len(rows) > limit


def revoke(session: Session, team: Team, name: str, permission_id: str) -> None:
    owned(session, team, name)
    if permissions.get_permission(session, name, permission_id) is None:
        raise NotFound(f"no permission {permission_id!r} on {name!r}", param="permission_id")
    permissions.delete_permission(session, permission_id)


def shared_models(session: Session, team: Team) -> list[tuple[str, TrainingJob, int | None]]:
    """(name, job, step) of every model shared with the team that still exists."""
    return [(p.model_name, j, p.step) for p, j in permissions.shared_with(session, team.id)]


def checkpoint_name(session: Session, job: TrainingJob, step: int) -> str:
    return checkpoint_model_name(model_name_of(session, job), step)
