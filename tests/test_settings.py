import pytest

from curate.errors import SettingsError
from curate.settings import load_settings


def test_defaults(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert (s.host, s.port, s.consensus_threshold) == ("127.0.0.1", 7860, 0.01)
    assert s.ensemble_models == ["smollm2-135m-instruct", "qwen2.5-0.5b-instruct"]


def test_priority_flags_over_env_over_file(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "curate.toml").write_text('port = 8001\nconsensus_threshold = 0.2\nhost = "0.0.0.0"\n')
    assert load_settings().port == 8001  # ./curate.toml is read when present
    monkeypatch.setenv("CURATE_PORT", "8002")
    s = load_settings()
    assert (s.port, s.consensus_threshold, s.host) == (8002, 0.2, "0.0.0.0")
    assert load_settings(port=8003).port == 8003
    assert load_settings(port=None).port == 8002  # an unset flag does not override


def test_invalid_values_name_the_key_and_source(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "bad.toml"
    cfg.write_text("consensus_threshold = 2.5\n")
    with pytest.raises(SettingsError, match=r"'consensus_threshold' \(from .*bad.toml\).*less than or equal to 1"):
        load_settings(cfg)
    cfg.write_text("porrt = 1\n")
    with pytest.raises(SettingsError, match="'porrt'.*Extra inputs"):
        load_settings(cfg)
    monkeypatch.setenv("CURATE_PORT", "eighty")
    with pytest.raises(SettingsError, match=r"'port' \(from \$CURATE_PORT\)"):
        load_settings()
    monkeypatch.delenv("CURATE_PORT")
    with pytest.raises(SettingsError, match=r"'batch_size' \(from command line\)"):
        load_settings(batch_size=0)


def test_broken_or_missing_file(tmp_path):
    bad = tmp_path / "x.toml"
    bad.write_text("port = = 3")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(bad)
    with pytest.raises(SettingsError, match="not found"):
        load_settings(tmp_path / "missing.toml")
