"""Exporting the curated set for fine-tuning, with a dataset card.

Formats (:data:`FORMATS`):

==============  ===========================================================================  =================
name            rows                                                                         data file
==============  ===========================================================================  =================
alpaca          ``{instruction, input, output}`` in one JSON array (one row per line)         ``data.json``
alpaca-jsonl    the same, one JSON object per line                                           ``data.jsonl``
sharegpt        ``{conversations: [{from: system|human|gpt, value}]}`` (system optional)    ``data.jsonl``
messages        ``{messages: [{role: system|user|assistant, content}]}`` (OpenAI / TRL)     ``data.jsonl``
hf              Alpaca columns, a Hugging Face ``datasets`` folder (``save_to_disk``)          ``data-*.arrow``
parquet         Alpaca columns, one Parquet file written by ``datasets``                      ``data.parquet``
==============  ===========================================================================  =================

The chat formats put the instruction and the input (when there is one) in the user turn, separated by a
blank line; ``system`` adds a system turn (chat formats only).

What goes in (``include``, any of; rows in ``seq`` order):

* ``accepted`` (default): candidates a reviewer accepted or edited — the reviewed texts win;
* ``passing``: candidates whose consensus passes at ``tau`` (the store's ``PASSING_SQL``), with the
  consensus choice as the output when nobody reviewed them;
* ``selection``: the candidates of a stored QDIT selection (``curate select``; ``selection`` names it, by
  default the newest).

A reviewer's reject always wins: rejected candidates, and those the generation filters dropped, are never
exported. Nothing else is decided here: the rows are :meth:`Store.export_rows`.

Where it goes: ``out`` is a folder holding the data file, the dataset card ``README.md`` (YAML front matter
the Hugging Face Hub reads, with a ``configs`` entry pointing at the data file, so ``load_dataset(out)``
works) and, with ``provenance="sidecar"``, ``data.provenance.jsonl``. The folder is written under a
temporary sibling name and renamed into place, so an interrupted export leaves no partial folder (a
``kill -9`` can leave a hidden ``.NAME.tmp-…`` sibling, never a half-written ``out``; the next export to the same
place removes such siblings whose process is gone). An existing export
folder is replaced only with ``force=True``; a folder holding anything an export does not write is never
touched. The store is only read. The same export of the same store gives byte-identical files: rows in
``seq`` order, fixed key order, no timestamps except the store's own (review times).

Provenance (``provenance``): ``none`` (default; trainers choke on extra columns), ``field`` (a ``metadata``
object in every row) or ``sidecar`` (one line per row in ``data.provenance.jsonl``, with the row's index
``row`` and the candidate ``id``): candidate id and seq, task type, generator and instruction models,
ensemble models, consensus reason / minimum pairwise Rouge-L / chosen index / passes at tau, the latest
review action, review status, reviewer and time, which sources included the row, and for an imported
candidate the dataset it came from (``source``, the import's name, and ``source_row``, its row there).

Text that is not valid UTF-8 (bytes another tool wrote into the database; curate itself cannot store
such text) is an error naming the candidate's seq and field (``invalid_text="error"``, the default), or,
with ``invalid_text="replace"``, each invalid byte becomes U+FFFD and the dataset card and
:attr:`ExportResult.repaired` list the rows. It is never replaced silently.
"""

from __future__ import annotations

import functools
import html
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Literal, Sequence

from . import __version__, checks
from .errors import ExportError, InputError, StoreError

if TYPE_CHECKING:  # the store (sqlite-utils, pandas) is imported by whoever passes one; `curate --help` stays fast
    from .store import Store

__all__ = ["FORMATS", "INCLUDES", "PROVENANCE", "INVALID_TEXT", "Format", "ExportResult", "export", "preview",
           "dataset_card"]

Layout = Literal["alpaca", "sharegpt", "messages"]


@dataclass(frozen=True)
class Format:
    """One export format: its row layout and the file the rows go to (None: a ``save_to_disk`` folder)."""

    name: str
    description: str
    layout: Layout
    data_file: str | None
    system: bool = False  # takes a system prompt


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("alpaca", "Alpaca JSON: one array of {instruction, input, output}", "alpaca", "data.json"),
    Format("alpaca-jsonl", "Alpaca JSONL: one {instruction, input, output} per line", "alpaca", "data.jsonl"),
    Format("sharegpt", "ShareGPT JSONL: {conversations: [{from, value}]} with human / gpt turns",
           "sharegpt", "data.jsonl", system=True),
    Format("messages", "chat messages JSONL (OpenAI / TRL): {messages: [{role, content}]}",
           "messages", "data.jsonl", system=True),
    Format("hf", "Hugging Face datasets folder (save_to_disk; load_from_disk) with Alpaca columns",
           "alpaca", None),
    Format("parquet", "Parquet with Alpaca columns (written by datasets)", "alpaca", "data.parquet"),
)}
INCLUDES = ("accepted", "passing", "selection")  # the sources Store.export_rows knows
PROVENANCE = ("none", "field", "sidecar")
INVALID_TEXT = ("error", "replace")
SIDECAR = "data.provenance.jsonl"
CARD = "README.md"
# every name an export writes: only a folder holding nothing else may be replaced (force=True)
_OURS = re.compile(r"(README\.md|data\.(json|jsonl|parquet)|data\.provenance\.jsonl|dataset_info\.json"
                   r"|state\.json|data-\d{5}-of-\d{5}\.arrow)")
