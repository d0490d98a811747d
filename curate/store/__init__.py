"""The SQLite store: schema, migrations and every query. No other module knows SQL.

One :class:`Store` owns one database file (or ``":memory:"``). Opening it applies any pending migration
(``m001_…``, ``m002_…``, only ever appended, each recorded once applied, each in a transaction with its
record), so a fresh database and an existing one are handled the same way. The journal is WAL, so the
app's readers never block the background writer.

Rows get content-hash ids (``content_id``): re-inserting the same row collapses instead of duplicating,
which is what makes every stage resumable.

Data flows one way: seeds → completions → instructions → candidates → outputs → consensus / scores →
reviews → export. Thresholds are queries over stored scores, never recomputation.

A ``Store`` is used from one thread; open one per thread (opening is cheap).

Where the code lives (one mixin class per group of queries; :class:`Store` inherits them all):

* ``base`` — the connection: WAL and pragmas, migrating on open, ``close``, ``atomic``, and the small
  helpers (``_rows``, ``_one``, ``_next_seq``, ``_json``, ``_in_lists``, ``_quality_clause``, ``content_id``).
* ``migrations`` — the schema, m001… (append only; never edit one that has shipped).
* ``sql`` — the shared SQL fragments: ``PASSING_SQL``, ``CHOSEN_OUTPUT_ID``, ``QUALITY_SQL``, ….
* ``jobs`` — background jobs and their states.
* ``generation`` — seeds, completions, instructions, adding and reading candidates.
* ``consensus`` — ensemble outputs, consensus rows, passing counts, the min-pairwise histogram.
* ``scores`` — scores, the teacher sample and stats, quality scorers.
* ``selection`` — the selection pool, the embeddings cache, named selections.
* ``review`` — review actions, the review log, the review queue and its counts, accept-all.
* ``review_day`` — skips, comments on candidates, the review guidelines.
* ``reports`` — stats, export reads, model contribution, reviewer progress.
* ``imports`` — imported sources and their licences, the import ledger, staging, publishing, provenance,
  rejects, matching outputs to candidates.
* ``evaluations`` — stored evaluation runs and their rows (curate.evaluate).
* ``rows`` — typed rows of the review path: ``Candidate``, ``Output``, ``ReviewEntry``.
"""

from __future__ import annotations

from .base import StoreBase, StoreVersion, _in_lists, _json, _quality_clause, content_id, now
from .consensus import ConsensusQueries
from .evaluations import EvaluationQueries
from .generation import GenerationQueries
from .imports import IMPORT_ORIGIN, IMPORTED_STYLE, ImportQueries, StagedRow
from .jobs import ACTIVE_JOB_STATES, JOB_STATES, JobQueries
from .migrations import (m001_initial, m002_queue_indexes, m003_selection, m004_candidates, m005_review, m006_imports,
                         m007_evaluations, m008_review_day, migrations)
from .reports import ReportQueries
from .rows import Candidate, Output, ReviewEntry, Texts
from .review import REVIEW_ACTIONS, REVIEW_STATUSES, ReviewQueries
from .review_day import ReviewDayQueries
from .scores import ScoreQueries
from .selection import SelectionQueries
from .sql import (_ROUGE_ROWS, CHOSEN_OUTPUT_ID, EXACT_REASONS, EXACT_ROWS, PASSING_SQL, PENDING_PASSING_SQL,
                  QUALITY_SQL, ROUGE_ROWS)

__all__ = ["Store", "Candidate", "Output", "ReviewEntry", "Texts", "content_id", "PASSING_SQL", "REVIEW_ACTIONS",
           "REVIEW_STATUSES", "JOB_STATES", "StoreVersion"]


class Store(JobQueries, GenerationQueries, ConsensusQueries, ScoreQueries, SelectionQueries, ReviewQueries,
            ReviewDayQueries, ReportQueries, ImportQueries, EvaluationQueries):
    """The project's database. ``Store(":memory:")`` for tests; ``Store("data/curate.db")`` on disk.

    Raises :class:`~curate.errors.StoreError` when the path cannot be opened (with the path and the fix).
    """
