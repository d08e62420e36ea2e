"""Tests for core/probe.py: learnability, loss, determinism, files, split. No LLM needed."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from core.base.errors import ModelMismatchError, UserError
from core.base.progress import Cancelled, CancelToken
from core.probes.config import ProbeConfig
from core.probes.files import load_probe, save_probe
from core.probes.linear import LinearProbe, TrainConfig, default_layer, fold_standardization, probe_loss, train_probe
from core.probes.training_set import build_training_set, split_by_generation, training_data_hash

H = 64


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of maximal runs of True."""
    out, start = [], None
    for i, m in enumerate(mask.tolist() + [False]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            out.append((start, i))
            start = None
    return out


def _example(h: np.ndarray, tok: np.ndarray, key: str, rng: np.random.Generator):
    """Spans over runs of positive tokens (label 1) and some runs of negatives (label 0)."""
    T = len(tok)
    span_ids = np.full(T, -1, np.int32)
    span_labels: list[int] = []
    for a, b in _runs(tok == 1):
        span_ids[a:b] = len(span_labels)
        span_labels.append(1)
    for a, b in _runs(tok == 0):
        if b - a >= 2 and rng.random() < 0.5:
            span_ids[a:b] = len(span_labels)
            span_labels.append(0)
    return h, tok.astype(np.int8), span_ids, np.array(span_labels, np.int8), key


def make_examples(n_gens: int, seed: int, shuffle_labels: bool = False, outlier_scale: float = 1.0, H: int = H):
    rng = np.random.default_rng(seed)
    w_star = np.random.default_rng(1234).normal(size=H)  # same direction for train and test
    gens = []
    for g in range(n_gens):
        T = int(rng.integers(20, 60))
        h = rng.normal(size=(T, H)).astype(np.float32)
        score = h @ w_star / math.sqrt(H) + 0.2 * rng.normal(size=T)
        tok = (score > 0.4).astype(np.int8)
        if shuffle_labels:
            tok = rng.permutation(tok)
        h[:, :4] *= outlier_scale  # residual-stream-like huge dimensions
        gens.append((h, tok, f"gen-{seed}-{g}"))
    # shuffled: permute labels across the whole set, not only within a generation
    if shuffle_labels:
        allt = rng.permutation(np.concatenate([t for _, t, _ in gens]))
        pos = 0
        for i, (h, t, k) in enumerate(gens):
            gens[i] = (h, allt[pos : pos + len(t)], k)
            pos += len(t)
    return [_example(h, t, k, rng) for h, t, k in gens]


def heldout_auc(probe: LinearProbe, examples) -> float:
    X = np.concatenate([e[0] for e in examples])
    y = np.concatenate([e[1] for e in examples])
    p = probe.predict(X)
    keep = y >= 0
    return roc_auc_score(y[keep], p[keep])


FAST = TrainConfig(epochs=None, min_steps=200)


@pytest.fixture(scope="module")
def data():
    train = make_examples(240, seed=1)
    test = make_examples(80, seed=2)
    return build_training_set(train), train, test


@pytest.fixture(scope="module")
def trained(data):
    ts, _, _ = data
    return train_probe(ts, FAST)


# --------------------------------------------------------------------------- basics


def test_default_layer():
    assert default_layer(32) == 30
    assert default_layer(30) == 28
    assert default_layer(80) == 76
    assert default_layer(20) == 19
    assert default_layer(1) == 0
    with pytest.raises(UserError):
        default_layer(0)


def test_predict_shapes_and_types():
    probe = LinearProbe.from_weights(torch.arange(H, dtype=torch.float32) / H, torch.tensor([0.1]))
    h = np.random.default_rng(0).normal(size=(5, H)).astype(np.float16)
    p = probe.predict(h)
    assert isinstance(p, np.ndarray) and p.dtype == np.float32 and p.shape == (5,)
    p1 = probe.predict(h[2])
    assert p1.shape == () and abs(float(p1) - float(p[2])) < 1e-6
    pt = probe.predict(torch.from_numpy(h.astype(np.float32)))
    assert isinstance(pt, torch.Tensor) and pt.shape == (5,)
    assert probe(torch.zeros(3, 7, H)).shape == (3, 7)
    with pytest.raises(ModelMismatchError):
        probe.predict(np.zeros((2, H + 1), np.float32))


def test_build_training_set_remaps_spans_and_weights():
    h = np.zeros((4, 3), np.float32)
    ex1 = (h, np.array([1, 1, 0, -1]), np.array([0, 0, -1, -1]), np.array([1]), "a")
    ex2 = (h, np.array([0, 0, 1, 0]), np.array([1, -1, 0, -1]), np.array([1, 0]), "b")
    ts = build_training_set([ex1, ex2], span_weight=10.0)
    assert ts.span_ids.tolist() == [0, 0, -1, -1, 2, -1, 1, -1]
    assert ts.span_labels.tolist() == [1.0, 1.0, 0.0]
    assert ts.weights.tolist() == [10, 10, 1, 0, 10, 1, 10, 1]
    assert ts.gen_offsets.tolist() == [0, 4, 8]
    assert ts.gen_keys == ["a", "b"]
    assert ts.X.dtype == torch.float32 and ts.labels.dtype == torch.int8
    sub = ts.select([False, True])
    assert sub.gen_keys == ["b"] and sub.span_ids.tolist() == [1, -1, 0, -1]
    assert sub.span_labels.tolist() == [1.0, 0.0]
    # float16 caches stay float16 (converted per batch)
    ts16 = build_training_set([(h.astype(np.float16),) + ex1[1:]])
    assert ts16.X.dtype == torch.float16


def test_empty_and_single_class_errors():
    h = np.zeros((3, 4), np.float32)
    none = np.full(3, -1)
    sid = np.full(3, -1)
    with pytest.raises(UserError, match="no labelled tokens"):
        build_training_set([])
    with pytest.raises(UserError, match="no labelled tokens"):
        build_training_set([(h, none, sid, np.zeros(0), "a")])
    with pytest.raises(UserError, match=r"no hallucinated \(label 1\) tokens"):
        build_training_set([(h, np.zeros(3), sid, np.zeros(0), "a")])
    with pytest.raises(UserError, match=r"no supported/background \(label 0\) tokens"):
        build_training_set([(h, np.ones(3), sid, np.zeros(0), "a")])
    with pytest.raises(UserError, match="span id out of range"):
        build_training_set([(h, np.array([1, 0, 0]), np.array([0, -1, -1]), np.zeros(0), "a")])


# --------------------------------------------------------------------------- loss


def _bce(z: float, y: float) -> float:
    return -(y * math.log(1 / (1 + math.exp(-z))) + (1 - y) * math.log(1 - 1 / (1 + math.exp(-z))))


def test_probe_loss_matches_hand_computation():
    logits = torch.tensor([0.5, -1.0, 2.0, 0.3, -0.2, 1.5], requires_grad=True)
    labels = torch.tensor([1, 0, 1, -1, 1, 0], dtype=torch.float32)
    weights = torch.tensor([10, 1, 10, 10, 10, 1], dtype=torch.float32)
    # span 0: tokens 0 (label 1); span 1: tokens 2,3,4 (label 1); span 2: no tokens here;
    # span 3: token 5 but its label is negative -> excluded from span mean
    span_ids = torch.tensor([0, -1, 1, 1, 1, 3])
    span_labels = torch.tensor([1.0, 1.0, 0.0, -1.0])
    w = 0.25
    total, tok, span = probe_loss(logits, labels, weights, span_ids, span_labels, w)

    # token 3 is ignored (label -1) even though its weight says 10
    tok_hand = (10 * _bce(0.5, 1) + 1 * _bce(-1.0, 0) + 10 * _bce(2.0, 1) + 10 * _bce(-0.2, 1) + 1 * _bce(1.5, 0)) / 32
    span_hand = (_bce(0.5, 1) + _bce(2.0, 1)) / 2  # max over span 1 = 2.0
    assert tok.item() == pytest.approx(tok_hand, rel=1e-6)
    assert span.item() == pytest.approx(span_hand, rel=1e-6)
    assert total.item() == pytest.approx(0.75 * tok_hand + 0.25 * span_hand, rel=1e-6)

    # span-max gradient reaches only the max token of each span
    _, _, span2 = probe_loss(logits, labels, weights, span_ids, span_labels, 1.0)
    logits.grad = None
    span2.backward()
    g = logits.grad
    assert g[3].item() == 0.0 and g[4].item() == 0.0 and g[1].item() == 0.0 and g[5].item() == 0.0
    sig = lambda z: 1 / (1 + math.exp(-z))
    assert g[2].item() == pytest.approx((sig(2.0) - 1) / 2, rel=1e-6)
    assert g[0].item() == pytest.approx((sig(0.5) - 1) / 2, rel=1e-6)


def test_probe_loss_without_spans_or_weights_is_finite():
    logits = torch.tensor([0.1, 0.2], requires_grad=True)
    total, tok, span = probe_loss(
        logits, torch.tensor([-1.0, -1.0]), torch.ones(2), torch.tensor([-1, -1]), torch.zeros(0), 0.5
    )
    assert tok.item() == 0.0 and span.item() == 0.0
    total.backward()
    assert torch.all(logits.grad == 0)


# --------------------------------------------------------------------------- training


def test_learnable_signal_reaches_high_auc(data, trained):
    _, _, test = data
    probe, _ = trained
    assert heldout_auc(probe, test) > 0.95


def test_shuffled_labels_stay_at_chance():
    train = build_training_set(make_examples(240, seed=3, shuffle_labels=True))
    probe, _ = train_probe(train, FAST)
    auc = heldout_auc(probe, make_examples(120, seed=4, shuffle_labels=True))
    assert 0.4 < auc < 0.6


def test_w_schedule_and_history(trained):
    _, history = trained
    ws = [h["w"] for h in history]
    assert ws[0] == 0.0 and ws[-1] == 1.0
    assert all(b >= a for a, b in zip(ws, ws[1:]))
    assert [h["step"] for h in history] == list(range(1, len(history) + 1))
    assert len(history) >= 200  # auto epochs reach min_steps
    assert set(history[0]) >= {"step", "loss", "token_loss", "span_loss", "w"}
    first = np.mean([h["token_loss"] for h in history[:10]])
    last = np.mean([h["token_loss"] for h in history[-10:]])
    assert last < first


def test_same_seed_is_bit_identical_other_seed_differs(data, trained):
    ts, _, _ = data
    probe_a, _ = trained
    probe_b, _ = train_probe(ts, FAST)
    assert torch.equal(probe_a.linear.weight, probe_b.linear.weight)
    assert torch.equal(probe_a.linear.bias, probe_b.linear.bias)
    probe_c, _ = train_probe(ts, TrainConfig(epochs=2, seed=1))
    probe_d, _ = train_probe(ts, TrainConfig(epochs=2, seed=0))
    assert not torch.equal(probe_c.linear.weight, probe_d.linear.weight)


def test_fold_standardization_is_exact_on_raw_inputs():
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(H, generator=g, dtype=torch.float64) * 50
    std = torch.rand(H, generator=g, dtype=torch.float64) * 100 + 0.01
    w = torch.randn(H, generator=g)
    b = torch.randn(1, generator=g)
    x = torch.randn(100, H, generator=g, dtype=torch.float64) * std + mean
    inside = torch.sigmoid(((x - mean) / std) @ w.double() + b.double())
    fw, fb = fold_standardization(w, b, mean, std)
    folded = LinearProbe.from_weights(fw, fb).predict(x.float())
    assert torch.allclose(folded.double(), inside, atol=1e-5)


def test_standardization_handles_outlier_dimensions(tmp_path):
    train = make_examples(240, seed=5, outlier_scale=1000.0)
    test = make_examples(60, seed=6, outlier_scale=1000.0)
    ts = build_training_set(train)
    probe, _ = train_probe(ts, TrainConfig(min_steps=200, standardize=True))
    assert heldout_auc(probe, test) > 0.95
    # the saved probe is plain sigmoid(w·h+b) on raw states: identical after a round trip
    cfg = ProbeConfig(model_id="m", tokenizer_hash="t", layer=1, hidden_size=H)
    save_probe(tmp_path / "p", probe, cfg)
    loaded, _ = load_probe(tmp_path / "p")
    X = np.concatenate([e[0] for e in test])
    np.testing.assert_array_equal(loaded.predict(X), probe.predict(X))


def test_cancel_from_progress_callback(data):
    ts, _, _ = data
    token = CancelToken()
    seen = []

    def progress(stage, done, total, message=""):
        seen.append((stage, done, total, message))
        if done >= 10:
            token.cancel()

    with pytest.raises(Cancelled):
        train_probe(ts, FAST, progress=progress, cancel=token)
    assert seen and seen[0][0] == "train" and seen[0][3].startswith("loss ")
    assert seen[-1][1] < seen[-1][2]


def test_progress_reaches_total(data):
    ts, _, _ = data
    seen = []
    _, history = train_probe(ts, TrainConfig(epochs=1), progress=lambda *a: seen.append(a))
    assert seen[-1][1] == seen[-1][2] == len(history)


def test_config_span_weight_is_used(data):
    ts, _, _ = data
    a, _ = train_probe(ts, TrainConfig(epochs=1, span_weight=10.0))
    b, _ = train_probe(ts, TrainConfig(epochs=1, span_weight=1.0))
    assert not torch.equal(a.linear.weight, b.linear.weight)


def test_auto_epochs_respect_min_steps_and_cap(data):
    ts, _, _ = data
    per_epoch = math.ceil(ts.n_generations / 16)
    _, h = train_probe(ts, TrainConfig(min_steps=3 * per_epoch))
    assert len(h) == 3 * per_epoch and h[-1]["epoch"] == 3
    _, h = train_probe(ts, TrainConfig(min_steps=10_000, max_auto_epochs=2))
    assert h[-1]["epoch"] == 2


def test_training_restores_torch_threads(data):
    ts, _, _ = data
    before = torch.get_num_threads()
    train_probe(ts, TrainConfig(epochs=1, num_threads=1))
    assert torch.get_num_threads() == before


def test_batches_respect_token_cap(data):
    ts, _, _ = data
    _, hist_small = train_probe(ts, TrainConfig(epochs=1, max_batch_tokens=100))
    _, hist_big = train_probe(ts, TrainConfig(epochs=1))
    assert len(hist_small) > len(hist_big) == math.ceil(ts.n_generations / 16)


# --------------------------------------------------------------------------- files


def _config(**kw):
    base = dict(
        model_id="org/model-A",
        tokenizer_hash="abc123",
        layer=3,
        hidden_size=H,
        training_data_hash="h",
        metrics={"span_max": {"auc": 0.9}},
        train_config=TrainConfig().to_dict(),
    )
    base.update(kw)
    return ProbeConfig(**base)


def test_save_load_round_trip(tmp_path, trained):
    probe, _ = trained
    d = tmp_path / "probe"
    save_probe(d, probe, _config())
    assert sorted(p.name for p in d.iterdir()) == ["config.json", "probe.safetensors"]
    assert not [p for p in tmp_path.iterdir() if p.name != "probe"]  # no temp dirs left
    loaded, cfg = load_probe(d, expect_model_id="org/model-A", expect_tokenizer_hash="abc123", expect_hidden_size=H)
    x = np.random.default_rng(0).normal(size=(50, H)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x), probe.predict(x))
    assert cfg.to_dict() == _config(created_at=cfg.created_at).to_dict()
    assert cfg.created_at.endswith("Z") and cfg.format_version == 1
    raw = json.loads((d / "config.json").read_text())
    assert raw["hidden_size"] == H and raw["label_mapping"]["Not Supported"] == 1
    # overwriting an existing probe directory is allowed
    save_probe(d, LinearProbe.from_weights(torch.zeros(H), torch.zeros(1)), _config(version=2))
    assert load_probe(d)[1].version == 2