_FILE_SUFFIXES = (".json", ".jsonl", ".parquet", ".arrow")


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote. ``files``: (name inside ``path``, bytes) by name; ``data_path``: the
    data file (the folder itself for ``hf``); ``counts``: rows per reason they are in (accepted, edited,
    passing = passing at tau and not reviewed, selection = only in the selection); ``repaired``: (seq, field)
    of the texts whose invalid UTF-8 was replaced (``invalid_text="replace"``); ``selection``: the selection
    exported (with ``include`` "selection")."""

    format: str
    path: Path
    data_path: Path
    rows: int
    bytes: int
    files: tuple[tuple[str, int], ...]
    counts: dict[str, int] = field(default_factory=dict)
    provenance: str = "none"
    repaired: tuple[tuple[int, str], ...] = ()
    selection: str | None = None


@dataclass(frozen=True)
class _Options:
    fmt: Format
    include: tuple[str, ...]
    tau: float
    system: str | None
    provenance: str
    selection: str | None
    invalid_text: str = "error"


def _options(fmt: str, include: Iterable[str] | str, tau: float, system: str | None, provenance: str,
             selection: str | None, invalid_text: str = "error") -> _Options:
    """Check every option; raises ExportError naming the bad one and the choices."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; one of {', '.join(FORMATS)}")
    spec = FORMATS[fmt]
    include = (include,) if isinstance(include, str) else tuple(dict.fromkeys(include))
    bad = [s for s in include if s not in INCLUDES]
    if bad or not include:
        raise ExportError(f"unknown include {', '.join(map(repr, bad)) or '(none)'}; "
                          f"one or more of {', '.join(INCLUDES)}")
    if provenance not in PROVENANCE:
        raise ExportError(f"unknown provenance {provenance!r}; one of {', '.join(PROVENANCE)}")
    if invalid_text not in INVALID_TEXT:
        raise ExportError(f"unknown invalid_text {invalid_text!r}; one of {', '.join(INVALID_TEXT)}")
    try:
        tau = checks.tau(tau, "export")
    except InputError as e:
        raise ExportError(str(e)) from None
    if system is not None and not spec.system:
        raise ExportError(f"format {fmt!r} has no system prompt; --system works with "
                          f"{', '.join(n for n, f in FORMATS.items() if f.system)}")
    if system is not None and not system.strip():
        system = None
    return _Options(spec, include, float(tau), system, provenance, selection, invalid_text)


# -- rows ------------------------------------------------------------------------------------------------
def _resolve(store: Store, o: _Options) -> _Options:
    """Name the selection an export of "selection" without a name takes: the newest."""
    if "selection" in o.include and o.selection is None:
        newest = store.list_selections()[:1]
        if newest:
            return replace(o, selection=newest[0]["name"])
    return o


def _rows(store: Store, o: _Options, limit: int | None = None) -> list[dict]:
    try:
        rows = store.export_rows(o.include, tau=o.tau, selection=o.selection, limit=limit)
    except StoreError as e:
        raise ExportError(str(e)) from e
    for r in rows:
        r["ensemble_models"] = json.loads(r["ensemble_models"]) if r["ensemble_models"] else []
        r["sources"] = _sources(r, o.include)
        r["repaired"] = [] if _all_valid(r) else [n for n in _TEXT_FIELDS if _fix_text(r, n, o.invalid_text)]
    return rows


def _sources(r: dict, include: Sequence[str]) -> list[str]:
    got = {"accepted": bool(r["in_accepted"]), "passing": r["passes"] == 1, "selection": bool(r["in_selection"])}
    return [s for s in include if got[s]]


_TEXT_FIELDS = ("instruction", "input", "output", "generator_model", "instruction_model", "reviewed_by",
                "review_action", "source", "ensemble_models")


def _all_valid(r: dict) -> bool:
    """Whether every text of the row is valid UTF-8 (the fast path: one encode per text)."""
    try:
        for name in _TEXT_FIELDS[:-1]:
            if r[name] is not None:
                r[name].encode("utf-8")
        for m in r["ensemble_models"]:
            m.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _valid(text: str) -> int | None:
    """None for valid text, else the index of the first lone surrogate (an invalid byte in the database)."""
    try:
        text.encode("utf-8")
        return None
    except UnicodeEncodeError as e:
        return e.start


