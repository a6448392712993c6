"""Videos of what the model imagines: the pixel decoder learns from frozen latents without touching
the encoder, frames hold real | imagined | goal, one per control step, the GIF fallback, and the
command that renders any record from the record alone."""

import json

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from conftest import TINY_MODEL, flip_last_byte
from PIL import Image

import envs
import world_model
from agent.configurator import Configurator, TaskSettings, build_planner
from agent.costs import build_cost
from agent.episode import run_episodes
from agent.goal_sources import FinalGoal
from agent.imagined import imagine_record
from agent.policies import PlanningPolicy, RandomPolicy
from agent.protocols import make_episodes
from agent.video import compose_frame, episode_frames, main, spread_frames, write_episode_video, write_video
from world_model.checkpoint import CheckpointError
from world_model.dataset import Dataset
from world_model.decoder import Decoder, DecoderConfig, load_decoder, save_decoder, score_decoder, train_decoder
from world_model.encoder import GRID
from world_model.ensemble import EnsembleConfig, PredictorEnsemble, save_ensemble
from world_model.latents import encode_episodes, episode_actions
from world_model.model import WorldModel, WorldModelConfig
from world_model.windows import split_episodes

CPU = torch.device("cpu")
FAST = DecoderConfig(width=16, steps=80, batch_size=16, lr=3e-3, horizon=3, eval_windows=16, held_out_fraction=0.34)


@pytest.fixture(scope="module")
def tiny_wm():
    torch.manual_seed(0)
    return WorldModel(WorldModelConfig(**TINY_MODEL, action_dim=2)).eval()  # 32 px, an 8x8 grid of 4 numbers


@pytest.fixture(scope="module")
def trained(tiny_data, tiny_wm):
    before = {k: v.clone() for k, v in tiny_wm.state_dict().items()}
    decoder, stats = train_decoder(tiny_wm, Dataset(tiny_data[2]), FAST, CPU, progress=False)
    return decoder, stats, before


def test_decoder_learns_from_frozen_latents_and_never_touches_the_encoder(tiny_data, tiny_wm, trained):
    decoder, stats, before = trained
    # not one number of the world model moved, and no gradient ever reached it
    assert all(torch.equal(before[k], v) for k, v in tiny_wm.state_dict().items())
    assert all(p.grad is None for p in tiny_wm.parameters())
    dataset = Dataset(tiny_data[2])
    _, held = split_episodes(dataset.num_episodes, FAST.held_out_fraction)
    z, actions = encode_episodes(tiny_wm, dataset, held, CPU), episode_actions(dataset, held, CPU)
    torch.manual_seed(FAST.seed)
    fresh = Decoder(tiny_wm.cfg.latent_dim, 32, (GRID, tiny_wm.cfg.token_dim), FAST)
    init = score_decoder(fresh, tiny_wm, z, actions, dataset, held, FAST)
    assert stats["held_out_mse"] < 0.5 * init["held_out_mse"]  # held-out frames, never trained on
    assert stats["held_out_psnr"] > init["held_out_psnr"] + 3
    assert len(stats["prediction_mse"]) == FAST.horizon
    assert all(m < init["held_out_mse"] for m in stats["prediction_mse"])  # the decoded rollouts too
    assert decoder.decode_uint8(z[0, :3]).shape == (3, 32, 32, 3)


def test_decoder_round_trips_and_refuses_altered_weights(tmp_path, trained):
    decoder, stats, _ = trained
    save_decoder(tmp_path / "d", decoder, stats, "f" * 64)
    again = load_decoder(tmp_path / "d")
    z = torch.randn(2, decoder.latent_dim)
    assert torch.equal(again(z), decoder(z)) and again(z).shape == (2, 32, 32, 3)
    assert json.loads((tmp_path / "d" / "decoder.json").read_text())["stats"]["held_out_mse"] == stats["held_out_mse"]
    weights = tmp_path / "d" / "decoder.safetensors"
    flip_last_byte(weights)
    with pytest.raises(CheckpointError, match="sha256"):
        load_decoder(tmp_path / "d")


def test_a_frame_holds_three_labelled_panels_under_a_caption():
    panels = [(name, np.full((32, 32, 3), value, np.uint8)) for name, value in (("real", 50), ("imagined", 120),
                                                                                   ("goal", 200))]
    frame = compose_frame(panels, "step 3/10")
    assert frame.dtype == np.uint8 and frame.shape == (80, 96, 3)  # 32 + 40 caption rows, rounded up to 16
    for i, (_, panel) in enumerate(panels):
        assert np.array_equal(frame[40:72, 32 * i : 32 * (i + 1)], panel)
    assert frame[:40].any()  # the caption is drawn
    assert compose_frame([(n, np.zeros((256, 256, 3), np.uint8)) for n in "abc"], "x").shape == (304, 768, 3)


