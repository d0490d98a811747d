"""Language-model backends behind one small protocol (:mod:`.base`), and the registry of models (:mod:`.registry`).

Backends that need heavy imports (transformers, httpx) are imported lazily by the registry.
"""

from .base import LM, Completion, GenParams
from .registry import ensure_model_file, list_embedded, load_lm
from .scripted import ScriptedLM

__all__ = ["GenParams", "Completion", "LM", "ScriptedLM", "load_lm", "list_embedded", "ensure_model_file"]
