"""The SQL fragments that more than one group of queries shares: the consensus keep rule (``PASSING_SQL``),
the output consensus chose (``CHOSEN_OUTPUT_ID``), the quality filter (``QUALITY_SQL``) and "pending and
passing" (``PENDING_PASSING_SQL``). Composed into the queries of the other modules of curate.store."""

from __future__ import annotations

from ..consensus import EXACT_REASONS, THRESHOLD_REASONS


def _sql_list(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


# The consensus keep rule, curate.consensus.passes, as SQL over the stored columns, built from the same
# constants (a test holds the two equal on many random rows): exact-match rows pass whatever tau is, rows of
# the Rouge branch iff the minimum pairwise Rouge-L is strictly above tau, both only with a non-empty chosen
# text; "empty" and "invalid" rows never pass.
EXACT_ROWS = f"reason IN ({_sql_list(EXACT_REASONS)}) AND chosen_nonempty = 1"
ROUGE_ROWS = f"reason IN ({_sql_list(THRESHOLD_REASONS)}) AND chosen_nonempty = 1"
PASSING_SQL = (
    f"(c.reason IN ({_sql_list(EXACT_REASONS)}) AND c.chosen_nonempty = 1)"
    f" OR (c.reason IN ({_sql_list(THRESHOLD_REASONS)}) AND c.chosen_nonempty = 1 AND c.min_pairwise > :tau)"
)
# Rows of the Rouge branch that can pass, through their partial index (m001's consensus_rouge_min, whose WHERE
# is ROUGE_ROWS: a test checks it; the planner does not pick that index alone).
_ROUGE_ROWS = f"INDEXED BY consensus_rouge_min WHERE {ROUGE_ROWS}"


# The id of the output consensus chose (over a consensus row ``c``; NULL without a choice).
CHOSEN_OUTPUT_ID = "json_extract(c.output_ids, '$[' || c.chosen_index || ']')"
# "The output consensus chose has a quality score of at least :qmin from scorer :qs" (per-output scores keyed
# by the output id, curate.quality), as a probe list over the candidates of the queue.
QUALITY_SQL = (f"+x.id IN (SELECT c.candidate_id FROM consensus c JOIN scores s ON s.subject_id = {CHOSEN_OUTPUT_ID}"
               " AND s.scorer = :qs AND s.name = 'reward' WHERE c.chosen_index IS NOT NULL AND s.value >= :qmin)")

QUALITY_MAX_SQL = QUALITY_SQL.replace("s.value >= :qmin", "s.value <= :qmax")


# Pending OK candidates (``x``) whose consensus (``c``) passes at :tau: what "accept all that pass" takes.
PENDING_PASSING_SQL = f"x.status = 'ok' AND x.review_status = 'pending' AND ({PASSING_SQL})"
