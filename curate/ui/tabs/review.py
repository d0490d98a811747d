"""The Review tab: the queue (filters, pages, the reviewer tools' filters and sorts), the consensus threshold τ
and the quality threshold, one candidate with every output side by side, and the review actions (accept /
reject / edit / undo; for admins, accept all that pass and the ticked rows). With reviews_per_candidate ≥ 2
each action is the reviewer's vote (docs/ARCHITECTURE.md, "Review").

:class:`ReviewHandlers` holds the handlers, :func:`layout` the components, :func:`wire` the events. Handlers
that depend on the queue filter take one :class:`~curate.review.QueueFilter` (``f``); the wiring builds it
from the filter components (:func:`~curate.ui.wiring.with_filter`). Untrusted text (instructions, inputs,
model outputs, reviewer names) only ever goes into Textboxes and ``datatype="str"`` Dataframes, never into
HTML or Markdown; toasts are escaped (ui.base).
"""

from __future__ import annotations

import functools
import inspect
import math
from collections import defaultdict
from typing import Any, Callable

import gradio as gr
import pandas as pd

from ... import checks, review
from ...errors import ConflictError, CurateError
from ...settings import Settings
from ...store import Candidate
from .. import live
from ..base import (TabHandlers, _num, _when, as_gr_error, info, md_literal, plural, safe_markdown,
                    user_errors, warn)
from ..wiring import UI, filter_inputs, on, tab, with_filter

MAX_OUTPUTS = 6  # output slots shown side by side (o0 = the generator's + up to 5 ensemble outputs)
STATUS_CHOICES = [("pending", "pending"), ("accepted", "accepted"), ("edited", "edited"),
                  ("rejected", "rejected"), ("disagreements", "disputed"), ("auto-filtered", "auto-filtered"),
                  ("skipped for now", "skipped"), ("any", "")]
TYPE_CHOICES = [("any", ""), ("A (needs input)", "A"), ("B (no input)", "B")]
CONSENSUS_CHOICES = [("any", ""), ("passes τ", "pass"), ("below τ", "fail"), ("not ensembled", "none")]
SORT_CHOICES = [("generation order", "seq"), ("newest first", "-seq"), ("min pairwise ↑", "min_pairwise"),
                ("min pairwise ↓", "-min_pairwise"), ("agreement of the choice ↑", "agreement"),
                ("agreement of the choice ↓", "-agreement"), ("quality ↑ (pick a scorer)", "quality"),
                ("quality ↓ (pick a scorer)", "-quality"), ("recently reviewed", "reviewed")]
SOURCE_CHOICES = [("any", ""), ("the instruction prompt", "instruction_prompt"),
                  ("found in an instance completion", "instance_completion")]
QUEUE_HEADERS = ["#", "status", "type", "generator", "min RL", "pass", "instruction", "input", "output", "id"]
LOG_HEADERS = ["#", "reviewer", "at", "action", "version", "reason"]
GUIDELINES_NONE = ("*No guidelines yet.* An admin writes them here (or in the `review_guidelines` setting): "
                   "what to accept, what to fix, what to reject.")

SLOTS = [f"slot_{i}" for i in range(MAX_OUTPUTS)]
SLOT_COLS = [f"slot_col_{i}" for i in range(MAX_OUTPUTS)]
#: what every "show a candidate" handler returns, in this order (the wiring maps the names to components)
VIEW = ["header", "instruction", "input", *SLOT_COLS, *SLOTS, "heatmap", "explanation", "edit_instruction",
        "edit_input", "edit_output", "form_token", "reject_reason", "log", "current", "open_id", "saved_box",
        "saved_output", "diff", "comments"]
COMMENT_HEADERS = ["author", "at", "comment"]
#: the τ line on the consensus histogram: one thin bar of its own colour just left of τ's bin edge
TAU_SIDE = "τ"
#: shown without a login (static text: no name in it)
NO_LOGIN_NOTE = ("**No login:** reviewer names are typed, not verified — anyone can review under any name, and "
                 "\"undo my last action\" cannot tell people apart. Start the app with `--users FILE` for a team.")
#: the edit form's Save sends the form token the page showed when the reviewer began typing in the form, so a
#: save typed over a form that re-rendered meanwhile is refused (curate.review.check_form); see HEAD
SAVE_EDIT_JS = ("(...args) => {{ const v = args.slice(0, {n}); v[{n} - 1] = window.__curateTypedOn || \"\"; "
                "window.__curateTypedOn = null; return v; }}")
ORIGINAL_LABELS = {"instruction": "Instruction (as generated)", "input": "Input (as generated)"}
EDITED_LABELS = {"instruction": "Instruction (reviewed version: the diff below shows the original)",
                 "input": "Input (reviewed version: the diff below shows the original)"}
#: what a live refresh of the open candidate rewrites: its display, never the edit form (the reviewer may be
#: typing in it) nor the id box
LIVE_VIEW = ["header", "instruction", "input", *SLOT_COLS, *SLOTS, "heatmap", "explanation", "log", "current"]
QUEUE = ["queue", "page", "page_info", "bulk_choices"]
THRESHOLD = ["pass_count", "histogram", "accept_all"]
QUALITY = ["q_count", "q_hist", "q_min"]
CONFIRM = ["confirm_box", "confirm_text", "confirm_count"]


