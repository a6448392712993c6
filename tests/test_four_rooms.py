"""The four-rooms layout of the two-rooms family: four doors joining the rooms in a ring, diagonal
goals two doors away, each door passable, walls that success does not see through, a sampler that
keeps out of walls, the rooms budget (recomputed for both layouts), replay by layout, and the
behaviour walk passing doors. The contract every env keeps is in test_registry.py."""

from itertools import pairwise

import numpy as np
import pytest

import envs
from envs.rooms import FourRoomsEnv, TwoRoomsEnv, replay
from envs.rooms.env import ARENA_HALF
from envs.rooms.replay import control_step, get_state

SIZE = 32  # pixels per side of test frames
EPS = 1e-9  # m: a path may graze a wall's corner or edge
SPEED = 0.5  # m/s per axis at full command (gear 2 N / damping 4 N s/m)
CONTROL_STEP = 0.02  # s
RING = [(-1, 1), (1, 1), (1, -1), (-1, -1)]  # rooms (sign of x, sign of y) in order around the ring


@pytest.fixture
def env():
    e = FourRoomsEnv(image_size=SIZE)
    yield e
    e.close()


# ----------------------------------------------------------------------------- geometry helpers
def hits(p: np.ndarray, q: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """bool [K, M]: whether segment p[k] -> q[k] ([K, 2] each) passes through the inside of box m
    (boxes [M, 4]: centre x, y, half-width, half-height); touching an edge or a corner is not."""
    d = (q - p)[:, None, :]
    lo = boxes[None, :, :2] - boxes[None, :, 2:] + EPS - p[:, None, :]
    hi = boxes[None, :, :2] + boxes[None, :, 2:] - EPS - p[:, None, :]
    moving = np.abs(d) > 0
    between = (lo < 0) & (hi > 0)  # a still coordinate inside the slab never leaves it
    safe = np.where(moving, d, 1.0)
    t_in = np.where(moving, np.minimum(lo / safe, hi / safe), np.where(between, -np.inf, np.inf))
    t_out = np.where(moving, np.maximum(lo / safe, hi / safe), np.where(between, np.inf, -np.inf))
    return np.maximum(t_in.max(-1), 0.0) < np.minimum(t_out.min(-1), 1.0)


def shortest_paths(env, starts: np.ndarray, goals: np.ndarray) -> np.ndarray:
    """[K] metres: the shortest path of the agent's centre from starts[k] to goals[k] ([K, 2]) around
    the walls grown by the agent radius (env.obstacles): a visibility graph on the grown boxes'
    corners that a centre can reach."""
    boxes = env.obstacles
    corners = (boxes[:, None, :2] + boxes[:, None, 2:] * np.array([[-1, -1], [-1, 1], [1, -1], [1, 1]])).reshape(-1, 2)
    inside = np.all(np.abs(corners[:, None] - boxes[None, :, :2]) < boxes[None, :, 2:] - EPS, -1).any(1)
    in_arena = np.all(np.abs(corners) <= ARENA_HALF - env.agent_radius + EPS, 1)
    corners = corners[~inside & in_arena]

    def lengths(a, b):  # [A, 2], [B, 2] -> [A, B] metres where the straight line is free, inf where not
        pa, pb = np.repeat(a, len(b), 0), np.tile(b, (len(a), 1))
        blocked = hits(pa, pb, boxes).any(1).reshape(len(a), len(b))
        return np.where(blocked, np.inf, np.linalg.norm(a[:, None] - b[None], axis=-1))

    graph = lengths(corners, corners)
    for k in range(len(corners)):  # Floyd-Warshall
        graph = np.minimum(graph, graph[:, k:k + 1] + graph[k:k + 1])
    via = (lengths(starts, corners)[:, :, None] + graph[None] + lengths(goals, corners)[:, None, :]).min((1, 2))
    direct = np.where(hits(starts, goals, boxes).any(1), np.inf, np.linalg.norm(starts - goals, axis=1))
    return np.minimum(direct, via)


def wall_gap(env, pos) -> float:
    """Metres from the agent's centre at pos [2] to the nearest wall (the boxes of the model, not grown)."""
    boxes = env.obstacles
    outside = np.maximum(np.abs(np.asarray(pos) - boxes[:, :2]) - (boxes[:, 2:] - env.agent_radius), 0.0)
    return float(np.linalg.norm(outside, axis=1).min())


def door(a: tuple[int, int], b: tuple[int, int]) -> np.ndarray:
    """[2]: the centre of the door joining neighbouring rooms a and b (four_rooms.xml: 0.35 m from the centre)."""
    return np.array([0.0, 0.35 * a[1]]) if a[0] != b[0] else np.array([0.35 * a[0], 0.0])


def through(a, b) -> list[np.ndarray]:
    """Two waypoints across the door from room a into room b, 0.15 m before and after its centre line."""
    centre = door(a, b)
    axis = 0 if a[0] != b[0] else 1
    before, after = centre.copy(), centre.copy()
    before[axis], after[axis] = 0.15 * a[axis], 0.15 * b[axis]
    return [before, after]


def drive(env, waypoints: list[np.ndarray], steps: int) -> np.ndarray:
    """A scripted controller: full command straight at each waypoint in turn (the next one once
    within 0.03 m), a proportional push onto the last; `steps` control steps without frames.
    Returns the centre's positions [steps, 2]."""
    i, path = 0, []
    for _ in range(steps):
        pos = env.data.qpos.copy()
        if i < len(waypoints) - 1 and np.linalg.norm(waypoints[i] - pos) < 0.03:
            i += 1
        delta = waypoints[i] - pos
        last = i == len(waypoints) - 1
        action = np.clip(10 * delta, -1, 1) if last else delta / max(np.linalg.norm(delta), EPS)
        control_step(env.model, env.data, action)
        path.append(get_state(env.data)[:2])
    return np.array(path)


def start_at(env, start, goal):
    """Resets to start [2] at rest with goal [2]; returns evaluate()."""
    return env.reset(seed=0, options={"start_state": [*start, 0.0, 0.0], "goal_pos": list(goal)})[1]


# ----------------------------------------------------------------------------- the layout
def test_registered_with_its_own_model_and_both_split_axes():
    e = envs.make("four-rooms", image_size=SIZE)
    assert isinstance(e, FourRoomsEnv) and e.name == "four-rooms" and e.split_axes == (0, 1)
    assert e.goal_kinds["rooms"].budget == 280 and e.goal_kinds["near"] == TwoRoomsEnv.goal_kinds["near"]
    assert len(e.obstacles) == 10 and e.success_distance == 0.07 and e.agent_radius == 0.04
    e.close()


@pytest.mark.parametrize("axis", [0, 1])
def test_each_inner_wall_has_two_doors_each_joining_two_neighbouring_rooms(env, axis):
    """Along the wall x = 0 (axis 0) or y = 0 (axis 1), the centres that fit through are two
    0.12 m gaps (0.2 m door less the agent's diameter) centred at +-0.35: a door joins rooms that
    differ in one sign only, so diagonal rooms share none and a path between them passes two."""
    along = np.linspace(-ARENA_HALF, ARENA_HALF, 2001)
    points = np.zeros((len(along), 2))
    points[:, 1 - axis] = along
    boxes = env.obstacles
    free = ~np.all(np.abs(points[:, None] - boxes[None, :, :2]) < boxes[None, :, 2:], -1).any(1)
    edges = np.flatnonzero(np.diff(free.astype(int)))
    gaps = along[edges].reshape(-1, 2)  # [doors, 2]: where each run of free points starts and ends
    np.testing.assert_allclose(gaps, [[-0.41, -0.29], [0.29, 0.41]], atol=1e-3)


def test_a_rooms_goal_is_diagonal_and_the_straight_line_to_it_crosses_a_wall(env):
    """Crosses a wall grown into a box by the agent radius: the round agent itself could pass
    straight through two doors on a 45-degree line, for 6 in 20,000 pairs."""
    rng = np.random.default_rng(0)
    specs = [env.sample_episode("rooms", rng) for _ in range(200)]
    starts = np.array([s.options["start_state"] for s in specs])
    goals = np.array([s.options["goal_pos"] for s in specs])
    assert np.all(np.sign(starts[:, :2]) == -np.sign(goals))  # every sign flipped: the diagonal room
    assert {tuple(r) for r in np.sign(starts[:, :2]).astype(int)} == set(RING)  # every room may hold the start
    assert all(env.in_room(s, tuple(np.sign(s))) for s in [*starts[:, :2], *goals])
    assert np.all(starts[:, 2:] == 0.0) and all(s.budget == 280 for s in specs)
    assert hits(starts[:, :2], goals, env.obstacles).any(1).all()
    _, info = env.reset(seed=specs[0].seed, options=specs[0].options)
    assert not info["same_room"] and not info["success"]


@pytest.mark.parametrize("name, budget", [("two-rooms", 215), ("four-rooms", 280)])
def test_the_rooms_budget_is_three_times_a_full_speed_shortest_path(name, budget):
    """The budget is 3x the control steps the median start/goal pair's shortest path takes at
    0.5 m/s, rounded to a multiple of 5 (the env docstrings give the numbers, over 2,000 pairs)."""
    e = envs.make(name, image_size=SIZE)
    rng = np.random.default_rng(1)
    specs = [e.sample_episode("rooms", rng) for _ in range(1000)]
    starts = np.array([s.options["start_state"][:2] for s in specs])
    goals = np.array([s.options["goal_pos"] for s in specs])
    steps = shortest_paths(e, starts, goals) / SPEED / CONTROL_STEP
    assert e.goal_kinds["rooms"].budget == budget
    assert abs(3 * np.median(steps) - budget) <= 5 and steps.max() < budget
    e.close()


@pytest.mark.parametrize("a, b", [(RING[i], RING[(i + k) % 4]) for i in range(4) for k in (1, 3)])
def test_a_scripted_controller_drives_through_each_door(env, a, b):
    start, goal = 0.25 * np.array(a), 0.25 * np.array(b)  # room centres, the door between them
    assert not start_at(env, start, goal)["same_room"]
    path = drive(env, [*through(a, b), goal], 100)
    info = env.evaluate()
    assert info["success"] and info["same_room"] and env.in_room(path[-1], b)
    assert min(wall_gap(env, p) for p in path) > env.agent_radius - 0.005  # through the gap, not the wall


def test_rooms_episodes_are_solved_through_two_doors_within_the_budget_but_rarely_straight_on(env):
    """The budget fits the detour through two doors; a push straight at the goal mostly ends in the
    centre's dead end (the doors lie near the outer walls, away from where the walls lead it)."""
    rng = np.random.default_rng(2)
    straight_on = 0
    for _ in range(20):
        spec = env.sample_episode("rooms", rng)
        start, goal = np.array(spec.options["start_state"][:2]), np.array(spec.options["goal_pos"])
        a, c = tuple(np.sign(start).astype(int)), tuple(np.sign(goal).astype(int))
        routes = [[*through(a, b), *through(b, c), goal] for b in ((a[0], c[1]), (c[0], a[1]))]
        length = [np.linalg.norm(np.diff([start, *r], axis=0), axis=1).sum() for r in routes]
        env.reset(seed=spec.seed, options=spec.options)
        drive(env, routes[int(np.argmin(length))], spec.budget)
        assert env.evaluate()["success"]
        env.reset(seed=spec.seed, options=spec.options)
        drive(env, [goal], spec.budget)
        straight_on += env.evaluate()["success"]
    assert straight_on <= 4


# Points on both sides of the inner walls (the wall's axis, the coordinate along it), on all four
# arms of the centre cross, between the doors; the 0.05 m stubs beyond the doors are too short for
# the agent to face without touching the door's post.
WALL_POINTS = [(axis, along) for axis in (0, 1) for along in (-0.2, -0.1, 0.1, 0.2)]


@pytest.mark.parametrize("axis, along", WALL_POINTS)
def test_a_goal_behind_a_wall_is_not_reached_through_it(env, axis, along):
    """The nearest free goal behind the wall, the agent pushed into the wall from the other side."""
    for side in (-1, 1):
        start, goal = np.full(2, float(along)), np.full(2, float(along))
        start[axis], goal[axis] = -0.2 * side, side * (env.room_edge - env.clearance)  # touching the wall
        start_at(env, start, goal)
        path = drive(env, [goal], 300)
        info = env.evaluate()
        assert np.all(path[:, axis] * side < -0.05) and not info["success"] and not info["same_room"]
        assert info["distance"] > 0.1


def test_the_centre_cross_keeps_a_diagonal_goal_out_of_reach(env):
    start_at(env, [-0.2, -0.2], [env.room_edge, env.room_edge])
    path = drive(env, [np.array([env.room_edge, env.room_edge])], 300)
    info = env.evaluate()
    assert np.all(path < -0.05) and not info["success"] and info["distance"] > 0.15


# ----------------------------------------------------------------------------- sampling, replay, behaviour
def test_the_sampler_never_puts_start_or_goal_inside_a_wall(env):
    rng = np.random.default_rng(3)
    positions = []
    for seed in range(30):  # random resets: start and goal anywhere in the free space
        env.reset(seed=seed)
        positions += [env.get_sim_state()[:2], env.goal_pos]
    for _ in range(50):
        spec = env.sample_episode("rooms", rng)
        positions += [spec.options["start_state"][:2], spec.options["goal_pos"]]
    assert all(env.is_free(p, env.clearance) for p in positions)  # surface >= 0.01 m from every wall
    for _ in range(10):  # near: simulated states, in contact at most (soft contacts give a few mm)
        spec = env.sample_episode("near", rng)
        for p in (spec.options["start_state"][:2], spec.options["goal_pos"], spec.previous_state[:2]):
            assert wall_gap(env, p) > env.agent_radius - 0.005 and np.all(np.abs(p) < ARENA_HALF)


def test_replay_loads_the_layout_the_record_names():
    """The same push along y = 0.35 replays differently by layout: a door here, a wall in two-rooms."""
    record = {"env": "four-rooms", "options": {"start_state": [-0.2, 0.35, 0.0, 0.0], "goal_pos": [0.2, 0.35]},
              "actions": [[1.0, 0.0]] * 100}
    assert replay(record)["final_state"][0] > 0.1  # through the north door
    assert replay(dict(record, env="two-rooms"))["final_state"][0] < -0.05  # stopped by the middle wall
    with pytest.raises(ValueError, match="no model for env 'five-rooms'"):
        replay(dict(record, env="five-rooms"))


def test_the_behaviour_walk_passes_doors_and_stays_out_of_walls(env):
    """20 episodes of 100 env steps (the default data length), simulated without frames."""
    env.reset(seed=0)
    passes = []
    for episode in range(20):
        rng = np.random.default_rng(episode)
        env.set_sim_state([*env.random_position(rng), 0.0, 0.0])
        policy = env.behaviour_policy(rng)
        rooms = []
        for _ in range(100):
            action = policy.act({"proprio": env.get_sim_state().astype(np.float32)})
            for _ in range(env.action_repeat):
                control_step(env.model, env.data, action)
            pos = get_state(env.data)[:2]
            assert wall_gap(env, pos) > env.agent_radius - 0.01  # soft contacts: a few mm at full speed
            rooms.append(tuple(np.sign(pos).astype(int)) if np.all(np.abs(pos) > 0.06) else None)
        seen = [r for r in rooms if r is not None]
        passes.append(sum(a != b for a, b in pairwise(seen)))
    assert sum(p >= 1 for p in passes) >= 10 and sum(p >= 2 for p in passes) >= 4
