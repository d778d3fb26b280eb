"""Checked values of one input line, each failure a DataError naming file, line and field.

Objects come from strict JSON or, failing that, a Python literal (McAuley's 2014 files); both
parsers accept values the prepared records cannot hold (NaN, 1e400, 10**30, lone surrogates from
"\\ud800" escapes, nesting thousands deep), so every value a reader keeps passes through here.
"""
import ast
import collections
import json
import math

from p5_jax.data.errors import DataError, shown

MAX_DEPTH = 64
Bounds = collections.namedtuple("Bounds", "name low high label")
RATING = Bounds("rating", 1, 5, "1-5")
TIMESTAMP = Bounds("timestamp", -(2 ** 63), 2 ** 63 - 1, "the int64 range")  # seconds, ms or us alike


def _depth(obj) -> int:
    """Nesting depth of lists, tuples, sets and dicts, without recursion (stops past MAX_DEPTH)."""
    deepest, stack = 0, [(obj, 1)]
    while stack and deepest <= MAX_DEPTH:
        value, depth = stack.pop()
        if isinstance(value, dict):
            value = value.values()
        elif not isinstance(value, (list, tuple, set, frozenset)):
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in value)
    return deepest


def _literal(text, json_err, *, path, line):
    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):  # MemoryError: parser stack
        reason = json_err.msg if isinstance(json_err, json.JSONDecodeError) else str(json_err).split(";")[0]
        raise DataError(f"malformed JSON ({reason})", path=path, line=line) from None


def _too_deep(*, path, line) -> DataError:
    return DataError(f"nested more than {MAX_DEPTH} levels deep", path=path, line=line)


def parse_object(text, *, path, line) -> dict:
    """One line as a dict: strict JSON, or else a Python literal (the 2014 metadata files)."""
    try:
        obj = json.loads(text)
    except RecursionError:
        raise _too_deep(path=path, line=line) from None
    except ValueError as json_err:  # JSONDecodeError, or an integer past Python's digit limit
        obj = _literal(text, json_err, path=path, line=line)
    if text.count("[") + text.count("{") > MAX_DEPTH and _depth(obj) > MAX_DEPTH:
        raise _too_deep(path=path, line=line)
    if not isinstance(obj, dict):
        raise DataError(f"expected a JSON object, got {type(obj).__name__}", path=path, line=line)
    return obj


def checked_text(value: str, *, path, line, field) -> str:
    """`value` if it can be written as UTF-8 (JSON and Python escapes can make lone surrogates)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise DataError(f"not Unicode text: lone surrogate {value[err.start]!r} at character {err.start + 1}",
                        path=path, line=line, field=field) from None
    return value


def required_str(obj, field, *, path, line) -> str:
    if field not in obj:
        raise DataError("missing field", path=path, line=line, field=field)
    value = obj[field]
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"expected a non-empty string, got {shown(value)}", path=path, line=line, field=field)
    return checked_text(value.strip(), path=path, line=line, field=field)


def optional_str(obj, field, *, path, line) -> str:
    """The field's text with whitespace runs made single spaces; "" when missing or null."""
    value = obj.get(field, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DataError(f"expected a string, got {shown(value)}", path=path, line=line, field=field)
    return checked_text(" ".join(value.split()), path=path, line=line, field=field)


def _number_text(text: str):
    """An int for integer text (exact), else a float; None for text that is no number."""
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:  # also an integer past Python's digit limit: float() takes it as inf
            continue
    return None


def whole_number(value, bounds: Bounds, *, path, line, field, from_text: bool = False) -> int:
    """`value` (an int or a float; number text too when `from_text`) as an int within `bounds`."""
    number = _number_text(value.strip()) if from_text else value
    where = dict(path=path, line=line, field=field)
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        raise DataError(f"expected a whole number, got {shown(value)}", **where)
    if isinstance(number, float) and not math.isfinite(number):
        raise DataError(f"expected a finite whole number, got {shown(value)}", **where)
    if number != int(number):
        raise DataError(f"expected a whole number, got {shown(value)}", **where)
    if not bounds.low <= number <= bounds.high:
        raise DataError(f"{bounds.name} {shown(int(number))} is outside {bounds.label}", **where)
    return int(number)


def finite_number(text: str, *, path, line, field) -> float:
    """Number text (RecBole float columns) as a finite float."""
    number = _number_text(text.strip())
    if number is None:
        raise DataError(f"expected a number, got {shown(text)}", path=path, line=line, field=field)
    try:
        number = float(number)
    except OverflowError:  # an integer too large for a float
        number = math.inf
    if not math.isfinite(number):
        raise DataError(f"expected a finite number, got {shown(text)}", path=path, line=line, field=field)
    return number
