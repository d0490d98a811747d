"""Bring your own data: the import stage (docs/ARCHITECTURE.md, "Importing data").

An import reads a dataset (:mod:`curate.readers`: JSON, JSONL, CSV/TSV, Parquet, a ``datasets`` folder, a Hub
id), turns each record into an instruction, an input and an output (:data:`FORMATS`, with a column mapping
detected from the first records or given), and stores it:

* as **candidates** (the default): one candidate per row, whose o0 is the row's output and whose generator is
  the source name; task type A iff its input is not "" (the seed rule); the source's licence, file, format and
  mapping, and each row's place (row, line) are recorded;
* as **outputs** (``as_outputs``): one output of model ``model`` (or of the row's ``generator`` column) for every
  stored candidate with the same instruction and input, so a candidate collects k outputs; rows that match no
  candidate are reported.

Conversations (ShareGPT, chat messages, "### Human: … ### Assistant: …" text): a leading system turn is kept as
provenance, the first user turn is the instruction (input ""), the first assistant turn after it the output;
the turns after it are cut off and counted (``multi_turn_cut``).

Ids are content hashes, so importing the same file twice adds nothing and a row repeated inside a file is
stored once (counted as ``duplicates``). The import streams: it reads and stages one batch at a time (bounded
memory, progress, stoppable between batches), then publishes every staged row in one transaction, so a failure
or a ``kill -9`` never leaves half an import in the store; a re-run resumes from the staged batches
(``imports.rows_read``) and completes it.

Bad rows (a line that is not JSON or not UTF-8, a CSV row with the wrong number of fields, an empty
instruction or output, a conversation without a user or an assistant turn): all or nothing by default, like
the seed loader — the import fails listing every bad row with its place and stores nothing; with
``skip_bad`` the other rows are imported and the rejects are stored with their reasons (``import_rejects``).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .errors import SourceError
from .readers import Record, Source, open_source
from .stage import StageContext

if TYPE_CHECKING:  # the store (sqlite-utils, rouge) is imported when an import runs; `curate --help` stays fast
    from .store import Store

__all__ = ["ImportConfig", "Config", "check", "run", "preview", "parse_mapping", "FORMATS", "FIELDS", "Plan",
           "plan_source", "MAX_REPORTED"]

FORMATS = ("alpaca", "sharegpt", "messages", "guanaco")
FORMAT_HELP = {
    "auto": "detected from the first records' columns",
    "alpaca": "columns for instruction, input (optional) and output (Alpaca, Dolly, GPTeacher, AlpacaEval…)",
    "sharegpt": "a list of {from, value} turns (ShareGPT)",
    "messages": "a list of {role, content} turns (OpenAI / TRL chat)",
    "guanaco": "one text column of '### Human: … ### Assistant: …' turns",
}
#: the fields a record is mapped to, and the column names each is looked for under (first found wins)
SYNONYMS: dict[str, tuple[str, ...]] = {
    "instruction": ("instruction", "prompt", "question", "query"),
    "input": ("input", "context"),
    "output": ("output", "response", "completion", "answer"),
    "system": ("system", "system_prompt"),
    "generator": ("generator", "model"),
    "conversations": ("conversations", "conversation", "messages"),
    "text": ("text",),
}
FIELDS = tuple(SYNONYMS)
OPTIONAL = ("input", "system", "generator")  # fields a mapping may set to "" (no such column)
ROLES = {"system": "system", "user": "user", "human": "user", "prompter": "user", "assistant": "assistant",
         "gpt": "assistant", "chatgpt": "assistant", "bard": "assistant", "bing": "assistant", "model": "assistant",
         "bot": "assistant"}
HEAD = 100          # records the format is detected from
MAX_REPORTED = 20   # bad rows listed in one error, then a count
_GUANACO = re.compile(r"###\s*(Human|Assistant)\s*:", re.I)
_LICENCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+-]*$")


class ImportConfig(BaseModel):
    """Everything an import needs; stored with its job."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(description="a file (JSON, JSONL, CSV/TSV, Parquet), a datasets folder or a Hub id")
    format: Literal["auto", "alpaca", "sharegpt", "messages", "guanaco"] = "auto"
    mapping: dict[str, str] = Field(default_factory=dict, description="field -> column ('' = no such column)")
    name: str | None = Field(None, description="the source name (default: the file's stem or the Hub id's name)")
    license: str | None = Field(None, description="the data's SPDX licence id")
    split: str | None = None
    limit: int | None = Field(None, ge=1, description="import only the first N records")
    as_outputs: bool = Field(False, description="attach the rows as outputs to candidates with the same "
                                                "instruction and input")
    model: str | None = Field(None, description="as_outputs: the model that wrote them (else a generator column)")
    skip_bad: bool = Field(False, description="import the good rows and store the bad ones with their reasons")
    batch_size: int = Field(10_000, ge=1, le=100_000)

    @field_validator("source")
    @classmethod
    def _source(cls, v: str) -> str:
        from pathlib import Path
        v = v.strip()
        p = Path(v).expanduser()
        return str(p.absolute()) if p.exists() else v

    @field_validator("mapping")
    @classmethod
    def _mapping(cls, v: dict[str, str]) -> dict[str, str]:
        for key, col in v.items():
            if key not in FIELDS:
                raise ValueError(f"--map: unknown field {key!r}; the fields are {', '.join(FIELDS)}")
            if not col and key not in OPTIONAL:
                raise ValueError(f"--map {key}= needs a column name ({key} cannot be left out)")
        return v

    @field_validator("name", "model")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is None:
            return None
        v = v.strip()
        if not v or len(v) > 200:
            raise ValueError("a source or model name needs 1 to 200 characters")
        return v

    @field_validator("license")
    @classmethod
    def _licence(cls, v: str | None) -> str | None:
        if v is None:
            return None
        v = v.strip()
        if not _LICENCE.match(v):
            raise ValueError(f"--license takes an SPDX licence id such as CC-BY-4.0, CC-BY-NC-4.0 or Apache-2.0, "
                             f"not {v!r}")
        return v

    @model_validator(mode="after")
    def _outputs(self) -> "ImportConfig":
        if self.model is not None and not self.as_outputs:
            raise ValueError("--model names the model of imported outputs: use it with --as-outputs (a dataset's "
                             "candidates take the source name, --name, as their generator)")
        return self


