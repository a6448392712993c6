"""The world model contract: shapes, causality, action alignment, learning, collapse, checkpoints."""


import numpy as np
import pytest
import torch

import world_model
from world_model import CheckpointError, JEPALoss, LossConfig, WorldModel, WorldModelConfig
from world_model.encoder import Encoder, stem_strides
from world_model.monitors import (
    RIDGE_GRID,
    dimension_std,
    effective_rank,
    linear_probe,
    ridge_cv,
    rollout_error,
)
from world_model.probe import probe_report

B, SIZE, DIM, A = 8, 32, 32, 2
# off: every anti-collapse term, so only the latent prediction remains
PREDICTION_ONLY = dict(variance_weight=0, covariance_weight=0, motion_weight=0, inverse_dynamics_weight=0)


def tiny_config(**overrides) -> WorldModelConfig:
    sizes = dict(
        image_size=SIZE, action_dim=A, dim=DIM, stem_channels=8, encoder_width=32, encoder_depth=1,
        encoder_heads=2, predictor_width=32, predictor_depth=1, predictor_heads=2, representation="pooled",
    )
    return WorldModelConfig(**{**sizes, **overrides})


def squares(b: int, length: int, seed: int, size: int = SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """A reacher stand-in: a red square moved by the actions and a green square that never moves.

    Returns frames uint8 [b, length, size, size, 3] and actions [b, length-1, 2] in [-1, 1];
    actions[:, t] moves the red square from frame t to frame t+1.
    """
    g = torch.Generator().manual_seed(seed)
    pos = torch.rand(b, 2, generator=g) * 0.7 + 0.15
    target = torch.rand(b, 2, generator=g) * 0.7 + 0.15
    actions = torch.rand(b, length - 1, 2, generator=g) * 2 - 1
    path = [pos]
    for t in range(length - 1):
        pos = (pos + 0.12 * actions[:, t]).clamp(0.15, 0.85)
        path.append(pos)
    centres = torch.stack(path, 1) * size  # [b, length, 2] in pixels
    cells = torch.arange(size) + 0.5

    def box(c):  # centres [b, length, 2] -> bool [b, length, size, size], 6 px squares
        inside_x = (cells - c[..., 0:1]).abs() < 3
        inside_y = (cells - c[..., 1:2]).abs() < 3
        return inside_y[..., :, None] & inside_x[..., None, :]

    frames = torch.zeros(b, length, size, size, 3, dtype=torch.uint8)
    frames[..., 1] = box((target * size)[:, None].expand(b, length, 2)).to(torch.uint8) * 255
    frames[..., 0] = box(centres).to(torch.uint8) * 255
    return frames, actions


def train(model: WorldModel, loss_fn: JEPALoss, steps: int, seed: int, lr: float = 1e-3) -> list[float]:
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(list(model.parameters()) + loss_fn.trainable_parameters(), lr=lr)
    length = model.cfg.history + loss_fn.cfg.rollout_steps
    losses = []
    for step in range(steps):
        frames, actions = squares(B, length, seed=seed * 1000 + step)
        out = loss_fn(model, frames, actions)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        loss_fn.update_target(model)
        losses.append(out["loss"].item())
    return losses


def randomise_zero_init(module: torch.nn.Module) -> None:
    """AdaLN-zero starts every gate and the output at 0, which hides the attention pattern."""
    with torch.no_grad():
        for p in module.parameters():
            if p.abs().max() == 0:
                p.normal_(0, 0.2)


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize("representation, dim", [("pooled", DIM), ("tokens", 64 * 4)])
def test_encoder_shapes(representation, dim):
    cfg = tiny_config(representation=representation, token_dim=4)
    model = WorldModel(cfg)
    z = model.encode(torch.randint(0, 256, (2, 3, SIZE, SIZE, 3), dtype=torch.uint8))
    assert z.shape == (2, 3, dim) == (2, 3, cfg.latent_dim)


def test_encoder_tokens_are_what_the_head_reads():
    model = WorldModel(tiny_config(representation="tokens", token_dim=4))
    frames = torch.randint(0, 256, (2, 3, SIZE, SIZE, 3), dtype=torch.uint8)
    tokens = model.encoder.tokens(frames)
    assert tokens.shape == (6, 64, 32)  # [B*T, 8*8 cells, encoder_width]
    z = model.encoder.head(tokens).flatten(1).view(2, 3, -1)  # [B, T, 64 * token_dim]
    assert torch.equal(z, model.encode(frames))


@pytest.mark.parametrize("size, strides", [(32, [2, 2]), (64, [2, 2, 2]), (96, [3, 2, 2]), (128, [2, 2, 2, 2])])
def test_every_image_size_reaches_an_8x8_map(size, strides):
    assert stem_strides(size) == strides
    encoder = Encoder(image_size=size, dim=16, stem_channels=8, width=16, depth=1, heads=2)
    assert encoder.stem(torch.zeros(1, 3, size, size)).shape == (1, 16, 8, 8)


def test_encoder_rejects_bad_frames_with_a_clear_message():
    model = WorldModel(tiny_config())
    with pytest.raises(ValueError, match="uint8"):
        model.encode(torch.zeros(1, 1, SIZE, SIZE, 3))
    with pytest.raises(ValueError, match="built for 32x32"):
        model.encode(torch.zeros(1, 1, 64, 64, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="use 32, 64, 96 or 128"):
        WorldModelConfig(image_size=80)
    # sizes left unset (training takes them from the dataset) cannot build a model
    for name in ("image_size", "action_dim"):
        with pytest.raises(ValueError, match=f"world_model.{name}=None"):
            WorldModel(tiny_config(**{name: None}))


def test_predict_rollout_energy_shapes():
    model = WorldModel(tiny_config(history=3))
    z_hist, actions = torch.randn(B, 3, DIM), torch.randn(B, 5, A)
    assert model.predict(z_hist, torch.randn(B, 3, A)).shape == (B, DIM)
    assert model.rollout(z_hist, actions).shape == (B, 5, DIM)
    assert model.rollout(z_hist, actions, past_actions=torch.randn(B, 2, A)).shape == (B, 5, DIM)
    assert model.rollout(z_hist[:, -1:], actions).shape == (B, 5, DIM)  # fewer frames than history
    z_a, z_b = torch.randn(B, 4, 5, DIM), torch.randn(B, 4, 5, DIM)
    for metric in ("l2", "l1"):
        assert model.energy(z_a, z_b, metric=metric).shape == (B, 4, 5)
    assert torch.allclose(model.energy(z_a, z_b), (z_a - z_b).square().mean(-1))
    assert torch.allclose(model.energy(z_a, z_b, metric="l1"), (z_a - z_b).abs().mean(-1))
    assert model.energy(z_a, z_a).abs().max() == 0


def test_inputs_on_another_device_are_refused_clearly():
    model = WorldModel(tiny_config())
    with pytest.raises(ValueError, match="is on meta but the world model is on cpu"):
        model.encode(torch.zeros(1, 1, SIZE, SIZE, 3, dtype=torch.uint8, device="meta"))
    with pytest.raises(ValueError, match="actions is on meta"):
        model.rollout(torch.randn(1, 2, DIM), torch.zeros(1, 3, A, device="meta"))


# ---------------------------------------------------------------- predictor behaviour


def test_attention_over_time_is_causal():
    model = WorldModel(tiny_config(history=4))
    randomise_zero_init(model.predictor)
    z, actions = torch.randn(B, 4, DIM), torch.randn(B, 4, A)
    base = model.predictor(z, actions)
    z2, actions2 = z.clone(), actions.clone()
    z2[:, 2:] += 1.0
    actions2[:, 2:] += 1.0
    changed = model.predictor(z2, actions2)
    assert torch.equal(changed[:, :2], base[:, :2])  # steps before the change see nothing of it
    assert (changed[:, 2:] - base[:, 2:]).abs().min() > 0
    # and a change at step 0 does reach later steps, so the test above could fail
    z3 = z.clone()
    z3[:, 0] += 1.0
    assert (model.predictor(z3, actions)[:, 3] - base[:, 3]).abs().max() > 1e-3


def test_rollout_is_predict_with_a_sliding_window():
    model = WorldModel(tiny_config(history=2))
    randomise_zero_init(model.predictor)
    z_hist, actions, past = torch.randn(B, 2, DIM), torch.randn(B, 3, A), torch.randn(B, 1, A)
    rolled = model.rollout(z_hist, actions, past_actions=past)
    z1 = model.predict(z_hist, torch.cat([past, actions[:, :1]], 1))
    z2 = model.predict(torch.stack([z_hist[:, 1], z1], 1), actions[:, 0:2])
    z3 = model.predict(torch.stack([z1, z2], 1), actions[:, 1:3])
    assert torch.allclose(rolled, torch.stack([z1, z2, z3], 1), atol=1e-6)


def test_rollout_grows_a_short_history_window_like_forward():
    """history 3 started from one latent: the window grows 1 -> 2 -> 3 then slides; each step
    must equal the predictor's forward on that window (the rollout's cached path), gradients included."""
    model = WorldModel(tiny_config(history=3))
    randomise_zero_init(model.predictor)
    z0, actions = torch.randn(B, 1, DIM, requires_grad=True), torch.randn(B, 4, A)
    rolled = model.rollout(z0, actions)
    seq, expected = [z0[:, 0]], []
    for h in range(4):
        lo = max(0, h + 1 - 3)
        window = torch.stack(seq[lo:], 1)  # [B, n, D], n <= 3
        expected.append(model.predictor(window, actions[:, lo : h + 1])[:, -1])
        seq.append(expected[-1])
    assert torch.allclose(rolled, torch.stack(expected, 1), atol=1e-5)
    rolled[:, -1].sum().backward()
    assert z0.grad is not None and z0.grad.abs().sum() > 0


def test_predictor_learns_action_effects_and_rolls_them_out():
    """Latents that are a linear image of a point moved by the actions: after teacher-forced
    training the 3-step rollout must beat copying the last latent by far. A misaligned action
    index makes this impossible."""
    torch.manual_seed(0)
    k, horizon = 2, 3
    model = WorldModel(tiny_config(dim=16, history=k))
    embed = torch.randn(2, 16)

    def latents(b, seed):
        g = torch.Generator().manual_seed(seed)
        pos = torch.rand(b, 2, generator=g) * 2 - 1
        acts = torch.rand(b, k - 1 + horizon, A, generator=g) * 2 - 1
        path = [pos]
        for t in range(k - 1 + horizon):
            path.append(path[-1] + 0.3 * acts[:, t])
        return torch.stack(path, 1) @ embed, acts  # [b, k + horizon, 16], [b, k - 1 + horizon, A]

    opt = torch.optim.Adam(model.predictor.parameters(), lr=3e-3)
    for step in range(150):
        z, acts = latents(32, step)
        loss = (model.predictor(z[:, :k], acts[:, :k]) - z[:, 1 : k + 1]).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        z, acts = latents(256, seed=10_000)
        rolled = model.rollout(z[:, :k], acts[:, k - 1 :], past_actions=acts[:, : k - 1])
    error = (rolled - z[:, k:]).square().mean((0, 2))
    copy_last = (z[:, k - 1 : k] - z[:, k:]).square().mean((0, 2))
    assert (error / copy_last).max() < 0.05, (error / copy_last).tolist()


# ---------------------------------------------------------------- loss


def test_loss_reports_every_term_and_checks_the_batch():
    model = WorldModel(tiny_config())
    loss_fn = JEPALoss(LossConfig(smoothness_weight=0.1), model)
    frames, actions = squares(B, 5, seed=0)
    out = loss_fn(model, frames, actions)
    expected = {"loss", "prediction", "rollout", "variance", "covariance", "motion", "smoothness", "inverse_dynamics"}
    assert set(out) == expected
    assert all(v.ndim == 0 and torch.isfinite(v) for v in out.values())
    out["loss"].backward()
    assert model.encoder.stem[0].down[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="L = history \\+ rollout_steps = 5"):
        loss_fn(model, frames[:, :4], actions[:, :3])
    with pytest.raises(ValueError, match="actions must be \\[B, L-1, A\\]"):
        loss_fn(model, frames, actions[:, :3])


def test_barlow_and_ema_variants_train():
    model = WorldModel(tiny_config())
    loss_fn = JEPALoss(LossConfig(regularizer="barlow", ema_target=True, ema_momentum=0.5), model)
    assert not any(p is q for p in loss_fn.trainable_parameters() for q in loss_fn.target_encoder.parameters())
    before = [p.clone() for p in loss_fn.target_encoder.parameters()]
    losses = train(model, loss_fn, steps=3, seed=0)
    assert all(np.isfinite(losses))
    moved = [(p - b).abs().max() for p, b in zip(loss_fn.target_encoder.parameters(), before)]
    assert max(moved) > 0  # the EMA target followed the online encoder
    assert not any(p.requires_grad for p in loss_fn.target_encoder.parameters())


def test_loss_decreases_on_moving_squares():
    model = WorldModel(tiny_config())
    # Light regularisers: on this toy the inverse-dynamics and covariance terms at their reacher
    # weights (2.0, 1.0) dominate the total and need far more than 60 steps to move.
    loss = JEPALoss(LossConfig(covariance_weight=0.04, inverse_dynamics_weight=0.5), model)
    losses = train(model, loss, steps=60, seed=0)
    first, last = np.mean(losses[:10]), np.mean(losses[-10:])
    assert last < 0.9 * first, (first, last)


def centroid(frames: torch.Tensor, channel: int) -> torch.Tensor:
    """frames uint8 [b, L, S, S, 3] -> the pixel centre [b, L, 2] (x, y) of one channel's square."""
    mask = frames[..., channel].float()  # [b, L, S, S]
    cells = torch.arange(mask.shape[-1]) + 0.5
    total = mask.sum((-2, -1))
    return torch.stack([(mask.sum(-2) * cells).sum(-1) / total, (mask.sum(-1) * cells).sum(-1) / total], -1)


def test_probe_term_teaches_the_encoder_a_linear_readout():
    """The probe head reads the green square's place (a fact the prediction loss has no use for,
    since it never moves) off the latent: trained with the term, its held-out error falls from the
    targets' variance to a fraction of it, and its gradient reaches the encoder."""
    stats = (torch.full((2,), SIZE / 2), torch.full((2,), SIZE * 0.2))
    length = 2 + LossConfig().rollout_steps
    with pytest.raises(ValueError, match="probe targets"):
        JEPALoss(LossConfig(probe_weight=1.0), WorldModel(tiny_config()))
    torch.manual_seed(0)
    model = WorldModel(tiny_config())
    loss_fn = JEPALoss(LossConfig(**PREDICTION_ONLY, probe_weight=1.0), model, stats)
    held_frames, held_actions = squares(64, length, seed=999)
    held_probe = centroid(held_frames, 1)
    with pytest.raises(ValueError, match="probe targets of every frame"):
        loss_fn(model, held_frames, held_actions)
    with torch.no_grad():
        before = loss_fn(model, held_frames, held_actions, probe=held_probe)["probe"].item()
    only_probe = JEPALoss(LossConfig(prediction_weight=0, rollout_weight=0, **PREDICTION_ONLY, probe_weight=1.0),
                          model, stats)
    only_probe(model, *squares(B, length, seed=5), probe=centroid(squares(B, length, seed=5)[0], 1))["loss"].backward()
    assert model.encoder.stem[0].down[0].weight.grad.abs().sum() > 0
    model.zero_grad()
    opt = torch.optim.AdamW(list(model.parameters()) + loss_fn.trainable_parameters(), lr=1e-3)
    for step in range(80):
        frames, actions = squares(B, length, seed=step)
        out = loss_fn(model, frames, actions, probe=centroid(frames, 1))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    with torch.no_grad():
        after = loss_fn(model, held_frames, held_actions, probe=held_probe)["probe"].item()
    assert after < 0.3 * before, (before, after)


def test_probe_rollout_term_grades_the_predictor_in_the_probes_units():
    stats = (torch.full((2,), SIZE / 2), torch.full((2,), SIZE * 0.2))
    with pytest.raises(ValueError, match="set probe_weight too"):
        LossConfig(probe_rollout_weight=1.0)
    model = WorldModel(tiny_config())
    length = 2 + LossConfig().rollout_steps
    frames, actions = squares(B, length, seed=3)
    red = centroid(frames, 0)  # the moved square: what the predictor must foresee
    only = dict(prediction_weight=0, rollout_weight=0, **PREDICTION_ONLY)
    graded = JEPALoss(LossConfig(**only, probe_weight=1e-9, probe_rollout_weight=1.0), model, stats)
    out = graded(model, frames, actions, probe=red)
    expected = (graded.probe_head(model.rollout(model.encode(frames)[:, :2], actions[:, 1:], past_actions=actions[:, :1]))
                - (red[:, 2:] - stats[0]) / stats[1]).square().mean()
    assert torch.allclose(out["probe_rollout"], expected, rtol=1e-4)
    out["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.predictor.parameters())


def test_prediction_alone_collapses_and_vicreg_prevents_it():
    """Measured on this data (60 steps, seeds 0-7): a fresh encoder maps these mostly black frames
    to nearly one point (per-dimension std 0.020-0.035). Prediction alone, with stop-gradient
    targets, shrinks that further (to 0.010-0.015, 0.4-0.77x) while VICReg grows it to 0.48-0.80.
    Effective rank does not separate the two here: it is scale-free, the shrinking latent keeps
    its random directions (rank 11-16 of 32) and the VICReg latent spreads over the scene's few
    factors (rank 1.7-2.8). So the assertions are on the std; the ranks are reported on failure."""
    test_frames, _ = squares(64, 5, seed=999)
    results = {}
    vicreg = dict(motion_weight=0, inverse_dynamics_weight=0)
    for name, weights in (("prediction_only", PREDICTION_ONLY), ("vicreg", vicreg)):
        torch.manual_seed(0)
        model = WorldModel(tiny_config())
        with torch.no_grad():
            initial = dimension_std(model.encode(test_frames).flatten(0, 1))
        train(model, JEPALoss(LossConfig(**weights), model), steps=60, seed=0)
        with torch.no_grad():
            z = model.encode(test_frames).flatten(0, 1)  # [64 * 5, D]
        results[name] = dict(initial=initial, std=dimension_std(z), rank=effective_rank(z))
    collapsed, kept = results["prediction_only"], results["vicreg"]
    assert collapsed["std"] < 0.9 * collapsed["initial"], results
    assert kept["std"] > 0.2 and kept["std"] > 10 * collapsed["std"], results


# ---------------------------------------------------------------- monitors


def test_collapse_monitors():
    g = torch.Generator().manual_seed(0)
    line = torch.randn(500, 1, generator=g) * torch.randn(1, 16, generator=g)  # every sample on one direction
    assert effective_rank(line) == pytest.approx(1.0, abs=1e-3)
    assert effective_rank(torch.randn(2000, 16, generator=g)) > 14
    assert dimension_std(torch.ones(10, 4)) == 0


def test_linear_probe_scores_what_is_linearly_there():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(600, 8, generator=g)
    y = torch.stack([z[:, 0] * 2 + z[:, 3], torch.randn(600, generator=g)], 1)  # decodable, pure noise
    r2 = linear_probe(z[:400], y[:400], z[400:], y[400:])
    assert r2[0] > 0.999 and r2[1] < 0.05


def test_ridge_cv_shrinks_when_rows_are_few_and_features_many():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(260, 200, generator=g)  # nearly as many features as training rows
    y = (z[:, :1] + 2.0 * torch.randn(260, 1, generator=g))  # one weak signal in heavy noise
    chosen = ridge_cv(z[:200], y[:200])
    assert chosen > RIDGE_GRID[0]  # the weakest ridge fits the noise
    cv = linear_probe(z[:200], y[:200], z[200:], y[200:])
    weakest = linear_probe(z[:200], y[:200], z[200:], y[200:], ridge=RIDGE_GRID[0])
    assert cv[0] > weakest[0] + 0.1
    # plenty of clean rows: no shrinkage needed, the smallest ridges score alike and one is picked
    clean = torch.randn(2000, 4, generator=g)
    assert ridge_cv(clean, clean[:, :1] * 3) <= 1e-2


def test_rollout_error_has_one_value_per_step():
    model = WorldModel(tiny_config())
    frames, actions = squares(4, 6, seed=0)
    errors = rollout_error(model, frames, actions)
    assert errors["model"].shape == errors["copy_last"].shape == (4,)
    # the predictor starts as the identity, so at initialisation it is the copy-last baseline
    assert torch.allclose(errors["model"], errors["copy_last"])


def test_probe_report_scores_each_target_and_group_by_the_names_it_is_given():
    """The probe knows no env: targets [N, K] and their grouped names come from the dataset."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(700, 8, generator=g)
    y = torch.stack([z[:, 0] * 2 + z[:, 3], z[:, 1] - z[:, 2], 0.5 * torch.randn(700, generator=g)], 1).numpy()
    groups = {"pose": ["a", "b"], "noise": ["c"]}
    report = probe_report(z[:500], y[:500], z[500:], y[500:], groups)
    assert report["probe_r2_a"] > 0.999 and report["probe_r2_b"] > 0.999 and report["probe_r2_c"] < 0.05
    assert report["probe_r2_pose"] == pytest.approx((report["probe_r2_a"] + report["probe_r2_b"]) / 2)
    assert report["probe_r2_noise"] == report["probe_r2_c"]
    assert report["probe_r2"] == pytest.approx((report["probe_r2_a"] + report["probe_r2_b"] + report["probe_r2_c"]) / 3)
    assert report["probe_rmse_pose"] < 0.01 and report["probe_rmse_noise"] == pytest.approx(0.5, rel=0.2)  # target units
    assert report["probe_ridge"] in RIDGE_GRID
    with pytest.raises(ValueError, match="3 probe targets but 2 names"):
        probe_report(z[:500], y[:500], z[500:], y[500:], {"pose": ["a", "b"]})


# ---------------------------------------------------------------- configs and checkpoints


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = WorldModel(tiny_config())
    randomise_zero_init(model.predictor)
    loss_fn = JEPALoss(LossConfig(), model)
    opt = torch.optim.AdamW(list(model.parameters()) + loss_fn.trainable_parameters(), lr=1e-3)
    out = loss_fn(model, *squares(B, 5, seed=0))
    out["loss"].backward()
    opt.step()
    folder = tmp_path / "ckpt"
    world_model.save(folder, model, step=7, loss_fn=loss_fn, train_cfg={"lr": 1e-3}, optimizer=opt)
    next_draw = torch.rand(3)  # what the RNG gives right after saving; restoring must repeat it
    return folder, model, loss_fn, opt, next_draw


def test_checkpoint_round_trip_gives_identical_outputs(saved):
    folder, model, loss_fn, opt, next_draw = saved
    loaded = world_model.load(folder)
    assert not loaded.training and loaded.cfg == model.cfg
    frames, actions = squares(2, 5, seed=1)
    model.eval()
    with torch.no_grad():
        z, z_loaded = model.encode(frames), loaded.encode(frames)
        assert torch.equal(z, z_loaded)
        assert torch.equal(model.rollout(z[:, :2], actions[:, 1:]), loaded.rollout(z_loaded[:, :2], actions[:, 1:]))
    manifest = world_model.read_manifest(folder)
    assert manifest["step"] == 7 and manifest["train_config"] == {"lr": 1e-3}
    assert manifest["loss_config"]["rollout_steps"] == 3

    fresh_loss = JEPALoss(LossConfig(), loaded)
    fresh_opt = torch.optim.AdamW(list(loaded.parameters()) + fresh_loss.trainable_parameters(), lr=1e-3)
    assert world_model.load_training_state(folder, optimizer=fresh_opt, loss_fn=fresh_loss) == 7
    assert torch.equal(torch.rand(3), next_draw)
    for a, b in zip(fresh_loss.state_dict().values(), loss_fn.state_dict().values()):
        assert torch.equal(a, b)
    assert fresh_opt.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]


@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "delete"])
def test_damaged_weights_raise_checkpoint_error(saved, damage):
    folder = saved[0]
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    if damage == "flip_byte":
        data[len(data) // 2] ^= 0xFF
        weights.write_bytes(bytes(data))
    elif damage == "truncate":
        weights.write_bytes(bytes(data[:-100]))
    else:
        weights.unlink()
    expected = "is missing" if damage == "delete" else "changed or truncated"
    with pytest.raises(CheckpointError, match=f"model.safetensors.*{expected}"):
        world_model.load(folder)


def test_missing_manifest_raises_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint.json does not exist"):
        world_model.load(tmp_path)


# ---------------------------------------------------------------- numpy and bad input


def test_numpy_inputs_give_what_tensors_give():
    """What an env returns (numpy uint8 frames, float64 actions) goes straight into encode and rollout."""
    model = WorldModel(tiny_config()).eval()
    frames, actions = squares(2, 3, seed=0)  # [2, 3, 32, 32, 3], [2, 2, A]
    with torch.no_grad():
        z = model.encode(frames)  # [2, 3, D]
        assert torch.equal(model.encode(frames.numpy()), z)
        assert torch.equal(model.encode(frames.numpy()[:, ::-1]), model.encode(frames.flip(1)))  # a strided view
        rolled = model.rollout(z[:, :2], actions)  # [2, 2, D]
        for a in (actions.numpy(), actions.numpy().astype(np.float64), actions.double()):
            out = model.rollout(z[:, :2], a)
            assert out.dtype == torch.float32 and torch.equal(out, rolled)
        assert torch.equal(model.rollout(z[:, :2].numpy(), actions.numpy(), past_actions=np.zeros((2, 1, A))), rolled)


def test_bad_inputs_get_one_clear_error():
    model = WorldModel(tiny_config())
    z, actions = torch.randn(B, 2, DIM), torch.randn(B, 3, A)
    with pytest.raises(ValueError, match=r"z_hist must be \[B, K, D\].*got \(8, 32\)"):
        model.rollout(z[:, -1], actions)  # one latent per clip, without the time axis
    with pytest.raises(ValueError, match=r"z_hist must be \[B, K, D\].*got \(8, 2, 33\)"):
        model.rollout(torch.randn(B, 2, DIM + 1), actions)
    with pytest.raises(ValueError, match=r"actions must be \[B, H, A\] with B=8, H >= 1 and A=2, got \(8, 3, 3\)"):
        model.rollout(z, torch.randn(B, 3, A + 1))
    with pytest.raises(ValueError, match=r"frames must be uint8 \[B, T, H, W, 3\]"):
        model.encode(np.zeros((1, 1, SIZE, SIZE, 4), np.uint8))
    with pytest.raises(ValueError, match="frames is an empty batch"):
        model.encode(np.zeros((0, 1, SIZE, SIZE, 3), np.uint8))
    with pytest.raises(ValueError, match="z_hist is an empty batch"):
        model.rollout(z[:0], actions[:0])
    for bad in (float("nan"), float("inf"), -float("inf")):
        a = actions.clone()
        a[1, 2, 0] = bad
        with pytest.raises(ValueError, match=r"actions hold NaN or infinite values \(first at \[1, 2, 0\]\)"):
            model.rollout(z, a)
        with pytest.raises(ValueError, match="actions hold NaN or infinite values"):
            model.rollout(z, a.numpy().astype(np.float64))
    with pytest.raises(ValueError, match="past_actions hold NaN or infinite values"):
        model.rollout(z, actions, past_actions=torch.full((B, 1, A), float("nan")))


def test_load_given_a_file_of_the_checkpoint_uses_its_folder(saved, tmp_path):
    folder = saved[0]
    expected = world_model.load(folder).state_dict()
    for name in ("model.safetensors", "checkpoint.json", "training_state.pt"):
        loaded = world_model.load(folder / name).state_dict()
        assert all(torch.equal(loaded[k], expected[k]) for k in expected), name
    assert world_model.read_manifest(folder / "model.safetensors")["step"] == 7
    stray = tmp_path / "elsewhere" / "model.safetensors"  # a weights file copied out of its folder
    stray.parent.mkdir()
    stray.write_bytes((folder / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match=r"elsewhere/model.safetensors is a file and its folder holds no "
                                              r"checkpoint.json; pass the whole checkpoint folder"):
        world_model.load(stray)


@pytest.mark.parametrize("history,k", [(2, 2), (2, 1), (3, 1), (3, 2), (3, 3)])
def test_rollout_candidates_equal_rollouts_of_the_repeated_history(history, k):
    """What a history's candidates share is computed once; each candidate's rollout must still be
    rollout's on that history (gradients to the actions included: the gradient planner uses them)."""
    model = WorldModel(tiny_config(history=history))
    randomise_zero_init(model.predictor)
    n, horizon = 5, 4
    z_hist, past = torch.randn(B, k, DIM), torch.randn(B, k - 1, A)
    actions = torch.randn(B, n, horizon, A, requires_grad=True)
    shared = model.rollout_candidates(z_hist, actions, past_actions=past)
    assert shared.shape == (B, n, horizon, DIM)
    each = model.rollout(z_hist.repeat_interleave(n, 0), actions.reshape(B * n, horizon, A),
                         past_actions=past.repeat_interleave(n, 0)).reshape(B, n, horizon, DIM)
    assert torch.allclose(shared, each, atol=1e-5)
    assert (shared[:, 0] - shared[:, 1]).abs().max() > 1e-3  # candidates differ, so the check could fail
    (grad,) = torch.autograd.grad(shared[:, :, -1].sum(), actions)
    (expected,) = torch.autograd.grad(each[:, :, -1].sum(), actions)
    assert torch.allclose(grad, expected, atol=1e-5)


def test_rollout_candidates_refuses_a_flat_action_batch():
    model = WorldModel(tiny_config(history=2))
    with pytest.raises(ValueError, match=r"actions must be \[B, N, H, A\]"):
        model.rollout_candidates(torch.randn(B, 2, DIM), torch.randn(B, 4, A))
