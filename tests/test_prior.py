"""The action prior learns, by hindsight, the actions that led from a frame to a later one, round-trips,
refuses bad settings, and the planner starts its search from its proposal when the configurator says so; the
planning policy holds still where the readout finds the goal met and executes its plan scaled by action_scale."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import flip_last_byte

import envs
from agent.configurator import Configurator, PlanSetup, TaskSettings
from agent.goal_sources import needs
from agent.policies import PlanningPolicy
from agent.prior import PriorConfig, fit_prior, held_out_error, hindsight_rows, load_prior, save_prior
from planners.base import PlanResult
from world_model.checkpoint import CheckpointError

CFG = PriorConfig(horizon=3, max_ahead=3, hidden=64, steps=400, batch_size=256)


def episodes(count: int, seed: int, frames: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    """Latents [E, T, 4] of a point moving at one velocity per episode, drawn in [-1, 1]^2, and its
    actions [E, T, 2] (that velocity; the last row is padding, as in a dataset): the k actions to a
    frame k decisions ahead are (goal - now) / k, and also the past action."""
    g = torch.Generator().manual_seed(seed)
    v = torch.rand(count, 1, 2, generator=g) * 2 - 1  # [E, 1, 2]
    start = torch.rand(count, 1, 2, generator=g) * 4 - 2
    p = start + v * torch.arange(frames)[None, :, None]  # [E, T, 2]
    z = torch.cat([p, 0.5 * p[..., :1], -p[..., 1:]], -1)  # [E, T, 4]
    a = v.expand(-1, frames, -1).clone()
    a[:, -1] = 0
    return z, a


@pytest.fixture(scope="module")
def fitted():
    z, a = episodes(200, seed=0)
    return fit_prior(z, a, CFG, progress=False)


def test_hindsight_rows_mask_the_actions_that_led_to_the_goal():
    z = torch.arange(10.0)[None, :, None].repeat(3, 1, 1)  # frame t's latent is t
    a = torch.arange(10.0)[None, :, None].repeat(3, 1, 1) + 100  # action t leads from frame t
    z_prev, z_now, past, goal, target, mask = hindsight_rows(z, a, 64, 3, 2, torch.Generator().manual_seed(0))
    assert torch.equal(z_prev + 1, z_now) and torch.equal(past, z_prev + 100)
    assert torch.equal(target[:, :, 0], z_now + 100 + torch.arange(3))  # actions t, t + 1, t + 2
    k = goal[:, 0] - z_now[:, 0]  # decisions ahead, 1 or 2
    assert set(k.tolist()) == {1.0, 2.0}
    assert torch.equal(mask.sum(1), k)  # the first k actions count
    assert float((z_now + 3).max()) <= 9  # the proposed actions never run past the episode's last action row
    with pytest.raises(ValueError, match="too short"):
        hindsight_rows(z[:, :4], a[:, :4], 8, 3, 2, torch.Generator())


def test_the_prior_proposes_the_actions_that_reach_held_out_goals_and_round_trips(tmp_path, fitted):
    z, a = episodes(50, seed=1)
    err = held_out_error(fitted, z, a)
    assert err["mean_action_error"] > 0.2  # the velocity varies: the mean action is far off
    assert err["error"] < 0.1 * err["mean_action_error"]
    # toward a goal two decisions ahead of a held-out frame: the episode's velocity, then zeros past the horizon
    hist, goal = z[:5, 3:5], z[:5, 6]
    proposed = fitted.propose(hist, a[:5, 3], goal, horizon=5)  # [5, 5, 2]
    assert proposed.shape == (5, 5, 2) and torch.equal(proposed[:, 3:], torch.zeros(5, 2, 2))
    assert (proposed[:, :2] - a[:5, None, 0]).abs().max() < 0.15
    save_prior(tmp_path / "p", fitted, err)
    again = load_prior(tmp_path / "p")
    assert torch.equal(again.propose(hist, a[:5, 3], goal, 3), fitted.propose(hist, a[:5, 3], goal, 3))
    flip_last_byte(tmp_path / "p" / "prior.safetensors")
    with pytest.raises(CheckpointError, match="sha256"):
        load_prior(tmp_path / "p")


def test_bad_settings_are_refused_in_one_line():
    with pytest.raises(ValueError, match="prior.max_ahead=4 is beyond prior.horizon=3"):
        PriorConfig(horizon=3, max_ahead=4)
    with pytest.raises(ValueError, match="prior.steps"):
        PriorConfig(steps=0)
    env = envs.make("reacher", image_size=32)
    try:
        settings = {kind: TaskSettings() for kind in env.goal_kinds}
        assert "prior" not in needs(Configurator(settings, env).setup("state"), {"name": "cem"})
        settings["state"] = TaskSettings(warm_start="prior")
        assert "prior" in needs(Configurator(settings, env).setup("state"), {"name": "cem"})
        settings["state"] = TaskSettings(warm_start="policy")
        with pytest.raises(ValueError, match=r"configurator.state.warm_start='policy'; choose one of \['shifted', 'prior', 'hold'\]"):
            Configurator(settings, env).setup("state")
        settings["state"] = TaskSettings(compare_starts=["hold", "prior"])
        assert "prior" in needs(Configurator(settings, env).setup("state"), {"name": "cem"})
        settings["state"] = TaskSettings(compare_starts=["best"])
        with pytest.raises(ValueError, match=r"configurator.state.compare_starts names \['best'\]"):
            Configurator(settings, env).setup("state")
    finally:
        env.close()


class Recorder:
    """A planner that returns its first guess and remembers it."""

    horizon = 3

    def __init__(self):
        self.inits = []

    def plan(self, rollout_fn, cost_fn, init, low, high):
        self.inits.append(init.clone())
        return PlanResult(actions=init, cost=torch.zeros(len(init)))

    def reset(self):
        pass


class Encoder:
    """A stand-in world model: a frame's latent is its first four pixel values."""

    class cfg:
        history = 2

    def encode(self, frames):
        return frames[..., 0, :4, 0].float()  # [B, T, H, W, 3] -> [B, T, 4]

    def energy(self, z, goal):
        return (z - goal).square().mean(-1)

    def rollout_candidates(self, z_hist, actions, past_actions):
        return z_hist[:, None, -1:].expand(*actions.shape[:3], -1)  # [B, N, H, 4]: nothing moves


