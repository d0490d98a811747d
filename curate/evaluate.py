"""Evaluating a model on held-out instructions, the way the three papers judge curation: the shipped evaluation
sets (evaluation only), Rouge-L and exact match with bootstrap confidence intervals, an optional LLM judge
(a 1–10 score per row, and a pairwise win rate against another run in both orders), and the contamination guard
that keeps evaluation rows out of training data. See docs/ARCHITECTURE.md, "Evaluation".

Metrics (Super-NaturalInstructions' ``compute_metrics``, which Ensemble-Instruct reports):

* ``rouge_l``: Rouge-L F1 × 100 of the prediction against each reference with rouge-score's
  ``RougeScorer(["rougeL"], use_stemmer=True)``, the maximum over the references;
* ``exact_match``: 100 when the prediction equals a reference after :func:`normalise_answer` (lower case, no
  punctuation, no articles, single spaces), else 0;
* ``judge``: a judge's 1–10 score (``judge:`` scorer specs of :mod:`curate.quality`); rows it could not score
  are left out of its mean and counted;
* ``win_rate``: per row, the judge's pairwise verdict against another run's prediction, asked in both orders
  (A/B then B/A) to cancel position bias; 1 = wins both, 0.5 = split or tie, 0 = loses both.

Every mean comes with a percentile bootstrap 95% interval (:func:`bootstrap_ci`, seeded).
"""

from __future__ import annotations

import json
import math
import os
import re
import string
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .errors import EvaluationError
from .lm.base import GenParams
from .prompts import reference_prompt

__all__ = ["EVALSETS", "EvalRow", "EvalSet", "list_evalsets", "load_evalset", "read_predictions",
           "normalise_answer", "rouge_l", "exact_match", "bootstrap_ci", "bootstrap_ci_reference",
           "paired_bootstrap", "score_predictions", "predict", "pairwise_win_rates", "EvalReport", "evaluate",
           "contamination", "Contamination", "Config", "check", "run", "METRICS"]

HERE = Path(__file__).resolve().parent / "evalsets"
METRICS = ("rouge_l", "exact_match", "judge", "win_rate")
REFERENCE_METRICS = ("rouge_l", "exact_match")
CONTAMINATION_THRESHOLD = 0.7  # Rouge-L of instructions, as the generation novelty filter


@dataclass(frozen=True)
class EvalSetInfo:
    file: str
    title: str
    licence: str
    references: bool
    note: str = ""


#: The shipped evaluation sets (curate/evalsets/README.md gives the sources). All are evaluation-only.
EVALSETS: dict[str, EvalSetInfo] = {
    "user-oriented": EvalSetInfo("self_instruct_user_oriented.jsonl",
                                 "Self-Instruct's 252 user-oriented instructions", "Apache-2.0", True,
                                 "its authors ask that it never be used for training"),
    "sni-sample": EvalSetInfo("sni_test_sample.jsonl", "Super-NaturalInstructions test sample (3 tasks x 20)",
                              "Apache-2.0", True),
    "vicuna80": EvalSetInfo("vicuna80.jsonl", "the Vicuna 80 questions (no references: judge only)",
                            "CC BY-NC 4.0 (non-commercial)", False),
}


@dataclass(frozen=True)
class EvalRow:
    id: str
    instruction: str
    input: str
    references: tuple[str, ...]


@dataclass
class EvalSet:
    """An evaluation set: its rows and where they came from. ``eval_only``: never train on it."""

    name: str
    rows: list[EvalRow]
    licence: str = "unknown"
    title: str = ""
    source: str = ""
    eval_only: bool = True

    @property
    def has_references(self) -> bool:
        return any(r.references for r in self.rows)


def list_evalsets() -> list[dict]:
    """The shipped sets: name, title, rows, whether they have references, licence, note."""
    out = []
    for name, info in EVALSETS.items():
        n = sum(1 for line in (HERE / info.file).open(encoding="utf-8") if line.strip())
        out.append({"name": name, "title": info.title, "rows": n, "references": info.references,
                    "licence": info.licence, "note": info.note, "eval_only": True})
    return out


