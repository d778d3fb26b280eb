"""P5's `datamaps.json`: id2user / id2item, or their inverses user2id / item2id.

Each map must be one-to-one and, where both directions are given, the two must agree: two ids
for one item would silently merge them, one id given twice (JSON keeps the last) would silently
drop one.
"""
import json

from p5_jax.data.errors import DataError, shown
from p5_jax.data.fields import checked_text
from p5_jax.data.line_io import read_text


class _Object(dict):
    """A JSON object that remembers its first repeated key (json.loads keeps only the last value)."""

    def __init__(self, pairs):
        super().__init__(pairs)
        seen = set()
        self.repeated = next((key for key, _ in pairs if key in seen or seen.add(key)), None)


def _load(path) -> dict:
    text = read_text(path)
    try:
        datamaps = json.loads(text, object_pairs_hook=_Object)
    except json.JSONDecodeError as err:
        raise DataError(f"malformed JSON ({err.msg})", path=path, line=err.lineno) from None
    except RecursionError:
        raise DataError("malformed JSON (nested too deeply)", path=path) from None
    except ValueError as err:  # an integer past Python's digit limit
        raise DataError(f"malformed JSON ({str(err).split(';')[0]})", path=path) from None
    if not isinstance(datamaps, dict):
        raise DataError(f"expected a JSON object, got {type(datamaps).__name__}", path=path)
    return datamaps


def _id_text(value, *, path, field) -> str:
    """An id or a raw name: a non-empty string or a whole number, as text."""
    if isinstance(value, str) and value.strip():
        return checked_text(value, path=path, line=None, field=field)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise DataError(f"expected a non-empty string or a whole number, got {shown(value)}", path=path, field=field)


def _table(datamaps, name, *, path) -> dict | None:
    """One map as {text: text}, or None when the file does not have it."""
    if name not in datamaps:
        return None
    table = datamaps[name]
    if not isinstance(table, _Object):  # every JSON object is read as an _Object
        raise DataError(f"expected an object, got {type(table).__name__}", path=path, field=name)
    if table.repeated is not None:
        raise DataError(f"key {shown(table.repeated)} is given twice", path=path, field=name)
    return {_id_text(k, path=path, field=name): _id_text(v, path=path, field=name) for k, v in table.items()}


def _one_to_one(table, *, path, field, message) -> None:
    first_key: dict[str, str] = {}
    for key, value in table.items():
        if value in first_key:
            raise DataError(message.format(*map(shown, (first_key[value], key, value))), path=path, field=field)
        first_key[value] = key


def _disagreement(forward: dict, inverted: dict):
    """The first id on which two source id -> raw id maps differ, or None."""
    return next((key for key in {**forward, **inverted} if forward.get(key) != inverted.get(key)), None)


def id_map(datamaps, kind, *, path) -> dict:
    """source id -> raw id for `kind` ("user" or "item"), from id2<kind> and/or <kind>2id."""
    forward_name, inverse_name = f"id2{kind}", f"{kind}2id"
    forward = _table(datamaps, forward_name, path=path)
    inverse = _table(datamaps, inverse_name, path=path)
    if forward is not None:
        _one_to_one(forward, path=path, field=forward_name, message="ids {} and {} both name " + kind + " {}")
    if inverse is None:
        if forward is None:
            raise DataError(f"datamaps needs '{forward_name}' or '{inverse_name}'", path=path, field=forward_name)
        return forward
    _one_to_one(inverse, path=path, field=inverse_name, message=kind + "s {} and {} both have id {}")
    inverted = {source_id: raw for raw, source_id in inverse.items()}
    if forward is not None and (key := _disagreement(forward, inverted)) is not None:
        raise DataError(f"'{forward_name}' and '{inverse_name}' disagree about id {shown(key)}: "
                        f"{shown(forward.get(key))} and {shown(inverted.get(key))}", path=path, field=inverse_name)
    return inverted if forward is None else forward


def read_datamaps(path) -> tuple:
    """(id2user, id2item) as dicts of strings, each one-to-one."""
    datamaps = _load(path)
    return id_map(datamaps, "user", path=path), id_map(datamaps, "item", path=path)
