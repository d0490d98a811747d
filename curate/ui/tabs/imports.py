"""The Import tab: bring your own data. Upload a file or name a path / Hub id, preview the first rows with the
detected format and column mapping, adjust the mapping, then import it as a background job (as candidates, or
as other models' outputs for the stored candidates) and follow its progress; compute consensus over the stored
outputs without running a model (``curate ensemble --no-generate``); the sources imported so far.

:class:`ImportHandlers` holds the handlers (the work is :mod:`curate.importer`'s), :func:`layout` the
components and :func:`wire` the events. Imported text is untrusted: it only goes into Textboxes and string
Dataframes.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pandas as pd

from ... import importer, jobs
from ...ensemble import EnsembleConfig
from ...errors import CurateError
from ...importer import FORMAT_HELP
from ...settings import Settings
from .. import live
from ..base import TabHandlers, _when, plural, user_errors
from ..wiring import UI, on, tab
from .run import job_view

PREVIEW_HEADERS = ["row", "instruction", "input", "output", "system", "model"]
SOURCE_HEADERS = ["source", "licence", "candidates", "outputs", "files"]
IMPORT_HEADERS = ["import", "state", "kind", "source", "file", "format", "read", "added", "rejected", "unmatched",
                  "started"]
PREVIEW = ["imp_detected", "imp_map", "imp_rows", "imp_problems"]
STATUS = ["imp_state", "imp_stage", "imp_counts", "imp_error", "imp_sources", "imp_imports"]
#: the form's components, in the order the handlers take their values
FORM = ["imp_file", "imp_path", "imp_format", "imp_map", "imp_split", "imp_as_outputs", "imp_model", "imp_name",
        "imp_license", "imp_limit", "imp_skip_bad"]


def _source(file: str | None, path: str | None) -> str:
    """The typed path / Hub id, else the uploaded file (an upload clears the path box, so the latest wins)."""
    if path and path.strip():
        return path.strip()
    if file:
        return str(file)
    raise gr.Error("Upload a file, or type a path on the server or a Hub dataset id.")


def _name(file: str | None, path: str | None, name: str | None) -> str | None:
    """The source name: the one typed, else an uploaded file's own name (the path on the server is a temporary
    folder), else the importer's default (a path's stem, a Hub id's name)."""
    if name and name.strip():
        return name.strip()
    return Path(file).stem if file and not (path and path.strip()) else None