def _row(record: Any, where: str, index: int) -> EvalRow:
    if not isinstance(record, dict):
        raise EvaluationError(f"{where}: a row must be a JSON object with instruction, input and reference(s)")
    instruction = record.get("instruction")
    if not isinstance(instruction, str) or not instruction.strip():
        raise EvaluationError(f"{where}: 'instruction' is missing or empty (columns found: "
                              f"{', '.join(sorted(record)) or 'none'})")
    inp = record.get("input") or ""
    refs: Any = record.get("references", record.get("reference", record.get("output", [])))
    if isinstance(refs, str):
        refs = [refs]
    if not isinstance(inp, str) or not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
        raise EvaluationError(f"{where}: 'input' must be a string and 'reference(s)' a string or a list of strings")
    return EvalRow(str(record.get("id", index)), instruction, inp, tuple(refs))


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    try:
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rows.append((n, json.loads(line)))
                except json.JSONDecodeError as e:
                    raise EvaluationError(f"{path}:{n}: not valid JSON ({e.msg}); one JSON object per line") from None
    except UnicodeDecodeError as e:
        raise EvaluationError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise EvaluationError(f"cannot read {path}: {e.strerror}") from None
    return rows


def load_evalset(spec: str, *, limit: int | None = None, split: str = "test") -> EvalSet:
    """An evaluation set by name (:data:`EVALSETS`), or from a JSONL / JSON file, a ``datasets.save_to_disk``
    folder, or a Hugging Face dataset id (needs a network) with columns instruction, input, reference(s).

    Raises EvaluationError naming the file, line and column, and the fix."""
    if limit is not None and limit < 1:
        raise EvaluationError(f"--limit must be at least 1 (got {limit})")
    if spec in EVALSETS:
        info = EVALSETS[spec]
        path = HERE / info.file
        rows = [_row(r, f"{path}:{n}", n) for n, r in _read_jsonl(path)]
        return EvalSet(spec, rows[:limit], info.licence, info.title, str(path))
    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix == ".json":
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise EvaluationError(f"{path}: not a JSON array of rows ({e})") from None
            if not isinstance(data, list):
                raise EvaluationError(f"{path}: a .json evaluation set is an array of rows")
            records = list(enumerate(data, 1))
        else:
            records = _read_jsonl(path)
        rows = [_row(r, f"{path}:{n}", n) for n, r in records]
    elif path.is_dir():
        import datasets
        try:
            ds = datasets.load_from_disk(str(path))
        except Exception as e:  # datasets raises FileNotFoundError / ValueError for a non-dataset folder
            raise EvaluationError(f"{path}: not a datasets.save_to_disk folder ({e})") from None
        if isinstance(ds, datasets.DatasetDict):
            ds = ds[split] if split in ds else ds[next(iter(ds))]
        rows = [_row(r, f"{path} row {n}", n) for n, r in enumerate(ds, 1)]
    else:
        rows = _hub_rows(spec, split)
    if not rows:
        raise EvaluationError(f"{spec}: the evaluation set is empty")
    return EvalSet(path.stem if path.exists() else spec, rows[:limit], "see the source", "", spec)


def _hub_rows(spec: str, split: str) -> list[EvalRow]:
    names = ", ".join(EVALSETS)
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        raise EvaluationError(f"{spec!r} is not a shipped set ({names}), a file or a folder, and the Hub is off "
                              "(HF_HUB_OFFLINE=1): pass a JSONL file, or run with a network and CURATE_OFFLINE=0")
    import datasets
    try:
        ds = datasets.load_dataset(spec, split=split)
    except Exception as e:
        raise EvaluationError(f"cannot load the dataset {spec!r} (split {split!r}) from the Hub: {e}. Shipped sets: "
                              f"{names}") from None
    return [_row(r, f"{spec} row {n}", n) for n, r in enumerate(ds, 1)]


def read_predictions(path: str | os.PathLike) -> tuple[list[EvalRow], list[str]]:
    """Rows ``{instruction, input, reference(s), prediction}`` of a JSONL file. Raises EvaluationError (file:line)."""
    p = Path(path).expanduser()
    rows, preds = [], []
    for n, r in _read_jsonl(p):
        rows.append(_row(r, f"{p}:{n}", n))
        pred = r.get("prediction")
        if not isinstance(pred, str):
            raise EvaluationError(f"{p}:{n}: 'prediction' is missing or not a string")
        preds.append(pred)
    if not rows:
        raise EvaluationError(f"{p}: no rows")
    return rows, preds


# -- metrics -----------------------------------------------------------------------------------------------
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)
_SCORER = None


