"""Fixture submissions for 05_unfreezing, each with the score an honest grader gives it.

Graded cells: unfreeze_schedule (1 + 2), fine_tune (1 + 3), cache_features (1 + 2): 10 points.
A case that names no score for a cell expects full marks there.
"""
from tests.grading import Case, reference_cases, wrong

ASSIGNMENT = "05_unfreezing"

EXERCISES = {
    name: [f"{name}_visible", f"{name}_hidden"] for name in ["unfreeze_schedule", "fine_tune", "cache_features"]
}

# ---- correct, written differently from the reference ---------------------------------------------------

SCHEDULE_BY_RANGE = '''
def unfreeze_schedule(n_groups, n_epochs):
    countdown = list(range(n_groups - 1, -1, -1))
    return (countdown + [0] * n_epochs)[:n_epochs]
'''

SCHEDULE_NUMPY = '''
import numpy as np

def unfreeze_schedule(n_groups, n_epochs):
    return list(np.clip(n_groups - 1 - np.arange(n_epochs), 0, None))
'''

FINE_TUNE_BY_HAND = '''
def fine_tune(model, groups, train_loader, epochs, base_lr=2e-3, freeze_epochs=1, lr_mult=100, **fit_kwargs):
    k = len(groups)
    history = History()
    if freeze_epochs:
        for g in groups[:-1]:
            for p in g.parameters():
                p.requires_grad = False
        for p in groups[-1].parameters():
            p.requires_grad = True
        fit_one_cycle(model, [(groups[-1], base_lr)], train_loader, freeze_epochs,
                      pct_start=0.99, history=history, **fit_kwargs)
    for g in groups:
        g.requires_grad_(True)
    top = base_lr / 2
    bottom = top / lr_mult
    rates = [top] if k == 1 else [bottom * (top / bottom) ** (i / (k - 1)) for i in range(k)]
    fit_one_cycle(model, [(g, lr) for g, lr in zip(groups, rates)], train_loader, epochs,
                  pct_start=0.3, div=5.0, history=history, **fit_kwargs)
    return history
'''

FINE_TUNE_PHASES = '''
def fine_tune(model, groups, train_loader, epochs, base_lr=2e-3, freeze_epochs=1, lr_mult=100, **fit_kwargs):
    phases = []
    if freeze_epochs > 0:
        phases.append((len(groups) - 1, [base_lr], freeze_epochs, dict(pct_start=0.99)))
    half = base_lr / 2
    phases.append((0, even_mults(half / lr_mult, half, len(groups)), epochs, dict(pct_start=0.3, div=5.0)))
    history = None
    for n, lrs, n_epochs, shape in phases:
        freeze_to(groups, n)
        pairs = list(zip(groups[n:], lrs))
        history = fit_one_cycle(model, pairs, train_loader, n_epochs, history=history, **shape, **fit_kwargs)
    return history
'''

CACHE_RESTORES_MODE = '''
def cache_features(body, loader, device):
    was_training = body.training
    body.train(False)
    rows, ys = [], []
    try:
        with torch.no_grad():
            for images, labels in loader:
                rows.append(body(images.to(device)).cpu().float())
                ys.append(labels.to("cpu", torch.long))
    finally:
        body.train(was_training)
    return torch.cat(rows, dim=0), torch.cat(ys, dim=0)
'''

CACHE_DETACH = '''
def cache_features(body, loader, device):
    body.eval()
    pairs = [(body(x.to(device)).detach().cpu(), torch.as_tensor(y)) for x, y in loader]
    return torch.cat([f for f, _ in pairs]), torch.cat([y for _, y in pairs]).long()
'''

FINE_TUNE_ENUMERATE = '''
def fine_tune(model, groups, train_loader, epochs, base_lr=2e-3, freeze_epochs=1, lr_mult=100, **fit_kwargs):
    history = History()
    last = len(groups) - 1
    if freeze_epochs > 0:
        for i, group in enumerate(groups):
            group.requires_grad_(i == last)
        fit_one_cycle(model, [(groups[last], base_lr)], train_loader, freeze_epochs, pct_start=0.99,
                      history=history, **fit_kwargs)
    for group in groups:
        group.requires_grad_(True)
    peak = base_lr / 2
    layer_lrs = [(g, lr) for g, lr in zip(groups, even_mults(peak / lr_mult, peak, len(groups)))]
    fit_one_cycle(model, layer_lrs, train_loader, epochs, pct_start=0.3, div=5.0, history=history, **fit_kwargs)
    return history
'''

