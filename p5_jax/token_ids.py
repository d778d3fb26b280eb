"""Ids of the special pieces of every SentencePiece model here (trained in `p5_jax.vocabulary`,
as T5's): decoding, scoring and item tries all end sequences with EOS_ID."""
PAD_ID = 0  # also the decoder's start token
EOS_ID = 1
UNK_ID = 2
