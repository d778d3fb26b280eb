"""Zero-shot (Z) prompts: they register exactly where their metadata exists, and the title-only
ones (Z-8, Z-9) run end to end on MovieLens-like data prepared from RecBole files."""
import json
import re

import pytest
import seqio

import p5_tasks
from p5_jax import vocabulary
from p5_jax.data import prepare, tfds_builders
from p5_tasks import prompts, registration

import eval_data

LENGTHS = {"inputs": 256, "targets": 32}
AMAZON_WITH_META = frozenset({"rating", "review_text", "summary", "explanation", "item_title",
                              "item_brand", "item_price", "sequences"})


def _zeroshot_ids(fields) -> set:
    return {p.id for p in prompts.prompts_for(fields=frozenset(fields), family="zeroshot")}


# -- registration --------------------------------------------------------------------------------
def test_z_prompts_need_their_metadata():
    assert _zeroshot_ids(AMAZON_WITH_META) == {f"Z-{i}" for i in range(1, 10)}
    assert _zeroshot_ids(AMAZON_WITH_META - {"item_brand", "item_price"}) == {"Z-7", "Z-8", "Z-9"}
    assert _zeroshot_ids(AMAZON_WITH_META - {"explanation"}) == {"Z-1", "Z-2", "Z-3", "Z-4", "Z-8", "Z-9"}
    assert _zeroshot_ids(AMAZON_WITH_META - {"item_title"}) == set()
    assert _zeroshot_ids({"item_title", "item_brand", "item_price", "sequences"}) == set()  # no ratings


def test_shipped_datasets_register_z_tasks_only_where_fields_exist():
    names = [n for n in seqio.TaskRegistry.names() if "_zeroshot_" in n]
    assert sorted(names) == ["p5_ml100k_zeroshot_z_8", "p5_ml100k_zeroshot_z_9"]
    unseen = {t.name for t in seqio.get_mixture_or_task("p5_ml100k_unseen").tasks}
    assert set(names) <= unseen
    assert not {t.name for t in seqio.get_mixture_or_task("p5_ml100k_all").tasks} & set(names)


def test_a_dataset_with_amazon_metadata_registers_every_z_prompt():
    spec = registration.DatasetSpec(name="zs_shop", fields=AMAZON_WITH_META)
    try:
        names = registration.register_dataset(spec)
        zeroshot = sorted(n for n in names if "_zeroshot_" in n)
        assert zeroshot == [f"p5_zs_shop_zeroshot_z_{i}" for i in range(1, 10)]
        without = registration.register_dataset(
            registration.DatasetSpec(name="zs_shop", fields=AMAZON_WITH_META - {"item_brand"}))
        assert sorted(n for n in without if "_zeroshot_" in n) == [
            "p5_zs_shop_zeroshot_z_7", "p5_zs_shop_zeroshot_z_8", "p5_zs_shop_zeroshot_z_9"]
    finally:
        for name in [n for n in seqio.TaskRegistry.names() if n.startswith("p5_zs_shop_")]:
            seqio.TaskRegistry.remove(name)
        for name in [n for n in seqio.MixtureRegistry.names() if n.startswith("p5_zs_shop_")]:
            seqio.MixtureRegistry.remove(name)
        registration._REGISTERED.pop("zs_shop", None)  # noqa: SLF001  (test clean-up)
        registration._SPECS.pop("zs_shop", None)  # noqa: SLF001


# -- end to end on MovieLens-like data -------------------------------------------------------------
MOVIES = {  # ML-100K's first movies, as RecBole writes them: title, year, genres
    "1": ("Toy Story", "1995", "Animation Children's Comedy"),
    "2": ("GoldenEye", "1995", "Action Adventure Thriller"),
    "3": ("Four Rooms", "1995", "Thriller"),
    "4": ("Get Shorty", "1995", "Action Comedy Drama"),
    "5": ("Copycat", "1995", "Crime Drama Thriller"),
    "6": ("Shanghai Triad (Yao a yao yao dao waipo qiao)", "1995", "Drama"),
    "7": ("Twelve Monkeys", "1995", "Drama Sci-Fi"),
}
USERS = {"1": ("24", "M", "technician"), "2": ("53", "F", "other"), "3": ("23", "M", "writer"),
         "4": ("24", "M", "technician"), "5": ("33", "F", "other")}


