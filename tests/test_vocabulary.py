"""SentencePiece training (deterministic, digit-split ids), overrides, whole-word ids."""
import numpy as np
import pytest
import sentencepiece as spm

from p5_jax import vocabulary
from p5_tasks import prompts

TEXTS = prompts.vocabulary_texts() + ["a good guitar strap for the price", "the sound is clear"]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return vocabulary.train_sentencepiece(
        texts=TEXTS, model_path=tmp_path_factory.mktemp("spm") / "a.model", vocab_size=300)


def _vocab(path):
    return vocabulary.LazySentencePieceVocabulary(lambda: path)


def test_training_is_reproducible(model_path, tmp_path):
    again = vocabulary.train_sentencepiece(texts=TEXTS, model_path=tmp_path / "b.model",
                                           vocab_size=300)
    assert again.read_bytes() == model_path.read_bytes()


def test_special_ids_and_digit_split(model_path):
    vocab = _vocab(model_path)
    assert (vocab.pad_id, vocab.eos_id, vocab.unk_id) == (0, 1, 2)
    assert vocab.tokenizer.bos_id() == -1
    pieces = [vocab.tokenizer.id_to_piece(i) for i in vocab.encode("item_12345")]
    assert pieces[-5:] == ["1", "2", "3", "4", "5"]
    assert vocab.decode(vocab.encode("user_7 bought item_12 -> item_3")) == \
        "user_7 bought item_12 -> item_3"


def test_lazy_vocabulary_resolves_only_when_used(model_path):
    calls = []
    vocab = vocabulary.LazySentencePieceVocabulary(lambda: calls.append(1) or model_path)
    assert calls == []
    vocab.encode("hello")
    vocab.encode("again")
    assert calls == [1]


def test_sentencepiece_file_override(model_path, tmp_path):
    other = vocabulary.train_sentencepiece(texts=TEXTS[:50], model_path=tmp_path / "c.model",
                                           vocab_size=120)
    vocab = _vocab(model_path)
    size = vocab.vocab_size
    vocabulary.use_sentencepiece_file(other)
    try:
        assert vocab.sentencepiece_model_file == str(other)
        assert vocab.vocab_size == spm.SentencePieceProcessor(model_file=str(other)).get_piece_size()
        assert vocab.vocab_size != size
    finally:
        vocabulary.use_sentencepiece_file(None)
    assert vocab.vocab_size == size
    with pytest.raises(FileNotFoundError):
        vocabulary.use_sentencepiece_file(tmp_path / "missing.model")


def test_cached_model_is_reused_and_keyed_by_recipe(tmp_path):
    first = vocabulary.ensure_sentencepiece_model(root=tmp_path, vocab_size=120, datasets=(),
                                                  extra_texts=tuple(TEXTS))
    stamp = first.stat().st_mtime_ns
    again = vocabulary.ensure_sentencepiece_model(root=tmp_path, vocab_size=120, datasets=(),
                                                  extra_texts=tuple(TEXTS))
    assert again == first and again.stat().st_mtime_ns == stamp
    changed = vocabulary.ensure_sentencepiece_model(root=tmp_path, vocab_size=120, datasets=(),
                                                    extra_texts=tuple(TEXTS[1:]))
    assert changed != first and first.parent == tmp_path / "vocab"


def test_whole_word_ids_by_hand():
    # pieces: ▁item(start) _ 4 ▁,(start) ▁item(start) _ 7 </s> pad
    starts = np.zeros(10, dtype=bool)
    starts[[5, 7]] = True          # 5 = "▁item", 7 = "▁,"; 6 = "_", 3/4 = digits
    tokens = [5, 6, 3, 7, 5, 6, 4, 1, 0]
    ids = vocabulary.whole_word_ids(token_ids=tokens, word_starts=starts)
    np.testing.assert_array_equal(ids, [1, 1, 1, 2, 3, 3, 3, 0, 0])


def test_whole_word_ids_are_capped():
    starts = np.array([False, False, True])
    ids = vocabulary.whole_word_ids(token_ids=[2] * 600, word_starts=starts)
    assert ids.max() == vocabulary.MAX_WHOLE_WORD_ID and ids[510] == 511 and ids[0] == 1


