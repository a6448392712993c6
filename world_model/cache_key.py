"""The name of a cache entry (a dataset, a world model, a fitted module) from what determines it.

Every cache under cache_root names its entries `<env>-<key>`, the key computed here from a JSON
description of everything the entry depends on (configs, the hash of the weights it was fitted on,
the dataset's name). Equal descriptions give equal keys on every machine and Python version, since
the JSON is written with sorted keys; ten hex digits keep folder names short, and a collision among
the few hundred entries of one cache is about one in 10^9.
"""

from __future__ import annotations

import hashlib
import json


def cache_key(identity: dict) -> str:
    """identity: JSON-serialisable description of a cache entry -> its key, 10 hex digits."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]