class ReviewHandlers(TabHandlers):
    """The Review tab's handlers."""

    # -- app load -----------------------------------------------------------------------------------------
    def ui_load(self, reviewer: str, request: gr.Request) -> dict:
        """Reviewer box from the login (locked), the note that names are not verified without a login, and
        the generator-model filter's choices."""
        user = self.login(request)
        scorers = self.store().stored_scorers()
        admin = self.role(request) == "admin"
        return {"reviewer": gr.update(value=user, interactive=False) if user else gr.update(),
                "login_note": gr.update(value=NO_LOGIN_NOTE, visible=not user),
                "admin_tools": gr.update(visible=admin), "bulk_box": gr.update(visible=admin),
                # admins, when there can be disagreements (overlap, or some left from an earlier setting)
                "disagreements_tab": gr.update(visible=admin and (
                    self.quorum > 1 or self.store().review_counts().get("disputed", 0) > 0)),
                "team_note": gr.update(value=self._team_note(user), visible=self.quorum > 1),
                "f_model": gr.update(choices=[("any", "")] + review.generator_choices(self.store())),
                "q_scorer": gr.update(choices=[("off", "")] + [(f"{r['scorer']} ({r['scored']:,} scored)", r["scorer"])
                                                               for r in scorers])}

    def _team_note(self, user: str | None) -> str:
        return (f"Team review: each candidate needs {self.quorum} agreeing reviews; your queue of pending ones "
                "leaves out those you reviewed. Disagreements go to an admin (Disagreements tab)."
                + ("" if user else " Without a login your queue cannot tell your reviews from others'."))

    # -- queue --------------------------------------------------------------------------------------------
    @user_errors
    def ui_queue(self, f: review.QueueFilter, page: float | None, step: int | None = None,
                 request: gr.Request = None) -> dict:
        """One page of the queue (``step`` ±1 moves to the previous / next page). With overlap, a logged-in
        reviewer's pending queue leaves out what they have voted on."""
        f = f.for_reviewer(self.login(request), self.quorum)
        res = review.queue_page(self.store(), f, int(page or 1) + int(step or 0))
        return self._queue_view(res, self._skips(request))

    def _skips(self, request: gr.Request | None) -> str:
        """The skipped candidates, counted apart (they are still pending): yours with a login, else anyone's."""
        user = self.login(request)
        n = self.store().skip_counts(user)["mine" if user else "skipped"]
        return f" · {n:,} skipped for now{' by you' if user else ''} (Status: skipped for now)" if n else ""

    def _queue_view(self, res: dict, skips: str = "") -> dict:
        rows = [[str(r["seq"]), r["review_status"] if r["status"] == "ok" else "auto-filtered", r["task_type"],
                 r["generator_model"], _num(r["min_pairwise"]),
                 "" if r["passes"] is None else ("yes" if r["passes"] else "no"),
                 r["instruction"], r["input"], r["output"], r["id"]] for r in res["rows"]]
        first = (res["page"] - 1) * res["page_size"] + 1
        info = (f"{plural(res['total'], 'candidate')} · page {res['page']} of {res['pages']}"
                + (f" · rows {first:,}–{first + len(rows) - 1:,}" if rows else " · nothing matches") + skips)
        picks = [(f"#{r['seq']}", f"{r['id']}:{r['version']}") for r in res["rows"]]
        # the bulk box's rows are a State here: a choices update would re-render the page on every refresh
        # (and collapse a selection the reviewer is typing over in the edit form); the box loads them itself
        return {"queue": pd.DataFrame(rows, columns=QUEUE_HEADERS), "page": res["page"], "page_info": info,
                "bulk_choices": picks}

    @user_errors
    def ui_threshold(self, f: review.QueueFilter, request: gr.Request = None) -> dict:
        """τ moved: pass count, histogram with the threshold, and the queue's first page."""
        f = f.for_reviewer(self.login(request), self.quorum)
        v = review.threshold_view(self.store(), f, 1)
        out = self._threshold_fields(v)
        out.update(self._queue_view(v["queue"], self._skips(request)))
        return out

    @user_errors
    def ui_refresh(self, f: review.QueueFilter, page: float | None, request: gr.Request = None) -> dict:
        """After a review: counts and the current queue page (run after the next candidate is shown)."""
        out = self._threshold_view(f.tau)
        out.update(self.ui_queue(f, page, request=request))
        return out

    # -- the quality threshold (scores from curate.quality, e.g. `curate score`) ---------------------------
    @user_errors
    def ui_quality_scorer(self, f: review.QueueFilter) -> dict:
        """A scorer was picked: the slider spans its scores, starting at the lowest (nothing filtered yet)."""
        s = review.quality_summary(self.store(), f.quality_scorer, None)  # at no minimum: the lowest score
        lo, hi = s["min"], s["max"]
        slider = (gr.update(minimum=lo, maximum=hi if hi > lo else lo + 1, value=lo, interactive=True)
                  if lo is not None else gr.update(value=0, interactive=False))
        return {**self._quality_view(s, f.model_copy(update={"quality_min": lo})), "q_min": slider}

    @user_errors
    def ui_quality(self, f: review.QueueFilter) -> dict:
        """The quality slider moved: its count and histogram, τ's counts and the queue's first page."""
        s = review.quality_summary(self.store(), f.quality_scorer, f.quality_min)
        return {**self._quality_view(s, f), "q_min": gr.update()}

    def _quality_view(self, s: dict, f: review.QueueFilter) -> dict:
        scorer = f.quality_scorer
        if s["scorer"] is None:
            text = "no quality threshold (pick a scorer; `curate score` stores scores)"
        elif not s["scored"]:
            text = f"{scorer}: nothing scored yet (`curate score --scorer {scorer}`)"
        else:
            text = (f"{s['passing']:,} of {s['scored']:,} scored candidates have a chosen output scoring ≥ "
                    f"{s['quality_min']:.3g} ({scorer})")
        hist = pd.DataFrame([{"lo": round(b["lo"], 3), "n": b["n"], "side": b["side"]} for b in s["histogram"]],
                            columns=["lo", "n", "side"])
        return {**self.ui_threshold(f), "q_count": text, "q_hist": hist}

    def _threshold_view(self, tau: float) -> dict:
        return self._threshold_fields(review.threshold_summary(self.store(), tau))

    @staticmethod
    def _threshold_fields(s: dict) -> dict:
        tau = s["tau"]
        rows = [{"lo": round(b["lo"], 2), "n": b["n"], "side": b["side"]} for b in s["histogram"]]
        if rows:  # the τ line: as tall as the tallest bin, just below τ (bins start at multiples of 0.01)
            rows.append({"lo": max(0.0, round(tau - 0.002, 3)), "n": max(1, max(r["n"] for r in rows)),
                         "side": TAU_SIDE})
        hist = pd.DataFrame(rows, columns=["lo", "n", "side"])
        text = (f"{s['passing']:,} of {plural(s['scored'], 'ensembled candidate')} "
                f"{'passes' if s['scored'] == 1 else 'pass'} at τ = {tau:.2f} ({s['pending_passing']:,} of them "
                "still pending)")
        n = s["pending_passing"]
        return {"pass_count": text, "histogram": hist,
                "accept_all": gr.update(value=("Accept the 1 pending candidate that passes…" if n == 1 else
                                               f"Accept all {n:,} pending that pass…"),
                                        interactive=s["pending_passing"] > 0)}

    # -- one candidate ------------------------------------------------------------------------------------
    def _view(self, cid: str | None, tau: float, note: str = "", shown: dict | None = None) -> dict:
        """Everything the candidate pane shows (see VIEW); ``cid`` None shows an empty pane with ``note``.

        ``shown``: the ``current`` state of the pane before (its output count ``k`` lets unchanged slot
        columns be skipped: every component update costs Gradio a config rebuild)."""
        if not cid:
            out = {"header": note or "No candidate open.", "instruction": "", "input": "",
                   "heatmap": pd.DataFrame(), "explanation": "", "edit_instruction": "", "edit_input": "",
                   "edit_output": "", "form_token": "", "reject_reason": "", "log": pd.DataFrame(columns=LOG_HEADERS),
                   "current": None, "open_id": "", "saved_box": gr.update(visible=False), "saved_output": "",
                   "diff": [], "comments": pd.DataFrame(columns=COMMENT_HEADERS)}
            out["instruction"] = gr.update(value="", label=ORIGINAL_LABELS["instruction"])
            out["input"] = gr.update(value="", label=ORIGINAL_LABELS["input"])
            for i in range(MAX_OUTPUTS):
                out[SLOTS[i]] = gr.update(value="", label=f"o{i}")
                out[SLOT_COLS[i]] = gr.update(visible=i < 3)
            return out
        d = review.candidate(self.store(), cid, float(tau))
        return self._detail_view(d, note, (shown or {}).get("k"), float(tau))

    @staticmethod
    def _signature(d: dict, tau: float | None) -> list:
        """What the pane's display shows of a candidate: when it moves, a live refresh re-renders the pane."""
        c = d["consensus"]
        return [d["version"], len(d["outputs"]), len(d["log"]),
                None if not c else [c["chosen_index"], c["min_pairwise"], c["reason"]], tau]

    def _detail_view(self, d: dict, note: str = "", shown_k: int | None = None, tau: float | None = None) -> dict:
        c = d["consensus"]
        status = d["review_status"]
        who = f" by {d['reviewed_by']} at {_when(d['reviewed_at'])}" if d["reviewed_by"] else ""
        line1 = (f"#{d['seq']} · type {d['task_type']} · generator {d['generator_model']} · {status}"
                 f"{' (' + d['reason'] + ')' if d['status'] != 'ok' and d['reason'] else ''}{who} · version "
                 f"{d['version']}")
        if c:
            line2 = (f"consensus: {c['reason']}, o{c['chosen_index']} chosen, min pairwise "
                     f"{c['min_pairwise']:.3f} → {'passes' if c['passes'] else 'below'} τ = {c['tau']:.2f}")
        else:
            line2 = "not ensembled yet: run an ensemble job (Run tab) to get outputs from the other models"
        if d["reject_reason"]:
            line2 += f" · rejected because: {d['reject_reason']}"
        if note:
            line2 += f" · {note}"
        if d["skipped_by"]:
            line2 += " · skipped for now by " + ", ".join(d["skipped_by"])
        out = {"header": line1 + "\n" + line2, "instruction": d["instruction"], "input": d["input"],
               "explanation": c["explanation"] if c else "", "reject_reason": "",
               "current": {"id": d["id"], "version": d["version"], "seq": d["seq"], "k": len(d["outputs"]),
                           "sig": self._signature(d, tau)},
               "open_id": d["id"]}
        outs = d["outputs"]
        same_columns = shown_k == len(outs)
        for i in range(MAX_OUTPUTS):
            if i < len(outs):
                o = outs[i]
                role = "generator" if o["style"] == "generator" else o["style"]
                label = (f"o{i} · {o['model']} ({role}) · agreement {_num(o['agreement'], '{:.2f}')}"
                         f"{' · ✓ consensus choice' if o['chosen'] else ''}")
                out[SLOTS[i]] = gr.update(value=o["text"], label=label)
                out[SLOT_COLS[i]] = gr.skip() if same_columns else gr.update(visible=True)
            else:
                out[SLOTS[i]] = gr.skip() if same_columns else gr.update(value="", label=f"o{i}")
                out[SLOT_COLS[i]] = gr.skip() if same_columns else gr.update(visible=False)
        if len(outs) > MAX_OUTPUTS:
            out["header"] += f" · {len(outs) - MAX_OUTPUTS} more outputs not shown (see the API /candidate)"
        out["heatmap"] = heatmap(c["pairwise"], c["models"]) if c else pd.DataFrame()
        final = d["final"] or {"instruction": d["instruction"], "input": d["input"],
                               "output": _default_output(d)}
        out.update(edit_instruction=final["instruction"], edit_input=final["input"], edit_output=final["output"],
                   form_token=review.form_token(d["id"], d["version"], final))
        out["log"] = pd.DataFrame([[str(r["id"]), r["reviewer"], _when(r["at"]), r["action"], str(r["version"]),
                                    r["reason"] or ""] for r in d["log"]], columns=LOG_HEADERS)
        out.update(self._saved_view(d))
        out["comments"] = comments_table(d["comments"])
        return out

    @staticmethod
    def _saved_view(d: dict) -> dict:
        """The reviewed version beside the original: the main panel shows the reviewed instruction and input
        (labelled so), the saved box the reviewed output and a word-level diff of all three against the texts
        the review started from (the generated instruction and input, the consensus choice). Plain text only:
        the diff is gr.HighlightedText pieces."""
        final, orig = d["final"], d["original"]
        changed = [k for k in ("instruction", "input", "output") if final and final[k] != orig[k]]
        out = {}
        for k in ("instruction", "input"):
            edited = k in changed
            out[k] = gr.update(value=final[k] if edited else d[k],
                               label=EDITED_LABELS[k] if edited else ORIGINAL_LABELS[k])
        if not changed:
            return {**out, "saved_box": gr.update(visible=False), "saved_output": "", "diff": []}
        pieces: list[tuple[str, str | None]] = []
        for k in changed:
            pieces += [(f"{k}: ", None), *review.word_diff(orig[k], final[k]), ("\n", None)]
        return {**out, "saved_box": gr.update(visible=True), "saved_output": final["output"], "diff": pieces}

    @user_errors
    def ui_open(self, candidate_id: str, tau: float) -> dict:
        cid = (candidate_id or "").strip()
        if not cid:
            raise gr.Error("Paste a candidate id, or click a row of the queue.")
        return self._view(cid, tau)

    @user_errors
    def ui_live_candidate(self, current: dict | None, tau: float | None) -> dict:
        """The open candidate's pane as the store holds it now at ``tau``, when that differs from what the pane
        shows (a job ensembled it, someone reviewed it, τ moved); else nothing is sent. The edit form is left
        alone (see LIVE_VIEW), and so is the version actions are based on: after someone else's review the
        header says so, and an action on the old version is refused as a conflict."""
        if not current or not current.get("id") or not _valid_tau(tau):
            return defaultdict(gr.skip)
        d = review.candidate(self.store(), current["id"], float(tau))
        sig = self._signature(d, float(tau))
        if sig == current.get("sig"):
            return defaultdict(gr.skip)
        changed = d["version"] != current.get("version")
        note = (f"reviewed since you opened it (now version {d['version']}): press Open / reload to act on it"
                if changed else "")
        out = self._detail_view(d, note, current.get("k"), float(tau))
        out = {k: out[k] for k in LIVE_VIEW}
        out["current"] = {**current, "k": len(d["outputs"]), "sig": sig}  # the version stays the one acted on
        return out

    @user_errors
    def ui_select(self, tau: float, evt: gr.SelectData) -> dict:
        """A queue row was clicked: open its candidate (the id is the row's last column)."""
        row = evt.row_value or []
        return self._view(row[-1] if row else None, tau)

    @user_errors
    def ui_prev(self, current: dict | None, f: review.QueueFilter) -> dict:
        """Open the candidate before the open one in generation order (any review status; see
        :func:`curate.review.previous_candidate`), e.g. the one just reviewed."""
        prev = review.previous_candidate(self.store(), f, (current or {}).get("seq"))
        if not prev:
            raise gr.Error("No previous candidate under these filters." if current else
                           "Open a candidate first (click a queue row).")
        return self._view(prev, f.tau, "", current)

    @user_errors
    def ui_next(self, current: dict | None, f: review.QueueFilter, request: gr.Request = None) -> dict:
        nxt = review.next_candidate(self.store(), f, (current or {}).get("seq"), reviewer=self.login(request),
                                    quorum=self.quorum)
        return self._view(nxt, f.tau, "" if nxt else self._nothing_pending(), current)

    def _nothing_pending(self) -> str:
        if self.store().count_candidates(None) == 0:  # a new store: say where candidates come from
            return "Nothing generated yet: start a generation job in the Run tab (then an ensembling job)."
        return "No pending candidate left under these filters."

    # -- review actions -----------------------------------------------------------------------------------
    def _act(self, action: Callable[..., Candidate], current: dict | None, history: list | None,
             f: review.QueueFilter, reviewer: str, stay: bool = False, **kw: Any) -> dict:
        """Run one review action on the open candidate, then open the next pending one (``stay``: show this
        one as saved, e.g. an edit with its diff).

        On a conflict (someone else reviewed it since it was opened) nothing is written: the reviewer gets a
        warning and the pane reloads the candidate as it is now."""
        if not current:
            raise gr.Error("Open a candidate first (click a queue row).")
        try:
            row = action(self.store(), current["id"], reviewer=reviewer, version=current["version"],
                         quorum=self.quorum, **kw)
        except ConflictError as e:
            warn(f"Not saved: {e}")
            out = self._view(current["id"], f.tau, "reloaded after a conflict: review it again")
            out["history"] = history or []
            return out
        except Exception as e:  # noqa: BLE001 - every other error becomes a clear message (as_gr_error)
            raise as_gr_error(e) from e
        if stay:
            out = self._view(row.id, f.tau, f"saved as version {row.version}: the diff below shows what changed",
                             current)
        else:
            nxt = review.next_candidate(self.store(), f, current["seq"], reviewer=reviewer, quorum=self.quorum)
            out = self._view(nxt, f.tau, "" if nxt else self._nothing_pending(), current)
        out["history"] = (history or []) + [[row.id, row.version]]
        return out

    def ui_accept(self, current: dict | None, output_index: int | None, reviewer: str, history: list | None,
                  f: review.QueueFilter, request: gr.Request) -> dict:
        """Accept output ``output_index`` (None: the consensus choice), then open the next pending one."""
        return self._act(review.accept, current, history, f, self.reviewer(reviewer, request),
                         output_index=output_index)

    def ui_reject(self, current: dict | None, reason: str, reviewer: str, history: list | None,
                  f: review.QueueFilter, request: gr.Request) -> dict:
        return self._act(review.reject, current, history, f, self.reviewer(reviewer, request), reason=reason)

    def ui_edit(self, current: dict | None, instruction: str, input: str, output: str, reviewer: str,
                history: list | None, f: review.QueueFilter, form: str | None, typed_on: str | None,
                request: gr.Request) -> dict:
        """Save the edit form. ``form``: the token of the form as rendered; ``typed_on``: the token the page
        showed when the reviewer began typing in the form (curate.review.check_form refuses a stale save)."""
        who = self.reviewer(reviewer, request)
        if current:
            try:
                review.check_form(current, form, typed_on, {"instruction": instruction or "", "input": input or "",
                                                             "output": output or ""})
            except CurateError as e:
                raise as_gr_error(e) from e
        return self._act(review.edit, current, history, f, who, stay=True, instruction=instruction,
                         input=input or "", output=output)

    def ui_undo(self, history: list | None, reviewer: str, tau: float, request: gr.Request) -> dict:
        """Undo this session's last action and show that candidate as restored."""
        history = list(history or [])
        if not history:
            raise gr.Error("Nothing to undo: you have not reviewed anything in this session.")
        cid, version, *kind = history[-1]
        who = self.reviewer(reviewer, request)
        try:
            if kind == ["skip"]:  # a skip is no review: undoing it puts the candidate back in your queue
                review.unskip(self.store(), cid, reviewer=who)
            else:
                review.undo(self.store(), cid, reviewer=who, version=version, quorum=self.quorum)
        except Exception as e:  # noqa: BLE001 - a clear (escaped) message for every error
            raise as_gr_error(e) from e
        out = self._view(cid, tau, "your skip was undone" if kind == ["skip"] else "your last action was undone")
        out["history"] = history[:-1]
        return out

    # -- the reviewer's day: skip, comments, guidelines ---------------------------------------------------
    def ui_skip(self, current: dict | None, reviewer: str, history: list | None, f: review.QueueFilter,
                request: gr.Request = None) -> dict:
        """Skip the open candidate for now (it stays pending, out of your queue), then open the next pending
        one; Undo puts it back."""
        if not current:
            raise gr.Error("Open a candidate first (click a queue row).")
        who = self.reviewer(reviewer, request)
        try:
            review.skip(self.store(), current["id"], reviewer=who)
            nxt = review.next_candidate(self.store(), f, current["seq"], reviewer=who, quorum=self.quorum)
        except Exception as e:  # noqa: BLE001 - a clear (escaped) message for every error
            raise as_gr_error(e) from e
        out = self._view(nxt, f.tau, "" if nxt else self._nothing_pending(), current)
        out["history"] = (history or []) + [[current["id"], current["version"], "skip"]]
        return out

    def ui_comment(self, current: dict | None, text: str, reviewer: str, request: gr.Request = None) -> dict:
        """Add a comment to the open candidate (shown as text under it, with its author and time)."""
        if not current:
            raise gr.Error("Open a candidate first (click a queue row).")
        who = self.reviewer(reviewer, request)
        try:
            review.comment(self.store(), current["id"], author=who, text=text)
        except Exception as e:  # noqa: BLE001
            raise as_gr_error(e) from e
        return {"comments": comments_table(self.store().comments(current["id"])), "comment_text": ""}

    def ui_guidelines(self, request: gr.Request = None) -> dict:
        """The guidelines panel (sanitised Markdown) and, for admins, its editor filled with the source."""
        g = review.guidelines(self.store(), self.settings.review_guidelines)
        admin = self.role(request) == "admin"
        by = f"\n\n*Guidelines saved by {md_literal(g['author'])} at {_when(g['at'])}.*" if g["author"] else ""
        return {"guidelines": safe_markdown(g["text"]) + by if g["text"] else GUIDELINES_NONE,
                "guidelines_admin": gr.update(visible=admin), "guidelines_edit": g["text"]}

    def ui_guidelines_save(self, text: str, reviewer: str, request: gr.Request = None) -> dict:
        """An admin saves new guidelines (every version is kept; the latest is shown to everyone)."""
        self.require_admin(request, "edit the guidelines")
        try:
            review.set_guidelines(self.store(), text, author=self.reviewer(reviewer, request))
        except Exception as e:  # noqa: BLE001
            raise as_gr_error(e) from e
        info("Guidelines saved: reviewers see them when they open or reload the page.")
        return self.ui_guidelines(request)

    # -- bulk accept --------------------------------------------------------------------------------------
    @user_errors
    def ui_confirm_all(self, tau: float, q_scorer: str | None = None, q_min: float | None = None,
                       request: gr.Request = None) -> dict:
        self.require_admin(request, "accept all that pass")
        tau = checks.tau(tau, "Accept all that pass")
        n = self.store().count_pending_passing(tau, quality_scorer=q_scorer or None, quality_min=q_min)
        also = f" and score ≥ {float(q_min):.3g} ({q_scorer})" if q_scorer and q_min is not None else ""
        if n == 0:
            info(f"No pending candidate passes at τ = {float(tau):.2f}{also}.")
            return self.ui_confirm_cancel()
        return {"confirm_box": gr.update(visible=True), "confirm_count": n,
                "confirm_text": f"Accept the consensus choice of all {n:,} pending candidates that pass at "
                                f"τ = {float(tau):.2f}{also}? Each is logged under your name; undo works one by "
                                "one."}

    def ui_accept_all(self, tau: float, count: int | None, reviewer: str, q_scorer: str | None,
                      q_min: float | None, request: gr.Request) -> dict:
        self.require_admin(request, "accept all that pass")
        who = self.reviewer(reviewer, request)
        try:
            tau = checks.tau(tau, "Accept all that pass")
            res = review.accept_all_passing(self.store(), tau, reviewer=who, expected=count,
                                            quality_scorer=q_scorer or None, quality_min=q_min, quorum=self.quorum)
        except ConflictError as e:
            raise gr.Error(str(e), title="The count changed") from e
        except Exception as e:  # noqa: BLE001
            raise as_gr_error(e) from e
        info(f"Accepted {plural(res['accepted'], 'candidate')}"
                + (f"; {res['skipped']} skipped (reviewed by someone else meanwhile)" if res["skipped"] else ""))
        out = self.ui_confirm_cancel()
        out.update(self._threshold_view(float(tau)))
        return out

    def ui_confirm_cancel(self) -> dict:
        return {"confirm_box": gr.update(visible=False), "confirm_text": "", "confirm_count": None}

    # -- bulk accept / reject of the selected rows (admins) -----------------------------------------------
    @staticmethod
    def ui_bulk_rows(choices: list | None) -> dict:
        """The bulk box shows the rows of the queue page now shown, none ticked."""
        return {"bulk_pick": gr.update(choices=[tuple(c) for c in (choices or [])], value=[])}

    @staticmethod
    def ui_bulk_select_all(choices: list | None) -> dict:
        """Tick every row of the shown page."""
        return {"bulk_pick": gr.update(choices=[tuple(c) for c in (choices or [])],
                                       value=[v for _, v in (choices or [])])}

    @user_errors
    def ui_bulk(self, picks: list[str] | None, action: str, reason: str, reviewer: str,
                request: gr.Request = None) -> dict:
        """Accept or reject the ticked rows as decisions; a row reviewed since the page was shown is skipped."""
        self.require_admin(request, f"{action} the selected rows")
        who = self.reviewer(reviewer, request)
        if not picks:
            raise gr.Error("Tick some rows of the page first (or Select all on this page).")
        items = [(cid, int(v)) for cid, _, v in (p.rpartition(":") for p in picks)]
        res = review.bulk_review(self.store(), items, action, reviewer=who, reason=reason, quorum=self.quorum)
        done = "accepted" if action == "accept" else "rejected"
        skipped = f"; {res['skipped']} skipped (reviewed since the page was shown)" if res["skipped"] else ""
        info(f"{res['done']} {done} as {who}{skipped}.")
        return {"bulk_status": f"{res['done']} {done} as {who}{skipped}"}

    def ui_bulk_accept(self, picks: list[str] | None, reason: str, reviewer: str,
                       request: gr.Request = None) -> dict:
        return self.ui_bulk(picks, "accept", reason, reviewer, request)

    def ui_bulk_reject(self, picks: list[str] | None, reason: str, reviewer: str,
                       request: gr.Request = None) -> dict:
        return self.ui_bulk(picks, "reject", reason, reviewer, request)