def _write_ml_files(folder):
    folder.mkdir()
    inter = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    for u, user in enumerate(USERS, start=1):
        for step, item in enumerate(list(MOVIES)[u - 1:u + 4]):
            inter.append(f"{user}\t{item}\t{1 + (u + step) % 5}\t{880000000 + 1000 * u + step}")
    (folder / "ml-100k.inter").write_text("\n".join(inter) + "\n")
    items = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
    items += ["\t".join((i, *movie)) for i, movie in MOVIES.items()]
    (folder / "ml-100k.item").write_text("\n".join(items) + "\n")
    users = ["user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token"]
    users += ["\t".join((u, *user, "00000")) for u, user in USERS.items()]
    (folder / "ml-100k.user").write_text("\n".join(users) + "\n")


@pytest.fixture(scope="module")
def ml_root(tmp_path_factory):
    """'ml100k' prepared from MovieLens-format files under a temporary data root, and a tiny
    vocabulary, for the registered p5_ml100k_* tasks to read."""
    root = tmp_path_factory.mktemp("prepared")
    _write_ml_files(root / "raw")
    prepare.prepare_dataset(name="ml100k", out_root=root, source=root / "raw", fmt="recbole",
                            num_negatives=1, progress=False)
    titles = [movie[0] for movie in MOVIES.values()]
    model = vocabulary.train_sentencepiece(
        texts=prompts.vocabulary_texts() + titles + ["24-year-old male technician writer"],
        model_path=root / "tiny.model", vocab_size=400)
    with eval_data.tasks_read(root, model):
        yield root


def _test_reviews(root) -> dict:
    """(user_id, item_title) -> (rating, user_desc) of the prepared test reviews."""
    rows = tfds_builders.load(root=root, dataset="ml100k", kind="reviews", split="test")
    return {(r["user_id"].decode(), r["item_title"].decode()): (int(r["rating"]), r["user_desc"].decode())
            for r in rows.as_numpy_iterator()}


def _examples(task):
    ds = seqio.get_mixture_or_task(task).get_dataset(sequence_length=LENGTHS, split="test",
                                                     shuffle=False, seed=0)
    return [(ex["inputs_pretokenized"].decode(), ex["targets_pretokenized"].decode(), ex["inputs"])
            for ex in ds.as_numpy_iterator()]


def test_prepared_movielens_items_keep_their_titles(ml_root):
    manifest = json.loads((ml_root / "ml100k" / "manifest.json").read_text())
    assert manifest["fields"]["item_title"] and not manifest["fields"]["item_brand"]
    assert manifest["item_metadata"]["with_title"] == len(MOVIES) and manifest["item_metadata"]["with_price"] == 0


def test_z8_asks_like_or_dislike_about_the_test_movie(ml_root):
    reviews = _test_reviews(ml_root)
    examples = _examples("p5_ml100k_zeroshot_z_8")
    assert len(examples) == len(reviews) > 0
    for text, target, tokens in examples:
        user = text.split()[0][len("user_"):]
        title = re.search(r'" (.*) "', text).group(1)
        rating, _ = reviews[(user, title)]
        assert text == f'user_{user} has never seen " {title} " . Will this user like or dislike it ?'
        assert target == ("like" if rating >= 4 else "dislike")
        assert p5_tasks.VOCABULARY.decode(tokens[:-1].tolist()) == text


def test_z9_asks_the_demographic_user_for_a_star_rating(ml_root):
    reviews = _test_reviews(ml_root)
    examples = _examples("p5_ml100k_zeroshot_z_9")
    assert len(examples) == len(reviews)
    by_text = {}
    for (_user, title), (rating, desc) in reviews.items():
        by_text.setdefault(f'" {title} " is new to {desc} . Predict the star rating from 1 to 5 .', set()).add(
            str(rating))
    for text, target, _ in examples:
        assert target in by_text[text]
    assert any("year-old" in text for text, _, _ in examples)
