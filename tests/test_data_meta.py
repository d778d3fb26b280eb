"""Amazon item metadata (--meta): the McAuley reader, bad lines by file and line, and titles,
brands and prices reaching items.jsonl, review records and the manifest for amazon and
p5_sequential sources."""
import gzip
import json
import pathlib

import pytest

from p5_jax.data import prepare, readers_meta, tfds_builders
from p5_jax.data.errors import BadLinePolicy, DataError
from p5_jax.data.readers_amazon import read_amazon, read_metadata

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "data"

# McAuley 2014 format: one Python literal a line (single quotes), as in meta_Musical_Instruments.
AMAZON_META = [
    "{'asin': 'I1', 'title': 'Pop filter &amp; mount', 'price': 12.5, 'imUrl': "
    "'http://ecx.images-amazon.com/images/I/41.jpg', 'related': {'also_bought': ['I2', 'I9'], "
    "'bought_together': ['I2']}, 'salesRank': {'Musical Instruments': 2412}, 'brand': 'Acme', "
    "'categories': [['Musical Instruments', 'Microphones & Accessories', 'Pop Filters'], "
    "['Electronics']]}",
    "{'asin': 'I2', 'title': 'Guitar strings', 'price': 6.0, 'categories': [['Musical Instruments']]}",
    "{'asin': 'I4', 'description': \"A player's tuner\", 'title': 'Clip tuner', 'brand': 'Snark', "
    "'price': 9}",
    "{'asin': 'I99', 'title': 'An item no review mentions', 'brand': 'Nobody', 'price': 1.0}",
]
# P5's processed Toys/Beauty datamaps map their ids to ASINs; the fixture's are X1..X6.
SEQUENTIAL_META = [
    "{'asin': 'X1', 'title': 'Wooden train set', 'brand': 'Brio', 'price': 39.99, "
    "'categories': [['Toys & Games', 'Trains']]}",
    "{'asin': 'X2', 'title': 'Jigsaw puzzle', 'brand': 'Ravensburger', 'price': 14.0}",
    "{'asin': 'X5', 'title': 'Kite', 'price': 8.25}",
]


def _write(path, lines, *, gzipped=False) -> pathlib.Path:
    text = "\n".join(lines) + "\n"
    if gzipped:
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    return path


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _reviews(root, name):
    return [{k: (v.decode() if isinstance(v, bytes) else v) for k, v in row.items()}
            for split in ("train", "validation", "test")
            for row in tfds_builders.load(root=root, dataset=name, kind="reviews", split=split)
            .as_numpy_iterator()]


# -- the reader ----------------------------------------------------------------------------------
@pytest.mark.parametrize("gzipped", [False, True])
def test_reads_mcauley_2014_python_literal_lines(tmp_path, gzipped):
    path = _write(tmp_path / ("meta.json.gz" if gzipped else "meta.json"), AMAZON_META, gzipped=gzipped)
    meta = readers_meta.read_item_metadata(path, policy=BadLinePolicy())
    assert set(meta) == {"I1", "I2", "I4", "I99"}
    assert meta["I1"].title == "Pop filter & mount" and meta["I1"].brand == "Acme"
    assert meta["I1"].price == "12.50"
    assert meta["I1"].category == "Musical Instruments > Microphones & Accessories > Pop Filters"
    assert (meta["I2"].brand, meta["I2"].price) == ("", "6.00")
    assert (meta["I4"].title, meta["I4"].price, meta["I4"].category) == ("Clip tuner", "9.00", "")


def test_reads_2018_json_lines_and_keeps_only_wanted_items(tmp_path):
    lines = [json.dumps({"category": ["Toys & Games", "Puzzles"], "title": "Cube", "brand": "Rubik",
                         "price": "$12.99", "asin": "B1"}),
             json.dumps({"title": "Odd price", "price": ".a-box-inner{background-color:#fff}",
                         "asin": "B2"}),
             json.dumps({"title": "Cube again", "asin": "B1"}),
             "{'asin': 'B3', 'title': 'not wanted and never parsed' ,,, }"]
    path = _write(tmp_path / "meta.json", lines)
    meta = read_metadata(path, policy=BadLinePolicy(), items={"B1", "B2"})
    assert meta["B1"] == readers_meta.records.ItemMeta(title="Cube", brand="Rubik", price="12.99",
                                                       category="Toys & Games > Puzzles")
    assert meta["B2"].price == ""  # page-layout text is no price
    assert set(meta) == {"B1", "B2"}


@pytest.mark.parametrize("bad_line, field", [
    ("{'asin': 'I7', 'title': 'cut off", None),
    ("{'title': 'no asin', 'price': 3.0}", "asin"),
    ("{'asin': 'I7', 'title': ['a', 'list']}", "title"),
    ("{'asin': 'I7', 'price': -2.0}", "price"),
    ("{'asin': 'I7', 'categories': 'Toys'}", "categories"),
    ("['asin', 'I7']", None),
])
def test_a_bad_line_is_named_by_file_and_line(tmp_path, bad_line, field):
    path = _write(tmp_path / "meta.json", AMAZON_META[:2] + [bad_line] + AMAZON_META[2:])
    with pytest.raises(DataError) as info:
        readers_meta.read_item_metadata(path, policy=BadLinePolicy())
    assert (info.value.path, info.value.line, info.value.field) == (path, 3, field)
    assert str(info.value).startswith(f"{path}, line 3")
    policy = BadLinePolicy(skip=True)
    meta = readers_meta.read_item_metadata(path, policy=policy)
    assert policy.count == 1 and set(meta) == {"I1", "I2", "I4", "I99"}