def comments_table(comments: list[dict]) -> pd.DataFrame:
    """A candidate's comments as a string table (author, time, text): text, never markup."""
    return pd.DataFrame([[c["author"], _when(c["at"]), c["text"]] for c in comments], columns=COMMENT_HEADERS)


def threshold_slider(value: float) -> gr.Slider:
    """The τ slider, whose value reaches the handlers as typed: Gradio's Slider refuses a value beyond its range
    before any handler runs, marking every output of the event with a red Error; here :func:`tau_checked`
    answers once, and the queue filter names the range for other events. (An instance attribute: a Slider
    subclass would make Gradio write a ``.pyi`` file beside this module.)"""
    slider = gr.Slider(0.0, 1.0, value=value, step=0.01,
                       label="Consensus threshold τ (min pairwise Rouge-L must be above it)", elem_id="curate-tau")
    slider.preprocess = lambda payload: None if payload is None else float(payload)
    return slider


def _valid_tau(tau: Any) -> bool:
    try:
        return tau is not None and 0.0 <= float(tau) <= 1.0
    except (TypeError, ValueError):
        return False


def tau_checked(fn: Callable[..., dict]) -> Callable[..., dict]:
    """Wrap a :func:`~curate.ui.wiring.with_filter` handler fed by the τ slider: a τ outside [0, 1] (typed into
    the slider's box) gives one warning that names the range, the nearest valid τ is used, and the box is set
    to it (the wrapped dict gains ``"tau"``); an empty box changes nothing. No error, so no output is marked
    failed."""
    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def inner(*args, **kwargs):
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        raw = bound.arguments.get("tau")
        try:
            tau = float(raw)
        except (TypeError, ValueError):
            tau = math.nan
        if math.isnan(tau):
            return defaultdict(gr.skip)  # the box is empty or half typed ("-")
        fixed = None
        if not _valid_tau(tau):
            fixed = min(max(tau, 0.0), 1.0)
            try:
                checks.tau(raw, "Consensus threshold")
            except CurateError as e:
                warn(f"{e}; using τ = {fixed:g}")
            bound.arguments["tau"] = fixed
        out = fn(*bound.args, **bound.kwargs)
        out["tau"] = gr.skip() if fixed is None else fixed
        return out

    inner.__signature__ = sig
    return inner


