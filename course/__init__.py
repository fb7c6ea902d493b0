"""Helpers for the notebooks of the course on freezing and unfreezing layers.

Importing ``course`` is cheap: it does not import matplotlib, torchvision or timm; the modules that
need them import them when they are used. Nothing here solves an exercise.
"""
import os as _os

from .config import FAST_ENV, grading_mode, show_warnings_on_stdout
from .device import default_device
from .seeding import seed_everything

__all__ = ["FAST_ENV", "grading_mode", "default_device", "seed_everything"]
__version__ = "0.1.0"

if _os.environ.get("NBGRADER_EXECUTION"):
    show_warnings_on_stdout()
