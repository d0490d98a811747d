"""curate: synthetic instruction-tuning data from a mixture of small language models.

Seeds -> instructions -> candidates (instruction + instance) -> ensemble outputs -> consensus/scores -> review -> export.
Every stage reads the rows of the previous stage from the SQLite store and writes its own.
"""

__version__ = "0.1.0"