def _default_output(d: dict) -> str:
    c = d["consensus"]
    if c and c["chosen_index"] is not None and c["chosen_index"] < len(d["outputs"]):
        return d["outputs"][c["chosen_index"]]["text"]
    return d["output"]


def heatmap(pairwise: list[list[float]], models: list[str]):
    """The pairwise Rouge-L matrix as a small table with cells shaded by value (a pandas Styler)."""
    names = [f"o{i} {m}" for i, m in enumerate(models)]
    df = pd.DataFrame([[f"{v:.2f}" for v in row] for row in pairwise], columns=[f"o{i}" for i in range(len(names))])
    df.insert(0, "", names)
    shades = pd.DataFrame([[""] + [_shade(v) for v in row] for row in pairwise], columns=df.columns)
    return df.style.apply(lambda _: shades, axis=None)


def _shade(v: float) -> str:
    v = min(max(float(v), 0.0), 1.0)
    return f"background-color: rgba(37, 99, 235, {0.08 + 0.72 * v:.2f}); color: {'white' if v > 0.6 else 'black'}"


# -- layout ----------------------------------------------------------------------------------------------------
def session_state(ui: UI) -> None:
    """The Review tab's per-session state (created beside the header, outside the tabs)."""
    ui.add("current", gr.State(None))       # {"id", "version", "seq"} of the open candidate (per session)
    ui.add("history", gr.State([]))         # this session's actions, for undo: [[id, version], ...]
    ui.add("no_output", gr.State(None))     # "accept the consensus choice"
    ui.add("typed_on", gr.State(""))        # the form token when typing began (the Save event's js sets it)
    for name, v in (("page_same", 0), ("page_prev", -1), ("page_next", 1)):
        ui.add(name, gr.State(v))           # constant inputs: page steps


