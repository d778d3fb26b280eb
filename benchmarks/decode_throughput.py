"""20-beam decoding throughput: our jitted beam search against transformers' generate().

Both models get identical random weights (ours exported with `p5_jax.hf_weights.save_hf_t5`) and
the same batch. Settings are chosen so both searches define the same beams: alpha = 0 here and
length_penalty = 0 there (raw log-probability ranking; the two penalties differ otherwise),
early_stopping=False, max_new_tokens = our max_decode_len. Prints the agreement of the returned
beams, both throughputs in sequences/s (returned beams per second) and, last,
`ratio_vs_hf_generate=X.XX`. Also times our search constrained to random item ids (a prefix
trie), P5's sequential-recommendation setting, which generate() has no jit-able counterpart for.
Before the ratio: the time XLA needs for the search's unavoidable matrix products alone
(`matmul_floor_s`, see matmul_floor.py) and `matmul_bound_ratio`, generate()'s time over that
floor: the ceiling for the ratio on this machine.

`--torch_device cuda` runs generate() on the GPU (for a GPU host where JAX uses it too); the
devices each side used are printed first.

    python benchmarks/decode_throughput.py [--size small|tiny] [--batch 8] [--repeats 2]
"""
from __future__ import annotations

import importlib.util

if importlib.util.find_spec("tensorflow") is not None:  # transformers may import it
    from p5_jax.tf_setup import quiet_tensorflow
    quiet_tensorflow()

import argparse
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from matmul_floor import beam_search_products, time_products

from p5_jax import hf_weights, models, network
from p5_jax.prefix_trie import PrefixTrie
from p5_jax.token_ids import EOS_ID

SIZES = {"small": network.t5_small_config, "tiny": network.tiny_config}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--input_length", type=int, default=64)
    parser.add_argument("--max_decode_len", type=int, default=8)
    parser.add_argument("--beams", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--eos_boost", type=float, default=6.0,
                        help="scales the eos embedding so that some beams finish early")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--torch_device", default="cpu",
                        help="device for generate(): cpu (default) or cuda")
    parser.add_argument("--trie_items", type=int, default=2000,
                        help="random item ids for the constrained run (0 skips it)")
    return parser.parse_args()


def random_model(args):
    config = SIZES[args.size](dropout_rate=0.0, whole_word_embeddings=0)
    model = models.EncoderDecoderModel(module=network.Transformer(config))
    params = nn.meta.unbox(model.init(jax.random.PRNGKey(0), batch_size=1,
                                      input_length=args.input_length, target_length=4))
    params = params.get("params", params)
    params = dict(params)  # eos logits with a wider spread, so eos-ended beams occur
    params["token_embedder"] = params["token_embedder"].at[EOS_ID].multiply(args.eos_boost)
    return config, model, params


