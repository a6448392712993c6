"""Subgoals along shortest paths through a graph of the training video's frames.

Why: on the room layouts the goal energy and the reach critic do not know the detour through a
door (docs/NOTEBOOK.md, "What fails"), but the video does: consecutive frames of an episode are
one decision apart in the world, and an episode only passes a wall through its door. The graph's
nodes are every `stride`-th frame of the training episodes (latents of the frozen encoder); a node
is joined to the next node of its episode (weight: the `stride` decisions between them) and to
its `neighbours` nearest nodes in latent space (weight: their latent distance in units of the
median one-decision latent distance of the video). Before each plan, the planner's goal becomes
the node `ahead` decisions along the shortest path from the node nearest the agent's frame to the
node nearest the goal image, and the goal image itself once that node is within `ahead`. The idea
is search on the replay buffer (Eysenbach et al. 2019), with the world model's own latent
distance and the video's time as edges instead of a learned value.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra
from torch import Tensor, nn

from world_model.cache_key import cache_key
from world_model.fitted import check_at_least_one, load_fitted, save_fitted
from world_model.latents import EpisodeLatents

WEIGHTS, MANIFEST = "landmarks.safetensors", "landmarks.json"


@dataclass
class LandmarkConfig:
    """The graph of the training video's frames (agent/landmarks.py)."""

    stride: int = 2
    """Every stride-th frame of each training episode is a node (decisions between episode neighbours)."""
    neighbours: int = 10
    """Nearest nodes in latent space (L2 over the whole representation) each node is joined to."""
    block: int = 2048
    """Nodes whose distances to all others are computed at once while building (memory: block x nodes floats)."""
    held_out_fraction: float = 0.1
    """Last episodes kept out of the graph (the world model's split)."""

    def __post_init__(self):
        check_at_least_one(self, "landmarks", ("stride", "neighbours", "block"))
        if not 0.0 <= self.held_out_fraction < 1.0:
            raise ValueError(f"landmarks.held_out_fraction={self.held_out_fraction}: it must lie in [0, 1)")


