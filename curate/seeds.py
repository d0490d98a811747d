"""Read and validate seed-task files; split seed tasks into Ensemble-Instruct's types A and B.

Two record shapes are read, each from a JSON Lines file (one object per line; blank lines are skipped) or a
JSON file holding one array of objects. The container is told from the content (does the first non-blank
character open an array?), not from the file name's extension:

* **Self-Instruct** ``{"id", "name", "instruction", "instances": [{"input", "output"}, ...],
  "is_classification"}`` — the shape of the shipped ``seeds/self_instruct_seed_tasks.jsonl``. ``id``,
  ``instruction`` and ``instances`` are required; ``name`` defaults to the id and ``is_classification`` to
  false. Every instance needs a string ``input`` (``""`` for none) and a non-blank string ``output``;
  ``instruction`` must be a non-blank string.
* **Alpaca** ``{"instruction", "input", "output"}`` — ``input`` is optional (default ``""``). Each record
  becomes one seed task with one instance, id ``alpaca_<line>`` (JSON Lines, 1-based) or ``alpaca_<index>``
  (JSON array, 0-based), name equal to the id, ``is_classification`` false. ``instruction`` and ``output``
  must be non-blank strings.

The shape is told from the keys: if any record has ``instances`` the file is Self-Instruct, else if any has
``output`` it is Alpaca, else it is Self-Instruct when a record has ``id``, ``name`` or ``is_classification``
and Alpaca otherwise. Other keys are ignored.

Loading is all or nothing: a file with any problem loads no task and raises one :class:`SeedFileError` that
lists every problem in line order (the first :data:`MAX_REPORTED`, then a count), each with its line — for a
JSON array also the index of the record — so a user fixes the file in one pass.

Task type (docs/ARCHITECTURE.md, "Seeds and task types"; the reference code's rule): type **A** iff
``instances[0].input != ""``, else **B**. The comparison is exact and no field is ever stripped, so an input of only whitespace makes a task
type A, as it does in the reference code.

The shipped seed file lives in the repository's ``seeds/`` folder, next to the ``curate`` package
(:data:`DEFAULT_SEED_FILE`); it is not package data, so curate must be installed editable
(``pip install -e .``) from a checkout for the default to be found — or pass ``--seeds PATH``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from curate.errors import SeedFileError

__all__ = [
    "DEFAULT_SEED_FILE",
    "MAX_REPORTED",
    "Instance",
    "SeedTask",
    "TaskType",
    "load_seeds",
    "seed_summary",
    "split_by_type",
]

TaskType = Literal["A", "B"]

DEFAULT_SEED_FILE = Path(__file__).resolve().parents[1] / "seeds" / "self_instruct_seed_tasks.jsonl"
"""Self-Instruct's 175 seed tasks, shipped in the repository's ``seeds/`` folder (see ``seeds/README.md``)."""

MAX_REPORTED = 20
"""At most this many problems are listed in one :class:`SeedFileError`; the rest are counted."""

_JSON_WHITESPACE = " \t\n\r"


@dataclass(frozen=True)
class Instance:
    """One input/output example of a seed task (``input == ""`` for a task without input)."""

    input: str
    output: str


@dataclass(frozen=True)
class SeedTask:
    """One seed task. ``source`` is the seed file's name and ``line`` the 1-based line its record starts on."""

    id: str
    name: str
    instruction: str
    instances: tuple[Instance, ...]
    is_classification: bool
    source: str
    line: int

    @property
    def task_type(self) -> TaskType:
        """``"A"`` (needs an input) iff ``instances[0].input != ""`` — exact, unstripped — else ``"B"``."""
        return "A" if self.instances[0].input != "" else "B"

    def to_record(self) -> dict[str, Any]:
        """The task as a Self-Instruct record (the shape of the shipped seed file's lines)."""
        return {
            "id": self.id,
            "name": self.name,
            "instruction": self.instruction,
            "instances": [{"input": i.input, "output": i.output} for i in self.instances],
            "is_classification": self.is_classification,
        }


@dataclass(frozen=True)
class _Raw:
    """A parsed JSON value of the file and where it was: ``index`` is set for the records of a JSON array."""

    value: Any
    line: int
    index: int | None = None

    @property
    def where(self) -> str:
        return f"line {self.line}" if self.index is None else f"record index {self.index} (line {self.line})"


