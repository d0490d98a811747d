"""The Disagreements tab (admins): candidates whose reviewers disagreed (team review, ``reviews_per_candidate``
≥ 2), every review and edit side by side, and the final decision — pick one reviewer's version, accept the
texts as edited here, or reject.

:class:`DisagreementHandlers` holds the handlers, :func:`layout` the components, :func:`wire` the events.
Reviewers' texts and names only go into Textboxes and string Dataframes.
"""

from __future__ import annotations

import gradio as gr
import pandas as pd

from ... import review
from ...settings import Settings
from .. import live
from ..base import TabHandlers, _when, as_gr_error, info, plural, user_errors
from ..wiring import UI, on, tab

MAX_VOTES = 4  # reviews shown side by side
DIS_HEADERS = ["#", "reviews", "instruction", "id"]
VOTE_SLOTS = [f"dis_vote_{i}" for i in range(MAX_VOTES)]
VOTE_COLS = [f"dis_vote_col_{i}" for i in range(MAX_VOTES)]
DIS_VIEW = ["dis_header", *VOTE_COLS, *VOTE_SLOTS, "dis_instruction", "dis_input", "dis_output", "dis_current"]
DIS_QUEUE = ["dis_queue", "dis_info"]


def _vote_text(v: dict) -> str:
    if v["texts"] is None:
        return f"REJECTED{': ' + v['reason'] if v['reason'] else ''}"
    t = v["texts"]
    return f"Instruction:\n{t['instruction']}\n\nInput:\n{t['input'] or '(none)'}\n\nOutput:\n{t['output']}"


class DisagreementHandlers(TabHandlers):
    """The Disagreements tab's handlers (admins only)."""

    @user_errors
    def ui_dis_queue(self, request: gr.Request = None) -> dict:
        self.require_admin(request, "see the disagreements")
        res = review.disagreements(self.store(), 1, 200)
        rows = [[str(r["seq"]), ", ".join(f"{v['reviewer']}: {v['status']}" for v in r["votes"]),
                 r["instruction"], r["id"]] for r in res["rows"]]
        text = (f"{plural(res['total'], 'candidate')} whose reviewers disagree" if res["total"] else
                "No disagreement to decide.")
        return {"dis_queue": pd.DataFrame(rows, columns=DIS_HEADERS), "dis_info": text}

    def _view(self, cid: str | None, note: str = "") -> dict:
        out: dict = {}
        if not cid:
            out.update(dis_header=note or "Click a row of the disagreements queue.", dis_instruction="",
                       dis_input="", dis_output="", dis_current=None)
            for i in range(MAX_VOTES):
                out[VOTE_SLOTS[i]] = gr.update(value="", label=f"review {i + 1}")
                out[VOTE_COLS[i]] = gr.update(visible=i < 2)
            return out
        d = review.candidate(self.store(), cid)
        votes = d["votes"]
        out["dis_header"] = (f"#{d['seq']} · {d['review_status']} · {len(votes)} reviews · version {d['version']}"
                             + (f" · {note}" if note else "")
                             + f"\nGenerated instruction: {d['instruction']}")
        for i in range(MAX_VOTES):
            if i < len(votes):
                v = votes[i]
                out[VOTE_SLOTS[i]] = gr.update(value=_vote_text(v),
                                               label=f"{v['reviewer']} · {v['status']} · {_when(v['at'])}")
                out[VOTE_COLS[i]] = gr.update(visible=True)
            else:
                out[VOTE_SLOTS[i]] = gr.update(value="", label=f"review {i + 1}")
                out[VOTE_COLS[i]] = gr.update(visible=False)
        first = next((v["texts"] for v in votes if v["texts"]), None) or {
            "instruction": d["instruction"], "input": d["input"], "output": d["output"]}
        out.update(dis_instruction=first["instruction"], dis_input=first["input"], dis_output=first["output"],
                   dis_current={"id": d["id"], "version": d["version"], "votes": [v["reviewer"] for v in votes]})
        return out

    @user_errors
    def ui_dis_select(self, evt: gr.SelectData, request: gr.Request = None) -> dict:
        self.require_admin(request, "adjudicate")
        row = evt.row_value or []
        return self._view(row[-1] if row else None)

    @user_errors
    def ui_dis_open(self, candidate_id: str, request: gr.Request = None) -> dict:
        self.require_admin(request, "adjudicate")
        return self._view((candidate_id or "").strip() or None)

    def _decide(self, current: dict | None, reviewer: str, request, **kw) -> dict:
        self.require_admin(request, "adjudicate")
        if not current:
            raise gr.Error("Open a disagreement first (click a row).")
        who = self.reviewer(reviewer, request)
        try:
            row = review.adjudicate(self.store(), current["id"], reviewer=who, version=current["version"],
                                    quorum=self.quorum, **kw)
        except Exception as e:  # noqa: BLE001 - a clear (escaped) message, nothing overwritten
            raise as_gr_error(e) from e
        info(f"#{row.seq} decided: {row.review_status}.")
        nxt = review.disagreements(self.store(), 1, 1)["rows"]
        out = self._view(nxt[0]["id"] if nxt else None, "" if nxt else "All disagreements are decided.")
        out.update(self.ui_dis_queue(request))
        return out

    def ui_dis_pick(self, current: dict | None, index: int, reviewer: str, request: gr.Request = None) -> dict:
        """Accept review ``index``'s version (a reject there rejects)."""
        self.require_admin(request, "adjudicate")
        votes = (current or {}).get("votes") or []
        if not 0 <= int(index) < len(votes):
            raise gr.Error("There is no such review on this candidate.")
        vote = next(v for v in review.candidate(self.store(), current["id"])["votes"]
                    if v["reviewer"] == votes[int(index)])
        if vote["texts"] is None:
            return self._decide(current, reviewer, request, decision="reject", reason=vote["reason"])
        return self._decide(current, reviewer, request, decision="accept", from_reviewer=vote["reviewer"])

    def ui_dis_accept(self, current: dict | None, instruction: str, input: str, output: str, reviewer: str,
                      request: gr.Request = None) -> dict:
        """Accept the texts of the final form (edited here or picked) as the decision."""
        return self._decide(current, reviewer, request, decision="accept",
                            texts={"instruction": instruction or "", "input": input or "", "output": output or ""})

    def ui_dis_reject(self, current: dict | None, reason: str, reviewer: str, request: gr.Request = None) -> dict:
        return self._decide(current, reviewer, request, decision="reject", reason=reason)