def test_lazy_vocabulary_follows_the_prepared_root(tmp_path, monkeypatch):
    from p5_jax import paths as project_paths
    monkeypatch.delenv("P5_SPM_MODEL", raising=False)
    vocab = vocabulary.LazySentencePieceVocabulary(
        lambda: project_paths.prepared_root() / "vocab" / "model.model")
    monkeypatch.setenv("P5_DATA_DIR", str(tmp_path / "a"))
    assert vocab.sentencepiece_model_file == str(tmp_path / "a" / "vocab" / "model.model")
    monkeypatch.setenv("P5_DATA_DIR", str(tmp_path / "b"))
    assert vocab.sentencepiece_model_file == str(tmp_path / "b" / "vocab" / "model.model")


def _items_folder(root, name, item_ids):
    folder = root / name
    folder.mkdir(parents=True)
    lines = [f'{{"item_id": "{item}", "title": ""}}' for item in item_ids]
    (folder / "items.jsonl").write_text("\n".join(lines) + "\n")


def test_item_symbols_cover_every_dataset_once(tmp_path):
    _items_folder(tmp_path, "a", ["2-6-0", "10"])
    _items_folder(tmp_path, "b", ["10", "3"])
    assert vocabulary.item_symbols(tmp_path, ["a", "b"]) == [
        "\u2581item_10", "\u2581item_2-6-0", "\u2581item_3"]


def test_user_symbols_cover_every_dataset_once(tmp_path):
    for name, users in (("a", ["7", "12"]), ("b", ["12", "3"])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "users.jsonl").write_text(
            "".join(f'{{"user_id": "{user}", "user_desc": ""}}\n' for user in users))
    assert vocabulary.user_symbols(tmp_path, ["a", "b"]) == [
        "\u2581user_12", "\u2581user_3", "\u2581user_7"]


def test_item_tokens_make_each_item_one_piece(tmp_path):
    symbols = ["\u2581item_1", "\u2581item_12", "\u2581item_2-6-0"]
    path = vocabulary.train_sentencepiece(texts=TEXTS, model_path=tmp_path / "i.model",
                                          vocab_size=300, symbols=symbols)
    vocab = _vocab(path)
    assert [vocab.tokenizer.id_to_piece(3 + k) for k in range(3)] == symbols  # after specials
    pieces = lambda text: [vocab.tokenizer.id_to_piece(i) for i in vocab.encode(text)]  # noqa
    assert pieces("item_12") == ["\u2581item_12"]            # the longest symbol wins
    assert pieces("item_2-6-0 , item_1")[0] == "\u2581item_2-6-0"
    assert pieces("item_2-6-0 , item_1")[-1] == "\u2581item_1"
    assert pieces("item_99")[-2:] == ["9", "9"]              # an unknown item is still digits
    text = "user_7 bought item_12 -> item_2-6-0"
    assert vocab.decode(vocab.encode(text)) == text


def test_item_tokens_are_part_of_the_recipe(tmp_path):
    kwargs = dict(root=tmp_path, vocab_size=120, datasets=(), extra_texts=tuple(TEXTS))
    plain = vocabulary.ensure_sentencepiece_model(**kwargs)
    vocabulary.use_item_tokens(True)
    try:
        items = vocabulary.ensure_sentencepiece_model(**kwargs)
    finally:
        vocabulary.use_item_tokens(False)
    assert items != plain and "items_" in items.name and "items_" not in plain.name
    assert vocabulary.ensure_sentencepiece_model(**kwargs) == plain


def test_user_tokens_make_each_user_of_the_prepared_data_one_piece(tmp_path):
    _items_folder(tmp_path, "a", ["5"])
    (tmp_path / "a" / "users.jsonl").write_text('{"user_id": "275", "user_desc": ""}\n')
    (tmp_path / "a" / "manifest.json").write_text('{"name": "a", "fields": {}}')
    kwargs = dict(root=tmp_path, vocab_size=120, datasets=("a",), extra_texts=tuple(TEXTS))
    vocabulary.use_user_tokens(True)
    try:
        users = vocabulary.ensure_sentencepiece_model(**kwargs)
    finally:
        vocabulary.use_user_tokens(False)
    plain = vocabulary.ensure_sentencepiece_model(**kwargs)
    assert users != plain and "users_" in users.name and "users_" not in plain.name
    pieces = lambda path, text: [_vocab(path).tokenizer.id_to_piece(i)  # noqa: E731
                                 for i in _vocab(path).encode(text)]
    assert pieces(users, "user_275 ?")[0] == "\u2581user_275"
    assert pieces(plain, "user_275")[-3:] == ["2", "7", "5"]
    assert pieces(users, "user_276")[-3:] == ["2", "7", "6"]   # an unknown user is still digits
