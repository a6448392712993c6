"""Config nodes (dataclasses, OmegaConf configs, mappings) as plain JSON-able dicts, so the same
code serves hydra entry points, tests and Python callers."""

from __future__ import annotations

import dataclasses
from typing import Any


def plain(node: Any) -> dict:
    if dataclasses.is_dataclass(node):
        return dataclasses.asdict(node)
    from omegaconf import OmegaConf

    if OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True)
    return dict(node)
