import json
import math
import struct

import numpy as np
import pytest

from ruvllm.errors import RuvllmError
from ruvllm.router import (
    CONTEXT_BINS,
    PARAM_NAMES,
    DefaultDecision,
    FastGRNNRouter,
    confidence_from_probs,
)


def f32(a):
    return np.asarray(a, dtype=np.float32)


def hand_router():
    """input_dim=2, hidden=2, rank=1 with hand-picked weights (see test_one_step_by_hand)."""
    r = FastGRNNRouter(2, input_dim=2, hidden=2, rank=1, confidence_threshold=0.0)
    p = r.params
    p["W"][:] = f32([[1, 0], [0, 0]])
    p["U1"][:] = f32([[1], [0]])
    p["U2"][:] = f32([[0, 1]])
    p["b_z"][:] = f32([-3, 0])
    p["b_h"][:] = f32([math.log(2) - 3, 0])
    p["zeta"][:] = 0.0
    p["nu"][:] = -math.log(3)
    p["W_model"][:] = f32([[1, 0], [0, 1]])
    p["b_model"][:] = f32([0, 0.45])
    p["W_ctx"][:] = 0.0
    p["b_ctx"][:] = f32([0, 0, 0, 1, 0])
    p["w_temp"][:] = f32([0, 1])
    p["b_temp"][:] = -1.0
    p["w_top_p"][:] = f32([2, 0])
    p["b_top_p"][:] = -1.1 + math.log(3)
    return r


def test_one_step_by_hand():
    # x = [1, 2], h_prev = [0.5, 2]
    # W x = [1, 0];  U = U1 U2 = [[0, 1], [0, 0]] so U h_prev = [2, 0];  pre = [3, 0]
    # z  = sigmoid(pre + b_z) = sigmoid([0, 0]) = [0.5, 0.5]
    # h~ = tanh(pre + b_h) = tanh([ln 2, 0]) = [(4-1)/(4+1), 0] = [0.6, 0]
    # sigmoid(zeta=0) = 0.5, sigmoid(nu=-ln 3) = 1/(1+3) = 0.25
    # coef = 0.5 * (1 - 0.5) + 0.25 = 0.5
    # h = z * h_prev + coef * h~ = [0.25 + 0.3, 1.0 + 0] = [0.55, 1.0]
    # model logits = h + [0, 0.45] = [0.55, 1.45]; p1 = 1 / (1 + e^-0.9) = 0.7109495
    # confidence = (0.7109495 - 0.5) * 2 = 0.421899
    # ctx logits = [0, 0, 0, 1, 0] -> bin 3 = 2048
    # temperature = 2 sigmoid(h[1] - 1) = 2 sigmoid(0) = 1.0
    # top_p = sigmoid(2 * 0.55 - 1.1 + ln 3) = sigmoid(ln 3) = 0.75
    r = hand_router()
    x, hp = f32([1, 2]), f32([0.5, 2])
    out = r.forward(x[None], hp[None])
    np.testing.assert_allclose(out.Z[0], [0.5, 0.5], atol=1e-6)
    np.testing.assert_allclose(out.Htilde[0], [0.6, 0.0], atol=1e-6)
    np.testing.assert_allclose(out.H[0], [0.55, 1.0], atol=1e-6)
    np.testing.assert_allclose(out.probs[0], [1 - 0.7109495, 0.7109495], atol=1e-6)
    np.testing.assert_allclose(out.temperature, [1.0], atol=1e-6)
    np.testing.assert_allclose(out.top_p, [0.75], atol=1e-6)

    d, h = r.decide(x, hp)
    np.testing.assert_allclose(h, [0.55, 1.0], atol=1e-6)
    assert d.model_index == 1 and d.model_name == "model_1"
    assert d.context_size == 2048 and d.context_index == 3
    assert d.temperature == pytest.approx(1.0, abs=1e-6)
    assert d.top_p == pytest.approx(0.75, abs=1e-6)
    assert d.confidence == pytest.approx(0.421899, abs=1e-5)
    assert d.used_default is False


