"""Expected failures: each message names the problem and how to fix it (exit code 1 unless usage)."""


class RagqaError(Exception):
    """A domain error the CLI reports in one line with exit code 1."""

    exit_code = 1


class UsageError(RagqaError):
    """The user asked for something malformed (exit code 2)."""

    exit_code = 2


class CorpusError(RagqaError):
    """The articles could not be read."""


class IndexMissing(RagqaError):
    """There is no index where one was expected."""


class IndexCorrupt(RagqaError):
    """The index exists but cannot be trusted."""


class IndexMismatch(RagqaError):
    """The index was built with settings that differ from the running ones."""


class ModelUnavailable(RagqaError):
    """A model is neither cached locally nor downloadable right now."""


class IndexBusy(RagqaError):
    """Another process holds the index lock."""


class NotAnIndex(RagqaError):
    """The index folder (or a file in it) was not written by ragqa, so ragqa will not touch it."""


class IndexWriteFailed(RagqaError):
    """The index could not be written (disk full, read-only, no permission); the previous one is intact."""