Config = ImportConfig


def parse_mapping(text: str | list[str] | None) -> dict[str, str]:
    """``"instruction=prompt,input=,output=response"`` (or a list of such strings) → {field: column}.
    Raises SourceError for an item without ``=``."""
    items = [text] if isinstance(text, str) else list(text or [])
    out: dict[str, str] = {}
    for chunk in items:
        for item in (chunk or "").split(","):
            if not item.strip():
                continue
            key, sep, col = item.partition("=")
            if not sep or not key.strip():
                raise SourceError(f"--map: {item.strip()!r} is not FIELD=COLUMN (e.g. --map output=response,input=)")
            out[key.strip()] = col.strip()
    return out


# -- the plan: format and column mapping ---------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """How an opened source's records become rows: the format, {field: column or None}, the columns found in the
    first records, and the source name."""

    format: str
    mapping: dict[str, str | None]
    columns: list[str]
    name: str

    def mapping_text(self) -> str:
        """The mapping as a ``--map`` value (columns that are left out read ``field=``)."""
        return ",".join(f"{k}={v or ''}" for k, v in self.mapping.items() if v or k == "input")


def _found(columns: list[str]) -> str:
    shown = ", ".join(columns[:20]) + (f", … ({len(columns)} columns)" if len(columns) > 20 else "")
    return shown or "none"


def _suggest(fieldname: str, columns: list[str], used: set[str], values: list[dict]) -> str:
    free = [c for c in columns if c not in used and any(isinstance(v.get(c), str) for v in values)]
    close = difflib.get_close_matches(fieldname, free, n=1, cutoff=0.5)
    pick = close[0] if close else (free[0] if free else None)
    return f"--map {fieldname}={pick}" if pick else f"--map {fieldname}=COLUMN"


def _conversation_column(columns: list[str], values: list[dict]) -> str | None:
    for name in SYNONYMS["conversations"]:
        if name in columns and any(isinstance(v.get(name), list) for v in values):
            return name
    return None


def detect(columns: list[str], values: list[dict], fmt: str, mapping: dict[str, str], *, label: str, name: str,
           as_outputs: bool = False, model: str | None = None) -> Plan:
    """The plan for records with these ``columns`` (``values``: the first records): ``fmt`` "auto" tells the
    format from the columns; ``mapping`` (a user's ``--map``) wins over the column names looked for. Raises
    SourceError naming the columns found and the ``--map`` that would fix it."""
    user = {k: (v or None) for k, v in mapping.items()}
    for key, col in user.items():
        if col is not None and col not in columns:
            raise SourceError(f"{label}: --map {key}={col}: there is no column {col!r} (columns found: "
                              f"{_found(columns)})")
    if fmt == "auto":
        conv = user.get("conversations") or _conversation_column(columns, values)
        if conv is not None and not (user.get("instruction") or user.get("output")):
            turns = next((v[conv] for v in values if isinstance(v.get(conv), list) and v[conv]), [])
            fmt = "messages" if any(isinstance(t, dict) and "role" in t for t in turns) else "sharegpt"
        elif user.get("instruction") or user.get("output") or any(c in columns for c in SYNONYMS["instruction"]):
            fmt = "alpaca"
        elif (user.get("text") or "text" in columns) and any(
                isinstance(v.get(user.get("text") or "text"), str) and _GUANACO.search(v[user.get("text") or "text"])
                for v in values):
            fmt = "guanaco"
        else:
            raise SourceError(f"{label}: cannot tell the format from the columns (columns found: {_found(columns)}). "
                              "Name the columns with --map instruction=COLUMN,output=COLUMN[,input=COLUMN], or pick "
                              f"--format ({', '.join(FORMATS)}).")

    def pick(key: str) -> str | None:
        if key in user:
            return user[key]
        return next((c for c in SYNONYMS[key] if c in columns), None)

    if fmt == "alpaca":
        wanted = ("instruction", "input", "output", "system")
    elif fmt in ("sharegpt", "messages"):
        wanted = ("conversations", "system")
    else:
        wanted = ("text",)
    plan = {k: pick(k) for k in wanted}
    if as_outputs and model is None:
        plan["generator"] = pick("generator")
    required = {"alpaca": ("instruction", "output"), "sharegpt": ("conversations",), "messages": ("conversations",),
                "guanaco": ("text",)}[fmt]
    missing = [k for k in required if not plan.get(k)]
    if missing:
        used = {c for c in plan.values() if c}
        fixes = " ".join(_suggest(k, columns, used, values) for k in missing)
        raise SourceError(f"{label}: no column for {', '.join(repr(k) for k in missing)} ({fmt} format; columns "
                          f"found: {_found(columns)}). Pass {fixes}"
                          + (" or pick another --format." if len(columns) else "."))
    if as_outputs and model is None and not plan.get("generator"):
        raise SourceError(f"{label}: imported outputs need the name of the model that wrote them: pass --model NAME, "
                          f"or --map generator=COLUMN for a column naming each row's model (columns found: "
                          f"{_found(columns)}).")
    return Plan(fmt, plan, columns, name)


def plan_source(src: Source, cfg: ImportConfig) -> Plan:
    """Detect (or check) the format and mapping of an opened source from its first records."""
    head = src.head(HEAD)
    values = [r.value for r in head if r.value is not None]
    if not values:
        if head:
            raise SourceError(f"{src.label}: none of the first {len(head)} records can be read: "
                              + "; ".join(f"{r.where}: {r.problem}" for r in head[:3]))
        raise SourceError(f"{src.label}: no records (an empty array, only blank lines or only a header): nothing "
                          "to import.")
    columns = list(dict.fromkeys(k for v in values for k in v))
    name = cfg.name or src.default_name
    if not name:
        raise SourceError(f"{src.label}: name the source with --name NAME")
    return detect(columns, values, cfg.format, cfg.mapping, label=src.label, name=name, as_outputs=cfg.as_outputs,
                  model=cfg.model)


# -- rows -----------------------------------------------------------------------------------------------------
@dataclass
class Parsed:
    """One record as curate reads it."""

    instruction: str
    input: str
    output: str
    system: str | None = None
    model: str | None = None
    extra: dict | None = None
    turns_cut: int = 0


def _type(v: Any) -> str:
    if v is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", list: "an array", dict: "an object"}.get(
        type(v), type(v).__name__)


def _text(value: dict, col: str | None, fieldname: str, *, required: bool) -> str:
    """The string in column ``col`` (None / a missing cell: "" for optional fields); raises ValueError naming
    the field and column."""
    v = value.get(col) if col else None
    named = fieldname if col in (None, fieldname) else f"{fieldname} (column {col!r})"
    if v is None:
        if required:
            raise ValueError(f"{named} is missing" if col not in value else f"{named} is null")
        return ""
    if not isinstance(v, str):
        raise ValueError(f"{named} must be a string, not {_type(v)}")
    if required and not v.strip():
        raise ValueError(f"{named} is {'empty' if v == '' else 'only whitespace'}")
    return v


def _content(v: Any) -> Any:
    """A turn's text; OpenAI-style content parts ``[{"type": "text", "text": …}]`` are joined."""
    if isinstance(v, list) and all(isinstance(p, dict) for p in v):
        return "".join(p.get("text", "") for p in v if p.get("type", "text") == "text")
    return v


def _turns(turns: list[tuple[str, Any]], label: str) -> tuple[str, str, str | None, int]:
    """(instruction, output, system, turns cut) from (role, text) turns, read up to the first assistant answer
    (the turns after it are only counted); raises ValueError."""
    system: list[str] = []
    instruction: str | None = None
    for i, (role, text) in enumerate(turns):
        if role not in ("system", "user", "assistant"):
            raise ValueError(f"{label} turn {i} has the role {role!r} (known: system, user / human, assistant / gpt)")
        if not isinstance(text, str):
            raise ValueError(f"{label} turn {i} text must be a string, not {_type(text)}")
        if instruction is None:
            if role == "system":
                system.append(text)
            elif role == "assistant":
                raise ValueError(f"{label} turn {i} is an assistant turn before any user turn")
            elif not text.strip():
                raise ValueError(f"{label} turn {i}: the first user turn is empty")
            else:
                instruction = text
        elif role == "assistant":
            if not text.strip():
                raise ValueError(f"{label} turn {i}: the first assistant turn is empty")
            return instruction, text, "\n\n".join(system) or None, len(turns) - i - 1
        else:
            raise ValueError(f"{label} turn {i} is a {role} turn; the first user turn needs an assistant answer "
                             "right after it")
    raise ValueError(f"{label}: no user turn" if instruction is None else
                     f"{label}: no assistant turn after the first user turn")


def _conversation(value: dict, col: str) -> list[tuple[str, Any]]:
    """The (role, text) turns of a ShareGPT or chat-messages record; an unknown role is kept as it is."""
    turns = value.get(col)
    if not isinstance(turns, list) or not turns:
        raise ValueError(f"{col!r} must be a non-empty list of turns, not {'empty' if turns == [] else _type(turns)}")
    out = []
    for i, t in enumerate(turns):
        if not isinstance(t, dict):
            raise ValueError(f"{col!r} turn {i} must be an object, not {_type(t)}")
        role = t.get("from", t.get("role"))
        out.append((ROLES.get(str(role).strip().lower(), str(role)), _content(t.get("value", t.get("content")))))
    return out


def _guanaco(text: str) -> list[tuple[str, Any]]:
    parts = _GUANACO.split(text)
    if len(parts) < 3:
        raise ValueError("the text has no '### Human:' / '### Assistant:' turns")
    if parts[0].strip():
        raise ValueError("text before the first '### Human:' turn")
    return [("user" if role.lower() == "human" else "assistant", body.strip())
            for role, body in zip(parts[1::2], parts[2::2])]


def parse_record(value: dict, plan: Plan, model: str | None = None) -> Parsed:
    """One record → a :class:`Parsed` row under ``plan``; raises ValueError saying what is wrong (the message
    goes after the record's place). ``model``: the outputs' model given with --model."""
    m = plan.mapping
    if plan.format == "alpaca":
        parsed = Parsed(_text(value, m["instruction"], "instruction", required=True),
                        _text(value, m.get("input"), "input", required=False),
                        _text(value, m["output"], "output", required=True),
                        _text(value, m.get("system"), "system", required=False) or None)
    else:
        if plan.format == "guanaco":
            turns = _guanaco(_text(value, m["text"], "text", required=True))
            where = "the text's"
        else:
            turns = _conversation(value, m["conversations"])
            where = repr(m["conversations"])
        instruction, output, system, cut = _turns(turns, where)
        if m.get("system"):
            system = _text(value, m["system"], "system", required=False) or system
        parsed = Parsed(instruction, "", output, system, turns_cut=cut)
    if "generator" in m:
        parsed.model = model or _text(value, m["generator"], "generator", required=True).strip()
    else:
        parsed.model = model
    for name in ("instruction", "input", "output", "system"):
        v = getattr(parsed, name)
        if v:
            try:
                v.encode("utf-8")
            except UnicodeEncodeError as e:
                raise ValueError(f"{name} holds an invalid character (a lone surrogate at character {e.start}, "
                                 "e.g. a '\\ud800' escape)") from None
    used = {c for c in m.values() if c}
    extra = {k: v for k, v in value.items() if k not in used}
    if parsed.turns_cut:
        extra["turns_cut"] = parsed.turns_cut
    parsed.extra = extra or None
    return parsed


def _json_extra(extra: dict | None) -> str | None:
    if not extra:
        return None
    import json
    return json.dumps(extra, ensure_ascii=True, sort_keys=True, default=str)


# -- the stage -----------------------------------------------------------------------------------------------
def _check_source(store: Store, name: str, licence: str | None) -> None:
    """A source name that is no generating model's, and no other licence than the source's stored one."""
    if name in store.generated_models():
        raise SourceError(f"{name!r} is the name of a model that generated candidates in this store; pass another "
                          "--name for the imported data (its candidates take the name as their generator)")
    stored = store.source_licence(name)
    if licence and stored not in (None, "unknown", licence):
        raise SourceError(f"the source {name!r} was imported before under the licence {stored}: pass --license "
                          f"{stored}, or another --name for data under {licence}")


def check(store: Store, config: ImportConfig) -> None:
    """Refuse an import that cannot work before a job exists: a missing, empty, binary or unreadable source, a
    Hub id offline, a format or columns that do not fit, outputs without a model name or without candidates
    to attach them to, another licence for a known source."""
    src = open_source(config.source, config.split)
    plan = plan_source(src, config)
    _check_source(store, plan.name, config.license)
    if config.as_outputs and not store.count_candidates("ok"):
        raise SourceError(f"{src.label}: the store has no candidates to attach outputs to: import the dataset "
                          "first (curate import FILE), or generate candidates.")


@dataclass
class _Counts:
    read: int = 0
    staged: int = 0
    duplicates: int = 0
    rejected: int = 0
    unmatched: int = 0
    multi_turn_cut: int = 0
    own_generator: int = 0
    matched: int = 0
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "extra"} | self.extra

    @classmethod
    def from_dict(cls, d: dict) -> "_Counts":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d and k != "extra"}
        return cls(**known)


