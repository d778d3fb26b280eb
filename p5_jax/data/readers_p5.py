"""P5's processed sequences: `sequential_data.txt` (user then items, time order) + `datamaps.json`."""
import json

from p5_jax.data import records
from p5_jax.data.errors import BadLinePolicy, DataError
from p5_jax.data.line_io import numbered_lines

SEQUENCE_FILES = ("sequential_data.txt", "sequential.txt")
DATAMAPS_FILE = "datamaps.json"


def find_files(path) -> tuple:
    path = records.source_path(path)
    folder = path.parent if path.is_file() else path
    sequences = path if path.is_file() else next(
        (folder / n for n in SEQUENCE_FILES if (folder / n).exists()), None)
    if sequences is None:
        raise DataError(f"no {' or '.join(SEQUENCE_FILES)} in the folder", path=folder)
    datamaps = folder / DATAMAPS_FILE
    if not datamaps.exists():
        raise DataError(f"no {DATAMAPS_FILE} next to the sequences", path=folder)
    return sequences, datamaps


def _id_map(datamaps, forward, inverse, *, path):
    """source id -> raw id, from `forward` (id2x) or else the inverse of `inverse` (x2id)."""
    if forward in datamaps:
        table = datamaps[forward]
    elif inverse in datamaps:
        table = {str(v): k for k, v in datamaps[inverse].items()}
    else:
        raise DataError(f"datamaps needs '{forward}' or '{inverse}'", path=path, field=forward)
    if not isinstance(table, dict):
        raise DataError("expected an object", path=path, field=forward)
    return {str(k): str(v) for k, v in table.items()}


def read_datamaps(path) -> tuple:
    """(id2user, id2item) as dicts of strings."""
    try:
        with open(path, encoding="utf-8") as handle:
            datamaps = json.load(handle)
    except json.JSONDecodeError as err:
        raise DataError(f"malformed JSON ({err.msg})", path=path, line=err.lineno) from None
    if not isinstance(datamaps, dict):
        raise DataError("expected a JSON object", path=path)
    return (_id_map(datamaps, "id2user", "user2id", path=path),
            _id_map(datamaps, "id2item", "item2id", path=path))


def _parse_line(text, *, path, line, id2user, id2item):
    tokens = text.split()
    for position, token in enumerate(tokens):
        if not token.isdigit():
            field = "user_id" if position == 0 else "history"
            raise DataError(f"expected a whole-number id, got {token!r}", path=path, line=line, field=field)
    if len(tokens) < 2:
        raise DataError("empty history", path=path, line=line, field="history")
    user, items = tokens[0], tokens[1:]
    if user not in id2user:
        raise DataError(f"user id {user} is missing from datamaps", path=path, line=line, field="user_id")
    missing = [i for i in items if i not in id2item]
    if missing:
        raise DataError(f"item id {missing[0]} is missing from datamaps", path=path, line=line,
                        field="history")
    return id2user[user], [id2item[i] for i in items]


def read_p5_sequential(*, path, policy: BadLinePolicy) -> records.SourceDataset:
    sequences_path, datamaps_path = find_files(path)
    id2user, id2item = read_datamaps(datamaps_path)
    interactions, seen_users = [], set()
    for line, text in numbered_lines(sequences_path):
        try:
            user, items = _parse_line(text, path=sequences_path, line=line, id2user=id2user, id2item=id2item)
            if user in seen_users:
                raise DataError(f"user {text.split()[0]} appears twice", path=sequences_path, line=line,
                                field="user_id")
        except DataError as err:
            policy.handle(err)
            continue
        seen_users.add(user)
        interactions.extend(records.Interaction(user=user, item=item, timestamp=step, order=len(interactions) + step)
                            for step, item in enumerate(items))
    if not interactions:
        raise DataError("no valid sequences", path=sequences_path)
    fields = records.empty_fields()
    users = dict.fromkeys(i.user for i in interactions)
    return records.SourceDataset(
        format="p5_sequential", interactions=interactions, user_desc={u: u for u in users},
        item_meta={}, original_item_ids={raw: sid for sid, raw in id2item.items()},
        fields=fields, source_files=[sequences_path, datamaps_path])