_Problem = tuple[int, str]
"""(line, message): one thing wrong in a seed file; line 0 is about the whole file. Reported sorted by line."""


def load_seeds(path: str | Path | None = None) -> list[SeedTask]:
    """Read the seed tasks of ``path`` (default :data:`DEFAULT_SEED_FILE`), in file order.

    Raises :class:`SeedFileError` if the file is missing or unreadable, is not UTF-8, holds no record, or has
    any invalid record; the message names the file and lists every problem with its line.
    """
    file = DEFAULT_SEED_FILE if path is None else Path(path).expanduser()
    text = _read_text(file, is_default=path is None)
    problems: list[_Problem] = []
    raws = _parse(text, problems)
    if not raws and not problems:
        raise SeedFileError(f"{file}: no seed task in the file (an empty JSON array). {_FORMAT_HINT}")
    tasks = _validate_all(raws, file.name, problems)
    if problems:
        raise SeedFileError(_report(file, problems))
    return tasks


def split_by_type(seeds: Iterable[SeedTask]) -> dict[str, list[SeedTask]]:
    """``{"A": [...], "B": [...]}`` — both keys always present, tasks in their given order."""
    split: dict[str, list[SeedTask]] = {"A": [], "B": []}
    for task in seeds:
        split[task.task_type].append(task)
    return split


def seed_summary(seeds: Iterable[SeedTask]) -> dict[str, int]:
    """Counts: ``{"total", "A", "B", "classification"}``."""
    tasks = list(seeds)
    split = split_by_type(tasks)
    return {
        "total": len(tasks),
        "A": len(split["A"]),
        "B": len(split["B"]),
        "classification": sum(t.is_classification for t in tasks),
    }


# --- reading ----------------------------------------------------------------------------------------------

_FORMAT_HINT = (
    "A seed file is JSON Lines (one object per line) or a JSON array of objects, each a Self-Instruct task "
    '{"id", "name", "instruction", "instances": [{"input", "output"}], "is_classification"} '
    'or an Alpaca record {"instruction", "input", "output"}.'
)


def _read_text(file: Path, *, is_default: bool) -> str:
    """The file's text (a UTF-8 byte-order mark removed); raises SeedFileError for a file we cannot use."""
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise SeedFileError(_not_found(file, is_default)) from None
    except IsADirectoryError:
        raise SeedFileError(f"{file} is a folder, not a seed file. Pass a seed file with --seeds PATH.") from None
    except OSError as e:
        raise SeedFileError(f"{file}: cannot read the seed file ({e.strerror or e}).") from None
    bom = b"\xef\xbb\xbf" if data.startswith(b"\xef\xbb\xbf") else b""
    try:
        text = data[len(bom):].decode("utf-8")
    except UnicodeDecodeError as e:
        offset = len(bom) + e.start
        line = data.count(b"\n", 0, offset) + 1
        raise SeedFileError(
            f"{file}: not UTF-8 text: byte 0x{data[offset]:02x} at byte offset {offset} (line {line}) "
            f"cannot be decoded ({e.reason}). Save the file as UTF-8."
        ) from None
    if not text.strip():
        raise SeedFileError(f"{file}: the file is empty (no seed tasks). {_FORMAT_HINT}")
    return text


def _not_found(file: Path, is_default: bool) -> str:
    if is_default:
        return (
            f"the shipped seed file is missing: {file}. curate finds it in the repository's seeds/ folder next to "
            "the package, so install curate editable from a checkout (pip install -e .), "
            "or pass a seed file with --seeds PATH."
        )
    return (
        f"seed file not found: {file}. Pass an existing file with --seeds PATH "
        "(Self-Instruct JSONL, or Alpaca JSON/JSONL), or leave --seeds out to use the shipped Self-Instruct seeds."
    )


def _parse(text: str, problems: list[_Problem]) -> list[_Raw]:
    """The file's JSON values with their places; JSON syntax errors are appended to ``problems``."""
    if text.lstrip(_JSON_WHITESPACE).startswith("["):
        return _parse_array(text, problems)
    return _parse_lines(text, problems)