def test_fresh_session_equals_zero_state():
    r = FastGRNNRouter(3, seed=4, confidence_threshold=0.0)
    x = np.random.default_rng(0).standard_normal(128).astype(np.float32)
    d0, h0 = r.decide(x)
    d1, h1 = r.decide(x, np.zeros(r.hidden, np.float32))
    np.testing.assert_array_equal(h0, h1)
    assert d0.probs == pytest.approx(d1.probs)


def test_decide_matches_batch_path_and_rows_are_independent():
    rng = np.random.default_rng(1)
    r = FastGRNNRouter(3, seed=2, confidence_threshold=0.0)
    for k in ("W_model", "W_ctx", "w_temp", "w_top_p"):
        r.params[k] *= 100  # make heads non-trivial
    X = rng.standard_normal((4, 128)).astype(np.float32)
    Hp = rng.standard_normal((4, r.hidden)).astype(np.float32)
    decs, H = r.decide_batch(X, Hp)
    for i in range(4):
        d, h = r.decide(X[i], Hp[i])
        np.testing.assert_allclose(h, H[i], rtol=1e-5, atol=1e-6)
        assert d.model_index == decs[i].model_index
        assert d.context_size == decs[i].context_size
        assert d.temperature == pytest.approx(decs[i].temperature, abs=1e-5)
        assert d.top_p == pytest.approx(decs[i].top_p, abs=1e-5)
        assert d.probs == pytest.approx(decs[i].probs, abs=1e-5)
        assert d.confidence == pytest.approx(decs[i].confidence, abs=1e-5)


def test_float32_is_preserved():
    r = FastGRNNRouter(2)
    X = np.random.default_rng(0).standard_normal((5, 128))  # float64 input
    out = r.forward(X)
    for a in (out.H, out.probs, out.ctx_probs, out.temperature, out.top_p):
        assert a.dtype == np.float32
    _, h = r.decide(X[0], out.H[0])
    assert h.dtype == np.float32
    g = r.backward(out, d_model_logits=np.ones((5, 2)), d_temperature=np.ones(5))
    assert all(v.dtype == np.float32 for v in g.values())


def test_param_count_defaults():
    r = FastGRNNRouter(2)
    H, D, rk, N, C = 48, 128, 8, 2, len(CONTEXT_BINS)
    expected = H * D + 2 * H * rk + 2 * H + 2 + (N * H + N) + (C * H + C) + 2 * (H + 1)
    assert r.param_count() == expected == 7451
    mask = np.zeros((H, D), bool)
    mask[:, :10] = True
    r.set_mask(mask)
    assert r.param_count() == expected - H * (D - 10)
    assert r.param_count(effective=False) == expected


# ---------------------------------------------------------------------- gradients


def _random_router(seed=0, n_models=3, input_dim=6, hidden=5, rank=2):
    r = FastGRNNRouter(n_models, input_dim=input_dim, hidden=hidden, rank=rank, seed=seed,
                       dtype=np.float64)
    rng = np.random.default_rng(seed + 100)
    for k, v in r.params.items():
        v[...] = rng.standard_normal(v.shape) * 0.7
    return r


def _fd_check(r, X, Hp, up, names=PARAM_NAMES, skip_masked=True):
    """Central differences of L = sum(up * outputs) against backward()."""
    Gm, Gc, gt, gp, Gh = up

    def L():
        o = r.forward(X, Hp)
        return (np.sum(Gm * o.model_logits) + np.sum(Gc * o.ctx_logits)
                + np.sum(gt * o.temperature) + np.sum(gp * o.top_p) + np.sum(Gh * o.H))

    grads = r.backward(r.forward(X, Hp), Gm, Gc, gt, gp, Gh, input_grads=True)
    eps = 1e-6
    for name in names:
        p = r.params[name]
        num = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            if name == "W" and skip_masked and not r.mask[idx]:
                continue
            old = p[idx]
            p[idx] = old + eps
            lp = L()
            p[idx] = old - eps
            lm = L()
            p[idx] = old
            num[idx] = (lp - lm) / (2 * eps)
        np.testing.assert_allclose(grads[name], num, rtol=1e-6, atol=1e-8, err_msg=name)
        assert np.abs(num).max() > 1e-4, f"{name}: degenerate check (gradient ~0)"
    return grads


