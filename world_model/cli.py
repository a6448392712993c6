"""What the command-line entry points share: an expected failure ends in one line, not a traceback."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from world_model.atomic import NotWritable, WriteError


class SettingError(ValueError):
    """A setting refused before any work starts; its message names the setting and what it must be."""


@contextmanager
def one_line_errors(*expected: type[BaseException]) -> Iterator[None]:
    """Inside a hydra task: the `expected` errors (and WriteError, a failed write, NotWritable,
    a folder found unwritable before the work, and SettingError, a refused setting) leave the
    process as `error: <message>` on stderr and exit status 1; their messages say what happened
    and what to do, so hydra's traceback would only bury them. HYDRA_FULL_ERROR=1 keeps the
    traceback; any other exception keeps it too."""
    try:
        yield
    except (WriteError, NotWritable, SettingError, *expected) as e:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        raise SystemExit(f"error: {e}") from None