def _parse_array(text: str, problems: list[_Problem]) -> list[_Raw]:
    """The elements of a JSON array document, each with its index and the line it starts on."""
    try:
        values = json.loads(text)
    except json.JSONDecodeError as e:
        problems.append((e.lineno, f"line {e.lineno}, column {e.colno}: invalid JSON: {e.msg}"))
        return []
    starts = _array_element_starts(text)
    assert len(starts) == len(values)  # the same text, parsed twice
    raws, line, counted = [], 1, 0
    for index, (value, start) in enumerate(zip(values, starts)):
        line += text.count("\n", counted, start)
        counted = start
        raws.append(_Raw(value, line, index))
    return raws


def _array_element_starts(text: str) -> list[int]:
    """Character offsets where the elements of the (valid) top-level JSON array in ``text`` start."""
    decoder = json.JSONDecoder()

    def skip(i: int) -> int:
        while text[i] in _JSON_WHITESPACE:
            i += 1
        return i

    i = skip(skip(0) + 1)  # past "[" and the whitespace after it
    starts: list[int] = []
    while text[i] != "]":
        starts.append(i)
        _, end = decoder.raw_decode(text, i)
        i = skip(end)
        if text[i] == ",":
            i = skip(i + 1)
    return starts


def _parse_lines(text: str, problems: list[_Problem]) -> list[_Raw]:
    """One JSON value per non-blank line. Lines end at "\\n" only (JSON strings may hold U+2028 and kin)."""
    raws, errors = [], []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            raws.append(_Raw(json.loads(line), number))
        except json.JSONDecodeError as e:
            errors.append((number, f"line {number}, column {e.colno}: invalid JSON: {e.msg}"))
    if errors and _is_one_json_value(text):
        spread = "the file holds one JSON value spread over several lines, not one object per line. "
        errors, raws = [(0, spread + _FORMAT_HINT)], []  # its lines that parse alone are no records
    problems.extend(errors)
    return raws