def _fix_text(r: dict, name: str, mode: str) -> bool:
    """Check ``r[name]`` (a text or a list of texts); raise ExportError (``mode="error"``) or replace each
    invalid byte with U+FFFD (``"replace"``). Returns whether anything was replaced."""
    value = r[name]
    texts = value if isinstance(value, list) else [value]
    bad = [(i, at) for i, t in enumerate(texts) if isinstance(t, str) and (at := _valid(t)) is not None]
    if not bad:
        return False
    if mode == "error":
        raise ExportError(
            f"candidate seq {r['seq']} ({r['id'][:10]}): its {name} is not valid UTF-8 (character {bad[0][1]}): "
            "the database holds bytes another tool wrote. Pass --invalid-text replace (invalid_text='replace': "
            "each invalid byte becomes U+FFFD and the dataset card lists the row), or fix the text in the database.")
    fixed = [t.encode("utf-8", "surrogateescape").decode("utf-8", "replace") if isinstance(t, str) else t
             for t in texts]
    r[name] = fixed if isinstance(value, list) else fixed[0]
    return True


def _prompt(r: dict) -> str:
    return f"{r['instruction']}\n\n{r['input']}" if r["input"] else r["instruction"]


def _record(r: dict, o: _Options) -> dict:
    """One data row in the format's layout (key order fixed)."""
    if o.fmt.layout == "alpaca":
        return {"instruction": r["instruction"], "input": r["input"], "output": r["output"]}
    if o.fmt.layout == "sharegpt":
        turns = [{"from": "system", "value": o.system}] if o.system else []
        return {"conversations": turns + [{"from": "human", "value": _prompt(r)},
                                          {"from": "gpt", "value": r["output"]}]}
    turns = [{"role": "system", "content": o.system}] if o.system else []
    return {"messages": turns + [{"role": "user", "content": _prompt(r)},
                                 {"role": "assistant", "content": r["output"]}]}


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _provenance(r: dict) -> dict:
    return {"id": r["id"], "seq": r["seq"], "task_type": r["task_type"],
            "generator_model": r["generator_model"], "instruction_model": r["instruction_model"],
            "ensemble_models": r["ensemble_models"], "consensus_reason": r["consensus_reason"],
            "min_pairwise": r["min_pairwise"], "chosen_index": r["chosen_index"],
            "passes_tau": None if r["passes"] is None else bool(r["passes"]),
            "review_status": r["review_status"], "review_action": r["review_action"],
            "reviewer": r["reviewed_by"], "reviewed_at": _iso(r["reviewed_at"]), "included_by": r["sources"],
            "source": r["source"], "source_row": r["source_row"]}


def _records(rows: list[dict], o: _Options) -> tuple[list[dict], list[dict] | None]:
    """The data rows and (sidecar mode) the provenance lines."""
    data, side = [], [] if o.provenance == "sidecar" else None
    for i, r in enumerate(rows):
        rec = _record(r, o)
        if o.provenance == "field":
            rec["metadata"] = _provenance(r)
        elif side is not None:
            side.append({"row": i, **_provenance(r)})
        data.append(rec)
    return data, side


def _features(o: _Options):
    """The explicit ``datasets`` schema (so all-null columns still get their type)."""
    from datasets import Features, Value
    s = Value("string")
    cols: dict[str, Any] = {"instruction": s, "input": s, "output": s}
    if o.provenance == "field":
        cols["metadata"] = {
            "id": s, "seq": Value("int64"), "task_type": s, "generator_model": s, "instruction_model": s,
            "ensemble_models": [s], "consensus_reason": s, "min_pairwise": Value("float64"),
            "chosen_index": Value("int64"), "passes_tau": Value("bool"), "review_status": s,
            "review_action": s, "reviewer": s, "reviewed_at": s, "included_by": [s], "source": s,
            "source_row": Value("int64")}
    return Features(cols)


def _counts(rows: list[dict]) -> dict[str, int]:
    c = {"accepted": 0, "edited": 0, "passing": 0, "selection": 0}
    for r in rows:
        if r["review_status"] in ("accepted", "edited"):
            c[r["review_status"]] += 1
        elif r["passes"] == 1 and "passing" in r["sources"]:
            c["passing"] += 1
        else:
            c["selection"] += 1
    return c


# -- writers: each writes into the temporary folder ------------------------------------------------------
_ENCODE = json.JSONEncoder(ensure_ascii=False).encode


def preview_text(fmt: str, rows: list[dict]) -> str:
    """``rows`` (from :func:`preview`) as the data file's text: the first lines of a JSON Lines file, one
    object per line exactly as :func:`export` writes them; an ``alpaca`` JSON array's opening lines; for the
    binary formats (``hf``, ``parquet``) the rows as JSON Lines, since their file has no text."""
    array = FORMATS[fmt].name == "alpaca" if fmt in FORMATS else False
    lines = [_ENCODE(r) for r in rows]
    return ("[\n" + ",\n".join(lines) + ("\n]" if lines else "]")) if array else "\n".join(lines)


