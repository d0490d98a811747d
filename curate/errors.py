"""Exceptions raised by the library. Each message names the place and the fix.

The CLI turns these into a one-line error and exit code 2; the UI turns them into ``gr.Error``.
"""


class CurateError(Exception):
    """Base class of every error the library raises on purpose."""


class SettingsError(CurateError):
    """A setting has an invalid value (the message names the key)."""


class SeedFileError(CurateError):
    """A seed file is malformed (the message names the file, the line and what is wrong)."""


class ModelNotFoundError(CurateError):
    """An unknown model name, or a model that cannot be found offline."""


class ModelPackageMissingError(CurateError):
    """An embedded model's registry package is not installed (the message gives the pip command)."""


class ChecksumError(CurateError):
    """An assembled model file does not have the expected sha256."""


class BackendError(CurateError):
    """A language-model backend failed (server unreachable after retries, bad response, ...)."""


class ScorerError(CurateError):
    """A quality scorer or teacher-compatibility run cannot proceed (unknown scorer spec, a model that is not
    a reward model, a student without loglik, nothing to score, ...); the message names the fix."""


class StoreError(CurateError):
    """The store refused an operation (unknown row, schema newer than this code, ...)."""


class ConflictError(StoreError):
    """A write based on a stale version of a row (someone else changed it first)."""


class JobRunningError(StoreError):
    """A job of the same kind is already active on this store (``job_id``); the message names it, how to
    follow, pause or cancel it, and how to start another one alongside it on purpose."""

    def __init__(self, message: str, job_id: str):
        super().__init__(message)
        self.job_id = job_id


class StoreBusyError(StoreError):
    """Another process held the store's write lock for longer than the bounded wait; nothing was written."""


class InputError(CurateError, ValueError):
    """A number or choice outside what is allowed (the message names the place, the range and the value)."""


class NotAllowed(CurateError):
    """The logged-in user's role does not allow this action (the message names the role it needs)."""


class SelectionError(CurateError):
    """QDIT selection or near-duplicate finding got bad input (k, alpha, quality, embeddings, empty pool)."""


class NotEmbedded(SelectionError):
    """The pool has candidates without a cached embedding of their current text (``missing`` of ``total``, for
    embedder ``model`` and pool ``source``): embed them first (the embed stage; the app offers its button)."""

    def __init__(self, message: str, *, missing: int, total: int, model: str, source: str):
        super().__init__(message)
        self.missing, self.total, self.model, self.source = missing, total, model, source


class ExportError(CurateError):
    """An export cannot be written (bad format or option, nothing to export, unwritable or occupied path,
    text that is not valid UTF-8); nothing was written."""


class SourceError(CurateError):
    """A dataset to import cannot be read or does not fit (missing, empty, binary, bad rows, missing columns, a
    Hub id offline, …); the message names the place (file, line, column) and the fix. Nothing was imported."""


class Stopped(Exception):
    """Raised inside a stage when its job was asked to pause or cancel (``StageContext.should_stop()``); the
    stage stops between two steps, so everything stored so far stays. Not an error: the job runner turns it
    into the state 'paused' or 'cancelled'."""


class EvaluationError(CurateError):
    """An evaluation cannot run: an unreadable or malformed evaluation set or predictions file (the message
    names the file and line), a metric the set cannot give (no references), a comparison over other rows."""


class TrainingError(CurateError):
    """A fine-tuning run cannot proceed: nothing to train on (or nothing left after the contamination guard), an
    unknown source, an export folder it cannot read, running out of memory (the message names the knobs)."""


class ExperimentError(CurateError):
    """An experiment cannot run: an arm with no training rows (or none left after the contamination guard), an
    unknown teacher, an evaluation set without references."""


class ExperimentRunning(ExperimentError):
    """An experiment's report was asked for while its job is still queued or running (the message says how far it
    is)."""