class LandmarkGraph(nn.Module):
    """The graph; `set_goals` then `subgoals` hand a planner the waypoints toward B goals.

    Buffers: nodes [N, D] (float16: only nearest-node lookups read them), neighbour_index and
    neighbour_weight [N, K], node_episode [N] (nodes of one episode are consecutive, in time order).
    """

    def __init__(self, nodes: Tensor, neighbour_index: Tensor, neighbour_weight: Tensor, node_episode: Tensor,
                 cfg: LandmarkConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("nodes", nodes.half())
        self.register_buffer("neighbour_index", neighbour_index.long())
        self.register_buffer("neighbour_weight", neighbour_weight.float())
        self.register_buffer("node_episode", node_episode.long())
        self._graph = None
        self.goal_nodes: np.ndarray | None = None

    def graph(self):
        """The symmetric weighted adjacency (scipy CSR) over the N nodes, built on first use."""
        if self._graph is None:
            n, k = self.neighbour_index.shape
            ep = self.node_episode.cpu().numpy()
            a = np.flatnonzero(ep[:-1] == ep[1:])  # node a and a + 1: one stride along an episode
            rows = np.concatenate([np.repeat(np.arange(n), k), a])
            cols = np.concatenate([self.neighbour_index.cpu().numpy().ravel(), a + 1])
            weights = np.concatenate([self.neighbour_weight.cpu().numpy().ravel(),
                                      np.full(len(a), float(self.cfg.stride))])
            weights = np.maximum(weights, 1e-3)  # a zero weight would read as "no edge"
            # one entry per pair, the lightest (a COO matrix would sum duplicates); dijkstra below
            # walks each edge either way (directed=False)
            order = np.argsort(weights, kind="stable")
            _, first = np.unique(rows[order] * n + cols[order], return_index=True)
            keep = order[first]
            self._graph = coo_matrix((weights[keep], (rows[keep], cols[keep])), shape=(n, n)).tocsr()
        return self._graph

    @torch.no_grad()
    def nearest(self, z: Tensor) -> np.ndarray:
        """z [B, D] -> [B] index of each one's nearest node (L2)."""
        nodes = self.nodes.to(z.device, torch.float32)  # [N, D]
        return torch.cdist(z.float(), nodes).argmin(dim=1).cpu().numpy()

    def set_goals(self, z_goal: Tensor) -> None:
        """z_goal [B, D]: shortest paths from every node to each goal's nearest node."""
        self.goal_nodes = self.nearest(z_goal)  # [B]
        dist, pred = dijkstra(self.graph(), directed=False, indices=self.goal_nodes, return_predecessors=True)
        self.dist, self.pred = dist, pred  # [B, N]: decisions to the goal node, next node toward it

    def subgoals(self, z_now: Tensor, ahead: float | np.ndarray) -> tuple[Tensor, np.ndarray, np.ndarray]:
        """z_now [B, D], ahead (decisions, one or [B]) -> (subgoal latents [B, D], arrived [B] bool,
        decisions left [B]).

        The subgoal is the first node on the shortest path from z_now's nearest node whose path
        distance from there reaches `ahead` decisions; `arrived` marks the episodes whose goal node
        is within `ahead` (their subgoal row is the goal node: use the goal image instead) or not
        connected to the agent's node (inf decisions left: the graph knows no path)."""
        if self.goal_nodes is None:
            raise RuntimeError("call set_goals before subgoals")
        b = z_now.shape[0]
        node = self.nearest(z_now)  # [B]
        rows = np.arange(b)
        left = self.dist[rows, node]  # [B]
        target = left - ahead  # walk on while the remaining distance is above this
        current = node.copy()
        moving = np.isfinite(left) & (target > 0)
        while moving.any():
            nxt = self.pred[rows[moving], current[moving]]
            current[moving] = nxt
            moving[moving] = self.dist[rows[moving], nxt] > target[moving]
        arrived = ~np.isfinite(left) | (left <= ahead)
        sub = self.nodes[torch.as_tensor(current, device=self.nodes.device)].to(z_now.device, z_now.dtype)
        return sub, arrived, left


@torch.no_grad()
def build_graph(z: Tensor, cfg: LandmarkConfig) -> tuple[LandmarkGraph, dict]:
    """z [E, T, D] latents of the training episodes -> the graph and statistics of it."""
    e_count, _, d = z.shape
    step = (z[:, 1:] - z[:, :-1]).norm(dim=-1)  # [E, T-1]: latent distance of one decision
    scale = float(step.median())
    picked = z[:, :: cfg.stride]  # [E, T', D]
    nodes = picked.reshape(-1, d).float()  # [N, D], episode-major
    node_episode = torch.arange(e_count).repeat_interleave(picked.shape[1])
    n, k = nodes.shape[0], min(cfg.neighbours, nodes.shape[0] - 1)
    sq = (nodes * nodes).sum(1)  # [N]
    index, dist = [], []
    for a in range(0, n, cfg.block):
        d2 = (sq[a : a + cfg.block, None] + sq[None] - 2 * nodes[a : a + cfg.block] @ nodes.T).clamp(min=0)  # [b, N]
        d2[torch.arange(d2.shape[0]), torch.arange(a, a + d2.shape[0])] = float("inf")  # not its own neighbour
        v, i = d2.topk(k, largest=False)
        index.append(i)
        dist.append(v.sqrt())
    index, dist = torch.cat(index), torch.cat(dist)  # [N, K]
    graph = LandmarkGraph(nodes, index, dist / scale, node_episode, cfg)
    stats = {"nodes": n, "step_latent_distance": scale, "neighbour_decisions_median": float((dist / scale).median()),
             "neighbour_decisions_max": float((dist / scale).max())}
    return graph, stats


def fit_landmarks(wm, dataset, cfg: LandmarkConfig, device: torch.device,
                  latents: EpisodeLatents | None = None) -> tuple[LandmarkGraph, dict]:
    """Encodes the training episodes of `dataset` with the frozen world model (or takes their
    latents from `latents`, shared with the other fitted modules) and builds the graph."""
    from world_model.windows import split_episodes

    start = time.perf_counter()
    train_eps, _ = split_episodes(dataset.num_episodes, cfg.held_out_fraction)  # fraction 0: every episode
    z = (latents or EpisodeLatents(wm, dataset, device))(train_eps).cpu()  # [E, T, D]
    encode_s = time.perf_counter() - start
    graph, stats = build_graph(z, cfg)
    stats.update(encode_s=encode_s, build_s=time.perf_counter() - start - encode_s)
    return graph, stats


def landmarks_key(weights_sha256: str, dataset_name: str, cfg: LandmarkConfig) -> str:
    """Cache key: the world model's weights, the dataset folder and the config."""
    identity = {"weights": weights_sha256, "dataset": dataset_name, "landmarks": dataclasses.asdict(cfg)}
    return cache_key(identity)


def save_landmarks(folder: Path, graph: LandmarkGraph, stats: dict) -> None:
    save_fitted(folder, WEIGHTS, MANIFEST, graph, {"config": dataclasses.asdict(graph.cfg), "stats": stats},
                "the landmark graph")


def load_landmarks(folder: Path) -> LandmarkGraph:
    """A saved graph (CPU); refuses files it cannot verify."""
    manifest, state = load_fitted(folder, WEIGHTS, MANIFEST, "the landmark graph")
    return LandmarkGraph(state["nodes"], state["neighbour_index"], state["neighbour_weight"], state["node_episode"],
                         LandmarkConfig(**manifest["config"]))