class Final:
    subgoal = False

    def reset(self, z_goal):
        self.z_goal = z_goal

    def goal(self, z_now, decision):
        return self.z_goal


class Space:
    low, high, shape = np.full(2, -1.0, np.float32), np.full(2, 1.0, np.float32), (2,)


class Env:
    action_space = Space()


class Spec:
    previous_state, previous_action, goal_kind = None, None, "reach"


def start(policy: PlanningPolicy, env=Env) -> np.ndarray:
    """Two episodes whose frames encode to [1]*4 and [2]*4, with goals three times as far; one decision:
    its actions [2, A]."""
    obs = [{"pixels": np.full((4, 4, 3), i, np.uint8), "goal": np.full((4, 4, 3), 3 * i, np.uint8)} for i in (1, 2)]
    policy.reset(obs, [Spec(), Spec()], [env(), env()])
    return policy.act(obs, 0)[0]


def test_the_planner_starts_from_the_prior_only_when_told(fitted):
    setups = {w: PlanSetup(budget=10, decisions=10, horizon=3, planner_overrides={}, replan_every=1, shrink_horizon=True,
                           cost_weights={}, goal_energy={}, warm_start=w) for w in ("shifted", "prior")}
    for warm_start, setup in setups.items():
        planner = Recorder()
        policy = PlanningPolicy(Encoder(), planner, lambda *a: None, Final(), setup, torch.device("cpu"),
                                prior=fitted if warm_start == "prior" else None)
        start(policy)
        z = torch.tensor([[1.0] * 4, [2.0] * 4])
        expected = fitted.propose(torch.stack([z, z], 1), torch.zeros(2, 2), 3 * z, 3) if warm_start == "prior" else \
            torch.zeros(2, 3, 2)  # nothing planned before: the shifted plan is all zeros
        assert torch.allclose(planner.inits[0], expected)
    with pytest.raises(ValueError, match="pass prior="):
        PlanningPolicy(Encoder(), Recorder(), None, Final(), setups["prior"], torch.device("cpu"))


def test_compare_starts_hands_the_planner_the_cheapest_first_guess_of_each_episode(fitted):
    z = torch.tensor([[1.0] * 4, [2.0] * 4])
    proposal = fitted.propose(torch.stack([z, z], 1), torch.zeros(2, 2), 3 * z, 3).clamp(-1, 1)  # [2, 3, 2]
    assert proposal.abs().max() > 0.1  # the test tells the proposal from holding still
    # Episode 0 prefers holding still, episode 1 the prior's proposal: cost = distance from a target [B, H, A].
    target = torch.stack([torch.zeros(3, 2), proposal[1]])

    def cost(z_plan, actions, goal):
        return (actions - target[:, None]).square().sum((-2, -1))  # [B, N]

    setup = PlanSetup(budget=10, decisions=10, horizon=3, planner_overrides={}, replan_every=1, shrink_horizon=True,
                      cost_weights={}, goal_energy={}, warm_start="prior", compare_starts=("hold",))
    planner = Recorder()
    start(PlanningPolicy(Encoder(), planner, cost, Final(), setup, torch.device("cpu"), prior=fitted))
    assert torch.equal(planner.inits[0][0], torch.zeros(3, 2))
    assert torch.allclose(planner.inits[0][1], proposal[1])
    with pytest.raises(ValueError, match="pass prior="):
        PlanningPolicy(Encoder(), Recorder(), cost, Final(), replace(setup, warm_start="hold", compare_starts=("prior",)),
                       torch.device("cpu"))


