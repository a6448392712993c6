"""The landmark graph (agent/landmarks.py): shortest paths through the video's frames go round a
wall, subgoals lie along them, and a saved graph loads as it was."""

import numpy as np
import pytest
import torch
from conftest import flip_last_byte

from agent.configurator import Configurator, TaskSettings
from agent.landmarks import LandmarkConfig, build_graph, load_landmarks, save_landmarks
from world_model.checkpoint import CheckpointError

STEP, WALL, DOOR = 0.05, 0.1, 0.2  # walk step; the wall fills |x| < WALL except the door |y| < DOOR


def _free(p: np.ndarray) -> np.ndarray:
    """[..., 2] positions -> [...] bool: inside the box and outside the wall."""
    inside = (np.abs(p) <= 1).all(-1)
    return inside & ((np.abs(p[..., 0]) >= WALL) | (np.abs(p[..., 1]) < DOOR))


def _walks(episodes: int = 300, steps: int = 80, seed: int = 0) -> np.ndarray:
    """Random walks with persistent headings that never enter the wall: [E, T, 2] positions."""
    rng = np.random.default_rng(seed)
    pos = np.zeros((episodes, steps, 2))
    p = rng.uniform(-1, 1, (episodes, 2))
    while not _free(p).all():
        bad = ~_free(p)
        p[bad] = rng.uniform(-1, 1, (bad.sum(), 2))
    heading = rng.uniform(0, 2 * np.pi, episodes)
    for t in range(steps):
        pos[:, t] = p
        heading += rng.normal(0, 0.3, episodes)
        for _ in range(20):  # a blocked walker turns until it can move
            nxt = p + STEP * np.stack([np.cos(heading), np.sin(heading)], -1)
            ok = _free(nxt)
            if ok.all():
                break
            heading[~ok] = rng.uniform(0, 2 * np.pi, (~ok).sum())
        p = np.where(ok[:, None], nxt, p)
    return pos


def _latents(pos: np.ndarray, dim: int = 16) -> torch.Tensor:
    """[..., 2] positions -> [..., dim] latents: an isometry (orthonormal columns), times 10."""
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(dim, 2)))  # [dim, 2]
    return torch.tensor(10 * pos @ q.T, dtype=torch.float32)


@pytest.fixture(scope="module")
def world():
    pos = _walks()
    graph, stats = build_graph(_latents(pos), LandmarkConfig(stride=2, neighbours=6))
    return pos[:, ::2].reshape(-1, 2), graph, stats  # node positions [N, 2], episode-major as the nodes


def _path(graph, row: int, node: int) -> list[int]:
    path = [node]
    while graph.dist[row, path[-1]] > 0:
        path.append(int(graph.pred[row, path[-1]]))
    return path


def test_shortest_paths_go_through_the_door_not_the_wall(world):
    node_pos, graph, stats = world
    assert stats["nodes"] == len(node_pos)
    starts = np.array([[-0.5, 0.8], [-0.5, -0.8], [-0.8, 0.0]])
    goals = np.array([[0.5, 0.8], [0.5, -0.7], [0.8, 0.5]])
    graph.set_goals(_latents(goals))
    start_nodes = graph.nearest(_latents(starts))
    for b in range(len(starts)):
        p = node_pos[_path(graph, b, start_nodes[b])]  # [L, 2]
        sides = np.sign(p[:, 0])
        crossing = np.flatnonzero(sides[1:] != sides[:-1])
        assert len(crossing) >= 1, "the path never reaches the goal's room"
        assert (np.abs(p[crossing, 1]) < DOOR).all() and (np.abs(p[crossing + 1, 1]) < DOOR).all(), \
            "a path crosses the wall outside the door"
        # distance in decisions (one decision: the median latent step) against the detour's length
        detour = np.linalg.norm(starts[b] - [0, 0]) + np.linalg.norm(goals[b] - [0, 0])
        decisions = graph.dist[b, start_nodes[b]]
        assert 0.7 * detour / STEP <= decisions <= 1.6 * detour / STEP, (decisions, detour / STEP)
        straight = np.linalg.norm(starts[b] - goals[b]) / STEP
        assert decisions > straight + 3 or b == 2  # the wall makes it longer (the third pair is nearly in line)


def test_subgoals_lie_ahead_on_the_path_and_the_goal_once_in_reach(world):
    node_pos, graph, _ = world
    start, goal = np.array([[-0.5, 0.8], [0.5, 0.5]]), np.array([[0.5, 0.8], [0.55, 0.5]])
    graph.set_goals(_latents(goal))
    sub, arrived, left = graph.subgoals(_latents(start), ahead=np.array([6.0, 6.0]))
    assert sub.shape == (2, 16)
    assert not arrived[0] and arrived[1]  # the second goal is one step away
    sub_node = graph.nearest(sub)
    start_node = graph.nearest(_latents(start))
    assert sub_node[0] in _path(graph, 0, start_node[0])
    travelled = left[0] - graph.dist[0, sub_node[0]]
    assert 6.0 <= travelled <= 6.0 + 2.0  # the first node at least `ahead` along (one stride per edge at most)
    assert np.linalg.norm(node_pos[sub_node[0]] - start[0]) < np.linalg.norm(start[0] - goal[0])


