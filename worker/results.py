"""OpenAI's result file: a CSV of the per-step metrics, filed with purpose `fine-tune-results` on success."""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import tempfile
from pathlib import Path

from sqlalchemy.orm import Session

from core.ids import new_id
from core.storage import ObjectStore, StorageError
from db.models import DatasetFile, JobMetric, TrainingJob
from db.repositories import files, metrics

log = logging.getLogger(__name__)
COLUMNS = ["step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy"]


def _cell(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def result_csv(rows: list[JobMetric]) -> str:
    """One line per logged step; a value the run did not measure is an empty cell, never a made-up zero."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for m in rows:
        # tunepool records no token accuracy on the validation set: that column stays empty.
        writer.writerow([m.step, _cell(m.train_loss), _cell(m.mean_token_accuracy), _cell(m.valid_loss), ""])
    return out.getvalue()


def publish_result_file(session: Session, store: ObjectStore, job: TrainingJob) -> str | None:
    """Store the job's result CSV as a team file in this transaction; its id, or None if the store failed
    (the job still succeeds: its metrics stay readable through /metrics)."""
    body = result_csv(metrics.list_metrics(session, job.id)).encode()
    file_id = new_id("file")
    key = f"files/{job.team_id}/{file_id}.csv"
    with tempfile.NamedTemporaryFile(dir=store.temp_dir(), suffix=".csv", delete=False) as tmp:
        tmp.write(body)
    try:
        store.put_file(key, Path(tmp.name), move=True)
    except StorageError as exc:
        log.warning("job %s: result file not stored: %s", job.id, exc)
        return None
    finally:
        Path(tmp.name).unlink(missing_ok=True)
    files.add_file(
        session,
        DatasetFile(
            id=file_id,
            team_id=job.team_id,
            filename=f"{job.id}-results.csv",
            purpose="fine-tune-results",
            bytes=len(body),
            sha256=hashlib.sha256(body).hexdigest(),
            format="csv",
            line_count=body.count(b"\n"),
            storage_key=key,
        ),
    )
    return file_id
