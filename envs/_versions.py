"""Checks that the installed mujoco / dm_control pair works together, before either is used.

dm_control 1.0.50 reads MjModel fields that mujoco 4.0 removed, and fails deep inside model
loading with `'MjModel' object has no attribute 'flex_vertedge'`. We check the pair up front so
the user gets one line that says what to install instead.
"""

from importlib import metadata

# The pairs this project is tested with: dm_control version -> the mujoco version it was built for.
SUPPORTED = {"1.0.50": "3.17.0"}


def check_simulator_versions() -> tuple[str, str]:
    """Returns (mujoco_version, dm_control_version); raises ImportError on a known-bad pair."""
    try:
        mujoco_version = metadata.version("mujoco")
        dm_control_version = metadata.version("dm-control")
    except metadata.PackageNotFoundError as err:
        raise ImportError(
            f"{err.name} is not installed; run `pip install -e .` (it pins mujoco==3.17.0 and dm-control==1.0.50)"
        ) from None
    wanted = SUPPORTED.get(dm_control_version)
    if wanted is not None and mujoco_version != wanted:
        raise ImportError(
            f"dm-control {dm_control_version} needs mujoco {wanted}, but mujoco {mujoco_version} is installed; "
            f"run `pip install mujoco=={wanted}`"
        )
    if wanted is None and int(mujoco_version.split(".")[0]) >= 4:
        raise ImportError(
            f"untested pair mujoco {mujoco_version} / dm-control {dm_control_version}; "
            "run `pip install mujoco==3.17.0 dm-control==1.0.50`"
        )
    return mujoco_version, dm_control_version