def random_inputs(args, vocab_size):
    rng = np.random.default_rng(0)
    tokens = rng.integers(3, vocab_size, size=(args.batch, args.input_length))
    lengths = rng.integers(args.input_length // 2, args.input_length + 1, size=args.batch)
    for row, length in enumerate(lengths):
        tokens[row, length - 1] = EOS_ID
        tokens[row, length:] = 0
    return tokens.astype(np.int32)


def interleaved_best_times(calls: dict, *, repeats: int) -> dict:
    """Fastest of `repeats` calls of each, taken in turn so that both face the same load."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - started)
    return {name: min(values) for name, values in times.items()}


def our_decoder(args, model, params, tokens, trie=None):
    """A no-argument call running our jitted beam search, returning numpy (tokens, scores)."""
    @jax.jit
    def predict(params, tokens, trie):
        return model.predict_batch(params, {"encoder_input_tokens": tokens},
                                   num_decodes=args.beams, alpha=0.0,
                                   max_decode_length=args.max_decode_len, prefix_trie=trie)

    device_tokens = jnp.asarray(tokens)

    def call():
        out_tokens, scores = jax.block_until_ready(predict(params, device_tokens, trie))
        return np.asarray(out_tokens), np.asarray(scores)

    return call


def random_item_trie(args, vocab_size):
    """Random 'item ids' of 2 to 6 tokens, like tokenised P5 item ids, and their trie."""
    rng = np.random.default_rng(1)
    items = [list(rng.integers(3, 400, size=rng.integers(2, 7))) + [EOS_ID]
             for _ in range(args.trie_items)]
    return items, PrefixTrie.from_sequences(items, vocab_size=vocab_size, eos_id=EOS_ID)


def hf_decoder(args, config, params, tokens):
    """(call returning generate()'s beams and scores, call for timing) on the same weights."""
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    device = torch.device(args.torch_device)
    with tempfile.TemporaryDirectory() as folder:
        hf_weights.save_hf_t5(folder=folder, config=config, params=params)
        hf_model = transformers.T5ForConditionalGeneration.from_pretrained(folder)
    hf_model = hf_model.to(device).eval()
    input_ids = torch.from_numpy(tokens.astype(np.int64)).to(device)
    name = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"{args.threads} threads")
    print(f"hf_torch_device={args.torch_device} ({name})", flush=True)
    settings = dict(attention_mask=(input_ids != 0).long(), num_beams=args.beams,
                    num_return_sequences=args.beams, max_new_tokens=args.max_decode_len,
                    length_penalty=0.0, early_stopping=False, do_sample=False,
                    decoder_start_token_id=0, eos_token_id=EOS_ID, pad_token_id=0)

    def timed_call():  # without the per-step scores, which only the agreement check needs
        with torch.no_grad():
            hf_model.generate(input_ids, **settings)

    def call():
        with torch.no_grad():
            output = hf_model.generate(input_ids, output_scores=True,
                                       return_dict_in_generate=True, **settings)
        sequences = output.sequences[:, 1:].cpu().numpy()  # drop the decoder start token
        padded = np.zeros((sequences.shape[0], args.max_decode_len), np.int32)
        padded[:, :sequences.shape[1]] = sequences
        shape = (args.batch, args.beams)
        scores = output.sequences_scores.cpu().numpy().reshape(shape)
        return padded.reshape(shape + (-1,)), scores

    return call, timed_call


def zero_after_eos(tokens):
    """generate() may fill the tail of a finished beam with eos; ours holds zeros there."""
    after_eos = np.cumsum(np.cumsum(tokens == EOS_ID, axis=-1), axis=-1) > 1
    return np.where(after_eos, 0, tokens)


def agreement(ours_tokens, ours_scores, hf_tokens, hf_scores):
    hf_tokens = zero_after_eos(hf_tokens)
    top1 = np.mean([np.array_equal(o[0], h[0]) for o, h in zip(ours_tokens, hf_tokens)])
    same_rank = np.mean(np.all(ours_tokens == hf_tokens, axis=-1))
    overlap = np.mean([len({tuple(t) for t in o} & {tuple(t) for t in h}) / len(o)
                       for o, h in zip(ours_tokens, hf_tokens)])
    score_gap = float(np.max(np.abs(ours_scores - hf_scores)))
    return top1, same_rank, overlap, score_gap


def main():
    args = parse_args()
    config, model, params = random_model(args)
    tokens = random_inputs(args, config.vocab_size)
    print(f"model={args.size} params={sum(x.size for x in jax.tree.leaves(params)):,} "
          f"batch={args.batch} input_length={args.input_length} beams={args.beams} "
          f"max_decode_len={args.max_decode_len}")
    device = jax.devices()[0]
    print(f"p5_jax_device={device.platform} ({device.device_kind})", flush=True)
    hf_checked, hf_timed = hf_decoder(args, config, params, tokens)
    calls = {"ours": our_decoder(args, model, params, tokens), "hf": hf_timed}
    if args.trie_items:
        items, trie = random_item_trie(args, config.vocab_size)
        calls["ours_constrained"] = our_decoder(args, model, params, tokens, trie)
    started = time.perf_counter()
    ours_tokens, ours_scores = calls["ours"]()
    print(f"ours: compile + first run {time.perf_counter() - started:.1f}s")
    hf_tokens, hf_scores = hf_checked()
    top1, same_rank, overlap, score_gap = agreement(ours_tokens, ours_scores, hf_tokens,
                                                    hf_scores)
    print(f"beams ending in eos: {np.mean(np.any(ours_tokens == EOS_ID, axis=-1)):.0%}")
    print(f"agreement: top-1 {top1:.0%}, same beam at same rank {same_rank:.0%}, "
          f"beam-set overlap {overlap:.0%}, max |score diff| {score_gap:.2e}")
    if args.trie_items:
        constrained_tokens, _ = calls["ours_constrained"]()
        valid = {tuple(item) for item in items}
        all_valid = all(tuple(t[:list(t).index(EOS_ID) + 1]) in valid
                        for t in constrained_tokens.reshape(-1, args.max_decode_len))
        print(f"constrained to {args.trie_items} item ids: all beams valid items: {all_valid}")
    seconds = interleaved_best_times(calls, repeats=args.repeats)
    returned = args.batch * args.beams
    for name, value in seconds.items():
        print(f"{name}: {value:.3f}s/batch, {returned / value:.1f} sequences/s")
    products = beam_search_products(config, batch=args.batch, input_length=args.input_length,
                                    beams=args.beams, steps=args.max_decode_len)
    floor = time_products(products, repeats=args.repeats)
    print(f"matmul_floor_s={floor:.3f} ({sum(p.flops for p in products) / 1e9:.1f} GFLOP of "
          f"matrix products) matmul_bound_ratio={seconds['hf'] / floor:.2f}")
    print(f"ratio_vs_hf_generate={seconds['hf'] / seconds['ours']:.2f}")


if __name__ == "__main__":
    main()
