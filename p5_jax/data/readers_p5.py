"""P5's processed sequences: `sequential_data.txt` (user then items, time order) + `datamaps.json`."""
from p5_jax.data import records
from p5_jax.data.datamaps import read_datamaps
from p5_jax.data.errors import BadLinePolicy, DataError, shown
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


def _short(token: str) -> str:
    """A digit id for a message, cut when long."""
    return token if len(token) <= 30 else f"{token[:30]}... ({len(token):,} digits)"


def _parse_line(text, *, path, line, id2user, id2item):
    tokens = text.split()
    for position, token in enumerate(tokens):
        if not (token.isascii() and token.isdigit()):
            field = "user_id" if position == 0 else "history"
            raise DataError(f"expected a whole-number id, got {shown(token)}", path=path, line=line, field=field)
    if len(tokens) < 2:
        raise DataError("empty history", path=path, line=line, field="history")
    user, items = tokens[0], tokens[1:]
    if user not in id2user:
        raise DataError(f"user id {_short(user)} is missing from datamaps", path=path, line=line, field="user_id")
    missing = [i for i in items if i not in id2item]
    if missing:
        raise DataError(f"item id {_short(missing[0])} is missing from datamaps", path=path, line=line,
                        field="history")
    return id2user[user], [id2item[i] for i in items]


def read_p5_sequential(*, path, policy: BadLinePolicy) -> records.SourceDataset:
    sequences_path, datamaps_path = find_files(path)
    id2user, id2item = read_datamaps(datamaps_path)
    interactions: list[records.Interaction] = []
    first_line: dict[str, int] = {}
    for line, text in numbered_lines(sequences_path, policy):
        try:
            user, items = _parse_line(text, path=sequences_path, line=line, id2user=id2user, id2item=id2item)
            if user in first_line:
                raise DataError(f"user {_short(text.split()[0])} appears twice (first on line {first_line[user]})",
                                path=sequences_path, line=line, field="user_id")
        except DataError as err:
            policy.handle(err)
            continue
        first_line[user] = line
        interactions.extend(records.Interaction(user=user, item=item, timestamp=step, order=len(interactions) + step)
                            for step, item in enumerate(items))
    if not interactions:
        raise policy.nothing_valid("sequences", sequences_path)
    fields = records.empty_fields()
    users = dict.fromkeys(i.user for i in interactions)
    return records.SourceDataset(
        format="p5_sequential", interactions=interactions, user_desc={u: u for u in users},
        item_meta={}, original_item_ids={raw: sid for sid, raw in id2item.items()},
        fields=fields, source_files=[sequences_path, datamaps_path])