class ImportHandlers(TabHandlers):
    """The Import tab's handlers."""

    def config(self, file: str | None, path: str | None, fmt: str | None, mapping: str | None, split: str | None,
               as_outputs: bool, model: str | None, name: str | None, license: str | None, limit: float | None,
               skip_bad: bool) -> importer.ImportConfig:
        """The import's config from the form's values ("" / None: not given). Raises CurateError / ValueError."""
        return importer.ImportConfig(
            source=_source(file, path), format=fmt or "auto", mapping=importer.parse_mapping(mapping),
            split=(split or "").strip() or None, as_outputs=bool(as_outputs),
            model=(model or "").strip() or None if as_outputs else None, name=_name(file, path, name),
            license=(license or "").strip() or None, limit=int(limit) if limit else None, skip_bad=bool(skip_bad))

    @user_errors
    def ui_upload(self, file: str | None, path: str | None, fmt: str | None, mapping: str | None,
                  split: str | None, as_outputs: bool, model: str | None, name: str | None,
                  license: str | None = None, limit: float | None = None, skip_bad: bool = False) -> dict:
        """A file was uploaded: it replaces a typed path, and is previewed."""
        return {"imp_path": "", **self.ui_preview(file, "", fmt, mapping, split, as_outputs, model, name)}

    @user_errors
    def ui_preview(self, file: str | None, path: str | None, fmt: str | None, mapping: str | None,
                   split: str | None, as_outputs: bool, model: str | None, name: str | None,
                   license: str | None = None, limit: float | None = None, skip_bad: bool = False) -> dict:
        """What the import would read: the detected format and mapping (the mapping box is filled with it, to
        adjust), the first rows as they would be stored, and the problems among the first records."""
        cfg = self.config(file, path, fmt, mapping, split, as_outputs, model, name, license, limit, skip_bad)
        p = importer.preview(cfg.source, format=cfg.format, mapping=cfg.mapping, split=cfg.split,
                             as_outputs=cfg.as_outputs, model=cfg.model, name=cfg.name)
        total = plural(p["total_rows"], "row") if p["total_rows"] is not None else "rows counted while importing"
        detected = (f"{p['reader']} · format {p['format']} · source name {p['name']} · {total}\n"
                    f"columns: {', '.join(p['columns'])}\nmapping: {p['mapping']}")
        rows = pd.DataFrame([[str(r[h]) for h in PREVIEW_HEADERS] for r in p["rows"]], columns=PREVIEW_HEADERS)
        problems = "\n".join(p["problems"][:20]) or "no problem in the first records"
        return {"imp_detected": detected, "imp_map": p["mapping"], "imp_rows": rows, "imp_problems": problems}

    def start_import(self, **values) -> str:
        """Create the import job (its preflight refuses a source that cannot work) and start it on the runner."""
        cfg = self.config(**values)
        job_id = jobs.start_job(self.store(), "import", cfg.model_dump(mode="json"))
        self.runner.submit(job_id)
        return job_id

    @user_errors
    def ui_import(self, file: str | None, path: str | None, fmt: str | None, mapping: str | None,
                  split: str | None, as_outputs: bool, model: str | None, name: str | None, license: str | None,
                  limit: float | None, skip_bad: bool, request: gr.Request = None) -> dict:
        self.require_admin(request, "start a job")
        job_id = self.start_import(file=file, path=path, fmt=fmt, mapping=mapping, split=split,
                                   as_outputs=as_outputs, model=model, name=name, license=license, limit=limit,
                                   skip_bad=skip_bad)
        gr.Info(f"Import {job_id} started: it runs on the server, closing this tab does not stop it.")
        return {"imp_job": job_id, **self.ui_status(job_id)}

    def start_consensus(self) -> str:
        """Start an ensembling job that runs no model: consensus over the stored outputs (``curate ensemble
        --no-generate``), e.g. after importing other models' outputs."""
        config = EnsembleConfig(consensus_only=True, threshold=self.settings.consensus_threshold)
        job_id = jobs.start_job(self.store(), "ensemble", config.model_dump(mode="json"))
        self.runner.submit(job_id)
        return job_id

    @user_errors
    def ui_consensus(self, request: gr.Request = None) -> dict:
        self.require_admin(request, "start a job")
        job_id = self.start_consensus()
        gr.Info(f"Consensus job {job_id} started (no model runs: the stored outputs only).")
        return {"imp_job": job_id, **self.ui_status(job_id)}

    def ui_status(self, job_id: str | None) -> dict:
        """The import job's progress (the Run tab's fields) and the sources and imports so far. Polled."""
        out = self._tables()
        jid = (job_id or "").strip()
        if not jid:
            return {**out, "imp_state": "", "imp_stage": "", "imp_counts": "", "imp_error": ""}
        try:
            v = job_view(self.store().get_job(jid))
        except CurateError as e:
            return {**out, "imp_state": "unknown job", "imp_stage": "", "imp_counts": "", "imp_error": str(e)}
        return {**out, "imp_state": v["job_state"], "imp_stage": v["job_stage"], "imp_counts": v["job_counts"],
                "imp_error": v["job_error"]}

    def _tables(self) -> dict:
        st = self.store()
        sources = [[s["name"], s["license"], f"{s['candidates']:,}", f"{s['outputs']:,}",
                    ", ".join(Path(x).name for x in s["locations"])] for s in st.list_sources()]
        imports = [[m["id"][:12], m["state"], m["kind"], m["source"], Path(m["location"]).name, m["format"],
                    *(f"{m['counts'].get(k, 0):,}" for k in ("read", "added", "rejected", "unmatched")),
                    _when(m["created_at"])] for m in st.list_imports(limit=20)]
        return {"imp_sources": pd.DataFrame(sources, columns=SOURCE_HEADERS),
                "imp_imports": pd.DataFrame(imports, columns=IMPORT_HEADERS)}


# -- layout ----------------------------------------------------------------------------------------------------
def layout(ui: UI, settings: Settings) -> None:
    with tab(ui, "Import", "import"):
        with gr.Row():
            with gr.Column(scale=2):
                _form(ui)
            with gr.Column(scale=3):
                _preview_and_progress(ui)
        ui.add("imp_sources", gr.Dataframe(headers=SOURCE_HEADERS, datatype=["str"] * len(SOURCE_HEADERS),
                                           interactive=False, max_height=200, label="Imported sources",
                                           elem_id="curate-imp-sources"))
        ui.add("imp_imports", gr.Dataframe(headers=IMPORT_HEADERS, datatype=["str"] * len(IMPORT_HEADERS),
                                           interactive=False, max_height=220, label="Imports (latest first)",
                                           elem_id="curate-imp-imports"))