def test_the_amazon_reader_reads_its_folder_metadata_through_the_same_parser():
    dataset = read_amazon(path=FIXTURES / "amazon", policy=BadLinePolicy())
    assert dataset.item_meta["I1"].price == "12.50" and dataset.item_meta["I2"].category == "Musical Instruments"


# -- prepare --meta --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def amazon_with_meta(tmp_path_factory):
    """The amazon fixture's reviews file alone (no folder metadata), prepared with --meta."""
    root = tmp_path_factory.mktemp("prepared")
    meta = _write(root / "meta_tiny.json.gz", AMAZON_META, gzipped=True)
    reviews_only = FIXTURES / "amazon" / "reviews_tiny.json"
    manifest = prepare.prepare_dataset(name="shop", out_root=root, source=reviews_only, fmt="amazon",
                                       meta=meta, num_negatives=2, progress=False)
    return root, manifest, meta


def test_amazon_items_and_reviews_carry_titles_brands_prices(amazon_with_meta):
    root, manifest, meta = amazon_with_meta
    items = {i["raw_id"]: i for i in _jsonl(root / "shop" / "items.jsonl")}
    assert (items["I1"]["title"], items["I1"]["brand"], items["I1"]["price"]) == \
        ("Pop filter & mount", "Acme", "12.50")
    assert items["I4"]["title"] == "Clip tuner" and items["I3"]["title"] == ""
    assert "I99" not in items
    reviews = _reviews(root, "shop")
    by_item = {r["item_id"]: r for r in reviews}
    first = by_item[items["I1"]["item_id"]]
    assert (first["item_title"], first["item_brand"], first["item_price"]) == \
        ("Pop filter & mount", "Acme", "12.50")
    assert all(manifest["fields"][f] for f in ("item_title", "item_brand", "item_price"))
    assert str(meta) in {f["path"] for f in manifest["source_files"]}
    assert manifest["item_metadata"] == {"items": 6, "with_title": 3, "with_brand": 2, "with_price": 3,
                                         "with_category": 2}


def test_p5_sequential_items_get_titles_through_datamaps_asins(tmp_path, capsys):
    meta = _write(tmp_path / "meta_toys.json", SEQUENTIAL_META)
    code = prepare.main(["--dataset", "toyseq", "--out_dir", str(tmp_path), "--source",
                         str(FIXTURES / "p5_sequential"), "--format", "p5_sequential", "--meta", str(meta),
                         "--num_negatives", "1"])
    assert code == 0
    manifest = json.loads((tmp_path / "toyseq" / "manifest.json").read_text())
    assert {k for k, v in manifest["fields"].items() if v} == {"item_title", "item_brand", "item_price"}
    items = {i["raw_id"]: i for i in _jsonl(tmp_path / "toyseq" / "items.jsonl")}
    assert (items["X1"]["title"], items["X1"]["brand"], items["X1"]["price"], items["X1"]["category"]) == \
        ("Wooden train set", "Brio", "39.99", "Toys & Games > Trains")
    assert items["X5"]["price"] == "8.25" and items["X3"]["title"] == ""
    assert "item_title" in capsys.readouterr().out  # the summary lists the new fields


def test_metadata_overrides_the_folder_metadata_field_by_field(tmp_path):
    dataset = read_amazon(path=FIXTURES / "amazon", policy=BadLinePolicy())
    meta = _write(tmp_path / "meta.json", ["{'asin': 'I1', 'title': 'Better title'}",
                                           "{'asin': 'I3', 'brand': 'Kyser Musical'}"])
    coverage = readers_meta.attach_metadata(dataset, meta, policy=BadLinePolicy())
    assert dataset.item_meta["I1"] == readers_meta.records.ItemMeta(title="Better title", brand="Acme",
                                                                    price="12.50")
    assert (dataset.item_meta["I3"].title, dataset.item_meta["I3"].brand) == ("Capo", "Kyser Musical")
    assert coverage["with_title"] == 3 and dataset.source_files[-1] == meta


def test_a_bad_metadata_line_stops_prepare_naming_file_and_line(tmp_path, capsys):
    meta = _write(tmp_path / "meta.json", SEQUENTIAL_META[:1] + ["{'asin': 'X2', 'price': 'cheap' "])
    code = prepare.main(["--dataset", "toyseq", "--out_dir", str(tmp_path / "out"), "--source",
                         str(FIXTURES / "p5_sequential"), "--format", "p5_sequential", "--meta", str(meta)])
    assert code == 2
    err = capsys.readouterr().err
    assert f"{meta}, line 2" in err and "nothing was written" in err
    assert not (tmp_path / "out" / "toyseq").exists()


def test_metadata_of_other_items_is_an_error(tmp_path):
    meta = _write(tmp_path / "meta.json", AMAZON_META)   # I1.. asins; the source has X1..X6
    with pytest.raises(DataError, match="none of the source's 6 items"):
        prepare.prepare_dataset(name="toyseq", out_root=tmp_path / "out", source=FIXTURES / "p5_sequential",
                                fmt="p5_sequential", meta=meta, progress=False)
