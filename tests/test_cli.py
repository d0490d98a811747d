import json
import subprocess
import sys

import pytest

from curate.cli import COMMANDS, build_parser, main


def _subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices


def test_every_command_has_help_and_every_option_too():
    subs = _subparsers()
    assert set(subs) == set(COMMANDS)
    for name, sp in subs.items():
        assert sp.description and len(sp.description) > 15, name
        for a in sp._actions:
            if a.dest != "help":
                assert a.help, f"curate {name} {a.option_strings or a.dest} has no help text"


def test_top_level_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "curate.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for name in ("generate", "ensemble", "consensus", "stats", "models", "jobs"):
        assert name in out.stdout


def test_generate_rejects_non_positive_n(tmp_path, capsys):
    rc = main(["generate", "--instructions", "0", "--db", str(tmp_path / "c.db")])
    assert rc == 2
    assert "greater than or equal to 1" in capsys.readouterr().err


def test_bad_settings_file_is_a_one_line_error(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("port = 'x'\n")
    rc = main(["stats", "--db", str(tmp_path / "c.db"), "--config", str(cfg)])
    assert rc == 2
    assert "setting 'port'" in capsys.readouterr().err


def test_seeds_command_summarises_the_shipped_file(capsys):
    assert main(["seeds"]) == 0
    assert json.loads(capsys.readouterr().out)["A"] == 125


def test_bad_seed_file_names_the_line(tmp_path, capsys):
    f = tmp_path / "s.jsonl"
    f.write_text('{"instruction": "Say hi to the user politely", "output": "hi"}\n{bad json\n')
    assert main(["seeds", "--seeds", str(f)]) == 2
    err = capsys.readouterr().err
    assert "s.jsonl" in err and "line 2" in err


def test_stats_and_threshold_on_an_empty_store(tmp_path, capsys):
    db = str(tmp_path / "c.db")
    assert main(["stats", "--db", db, "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["passing"]["scored"] == 0
    assert main(["threshold", "0.01", "0.5", "--db", db]) == 0
    assert "passing       0 of 0" in capsys.readouterr().out


def test_demo_uses_the_default_store_when_no_db_is_given(tmp_path, monkeypatch):
    """`curate demo` without --db must use the settings' store, not a file named 'None'."""
    import curate.cli as cli
    monkeypatch.chdir(tmp_path)
    seen = []
    monkeypatch.setattr(cli, "cmd_generate", lambda a: seen.append(("generate", a.db, a.instructions)) or 0)
    monkeypatch.setattr(cli, "cmd_ensemble", lambda a: seen.append(("ensemble", a.db)) or 0)
    monkeypatch.setattr(cli, "cmd_stats", lambda a: seen.append(("stats", a.db)) or 0)
    assert main(["demo", "-n", "3"]) == 0
    assert seen == [("generate", None, 3), ("ensemble", None), ("stats", None)]
    assert main(["demo", "--db", "x.db"]) == 0
    assert seen[-1] == ("stats", "x.db")


def test_generate_sampling_flags_are_validated_and_recorded(tmp_path, capsys):
    db = tmp_path / "c.db"
    rc = main(["generate", "-n", "1", "--top-p", "2", "--db", str(db)])
    assert rc == 2 and "top_p" in capsys.readouterr().err
    # a scripted model that answers nothing useful: the job still records its sampling settings
    rc = main(["generate", "-n", "1", "--models", "scripted:x", "--temperature", "0", "--max-new-tokens", "32",
               "--instance-max-new-tokens", "48", "--no-instances", "--db", str(db)])
    from curate.store import Store
    with Store(db) as st:
        cfg = st.list_jobs()[0]["config"]
    assert cfg["instruction_params"]["temperature"] == 0 and cfg["instruction_params"]["max_new_tokens"] == 32
    assert cfg["instance_params"]["max_new_tokens"] == 48


def test_generate_profile_prints_where_the_time_went(tmp_path, capsys, monkeypatch):
    import hashlib

    from curate import prompts
    from curate.lm import registry
    from curate.lm.scripted import ScriptedLM

    def answer(prompt: str) -> str:  # a new instruction per prompt, a valid instance for each
        h = hashlib.sha256(prompt.encode()).digest()
        words = ["".join("kalomirentusvexborquazinpel"[b % 27] for b in h[i:i + 4]) for i in range(0, 28, 4)]
        if prompt.startswith(prompts.INSTRUCTION_HEADER):
            return " Describe " + " ".join(words) + " |EoS|"
        return f"input: {words[0]}\noutput: {words[1]}\n|EoS|" if "requires input" in prompt else f"output: {words[0]}"

    monkeypatch.setattr(registry, "_RESOLVERS", list(registry._RESOLVERS))
    registry.register_resolver(lambda s: s == "profiled", lambda s, **kw: ScriptedLM("profiled", answer),
                               name="profiled", first=True)
    rc = main(["generate", "-n", "3", "--models", "profiled", "--profile", "--db", str(tmp_path / "c.db")])
    captured = capsys.readouterr()
    out = captured.out
    assert rc == 0, captured.err
    table = out[out.index("profile of this run"):]
    for phase in ("prompt", "model", "parse", "filter", "store", "total"):
        assert f"\n{phase} " in table
    assert "kept candidates: 3 in" in table