@pytest.fixture(scope="module")
def reacher_records():
    """Two 20-control-step state-goal episodes (4 decisions of 5 control steps) of random actions."""
    batch = [envs.make("reacher", image_size=16, action_repeat=5) for _ in range(2)]
    specs = make_episodes(batch[0], "state", 2, seed=3, budget=20)
    records, traces = run_episodes(batch, specs, RandomPolicy(seed=0), keep_frames=1)
    for env in batch:
        env.close()
    assert len(traces) == 1 and len(traces[0]) == 4 and "imagined" not in traces[0][0]  # a baseline imagines nothing
    return records


def test_a_video_has_one_frame_per_control_step_at_real_time(tmp_path, reacher_records):
    record = reacher_records[0]
    env = envs.make("reacher", image_size=48, action_repeat=1)
    imagined = np.zeros((4, 16, 16, 3), np.uint8)
    frames = list(episode_frames(env, record, imagined, [{"energy": 0.5}] * 4))
    assert env.get_sim_state().tolist() == record["final_state"]  # the recorded episode, re-simulated exactly
    env.close()
    assert len(frames) == 21 and frames[0].shape == (96, 144, 3)  # start + 20 control steps; 3 panels of 48
    path = write_episode_video(tmp_path / "v.mp4", record, 48)
    reader = imageio.get_reader(path)
    assert reader.count_frames() == 21 and reader.get_meta_data()["fps"] == pytest.approx(50)  # 0.02 s steps
    assert reader.get_data(0).shape == (96, 96, 3)  # real | goal without imagined frames
    reader.close()


def test_without_ffmpeg_videos_become_gifs_with_a_notice(tmp_path, monkeypatch, capsys):
    import imageio_ffmpeg

    def missing():
        raise RuntimeError("No ffmpeg exe could be found")

    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", missing)
    frames = [np.full((32, 48, 3), i * 20, np.uint8) for i in range(5)]
    written = write_video(tmp_path / "videos" / "a.mp4", frames, fps=50)
    assert written == tmp_path / "videos" / "a.gif" and not (tmp_path / "videos" / "a.mp4").exists()
    notice = capsys.readouterr().out.strip().splitlines()
    assert len(notice) == 1 and "no ffmpeg" in notice[0]
    with Image.open(written) as gif:
        assert gif.n_frames == 5 and gif.size == (48, 32) and gif.info["duration"] == 20


def test_planner_predictions_are_exposed_and_rebuilt_from_the_record(tiny_wm, reacher_records):
    """The imagined latents the planning policy reports equal those the record alone gives back."""
    batch = [envs.make("reacher", image_size=32, action_repeat=5) for _ in range(2)]
    setup = Configurator({"state": TaskSettings(horizon=3, replan_every=2), "task": TaskSettings()}, batch[0]).setup(
        "state", budget=20)
    planner = build_planner({"_target_": "planners.cem.CEM", "samples": 8, "iterations": 1, "elites": 2}, setup)
    cost = build_cost(setup.cost_weights, setup.goal_energy)
    policy = PlanningPolicy(tiny_wm, planner, cost, FinalGoal(setup), setup, CPU, imagine=1)
    specs = make_episodes(batch[0], "state", 2, seed=5, budget=20)
    records, traces = run_episodes(batch, specs, policy, keep_frames=1)
    for env in batch:
        env.close()
    assert [ms > 0 for ms in records[0]["plan_ms"]] == [True, False, True, False]  # planned every 2 decisions
    exposed = torch.stack([step["imagined"] for step in traces[0]])  # [decisions, D]
    rebuilt = imagine_record(json.loads(json.dumps(records[0])), tiny_wm, CPU)
    assert torch.allclose(torch.from_numpy(rebuilt["imagined"]), exposed, atol=1e-5)
    assert np.allclose(rebuilt["energy"], [step["energy"] for step in traces[0]], atol=1e-5)


def _ensemble_with_a_copy_of(wm) -> PredictorEnsemble:
    """Two members of the world model's predictor shape: the first a copy of it, the second its own."""
    cfg = EnsembleConfig(members=2, width=wm.cfg.predictor_width, depth=wm.cfg.predictor_depth,
                         heads=wm.cfg.predictor_heads)
    ensemble = PredictorEnsemble(wm.cfg.latent_dim, wm.cfg.action_dim, wm.cfg.history, cfg).eval()
    ensemble.members[0].load_state_dict(wm.predictor.state_dict())
    torch.nn.init.normal_(ensemble.members[1].out.weight, std=1.0)  # far from the world model: a visible spread
    return ensemble


