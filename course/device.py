"""Device choice: the GPU when there is one, the CPU when grading, and an override for everything."""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from .config import grading_mode

if TYPE_CHECKING:  # for the annotations only: torch is imported when a device is chosen
    import torch

DEVICE_ENV = "COURSE_DEVICE"


def default_device(environ: Mapping[str, str] | None = None) -> torch.device:
    """Return the ``torch.device`` the notebooks should use.

    Order: ``COURSE_DEVICE`` if set (``cpu``, ``cuda``, ``cuda:1``, ``mps``); the CPU in grading mode, so
    grades do not depend on which machine graded them; else CUDA, then Apple's MPS, then the CPU.

    Args:
        environ: a mapping to read instead of ``os.environ`` (for tests).

    Raises:
        ValueError: ``COURSE_DEVICE`` names a device that is not a device.
        RuntimeError: ``COURSE_DEVICE`` names a device this machine does not have.
    """
    import torch

    env = os.environ if environ is None else environ
    wanted = env.get(DEVICE_ENV, "").strip()
    if wanted:
        try:
            device = torch.device(wanted)
        except RuntimeError as err:
            raise ValueError(f"{DEVICE_ENV}={wanted!r} is not a device: {err}") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"{DEVICE_ENV}={wanted!r} but PyTorch sees no CUDA GPU here")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise RuntimeError(f"{DEVICE_ENV}={wanted!r} but MPS is not available here")
        return device
    if grading_mode(env):
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
