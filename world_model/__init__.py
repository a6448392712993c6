"""JEPA world model: pixels -> latents, action-conditioned latent prediction, training loss, checkpoints."""

from world_model.checkpoint import CheckpointError, load, load_training_state, read_manifest, save
from world_model.losses import JEPALoss, LossConfig
from world_model.model import WorldModel, WorldModelConfig

__all__ = [
    "CheckpointError", "JEPALoss", "LossConfig", "WorldModel", "WorldModelConfig",
    "load", "load_training_state", "read_manifest", "save",
]