def layout(ui: UI, settings: Settings) -> None:
    with tab(ui, "Review", "review"):
        ui.add("team_note", gr.Markdown("", visible=False, elem_id="curate-team-note"))
        _guidelines(ui)
        _queue_and_thresholds(ui, settings)
        _candidate_pane(ui)


def _guidelines(ui: UI) -> None:
    with gr.Accordion("Reviewing guidelines", open=False, elem_id="curate-guidelines-box"):
        ui.add("guidelines", gr.Markdown(GUIDELINES_NONE, sanitize_html=True, elem_id="curate-guidelines"))
        with gr.Column(visible=False, elem_id="curate-guidelines-admin") as admin:
            ui.add("guidelines_admin", admin)
            ui.add("guidelines_edit", gr.Textbox("", label="Guidelines (Markdown; admins)", lines=6,
                                                 elem_id="curate-guidelines-edit"))
            ui.add("guidelines_save", gr.Button("Save the guidelines", size="sm",
                                                elem_id="curate-guidelines-save"))


def _queue_and_thresholds(ui: UI, settings: Settings) -> None:
    with gr.Row():
        with gr.Column(scale=3):
            with gr.Row():
                ui.add("f_status", gr.Dropdown(STATUS_CHOICES, value="pending", label="Status", min_width=120))
                ui.add("f_type", gr.Dropdown(TYPE_CHOICES, value="", label="Task type", min_width=120))
                ui.add("f_model", gr.Dropdown([("any", "")], value="", label="Generator / source", min_width=160))
                ui.add("f_consensus", gr.Dropdown(CONSENSUS_CHOICES, value="", label="Consensus",
                                                  min_width=120))
                ui.add("f_sort", gr.Dropdown(SORT_CHOICES, value="seq", label="Sort", min_width=140))
            with gr.Row():
                ui.add("f_search", gr.Textbox(label="Search instruction / input / output", scale=4,
                                              placeholder="text, then Enter", elem_id="curate-search"))
                ui.add("prev_page", gr.Button("◀", size="sm", scale=0, min_width=40, elem_id="curate-prev-page"))
                ui.add("page", gr.Number(1, label="Page", precision=0, minimum=1, scale=0, min_width=80,
                                         elem_id="curate-page"))
                ui.add("next_page", gr.Button("▶", size="sm", scale=0, min_width=40, elem_id="curate-next-page"))
            with gr.Accordion("More filters: source, reviewer, score ranges", open=False,
                              elem_id="curate-more-filters"):
                with gr.Row():
                    ui.add("f_source", gr.Dropdown(SOURCE_CHOICES, value="", label="Instruction source",
                                                   min_width=160, elem_id="curate-f-source"))
                    ui.add("f_reviewer", gr.Textbox("", label="Reviewed by", placeholder="a reviewer, then Enter",
                                                    min_width=140, elem_id="curate-f-reviewer"))
                    ui.add("f_rouge_min", gr.Number(None, label="min RL ≥", minimum=0, maximum=1, step=0.05,
                                                    min_width=90, elem_id="curate-f-rouge-min"))
                    ui.add("f_rouge_max", gr.Number(None, label="min RL ≤", minimum=0, maximum=1, step=0.05,
                                                    min_width=90, elem_id="curate-f-rouge-max"))
            ui.add("page_info", gr.Textbox(show_label=False, container=False, interactive=False,
                                           elem_id="curate-page-info"))
            ui.add("queue", gr.Dataframe(headers=QUEUE_HEADERS, datatype=["str"] * len(QUEUE_HEADERS),
                                         interactive=False, wrap=False, max_height=300, max_chars=90,
                                         label="Candidates (click a row to open it)", elem_id="curate-queue",
                                         column_widths=["55px", "95px", "50px", "150px", "70px", "55px", "30%",
                                                        "18%", "22%", "90px"]))
            with gr.Accordion("Bulk: accept or reject the rows you tick (admins)", open=False, visible=True,
                              elem_id="curate-bulk") as bulk:
                ui.add("bulk_box", bulk)
                ui.add("bulk_pick", gr.CheckboxGroup([], label="Rows of this page", elem_id="curate-bulk-pick"))
                ui.add("bulk_choices", gr.State([]))
                with gr.Row():
                    ui.add("bulk_load", gr.Button("Show this page's rows", size="sm", elem_id="curate-bulk-load"))
                    ui.add("bulk_all", gr.Button("Select all on this page", size="sm", elem_id="curate-bulk-all"))
                    ui.add("bulk_accept", gr.Button("Accept selected", size="sm", variant="primary",
                                                    elem_id="curate-bulk-accept"))
                    ui.add("bulk_reject", gr.Button("Reject selected", size="sm", variant="stop",
                                                    elem_id="curate-bulk-reject"))
                ui.add("bulk_reason", gr.Textbox("", label="Reason (optional)", elem_id="curate-bulk-reason"))
                ui.add("bulk_status", gr.Textbox("", show_label=False, interactive=False,
                                                 elem_id="curate-bulk-status"))
        with gr.Column(scale=2, min_width=300):
            ui.add("tau", threshold_slider(settings.consensus_threshold))
            ui.add("pass_count", gr.Textbox(label="Passing", interactive=False, elem_id="curate-pass-count"))
            ui.add("histogram", gr.BarPlot(x="lo", y="n", color="side", x_title="min pairwise Rouge-L",
                                           y_title="candidates", height=200, x_bin=None, x_lim=[0, 1],
                                           color_map={"passes τ": "#16a34a", "below τ": "#dc2626",
                                                      TAU_SIDE: "#111827"},
                                           colors_in_legend=[],  # Vega's legend is clipped: the label says it
                                           label="Min pairwise Rouge-L: green passes τ, red is below, the dark "
                                                 "line marks τ (exact matches pass at any τ)",
                                           elem_id="curate-histogram"))
            with gr.Column(elem_id="curate-admin-tools") as admin_tools:
                ui.add("admin_tools", admin_tools)
                ui.add("accept_all", gr.Button("Accept all that pass…", elem_id="curate-accept-all"))
                with gr.Group(visible=False, elem_id="curate-confirm") as confirm:
                    ui.add("confirm_box", confirm)
                    ui.add("confirm_text", gr.Textbox(label="Confirm", interactive=False,
                                                      elem_id="curate-confirm-text"))
                    ui.add("confirm_count", gr.State(None))
                    with gr.Row():
                        ui.add("confirm_yes", gr.Button("Yes, accept them", variant="primary",
                                                        elem_id="curate-confirm-yes"))
                        ui.add("confirm_no", gr.Button("Cancel", elem_id="curate-confirm-no"))
            with gr.Accordion("Quality threshold (scores from `curate score`)", open=False, elem_id="curate-quality"):
                ui.add("q_scorer", gr.Dropdown([("off", "")], value="", label="Scorer of the chosen output",
                                               elem_id="curate-q-scorer"))
                ui.add("q_max", gr.Number(None, label="Maximum quality (optional)", elem_id="curate-q-max"))
                ui.add("q_min", gr.Slider(0.0, 1.0, value=0.0, label="Minimum quality", interactive=False,
                                          elem_id="curate-q-min"))
                ui.add("q_count", gr.Textbox(label="Passing the quality threshold", interactive=False,
                                             elem_id="curate-q-count"))
                ui.add("q_hist", gr.BarPlot(x="lo", y="n", color="side", x_title="quality of the chosen output",
                                            y_title="candidates", height=180, x_bin=None,
                                            color_map={"passes": "#16a34a", "below": "#dc2626"},
                                            colors_in_legend=[], label="Chosen outputs' quality: green passes "
                                                                       "the minimum, red is below",
                                            elem_id="curate-q-hist"))