def test_a_saved_graph_loads_the_same_and_a_changed_file_is_refused(world, tmp_path):
    _, graph, stats = world
    save_landmarks(tmp_path / "g", graph, stats)
    again = load_landmarks(tmp_path / "g")
    for name in ("nodes", "neighbour_index", "neighbour_weight", "node_episode"):
        assert torch.equal(getattr(again, name), getattr(graph, name)), name
    assert (again.graph() != graph.graph()).nnz == 0
    weights = tmp_path / "g" / "landmarks.safetensors"
    flip_last_byte(weights)
    with pytest.raises(CheckpointError, match="sha256"):
        load_landmarks(tmp_path / "g")


def test_subgoals_before_goals_and_bad_settings_are_refused(world):
    _, graph, _ = world
    fresh = type(graph)(graph.nodes, graph.neighbour_index, graph.neighbour_weight, graph.node_episode,
                                    graph.cfg)
    with pytest.raises(RuntimeError, match="set_goals"):
        fresh.subgoals(fresh.nodes[:1].float(), 3.0)
    with pytest.raises(ValueError, match="neighbours"):
        LandmarkConfig(neighbours=0)

    class Env:
        name, goal_kinds, action_repeat = "dot", {"reach": type("K", (), {"budget": 10})()}, 5

    with pytest.raises(ValueError, match="goal_source='roads'"):
        Configurator({"reach": TaskSettings(goal_source="roads")}, Env()).setup("reach")
    with pytest.raises(ValueError, match="subgoal_ahead=0"):
        Configurator({"reach": TaskSettings(goal_source="graph", subgoal_ahead=0)}, Env()).setup("reach")


def test_a_graph_source_without_the_graph_is_one_clear_error():
    from agent.configurator import PlanSetup
    from agent.goal_sources import build_source

    setup = PlanSetup(budget=10, decisions=2, horizon=2, planner_overrides={}, replan_every=1, shrink_horizon=True,
                      cost_weights={}, goal_energy={}, goal_source="graph", subgoal_ahead=2.0)
    with pytest.raises(ValueError, match="needs landmarks"):
        build_source(setup, {"landmarks": None})


def test_a_hierarchical_planner_aims_its_high_level_at_the_graph_subgoal_and_hands_its_own_down(world):
    """Three levels: the graph's subgoal is the high level's goal; the low level's goal is what
    the high level hands down (here a fixed point beside it), never the goal image itself."""
    from types import SimpleNamespace

    from agent.configurator import PlanSetup
    from agent.goal_sources import build_source
    from agent.policies import PlanningPolicy
    from planners.base import PlanResult

    _, graph, _ = world
    start, goal = np.array([[-0.5, 0.8]]), np.array([[0.5, 0.8]])  # opposite rooms, the door at y = 0
    dim = _latents(start).shape[-1]

    class Remembers:  # a cost that remembers the goal it was last asked to score toward
        def __call__(self, z, actions, goal):
            self.goal = goal.clone()
            return z.new_zeros(z.shape[:2])

    class Search:
        handed = _latents(np.array([[-0.45, 0.7]]))  # what this high level hands down
        high_horizon = 3  # macro steps of k = 2 decisions: its goal is the graph node 6 decisions along

        def reset(self):
            pass

        def subgoal(self, high_rollout_fn, high_cost_fn, batch, low, high, k, left):
            high_cost_fn(torch.zeros(batch, 1, 1, dim), torch.zeros(batch, 1, 1, 2 * k))
            return self.handed, torch.tensor([False])

    class Planner:
        def reset(self):
            pass

        def plan(self, rollout_fn, cost_fn, init, low, high):
            cost_fn(torch.zeros(init.shape[0], 1, 1, dim), init[:, None])
            return PlanResult(init, torch.zeros(init.shape[0]))

    wm = SimpleNamespace(cfg=SimpleNamespace(history=2), encode=lambda x: x.float(),
                         energy=lambda a, b: (a - b).square().mean(-1))
    setup = PlanSetup(budget=50, decisions=10, horizon=2, planner_overrides={}, replan_every=1, shrink_horizon=True,
                      cost_weights={}, goal_energy={}, goal_source="graph", subgoal_ahead=2.0)  # a flat planner's
    low_cost, high_cost = Remembers(), Remembers()
    source = build_source(setup, {"landmarks": graph, "macro": SimpleNamespace(k=2)}, Search(), high_cost,
                          -torch.ones(2), torch.ones(2))
    policy = PlanningPolicy(wm, Planner(), low_cost, source, setup, torch.device("cpu"))
    obs = [{"pixels": _latents(start)[0].numpy(), "goal": _latents(goal)[0].numpy()}]
    space = SimpleNamespace(low=-np.ones(2), high=np.ones(2), shape=(2,))
    policy.reset(obs, [SimpleNamespace(previous_state=None, previous_action=None)], [SimpleNamespace(action_space=space)])
    policy.act(obs, 0)
    expected, arrived, _ = graph.subgoals(_latents(start), 6.0)
    assert not arrived[0]
    assert torch.equal(high_cost.goal, expected)  # the high level plans toward the graph's subgoal
    assert not torch.allclose(high_cost.goal, _latents(goal))
    assert torch.equal(low_cost.goal, Search.handed)  # the low level toward the high level's subgoal