def test_load_mismatch_names_both_sides(tmp_path, trained):
    probe, _ = trained
    d = tmp_path / "probe"
    save_probe(d, probe, _config())
    with pytest.raises(ModelMismatchError) as e:
        load_probe(d, expect_model_id="org/model-B", expect_hidden_size=H)
    assert "'org/model-A'" in str(e.value) and "'org/model-B'" in str(e.value)
    with pytest.raises(ModelMismatchError) as e:
        load_probe(d, expect_model_id="org/model-B", expect_hidden_size=576)
    msg = str(e.value)
    assert msg == (
        "probe was trained on model 'org/model-A' (hidden size 64) "
        "but the loaded model is 'org/model-B' (hidden size 576)"
    )
    with pytest.raises(ModelMismatchError, match="hidden size 32"):
        load_probe(d, expect_hidden_size=32)
    with pytest.raises(ModelMismatchError, match="tokenizer"):
        load_probe(d, expect_tokenizer_hash="zzz")


def test_load_missing_or_broken(tmp_path, trained):
    probe, _ = trained
    missing = tmp_path / "nope"
    with pytest.raises(UserError, match=str(missing)):
        load_probe(missing)
    d = tmp_path / "p"
    save_probe(d, probe, _config())
    (d / "probe.safetensors").unlink()
    with pytest.raises(UserError, match="probe.safetensors"):
        load_probe(d)
    d2 = tmp_path / "p2"
    save_probe(d2, probe, _config())
    cfg = json.loads((d2 / "config.json").read_text())
    cfg["hidden_size"] = 65
    (d2 / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="inconsistent"):
        load_probe(d2)


