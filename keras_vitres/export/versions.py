"""TF Serving's version folders, `export_dir/<version>/`, which OpenVINO Model Server and Triton also read.

A version is written under a hidden temporary name and renamed when complete, so a server polling the folder
never loads a half-written model; an existing version is only replaced when asked.
"""

import contextlib
import os
import shutil
import uuid


def next_version(export_dir):
    """The next integer version under `export_dir`: one more than the highest existing, or 1."""
    if not os.path.isdir(export_dir):
        return 1
    versions = [int(n) for n in os.listdir(export_dir) if n.isdigit() and os.path.isdir(os.path.join(export_dir, n))]
    return max(versions, default=0) + 1


def latest_version(export_dir):
    """The folder of the highest integer version under `export_dir`, or None when it has none."""
    version = next_version(export_dir) - 1
    return os.path.join(export_dir, str(version)) if version else None


def resolve_version(export_dir, version, overwrite):
    """The version to write: `version`, checked, or the next free one when it is None."""
    if version is None:
        return next_version(export_dir)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(
            f"`version` must be a positive int (TF Serving's version folders); received version={version!r}."
        )
    if os.path.exists(os.path.join(export_dir, str(version))) and not overwrite:
        raise FileExistsError(
            f"Version {version} already exists in {export_dir!r}; pass overwrite=True to replace it, or "
            f"version=None for the next free version ({next_version(export_dir)})."
        )
    return version


@contextlib.contextmanager
def staged_version(export_dir, version):
    """Yields a hidden staging folder; on success it becomes `export_dir/<version>` (replacing an old one)."""
    os.makedirs(export_dir, exist_ok=True)
    final = os.path.join(export_dir, str(version))
    staging = os.path.join(export_dir, f".tmp-{version}-{uuid.uuid4().hex[:8]}")  # TF Serving ignores non-integers
    try:
        yield staging
        if os.path.exists(final):  # overwrite=True: swap the old version out, then remove it
            retired = os.path.join(export_dir, f".old-{version}-{uuid.uuid4().hex[:8]}")
            os.rename(final, retired)
            os.rename(staging, final)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.rename(staging, final)
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging, ignore_errors=True)
