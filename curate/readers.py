"""Reading the records of a dataset to import, streamed, each with its place in the source.

:func:`open_source` opens a file, a folder or a Hub id and returns a :class:`Source` whose :meth:`Source.records`
yields one :class:`Record` per record, in order, without holding the file in memory:

==================  ==================================================================================
source              read with
==================  ==================================================================================
JSON Lines          the stdlib ``json``, one line at a time (``.jsonl``, ``.ndjson``, or any text file
                    whose first character is not ``[``)
JSON array          the stdlib ``json`` decoder over a sliding window (``raw_decode``): one record at a
                    time, also when the whole array is on one line
CSV / TSV           the stdlib ``csv`` module (quoted fields may hold newlines; ``.tsv`` / ``.tab`` are
                    tab-separated), the first row naming the columns
Parquet             ``pyarrow.parquet``, one row group batch at a time (told by its ``PAR1`` magic)
datasets folder     ``datasets.load_from_disk`` (a ``save_to_disk`` folder: memory-mapped Arrow)
Hub id              ``datasets.load_dataset(id, split=…, streaming=True)`` (needs a network; offline it
                    fails at once)
==================  ==================================================================================

A record that cannot be read (a line that is not JSON or not UTF-8, a CSV row with the wrong number of
fields) comes back as a Record with ``problem`` set instead of ``value``, so the caller decides whether one
bad record stops the import. A problem with the whole source (missing, empty, binary, compressed, a JSON
array broken past repair, an unreadable Parquet file) raises :class:`~curate.errors.SourceError` naming the
file and the fix. Places are ``row`` (0-based index of the record in the source, the ``datasets`` index) and,
for text files, ``line`` (1-based line the record starts on) and, for problems, the column.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import SourceError

__all__ = ["Record", "Source", "open_source", "looks_like_hub_id", "DATA_SUFFIXES"]

CHUNK = 1 << 20            # bytes read at a time from a JSON array
MAX_RECORD = 64 << 20      # a JSON array element larger than this is taken as a syntax error, not a long record
HEAD_BYTES = 8192          # bytes sniffed to tell binary and compressed files
JSON_SUFFIXES = (".json", ".jsonl", ".ndjson", ".jsonlines")
CSV_SUFFIXES = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
DATA_SUFFIXES = (*JSON_SUFFIXES, *CSV_SUFFIXES, ".parquet", ".pq", ".arrow", ".txt", ".gz", ".zip", ".bz2",
                 ".xz", ".zst")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_MAGIC = ((b"\x1f\x8b", "gzip-compressed", "decompress it first (gunzip FILE)"),
          (b"PK\x03\x04", "a zip archive", "extract the data file from it first"),
          (b"BZh", "bzip2-compressed", "decompress it first (bunzip2 FILE)"),
          (b"\xfd7zXZ", "xz-compressed", "decompress it first (unxz FILE)"),
          (b"\x28\xb5\x2f\xfd", "zstd-compressed", "decompress it first (unzstd FILE)"),
          (b"SQLite format 3\x00", "an SQLite database", "export the table to JSONL, CSV or Parquet first"))


@dataclass(frozen=True)
class Record:
    """One record of a source: ``value`` (a dict of column → value), or ``problem`` (why it could not be read,
    with the column where there is one) and ``text`` (its raw text, when there is any)."""

    row: int
    line: int | None
    value: dict | None = None
    problem: str | None = None
    text: str | None = None

    @property
    def where(self) -> str:
        """"line 12", "record 4 (line 12)" for a JSON array's element, "row 4" without lines."""
        return f"line {self.line}" if self.line is not None else f"row {self.row}"


