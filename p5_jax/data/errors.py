"""Errors for bad input data, and the policy that decides whether a bad line stops the run."""
import dataclasses
import reprlib

_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = _SHORT.maxlong = 60
_SHORT.maxlevel = 3


def shown(value) -> str:
    """A short repr for messages: long or deeply nested values are cut, never expanded."""
    try:
        return _SHORT.repr(value)
    except (ValueError, RecursionError):  # e.g. an int past the digit limit
        return f"<{type(value).__name__}>"


class DataError(ValueError):
    """Bad input data; the message names the file, line and field."""

    def __init__(self, message: str, *, path=None, line: int | None = None, field: str | None = None):
        self.message, self.path, self.line, self.field = message, path, line, field
        where = []
        if path is not None:
            where.append(str(path))
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field '{field}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)

    def naming(self, path) -> "DataError":
        """This error, or a copy that names `path` when it names no file yet."""
        if self.path is not None:
            return self
        return DataError(self.message, path=path, line=self.line, field=self.field)


@dataclasses.dataclass
class BadLinePolicy:
    """Raises on the first bad line, or (skip=True) counts bad lines and keeps a few examples."""
    skip: bool = False
    count: int = 0
    examples: list = dataclasses.field(default_factory=list)
    max_examples: int = 5

    def handle(self, error: DataError) -> None:
        if not self.skip:
            raise error
        self.count += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(str(error))

    def nothing_valid(self, what: str, path) -> DataError:
        """The error for a file that gave no valid `what`, saying why."""
        why = f"{self.count:,} bad lines skipped" if self.count else "no data lines"
        return DataError(f"no valid {what} ({why})", path=path)
