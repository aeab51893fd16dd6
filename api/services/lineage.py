"""Continued training: a job whose `model` is a fine-tune or checkpoint continues that adapter on its base."""

from __future__ import annotations

from sqlalchemy.orm import Session

from api.services import sharing
from core.enums import ArtifactKind
from core.errors import Conflict, InvalidRequest
from core.schemas.method import ParentAdapter
from core.schemas.spec import JobSpec, LoraSpec
from db.models import Artifact, Team
from db.repositories import artifacts, jobs

# A continued adapter keeps its shape: these must equal the parent's (PEFT loads them from its adapter config).
_FIXED = ("r", "alpha", "dropout", "target_modules")


def resolve_parent(session: Session, team: Team, name: str, lora: LoraSpec) -> tuple[str, ParentAdapter, LoraSpec]:
    """The base model name, the parent record and the LoRA spec for a job continuing `name`.

    Raises NotFound (param `model`) for a name the team may not use, InvalidRequest naming the `lora` field that
    contradicts the parent's adapter."""
    model = sharing.resolve(session, team, name)
    parent_spec = JobSpec.model_validate(model.job.spec)
    for field in (f for f in _FIXED if f in lora.model_fields_set):  # stated, not defaulted
        asked, has = getattr(lora, field), getattr(parent_spec.lora, field)
        same = lora.module_list() == parent_spec.lora.module_list() if field == "target_modules" else asked == has
        if not same:
            raise InvalidRequest(
                f"lora.{field} is {asked!r} but {name} was trained with {has!r}; a continued adapter keeps its shape "
                "(leave lora out to inherit it)",
                param=f"lora.{field}",
            )
    archive = model.checkpoint or _adapter_archive(session, model.job.id)
    chain = [name] + (parent_spec.parent.chain if parent_spec.parent else [model.job.model])
    parent = ParentAdapter(model=name, job_id=model.job.id, step=model.step, artifact_id=archive.id, chain=chain)
    return model.job.model, parent, parent_spec.lora


def _adapter_archive(session: Session, job_id: str) -> Artifact:
    """A finished fine-tune's adapter: the published adapter, else its final checkpoint (the same archive)."""
    rows = artifacts.list_artifacts(session, job_id)
    adapter = next((a for a in rows if a.kind == ArtifactKind.ADAPTER.value), None)
    final = max((a for a in rows if a.kind == ArtifactKind.CHECKPOINT.value), key=lambda a: a.step or 0, default=None)
    found = adapter or final
    if found is None:
        raise InvalidRequest(f"fine-tune of job {job_id} has no adapter archive to continue from", param="model")
    return found


def check_no_unfinished_children(session: Session, job_id: str, name: str) -> None:
    """Deleting a parent removes its archives: refused while a job that continues it has not finished."""
    if children := jobs.unfinished_children(session, job_id):
        raise Conflict(
            f"model {name!r} is being continued by unfinished job(s) {', '.join(children)}; "
            "delete it once they finish or cancel them",
            param="model",
        )
