"""Shared fixtures. Tests never reach the Hugging Face hub: HF_HUB_OFFLINE is set before anything imports it."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# This machine's `curate models tune` picks must not change the defaults the tests assert: a file of their own
# (absent unless a test writes it).
os.environ["CURATE_TUNING"] = os.path.join(tempfile.gettempdir(), f"curate-test-tuning-{os.getpid()}.json")

import pytest


@pytest.fixture(scope="session")
def smollm2():
    """The real embedded SmolLM2-135M-Instruct through the transformers backend, loaded once per test run."""
    from curate.lm.registry import load_lm

    return load_lm("smollm2-135m-instruct", batch_size=8)