def _candidate_pane(ui: UI) -> None:
    with gr.Row(equal_height=True):
        ui.add("open_id", gr.Textbox(label="Candidate id", scale=4, elem_id="curate-open-id",
                                     placeholder="click a queue row, or paste an id and press Enter"))
        ui.add("open_btn", gr.Button("Open / reload", scale=0, min_width=120, elem_id="curate-open"))
    ui.add("header", gr.Textbox(label="Candidate", interactive=False, lines=2, elem_id="curate-header"))
    with gr.Row():
        ui.add("instruction", gr.Textbox(label="Instruction (as generated)", interactive=False, lines=2,
                                         scale=3, elem_id="curate-instruction"))
        ui.add("input", gr.Textbox(label="Input (as generated)", interactive=False, lines=2, scale=2,
                                   elem_id="curate-input"))
    with gr.Group(visible=False, elem_id="curate-saved") as saved:
        ui.add("saved_box", saved)
        ui.add("saved_output", gr.Textbox(label="Output (reviewed version)", interactive=False, lines=3,
                                          elem_id="curate-saved-output"))
        ui.add("diff", gr.HighlightedText([], label="What the review changed, word by word (− removed, + added)",
                                          color_map={"-": "#fca5a5", "+": "#86efac"}, show_legend=True,
                                          elem_id="curate-diff"))
    with gr.Row(equal_height=True):
        for i in range(MAX_OUTPUTS):
            with gr.Column(min_width=180, visible=i < 3) as col:
                ui.add(f"slot_col_{i}", col)
                ui.slots.append(ui.add(f"slot_{i}", gr.Textbox(
                    label=f"o{i}", interactive=False, lines=6, max_lines=14, elem_id=f"curate-output-{i}",
                    buttons=["copy"])))
                ui.slot_buttons.append(gr.Button(f"Accept o{i}", size="sm", elem_id=f"curate-accept-{i}",
                                                 elem_classes=["curate-slot-accept"]))
                ui.slot_index.append(gr.State(i))
    with gr.Row():
        ui.add("heatmap", gr.Dataframe(label="Pairwise Rouge-L (normalised, stemmed)", interactive=False,
                                       datatype="str", elem_id="curate-heatmap", max_height=260))
        ui.add("explanation", gr.Textbox(label="Why consensus chose this output", interactive=False, lines=4,
                                         elem_id="curate-explanation"))
    with gr.Row():
        ui.add("accept", gr.Button("Accept consensus choice [a]", variant="primary", elem_id="curate-accept"))
        ui.add("reject", gr.Button("Reject [r]", variant="stop", elem_id="curate-reject"))
        ui.add("prev", gr.Button("Previous [p]", elem_id="curate-prev"))
        ui.add("next", gr.Button("Next pending [n]", elem_id="curate-next"))
        ui.add("skip", gr.Button("Skip for now", elem_id="curate-skip"))
        ui.add("undo", gr.Button("Undo my last action [u]", elem_id="curate-undo"))
    ui.add("reject_reason", gr.Textbox(label="Reject reason (optional)", elem_id="curate-reject-reason"))
    with gr.Accordion("Edit (saved as a new version; the original is kept)", open=False, elem_id="curate-edit-box"):
        ui.add("edit_instruction", gr.Textbox(label="Instruction", lines=2, elem_id="curate-edit-instruction"))
        ui.add("edit_input", gr.Textbox(label="Input", lines=2, elem_id="curate-edit-input"))
        ui.add("edit_output", gr.Textbox(label="Output", lines=4, elem_id="curate-edit-output"))
        ui.add("form_token", gr.Textbox("", show_label=False, container=False, interactive=False,
                                        elem_id="curate-form-token", elem_classes=["curate-hidden"]))
        ui.add("save_edit", gr.Button("Save edit [Ctrl+Enter]", variant="primary", elem_id="curate-save-edit"))
    ui.add("log", gr.Dataframe(headers=LOG_HEADERS, datatype=["str"] * len(LOG_HEADERS), interactive=False,
                               label="Review log of this candidate", max_height=200, elem_id="curate-log"))
    ui.add("comments", gr.Dataframe(headers=COMMENT_HEADERS, datatype=["str"] * len(COMMENT_HEADERS),
                                    interactive=False, wrap=True, max_height=220, elem_id="curate-comments",
                                    label="Comments on this candidate (every reviewer's)"))
    with gr.Row(equal_height=True):
        ui.add("comment_text", gr.Textbox(label="Comment", placeholder="a note for the other reviewers", scale=4,
                                          elem_id="curate-comment-text"))
        ui.add("comment_add", gr.Button("Add comment", scale=0, min_width=140, elem_id="curate-comment-add"))


