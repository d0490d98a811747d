"""Where the language-model calls of a stage run: in this process (``local``, the default) or on a Ray cluster
(``ray``, the ``curate[ray]`` extra; docs/RAY.md).

A stage asks its engine for *calls*: ``engine.submit(spec, "generate", prompts, params)`` (or ``"loglik"``)
returns a handle whose ``result()`` is what ``pool.get(spec).generate(prompts, params)`` returns;
``engine.submit_encode(model, texts, batch_size)`` embeds texts with a sentence-transformers model (:func:`encode`);
``engine.submit_score(spec, batch_size, instructions, inputs, outputs, ids)`` scores a batch of outputs with a
quality scorer (:func:`score`; not ``proxy:consensus``, which reads the store on the driver). A call is the
unit of work on both engines — the same prompts, the same params (with the same sampling seed) — so a call's
result does not depend on where it ran, on how many actors there are or on the order they finish in; that is what
keeps the stored rows the same as the local engine's. Everything else stays on the driver (the process that runs
the stage): it reads what is missing from the store, builds the prompts, runs the filters and writes each batch
in one transaction, in order, as the batches come back (:func:`ordered`).

* :class:`LocalEngine` runs each call at once, in this process, on the stage's :class:`~curate.mixture.ModelPool`.
* :class:`RayEngine` runs calls on a pool of Ray actors, each holding its own model pool (a backend is loaded
  once per actor, on the first call that needs it). Actors restart when they die and a call that was running on
  a lost actor runs again (its result is the same: the seed is in its params), so a lost worker costs its batch.
  Ray is imported only here, only when the Ray engine is asked for.
"""

from __future__ import annotations

import os
from collections import deque
from typing import Any, Callable, Iterator, Literal, TypeVar

from pydantic import BaseModel, Field

from .errors import CurateError
from .lm.base import generate as generate_with

__all__ = ["EngineSettings", "LocalEngine", "RayEngine", "check_engine", "open_engine", "ordered", "RAY_MISSING"]

RAY_MISSING = "the Ray engine needs Ray: pip install 'curate[ray]'"
K = TypeVar("K")


class EngineSettings(BaseModel):
    """The engine fields every LM stage's Config has (``--engine``, ``--address``, ``--actors``)."""

    engine: Literal["local", "ray"] = Field("local", description="where the model calls run: this process "
                                                                 "(local) or a Ray cluster (ray)")
    address: str | None = Field(None, description="ray: the cluster to join (auto, ray://host:port); None "
                                                  "starts Ray on this machine")
    actors: int | None = Field(None, ge=1, description="ray: model-holding actors (None: one per CPU of the "
                                                       "cluster, at most 8)")


class _Done:
    """A call that already ran (the local engine's handle)."""

    def __init__(self, value: Any = None, error: BaseException | None = None):
        self._value, self._error = value, error

    def result(self) -> Any:
        if self._error is not None:
            raise self._error
        return self._value


def encode(embedder, texts: list[str], batch_size: int):
    """(n, d) float32 normalised embeddings of ``texts`` (one embedding call of either engine)."""
    import numpy as np
    return np.asarray(embedder.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                                      convert_to_numpy=True), dtype="<f4")


def score(cache: dict, pool, spec: str, batch_size: int, instructions, inputs, outputs, ids):
    """A :class:`~curate.quality.ScoredBatch` of one batch by the scorer ``spec`` (one score call of either
    engine), the scorer loaded once into ``cache`` (a judge's LM from ``pool``)."""
    from .quality import load_scorer, score_batch
    if (spec, batch_size) not in cache:
        cache[spec, batch_size] = load_scorer(spec, pool=pool, batch_size=batch_size)
    return score_batch(cache[spec, batch_size], instructions, inputs, outputs, ids)


def _embedder(cache: dict, model: str):
    """``model``'s embedder from ``cache``, loaded once (:func:`curate.lm.registry.load_embedder`)."""
    if model not in cache:
        from .lm.registry import load_embedder
        cache[model] = load_embedder(model)
    return cache[model]


