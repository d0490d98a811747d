"""Evaluation runs (curate.evaluate): one row per run with its metrics and settings, one row per evaluated
example with the prediction and its scores."""

from __future__ import annotations

import json
import uuid

from ..errors import StoreError
from .base import StoreBase, _json, now


class EvaluationQueries(StoreBase):
    """Stored evaluation runs: save one, list them, read one back whole."""

    def save_evaluation(self, report: dict, *, job_id: str | None = None) -> str:
        """Store a report (:meth:`curate.evaluate.EvalReport.as_dict`) in one transaction; returns its run id."""
        rid = report.get("run_id") or uuid.uuid4().hex[:12]
        with self.atomic():
            self.db["eval_runs"].insert({
                "id": rid, "job_id": job_id, "model": report.get("model"), "evalset": report["evalset"],
                "prompt_style": report.get("prompt_style"), "n": len(report.get("rows", [])),
                "metrics": _json(report["metrics"]), "settings": _json(report.get("settings", {})),
                "licence": report.get("licence"), "created_at": report.get("created_at") or now()})
            self.db.conn.executemany(
                "INSERT INTO eval_rows (run_id, position, row_id, prediction, scores) VALUES (?, ?, ?, ?, ?)",
                [(rid, i, r["id"], r["prediction"], _json({k: v for k, v in r.items() if k not in ("id", "prediction")}))
                 for i, r in enumerate(report.get("rows", []))])
        return rid

    def list_evaluations(self, limit: int = 100) -> list[dict]:
        """Stored runs, newest first: id, model, evalset, prompt_style, n, metrics (decoded), created_at."""
        rows = self._rows("SELECT id, model, evalset, prompt_style, n, metrics, created_at FROM eval_runs"
                          " ORDER BY created_at DESC, rowid DESC LIMIT :n", {"n": limit})
        for r in rows:
            r["metrics"] = json.loads(r["metrics"])
        return rows

    def get_evaluation(self, run_id: str) -> dict:
        """A stored run as the report it came from (rows in order). Raises StoreError for an unknown id."""
        rows = self._rows("SELECT * FROM eval_runs WHERE id = :id", {"id": run_id})
        if not rows:
            raise StoreError(f"no evaluation run {run_id!r} in {self.path}; `curate evaluate --list` shows them")
        r = rows[0]
        r["metrics"], r["settings"] = json.loads(r["metrics"]), json.loads(r["settings"])
        r["run_id"] = r.pop("id")
        r["rows"] = [{"id": x["row_id"], "prediction": x["prediction"], **json.loads(x["scores"])} for x in self._rows(
            "SELECT row_id, prediction, scores FROM eval_rows WHERE run_id = :id ORDER BY position", {"id": run_id})]
        return r
