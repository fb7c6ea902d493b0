"""Checkpoints that keep the freeze state, which ``model.state_dict()`` alone loses.

A state dict holds tensors: weights and buffers (BatchNorm's running statistics among them). It does not
hold which parameters have ``requires_grad=False``, which modules are in eval mode, or how the optimizer
grouped the parameters and at which learning rates. A checkpoint here saves all of that, by parameter and
module *name*, and ``load_checkpoint`` puts it back on a freshly built model of the same architecture.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

if TYPE_CHECKING:
    from .fit import History

FORMAT = 1


def freeze_state(model: nn.Module) -> dict[str, list[str]]:
    """``{"frozen": [parameter names with requires_grad False], "eval_modules": [module names in eval
    mode]}``; the root module is named ``""``."""
    return {
        "frozen": [n for n, p in model.named_parameters() if not p.requires_grad],
        "eval_modules": [n for n, m in model.named_modules() if not m.training],
    }


def _optimizer_record(model: nn.Module, optimizer: Optimizer) -> dict[str, Any]:
    names = {id(p): n for n, p in model.named_parameters()}
    groups = []
    for group in optimizer.param_groups:
        missing = [p for p in group["params"] if id(p) not in names]
        if missing:
            raise ValueError("the optimizer holds parameters that are not the model's")
        groups.append([names[id(p)] for p in group["params"]])
    return {"class": type(optimizer).__name__, "names": groups, "state_dict": optimizer.state_dict()}


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: Optimizer | None = None,
    scheduler: LRScheduler | None = None,
    history: History | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Save weights, freeze state, optimizer (groups by parameter name, learning rates, moments) and more.

    Written to a temporary file first and then renamed, so an interrupted save never leaves a truncated
    checkpoint where a good one was. ``history`` (a ``course.fit.History``) and ``extra`` (any picklable
    dict of plain values) are stored as given. Returns ``path`` as a ``Path``.

    Saved from ``fit_one_cycle``'s ``on_epoch_end``, it is what ``load_checkpoint`` and then
    ``fit_one_cycle(..., optimizer=, scheduler=, history=)`` continue the run from.
    """
    path = Path(path)
    record = {
        "format": FORMAT,
        "model": model.state_dict(),
        **freeze_state(model),
        "optimizer": None if optimizer is None else _optimizer_record(model, optimizer),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "history": None if history is None else history.as_dict(),
        "extra": extra or {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    torch.save(record, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    make_scheduler: Callable[[Optimizer], LRScheduler] | None = None,
    map_location: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Load a checkpoint saved by ``save_checkpoint`` into ``model``, freeze state and modes included.

    Weights load strictly. Every parameter gets the ``requires_grad`` it had when saved and every module
    its train/eval mode. Returns a dict: ``optimizer`` (a new optimizer of the saved class over the same
    parameters, in the same groups, with the saved learning rates and moments; None if none was saved),
    ``scheduler`` (``make_scheduler(optimizer)`` with the saved state loaded, or the saved state dict when
    ``make_scheduler`` is None), ``history`` and ``extra``.

    Why ``make_scheduler``: building a scheduler such as ``OneCycleLR`` sets the optimizer's learning rates
    to the schedule's start, so one built after loading silently resumes at the wrong rate. Here the
    scheduler is built first and the optimizer's saved state (rates included) is loaded after it.

    To continue a ``fit_one_cycle`` run saved by its ``on_epoch_end`` (same epochs, loaders and options)::

        state = load_checkpoint(path, model, lambda opt: one_cycle_scheduler(opt, epochs * len(train_loader)))
        fit_one_cycle(model, None, train_loader, epochs, valid_loader, device, optimizer=state["optimizer"],
                      scheduler=state["scheduler"], history=state["history"])

    Raises:
        ValueError: not a checkpoint of this format, or it names parameters or modules the model lacks.
    """
    record = torch.load(path, map_location=map_location, weights_only=True)  # never unpickles code
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ValueError(f"{path} is not a course checkpoint (format {FORMAT}); a bare state_dict loads with "
                         "model.load_state_dict(torch.load(path)), and loses the freeze state")
    model.load_state_dict(record["model"], strict=True)
    params = dict(model.named_parameters())
    modules = dict(model.named_modules())
    unknown = [n for n in record["frozen"] if n not in params]
    unknown += [n for n in record["eval_modules"] if n not in modules]
    if unknown:
        raise ValueError(f"checkpoint names what this model lacks (another architecture?): {unknown[:5]}")
    frozen, in_eval = set(record["frozen"]), set(record["eval_modules"])
    for name, p in params.items():
        p.requires_grad_(name not in frozen)
    for name, m in modules.items():
        m.training = name not in in_eval
    optimizer = None
    if record["optimizer"] is not None:
        saved = record["optimizer"]
        cls = getattr(torch.optim, saved["class"])
        hyper = saved["state_dict"]["param_groups"]
        optimizer = cls([
            {**{k: v for k, v in h.items() if k != "params"}, "params": [params[n] for n in names]}
            for names, h in zip(saved["names"], hyper)
        ])
        optimizer.load_state_dict(saved["state_dict"])
    scheduler = record["scheduler"]
    if make_scheduler is not None:
        if optimizer is None or scheduler is None:
            raise ValueError(f"{path} holds no optimizer or scheduler to resume")
        built = make_scheduler(optimizer)
        built.load_state_dict(scheduler)
        optimizer.load_state_dict(record["optimizer"]["state_dict"])  # the rates the schedule had reached
        scheduler = built
    return {"optimizer": optimizer, "scheduler": scheduler, "history": record["history"],
            "extra": record["extra"]}