def _write_lines(path: Path, rows: list[dict], *, array: bool = False) -> None:
    """JSON Lines (or, with ``array``, a JSON array with one row per line), UTF-8, "\\n" line ends."""
    sep = ",\n" if array else "\n"
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("[\n" if array else "")
        for start in range(0, len(rows), 2000):
            f.write((sep if start else "") + sep.join(_ENCODE(r) for r in rows[start:start + 2000]))
        f.write("\n]\n" if array else "\n")


def _dataset(records: list[dict], o: _Options, card: str):
    from datasets import Dataset, DatasetInfo
    cols = {k: [r[k] for r in records] for k in records[0]}
    features = _features(o)
    info = DatasetInfo(description="Synthetic instruction-tuning data exported by curate; see README.md.",
                       license=_card_licence(card), features=features)
    return Dataset.from_dict(cols, features=features, info=info)


def _write_parquet(path: Path, records: list[dict], o: _Options, card: str) -> None:
    with _quiet_datasets():
        _dataset(records, o, card).to_parquet(str(path))


def _write_hf(folder: Path, records: list[dict], o: _Options, card: str) -> None:
    with _quiet_datasets():
        _dataset(records, o, card).save_to_disk(str(folder))


class _quiet_datasets:
    """No progress bars from ``datasets`` while exporting (restored afterwards)."""

    def __enter__(self):
        import datasets
        self.was = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()

    def __exit__(self, *exc):
        import datasets
        if self.was:
            datasets.enable_progress_bars()


def _write_data(tmp: Path, records: list[dict], o: _Options, card: str) -> None:
    if o.fmt.name == "hf":
        _write_hf(tmp, records, o, card)
    elif o.fmt.name == "parquet":
        _write_parquet(tmp / o.fmt.data_file, records, o, card)
    else:
        _write_lines(tmp / o.fmt.data_file, records, array=o.fmt.name == "alpaca")


# -- safe placement ---------------------------------------------------------------------------------------
def _target_state(out: Path, force: bool) -> str:
    """"new", "empty" (an empty folder) or "replace" (a previous export, with ``force``); raises ExportError."""
    if out.suffix.lower() in _FILE_SUFFIXES:
        raise ExportError(f"--out names the export folder (it holds the data file and README.md); {str(out)!r} "
                          f"looks like a file name. Pass a folder such as {str(out.with_suffix(''))!r}.")
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise ExportError(f"{out} exists and is not a plain folder (a file or a link); choose a new folder name "
                          "for --out")
    if not out.exists():
        return "new"
    try:
        names = sorted(p.name for p in out.iterdir())
    except OSError as e:
        raise ExportError(f"cannot read the folder {out}: {e}. Choose another --out.") from e
    if not names:
        return "empty"
    foreign = [n for n in names if not _OURS.fullmatch(n)]
    if foreign:
        raise ExportError(f"{out} holds files an export does not write ({', '.join(foreign[:5])}); it is never "
                          "replaced. Choose a new or empty folder for --out.")
    if not force:
        raise ExportError(f"{out} already holds an export; pass --force to replace it, or choose another --out")
    return "replace"


def _sibling(out: Path, tag: str) -> Path:
    return out.with_name(f".{out.name}.{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, owned by someone else
        return True
    return True


def _remove_stale(out: Path) -> list[str]:
    """Remove what an export killed mid-way left beside ``out``: its ``.NAME.tmp-PID-…`` folder, and a
    ``.NAME.old-PID-…`` previous export moved aside when ``out`` itself is in place, where the process PID is
    gone (a live one is another export at work). Returns the names removed."""
    pattern = re.compile(rf"\.{re.escape(out.name)}\.(tmp|old)-(\d+)-[0-9a-f]{{8}}")
    removed = []
    try:
        siblings = list(out.parent.iterdir()) if out.parent.is_dir() else []
    except OSError:
        return removed
    for p in siblings:
        m = pattern.fullmatch(p.name)
        if not m or not p.is_dir() or p.is_symlink() or _alive(int(m.group(2))):
            continue
        if m.group(1) == "old" and not out.exists():
            continue  # the only copy of the previous export: leave it for the user
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p.name)
    return removed


def _fsync_tree(folder: Path) -> None:
    for p in sorted(folder.iterdir()):
        with open(p, "rb") as f:
            os.fsync(f.fileno())


def _place(tmp: Path, out: Path, state: str) -> None:
    """Rename the finished folder to ``out`` (moving a previous export aside first, deleted afterwards)."""
    if state == "empty":
        out.rmdir()
    if state != "replace":
        os.replace(tmp, out)
        return
    old = _sibling(out, "old")
    os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