class LocalEngine:
    """Each call runs when it is submitted, in this process: exactly what the stages did before engines.
    ``embedders``: ready embedders by model name (else loaded on first use)."""

    name = "local"
    window = 1  # batches a stage keeps in flight

    def __init__(self, pool, embedders: dict | None = None):
        self.pool = pool
        self._embedders = dict(embedders or {})
        self._scorers: dict = {}

    def lm(self, spec: str):
        """The driver's own copy of a model, for what only the driver does (counting prompt tokens, the
        chat template, whether it has one)."""
        return self.pool.get(spec)

    def submit(self, spec: str, method: Literal["generate", "loglik"], *args,
               progress: Callable[[int], None] | None = None) -> _Done:
        """Run the call now. ``progress``: a generate call's backend hook (curate.lm.base), which reports
        tokens within the call and may raise Stopped from inside it."""
        try:
            lm = self.pool.get(spec)
            if method == "generate" and progress is not None:
                return _Done(generate_with(lm, *args, progress=progress))
            return _Done(getattr(lm, method)(*args))
        except Exception as exc:  # raised by result(), where the stage would have seen it
            return _Done(error=exc)

    def submit_encode(self, model: str, texts: list[str], batch_size: int) -> _Done:
        try:
            return _Done(encode(_embedder(self._embedders, model), texts, batch_size))
        except Exception as exc:
            return _Done(error=exc)

    def submit_score(self, spec: str, batch_size: int, instructions, inputs, outputs, ids) -> _Done:
        """One quality-scorer call (:func:`score`): the scorer loaded once per engine, its judge LM from the pool."""
        try:
            return _Done(score(self._scorers, self.pool, spec, batch_size, instructions, inputs, outputs, ids))
        except Exception as exc:
            return _Done(error=exc)

    def cancel(self) -> None:
        pass

    def close(self) -> None:
        pass


def ordered(engine, next_job: Callable[[int], tuple[K, Callable[[], Any]] | None]) -> Iterator[tuple[K, Any]]:
    """Keep up to ``engine.window`` jobs in flight and yield (key, what ``submit()`` returned) in the order they
    were drawn; the caller collects each and writes it before the next one comes.

    ``next_job(in_flight)`` gives the next (key, submit) pair, or None for none now: then the oldest job in flight
    is yielded first and it is asked again, and None with nothing in flight ends the run. It is asked after each
    write, so with a window of 1 (the local engine) every job is built from a store that holds every earlier
    batch, exactly as the stages' plain loops did."""
    window: deque = deque()
    while True:
        while len(window) < engine.window:
            job = next_job(len(window))
            if job is None:
                break
            key, submit = job
            window.append((key, submit()))
        if not window:
            return
        yield window.popleft()


def _import_ray():
    try:
        import ray
    except ImportError:
        raise CurateError(RAY_MISSING) from None
    return ray


class _Call:
    """A call running on a Ray actor; ``result()`` waits for it."""

    def __init__(self, ray, ref, engine: "RayEngine", actor: int):
        self._ray, self._ref, self._engine, self._actor = ray, ref, engine, actor
        self._got = False

    def result(self) -> Any:
        try:
            return self._ray.get(self._ref)
        except self._ray.exceptions.RayTaskError as exc:  # the backend's own exception, as the local engine
            raise exc.as_instanceof_cause() from None
        finally:
            if not self._got:
                self._got = True
                self._engine._busy[self._actor] -= 1


class _LMWorker:
    """A Ray actor: one model pool, loading each backend once, answering calls."""

    def __init__(self, preloaded: dict | None, threads: int | None):
        from .mixture import ModelPool
        if threads:
            import torch
            torch.set_num_threads(threads)
            os.environ["CURATE_THREADS"] = str(threads)  # a tuned thread count must not override the actor's
        self.pool = ModelPool(preloaded)
        self.embedders: dict = {}
        self.scorers: dict = {}

    def call(self, spec: str, method: str, *args):
        return getattr(self.pool.get(spec), method)(*args)

    def encode(self, model: str, texts: list[str], batch_size: int):
        return encode(_embedder(self.embedders, model), texts, batch_size)

    def score(self, spec: str, batch_size: int, *batch):
        return score(self.scorers, self.pool, spec, batch_size, *batch)

    def pid(self) -> int:
        return os.getpid()