class Source:
    """An opened source. ``kind``: jsonl | json | csv | parquet | datasets | hub; ``location``: the absolute path
    or the Hub id; ``fingerprint``: changes when the file does (size and modification time; the id and split for
    the Hub); ``total_rows`` / ``total_bytes``: for progress, where known; ``bytes_read``: how far
    :meth:`records` got in a file."""

    def __init__(self, kind: str, location: str, fingerprint: str, records: Callable[["Source", int], Iterator[Record]],
                 *, total_rows: int | None = None, total_bytes: int | None = None, default_name: str = "",
                 split: str | None = None):
        self.kind, self.location, self.fingerprint = kind, location, fingerprint
        self.total_rows, self.total_bytes = total_rows, total_bytes
        self.default_name, self.split = default_name, split
        self.bytes_read = 0
        self._records = records

    @property
    def label(self) -> str:
        """How messages name the source: the file's path, or "the Hub dataset ID"."""
        return f"the Hub dataset {self.location}" if self.kind == "hub" else self.location

    def records(self, start_row: int = 0) -> Iterator[Record]:
        """Every record from ``start_row`` on (the ones before are read past, not returned)."""
        for rec in self._records(self, start_row):
            if rec.row >= start_row:
                yield rec

    def head(self, n: int = 100) -> list[Record]:
        """The first ``n`` records (for detecting the format and previews)."""
        out = []
        for rec in self.records():
            out.append(rec)
            if len(out) >= n:
                break
        return out


def looks_like_hub_id(text: str) -> bool:
    """Whether ``text`` reads as a Hub dataset id (``name`` or ``owner/name``) rather than a file name."""
    return bool(_HUB_ID.match(text)) and not text.lower().endswith(DATA_SUFFIXES)


def open_source(source: str, split: str | None = None) -> Source:
    """Open ``source``: a file (JSON, JSONL, CSV/TSV, Parquet), a ``datasets.save_to_disk`` folder, or a Hub
    dataset id. ``split``: the split of a DatasetDict folder or a Hub dataset (files have none).

    Raises SourceError for a missing path, an empty, binary or compressed file, a folder that is no datasets
    folder, a split that is not there, and a Hub dataset that cannot be reached (offline: at once)."""
    text = str(source).strip()
    if not text:
        raise SourceError("no source given: pass a file (JSON, JSONL, CSV, Parquet), a datasets folder or a Hub id")
    path = Path(text).expanduser()
    if path.is_dir():
        return _open_folder(path.absolute(), split)
    if path.exists():
        if split:
            raise SourceError(f"{path}: --split applies to datasets folders and Hub ids; a file has one split. "
                              "Leave --split out.")
        return _open_file(path.absolute())
    if looks_like_hub_id(text):
        return _open_hub(text, split)
    raise SourceError(f"no such file or folder: {path}. Pass an existing file (JSON, JSONL, CSV, Parquet), a "
                      "datasets save_to_disk folder, or a Hub dataset id such as tatsu-lab/alpaca.")