# -- layout ----------------------------------------------------------------------------------------------------
def layout(ui: UI, settings: Settings) -> None:
    with tab(ui, "Disagreements", "disagreements", visible=False):  # shown to admins when the page loads
        ui.add("dis_refresh", gr.Button("Refresh", size="sm", elem_id="curate-dis-refresh"))
        ui.add("dis_info", gr.Textbox(show_label=False, interactive=False, elem_id="curate-dis-info"))
        ui.add("dis_queue", gr.Dataframe(headers=DIS_HEADERS, datatype=["str"] * len(DIS_HEADERS), interactive=False,
                                         max_height=260, label="Candidates whose reviewers disagree (click one)",
                                         elem_id="curate-dis-queue"))
        ui.add("dis_current", gr.State(None))
        ui.add("dis_header", gr.Textbox(label="Candidate", interactive=False, lines=2, elem_id="curate-dis-header"))
        ui.dis_pick_buttons, ui.dis_pick_index = [], []
        with gr.Row(equal_height=True):
            for i in range(MAX_VOTES):
                with gr.Column(min_width=200, visible=i < 2) as col:
                    ui.add(VOTE_COLS[i], col)
                    ui.add(VOTE_SLOTS[i], gr.Textbox(label=f"review {i + 1}", interactive=False, lines=8,
                                                     max_lines=16, elem_id=f"curate-dis-vote-{i}"))
                    ui.dis_pick_buttons.append(gr.Button("Pick this version", size="sm",
                                                         elem_id=f"curate-dis-pick-{i}"))
                    ui.dis_pick_index.append(gr.State(i))
        with gr.Accordion("Final texts (edit, then accept as final)", open=True, elem_id="curate-dis-final"):
            ui.add("dis_instruction", gr.Textbox(label="Instruction", lines=2, elem_id="curate-dis-instruction"))
            ui.add("dis_input", gr.Textbox(label="Input", lines=2, elem_id="curate-dis-input"))
            ui.add("dis_output", gr.Textbox(label="Output", lines=4, elem_id="curate-dis-output"))
            with gr.Row():
                ui.add("dis_accept", gr.Button("Accept these texts as final", variant="primary",
                                               elem_id="curate-dis-accept"))
                ui.add("dis_reject", gr.Button("Reject as final", variant="stop", elem_id="curate-dis-reject"))
            ui.add("dis_reason", gr.Textbox(label="Reject reason (optional)", elem_id="curate-dis-reason"))


# -- wiring ----------------------------------------------------------------------------------------------------
def wire(ui: UI, h: DisagreementHandlers) -> None:
    decided = [*DIS_VIEW, *DIS_QUEUE]
    on(ui.disagreements_tab.select, h.ui_dis_queue, [], DIS_QUEUE, ui)
    live.on_change(ui, "data", "disagreements", h.ui_dis_queue, [], DIS_QUEUE)  # another reviewer's vote
    on(ui.dis_refresh.click, h.ui_dis_queue, [], DIS_QUEUE, ui, api="ui_dis_queue")
    on(ui.dis_queue.select, h.ui_dis_select, [], DIS_VIEW, ui)
    for btn, idx in zip(ui.dis_pick_buttons, ui.dis_pick_index):
        on(btn.click, h.ui_dis_pick, [ui.dis_current, idx, ui.reviewer], decided, ui)
    on(ui.dis_accept.click, h.ui_dis_accept,
       [ui.dis_current, ui.dis_instruction, ui.dis_input, ui.dis_output, ui.reviewer], decided, ui,
       api="ui_dis_accept")
    on(ui.dis_reject.click, h.ui_dis_reject, [ui.dis_current, ui.dis_reason, ui.reviewer], decided, ui,
       api="ui_dis_reject")