class RayEngine:
    """Calls run on ``actors`` Ray actors (``address``: the cluster; None starts one here). ``pool``: the
    stage's model pool — the driver's own models for token counting and chat templates, and its preloaded
    models (scripted LMs in tests), which each actor gets a copy of; anything else an actor loads by spec.
    Raises CurateError naming the fix when Ray is not installed or the cluster cannot be reached."""

    name = "ray"

    def __init__(self, pool, address: str | None = None, actors: int | None = None, *,
                 cpus_per_actor: float = 1.0):
        ray = self._ray = _import_ray()
        self.pool = pool
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            try:
                ray.init(address=address, include_dashboard=False, logging_level="WARNING",
                         log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise CurateError(f"cannot reach the Ray cluster at {address or 'this machine'}: {exc}. Start one "
                                  "with `ray start --head` (docs/RAY.md) or pass --address auto|ray://host:port")
        n = actors or max(1, min(8, int(ray.cluster_resources().get("CPU", 1) // cpus_per_actor)))
        remote = ray.remote(num_cpus=cpus_per_actor, max_restarts=-1, max_task_retries=-1)(_LMWorker)
        portable = {k: v for k, v in getattr(pool, "preloaded", {}).items()}
        threads = max(1, int(cpus_per_actor))
        self._actors = [remote.remote(portable, threads) for _ in range(n)]
        self._busy = [0] * n
        self._loaded: list[set[str]] = [set() for _ in range(n)]
        self.window = 2 * n

    @property
    def actors(self) -> int:
        return len(self._actors)

    def lm(self, spec: str):
        return self.pool.get(spec)

    def _pick(self, spec: str) -> int:
        """The least busy actor, preferring one that has ``spec`` loaded already (fewer model loads)."""
        return min(range(len(self._actors)), key=lambda i: (self._busy[i], spec not in self._loaded[i], i))

    def submit(self, spec: str, method: Literal["generate", "loglik"], *args,
               progress: Callable[[int], None] | None = None) -> _Call:
        """``progress`` is not sent to the actor (a hook can't cross processes): on Ray a stage sees a batch's
        tokens when it comes back and stops between batches (``cancel`` kills the calls in flight)."""
        return self._send(spec, "call", spec, method, *args)

    def submit_encode(self, model: str, texts: list[str], batch_size: int) -> _Call:
        return self._send(f"embedder:{model}", "encode", model, texts, batch_size)

    def submit_score(self, spec: str, batch_size: int, instructions, inputs, outputs, ids) -> _Call:
        """A quality-scorer call on an actor (the scorer loaded once per actor, by its portable spec)."""
        return self._send(f"scorer:{spec}", "score", spec, batch_size, list(instructions), list(inputs),
                          list(outputs), list(ids))

    def _send(self, key: str, actor_method: str, *args) -> _Call:
        i = self._pick(key)
        self._busy[i] += 1
        self._loaded[i].add(key)
        return _Call(self._ray, getattr(self._actors[i], actor_method).remote(*args), self, i)

    def worker_pids(self) -> list[int]:
        return self._ray.get([a.pid.remote() for a in self._actors])

    def cancel(self) -> None:
        """Stop whatever is running (a stopped stage discards its batches in flight; a resume redoes them)."""
        self.close()

    def close(self) -> None:
        for a in self._actors:
            self._ray.kill(a)
        self._actors = []
        if self._owns_ray:
            self._ray.shutdown()


def check_engine(engine: str = "local", address: str | None = None, actors: int | None = None) -> None:
    """Refuse what cannot run before a job is made: the Ray engine without Ray, Ray settings on the local engine
    (CurateError naming the fix)."""
    if engine == "ray":
        _import_ray()
    elif address is not None or actors is not None:
        raise CurateError("--address and --actors are settings of the Ray engine: add --engine ray")


def open_engine(settings: EngineSettings, pool) -> LocalEngine | RayEngine:
    """The engine a stage's Config asks for, over the stage's model pool."""
    if settings.engine == "ray":
        return RayEngine(pool, settings.address, settings.actors)
    return LocalEngine(pool)