def test_an_episode_holds_still_where_the_readout_finds_its_goal_met_and_acts_elsewhere():
    """The readout reads a latent as itself; the env judges the goal met when every read number is within
    `scale` x 3 of the goal's: episode 0 (2 off) is met at scale 1, episode 1 (4 off) is not."""

    class Readout:
        def targets(self, z):
            return z

    class JudgingEnv(Env):
        def probe_reached(self, goal_kind, now, goal, scale):
            assert goal_kind == "reach" and now.shape == goal.shape == (2, 4)
            return np.abs(now - goal).max(-1) < 3 * scale

    class Pusher(Recorder):
        def plan(self, rollout_fn, cost_fn, init, low, high):
            return PlanResult(actions=torch.full_like(init, 0.5), cost=torch.zeros(len(init)))

    setup = PlanSetup(budget=10, decisions=10, horizon=3, planner_overrides={}, replan_every=1, shrink_horizon=True,
                      cost_weights={}, goal_energy={})
    for within, expected in ((1.0, [[0.0, 0.0], [0.5, 0.5]]), (0.5, [[0.5, 0.5]] * 2), (0.0, [[0.5, 0.5]] * 2)):
        policy = PlanningPolicy(Encoder(), Pusher(), lambda *a: None, Final(), replace(setup, hold_within=within),
                                torch.device("cpu"), readout=Readout())
        assert start(policy, JudgingEnv).tolist() == expected, within
    with pytest.raises(ValueError, match="pass readout="):
        PlanningPolicy(Encoder(), Pusher(), None, Final(), replace(setup, hold_within=1.0), torch.device("cpu"))


def test_the_executed_command_is_the_plan_scaled_by_action_scale_and_the_history_carries_it():
    """The planner plans 0.5 everywhere; the policy executes 0.5 x action_scale, and the next decision's
    rollouts take that executed command as the past action. Scales outside (0, 1] are refused."""

    class Pusher(Recorder):
        def plan(self, rollout_fn, cost_fn, init, low, high):
            rollout_fn(init[:, None])  # the model records the past action each rollout is handed
            return PlanResult(actions=torch.full_like(init, 0.5), cost=torch.zeros(len(init)))

    class PastRecorder(Encoder):
        def rollout_candidates(self, z_hist, actions, past_actions):
            self.pasts.append(past_actions.clone())
            return super().rollout_candidates(z_hist, actions, past_actions)

    setup = PlanSetup(budget=10, decisions=10, horizon=3, planner_overrides={}, replan_every=1, shrink_horizon=True,
                      cost_weights={}, goal_energy={})
    for scale in (1.0, 0.7):
        model = PastRecorder()
        model.pasts = []
        policy = PlanningPolicy(model, Pusher(), lambda *a: torch.zeros(a[1].shape[:2]), Final(),
                                replace(setup, action_scale=scale), torch.device("cpu"))
        first = start(policy)
        assert np.allclose(first, 0.5 * scale)
        obs = [{"pixels": np.full((4, 4, 3), i, np.uint8), "goal": np.full((4, 4, 3), 3 * i, np.uint8)} for i in (1, 2)]
        policy.act(obs, 1)
        assert torch.allclose(model.pasts[-1], torch.full((2, 1, 2), 0.5 * scale))
    env = envs.make("reacher", image_size=32)
    try:
        settings = {kind: TaskSettings() for kind in env.goal_kinds}
        assert Configurator({**settings, "state": TaskSettings(action_scale=0.7)}, env).setup("state").action_scale == 0.7
        for bad in (0.0, 1.5):
            with pytest.raises(ValueError, match=f"configurator.state.action_scale={bad} .* above 0 and at most 1"):
                Configurator({**settings, "state": TaskSettings(action_scale=bad)}, env).setup("state")
    finally:
        env.close()


def test_the_prior_weight_adds_the_distance_from_the_proposal_and_needs_the_prior():
    from agent.policies import near_prior

    proposal = torch.zeros(1, 2, 2)
    actions = torch.stack([torch.zeros(2, 2), torch.ones(2, 2)])[None]  # [B=1, N=2, H=2, A=2]: on it, 1 off
    cost = near_prior(lambda z, a: torch.full(a.shape[:2], 5.0), proposal, 0.5)(None, actions)
    assert torch.equal(cost, torch.tensor([[5.0, 5.5]]))
    env = envs.make("reacher", image_size=32)
    try:
        settings = {kind: TaskSettings() for kind in env.goal_kinds}
        settings["state"] = TaskSettings(warm_start="prior", prior_weight=0.5)
        assert Configurator(settings, env).setup("state").cost_weights["prior"] == 0.5
        settings["state"] = TaskSettings(prior_weight=0.5)
        with pytest.raises(ValueError, match="above 0 only with warm_start=prior"):
            Configurator(settings, env).setup("state")
    finally:
        env.close()