FINE_TUNE_KWARGS_DICTS = '''
def fine_tune(model, groups, train_loader, epochs, base_lr=2e-3, freeze_epochs=1, lr_mult=100, **fit_kwargs):
    k = len(groups)
    history = None
    if freeze_epochs:
        freeze_to(groups, k - 1)
        frozen_phase = dict(fit_kwargs, pct_start=0.99)
        history = fit_one_cycle(model, [(groups[k - 1], base_lr)], train_loader, freeze_epochs, **frozen_phase)
    freeze_to(groups, 0)
    half = 0.5 * base_lr
    unfrozen_phase = dict(fit_kwargs, pct_start=0.3, div=5.0, history=history)
    return fit_one_cycle(model, list(zip(groups, even_mults(half / lr_mult, half, k))), train_loader, epochs,
                         **unfrozen_phase)
'''

CACHE_DECORATED = '''
@torch.no_grad()
def cache_features(body, loader, device):
    mode = body.training
    body.eval()
    chunks, targets = [], []
    for batch in loader:
        images, labels = batch
        chunks.append(body(images.to(device)).to("cpu", torch.float32))
        targets.append(torch.as_tensor(labels, dtype=torch.long).cpu())
    body.train(mode)
    return torch.cat(chunks), torch.cat(targets)
'''

CACHE_SET_GRAD_ENABLED = '''
def cache_features(body, loader, device):
    body.train(False)
    xs, ys = [], []
    with torch.set_grad_enabled(False):
        for images, labels in loader:
            xs.append(body(images.to(device)).detach().cpu().float())
            ys.append(labels.long().cpu())
    return torch.cat(xs).contiguous(), torch.cat(ys)
'''

# ---- wrong, as students really write them ---------------------------------------------------------------

SCHEDULE_ZERO_EPOCHS = '''
def unfreeze_schedule(n_groups, n_epochs):
    schedule = [n_groups - 1]
    for _ in range(n_epochs - 1):
        schedule.append(max(schedule[-1] - 1, 0))
    return schedule
'''

SCHEDULE_NEGATIVE = '''
def unfreeze_schedule(n_groups, n_epochs):
    return [n_groups - 1 - epoch for epoch in range(n_epochs)]
'''

SCHEDULE_COUNTS_TRAINABLE = '''
def unfreeze_schedule(n_groups, n_epochs):
    return [min(epoch + 1, n_groups) for epoch in range(n_epochs)]
'''

FINE_TUNE_NOT_HALVED = '''
def fine_tune(model, groups, train_loader, epochs, base_lr=2e-3, freeze_epochs=1, lr_mult=100, **fit_kwargs):
    history = None
    if freeze_epochs > 0:
        freeze_to(groups, -1)
        history = fit_one_cycle(model, [(groups[-1], base_lr)], train_loader, freeze_epochs, pct_start=0.99, **fit_kwargs)
    freeze_to(groups, 0)
    lrs = even_mults(base_lr / lr_mult, base_lr, len(groups))
    return fit_one_cycle(model, list(zip(groups, lrs)), train_loader, epochs, pct_start=0.3, div=5.0,
                         history=history, **fit_kwargs)
'''

FINE_TUNE_NEVER_FROZEN = '''
def fine_tune(model, groups, train_loader, epochs, base_lr=2e-3, freeze_epochs=1, lr_mult=100, **fit_kwargs):
    history = None
    if freeze_epochs > 0:
        history = fit_one_cycle(model, [(groups[-1], base_lr)] + [(g, base_lr) for g in groups[:-1]],
                                train_loader, freeze_epochs, pct_start=0.99, **fit_kwargs)
    base_lr /= 2
    lrs = even_mults(base_lr / lr_mult, base_lr, len(groups))
    return fit_one_cycle(model, list(zip(groups, lrs)), train_loader, epochs, pct_start=0.3, div=5.0,
                         history=history, **fit_kwargs)
'''

FINE_TUNE_DEFAULT_SHAPE = '''
def fine_tune(model, groups, train_loader, epochs, base_lr=2e-3, freeze_epochs=1, lr_mult=100, **fit_kwargs):
    history = None
    if freeze_epochs > 0:
        freeze_to(groups, -1)
        history = fit_one_cycle(model, [(groups[-1], base_lr)], train_loader, freeze_epochs, **fit_kwargs)
    base_lr /= 2
    freeze_to(groups, 0)
    lrs = even_mults(base_lr / lr_mult, base_lr, len(groups))
    return fit_one_cycle(model, list(zip(groups, lrs)), train_loader, epochs, history=history, **fit_kwargs)
'''

