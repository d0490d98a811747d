"""The documented API: ``gr.api`` endpoints (``/accept``, ``/queue``, ``/start_job``…), JSON in, JSON out.

Each :class:`ApiHandlers` method is one endpoint of the same name; its signature is the endpoint's
parameters and its docstring the endpoint's description. The work is done by the library and by the Run /
Teachers tabs' job and ranking helpers; library errors become ``gr.Error``.

No ``from __future__ import annotations`` here: Gradio reads the return annotations as they are, and string
ones would turn each endpoint's documented return type ``dict(str, Any)`` into ``Any``.
"""

import gradio as gr

from .. import checks, export, review, select, teachers
from ..errors import CurateError
from ..store import Candidate
from .base import AppContext, TabHandlers, queue_filter, user_errors
from .tabs.export import export_options
from .tabs.run import RunHandlers
from .tabs.teachers import TeachersHandlers

#: the endpoints, in the order they are registered
ENDPOINTS = ("start_job", "job_status", "pause_job", "resume_job", "cancel_job", "queue", "candidate", "accept",
             "edit", "reject", "undo", "passing_count", "accept_all_passing", "bulk_review", "disagreements",
             "adjudicate", "agreement", "overview", "export_preview", "teachers", "select")


class ApiHandlers(TabHandlers):
    """The named API's handlers (``run`` and ``teachers``: the tabs' handlers whose helpers it reuses)."""

    def __init__(self, ctx: AppContext, run: RunHandlers, teachers: TeachersHandlers):
        super().__init__(ctx)
        self._run = run
        self._teachers = teachers

    # -- jobs ---------------------------------------------------------------------------------------------
    @user_errors
    def start_job(self, kind: str = "generate", instructions: int = 20, task_type: str = "both",
                  instances: bool = True, instruction_models: str = "", instance_models: str = "",
                  ensemble_models: str = "", seed: int = 0, batch_size: int | None = None,
                  temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
                  max_new_tokens: int | None = None, instance_max_new_tokens: int | None = None,
                  allow_concurrent: bool = False, request: gr.Request = None) -> dict:
        """Start a generation or ensembling job on the server (admins); returns the job (poll /job_status).
        Mixtures are "model[:weight],…"; empty means the settings' default; every model is resolved before the
        job is created. Sampling values (generation only) left null keep the defaults: temperature 0.7, top_k
        50, top_p 1.0, 256 / 512 new tokens; batch_size null keeps the settings' (8, or this machine's tuned
        pick). A job of the same kind already active on the store refuses the
        request (the error names it) unless ``allow_concurrent``."""
        self.require_admin(request, "start a job")
        return self._run.job_status(self._run.start_job(
            kind, instructions, task_type, instances, instruction_models, instance_models, ensemble_models, seed,
            batch_size, temperature, top_k, top_p, max_new_tokens, instance_max_new_tokens,
            allow_concurrent=bool(allow_concurrent)))

    @user_errors
    def job_status(self, job_id: str) -> dict:
        """A job's state, progress (stage, kept, filtered by reason, tok/s, ETA) and last error."""
        return self._run.job_status(job_id)

    @user_errors
    def pause_job(self, job_id: str, request: gr.Request = None) -> dict:
        """Pause a running job after its current step."""
        self.require_admin(request, "pause a job")
        return self._run.pause_job(job_id)

    @user_errors
    def resume_job(self, job_id: str, request: gr.Request = None) -> dict:
        """Resume a paused / interrupted / failed job from what is stored."""
        self.require_admin(request, "resume a job")
        return self._run.resume_job(job_id)

    @user_errors
    def cancel_job(self, job_id: str, request: gr.Request = None) -> dict:
        """Cancel a job (stored rows stay)."""
        self.require_admin(request, "cancel a job")
        return self._run.cancel_job(job_id)

    # -- review -------------------------------------------------------------------------------------------
    @user_errors
    def queue(self, status: str = "pending", task_type: str = "", model: str = "", consensus: str = "",
              tau: float = 0.01, search: str = "", sort: str = "seq", page: int = 1, page_size: int = 50,
              source: str = "", reviewed_by: str = "", rouge_min: float | None = None, rouge_max: float | None = None,
              quality_scorer: str = "", quality_min: float | None = None, quality_max: float | None = None,
              request: gr.Request = None) -> dict:
        """A page of the review queue. status: pending|accepted|edited|rejected|disputed|auto-filtered|"" (any);
        consensus: pass|fail|none|""; sort: seq|-seq|min_pairwise|-min_pairwise|agreement|-agreement|quality|
        -quality (with quality_scorer)|reviewed; source: instruction_prompt|instance_completion|""; reviewed_by:
        a reviewer; rouge_min / rouge_max: the min pairwise Rouge-L range; quality_*: the chosen output's score
        range from that scorer. With reviews_per_candidate ≥ 2, a logged-in reviewer's pending queue leaves out
        what they have voted on."""
        f = queue_filter(status, task_type, model, consensus, checks.tau(tau, "/queue"), search, sort,
                         quality_scorer, quality_min, quality_max, source, reviewed_by, rouge_min, rouge_max)
        f = f.for_reviewer(self.login(request), self.quorum)
        return review.queue_page(self.store(), f, checks.number(page, checks.PAGE, "/queue"),
                                 checks.number(page_size, checks.PAGE_SIZE, "/queue"))

    @user_errors
    def candidate(self, candidate_id: str, tau: float = 0.01) -> dict:
        """One candidate: texts, every output with model and agreement, the pairwise matrix, the consensus
        choice and why, its decision and every reviewer's review (votes), the review log. ``version`` is what
        accept/edit/reject/undo expect."""
        return review.candidate(self.store(), candidate_id.strip(), checks.tau(tau, "/candidate"))

    @user_errors
    def accept(self, candidate_id: str, version: int | None = None, output_index: int | None = None,
               reviewer: str = "", request: gr.Request = None) -> dict:
        """Accept the consensus choice (or output ``output_index``). With ``version``, a candidate someone
        else reviewed since is not overwritten (error "Conflict"). Returns the candidate as stored and the
        next pending id."""
        return self._result(review.accept(self.store(), candidate_id, reviewer=self.api_reviewer(
            reviewer, request), version=version, output_index=output_index, quorum=self.quorum))

    @user_errors
    def edit(self, candidate_id: str, instruction: str | None = None, input: str | None = None,
             output: str | None = None, version: int | None = None, reviewer: str = "",
             request: gr.Request = None) -> dict:
        """Save an edited version (fields left out keep their value; the original is kept)."""
        return self._result(review.edit(self.store(), candidate_id, reviewer=self.api_reviewer(
            reviewer, request), version=version, instruction=instruction, input=input, output=output,
            quorum=self.quorum))

    @user_errors
    def reject(self, candidate_id: str, reason: str = "", version: int | None = None, reviewer: str = "",
               request: gr.Request = None) -> dict:
        """Reject a candidate, with an optional reason."""
        return self._result(review.reject(self.store(), candidate_id, reviewer=self.api_reviewer(
            reviewer, request), version=version, reason=reason, quorum=self.quorum))

    @user_errors
    def undo(self, candidate_id: str, version: int | None = None, reviewer: str = "",
             request: gr.Request = None) -> dict:
        """Undo your latest review of a candidate (restores its previous status and texts)."""
        return self._result(review.undo(self.store(), candidate_id, reviewer=self.api_reviewer(
            reviewer, request), version=version, quorum=self.quorum))

    def _result(self, row: Candidate) -> dict:
        """The candidate as stored and the next pending one (with overlap: one the acting reviewer has not
        reviewed yet)."""
        nxt = review.next_candidate(self.store(), review.QueueFilter(), row.seq, reviewer=row.reviewed_by,
                                    quorum=self.quorum)
        keep = ("id", "seq", "version", "review_status", "reviewed_by", "reviewed_at", "final_instruction",
                "final_input", "final_output")
        return {"candidate": {k: getattr(row, k) for k in keep}, "next_pending": nxt}

    @user_errors
    def passing_count(self, tau: float) -> dict:
        """How many ensembled candidates pass at ``tau`` (and how many of those are pending)."""
        s = review.threshold_summary(self.store(), checks.tau(tau, "/passing_count"))
        return {k: s[k] for k in ("tau", "scored", "passing", "pending_passing")}

    @user_errors
    def accept_all_passing(self, tau: float, expected: int | None = None, reviewer: str = "",
                           request: gr.Request = None) -> dict:
        """Accept every pending candidate passing at ``tau`` (admins). Pass ``expected`` (from /passing_count's
        pending_passing) to refuse when the count changed."""
        self.require_admin(request, "accept all that pass")
        return review.accept_all_passing(self.store(), checks.tau(tau, "/accept_all_passing"),
                                         reviewer=self.api_reviewer(reviewer, request), expected=expected,
                                         quorum=self.quorum)

    @user_errors
    def bulk_review(self, candidate_ids: list[str], action: str = "accept", versions: list[int] | None = None,
                    reason: str = "", reviewer: str = "", request: gr.Request = None) -> dict:
        """Accept or reject the listed candidates as decisions (admins), in one transaction. ``versions`` (same
        order, optional): a candidate changed since is skipped, not overwritten. Returns {done, skipped}."""
        self.require_admin(request, f"{action} candidates in bulk")
        vs = list(versions or [None] * len(candidate_ids))
        if len(vs) != len(candidate_ids):
            raise gr.Error("/bulk_review: versions must list one version per candidate id (or be left out)")
        return review.bulk_review(self.store(), list(zip(candidate_ids, vs)), action,
                                  reviewer=self.api_reviewer(reviewer, request), reason=reason, quorum=self.quorum)

    @user_errors
    def disagreements(self, page: int = 1, page_size: int = 50, request: gr.Request = None) -> dict:
        """The disagreements queue (admins): candidates whose reviews disagree, each with every review."""
        self.require_admin(request, "see the disagreements")
        return review.disagreements(self.store(), checks.number(page, checks.PAGE, "/disagreements"),
                                    checks.number(page_size, checks.PAGE_SIZE, "/disagreements"))

    @user_errors
    def adjudicate(self, candidate_id: str, decision: str = "accept", version: int | None = None,
                   from_reviewer: str = "", instruction: str | None = None, input: str | None = None,
                   output: str | None = None, reason: str = "", reviewer: str = "", request: gr.Request = None) -> dict:
        """An admin's final decision on a candidate: decision accept (the texts ``from_reviewer`` accepted, or
        the texts given, or the consensus choice) or reject. Overrides the reviews, which stay for agreement."""
        self.require_admin(request, "adjudicate")
        given = {"instruction": instruction, "input": input, "output": output}
        texts = given if any(v is not None for v in given.values()) else None
        return self._result(review.adjudicate(self.store(), candidate_id, reviewer=self.api_reviewer(reviewer, request),
                                              decision=decision, version=version, texts=texts,
                                              from_reviewer=from_reviewer or None, reason=reason, quorum=self.quorum))

    @user_errors
    def agreement(self) -> dict:
        """Agreement on accept vs reject over the reviewers' current reviews: Cohen's kappa per pair with the
        shared candidates, Fleiss' kappa overall; and each reviewer's progress against their share."""
        return {**review.agreement_of(self.store()),
                "progress": review.team_progress(self.store(), self.ctx.team.members, self.quorum)}

    @user_errors
    def overview(self, tau: float = 0.01) -> dict:
        """Counts per stage and reason, per-model contribution, reviewer progress, agreement."""
        return review.overview(self.store(), checks.tau(tau, "/overview"), members=self.ctx.team.members,
                               quorum=self.quorum)

    # -- export, teachers, selection ----------------------------------------------------------------------
    @user_errors
    def export_preview(self, fmt: str = "alpaca-jsonl", include: list[str] | None = None, tau: float = 0.01,
                       selection: str = "", system: str = "", provenance: str = "none", n: int = 5) -> dict:
        """The first ``n`` rows of an export exactly as they would be written, and the dataset card.
        fmt: alpaca|alpaca-jsonl|sharegpt|messages|hf|parquet; include: accepted|passing|selection."""
        o = export_options(fmt, include, checks.tau(tau, "/export_preview"), selection, system, provenance)
        rows = export.preview(self.store(), n=max(0, min(int(n), 100)), **o)
        return {"rows": rows, "card": export.dataset_card(self.store(), **o) if rows else ""}

    @user_errors
    def teachers(self, student: str = "", scorer: str = "", beta: float = 1.0) -> dict:
        """Teachers ranked by CAR for a student, per task type (all, A, B), from stored numbers; and the
        mixture weighted by CAR. Compute the numbers with `curate teachers` or the Teachers tab first."""
        rows = self._teachers.teacher_rows(student, scorer, beta)
        try:
            mix = teachers.format_mixture(teachers.mixture_weights_from_car(rows))
        except CurateError:
            mix = ""
        return {"ranking": rows, "mixture": mix}

    @user_errors
    def select(self, k: int, alpha: float = 0.7, source: str = "passing", tau: float = 0.01,
               quality: str = "consensus", model: str = "") -> dict:
        """QDIT selection over cached embeddings (embed first: `curate embed` or the Select tab), stored as
        'qdit'. Returns the picked candidate ids in order and the report against the baselines."""
        run = select.run_selection(self.store(), k=int(k), alpha=float(alpha), source=source,
                                   tau=checks.tau(tau, "/select"),
                                   quality=quality, name="qdit", model=model or None, compute=False)
        return {"ids": run.ids, "report": run.report, "params": run.params}


def wire(h: ApiHandlers) -> None:
    """Register the documented endpoints (JSON in, JSON out; see each method's docstring)."""
    for name in ENDPOINTS:
        gr.api(getattr(h, name), api_name=name)