def _upstream(rng, B, r):
    return (rng.standard_normal((B, r.n_models)), rng.standard_normal((B, len(r.context_bins))),
            rng.standard_normal(B), rng.standard_normal(B), rng.standard_normal((B, r.hidden)))


def test_backward_matches_finite_differences_every_param_group():
    rng = np.random.default_rng(7)
    r = _random_router()
    X = rng.standard_normal((4, r.input_dim))
    Hp = rng.standard_normal((4, r.hidden))
    up = _upstream(rng, 4, r)
    grads = _fd_check(r, X, Hp, up)
    assert set(PARAM_NAMES) <= set(grads)

    # Input gradients too (X and H_prev), which a multi-step unroll would chain through.
    Gm, Gc, gt, gp, Gh = up
    for which, arr in (("X", X), ("H_prev", Hp)):
        num = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            old = arr[idx]
            vals = []
            for e in (1e-6, -1e-6):
                arr[idx] = old + e
                o = r.forward(X, Hp)
                vals.append(np.sum(Gm * o.model_logits) + np.sum(Gc * o.ctx_logits)
                            + np.sum(gt * o.temperature) + np.sum(gp * o.top_p) + np.sum(Gh * o.H))
            arr[idx] = old
            num[idx] = (vals[0] - vals[1]) / 2e-6
        np.testing.assert_allclose(grads[which], num, rtol=1e-6, atol=1e-8, err_msg=which)


def test_backward_with_sparse_mask_zeroes_pruned_gradient():
    rng = np.random.default_rng(8)
    r = _random_router(seed=3)
    mask = rng.random((r.hidden, r.input_dim)) < 0.5
    r.set_mask(mask)
    assert (r.params["W"][~mask] == 0).all()
    X = rng.standard_normal((3, r.input_dim))
    Hp = rng.standard_normal((3, r.hidden))
    grads = _fd_check(r, X, Hp, _upstream(rng, 3, r), names=("W", "U1", "b_z"))
    assert (grads["W"][~mask] == 0).all()
    assert (grads["W"][mask] != 0).all()


def test_per_sample_squared_gradients_match_a_loop():
    rng = np.random.default_rng(9)
    r = _random_router(seed=5)
    B = 5
    X = rng.standard_normal((B, r.input_dim))
    Hp = rng.standard_normal((B, r.hidden))
    Gm, Gc, gt, gp, _ = _upstream(rng, B, r)
    got = r.backward(r.forward(X, Hp), Gm, Gc, gt, gp, per_sample_sq=True)
    want = {k: np.zeros_like(v) for k, v in r.params.items()}
    for i in range(B):
        gi = r.backward(r.forward(X[i:i + 1], Hp[i:i + 1]), Gm[i:i + 1], Gc[i:i + 1],
                        gt[i:i + 1], gp[i:i + 1])
        for k in want:
            want[k] += gi[k] ** 2
    for k in PARAM_NAMES:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-10, atol=1e-14, err_msg=k)
    # and it is not just the square of the summed gradient
    summed = r.backward(r.forward(X, Hp), Gm, Gc, gt, gp)
    assert not np.allclose(got["W"], summed["W"] ** 2)


# ---------------------------------------------------------------------- confidence / fallback


def test_confidence_scale():
    assert confidence_from_probs([0.5, 0.5]) == pytest.approx(0.0)
    assert confidence_from_probs([0.0, 1.0]) == pytest.approx(1.0)
    assert confidence_from_probs([0.2, 0.8]) == pytest.approx(0.6)
    assert confidence_from_probs([0.25, 0.25, 0.5]) == pytest.approx(0.25)  # (0.5-1/3)*3/2
    np.testing.assert_allclose(confidence_from_probs([[0.5, 0.5], [1, 0]]), [0, 1])