def normalise_answer(text: str) -> str:
    """Lower case, remove punctuation and the articles a / an / the, collapse whitespace (SNI / SQuAD)."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCT)).split())


def rouge_l(prediction: str, references: Sequence[str]) -> float | None:
    """Rouge-L F1 × 100 (rouge-score, stemmer on), the maximum over ``references``; None without references."""
    global _SCORER
    if not references:
        return None
    if _SCORER is None:
        from rouge_score import rouge_scorer
        _SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return max(_SCORER.score(ref, prediction)["rougeL"].fmeasure for ref in references) * 100.0


def exact_match(prediction: str, references: Sequence[str]) -> float | None:
    """100 when the normalised prediction equals a normalised reference, else 0; None without references."""
    if not references:
        return None
    p = normalise_answer(prediction)
    return 100.0 if any(p == normalise_answer(r) for r in references) else 0.0


def bootstrap_ci(values: Sequence[float], *, resamples: int = 1000, confidence: float = 0.95,
                 seed: int = 0) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean: ``resamples`` resamples of ``values`` with replacement,
    index matrix drawn at once from ``numpy.random.default_rng(seed)``; None for no values."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if v.size == 0:
        return None
    idx = np.random.default_rng(seed).integers(0, v.size, size=(resamples, v.size))
    means = v[idx].mean(axis=1)
    a = (1.0 - confidence) / 2
    lo, hi = np.quantile(means, [a, 1 - a])
    return float(lo), float(hi)


def bootstrap_ci_reference(values: Sequence[float], *, resamples: int = 1000, confidence: float = 0.95,
                           seed: int = 0) -> tuple[float, float] | None:
    """The plain twin of :func:`bootstrap_ci`: the same draws, one resample at a time, sorted by hand."""
    v = [float(x) for x in values if x is not None]
    if not v:
        return None
    idx = np.random.default_rng(seed).integers(0, len(v), size=(resamples, len(v)))
    means = sorted(sum(v[j] for j in row) / len(v) for row in idx.tolist())

    def quantile(q: float) -> float:  # numpy's default (linear) interpolation
        pos = q * (len(means) - 1)
        lo = math.floor(pos)
        return means[lo] + (means[min(lo + 1, len(means) - 1)] - means[lo]) * (pos - lo)

    a = (1.0 - confidence) / 2
    return quantile(a), quantile(1 - a)


def paired_bootstrap(a: Sequence[float], b: Sequence[float], *, resamples: int = 1000,
                     seed: int = 0) -> dict[str, float]:
    """Mean of ``a - b`` over paired rows, its bootstrap 95% interval and a two-sided p-value (twice the smaller
    share of resampled mean differences on either side of 0). Rows where either is None are left out."""
    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    if not pairs:
        raise EvaluationError("no paired rows to compare (both runs need scores on the same rows)")
    d = np.asarray([x - y for x, y in pairs], dtype=np.float64)
    idx = np.random.default_rng(seed).integers(0, d.size, size=(resamples, d.size))
    means = d[idx].mean(axis=1)
    p = min(1.0, 2 * min(float((means <= 0).mean()), float((means >= 0).mean())))
    lo, hi = np.quantile(means, [0.025, 0.975])
    return {"delta": float(d.mean()), "ci": [float(lo), float(hi)], "p": p, "n": int(d.size)}


def score_predictions(rows: Sequence[EvalRow], predictions: Sequence[str]) -> list[dict]:
    """Per row: id, prediction, rouge_l and exact_match (None where the row has no reference)."""
    if len(rows) != len(predictions):
        raise EvaluationError(f"{len(predictions)} predictions for {len(rows)} rows")
    return [{"id": r.id, "prediction": p, "rouge_l": rouge_l(p, r.references),
             "exact_match": exact_match(p, r.references)} for r, p in zip(rows, predictions)]


def summarise(per_row: Sequence[dict], metrics: Iterable[str], *, resamples: int = 1000,
              seed: int = 0) -> dict[str, dict]:
    """{metric: {mean, ci, n, missing}} over the rows that have that metric."""
    out = {}
    for m in metrics:
        vals = [r.get(m) for r in per_row]
        have = [v for v in vals if v is not None]
        out[m] = {"mean": float(np.mean(have)) if have else None,
                  "ci": list(bootstrap_ci(have, resamples=resamples, seed=seed) or []) or None,
                  "n": len(have), "missing": len(vals) - len(have)}
    return out


# -- predictions and the judge -----------------------------------------------------------------------------
def prompt_style(lm: Any) -> str:
    """"chat" (the model's chat template) where the model has one, else "reference" (instruction + "\\n" + input)."""
    return "chat" if getattr(lm, "supports_chat", False) else "reference"


def predict(lm: Any, rows: Sequence[EvalRow], *, max_new_tokens: int = 256, batch_size: int = 8,
            progress: Callable[[int, int], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> list[str]:
    """Greedy predictions of ``lm`` for ``rows``, ``batch_size`` prompts a call: the reference prompt, as a user
    turn of the chat template where the model has one (:func:`prompt_style`)."""
    style = prompt_style(lm)
    params = GenParams(temperature=0.0, max_new_tokens=max_new_tokens, style="chat" if style == "chat" else
                       "completion")
    out: list[str] = []
    for start in range(0, len(rows), batch_size):
        if should_stop is not None and should_stop():
            from .errors import Stopped
            raise Stopped()
        batch = rows[start:start + batch_size]
        out += [c.text.strip() for c in lm.generate([reference_prompt(r.instruction, r.input) for r in batch],
                                                    params)]
        if progress is not None:
            progress(len(out), len(rows))
    return out


PAIRWISE_PROMPT = """You compare two responses to the same instruction. Answer with one letter: A if Response A is
better, B if Response B is better, or T if they are equally good.

Instruction:
{instruction}
{input_block}
Response A:
{a}

Response B:
{b}

Better response (A, B or T):"""
_VERDICT = re.compile(r"\b([ABT])\b")


def _verdict(text: str) -> str | None:
    m = _VERDICT.search(text.strip().upper()[:40])
    return m.group(1) if m else None


def pairwise_win_rates(lm: Any, rows: Sequence[EvalRow], ours: Sequence[str], theirs: Sequence[str], *,
                       batch_size: int = 8) -> list[float | None]:
    """Per row, how our prediction fares against theirs by the judge ``lm``, asked in both orders: each order
    gives 1 (ours better), 0.5 (tie) or 0 (theirs better); the row's value is the mean of the orders it could
    parse (None when neither answer had a verdict)."""
    params = GenParams(temperature=0.0, max_new_tokens=8, style="chat" if prompt_style(lm) == "chat" else
                       "completion")

    def ask(first: Sequence[str], second: Sequence[str]) -> list[str | None]:
        prompts = [PAIRWISE_PROMPT.format(instruction=r.instruction, a=x, b=y,
                                          input_block=f"\nInput:\n{r.input}\n" if r.input.strip() else "")
                   for r, x, y in zip(rows, first, second)]
        answers: list[str | None] = []
        for s in range(0, len(prompts), batch_size):
            answers += [_verdict(c.text) for c in lm.generate(prompts[s:s + batch_size], params)]
        return answers

    ab, ba = ask(ours, theirs), ask(theirs, ours)
    worth = {("A", 0): 1.0, ("B", 0): 0.0, ("A", 1): 0.0, ("B", 1): 1.0, ("T", 0): 0.5, ("T", 1): 0.5}
    out: list[float | None] = []
    for v1, v2 in zip(ab, ba):
        got = [worth[(v, k)] for k, v in ((0, v1), (1, v2)) if v is not None]
        out.append(sum(got) / len(got) if got else None)
    return out


# -- a whole run ---------------------------------------------------------------------------------------------
@dataclass
class EvalReport:
    """One evaluation run: what was evaluated, how, and every row's scores."""

    model: str | None
    evalset: str
    settings: dict
    prompt_style: str | None
    metrics: dict[str, dict]
    rows: list[dict] = field(default_factory=list)
    licence: str = "unknown"
    created_at: float = field(default_factory=time.time)
    run_id: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    def write(self, path: str | os.PathLike) -> Path:
        """Write the report as JSON, atomically (a temporary file renamed into place)."""
        out = Path(path).expanduser()
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=out.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(self.as_dict(), f, ensure_ascii=False, indent=2)
        os.replace(tmp, out)
        return out


def _metrics_for(evalset: EvalSet, judge: bool, against: bool) -> list[str]:
    return [*(REFERENCE_METRICS if evalset.has_references else ()), *(["judge"] if judge else []),
            *(["win_rate"] if against else [])]


def evaluate(rows: Sequence[EvalRow], predictions: Sequence[str], *, evalset: EvalSet, model: str | None = None,
             style: str | None = None, judge: Any = None, judge_lm: Any = None,
             against: dict | None = None, settings: dict | None = None, resamples: int = 1000,
             seed: int = 0) -> EvalReport:
    """Score ``predictions`` of ``rows``: reference metrics where the set has references, ``judge`` (a quality
    Scorer) per row, and ``win_rate`` against ``against`` (another report's JSON) judged by ``judge_lm``.
    Raises EvaluationError when nothing can be measured (no references and no judge)."""
    if not evalset.has_references and judge is None and against is None:
        raise EvaluationError(f"the evaluation set {evalset.name!r} has no references, so Rouge-L and exact match "
                              "cannot be computed: add a judge (--judge judge:<model>)")
    per_row = score_predictions(rows, predictions)
    if judge is not None:
        scores = judge.score_detailed([r.instruction for r in rows], [r.input for r in rows], list(predictions))
        for r, s in zip(per_row, scores):
            r["judge"] = s.value if s.value is not None and math.isfinite(s.value) else None
    if against is not None:
        theirs = {r["id"]: r["prediction"] for r in against.get("rows", [])}
        missing = [r.id for r in rows if r.id not in theirs]
        if missing:
            raise EvaluationError(f"the run to compare against has no prediction for {len(missing)} rows (first: "
                                  f"{missing[0]}): compare runs on the same evaluation set")
        if judge_lm is None:
            raise EvaluationError("a pairwise comparison needs a judge model (--judge)")
        wins = pairwise_win_rates(judge_lm, rows, predictions, [theirs[r.id] for r in rows])
        for r, w in zip(per_row, wins):
            r["win_rate"] = w
    metrics = summarise(per_row, _metrics_for(evalset, judge is not None, against is not None),
                        resamples=resamples, seed=seed)
    return EvalReport(model, evalset.name, dict(settings or {}), style, metrics, per_row, evalset.licence)


# -- contamination -----------------------------------------------------------------------------------------
@dataclass
class Contamination:
    """What :func:`contamination` found: the indices of the training rows to keep, and one entry per dropped row
    (its index, the evaluation set and row it matches, exact or rouge, the score)."""

    kept: list[int]
    dropped: list[dict]

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for d in self.dropped:
            out[d["evalset"]] = out.get(d["evalset"], 0) + 1
        return out


def _key(text: str) -> str:
    return " ".join(text.lower().split())


def contamination(instructions: Sequence[str], evalsets: Sequence[EvalSet] | None = None, *,
                  threshold: float = CONTAMINATION_THRESHOLD) -> Contamination:
    """Check training instructions against every evaluation set (default: all shipped ones): a row is dropped
    when its instruction equals an evaluation instruction (case and whitespace folded), or its Rouge-L F1
    (rouge-score's tokenizer, no stemmer: the novelty filter's) against one is above ``threshold``."""
    from .rouge import NoveltyIndex
    sets = list(evalsets) if evalsets is not None else [load_evalset(n) for n in EVALSETS]
    where: dict[str, tuple[str, str]] = {}
    exact: dict[str, tuple[str, str]] = {}
    for s in sets:
        for r in s.rows:
            where.setdefault(r.instruction, (s.name, r.id))
            exact.setdefault(_key(r.instruction), (s.name, r.id))
    index = NoveltyIndex(list(where))
    kept, dropped = [], []
    for i, text in enumerate(instructions):
        hit = exact.get(_key(text))
        if hit is not None:
            dropped.append({"index": i, "evalset": hit[0], "eval_id": hit[1], "reason": "exact", "score": 1.0})
            continue
        score, similar = index.max_similarity(text)
        if similar is not None and score > threshold:
            s, rid = where[similar]
            dropped.append({"index": i, "evalset": s, "eval_id": rid, "reason": "rouge", "score": score})
            continue
        kept.append(i)
    return Contamination(kept, dropped)


# -- the Stage contract (curate.stage) -----------------------------------------------------------------------
class Config(BaseModel):
    """An evaluation run: a model's greedy predictions on a set (``model`` + ``evalset``), or a predictions file
    (``predictions``), scored and stored (and written to ``out`` when given)."""

    model_config = ConfigDict(extra="forbid")

    evalset: str | None = Field(None, description="a shipped set name (curate evalsets), a JSONL file, a "
                                                  "save_to_disk folder or a Hub id")
    model: str | None = Field(None, description="model spec whose greedy predictions are scored")
    predictions: str | None = Field(None, description="JSONL of {instruction, input, reference(s), prediction}")
    limit: int | None = Field(None, ge=1, description="the first N rows of the set")
    max_new_tokens: int = Field(256, ge=1, le=4096)
    batch_size: int = Field(8, ge=1, le=256)
    judge: str | None = Field(None, description="a judge:<model spec> scorer for per-row 1-10 scores")
    against: str | None = Field(None, description="another run's report JSON to judge pairwise against")
    out: str | None = Field(None, description="write the report JSON here")
    resamples: int = Field(1000, ge=100, le=100_000, description="bootstrap resamples per interval")
    seed: int = 0

    @model_validator(mode="after")
    def _one_source(self) -> "Config":
        if (self.model is None) == (self.predictions is None):
            raise ValueError("give either a model (--model with --set) or a predictions file (--predictions)")
        if self.model is not None and not self.evalset:
            raise ValueError("--model needs an evaluation set (--set NAME; `curate evalsets` lists them)")
        if self.against is not None and self.judge is None:
            raise ValueError("--against needs a judge (--judge judge:<model>) to compare the two runs")
        return self


def _judge_parts(spec: str | None, store) -> tuple[Any, Any]:
    if spec is None:
        return None, None
    from .quality import JudgeScorer, load_scorer
    scorer = load_scorer(spec, store=store)
    if not isinstance(scorer, JudgeScorer):
        from .errors import ScorerError
        raise ScorerError(f"{spec!r} is not a judge: evaluation scores rows with judge:<model spec>")
    return scorer, scorer.lm


def _read_report(path: str) -> dict:
    try:
        return json.loads(Path(path).expanduser().read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EvaluationError(f"cannot read the report to compare against, {path}: {e}") from None


def check(store, config: Config) -> None:
    """Before a job is created: the set, the predictions file and the report to compare against can be read,
    and something can be measured. Raises EvaluationError naming the fix."""
    if config.predictions is not None:
        read_predictions(config.predictions)
    if config.evalset is not None:
        es = load_evalset(config.evalset, limit=config.limit)
        if not es.has_references and config.judge is None:
            raise EvaluationError(f"the evaluation set {es.name!r} has no references, so Rouge-L and exact match "
                                  "cannot be computed: add a judge (--judge judge:<model>)")
    if config.against is not None:
        _read_report(config.against)


def run(store, config: Config, ctx) -> dict:
    """Predict (with ``config.model``) or read predictions, score, store the run, write the report."""
    if config.predictions is not None:
        rows, preds = read_predictions(config.predictions)
        es = EvalSet(Path(config.predictions).stem, rows, source=config.predictions)
        if config.evalset is not None:
            es = load_evalset(config.evalset, limit=config.limit)
        style, model = None, None
    else:
        es = load_evalset(config.evalset or "", limit=config.limit)
        rows = es.rows
        ctx.report(phase=f"loading {config.model}")
        lm = ctx.pool.get(config.model)
        style, model = prompt_style(lm), config.model
        phase = f"predicting with {config.model}"
        ctx.report(phase=phase, done=0, total=len(rows), unit="rows")
        preds = predict(lm, rows, max_new_tokens=config.max_new_tokens, batch_size=config.batch_size,
                        progress=lambda d, t: ctx.report(phase=phase, done=d, total=t, unit="rows"),
                        should_stop=ctx.should_stop)
    ctx.report(phase="scoring", done=0, total=len(rows), unit="rows")
    judge, judge_lm = _judge_parts(config.judge, store)
    against = _read_report(config.against) if config.against else None
    report = evaluate(rows, preds, evalset=es, model=model, style=style, judge=judge, judge_lm=judge_lm,
                      against=against, resamples=config.resamples, seed=config.seed,
                      settings=config.model_dump(mode="json"))
    report.run_id = store.save_evaluation(report.as_dict(), job_id=ctx.job_id)
    if config.out:
        report.write(config.out)
    means = {m: v["mean"] for m, v in report.metrics.items()}
    ctx.report(phase="done", done=len(rows), total=len(rows), unit="rows", result={"run": report.run_id, **means})
    return {"run": report.run_id, **means}