FINE_TUNE_ZERO_FROZEN_EPOCHS = '''
def fine_tune(model, groups, train_loader, epochs, base_lr=2e-3, freeze_epochs=1, lr_mult=100, **fit_kwargs):
    freeze_to(groups, -1)
    history = fit_one_cycle(model, [(groups[-1], base_lr)], train_loader, freeze_epochs, pct_start=0.99, **fit_kwargs)
    base_lr /= 2
    freeze_to(groups, 0)
    lrs = even_mults(base_lr / lr_mult, base_lr, len(groups))
    return fit_one_cycle(model, list(zip(groups, lrs)), train_loader, epochs, pct_start=0.3, div=5.0,
                         history=history, **fit_kwargs)
'''

FINE_TUNE_KWARGS_ONCE = '''
def fine_tune(model, groups, train_loader, epochs, base_lr=2e-3, freeze_epochs=1, lr_mult=100, **fit_kwargs):
    history = None
    if freeze_epochs > 0:
        freeze_to(groups, -1)
        history = fit_one_cycle(model, [(groups[-1], base_lr)], train_loader, freeze_epochs, pct_start=0.99,
                                progress=fit_kwargs.get("progress", True))
    base_lr /= 2
    freeze_to(groups, 0)
    lrs = even_mults(base_lr / lr_mult, base_lr, len(groups))
    return fit_one_cycle(model, list(zip(groups, lrs)), train_loader, epochs, pct_start=0.3, div=5.0,
                         history=history, **fit_kwargs)
'''

CACHE_TRAIN_MODE = '''
def cache_features(body, loader, device):
    feats, labels = [], []
    with torch.no_grad():
        for x, y in loader:
            feats.append(body(x.to(device)).cpu())
            labels.append(y)
    return torch.cat(feats), torch.cat(labels)
'''

CACHE_WITH_GRAPH = '''
def cache_features(body, loader, device):
    body.eval()
    feats, labels = [], []
    for x, y in loader:
        feats.append(body(x.to(device)).cpu())
        labels.append(y)
    return torch.cat(feats), torch.cat(labels)
'''

CACHE_LABELS_FROM_DATASET = '''
def cache_features(body, loader, device):
    body.eval()
    with torch.no_grad():
        feats = torch.cat([body(x.to(device)).cpu() for x, _ in loader])
    labels = torch.stack([torch.as_tensor(y) for _, y in loader.dataset]).long()
    return feats, labels
'''

CACHE_INFERENCE_MODE = '''
def cache_features(body, loader, device):
    body.eval()
    with torch.inference_mode():
        feats = torch.cat([body(x.to(device)).cpu() for x, _ in loader])
        labels = torch.cat([y for _, y in loader]).long()
    return feats, labels
'''

FINE_TUNE_FREEZES_FIRST = '''
def fine_tune(model, groups, train_loader, epochs, base_lr=2e-3, freeze_epochs=1, lr_mult=100, **fit_kwargs):
    history = None
    if freeze_epochs > 0:
        freeze_to(groups, 1)              # freeze the pretrained body, train the head
        history = fit_one_cycle(model, [(groups[-1], base_lr)], train_loader, freeze_epochs, pct_start=0.99,
                                **fit_kwargs)
    base_lr /= 2
    freeze_to(groups, 0)
    lrs = even_mults(base_lr / lr_mult, base_lr, len(groups))
    return fit_one_cycle(model, list(zip(groups, lrs)), train_loader, epochs, pct_start=0.3, div=5.0,
                         history=history, **fit_kwargs)
'''

FINE_TUNE_OWN_FORMULA = '''
def fine_tune(model, groups, train_loader, epochs, base_lr=2e-3, freeze_epochs=1, lr_mult=100, **fit_kwargs):
    history = None
    if freeze_epochs > 0:
        freeze_to(groups, -1)
        history = fit_one_cycle(model, [(groups[-1], base_lr)], train_loader, freeze_epochs, pct_start=0.99,
                                **fit_kwargs)
    hi = base_lr / 2
    lo = hi / lr_mult
    k = len(groups)
    lrs = [lo * (hi / lo) ** (i / (k - 1)) for i in range(k)]
    freeze_to(groups, 0)
    return fit_one_cycle(model, list(zip(groups, lrs)), train_loader, epochs, pct_start=0.3, div=5.0,
                         history=history, **fit_kwargs)
'''

CACHE_FREEZES_BODY = '''
def cache_features(body, loader, device):
    body.eval()
    body.requires_grad_(False)        # frozen: no graph behind the features
    features, labels = [], []
    for x, y in loader:
        features.append(body(x.to(device)).float().cpu())
        labels.append(y.cpu())
    return torch.cat(features), torch.cat(labels).long()
'''