# -- files --------------------------------------------------------------------------------------------------
def _stat_fingerprint(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def _open_file(path: Path) -> Source:
    try:
        with open(path, "rb") as f:
            head = f.read(HEAD_BYTES)
    except OSError as e:
        raise SourceError(f"{path}: cannot read the file ({e.strerror or e}).") from None
    size = path.stat().st_size
    if not head:
        raise SourceError(f"{path}: the file is empty (0 bytes): nothing to import.")
    suffix = path.suffix.lower()
    common = dict(total_bytes=size, default_name=_stem(path))
    if head.startswith(b"PAR1") or suffix in (".parquet", ".pq"):
        return _open_parquet(path, head, common)
    for magic, what, fix in _MAGIC:
        if head.startswith(magic):
            raise SourceError(f"{path}: the file is {what}, not JSON, JSONL, CSV or Parquet: {fix}.")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise SourceError(f"{path}: the file is UTF-16 text; save it as UTF-8 and import it again.")
    nul = head.find(b"\x00")
    if nul >= 0:
        raise SourceError(f"{path}: looks like a binary file (a NUL byte at byte offset {nul}), not JSON, JSONL, "
                          "CSV or Parquet text. Pass the data file itself.")
    if suffix in CSV_SUFFIXES:
        delimiter = CSV_SUFFIXES[suffix]
        return Source("csv", str(path), _stat_fingerprint(path), lambda s, start: _csv_records(s, path, delimiter),
                      **common)
    first = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if suffix not in JSON_SUFFIXES and first not in (b"[", b"{"):
        raise SourceError(f"{path}: cannot tell what kind of file this is ({suffix or 'no suffix'}, and it does not "
                          "start like JSON). curate imports .json / .jsonl (JSON), .csv / .tsv and .parquet files: "
                          "rename it to its type.")
    if first == b"[":
        return Source("json", str(path), _stat_fingerprint(path), lambda s, start: _json_array_records(s, path),
                      **common)
    return Source("jsonl", str(path), _stat_fingerprint(path), lambda s, start: _jsonl_records(s, path, start),
                  **common)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz",):
        name = name.removesuffix(suffix)
    return Path(name).stem or name


def _decode_problem(raw: bytes, e: UnicodeDecodeError) -> str:
    col = len(raw[:e.start].decode("utf-8", "replace")) + 1
    return (f"column {col}: not UTF-8 (byte 0x{raw[e.start]:02x} cannot be decoded: {e.reason}); save the file "
            "as UTF-8")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return {list: "an array", str: "a string", dict: "an object"}.get(type(value), type(value).__name__)


def _jsonl_records(src: Source, path: Path, start_row: int) -> Iterator[Record]:
    """One JSON object per non-blank line; lines end at "\\n" (JSON strings may hold U+2028 and kin)."""
    row = 0
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            src.bytes_read += len(raw)
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue
            if row < start_row:  # resuming: lines before are only counted
                row += 1
                continue
            try:
                text = raw.rstrip(b"\r\n").decode("utf-8")
            except UnicodeDecodeError as e:
                yield Record(row, number, problem=_decode_problem(raw, e),
                             text=raw.decode("utf-8", "replace").rstrip("\r\n"))
                row += 1
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as e:
                if number == 1 and text.strip() == "{":
                    raise SourceError(f"{path}: the file is one JSON object spread over several lines, not JSON "
                                      "Lines (one record per line) or a JSON array of records. Convert it to one "
                                      "of those.") from None
                yield Record(row, number, problem=f"column {e.colno}: invalid JSON: {e.msg}", text=text)
            else:
                if isinstance(value, dict):
                    yield Record(row, number, value)
                else:
                    yield Record(row, number, problem=f"the line holds {_json_type(value)}, not a JSON object",
                                 text=text.rstrip("\r\n"))
            row += 1


class _Window:
    """A sliding window over a text file for the JSON array reader: ``buf`` holds the decoded text from an
    absolute character offset ``base``; it knows the line and column of any offset it has passed."""

    def __init__(self, f, src: Source):
        self.f, self.src = f, src
        self.dec = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        self.buf, self.base, self.eof = "", 0, False
        self.line, self.line_start, self.at = 1, 0, 0   # line number and absolute start of the line at ``at``

    def more(self) -> bool:
        if self.eof:
            return False
        chunk = self.f.read(CHUNK)
        self.src.bytes_read += len(chunk)
        self.eof = not chunk
        text = self.dec.decode(chunk, final=self.eof)
        if self.base == 0 and not self.buf and text.startswith("\ufeff"):
            text = " " + text[1:]  # a byte-order mark: read as blank, so offsets stay as they are
        self.buf += text
        return bool(chunk)

    def advance(self, to: int) -> None:
        """Account the lines between the last place and absolute offset ``to``."""
        a, b = self.at - self.base, to - self.base
        n = self.buf.count("\n", a, b)
        if n:
            self.line += n
            self.line_start = self.base + self.buf.rfind("\n", a, b) + 1
        self.at = to

    def trim(self) -> None:
        cut = self.at - self.base
        if cut > CHUNK:
            self.buf, self.base = self.buf[cut:], self.at

    def place(self, pos: int) -> tuple[int, int]:
        """(line, column) of absolute offset ``pos`` at or after the last place."""
        a, b = self.at - self.base, pos - self.base
        n = self.buf.count("\n", a, b)
        if not n:
            return self.line, pos - self.line_start + 1
        return self.line + n, b - self.buf.rfind("\n", a, b)

    def skip_ws(self, pos: int) -> int:
        """The absolute offset of the first non-whitespace character from ``pos`` (reading on), or -1 at EOF."""
        while True:
            i = pos - self.base
            while i < len(self.buf) and self.buf[i] in " \t\r\n":
                i += 1
            if i < len(self.buf):
                return self.base + i
            pos = self.base + i
            if not self.more():
                return -1


def _json_array_records(src: Source, path: Path) -> Iterator[Record]:
    """The elements of a top-level JSON array, one at a time (the window holds about one record)."""
    decoder = json.JSONDecoder()
    with open(path, "rb") as f:
        w = _Window(f, src)
        w.more()

        def broken(pos: int, what: str) -> SourceError:
            line, col = w.place(pos)
            return SourceError(f"{path}: line {line}, column {col}: {what}. A JSON array cannot be read past a "
                               "syntax error, so nothing was imported: fix the file (or save it as JSON Lines, where "
                               "--skip-bad can pass over bad lines).")

        pos = w.skip_ws(w.base)
        pos = w.skip_ws(pos + 1)  # past "["
        row = 0
        while pos >= 0 and w.buf[pos - w.base] != "]":
            w.advance(pos)
            while True:
                try:
                    value, end = decoder.raw_decode(w.buf, pos - w.base)
                    break
                except json.JSONDecodeError as e:
                    if len(w.buf) - (pos - w.base) > MAX_RECORD or not w.more():
                        raise broken(w.base + e.pos, f"invalid JSON: {e.msg}") from None
            end += w.base
            text = w.buf[pos - w.base:end - w.base]
            line = w.line
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as e:
                col = w.place(pos + e.start)[1]
                yield Record(row, line, problem=f"column {col}: not UTF-8 (an invalid byte); save the file as UTF-8",
                             text=text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")[:2000])
            else:
                if isinstance(value, dict):
                    yield Record(row, line, value)
                else:
                    yield Record(row, line, problem=f"record {row} is {_json_type(value)}, not a JSON object",
                                 text=text[:2000])
            row += 1
            pos = w.skip_ws(end)
            if pos < 0:
                break
            c = w.buf[pos - w.base]
            if c == ",":
                pos = w.skip_ws(pos + 1)
                if pos >= 0 and w.buf[pos - w.base] == "]":
                    raise broken(pos, "a trailing comma before ']'")
            elif c != "]":
                raise broken(pos, f"expected ',' or ']' after a record, found {c!r}")
            w.advance(min(pos, w.base + len(w.buf)) if pos >= 0 else end)
            w.trim()
        if pos < 0:
            raise broken(w.base + len(w.buf), "the file ends inside the array (no closing ']'): it may be cut off")
        rest = w.skip_ws(pos + 1)
        if rest >= 0:
            raise broken(rest, "text after the array's closing ']'")


def _csv_records(src: Source, path: Path, delimiter: str) -> Iterator[Record]:
    """CSV rows as dicts keyed by the header row; a record's line is the line it starts on."""
    f = open(path, "rb")
    lines_read = 0

    def text_lines() -> Iterator[str]:
        nonlocal lines_read
        for raw in f:
            src.bytes_read += len(raw)
            lines_read += 1
            if lines_read == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            yield raw.decode("utf-8", "surrogateescape")

    try:
        reader = csv.reader(text_lines(), delimiter=delimiter, strict=True)
        csv.field_size_limit(min(sys.maxsize, 2 ** 31 - 1))
        try:
            header = next(reader)
        except StopIteration:
            raise SourceError(f"{path}: no header row: the file holds only blank lines.") from None
        except csv.Error as e:
            raise SourceError(f"{path}: line 1: the header row is not valid CSV ({e}).") from None
        if _invalid_utf8(header) is not None:
            raise SourceError(f"{path}: line 1: the header row is not UTF-8; save the file as UTF-8.")
        names = [h.strip() for h in header]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise SourceError(f"{path}: line 1: the column {dup!r} appears twice in the header row; rename one.")
        row, start = 0, reader.line_num + 1
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                raise SourceError(f"{path}: line {reader.line_num}: not valid CSV ({e}); a quoted field may be "
                                  "left open. Fix the quoting, then import again.") from None
            line, start = start, reader.line_num + 1
            if not fields:
                continue  # a blank line
            bad = _invalid_utf8(fields)
            if bad is not None:
                yield Record(row, line, problem=f"column {names[bad] if bad < len(names) else bad + 1!r}: not "
                                                "UTF-8; save the file as UTF-8",
                             text=delimiter.join(fields).encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
            elif len(fields) != len(names):
                yield Record(row, line, problem=f"{len(fields)} fields, but the header row names {len(names)} "
                                                "columns", text=delimiter.join(fields))
            else:
                yield Record(row, line, dict(zip(names, fields)))
            row += 1
    finally:
        f.close()


def _invalid_utf8(fields: list[str]) -> int | None:
    """The index of the first field holding an undecodable byte (a lone surrogate), or None."""
    for i, v in enumerate(fields):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            return i
    return None


def _open_parquet(path: Path, head: bytes, common: dict) -> Source:
    import pyarrow.parquet as pq
    try:
        meta = pq.ParquetFile(path).metadata
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError for files that are not Parquet
        raise SourceError(f"{path}: not a readable Parquet file ({e}). Pass the data file itself.") from None

    def records(src: Source, start_row: int) -> Iterator[Record]:
        pf = pq.ParquetFile(path)
        row = 0
        for batch in pf.iter_batches(batch_size=2048):
            if row + batch.num_rows <= start_row:
                row += batch.num_rows
                continue
            for value in batch.to_pylist():
                yield Record(row, None, value)
                row += 1
            src.bytes_read = int(common["total_bytes"] * row / max(1, meta.num_rows))

    return Source("parquet", str(path), _stat_fingerprint(path), records, total_rows=meta.num_rows, **common)


# -- folders and the Hub --------------------------------------------------------------------------------------
def _open_folder(path: Path, split: str | None) -> Source:
    names = {p.name for p in path.iterdir()}
    if not names & {"state.json", "dataset_dict.json", "dataset_info.json"}:
        files = ", ".join(sorted(names)[:8]) or "nothing"
        raise SourceError(f"{path} is a folder but not a datasets save_to_disk folder (no state.json or "
                          f"dataset_dict.json; it holds {files}). Pass a data file inside it, or a folder written "
                          "by Dataset.save_to_disk.")
    import datasets
    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:
        raise SourceError(f"{path}: cannot load the datasets folder ({e}).") from None
    ds = _pick_split(ds, split, str(path))
    fp = hashlib.sha1("|".join(f"{p.relative_to(path)}:{_stat_fingerprint(p)}" for p in sorted(path.rglob("*"))
                               if p.is_file()).encode()).hexdigest()
    return Source("datasets", str(path), fp, lambda s, start: _dataset_records(ds, start), total_rows=len(ds),
                  default_name=path.name, split=split)


def _pick_split(ds: Any, split: str | None, where: str) -> Any:
    """One split of a DatasetDict (the only one when there is one, else ``split``); a Dataset as it is."""
    import datasets
    if not isinstance(ds, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        if split:
            raise SourceError(f"{where} holds one split; leave --split out")
        return ds
    names = list(ds)
    if split is None and len(names) == 1:
        return ds[names[0]]
    if split not in ds:
        raise SourceError(f"{where} has the splits {', '.join(names)}: pass --split with one of them")
    return ds[split]


def _dataset_records(ds: Any, start_row: int) -> Iterator[Record]:
    row = 0
    for batch in ds.iter(batch_size=1024):
        n = len(next(iter(batch.values()))) if batch else 0
        if row + n <= start_row:
            row += n
            continue
        keys = list(batch)
        for i in range(n):
            yield Record(row, None, {k: batch[k][i] for k in keys})
            row += 1


def _curate_offline() -> bool:
    return os.environ.get("CURATE_OFFLINE", "1") == "1" or os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "")


def _open_hub(hub_id: str, split: str | None) -> Source:
    offline = _curate_offline()
    if offline:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import datasets
    hint = (f"{hub_id!r} is not a file or folder here, so it was taken as a Hub dataset id, and ")
    if offline and not datasets.config.HF_HUB_OFFLINE:  # the library was loaded online earlier in this process
        raise SourceError(hint + "curate runs offline (CURATE_OFFLINE=1): set CURATE_OFFLINE=0 with a network, or "
                                 "download the dataset and pass its file or folder.")
    try:
        ds = datasets.load_dataset(hub_id, split=split, streaming=True)
    except Exception as e:  # ConnectionError offline, FileNotFoundError / DatasetNotFoundError for a wrong id
        why = ("curate runs offline (HF_HUB_OFFLINE=1) and the dataset is not in the local datasets cache: set "
               "CURATE_OFFLINE=0 on a machine with a network, or download the dataset and pass its file or folder"
               if offline else f"loading it failed ({type(e).__name__}: {e}); check the id and your network")
        raise SourceError(hint + why + ".") from None
    if split is None:  # with a split, load_dataset returned that split already
        ds = _pick_split(ds, None, f"the Hub dataset {hub_id}")
    return Source("hub", hub_id, f"{hub_id}:{split or ''}", lambda s, start: _dataset_records(ds, start),
                  default_name=hub_id.rsplit("/", 1)[-1], split=split)