# -- the public functions ---------------------------------------------------------------------------------
def export(store: Store, fmt: str, out: str | os.PathLike, *, include: Iterable[str] | str = ("accepted",),
           tau: float = 0.01, system: str | None = None, provenance: str = "none", selection: str | None = None,
           force: bool = False, invalid_text: str = "error") -> ExportResult:
    """Write the curated rows of ``store`` in format ``fmt`` into the folder ``out`` (see the module doc),
    with the dataset card ``README.md``. Only reads the store.

    Raises :class:`~curate.errors.ExportError` (nothing written) for an unknown format / include / provenance,
    ``tau`` outside [0, 1], ``system`` with a format without system turns, nothing to export, no stored
    selection, an existing export without ``force``, a folder holding other files, an unwritable path, or
    text that is not valid UTF-8 with ``invalid_text="error"`` (naming the candidate's seq).
    """
    o = _resolve(store, _options(fmt, include, tau, system, provenance, selection, invalid_text))
    out = Path(out).expanduser().absolute()
    _remove_stale(out)
    state = _target_state(out, force)
    rows = _rows(store, o)
    if not rows:
        raise ExportError(_nothing_message(store, o))
    records, side = _records(rows, o)
    card = _card(store, rows, o)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = _sibling(out, "tmp")
        tmp.mkdir()
    except OSError as e:
        raise ExportError(f"cannot write into {out.parent}: {e.strerror or e}. Choose a writable --out.") from e
    try:
        _write_data(tmp, records, o, card)
        if side is not None:
            _write_lines(tmp / SIDECAR, side)
        (tmp / CARD).write_text(card, encoding="utf-8", newline="\n")
        _fsync_tree(tmp)
        files = tuple((p.name, p.stat().st_size) for p in sorted(tmp.iterdir()))
        _place(tmp, out, state)
    except OSError as e:
        raise ExportError(f"cannot write the export to {out}: {e.strerror or e}. Nothing was written; "
                          "check the free space and permissions, or choose another --out.") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    data_path = out if o.fmt.data_file is None else out / o.fmt.data_file
    return ExportResult(o.fmt.name, out, data_path, len(rows), sum(n for _, n in files), files, _counts(rows),
                        o.provenance, tuple((r["seq"], f) for r in rows for f in r["repaired"]),
                        o.selection if "selection" in o.include else None)


def preview(store: Store, fmt: str, n: int = 5, *, include: Iterable[str] | str = ("accepted",),
            tau: float = 0.01, system: str | None = None, provenance: str = "none",
            selection: str | None = None, invalid_text: str = "error") -> list[dict]:
    """The first ``n`` rows exactly as :func:`export` writes them (for ``hf`` / ``parquet``: the row dicts;
    with ``provenance="sidecar"``, the data rows only). Raises ExportError like :func:`export` for bad
    options; an empty list when nothing would be exported."""
    o = _resolve(store, _options(fmt, include, tau, system, provenance, selection, invalid_text))
    return _records(_rows(store, o, limit=max(0, int(n))), o)[0]


def dataset_card(store: Store, fmt: str = "alpaca-jsonl", *, include: Iterable[str] | str = ("accepted",),
                 tau: float = 0.01, system: str | None = None, provenance: str = "none",
                 selection: str | None = None, invalid_text: str = "error") -> str:
    """The ``README.md`` an export with these options would write (Markdown with YAML front matter).
    Raises ExportError like :func:`export`, including when nothing would be exported."""
    o = _resolve(store, _options(fmt, include, tau, system, provenance, selection, invalid_text))
    rows = _rows(store, o)
    if not rows:
        raise ExportError(_nothing_message(store, o))
    return _card(store, rows, o)


def _nothing_message(store: Store, o: _Options) -> str:
    rc = store.review_counts()
    what = {"accepted": "accepted or edited", "passing": f"passing consensus at tau={o.tau:g}",
            "selection": f"in the selection {o.selection!r}" if o.selection else "in the selection"}
    hint = ("review candidates in the app (`python app.py`) or add --include passing"
            if o.include == ("accepted",) else "check --include and --tau")
    return (f"nothing to export: no candidate is {' or '.join(what[s] for s in o.include)} (review status: "
            f"{', '.join(f'{k} {v}' for k, v in sorted(rc.items())) or 'no candidates'}); {hint}. "
            "Nothing was written.")


# -- the dataset card -------------------------------------------------------------------------------------
_LICENCE_NOTES = {
    "Apache-2.0": "Apache-2.0",
    "Gemma terms of use": "Gemma Terms of Use (https://ai.google.dev/gemma/terms) and the Gemma Prohibited Use "
                          "Policy; a model trained on Gemma outputs can count as a Model Derivative under them",
}
_SHIPPED_SEEDS = "self_instruct_seed_tasks.jsonl"