def test_confidence_threshold_fallback():
    r = hand_router()  # confidence 0.421899 on the hand example
    r.default = DefaultDecision(model_index=0, context_size=1024, temperature=0.7, top_p=0.9)
    x, hp = f32([1, 2]), f32([0.5, 2])

    d, h = r.decide(x, hp, confidence_threshold=0.5)
    assert d.used_default is True
    assert (d.model_index, d.model_name, d.context_size, d.context_index) == (0, "model_0", 1024, 2)
    assert (d.temperature, d.top_p) == (0.7, 0.9)
    assert d.confidence == pytest.approx(0.421899, abs=1e-5)  # still reported
    np.testing.assert_allclose(h, [0.55, 1.0], atol=1e-6)    # state still advances

    d, _ = r.decide(x, hp, confidence_threshold=0.4)
    assert d.used_default is False and d.model_index == 1 and d.context_size == 2048

    decs, _ = r.decide_batch(x[None], hp[None], confidence_threshold=0.5)
    assert decs[0].used_default is True and decs[0].model_index == 0

    # The router's own threshold applies when none is passed.
    r.confidence_threshold = 0.9
    assert r.decide(x, hp)[0].used_default is True


def test_untrained_router_falls_back_to_default():
    r = FastGRNNRouter(4, default={"model_index": 2, "context_size": 512, "temperature": 0.3,
                                   "top_p": 0.5})
    X = np.random.default_rng(0).standard_normal((20, 128)).astype(np.float32)
    decs, _ = r.decide_batch(X)
    assert all(d.used_default for d in decs)
    assert {(d.model_index, d.context_size, d.temperature, d.top_p) for d in decs} == {(2, 512, 0.3, 0.5)}
    # Temperature/top_p heads start at the defaults' values.
    out = r.forward(X)
    np.testing.assert_allclose(out.temperature, 0.3, atol=0.02)
    np.testing.assert_allclose(out.top_p, 0.5, atol=0.02)


def test_decision_to_dict_is_json_ready():
    d, _ = hand_router().decide(f32([1, 2]), f32([0.5, 2]))
    back = json.loads(json.dumps(d.to_dict()))
    assert back["model_index"] == 1 and back["context_size"] == 2048
    assert back["used_default"] is False and len(back["probs"]) == 2


# ---------------------------------------------------------------------- validation


@pytest.mark.parametrize("kwargs", [
    dict(n_models=0), dict(n_models=2, hidden=0), dict(n_models=2, rank=100),
    dict(n_models=2, model_names=["a"]), dict(n_models=2, model_names=["a", "a"]),
    dict(n_models=2, context_bins=[512, 256]), dict(n_models=2, default={"model_index": 5}),
    dict(n_models=2, default={"context_size": 1000}), dict(n_models=2, confidence_threshold=1.5),
    dict(n_models=2, dtype=np.float16),
])
def test_bad_config_is_22023(kwargs):
    n = kwargs.pop("n_models")
    with pytest.raises(RuvllmError) as e:
        FastGRNNRouter(n, **kwargs)
    assert e.value.sqlstate == "22023"


def test_bad_inputs_are_22023():
    r = FastGRNNRouter(2)
    x = np.zeros(128, np.float32)
    bad = [
        lambda: r.decide(np.zeros(127)),
        lambda: r.decide(np.full(128, np.nan)),
        lambda: r.decide(np.r_[np.inf, np.zeros(127)]),
        lambda: r.decide(x, np.zeros(5)),
        lambda: r.decide(x, np.full(48, np.nan)),
        lambda: r.decide_batch(np.zeros((2, 128)), np.zeros((3, 48))),
        lambda: r.forward(np.zeros((2, 64))),
        lambda: r.decide(x, confidence_threshold=-0.1),
    ]
    for f in bad:
        with pytest.raises(RuvllmError) as e:
            f()
        assert e.value.sqlstate == "22023"


# ---------------------------------------------------------------------- serialization


def _sparse_router():
    r = FastGRNNRouter(3, hidden=32, rank=4, model_names=["small", "mid", "large"], seed=11,
                       default=DefaultDecision(1, 2048, 0.5, 0.8), confidence_threshold=0.35)
    rng = np.random.default_rng(3)
    for v in r.params.values():
        v += rng.standard_normal(v.shape).astype(np.float32)
    r.set_mask(rng.random((32, 128)) < 0.3)
    return r


