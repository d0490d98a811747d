"""The SQL fragments that more than one group of queries shares: the consensus keep rule (``PASSING_SQL``),
the output consensus chose (``CHOSEN_OUTPUT_ID``), the quality filter (``QUALITY_SQL``) and "pending and
passing" (``PENDING_PASSING_SQL``). Composed into the queries of the other modules of curate.store."""

from __future__ import annotations

# The consensus reasons of the exact-match branch (PASSING_SQL spells them out).
EXACT_REASONS = ("exact_o0", "exact_others")

# The consensus keep rule (curate.consensus.passes) as SQL over the stored columns: exact-match rows pass
# whatever tau is; rows of the Rouge branch pass iff the chosen text is non-empty and the minimum pairwise
# Rouge-L is strictly above tau; "empty" and "invalid" rows never pass.
PASSING_SQL = (
    "(c.reason IN ('exact_o0', 'exact_others') AND c.chosen_nonempty = 1)"
    " OR (c.reason IN ('rouge', 'below_threshold') AND c.chosen_nonempty = 1 AND c.min_pairwise > :tau)"
)
# Rows of the Rouge branch that can pass, through their partial index (the planner does not pick it alone).
_ROUGE_ROWS = ("INDEXED BY consensus_rouge_min WHERE reason IN ('rouge', 'below_threshold')"
               " AND chosen_nonempty = 1")


# The id of the output consensus chose (over a consensus row ``c``; NULL without a choice).
CHOSEN_OUTPUT_ID = "json_extract(c.output_ids, '$[' || c.chosen_index || ']')"
# "The output consensus chose has a quality score of at least :qmin from scorer :qs" (per-output scores keyed
# by the output id, curate.quality), as a probe list over the instances of the queue.
QUALITY_SQL = (f"+x.id IN (SELECT c.instance_id FROM consensus c JOIN scores s ON s.candidate_id = {CHOSEN_OUTPUT_ID}"
               " AND s.scorer = :qs AND s.name = 'reward' WHERE c.chosen_index IS NOT NULL AND s.value >= :qmin)")


# Pending OK candidates (``x``) whose consensus (``c``) passes at :tau: what "accept all that pass" takes.
PENDING_PASSING_SQL = f"x.status = 'ok' AND x.review_status = 'pending' AND ({PASSING_SQL})"
