import os

# Headless rendering for every test process (spawned collection workers inherit it).
os.environ.setdefault("MUJOCO_GL", "egl")
