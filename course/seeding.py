"""Seeding: one call that makes a notebook's random numbers repeat."""
from __future__ import annotations

import os
import random


def seed_everything(seed: int = 0, deterministic: bool = False) -> int:
    """Seed Python's ``random``, NumPy and PyTorch (CPU and every GPU) with ``seed``.

    Args:
        seed: a non-negative int.
        deterministic: also ask PyTorch for deterministic kernels (slower on a GPU; raises at run time
            where an operation has no deterministic version).

    Returns:
        ``seed``, so a notebook can print what it used.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # seeds every CUDA device too
    os.environ["PYTHONHASHSEED"] = str(seed)  # for worker processes started after this call
    if deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    return seed
