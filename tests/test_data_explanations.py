"""Sentence splitting and explanation choice on hand-written reviews."""
from p5_jax.data.explanations import Explanation, FeatureLexicon, extract_explanation, split_sentences

LEXICON = FeatureLexicon(["sound", "strings", "price", "guitar sound", "Tuning Pegs"])


def test_split_handles_missing_spaces_and_keeps_decimals():
    text = "The product is quite affordable.I did not know.It costs 2.5 dollars!Buy it?  Yes\n\nok."
    assert split_sentences(text) == ["The product is quite affordable.", "I did not know.",
                                     "It costs 2.5 dollars!", "Buy it?", "Yes ok."]
    assert split_sentences("") == [] and split_sentences("   ") == []


def test_most_frequent_feature_wins_then_earliest_sentence():
    text = "Nice price. The strings hum. Great sound overall. Sound again."
    assert extract_explanation(text=text, lexicon=LEXICON) == Explanation("sound", "Great sound overall.")


def test_multiword_features_and_word_boundaries():
    assert extract_explanation(text="New tuning pegs fit well.", lexicon=LEXICON) == \
        Explanation("tuning pegs", "New tuning pegs fit well.")
    # "soundly" and "pricey" are not the features "sound" and "price".
    assert extract_explanation(text="I slept soundly. Pricey though.", lexicon=LEXICON) == Explanation()


def test_no_feature_or_only_run_on_sentences_gives_empty():
    assert extract_explanation(text="Arrived on time.", lexicon=LEXICON) == Explanation()
    run_on = "the sound " + "and more " * 30
    assert extract_explanation(text=run_on, lexicon=LEXICON, max_words=40) == Explanation()
    assert extract_explanation(text=run_on, lexicon=LEXICON, max_words=100).feature == "sound"
