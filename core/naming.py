"""Fine-tuned model names in OpenAI's style, and reading a job and checkpoint back out of one."""

from __future__ import annotations

import re
from dataclasses import dataclass

# ft:<base>:<org>:<suffix>:<job id without "ftjob-">, optionally followed by :ckpt-step-<N>.
_NAME = re.compile(r"^ft:.+:(?P<job>[0-9a-f]{24})(?::ckpt-step-(?P<step>\d{1,9}))?$")


def fine_tuned_model_name(model: str, team: str, suffix: str | None, job_id: str) -> str:
    """OpenAI's naming: ft:<base>:<org>:<suffix>:<id>; known from the job's creation on."""
    return f"ft:{model}:{team}:{suffix or ''}:{job_id.removeprefix('ftjob-')}"


def checkpoint_model_name(fine_tuned_model: str, step: int) -> str:
    return f"{fine_tuned_model}:ckpt-step-{step}"


@dataclass(frozen=True)
class ParsedModelName:
    job_id: str
    fine_tuned_model: str  # the name without the checkpoint part
    step: int | None  # None: the fine-tune itself


def parse_fine_tuned_name(name: str) -> ParsedModelName | None:
    """The job (and checkpoint step) a `ft:` name refers to; None for anything else (a base model)."""
    match = _NAME.match(name)
    if match is None:
        return None
    step = match["step"]
    base = name.rsplit(":ckpt-step-", 1)[0] if step is not None else name
    return ParsedModelName(f"ftjob-{match['job']}", base, int(step) if step is not None else None)