def test_save_refuses_foreign_directory(tmp_path, trained):
    probe, _ = trained
    d = tmp_path / "stuff"
    d.mkdir()
    (d / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="not a probe directory"):
        save_probe(d, probe, _config())
    assert (d / "notes.txt").read_text() == "keep me"
    with pytest.raises(UserError, match="hidden size"):
        save_probe(tmp_path / "x", probe, _config(hidden_size=H + 1))
    empty = tmp_path / "empty"
    empty.mkdir()
    save_probe(empty, probe, _config())
    assert load_probe(empty)[1].model_id == "org/model-A"


# --------------------------------------------------------------------------- split + hash


def test_split_by_generation_is_stable_and_respects_fraction():
    keys = [f"k{i}" for i in range(10_000)]
    split = split_by_generation(keys, 0.2)
    assert abs(sum(split) / len(keys) - 0.2) < 0.02
    rev = split_by_generation(keys[::-1], 0.2)[::-1]
    assert rev == split
    # a key's side does not depend on the others
    assert split_by_generation(keys[:7], 0.2) == split[:7]
    assert split_by_generation(keys, 0.0) == [False] * len(keys)
    assert split_by_generation(keys, 0.2, salt="other") != split
    for bad in (1.0, -0.1, float("nan"), 2):
        with pytest.raises(UserError):
            split_by_generation(keys, bad)


def test_training_data_hash_is_order_independent():
    a = [("x", np.array([0, 1, -1])), ("y", np.array([1]))]
    b = list(reversed(a))
    assert training_data_hash(a) == training_data_hash(b)
    assert training_data_hash(a) != training_data_hash([("x", np.array([0, 1, 0])), ("y", np.array([1]))])
    assert len(training_data_hash([])) == 64