def _import_row(src: Source, plan: Plan, cfg: ImportConfig, job_id: str | None) -> dict:
    from .store import content_id
    kind = "outputs" if cfg.as_outputs else "candidates"
    options = {"kind": kind, "model": cfg.model, "format": plan.format, "mapping": plan.mapping, "split": src.split,
               "limit": cfg.limit, "skip_bad": cfg.skip_bad}
    return {"id": content_id(source=plan.name, location=src.location, fingerprint=src.fingerprint, **options),
            "source": plan.name, "kind": kind, "model": cfg.model, "location": src.location, "reader": src.kind,
            "fingerprint": src.fingerprint, "format": plan.format, "mapping": plan.mapping, "split": src.split,
            "row_limit": cfg.limit, "skip_bad": int(cfg.skip_bad), "job_id": job_id}


class _Importer:
    def __init__(self, store: Store, cfg: ImportConfig, ctx: StageContext):
        self.store, self.cfg, self.ctx = store, cfg, ctx
        self.src = open_source(cfg.source, cfg.split)
        self.plan = plan_source(self.src, cfg)
        _check_source(store, self.plan.name, cfg.license)
        self.kind = "outputs" if cfg.as_outputs else "candidates"
        self.imp = store.begin_import(_import_row(self.src, self.plan, cfg, ctx.job_id), cfg.license)
        self.counts = _Counts.from_dict(self.imp["counts"])

    # -- progress -------------------------------------------------------------------------------------------
    def _report(self, phase: str) -> None:
        c, src = self.counts, self.src
        total = src.total_rows if self.cfg.limit is None else min(self.cfg.limit, src.total_rows or self.cfg.limit)
        if total is not None:
            done, unit = c.read, "rows read"
        else:
            done, total, unit = -(-src.bytes_read // 1000), -(-(src.total_bytes or 0) // 1000), "kB read"
            if phase != "reading":
                done = total
        figures = {"rows": c.read, "staged": c.staged, "duplicates": c.duplicates, "rejected": c.rejected,
                   "multi_turn_cut": c.multi_turn_cut}
        if self.kind == "outputs":
            figures.update(unmatched=c.unmatched, own_generator=c.own_generator)
        self.ctx.report(phase=phase, done=done, total=total, unit=unit, **figures)

    # -- reading and staging --------------------------------------------------------------------------------
    def _rows(self, batch: list[Record]) -> tuple[list[dict], list[dict]]:
        from .store import IMPORTED_STYLE, StagedRow, content_id
        from .store.consensus import output_id
        rows, rejects, pending = [], [], []
        c, name, imp = self.counts, self.plan.name, self.imp["id"]
        for rec in batch:
            if rec.problem is not None:
                rejects.append({"row": rec.row, "line": rec.line, "kind": "bad", "reason": f"{rec.where}: {rec.problem}",
                                "raw": rec.text})
                continue
            try:
                p = parse_record(rec.value, self.plan, self.cfg.model)
            except ValueError as e:
                rejects.append({"row": rec.row, "line": rec.line, "kind": "bad", "reason": f"{rec.where}: {e}",
                                "raw": _json_extra(rec.value)})
                continue
            c.multi_turn_cut += p.turns_cut > 0
            if self.kind == "candidates":
                task_type = "A" if p.input != "" else "B"
                cid = content_id(source=name, instruction=p.instruction, input=p.input, output=p.output)
                rows.append(StagedRow(imp, rec.row, rec.line, cid,
                                      content_id(origin="import", source=name, text=p.instruction, task_type=task_type),
                                      output_id(cid, name, "generator"), task_type, p.instruction, p.input, name,
                                      p.output, p.system, _json_extra(p.extra)))
            else:
                pending.append((rec, p))
        if pending:
            matches = self.store.match_candidates([(p.instruction, p.input) for _, p in pending])
            for rec, p in pending:
                found = matches.get((p.instruction, p.input))
                if not found:
                    rejects.append({"row": rec.row, "line": rec.line, "kind": "unmatched",
                                    "reason": f"{rec.where}: no candidate has this instruction and input",
                                    "raw": _json_extra({"instruction": p.instruction, "input": p.input})})
                    continue
                c.matched += 1
                for cid, generator in found:
                    if generator == p.model:
                        c.own_generator += 1  # its own o0 already: the same model twice would fake agreement
                        continue
                    rows.append(StagedRow(imp, rec.row, rec.line, cid, output_id=output_id(cid, p.model, IMPORTED_STYLE),
                                          model=p.model, text=p.output, system=p.system, extra=_json_extra(p.extra)))
        return rows, rejects

    def _flush(self, batch: list[Record]) -> None:
        if not batch:
            return
        self.ctx.check_stop()
        rows, rejects = self._rows(batch)
        c = self.counts
        c.read += len(batch)
        bad = sum(r["kind"] == "bad" for r in rejects)
        c.rejected += bad
        c.unmatched += len(rejects) - bad
        failing = c.rejected > 0 and not self.cfg.skip_bad  # all or nothing: the rest is only checked
        if not failing:
            c.staged += len(rows)
        self.store.stage_rows(self.imp["id"], [] if failing else rows, rejects, rows_read=batch[-1].row + 1,
                              counts=c.as_dict())
        self._report("reading")

    def _stage(self) -> None:
        batch: list[Record] = []
        self._report("reading")
        for rec in self.src.records(self.imp["rows_read"]):
            if self.cfg.limit is not None and rec.row >= self.cfg.limit:
                break
            batch.append(rec)
            if len(batch) >= self.cfg.batch_size:
                self._flush(batch)
                batch = []
        self._flush(batch)

    # -- the outcome ----------------------------------------------------------------------------------------
    def _fail(self, head: str, kind: str, n: int) -> SourceError:
        listed = self.store.import_rejects(self.imp["id"], kind=kind, limit=MAX_REPORTED)
        lines = [f"{self.src.label}: {head}"] + [f"  {r['reason']}" for r in listed]
        if n > len(listed):
            lines.append(f"  ... and {n - len(listed)} more")
        self.store.drop_import(self.imp["id"])
        return SourceError("\n".join(lines))

    def run(self) -> dict:
        if self.imp["state"] == "done":
            self._report("done")
            return self._result(already=True)
        if self.imp["state"] == "staging":
            try:
                self._stage()
            except SourceError:  # the file cannot be read on (a broken JSON array, CSV quoting): it never will be
                self.store.drop_import(self.imp["id"])
                raise
            c = self.counts
            if c.rejected and not self.cfg.skip_bad:
                raise self._fail(f"{c.rejected} bad row{'s' if c.rejected != 1 else ''} of {c.read}, so nothing was "
                                 "imported (fix them and import again, or pass --skip-bad to import the other rows "
                                 "and keep these as rejects):", "bad", c.rejected)
            if not c.staged and self.kind == "outputs" and c.unmatched:
                raise self._fail(f"none of the {c.read} rows matches a stored candidate's instruction and input, so "
                                 "nothing was imported. Import the dataset they answer first (curate import FILE), "
                                 "or check the columns (--map instruction=…,input=…):", "unmatched", c.unmatched)
            if not c.staged and not c.own_generator:
                self.store.drop_import(self.imp["id"])
                raise SourceError(f"{self.src.label}: no row to import ({c.read} read, {c.rejected} rejected).")
            self.store.set_import_state(self.imp["id"], "staged", self.counts.as_dict())
        self._report("publishing")
        published = self.store.publish_import(self.imp["id"], job_id=self.ctx.job_id)
        self.counts.duplicates = published.pop("duplicates")
        self.counts.extra = published
        self._report("done")
        return self._result()

    def _result(self, already: bool = False) -> dict:
        imp = self.store.get_import(self.imp["id"])
        c = imp["counts"]
        return {"import_id": imp["id"], "source": imp["source"], "kind": imp["kind"], "model": imp["model"],
                "location": imp["location"], "format": imp["format"], "mapping": self.plan.mapping_text(),
                "already_imported": already, **{k: c.get(k, 0) for k in (
                    "read", "staged", "duplicates", "rejected", "unmatched", "multi_turn_cut", "own_generator",
                    "matched", "added", "existing")}}


def run(store: Store, config: ImportConfig, ctx: StageContext) -> dict:
    """The import stage: see the module docstring. Returns the summary (also the job's ``progress.result``)."""
    with store.bulk_writes():
        return _Importer(store, config, ctx).run()


# -- preview (the app's Import panel) -------------------------------------------------------------------------
def preview(source: str, *, format: str = "auto", mapping: dict[str, str] | None = None, split: str | None = None,
            as_outputs: bool = False, model: str | None = None, name: str | None = None, n: int = 5) -> dict:
    """What an import of ``source`` would read, without writing anything: {reader, location, format, mapping
    (the ``--map`` text), columns, name, total_rows, rows (the first ``n`` as instruction / input / output /
    system / model), problems (places and reasons among the first records)}. Raises SourceError like the
    import would (missing file, columns, …)."""
    cfg = ImportConfig(source=source, format=format, mapping=mapping or {}, split=split or None,
                       as_outputs=as_outputs, model=model or None, name=name or None)
    src = open_source(cfg.source, cfg.split)
    plan = plan_source(src, cfg)
    rows, problems = [], []
    for rec in src.head(max(n, HEAD)):
        if rec.problem is not None:
            problems.append(f"{rec.where}: {rec.problem}")
            continue
        try:
            p = parse_record(rec.value, plan, cfg.model)
        except ValueError as e:
            problems.append(f"{rec.where}: {e}")
            continue
        if len(rows) < n:
            rows.append({"row": rec.row, "instruction": p.instruction, "input": p.input, "output": p.output,
                         "system": p.system or "", "model": p.model or plan.name})
    return {"reader": src.kind, "location": src.location, "format": plan.format, "mapping": plan.mapping_text(),
            "columns": plan.columns, "name": plan.name, "total_rows": src.total_rows, "rows": rows,
            "problems": problems}