def _is_one_json_value(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


# --- validating -------------------------------------------------------------------------------------------


def _validate_all(raws: list[_Raw], source: str, problems: list[_Problem]) -> list[SeedTask]:
    """Seed tasks of the valid records; every problem (bad record, duplicate id) is appended to ``problems``."""
    self_instruct = _is_self_instruct(raws)
    validate = _self_instruct_task if self_instruct else _alpaca_task
    problems.extend(_fields_no_record_has(raws, self_instruct))
    tasks: list[SeedTask] = []
    first_seen: dict[str, _Raw] = {}  # id -> its first record, valid or not (Alpaca ids are unique by design)
    for raw in raws:
        if not isinstance(raw.value, dict):
            problems.append((raw.line, f"{raw.where}: the record is {_json_type(raw.value)}, not an object"))
            continue
        errors: list[str] = []
        task = validate(raw, source, errors)
        task_id = raw.value.get("id") if self_instruct else None
        if isinstance(task_id, str) and task_id.strip():
            if task_id in first_seen:
                errors.append(f"duplicate id {task_id!r} (first on {first_seen[task_id].where})")
            else:
                first_seen[task_id] = raw
        problems.extend((raw.line, f"{raw.where}: {error}") for error in errors)
        if task is not None and not errors:
            tasks.append(task)
    return tasks


def _keys(raws: list[_Raw]) -> set[str]:
    """Every key of every object record."""
    keys: set[str] = set()
    for raw in raws:
        if isinstance(raw.value, dict):
            keys.update(raw.value)
    return keys


def _is_self_instruct(raws: list[_Raw]) -> bool:
    """The file's record shape, told from the keys its records have (see the module docstring)."""
    keys = _keys(raws)
    if "instances" in keys:
        return True
    if "output" in keys:
        return False
    return bool(keys & {"id", "name", "is_classification"})


def _fields_no_record_has(raws: list[_Raw], self_instruct: bool) -> list[_Problem]:
    """A file-level problem when no record has some required field: likely not a seed file at all."""
    keys = _keys(raws)
    required = ("id", "instruction", "instances") if self_instruct else ("instruction", "output")
    absent = [key for key in required if key not in keys]
    if not keys or not absent:
        return []
    shape = "Self-Instruct" if self_instruct else "Alpaca"
    found = ", ".join(sorted(keys)[:12]) + (", ..." if len(keys) > 12 else "")
    fields = ", ".join(repr(key) for key in absent)
    return [(0, f"no record has {fields}, which {shape} records need (their keys: {found}). {_FORMAT_HINT}")]


def _self_instruct_task(raw: _Raw, source: str, errors: list[str]) -> SeedTask | None:
    """A SeedTask from a Self-Instruct record, or None with the reasons appended to ``errors``."""
    record = raw.value
    for key in ("id", "instruction", "instances"):
        if key not in record:
            errors.append(f"missing field {key!r}")
    task_id = _text(record, "id", errors, required=True, hint=' (write ids as strings, e.g. "id": "7")')
    name = _text(record, "name", errors, required=False)
    instruction = _text(record, "instruction", errors, required=True)
    instances = _instances(record.get("instances"), errors) if "instances" in record else None
    is_classification = record.get("is_classification", False)
    if not isinstance(is_classification, bool):
        errors.append(f"'is_classification' must be true or false, not {_json_type(is_classification)}")
    if errors:
        return None
    return SeedTask(task_id, name or task_id, instruction, instances, is_classification, source, raw.line)


def _alpaca_task(raw: _Raw, source: str, errors: list[str]) -> SeedTask | None:
    """A one-instance SeedTask from an Alpaca record, or None with the reasons appended to ``errors``."""
    record = raw.value
    for key in ("instruction", "output"):
        if key not in record:
            errors.append(f"missing field {key!r}")
    instruction = _text(record, "instruction", errors, required=True)
    task_input = _text(record, "input", errors, required=False, hint=' (use "" for no input)')
    output = _text(record, "output", errors, required=True)
    if errors:
        return None
    task_id = f"alpaca_{raw.line if raw.index is None else raw.index}"
    return SeedTask(task_id, task_id, instruction, (Instance(task_input, output),), False, source, raw.line)


def _text(record: dict, key: str, errors: list[str], *, required: bool, hint: str = "") -> str:
    """``record[key]`` if it is a string (non-blank when ``required``); "" when absent; else an error."""
    value = record.get(key, "")
    if not isinstance(value, str):
        errors.append(f"{key!r} must be a string, not {_json_type(value)}{hint}")
        return ""
    if required and key in record and not value.strip():
        errors.append(f"{key!r} is {'empty' if value == '' else 'only whitespace'}")
    return value


def _instances(value: Any, errors: list[str]) -> tuple[Instance, ...]:
    """The instances of a Self-Instruct record; each problem is appended to ``errors``."""
    if not isinstance(value, list):
        shape = '{"input", "output"}'
        errors.append(f"'instances' must be an array of {shape} objects, not {_json_type(value)}")
        return ()
    if not value:
        errors.append("'instances' is empty (a seed task needs at least one instance)")
    instances = []
    for n, item in enumerate(value):
        if not isinstance(item, dict):
            errors.append(f"instances[{n}] must be an object, not {_json_type(item)}")
            continue
        if "input" not in item:
            errors.append(f'instances[{n}] is missing \'input\' (use "" for a task without input)')
        if "output" not in item:
            errors.append(f"instances[{n}] is missing 'output'")
        fields = [_instance_field(item, n, key, errors) for key in ("input", "output")]
        instances.append(Instance(*fields))
    return tuple(instances)


def _instance_field(item: dict, n: int, key: str, errors: list[str]) -> str:
    value = item.get(key, "")
    if not isinstance(value, str):
        errors.append(f"instances[{n}].{key} must be a string, not {_json_type(value)}")
        return ""
    if key == "output" and key in item and not value.strip():
        errors.append(f"instances[{n}].output is {'empty' if value == '' else 'only whitespace'}")
    return value


def _json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, with its article: "an array", "a string", "null"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return {dict: "an object", list: "an array", str: "a string"}.get(type(value), type(value).__name__)


def _report(file: Path, problems: list[_Problem]) -> str:
    """One message listing the first MAX_REPORTED problems by line, then how many more there are."""
    problems = sorted(problems, key=lambda p: p[0])  # stable: a line's problems keep their order
    count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
    lines = [f"{file}: {count}, so no seed task was loaded (fix them all, then load again):"]
    lines += [f"  {message}" for _, message in problems[:MAX_REPORTED]]
    if len(problems) > MAX_REPORTED:
        lines.append(f"  ... and {len(problems) - MAX_REPORTED} more")
    return "\n".join(lines)