@functools.lru_cache(maxsize=256)
def _model_licence(model: str) -> tuple[str, str]:
    """(display name, licence) of a stored model id; unknown models get "unknown"."""
    from .lm.registry import list_embedded
    name = model.split("@", 1)[0] if model.startswith("openai:") else model  # never print server URLs
    for spec in list_embedded():
        if model in (spec.name, spec.upstream) or Path(model).name in (spec.file_name, spec.name):
            return name, spec.licence
    if model.startswith("scripted:"):
        return name, "scripted test model (no weights)"
    return name, "unknown — check the model's own terms"


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n < limit:
            return label
    return "10M<n<100M"


def _card_licence(card: str) -> str:
    m = re.search(r"^license: (\S+)$", card, re.M)
    return m.group(1) if m else ""


def _models(rows: list[dict], imported_models: dict[str, str]) -> dict[str, dict]:
    """model → {licence, instructions, instances, ensemble}: how many exported rows each model wrote the
    instruction, the generator's output or an ensemble output of. An imported candidate's instruction and o0
    are the source's (listed by :func:`_imported_sources`, not here); imported outputs' models take the licence of the
    source they came from (``imported_models``)."""
    counts: dict[tuple[str, str], int] = {}
    for r in rows:
        own = () if r["source"] else ((r["instruction_model"], "instructions"), (r["generator_model"], "instances"))
        ensemble = [m for m in dict.fromkeys(r["ensemble_models"]) if not (r["source"] and m == r["source"])]
        for model, role in (*own, *((m, "ensemble") for m in ensemble)):
            if model:
                counts[model, role] = counts.get((model, role), 0) + 1
    out: dict[str, dict] = {}
    for (model, role), n in counts.items():
        name, licence = _model_licence(model)
        if model in imported_models and licence.startswith("unknown"):
            licence = imported_models[model]
        m = out.setdefault(name, {"licence": licence, "instructions": 0, "instances": 0, "ensemble": 0})
        m[role] += n
    return dict(sorted(out.items()))


def _imported_sources(rows: list[dict], sources: list[dict]) -> list[dict]:
    """The imported sources with rows in this export: name, licence, files, formats, rows (candidates)."""
    n: dict[str, int] = {}
    for r in rows:
        if r["source"]:
            n[r["source"]] = n.get(r["source"], 0) + 1
    return [{**s, "rows": n[s["name"]]} for s in sources if s["name"] in n]


def _table(head: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:  # reviewer names and the like are untrusted: shown as text in any Markdown viewer
        return html.escape(str(v), quote=False).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def _front_matter(rows: list[dict], o: _Options, licences: set[str], seeds_known: bool) -> str:
    """The Hub metadata. ``licences``: of every model and imported source with rows here. The licence is
    apache-2.0 when all of them and the seeds are, the one SPDX id when every one is that id, "other" when they
    are known but differ (the card's Licences section lists them), else "unknown"."""
    import yaml
    meta: dict[str, Any] = {}
    known = licences - {"scripted test model (no weights)"}
    spdx = all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.+-]*", lic) and lic.lower() not in ("unknown", "other")
               for lic in known)
    if "Gemma terms of use" in licences:
        meta.update(license="other", license_name="gemma-terms-of-use",
                    license_link="https://ai.google.dev/gemma/terms")
    elif known <= {"Apache-2.0"} and seeds_known:
        meta["license"] = "apache-2.0"
    elif len(known) == 1 and spdx and seeds_known:
        meta["license"] = next(iter(known)).lower()
    elif known and spdx and seeds_known:
        meta.update(license="other", license_name="mixed")
    else:
        meta["license"] = "unknown"
    data_file = o.fmt.data_file or "data-*.arrow"
    meta.update({
        "language": ["en"], "pretty_name": "Synthetic instruction-tuning data (curate)",
        "size_categories": [_size_category(len(rows))], "task_categories": ["text-generation"],
        "tags": ["synthetic", "instruction-tuning", "curate", "ensemble-instruct"],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": data_file}]}],
    })
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=1000) + "---\n"


def _fmt_kappa(k: float | None) -> str:
    return "undefined" if k is None else f"{k:.3f}"