CASES = reference_cases() + [
    Case(
        "correct_a",
        "correct answers written differently: a padded countdown, requires_grad by hand, mode restored",
        replace={
            "unfreeze_schedule_solution": SCHEDULE_BY_RANGE,
            "fine_tune_solution": FINE_TUNE_BY_HAND,
            "cache_features_solution": CACHE_RESTORES_MODE,
        },
    ),
    Case(
        "correct_b",
        "correct answers written differently: numpy ints, a loop over phases, detach() instead of no_grad",
        replace={
            "unfreeze_schedule_solution": SCHEDULE_NUMPY,
            "fine_tune_solution": FINE_TUNE_PHASES,
            "cache_features_solution": CACHE_DETACH,
        },
    ),
    Case(
        "correct_c",
        "correct answers written differently: requires_grad_(i == last) and one History up front, @torch.no_grad()",
        replace={
            "fine_tune_solution": FINE_TUNE_ENUMERATE,
            "cache_features_solution": CACHE_DECORATED,
        },
    ),
    Case(
        "correct_d",
        "correct answers written differently: freeze_to(groups, k - 1) and merged keyword dicts, set_grad_enabled(False)",
        replace={
            "fine_tune_solution": FINE_TUNE_KWARGS_DICTS,
            "cache_features_solution": CACHE_SET_GRAD_ENABLED,
        },
    ),
    wrong("schedule_zero_epochs", "always returns the first epoch, even for zero epochs",
          "unfreeze_schedule_solution", SCHEDULE_ZERO_EPOCHS, {"unfreeze_schedule_hidden": 0}),
    wrong("schedule_negative", "keeps counting down below zero",
          "unfreeze_schedule_solution", SCHEDULE_NEGATIVE, {"unfreeze_schedule_visible": 0, "unfreeze_schedule_hidden": 0}),
    wrong("schedule_counts_trainable", "counts trainable groups instead of frozen ones",
          "unfreeze_schedule_solution", SCHEDULE_COUNTS_TRAINABLE,
          {"unfreeze_schedule_visible": 0, "unfreeze_schedule_hidden": 0}),
    wrong("fine_tune_not_halved", "forgets to halve base_lr before unfreezing",
          "fine_tune_solution", FINE_TUNE_NOT_HALVED, {"fine_tune_visible": 0, "fine_tune_hidden": 0}),
    wrong("fine_tune_never_frozen", "trains every group in the 'frozen' phase",
          "fine_tune_solution", FINE_TUNE_NEVER_FROZEN, {"fine_tune_visible": 0, "fine_tune_hidden": 0}),
    wrong("fine_tune_default_shape", "leaves pct_start and div at their defaults",
          "fine_tune_solution", FINE_TUNE_DEFAULT_SHAPE, {"fine_tune_hidden": 0}),
    wrong("fine_tune_zero_frozen_epochs", "calls fit_one_cycle for 0 frozen epochs, which refuses",
          "fine_tune_solution", FINE_TUNE_ZERO_FROZEN_EPOCHS, {"fine_tune_hidden": 0}),
    wrong("fine_tune_kwargs_once", "passes the caller's keyword arguments to the second phase only",
          "fine_tune_solution", FINE_TUNE_KWARGS_ONCE, {"fine_tune_hidden": 0}),
    wrong("cache_train_mode", "forgets eval(): train-mode BatchNorm features, running statistics moved",
          "cache_features_solution", CACHE_TRAIN_MODE, {"cache_features_visible": 0, "cache_features_hidden": 0}),
    wrong("cache_with_graph", "no torch.no_grad(): every feature drags an autograd graph along",
          "cache_features_solution", CACHE_WITH_GRAPH, {"cache_features_hidden": 0}),
    wrong("cache_labels_from_dataset", "takes labels from the dataset: wrong rows under a shuffled loader",
          "cache_features_solution", CACHE_LABELS_FROM_DATASET, {"cache_features_hidden": 0}),
    wrong("cache_inference_mode", "torch.inference_mode(): features a head cannot be trained on",
          "cache_features_solution", CACHE_INFERENCE_MODE, {"cache_features_hidden": 0}),
    wrong("fine_tune_freezes_first", "freeze_to(groups, 1): freezes the first group only, the middle groups stay trainable",
          "fine_tune_solution", FINE_TUNE_FREEZES_FIRST, {"fine_tune_hidden": 0}),
    wrong("fine_tune_own_formula", "its own geometric formula divides by k - 1: a single group crashes",
          "fine_tune_solution", FINE_TUNE_OWN_FORMULA, {"fine_tune_hidden": 0}),
    wrong("cache_freezes_body", "freezes the body instead of using torch.no_grad(): requires_grad changed as a side effect",
          "cache_features_solution", CACHE_FREEZES_BODY, {"cache_features_hidden": 0}),
]
