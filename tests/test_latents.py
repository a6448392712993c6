"""The training video is encoded once per run: EpisodeLatents encodes each episode at most once,
and what is fitted on shared latents is what would be fitted on latents encoded afresh."""

import torch
from conftest import TINY_MODEL

from agent.critic import CriticConfig, train_critic
from agent.landmarks import LandmarkConfig, fit_landmarks
from world_model.dataset import Dataset
from world_model.latents import EpisodeLatents, encode_episodes
from world_model.model import WorldModel, WorldModelConfig

CPU = torch.device("cpu")


def test_each_episode_is_encoded_once_and_alone(tiny_data):
    torch.manual_seed(0)
    wm = WorldModel(WorldModelConfig(**TINY_MODEL, action_dim=2)).eval()
    dataset = Dataset(tiny_data[2])
    latents, calls = EpisodeLatents(wm, dataset, CPU), []
    encode = wm.encode
    wm.encode = lambda frames: (calls.append(frames.shape[0]), encode(frames))[1]
    first, second = latents([0, 1]), latents([1, 2, 0])
    assert len(calls) == 3  # episodes 0, 1 and 2, each once
    assert torch.equal(second[0], first[1]) and torch.equal(second[2], first[0])
    wm.encode = encode
    assert torch.equal(second, encode_episodes(wm, dataset, [1, 2, 0], CPU))  # as if encoded afresh


def test_modules_fitted_on_shared_latents_are_those_fitted_on_their_own(tiny_data):
    torch.manual_seed(0)
    wm = WorldModel(WorldModelConfig(**TINY_MODEL, action_dim=2)).eval()
    dataset = Dataset(tiny_data[2])
    shared = EpisodeLatents(wm, dataset, CPU)
    critic_cfg = CriticConfig(steps=5, batch_size=8, hidden=16, dim=4)
    shared_critic, _ = train_critic(wm, dataset, critic_cfg, CPU, progress=False, latents=shared)
    shared_graph, stats = fit_landmarks(wm, dataset, LandmarkConfig(neighbours=3), CPU, latents=shared)
    assert stats["encode_s"] < 0.05  # the graph's episodes were all encoded for the critic
    own_critic, _ = train_critic(wm, dataset, critic_cfg, CPU, progress=False)
    own_graph, _ = fit_landmarks(wm, dataset, LandmarkConfig(neighbours=3), CPU)
    for a, b in zip(shared_critic.state_dict().values(), own_critic.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(shared_graph.nodes, own_graph.nodes)