def _review_section(store: Store) -> str:
    """The card's "Review" section: the overlap (reviews per candidate), how candidates were decided, the
    agreement (Cohen's kappa per pair, Fleiss' kappa overall, on accept vs reject) and the shared items."""
    from .agreement import agreement
    ov = store.review_overlap()
    quorums = ov["quorums"] or [1]
    overlap = (f"{quorums[-1]} review(s) per candidate" if len(quorums) == 1
               else f"{', '.join(map(str, quorums))} reviews per candidate (the setting changed during review)")
    lines = [("overlap", overlap), ("decided by agreeing reviews", ov["decided_by_votes"]),
             ("decided by one review, an admin's adjudication or a bulk action", ov["decisions"]),
             ("of those, adjudicated disagreements", ov["adjudicated"]),
             ("still disputed (left out of this export)", ov["disputed"])]
    ag = agreement(store.all_votes())
    text = "## Review\n\nOnly decided candidates are exported.\n\n" + _table(("", ""), lines) + "\n"
    if ag["pairs"]:
        o = ag["overall"]
        text += ("\nAgreement on accept vs reject (an edit counts as accept), over the reviewers' votes: "
                 f"Fleiss' kappa {_fmt_kappa(o['kappa'])} over {o['items']} candidates with {o['raters_per_item']} "
                 f"reviews each.\n\n"
                 + _table(("reviewers", "shared candidates", "agree", "Cohen's kappa"),
                          [(f"{p['a']} / {p['b']}", p["shared"], p["agree"], _fmt_kappa(p["kappa"]))
                           for p in ag["pairs"]]) + "\n")
    else:
        text += "\nNo candidate was reviewed by more than one reviewer, so there is no agreement to report.\n"
    return text


