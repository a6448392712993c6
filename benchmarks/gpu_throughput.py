"""GPU micro-benchmarks: world-model training throughput and batched rollout latency on CUDA vs CPU."""
import json
import time

import torch

import world_model
from world_model.losses import JEPALoss, LossConfig
from world_model.model import WorldModel, WorldModelConfig


def train_speed(cfg, batch, device, steps=20):
    m = WorldModel(cfg).to(device); lf = JEPALoss(LossConfig(), m).to(device)
    opt = torch.optim.AdamW(list(m.parameters()) + lf.trainable_parameters())
    fr = torch.randint(0, 255, (batch, 5, cfg.image_size, cfg.image_size, 3), dtype=torch.uint8, device=device)
    ac = torch.randn(batch, 4, 2, device=device)
    for i in range(steps + 3):
        if i == 3:
            torch.cuda.synchronize(); t = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = lf(m, fr, ac)
        opt.zero_grad(); out["loss"].backward(); opt.step()
    torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - t)

results = {}
for rep in ("tokens", "pooled"):
    for size in (64, 96):
        cfg = WorldModelConfig(image_size=size, action_dim=2, representation=rep, token_dim=4, stem_channels=16, encoder_width=64, predictor_width=128, predictor_depth=2)
        for batch in (64, 256, 1024):
            results[f"train_{rep}_{size}_b{batch}_clips_per_s"] = round(train_speed(cfg, batch, "cuda"), 1)
# rollout latency: 50 episodes x 300 samples x horizon 5, one CEM iteration's forward
import glob

for path in sorted(glob.glob("runs/*/latest")):
    wm = world_model.load(path)
    for device in ("cpu", "cuda"):
        m = wm.to(device)
        z = torch.randn(15000, 2, m.cfg.latent_dim, device=device); a = torch.rand(15000, 5, 2, device=device) * 2 - 1
        with torch.no_grad():
            for _ in range(3 if device == "cuda" else 1):
                if device == "cuda": torch.cuda.synchronize()
                t = time.perf_counter(); out = m.rollout(z, a)
                if device == "cuda": torch.cuda.synchronize()
                dt = time.perf_counter() - t
        results[f"rollout_15000x5_{path.split('/')[1]}_{device}_ms"] = round(1000 * dt, 1)
        results["rollout_output_shape"] = list(out.shape)
    break
print(json.dumps(results, indent=1))
