"""The Export tab: preview the first rows exactly as they will be written and the dataset card, then write
the export on the server and offer its files for download.

:class:`ExportHandlers` holds the handlers, :func:`export_options` turns the tab's (or the API's) values
into :func:`curate.export.export`'s options, :func:`layout` holds the components and :func:`wire` the events.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import gradio as gr

from ... import checks, export
from ...export import FORMATS
from ...settings import Settings
from ..base import TabHandlers, plural, user_errors
from ..wiring import UI, on, tab

EXPORT = ["ex_summary", "ex_files", "ex_preview", "ex_card"]


def export_options(fmt: str, include: list[str] | str | None, tau: float | None, selection: str | None,
                   system: str | None, provenance: str | None) -> dict:
    return {"fmt": fmt or "alpaca-jsonl", "include": include or ("accepted",),
            "tau": checks.tau(tau if tau is not None else 0.01, "export"),
            "selection": (selection or "").strip() or None,
            "system": (system or "").strip() or None, "provenance": provenance or "none"}




class ExportHandlers(TabHandlers):
    """The Export tab's handlers."""

    @staticmethod
    def ui_sync_tau(tau: float) -> dict:
        """The Export tab's τ follows the Review tab's slider (the "current threshold")."""
        return {"ex_tau": tau}

    @user_errors
    def ui_export_preview(self, fmt: str, include: list[str], tau: float, selection: str, system: str,
                          provenance: str) -> dict:
        """The first rows as they will be written and the dataset card; writes nothing."""
        o = export_options(fmt, include, tau, selection, system, provenance)
        rows = export.preview(self.store(), n=5, **o)
        if not rows:
            return {"ex_summary": "Nothing to export with these choices: accept candidates in the Review tab, "
                                  "or include those passing τ.", "ex_files": None, "ex_preview": "",
                    "ex_card": ""}
        card = export.dataset_card(self.store(), **o)
        return {"ex_summary": f"Preview of the first {plural(len(rows), 'row')} as {o['fmt']} (nothing written yet).",
                "ex_files": None, "ex_preview": export.preview_text(o["fmt"], rows), "ex_card": card}

    @user_errors
    def ui_export(self, fmt: str, include: list[str], tau: float, selection: str, system: str,
                  provenance: str, request: gr.Request = None) -> dict:
        """Write the export into a fresh temporary folder on the server and offer its files: the folder as
        a zip, and the data file itself when there is one."""
        self.require_admin(request, "export")
        o = export_options(fmt, include, tau, selection, system, provenance)
        folder = Path(tempfile.mkdtemp(prefix="curate-export-"))
        name = f"curate-{o['fmt']}"
        res = export.export(self.store(), out=folder / name, **o)
        archive = shutil.make_archive(str(folder / name), "zip", root_dir=folder, base_dir=name)
        files = [archive] + ([str(res.data_path)] if res.data_path.is_file() else [])
        counts = ", ".join(f"{k} {v:,}" for k, v in res.counts.items() if v)
        summary = (f"Exported {plural(res.rows, 'row')} ({counts}) as {res.format}: "
                   + ", ".join(f"{n} ({b:,} bytes)" for n, b in res.files) + ". Download below.")
        rows = export.preview(self.store(), n=5, **o)  # the first rows only; the card is the one written
        return {"ex_summary": summary, "ex_files": files, "ex_preview": export.preview_text(o["fmt"], rows),
                "ex_card": (res.path / export.CARD).read_text(encoding="utf-8")}


# -- layout ----------------------------------------------------------------------------------------------------
def layout(ui: UI, settings: Settings) -> None:
    with tab(ui, "Export", "export"), gr.Row():
        with gr.Column(scale=2):
            ui.add("ex_format", gr.Dropdown([(f"{f.name} — {f.description}", f.name) for f in FORMATS.values()],
                                            value="alpaca-jsonl", label="Format", elem_id="curate-ex-format"))
            ui.add("ex_include", gr.CheckboxGroup(
                [("accepted and edited (edited text wins)", "accepted"),
                 ("passing consensus at τ, not yet reviewed (rejected stay out)", "passing"),
                 ("the QDIT selection", "selection")], value=["accepted"], label="What goes in",
                elem_id="curate-ex-include"))
            with gr.Row():
                ui.add("ex_tau", gr.Number(settings.consensus_threshold, minimum=0, maximum=1, step=0.01,
                                           label="τ for “passing”", elem_id="curate-ex-tau"))
                ui.add("ex_selection", gr.Textbox("", label="Selection name (empty: the latest)",
                                                  elem_id="curate-ex-selection"))
            ui.add("ex_system", gr.Textbox("", label="System prompt (sharegpt / messages; optional)", lines=2,
                                           elem_id="curate-ex-system"))
            ui.add("ex_provenance", gr.Radio(
                [("none (what trainers expect)", "none"), ("a metadata field per row", "field"),
                 ("a sidecar file", "sidecar")], value="none", label="Provenance", elem_id="curate-ex-provenance"))
            with gr.Row():
                ui.add("ex_preview_btn", gr.Button("Preview", elem_id="curate-ex-preview-btn"))
                ui.add("ex_export_btn", gr.Button("Export", variant="primary", elem_id="curate-ex-export"))
        with gr.Column(scale=3):
            ui.add("ex_summary", gr.Textbox(label="Export", interactive=False, lines=3, elem_id="curate-ex-summary"))
            ui.add("ex_files", gr.File(label="Download", file_count="multiple", interactive=False,
                                       elem_id="curate-ex-files"))
            ui.add("ex_preview", gr.Code(label="The first lines of the data file, exactly as written (binary "
                                               "formats: the rows as JSON Lines)", language="json",
                                         interactive=False, lines=12, elem_id="curate-ex-preview"))
            ui.add("ex_card", gr.Code(label="Dataset card (README.md beside the data)", language="markdown",
                                      interactive=False, lines=12, elem_id="curate-ex-card"))


# -- wiring ----------------------------------------------------------------------------------------------------
def wire(ui: UI, h: ExportHandlers) -> None:
    options = [ui.ex_format, ui.ex_include, ui.ex_tau, ui.ex_selection, ui.ex_system, ui.ex_provenance]
    on(ui.tau.change, h.ui_sync_tau, [ui.tau], ["ex_tau"], ui, progress="hidden")
    on(ui.ex_preview_btn.click, h.ui_export_preview, options, EXPORT, ui)
    on(ui.ex_export_btn.click, h.ui_export, options, EXPORT, ui, progress="full")