def _card(store: Store, rows: list[dict], o: _Options) -> str:
    """The dataset card: deterministic given the store and the options (no clock)."""
    models = _models(rows, store.imported_output_models())
    sources = _imported_sources(rows, store.list_sources())
    licences = {m["licence"] for m in models.values()} | {s["license"] for s in sources}
    seeds = store.seed_sources()
    seeds_known = all(s["source"] == _SHIPPED_SEEDS for s in seeds)
    st = store.stats()
    passing = store.count_passing(o.tau)
    reviewers = store.reviewer_progress()
    last_review = max((r["last_at"] for r in reviewers if r["last_at"] is not None), default=None)
    counts = _counts(rows)
    by_type: dict[str, int] = {}
    for r in rows:
        by_type[r["task_type"]] = by_type.get(r["task_type"], 0) + 1
    data_file = o.fmt.data_file or "data-00000-of-0000N.arrow (a save_to_disk folder)"
    load = (f'load_from_disk("PATH")' if o.fmt.name == "hf" else
            f'load_dataset("PATH")  # or load_dataset("{"parquet" if o.fmt.name == "parquet" else "json"}", '
            f'data_files="PATH/{o.fmt.data_file}")')
    what = {"accepted": "accepted or edited by a reviewer (the reviewed text wins)",
            "passing": f"passing the Rouge-L consensus at tau = {o.tau:g} (the consensus choice as output "
                       "unless reviewed)",
            "selection": f"in the QDIT selection {o.selection!r}" if o.selection else "in the QDIT selection"}
    parts = [_front_matter(rows, o, licences, seeds_known)]
    imported = sum(s["rows"] for s in sources)
    made = (f"generated with small language models by curate {__version__} (Ensemble-Instruct generation and "
            "Rouge-L output consensus)")
    if imported:
        made = ((f"{len(rows) - imported:,} of them {made}, " if imported < len(rows) else "")
                + f"{'all ' if imported == len(rows) else ''}{imported:,} imported from "
                + ", ".join(f"`{s['name']}`" for s in sources) + f" into curate {__version__} (see Sources)")
    parts.append(
        f"# Synthetic instruction-tuning data (curate)\n\n"
        f"{len(rows):,} instruction / input / output examples, {made}"
        + (f", reviewed by people (data as of the latest review, {_iso(last_review)})" if last_review else "")
        + ".\n\n"
        f"Rows: candidates {' or '.join(what[s] for s in o.include)}; never candidates a reviewer rejected. "
        "Ordered by generation sequence.\n")
    fmt_rows = [("format", f"`{o.fmt.name}` — {o.fmt.description}"), ("data", f"`{data_file}`"),
                ("system prompt", repr(o.system) if o.system else "none"),
                ("provenance", {"none": "none", "field": "a `metadata` field in every row",
                                "sidecar": f"`{SIDECAR}` (one line per row: `row`, `id`, …)"}[o.provenance]),
                ("load", f"`{load}`")]
    repaired = [f"{r['seq']} ({', '.join(r['repaired'])})" for r in rows if r["repaired"]]
    if repaired:
        fmt_rows.append(("invalid UTF-8 replaced with U+FFFD", "seq " + "; ".join(repaired)))
    parts.append("## Data\n\n" + _table(("", ""), fmt_rows) + "\n")
    parts.append("## What is in it\n\n" + _table(("rows", "n"), [
        ("accepted by a reviewer", counts["accepted"]), ("edited by a reviewer", counts["edited"]),
        (f"passing consensus at tau = {o.tau:g}, not reviewed", counts["passing"]),
        ("in the selection only", counts["selection"]),
        *((f"task type {t} ({'with' if t == 'A' else 'without'} input)", n) for t, n in sorted(by_type.items())),
        ("total", len(rows))]) + "\n")
    stage = [("seed tasks", sum(st["seeds"].values())),
             ("raw completions", sum(r["completions"] for r in st["completions"]))]
    stage += [(f"instructions: {r}", n) for r, n in sorted(st["instructions"].items())]
    stage += [(f"candidates: {r}", n) for r, n in sorted(st["candidates"].items())]
    stage += [(f"unparseable completions: {r}", n) for r, n in sorted(st["unparseable"].items())]
    stage += [(f"consensus: {r}", n) for r, n in sorted(st["consensus"].items())]
    stage += [(f"passing consensus at tau = {o.tau:g}", f"{passing['passing']} of {passing['scored']}")]
    stage += [(f"review: {r}", n) for r, n in sorted(st["reviews"].items())]
    parts.append("## How it was made: counts per stage and reason (the whole store)\n\n"
                 + _table(("stage / reason", "n"), stage) + "\n")
    if sources:
        parts.append("## Sources\n\nImported datasets with rows in this export (`curate import`): each row's "
                     "instruction, input and first output (o0) come from the source; the provenance columns "
                     "`source` and `source_row` name it per row.\n\n"
                     + _table(("source", "licence", "rows", "files", "formats"),
                              [(s["name"], s["license"], s["rows"], ", ".join(Path(x).name for x in s["locations"]),
                                ", ".join(s["formats"])) for s in sources]) + "\n")
    parts.append("## Models\n\nRows of this export each model wrote instructions, instances (the generator's "
                 "output) or ensemble outputs for.\n\n"
                 + _table(("model", "licence", "instructions", "instances", "ensemble outputs"),
                          [(m, d["licence"], d["instructions"], d["instances"], d["ensemble"])
                           for m, d in models.items()]) + "\n")
    jobs = list(reversed(store.list_jobs(limit=100_000)))
    thresholds = store.consensus_thresholds()
    settings = [("consensus tau at compute time",
                 ", ".join(f"{t['threshold']:g} ({t['n']} rows)" for t in thresholds) or "no consensus rows"),
                ("consensus tau of this export", f"{o.tau:g}")]
    if "selection" in o.include:
        sel = next((r for r in store.list_selections() if r["name"] == o.selection), None)
        if sel:
            settings.append((f"QDIT selection {o.selection!r} ({sel['size']} picks)",
                             "`" + json.dumps(sel["params"], sort_keys=True, ensure_ascii=False) + "`"))
    parts.append("## Settings\n\n" + _table(("setting", "value"), settings) + "\n\n"
                 + ("Jobs (in the order they were started), with their configuration:\n\n"
                    + _table(("job", "kind", "state", "config"),
                             [(j["id"], j["kind"], j["state"], "`" + json.dumps(j["config"], sort_keys=True,
                                                                                  ensure_ascii=False) + "`")
                              for j in jobs]) if jobs else "No jobs are recorded in the store.") + "\n")
    seed_rows = [(s["source"], s["task_type"], s["n"],
                  "Apache-2.0 (Self-Instruct, Wang et al., 2023)" if s["source"] == _SHIPPED_SEEDS
                  else "unknown — your own seed file") for s in seeds]
    parts.append("## Seed tasks\n\n" + (_table(("source", "type", "tasks", "licence"), seed_rows) if seeds
                                        else "No seed tasks are recorded in the store.") + "\n")
    parts.append(_review_section(store))
    parts.append("## Reviewers\n\n" + (_table(
        ("reviewer", "actions", "candidates", "accept", "edit", "reject", "reset", "first", "last"),
        [(r["reviewer"], r["actions"], r["candidates"], r["accept"], r["edit"], r["reject"], r["reset"],
          _iso(r["first_at"]), _iso(r["last_at"])) for r in reviewers]) if reviewers
        else "No reviews are recorded.") + "\n")
    notes = sorted({f"- {m}: {_LICENCE_NOTES.get(d['licence'], d['licence'])}" for m, d in models.items()}
                   | {f"- {s['name']} (imported data): {s['license']}"
                      + (" — pass --license SPDX when importing it" if s["license"] == "unknown" else "")
                      for s in sources})
    parts.append(
        "## Licences\n\n"
        "Generated data inherits obligations from the models that wrote it and from the seed tasks, imported data "
        "keeps the licence of its source; the `license` above is derived from them (apache-2.0 only when every "
        "model, source and seed file is Apache-2.0; one SPDX id when all share it; other when they differ). "
        "This is not legal advice: check each model's terms before you publish or train on the data.\n\n"
        + "\n".join(notes) + "\n"
        + ("- Seed tasks: Self-Instruct's 175 seed tasks, Apache-2.0.\n" if seeds and seeds_known else ""))
    parts.append(
        "## Citation\n\n"
        "- Self-Instruct: Wang et al., 2023, ACL, doi:10.18653/v1/2023.acl-long.754 (the seed tasks).\n"
        "- Ensemble-Instruct: Lee et al., 2023, arXiv:2310.13961 (generation and output consensus).\n")
    return "\n".join(parts)
