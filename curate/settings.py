"""One validated settings object, from (highest priority first) command-line flags, ``CURATE_*``
environment variables, a TOML file, and the defaults below.

The TOML file is ``--config PATH``, else ``$CURATE_CONFIG``, else ``./curate.toml`` if it exists. Keys are
the field names below, at the top level::

    db = "data/curate.db"
    port = 7860
    ensemble_models = ["smollm2-135m-instruct", "qwen2.5-0.5b-instruct"]
    consensus_threshold = 0.01

An invalid value raises :class:`~curate.errors.SettingsError` naming the key and where it came from.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .errors import SettingsError
from .tune import default_batch_size

DEFAULT_CONFIG_FILE = "curate.toml"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CURATE_", extra="forbid", validate_default=True)

    db: Path = Field(Path("data/curate.db"), description="the SQLite store")
    host: str = Field("127.0.0.1", description="the app binds here; 0.0.0.0 exposes it to the network")
    port: int = Field(7860, ge=1, le=65535)
    auth: str | None = Field(None, description="user:pass (comma-separate several) to require a login")
    users_file: Path | None = Field(None, description="a file of 'user:password [role]' lines (# comments; role: "
                                                      "reviewer or admin) to require a login; adds to auth")
    insecure_no_auth: bool = Field(False, description="serve on a network host without a login anyway (names "
                                                      "are then not verified)")
    seeds: Path | None = Field(None, description="seed task file; default: the shipped Self-Instruct seeds")
    instruction_models: list[str] = Field(default_factory=lambda: ["smollm2-135m-instruct", "gemma3-270m"])
    instance_models: list[str] = Field(default_factory=lambda: ["smollm2-135m-instruct", "gemma3-270m"])
    ensemble_models: list[str] = Field(default_factory=lambda: ["smollm2-135m-instruct",
                                                                "qwen2.5-0.5b-instruct"])
    ensemble_prompt_style: str = Field("chat", pattern="^(chat|reference)$",
                                       description="chat template where the model has one, else reference")
    consensus_threshold: float = Field(0.01, ge=0.0, le=1.0)
    reviews_per_candidate: int = Field(1, ge=1, le=20,
                                       description="reviews each candidate needs; with 2 or more each reviewer's "
                                                   "review is a vote, and disagreements go to an admin")
    similarity_threshold: float = Field(0.7, ge=0.0, le=1.0)
    batch_size: int = Field(default_factory=default_batch_size, ge=1, le=256)  # 8, or this machine's tuned pick
    car_beta: float = Field(1.0, ge=0.0, le=100.0,
                            description="beta of CAR = mean reward / (1 + beta * L); the paper's value is not "
                                        "confirmed, 1.0 is our default")
    student_model: str = Field("smollm2-135m-instruct", min_length=1,
                               description="the student whose loss on each teacher's responses CAR uses")
    quality_scorer: str = Field("proxy:consensus", min_length=1,
                                description="rm:<model>, judge:<model spec> or proxy:consensus")
    review_guidelines: str = Field("", max_length=50_000,
                                   description="Markdown shown to reviewers in the Review tab's guidelines panel "
                                               "until an admin saves other guidelines in the app")
    seed: int = 0
    reviewer: str = Field(default_factory=lambda: os.environ.get("USER") or "reviewer")

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls))


class _TomlSource(PydanticBaseSettingsSource):
    path: Path | None = None  # set by load_settings

    def get_field_value(self, field, field_name):  # pragma: no cover - __call__ is used instead
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        p = type(self).path
        if p is None:
            return {}
        try:
            with open(p, "rb") as f:
                return tomllib.load(f)
        except FileNotFoundError:
            raise SettingsError(f"settings file {str(p)!r} not found; pass an existing --config PATH") from None
        except tomllib.TOMLDecodeError as e:
            raise SettingsError(f"settings file {str(p)!r} is not valid TOML: {e}") from None


def load_settings(config: str | os.PathLike | None = None, **overrides: Any) -> Settings:
    """Settings from flags (``overrides``; ``None`` values are ignored), env, TOML file and defaults.

    Raises SettingsError naming the key, its source and what is wrong.
    """
    path = config or os.environ.get("CURATE_CONFIG")
    if path is None and Path(DEFAULT_CONFIG_FILE).exists():
        path = DEFAULT_CONFIG_FILE
    _TomlSource.path = Path(path) if path else None
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            key = ".".join(str(x) for x in err["loc"]) or "?"
            top = str(err["loc"][0]) if err["loc"] else key
            src = ("command line" if top in given else f"${'CURATE_' + top.upper()}"
                   if f"CURATE_{top.upper()}" in os.environ else f"{path}" if path else "default")
            problems.append(f"setting {key!r} (from {src}): {err['msg']}")
        raise SettingsError("; ".join(problems)) from None
    finally:
        _TomlSource.path = None