def _form(ui: UI) -> None:
    ui.add("imp_file", gr.File(label="Upload a file (JSON, JSONL, CSV, TSV, Parquet)", type="filepath",
                               file_types=[".json", ".jsonl", ".ndjson", ".csv", ".tsv", ".parquet"],
                               elem_id="curate-imp-file"))
    ui.add("imp_path", gr.Textbox(label="…or a path on the server, a datasets folder, or a Hub id",
                                  placeholder="data/alpaca.json, tatsu-lab/alpaca", elem_id="curate-imp-path"))
    with gr.Row():
        ui.add("imp_format", gr.Dropdown([(f"{k} — {v}", k) for k, v in FORMAT_HELP.items()], value="auto",
                                         label="Format", elem_id="curate-imp-format", scale=2))
        ui.add("imp_split", gr.Textbox(label="Split (datasets / Hub)", elem_id="curate-imp-split", scale=1))
    ui.add("imp_map", gr.Textbox(label="Column mapping (field=column, …; empty: detected)",
                                 placeholder="instruction=prompt,input=,output=response", elem_id="curate-imp-map"))
    with gr.Row():
        ui.add("imp_name", gr.Textbox(label="Source name (default: the file's name)", elem_id="curate-imp-name"))
        ui.add("imp_license", gr.Textbox(label="Licence (SPDX id, e.g. CC-BY-4.0)", elem_id="curate-imp-license"))
    with gr.Row():
        ui.add("imp_as_outputs", gr.Checkbox(False, label="Other models' outputs for the stored candidates "
                                                          "(matched on instruction + input)",
                                             elem_id="curate-imp-as-outputs"))
        ui.add("imp_model", gr.Textbox(label="Their model (default: a generator column)", elem_id="curate-imp-model"))
    with gr.Row():
        ui.add("imp_limit", gr.Number(0, label="Only the first N rows (0: all)", precision=0, minimum=0,
                                      elem_id="curate-imp-limit"))
        ui.add("imp_skip_bad", gr.Checkbox(False, label="Skip bad rows (kept as rejects; default: any bad row "
                                                        "imports nothing)", elem_id="curate-imp-skip-bad"))
    with gr.Row():
        ui.add("imp_preview_btn", gr.Button("Preview", elem_id="curate-imp-preview"))
        ui.add("imp_start", gr.Button("Import", variant="primary", elem_id="curate-imp-start"))
    ui.add("imp_consensus", gr.Button("Consensus over the stored outputs (no model runs)",
                                      elem_id="curate-imp-consensus"))


def _preview_and_progress(ui: UI) -> None:
    ui.add("imp_detected", gr.Textbox(label="Detected", interactive=False, lines=3, elem_id="curate-imp-detected"))
    ui.add("imp_rows", gr.Dataframe(headers=PREVIEW_HEADERS, datatype=["str"] * len(PREVIEW_HEADERS),
                                    interactive=False, wrap=True, max_height=300, max_chars=200,
                                    column_widths=["50px", "30%", "15%", "30%", "10%", "10%"],
                                    label="The first rows, as they will be stored", elem_id="curate-imp-rows"))
    ui.add("imp_problems", gr.Textbox(label="Problems in the first records", interactive=False, lines=2,
                                      max_lines=8, elem_id="curate-imp-problems"))
    with gr.Row():
        ui.add("imp_job", gr.Textbox(label="Import job", elem_id="curate-imp-job", scale=1))
        ui.add("imp_state", gr.Textbox(label="State", interactive=False, elem_id="curate-imp-state", scale=1))
        ui.add("imp_stage", gr.Textbox(label="Stage", interactive=False, elem_id="curate-imp-stage", scale=1))
    ui.add("imp_counts", gr.Textbox(label="Progress", interactive=False, elem_id="curate-imp-counts"))
    ui.add("imp_error", gr.Textbox(label="Last error / warnings", interactive=False, lines=2, max_lines=12,
                                   elem_id="curate-imp-error"))


# -- wiring ----------------------------------------------------------------------------------------------------
def wire(ui: UI, h: ImportHandlers) -> None:
    form = [ui.c[n] for n in FORM]
    on(ui.imp_preview_btn.click, h.ui_preview, form, PREVIEW, ui, api="ui_import_preview")
    on(ui.imp_file.upload, h.ui_upload, form, ["imp_path", *PREVIEW], ui)
    live.hurry(ui, on(ui.imp_start.click, h.ui_import, form, ["imp_job", *STATUS], ui, api="ui_import"))
    live.hurry(ui, on(ui.imp_consensus.click, h.ui_consensus, [], ["imp_job", *STATUS], ui,
                      api="ui_import_consensus"))
    on(ui.import_tab.select, h.ui_status, [ui.imp_job], STATUS, ui, progress="hidden")
    live.on_change(ui, "jobs", "import", h.ui_status, [ui.imp_job], STATUS)
    on(ui.imp_job.submit, h.ui_status, [ui.imp_job], STATUS, ui)