def test_the_spread_panel_is_grey_where_members_agree_and_red_where_they_differ(tiny_wm, trained, reacher_records):
    """A member that is the world model's own predictor imagines exactly what it does (no spread);
    one of its own does not, and the panel shows where, in the cost's units."""
    decoder = trained[0]
    ensemble = _ensemble_with_a_copy_of(tiny_wm)
    predicted = imagine_record(json.loads(json.dumps(reacher_records[1])), tiny_wm, CPU, ensemble)
    decisions = len(predicted["imagined"])
    assert predicted["members"].shape == (2, decisions, tiny_wm.cfg.latent_dim)
    assert np.allclose(predicted["members"][0], predicted["imagined"], atol=1e-5)
    assert not np.allclose(predicted["members"][1], predicted["imagined"], atol=1e-3)

    agree, none = spread_frames(decoder, predicted["imagined"], predicted["members"][:1])
    assert agree.shape == (decisions, 32, 32, 3) and agree.dtype == np.uint8
    assert np.allclose(none, 0, atol=1e-8)
    assert np.abs(agree.astype(int) - agree[..., :1]).max() <= 1  # grey: R = G = B
    differ, spread = spread_frames(decoder, predicted["imagined"], predicted["members"])
    expected = np.square(predicted["members"][1] - predicted["imagined"]).mean(-1) / 2  # member 0 adds nothing
    assert np.allclose(spread, expected, rtol=1e-4)
    redness = differ[..., 0].astype(int) - differ[..., 1]  # [decisions, h, w]
    assert redness.max() > 20 and redness.min() >= -1


def test_the_command_renders_any_record_from_the_record_alone(tmp_path, tiny_wm, trained, reacher_records, capsys):
    decoder, stats, _ = trained
    records = tmp_path / "run" / "records.jsonl"
    records.parent.mkdir()
    records.write_text("".join(json.dumps(r) + "\n" for r in reacher_records))
    world_model.save(tmp_path / "ckpt", tiny_wm, step=0)
    from world_model.checkpoint import read_manifest

    save_decoder(tmp_path / "cache" / "decoders" / "reacher-x", decoder, stats,
                 read_manifest(tmp_path / "ckpt")["files"]["model.safetensors"]["sha256"])
    plain = main([str(records), "--index", "1", "--size", "32"])
    assert plain == tmp_path / "run" / "videos" / "state-random-001.mp4"
    imagined = main([str(records), "--index", "1", "--size", "32", "--checkpoint", str(tmp_path / "ckpt"),
                     "--cache-root", str(tmp_path / "cache"), "--out", str(tmp_path / "imagined.mp4")])
    for path, width in ((plain, 64), (imagined, 96)):  # real | goal, then real | imagined | goal
        reader = imageio.get_reader(path)
        assert reader.count_frames() == 21 and reader.get_data(0).shape == (80, width, 3)
        reader.close()
    assert "video: " in capsys.readouterr().out
    save_ensemble(tmp_path / "ens", _ensemble_with_a_copy_of(tiny_wm), {})
    spread = main([str(records), "--index", "1", "--size", "32", "--checkpoint", str(tmp_path / "ckpt"),
                   "--cache-root", str(tmp_path / "cache"), "--ensemble", str(tmp_path / "ens"),
                   "--out", str(tmp_path / "spread.mp4")])
    reader = imageio.get_reader(spread)  # real | imagined | spread | goal
    assert reader.count_frames() == 21 and reader.get_data(0).shape == (80, 128, 3)
    reader.close()
    with pytest.raises(SystemExit):
        main([str(records), "--index", "1", "--ensemble", str(tmp_path / "ens")])  # no --checkpoint to spread around
    with pytest.raises(SystemExit):
        main([str(records), "--index", "2"])
    with pytest.raises(FileNotFoundError, match="no decoder"):
        main([str(records), "--checkpoint", str(tmp_path / "ckpt"), "--cache-root", str(tmp_path / "elsewhere")])


def test_an_edited_record_is_one_line_and_an_edited_success_is_named(tmp_path, reacher_records, capsys):
    records = tmp_path / "records.jsonl"
    record = dict(reacher_records[0])
    lines = {"not json": "{not json", "a field missing": json.dumps({k: v for k, v in record.items() if k != "actions"}),
             "a field of another type": json.dumps({**record, "seed": "3"}), "no object": "[1, 2]"}
    for why, line in lines.items():
        records.write_text(line + "\n")
        with pytest.raises(SystemExit) as refused:  # before: a raw JSONDecodeError or KeyError
            main([str(records), "--size", "16"])
        assert str(refused.value).startswith(f"error: line 1 of {records} is not an episode record ("), why
        assert "\n" not in str(refused.value), why
    records.write_text(json.dumps({k: v for k, v in record.items() if k != "actions"}) + "\n")
    with pytest.raises(SystemExit, match=r"fields actions \(missing\)"):
        main([str(records), "--size", "16"])
    records.write_text(json.dumps({**record, "success": not record["success"]}) + "\n")  # before: not a word
    main([str(records), "--size", "16"])
    assert "did not end in its recorded success; the record was edited" in capsys.readouterr().out
    with pytest.raises(SystemExit, match=r"^error: cannot read .*missing.jsonl"):
        main([str(tmp_path / "missing.jsonl")])