def _assert_same(a, b):
    assert a.config() == b.config()
    for k in PARAM_NAMES:
        assert a.params[k].dtype == b.params[k].dtype
        np.testing.assert_array_equal(a.params[k], b.params[k], err_msg=k)
    np.testing.assert_array_equal(a.mask, b.mask)
    X = np.random.default_rng(5).standard_normal((3, 128)).astype(np.float32)
    da, ha = a.decide_batch(X)
    db, hb = b.decide_batch(X)
    np.testing.assert_array_equal(ha, hb)
    assert [d.to_dict() for d in da] == [d.to_dict() for d in db]


def test_bytes_round_trip():
    r = _sparse_router()
    blob = r.to_bytes()
    r2 = FastGRNNRouter.from_bytes(blob)
    _assert_same(r, r2)
    assert r2.model_names == ["small", "mid", "large"]
    assert r2.default == DefaultDecision(1, 2048, 0.5, 0.8)
    assert r2.density == pytest.approx(r.density) and r.density < 0.5
    assert FastGRNNRouter.from_bytes(memoryview(blob)).to_bytes() == blob
    # Only the kept W entries are stored: the blob shrinks by 4 bytes per pruned weight.
    dense = r.copy()
    dense.reset_mask()
    assert len(dense.to_bytes()) - len(blob) == 4 * int((~r.mask).sum())
    r2.params["W"][0, 0] += 1  # loaded arrays are writable and owned
    assert r2.params["W"].flags.writeable


def test_dict_round_trip_through_json():
    r = _sparse_router()
    r2 = FastGRNNRouter.from_dict(json.loads(json.dumps(r.to_dict())))
    _assert_same(r, r2)
    _assert_same(r, FastGRNNRouter.from_dict(json.dumps(r.to_dict())))


def test_float64_round_trip_keeps_precision():
    r = _random_router()
    r2 = FastGRNNRouter.from_bytes(r.to_bytes())
    for k in PARAM_NAMES:
        np.testing.assert_array_equal(r.params[k], r2.params[k])
    assert r2.dtype == np.float64


def _reseal(blob):
    import zlib
    body = blob[:-4]
    return body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)


def test_mismatched_format_is_22023():
    r = FastGRNNRouter(2)
    blob = bytearray(r.to_bytes())
    struct.pack_into("<H", blob, 4, 99)  # format version field
    with pytest.raises(RuvllmError) as e:
        FastGRNNRouter.from_bytes(_reseal(bytes(blob)))
    assert e.value.sqlstate == "22023" and "version" in e.value.message and e.value.hint

    d = r.to_dict()
    for mutate in (
        lambda d: d.update(version=2),
        lambda d: d.update(format="something.else"),
        lambda d: d["params"].pop("U1"),
        lambda d: d["params"].update(W=[[0.0] * 128] * 47),
        lambda d: d["config"].update(hidden=32),
        lambda d: d["config"].pop("rank"),
        lambda d: d.update(mask="!!notbase64"),
        lambda d: d["params"].update(b_z=[float("nan")] * 48),
    ):
        dd = json.loads(json.dumps(d))
        mutate(dd)
        with pytest.raises(RuvllmError) as e:
            FastGRNNRouter.from_dict(dd)
        assert e.value.sqlstate == "22023"

    good = r.to_bytes()
    corrupt = bytearray(good)
    corrupt[len(good) // 2] ^= 0xFF
    for b in (b"", b"XXXX" + good[4:], bytes(corrupt), good[:-10], _reseal(good[:-10])):
        with pytest.raises(RuvllmError) as e:
            FastGRNNRouter.from_bytes(b)
        assert e.value.sqlstate == "22023"


def test_mask_shrink_and_reset():
    r = FastGRNNRouter(2)
    mask = np.zeros((48, 128), bool)
    mask[::2] = True
    before = r.params["W"].copy()
    r.set_mask(mask)
    assert r.density == 0.5
    assert (r.params["W"][~mask] == 0).all()
    np.testing.assert_array_equal(r.params["W"][mask], before[mask])
    r.reset_mask()
    assert r.density == 1.0 and (r.params["W"][~mask] == 0).all()
    c = r.copy()
    c.params["W"][0, 0] = 123.0
    assert r.params["W"][0, 0] != 123.0