# -- wiring ----------------------------------------------------------------------------------------------------
def refresh_after(dep, ui: UI, h: ReviewHandlers):
    """After an action that reviews candidates (``dep``): the counts and the current queue page."""
    return on(dep.then, with_filter(h.ui_refresh), [*filter_inputs(ui), ui.page], THRESHOLD + QUEUE, ui,
              progress="hidden")


def wire(ui: UI, h: ReviewHandlers, demo: gr.Blocks) -> None:
    filters = filter_inputs(ui)
    view_h = [*VIEW, "history"]
    refresh = THRESHOLD + QUEUE
    queue, threshold, nxt = with_filter(h.ui_queue), with_filter(h.ui_threshold), with_filter(h.ui_next)

    load = on(demo.load, h.ui_load, [ui.reviewer],
              ["reviewer", "login_note", "admin_tools", "bulk_box", "disagreements_tab", "team_note", "f_model",
               "q_scorer"], ui)
    load = on(load.then, threshold, filters, refresh, ui)
    on(load.then, nxt, [ui.current, *filters], VIEW, ui)

    for comp in (ui.f_status, ui.f_type, ui.f_model, ui.f_consensus, ui.f_sort, ui.f_source):
        on(comp.input, queue, [*filters, ui.page_same], QUEUE, ui)  # page_same (0) resets to page 1 below
    for comp in (ui.f_reviewer, ui.f_rouge_min, ui.f_rouge_max, ui.q_max):
        on(comp.submit, queue, [*filters, ui.page_same], QUEUE, ui)
    on(ui.f_search.submit, queue, [*filters, ui.page_same], QUEUE, ui, api="ui_queue")
    on(ui.page.submit, queue, [*filters, ui.page], QUEUE, ui)
    on(ui.prev_page.click, queue, [*filters, ui.page, ui.page_prev], QUEUE, ui)
    on(ui.next_page.click, queue, [*filters, ui.page, ui.page_next], QUEUE, ui)
    # τ: every change (dragging, typing in its box, Enter) updates the counts; the open candidate follows
    tau = on(ui.tau.change, tau_checked(threshold), filters, refresh + ["tau"], ui, api="ui_threshold")
    on(tau.then, h.ui_live_candidate, [ui.current, ui.tau], LIVE_VIEW, ui, progress="hidden")
    # live: the counts, the queue page and the open candidate follow the store (curate.ui.live)
    changed = live.on_change(ui, "data", "review", with_filter(h.ui_refresh), [*filters, ui.page], refresh)
    live.on_change(ui, "data", "review", h.ui_live_candidate, [ui.current, ui.tau], LIVE_VIEW, event=changed.then)
    shown = on(ui.review_tab.select, with_filter(h.ui_refresh), [*filters, ui.page], refresh, ui, progress="hidden")
    on(shown.then, h.ui_live_candidate, [ui.current, ui.tau], LIVE_VIEW, ui, progress="hidden")
    on(ui.q_scorer.input, with_filter(h.ui_quality_scorer), filters, QUALITY + refresh, ui)
    on(ui.q_min.release, with_filter(h.ui_quality), filters, QUALITY + refresh, ui)

    on(ui.queue.select, h.ui_select, [ui.tau], VIEW, ui)
    on(ui.open_btn.click, h.ui_open, [ui.open_id, ui.tau], VIEW, ui, api="ui_open")
    on(ui.open_id.submit, h.ui_open, [ui.open_id, ui.tau], VIEW, ui)
    on(ui.next.click, nxt, [ui.current, *filters], VIEW, ui, api="ui_next")
    on(ui.prev.click, with_filter(h.ui_prev), [ui.current, *filters], VIEW, ui)
    refresh_after(on(ui.skip.click, with_filter(h.ui_skip), [ui.current, ui.reviewer, ui.history, *filters],
                     view_h, ui), ui, h)
    on(ui.comment_add.click, h.ui_comment, [ui.current, ui.comment_text, ui.reviewer],
       ["comments", "comment_text"], ui)
    guide = ["guidelines", "guidelines_admin", "guidelines_edit"]
    on(demo.load, h.ui_guidelines, [], guide, ui)
    on(ui.guidelines_save.click, h.ui_guidelines_save, [ui.guidelines_edit, ui.reviewer], guide, ui)

    accept = with_filter(h.ui_accept)
    refresh_after(on(ui.accept.click, accept, [ui.current, ui.no_output, ui.reviewer, ui.history, *filters],
                     view_h, ui, api="ui_accept"), ui, h)
    for btn, idx in zip(ui.slot_buttons, ui.slot_index):
        refresh_after(on(btn.click, accept, [ui.current, idx, ui.reviewer, ui.history, *filters], view_h, ui),
                      ui, h)
    refresh_after(on(ui.reject.click, with_filter(h.ui_reject),
                     [ui.current, ui.reject_reason, ui.reviewer, ui.history, *filters], view_h, ui,
                     api="ui_reject"), ui, h)
    save_inputs = [ui.current, ui.edit_instruction, ui.edit_input, ui.edit_output, ui.reviewer, ui.history,
                   *filters, ui.form_token, ui.typed_on]
    # every Save click gets its answer — saved, or refused with a prompt to reload — never dropped unseen
    refresh_after(on(ui.save_edit.click, with_filter(h.ui_edit), save_inputs, view_h, ui, api="ui_edit",
                     js=SAVE_EDIT_JS.format(n=len(save_inputs)), every_click=True), ui, h)
    refresh_after(on(ui.undo.click, h.ui_undo, [ui.history, ui.reviewer, ui.tau], view_h, ui, api="ui_undo"), ui, h)

    for event in (ui.bulk_box.expand, ui.bulk_load.click):
        on(event, h.ui_bulk_rows, [ui.bulk_choices], ["bulk_pick"], ui)
    on(ui.bulk_all.click, h.ui_bulk_select_all, [ui.bulk_choices], ["bulk_pick"], ui)
    for btn, fn, name in ((ui.bulk_accept, h.ui_bulk_accept, "ui_bulk_accept"),
                          (ui.bulk_reject, h.ui_bulk_reject, "ui_bulk_reject")):
        done = refresh_after(on(btn.click, fn, [ui.bulk_pick, ui.bulk_reason, ui.reviewer], ["bulk_status"], ui,
                                api=name), ui, h)
        on(done.then, h.ui_bulk_rows, [ui.bulk_choices], ["bulk_pick"], ui)
    on(ui.accept_all.click, h.ui_confirm_all, [ui.tau, ui.q_scorer, ui.q_min], CONFIRM, ui)
    on(ui.confirm_no.click, h.ui_confirm_cancel, [], CONFIRM, ui)
    refresh_after(on(ui.confirm_yes.click, h.ui_accept_all,
                     [ui.tau, ui.confirm_count, ui.reviewer, ui.q_scorer, ui.q_min], CONFIRM + THRESHOLD, ui,
                     api="ui_accept_all"), ui, h)
