"""Errors for bad input data, and the policy that decides whether a bad line stops the run."""
import dataclasses


class DataError(ValueError):
    """Bad input data; the message names the file, line and field."""

    def __init__(self, message: str, *, path=None, line: int | None = None, field: str | None = None):
        self.path, self.line, self.field = path, line, field
        where = []
        if path is not None:
            where.append(str(path))
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field '{field}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


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
