"""Errors that name the problem in one line, so callers (and the CLI) never show deep tracebacks."""

from __future__ import annotations


class SpladekitError(ValueError):
    """Base class: a user-facing error whose message is the whole story."""


class ModelLoadError(SpladekitError):
    """A model path, folder or weights file that cannot be loaded."""


class InputError(SpladekitError):
    """Bad input passed to an API call (wrong type, empty list, malformed record)."""


class DataFormatError(SpladekitError):
    """A data file with a malformed line; the message names the file and the line number."""

    def __init__(self, path: str, line: int | None, problem: str, doc_id: str | None = None) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")
        self.path = str(path)
        self.line = line
        self.problem = problem
        self.doc_id = doc_id  # the record's id when it could be read (a source sync must not delete it)


def first_line(e: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (or its type name): what a one-line error quotes of a cause."""
    s = str(e).strip()
    return s.splitlines()[0][:limit] if s else type(e).__name__
