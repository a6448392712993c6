"""Action-conditioned predictor: a window of latents and actions -> the next latent at every step."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from world_model.transformer import AdaLNBlock, causal_mask


class Predictor(nn.Module):
    """Transformer over time with one token per time step.

    Token t is z_t (linear D -> width plus a learned time embedding); the action a_t taken
    after frame t conditions the blocks at token t through AdaLN-zero. Attention is causal
    over time, so the output at t depends on z_<=t and a_<=t only, and output t is the
    prediction of z_{t+1}.
    """

    def __init__(self, dim: int, action_dim: int, width: int = 256, depth: int = 3, heads: int = 4, history: int = 2):
        super().__init__()
        self.dim, self.action_dim, self.history = dim, action_dim, history
        self.embed = nn.Linear(dim, width)
        # positions count from the start of the window, so a window of k < history frames sees
        # the same embeddings as the first k tokens of a full window (both are causal prefixes)
        self.time = nn.Parameter(torch.randn(1, history, width) * 0.02)
        self.action = nn.Sequential(nn.Linear(action_dim, width), nn.SiLU(), nn.Linear(width, width))
        self.blocks = nn.ModuleList(AdaLNBlock(width, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(width, elementwise_affine=False)
        self.final_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.out = nn.Linear(width, dim)
        # zero start: the first prediction is z_t itself (the copy-last baseline) and learning
        # only has to add the change
        for layer in (self.final_modulation[1], self.out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def _check_latents(self, z: Tensor) -> tuple[int, int]:
        """z [B, K, D] with 1 <= K <= history -> (B, K); anything else is refused."""
        if z.ndim != 3 or z.shape[2] != self.dim or not 1 <= z.shape[1] <= self.history:
            raise ValueError(
                f"z must be [B, K, {self.dim}] with 1 <= K <= history={self.history}, got {tuple(z.shape)}; "
                "pass the last `history` latents"
            )
        return z.shape[0], z.shape[1]

    def forward(self, z: Tensor, actions: Tensor) -> Tensor:
        """Args:
            z: latents [B, K, D], K <= history
            actions: [B, K, A]; actions[:, t] is applied after frame t
        Returns:
            predicted next latents [B, K, D]; row t predicts z_{t+1}
        """
        b, k = self._check_latents(z)
        if actions.shape != (b, k, self.action_dim):
            raise ValueError(
                f"actions must be [B, K, A] = {(b, k, self.action_dim)} to match z, got {tuple(actions.shape)}"
            )
        x = self.embed(z) + self.time[:, :k]  # [B, K, width]
        cond = self.action(actions)  # [B, K, width]
        mask = causal_mask(k, z.device)
        for block in self.blocks:
            x = block(x, cond, mask)
        shift, scale = self.final_modulation(cond).chunk(2, dim=-1)
        # predict the change z_{t+1} - z_t and add z_t: consecutive latents are close, so the
        # residual is small and mostly the effect of the action, while the identity part
        # (everything the action does not move) comes for free
        return z + self.out(self.norm(x) * (1 + scale) + shift)

    def rollout(self, z: Tensor, actions: Tensor, horizon: int) -> Tensor:
        """Autoregressive rollout, feeding each prediction back; the same numbers as calling
        forward on a sliding window, with less work per step (rollout_candidates with one
        candidate per history).

        Args:
            z: history latents [B, K, D], K <= history
            actions: [B, K - 1 + horizon, A]; actions[:, t] is applied after the t-th latent of
                the sequence z[:, 0], ..., z[:, K-1], prediction 1, prediction 2, ...
            horizon: H, the number of predictions
        Returns:
            [B, H, D]; row h is the latent after actions[:, K - 1 + h]
        """
        b, k = self._check_latents(z)
        if horizon < 1 or actions.shape != (b, k - 1 + horizon, self.action_dim):
            raise ValueError(
                f"actions must be [B, K-1+H, A] = {(b, k - 1 + horizon, self.action_dim)} with H >= 1, "
                f"got {tuple(actions.shape)}"
            )
        return self.rollout_candidates(z, actions[:, : k - 1], actions[:, None, k - 1 :])[:, 0]  # [B, H, D]

    def rollout_candidates(self, z: Tensor, past: Tensor, actions: Tensor) -> Tensor:
        """Rollouts of N candidate action sequences from each of B histories: the numbers of
        `rollout` on every (history, candidate) pair, with what the candidates of a history share
        computed once for it.

        Shared per history: the embedding of its latents, the modulation of its past actions,
        and the tokens of the first window that carry a past action (under a causal mask they
        attend only to one another). Per rollout, what is independent of the step is computed
        once: the action embedding, every block's modulation for the whole sequence, and the
        embedding of each latent (once, not once per window it appears in). Only the newest
        token's output is projected back to D.

        Args:
            z: history latents [B, K, D], K <= history
            past: [B, K-1, A]; past[:, t] led from z[:, t] to z[:, t+1]
            actions: [B, N, H, A]; actions[:, n, 0] is applied after z[:, K-1]
        Returns:
            [B, N, H, D]; [:, n, h] is the latent after actions[:, n, h]
        """
        b, k = self._check_latents(z)
        if actions.ndim != 4 or actions.shape[0] != b or actions.shape[2] < 1 or actions.shape[3] != self.action_dim:
            raise ValueError(f"actions must be [B, N, H, A] with B={b}, H >= 1, A={self.action_dim}, "
                             f"got {tuple(actions.shape)}")
        if past.shape != (b, k - 1, self.action_dim):
            raise ValueError(f"past must be [B, K-1, A] = {(b, k - 1, self.action_dim)}, got {tuple(past.shape)}")
        n, horizon = actions.shape[1], actions.shape[2]
        cond = self.action(actions.reshape(b * n, horizon, -1))  # [B*N, H, W]
        modulation = [block.modulation(cond) for block in self.blocks]  # each [B*N, H, 6W]
        final_shift, final_scale = self.final_modulation(cond).chunk(2, dim=-1)  # [B*N, H, W] each
        past_cond = self.action(past)  # [B, K-1, W]
        past_modulation = [block.modulation(past_cond) for block in self.blocks]  # each [B, K-1, 6W]
        history = self.embed(z)  # [B, K, W], the latents without their time position
        # the sequence is z[:, 0..K-1] then the predictions; a token is modulated by the action
        # applied after it, so tokens before K-1 are shared and the rest belong to a candidate
        own = history[:, -1:].repeat_interleave(n, dim=0)  # [B*N, 1, W], then the embedded predictions
        last = z[:, -1].repeat_interleave(n, dim=0)  # [B*N, D]
        out = []
        for h in range(horizon):
            window = min(k + h, self.history)
            first = k + h - window  # sequence index of the window's oldest token
            s = max(0, k - 1 - first)  # window tokens with a past action: shared
            prefix = history[:, first : first + s] + self.time[:, :s]  # [B, s, W]
            x = own[:, own.shape[1] - (window - s) :] + self.time[:, s:window]  # [B*N, window - s, W]
            for block, mod, past_mod in zip(self.blocks, modulation, past_modulation):
                prefix, x = block.modulated_prefix(prefix, x, past_mod[:, first : first + s],
                                                   mod[:, h + 1 - x.shape[1] : h + 1], n)
            last = last + self.out(self.norm(x[:, -1]) * (1 + final_scale[:, h]) + final_shift[:, h])  # [B*N, D]
            out.append(last)
            if h + 1 < horizon:
                # slide: the prediction joins the window, the oldest latent leaves it once full
                own = torch.cat([own, self.embed(last)[:, None]], dim=1)[:, -self.history :]
        return torch.stack(out, dim=1).view(b, n, horizon, -1)  # [B*N, H, D] -> [B, N, H, D]
