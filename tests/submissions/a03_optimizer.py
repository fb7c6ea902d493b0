"""Fixture submissions for 03_optimizer, each with the score an honest grader gives it.

Graded cells: trainable_params (1 + 2), make_optimizer (1 + 2), even_mults (1 + 1),
discriminative_param_groups (1 + 2), audit_optimizer (1 + 2): 14 points. A case that names no score for a
cell expects full marks there.
"""
from tests.grading import Case, reference_cases, wrong

ASSIGNMENT = "03_optimizer"

EXERCISES = {
    name: [f"{name}_visible", f"{name}_hidden"]
    for name in ["trainable_params", "make_optimizer", "even_mults", "discriminative_param_groups", "audit_optimizer"]
}

# ---- correct, written differently from the reference ---------------------------------------------------

TRAINABLE_FILTER = '''
def trainable_params(model):
    return list(filter(lambda p: p.requires_grad, model.parameters()))
'''

TRAINABLE_LOOP = '''
def trainable_params(model):
    out = []
    for _, param in model.named_parameters():
        if param.requires_grad:
            out.append(param)
    return out
'''

OPTIMIZER_BY_MODULE_TYPE = '''
NORMS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)

def make_optimizer(model, lr, weight_decay):
    decay, no_decay, seen = [], [], set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            (no_decay if isinstance(module, NORMS) or name == "bias" else decay).append(p)
    return torch.optim.AdamW([
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ], lr=lr)
'''

OPTIMIZER_DIM_LOOP = '''
def make_optimizer(model, lr, weight_decay):
    groups = {"decay": [], "no_decay": []}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups["decay" if p.dim() > 1 else "no_decay"].append(p)
    return torch.optim.AdamW(
        [dict(params=groups["no_decay"], weight_decay=0.0), dict(params=groups["decay"], weight_decay=weight_decay)],
        lr=lr,
        weight_decay=weight_decay,
    )
'''

MULTS_GEOMSPACE = '''
import numpy as np

def even_mults(lo, hi, n):
    if n == 1:
        return [hi]
    return np.geomspace(lo, hi, n).tolist()
'''

MULTS_LOGS = '''
import math

def even_mults(lo, hi, n):
    if n < 2:
        return [float(hi)]
    a, b = math.log(lo), math.log(hi)
    return [math.exp(a + (b - a) * i / (n - 1)) for i in range(n)]
'''

DISCRIMINATIVE_EVEN_MULTS = '''
def discriminative_param_groups(groups, lo, hi):
    lrs = even_mults(lo, hi, len(groups))
    result = []
    for i, group in enumerate(groups):
        params = [p for p in group.parameters() if p.requires_grad]
        if len(params) > 0:
            result.append({"params": params, "lr": lrs[i]})
    return result
'''

DISCRIMINATIVE_LOGSPACE = '''
import math

def discriminative_param_groups(groups, lo, hi):
    n = len(groups)
    if n == 1:
        lrs = [hi]
    else:
        lrs = torch.logspace(math.log10(lo), math.log10(hi), n, dtype=torch.float64).tolist()
    return [
        {"params": trainable, "lr": lr}
        for group, lr in zip(groups, lrs)
        if (trainable := [p for p in group.parameters() if p.requires_grad])
    ]
'''

AUDIT_IS = '''
def audit_optimizer(model, optimizer):
    opt_params = [p for group in optimizer.param_groups for p in group["params"]]
    def in_opt(p):
        return any(p is q for q in opt_params)
    frozen, missing = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad and in_opt(p):
            frozen.append(name)
        elif p.requires_grad and not in_opt(p):
            missing.append(name)
    return {"frozen_in_optimizer": frozen, "trainable_missing": missing}
'''

AUDIT_TENSOR_SET = '''
def audit_optimizer(model, optimizer):
    held = set()
    for group in optimizer.param_groups:
        held.update(group["params"])          # tensors hash by identity
    return {
        "frozen_in_optimizer": [n for n, p in model.named_parameters() if p in held and not p.requires_grad],
        "trainable_missing": [n for n, p in model.named_parameters() if p not in held and p.requires_grad],
    }
'''

OPTIMIZER_NAMED_DIM = '''
def make_optimizer(model, lr, weight_decay):
    params = [p for _, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay, "lr": lr},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0, "lr": lr},
    ]
    return torch.optim.AdamW(groups)
'''

OPTIMIZER_NORM_IDS = '''
NORM_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)

def make_optimizer(model, lr, weight_decay):
    no_decay_ids = {id(p) for m in model.modules() if isinstance(m, NORM_LAYERS) for p in m.parameters(recurse=False)}
    no_decay_ids |= {id(p) for n, p in model.named_parameters() if n.endswith("bias")}
    trainable = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW([
        {"params": [p for p in trainable if id(p) not in no_decay_ids], "weight_decay": weight_decay},
        {"params": [p for p in trainable if id(p) in no_decay_ids], "weight_decay": 0.0},
    ], lr=lr)
'''

MULTS_RUNNING_PRODUCT = '''
def even_mults(lo, hi, n):
    if n <= 1:
        return [float(hi)]
    ratio = (hi / lo) ** (1.0 / (n - 1))
    values = [float(lo)]
    while len(values) < n - 1:
        values.append(values[-1] * ratio)
    values.append(float(hi))
    return values
'''

MULTS_NUMPY_LIST = '''
import numpy as np

def even_mults(lo, hi, n):
    return [hi] if n == 1 else list(np.geomspace(lo, hi, num=n))
'''

DISCRIMINATIVE_FROM_TOP = '''
def discriminative_param_groups(groups, lo, hi):
    n = len(groups)
    out = []
    for i, group in enumerate(groups):
        lr = hi if n == 1 else hi * (lo / hi) ** ((n - 1 - i) / (n - 1))
        trainable = list(filter(lambda p: p.requires_grad, group.parameters()))
        if trainable:
            out.append(dict(params=trainable, lr=lr))
    return out
'''

DISCRIMINATIVE_GEOMSPACE_GUARDED = '''
import numpy as np

def discriminative_param_groups(groups, lo, hi):
    lrs = [hi] if len(groups) == 1 else np.geomspace(lo, hi, len(groups)).tolist()
    pairs = [([p for p in g.parameters() if p.requires_grad], lr) for g, lr in zip(groups, lrs)]
    return [{"params": params, "lr": lr} for params, lr in pairs if params]
'''

AUDIT_CHAIN_IDS = '''
import itertools

def audit_optimizer(model, optimizer):
    held = set(map(id, itertools.chain.from_iterable(g["params"] for g in optimizer.param_groups)))
    report = {"frozen_in_optimizer": [], "trainable_missing": []}
    for name, p in model.named_parameters():
        if p.requires_grad != (id(p) in held):
            report["trainable_missing" if p.requires_grad else "frozen_in_optimizer"].append(name)
    return report
'''

AUDIT_NAME_LOOKUP = '''
def audit_optimizer(model, optimizer):
    name_of = {id(p): n for n, p in model.named_parameters()}
    held = {name_of[id(p)] for g in optimizer.param_groups for p in g["params"] if id(p) in name_of}
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad and n in held]
    missing = [n for n, p in model.named_parameters() if p.requires_grad and n not in held]
    return {"frozen_in_optimizer": frozen, "trainable_missing": missing}
'''

# ---- wrong, as students really write them ---------------------------------------------------------------

TRAINABLE_GENERATOR = '''
def trainable_params(model):
    return (p for p in model.parameters() if p.requires_grad)
'''

TRAINABLE_PER_MODULE = '''
def trainable_params(model):
    return [p for m in model.modules() for p in m.parameters(recurse=False) if p.requires_grad]
'''

TRAINABLE_DETACHED = '''
def trainable_params(model):
    return [p.detach() for p in model.parameters() if p.requires_grad]
'''

OPTIMIZER_BIAS_NAMES = '''
def make_optimizer(model, lr, weight_decay):
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in named if not n.endswith("bias")]
    no_decay = [p for n, p in named if n.endswith("bias")]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr)
'''

OPTIMIZER_KEEPS_FROZEN = '''
def make_optimizer(model, lr, weight_decay):
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr)
'''

OPTIMIZER_ADAM_L2 = '''
def make_optimizer(model, lr, weight_decay):
    trainable = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.Adam([{"params": [p for p in trainable if p.ndim >= 2], "weight_decay": weight_decay},
                             {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0}], lr=lr)
'''

MULTS_LINEAR = '''
def even_mults(lo, hi, n):
    if n == 1:
        return [hi]
    return [lo + (hi - lo) * i / (n - 1) for i in range(n)]
'''

MULTS_NO_SINGLE = '''
def even_mults(lo, hi, n):
    step = (hi / lo) ** (1 / (n - 1))
    return [lo * step**i for i in range(n)]
'''

DISCRIMINATIVE_COUNTS_ACTIVE = '''
def discriminative_param_groups(groups, lo, hi):
    active = [g for g in groups if any(p.requires_grad for p in g.parameters())]
    lrs = even_mults(lo, hi, len(active))
    return [{"params": [p for p in g.parameters() if p.requires_grad], "lr": lr} for g, lr in zip(active, lrs)]
'''

DISCRIMINATIVE_KEEPS_FROZEN = '''
def discriminative_param_groups(groups, lo, hi):
    lrs = even_mults(lo, hi, len(groups))
    return [{"params": list(g.parameters()), "lr": lr}
            for g, lr in zip(groups, lrs) if any(p.requires_grad for p in g.parameters())]
'''

DISCRIMINATIVE_REVERSED = '''
def discriminative_param_groups(groups, lo, hi):
    lrs = even_mults(lo, hi, len(groups))[::-1]
    out = []
    for g, lr in zip(groups, lrs):
        params = [p for p in g.parameters() if p.requires_grad]
        if params:
            out.append({"params": params, "lr": lr})
    return out
'''

AUDIT_LIST_MEMBERSHIP = '''
def audit_optimizer(model, optimizer):
    held = [p for g in optimizer.param_groups for p in g["params"]]
    return {
        "frozen_in_optimizer": [n for n, p in model.named_parameters() if not p.requires_grad and p in held],
        "trainable_missing": [n for n, p in model.named_parameters() if p.requires_grad and p not in held],
    }
'''

AUDIT_FIRST_GROUP = '''
def audit_optimizer(model, optimizer):
    held = {id(p) for p in optimizer.param_groups[0]["params"]}
    return {
        "frozen_in_optimizer": [n for n, p in model.named_parameters() if not p.requires_grad and id(p) in held],
        "trainable_missing": [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in held],
    }
'''

AUDIT_OPTIMIZER_ORDER = '''
def audit_optimizer(model, optimizer):
    names = {id(p): n for n, p in model.named_parameters()}
    held = [p for g in optimizer.param_groups for p in g["params"]]
    held_ids = {id(p) for p in held}
    return {
        "frozen_in_optimizer": [names[id(p)] for p in held if id(p) in names and not p.requires_grad],
        "trainable_missing": [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in held_ids],
    }
'''

OPTIMIZER_PER_MODULE_DUPLICATES = '''
def make_optimizer(model, lr, weight_decay):
    decay, no_decay = [], []
    for module in model.modules():
        for p in module.parameters(recurse=False):
            if p.requires_grad:
                (decay if p.ndim >= 2 else no_decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr)
'''

MULTS_GENERATOR = '''
def even_mults(lo, hi, n):
    if n == 1:
        return [hi]
    step = (hi / lo) ** (1 / (n - 1))
    return (lo * step**i for i in range(n))
'''

MULTS_NDARRAY = '''
import numpy as np

def even_mults(lo, hi, n):
    if n == 1:
        return [hi]
    return np.geomspace(lo, hi, n)
'''

MULTS_TENSOR_ITEMS = '''
import math

def even_mults(lo, hi, n):
    if n == 1:
        return [hi]
    return list(torch.logspace(math.log10(lo), math.log10(hi), n, dtype=torch.float64))
'''

DISCRIMINATIVE_GEOMSPACE = '''
import numpy as np

def discriminative_param_groups(groups, lo, hi):
    lrs = np.geomspace(lo, hi, len(groups)).tolist()
    out = []
    for group, lr in zip(groups, lrs):
        params = [p for p in group.parameters() if p.requires_grad]
        if params:
            out.append({"params": params, "lr": lr})
    return out
'''

AUDIT_BY_SHAPE = '''
def audit_optimizer(model, optimizer):
    # tensors cannot be compared with ==, so match them by shape
    shapes = [tuple(p.shape) for g in optimizer.param_groups for p in g["params"]]
    named = list(model.named_parameters())
    return {
        "frozen_in_optimizer": [n for n, p in named if not p.requires_grad and tuple(p.shape) in shapes],
        "trainable_missing": [n for n, p in named if p.requires_grad and tuple(p.shape) not in shapes],
    }
'''

AUDIT_BY_VALUE = '''
def audit_optimizer(model, optimizer):
    held = [p for g in optimizer.param_groups for p in g["params"]]
    def held_(p):
        return any(q.shape == p.shape and torch.equal(q, p) for q in held)
    named = list(model.named_parameters())
    return {
        "frozen_in_optimizer": [n for n, p in named if not p.requires_grad and held_(p)],
        "trainable_missing": [n for n, p in named if p.requires_grad and not held_(p)],
    }
'''

AUDIT_MISSING_ANY_FLAG = '''
def audit_optimizer(model, optimizer):
    in_opt = {id(p) for group in optimizer.param_groups for p in group["params"]}
    named = list(model.named_parameters())
    return {
        "frozen_in_optimizer": [n for n, p in named if not p.requires_grad and id(p) in in_opt],
        "trainable_missing": [n for n, p in named if id(p) not in in_opt],
    }
'''


CASES = [
    *reference_cases(),
    Case(
        "correct_a",
        "correct answers written differently: filter(), module types, np.geomspace, even_mults, identity tests",
        replace={
            "trainable_params_solution": TRAINABLE_FILTER,
            "make_optimizer_solution": OPTIMIZER_BY_MODULE_TYPE,
            "even_mults_solution": MULTS_GEOMSPACE,
            "discriminative_param_groups_solution": DISCRIMINATIVE_EVEN_MULTS,
            "audit_optimizer_solution": AUDIT_IS,
        },
    ),
    Case(
        "correct_b",
        "correct answers written differently: loops, dim() > 1, logs, float64 logspace, a set of tensors",
        replace={
            "trainable_params_solution": TRAINABLE_LOOP,
            "make_optimizer_solution": OPTIMIZER_DIM_LOOP,
            "even_mults_solution": MULTS_LOGS,
            "discriminative_param_groups_solution": DISCRIMINATIVE_LOGSPACE,
            "audit_optimizer_solution": AUDIT_TENSOR_SET,
        },
    ),
    Case(
        "correct_c",
        "correct answers written differently: dim() in per-group dicts, a running product, rates from the top, chained ids",
        replace={
            "make_optimizer_solution": OPTIMIZER_NAMED_DIM,
            "even_mults_solution": MULTS_RUNNING_PRODUCT,
            "discriminative_param_groups_solution": DISCRIMINATIVE_FROM_TOP,
            "audit_optimizer_solution": AUDIT_CHAIN_IDS,
        },
    ),
    Case(
        "correct_d",
        "correct answers written differently: norm-layer ids, list(np.geomspace), geomspace guarded for one group, names",
        replace={
            "make_optimizer_solution": OPTIMIZER_NORM_IDS,
            "even_mults_solution": MULTS_NUMPY_LIST,
            "discriminative_param_groups_solution": DISCRIMINATIVE_GEOMSPACE_GUARDED,
            "audit_optimizer_solution": AUDIT_NAME_LOOKUP,
        },
    ),
    wrong("trainable_generator", "returns a generator, which an optimizer consumes once",
           "trainable_params_solution", TRAINABLE_GENERATOR, {"trainable_params_visible": 0, "trainable_params_hidden": 0}),
    wrong("trainable_per_module", "collects each module's own parameters: a tied weight twice",
           "trainable_params_solution", TRAINABLE_PER_MODULE, {"trainable_params_hidden": 0}),
    wrong("trainable_detached", "returns detached copies, which an optimizer would update instead of the model",
           "trainable_params_solution", TRAINABLE_DETACHED, {"trainable_params_visible": 0, "trainable_params_hidden": 0}),
    wrong("optimizer_bias_names", "no decay for names ending in bias only: BatchNorm weights are decayed",
           "make_optimizer_solution", OPTIMIZER_BIAS_NAMES, {"make_optimizer_hidden": 0}),
    wrong("optimizer_keeps_frozen", "puts frozen parameters in the optimizer",
           "make_optimizer_solution", OPTIMIZER_KEEPS_FROZEN, {"make_optimizer_hidden": 0}),
    wrong("optimizer_adam_l2", "torch.optim.Adam: L2 penalty in the gradient, not decoupled weight decay",
           "make_optimizer_solution", OPTIMIZER_ADAM_L2, {"make_optimizer_visible": 0, "make_optimizer_hidden": 0}),
    wrong("mults_linear", "evenly spaced on a linear scale",
           "even_mults_solution", MULTS_LINEAR, {"even_mults_visible": 0, "even_mults_hidden": 0}),
    wrong("mults_no_single", "divides by n - 1: n == 1 crashes",
           "even_mults_solution", MULTS_NO_SINGLE, {"even_mults_hidden": 0}),
    wrong("discriminative_counts_active", "spreads the rates over the trainable groups only",
           "discriminative_param_groups_solution", DISCRIMINATIVE_COUNTS_ACTIVE, {"discriminative_param_groups_hidden": 0}),
    wrong("discriminative_keeps_frozen", "puts a partly frozen group's frozen parameters in its dict",
           "discriminative_param_groups_solution", DISCRIMINATIVE_KEEPS_FROZEN, {"discriminative_param_groups_hidden": 0}),
    wrong("discriminative_reversed", "gives the largest rate to the first group",
           "discriminative_param_groups_solution", DISCRIMINATIVE_REVERSED,
           {"discriminative_param_groups_visible": 0, "discriminative_param_groups_hidden": 0}),
    wrong("audit_list_membership", "p in a list of tensors compares values with ==, which fails",
           "audit_optimizer_solution", AUDIT_LIST_MEMBERSHIP, {"audit_optimizer_visible": 0, "audit_optimizer_hidden": 0}),
    wrong("audit_first_group", "looks at the first parameter group only",
           "audit_optimizer_solution", AUDIT_FIRST_GROUP, {"audit_optimizer_hidden": 0}),
    wrong("audit_optimizer_order", "lists frozen parameters in the optimizer's order",
           "audit_optimizer_solution", AUDIT_OPTIMIZER_ORDER, {"audit_optimizer_hidden": 0}),
    wrong("optimizer_per_module_duplicates", "collects each module's own parameters: a tied weight goes in twice",
           "make_optimizer_solution", OPTIMIZER_PER_MODULE_DUPLICATES, {"make_optimizer_hidden": 0}),
    wrong("mults_generator", "returns a generator instead of a list",
           "even_mults_solution", MULTS_GENERATOR, {"even_mults_visible": 0, "even_mults_hidden": 0}),
    wrong("mults_ndarray", "returns np.geomspace's array instead of a list",
           "even_mults_solution", MULTS_NDARRAY, {"even_mults_visible": 0, "even_mults_hidden": 0}),
    wrong("mults_tensor_items", "list(torch.logspace(...)): a list of 0-d tensors, not floats",
           "even_mults_solution", MULTS_TENSOR_ITEMS, {"even_mults_hidden": 0}),
    wrong("discriminative_geomspace", "np.geomspace(lo, hi, n): a single group gets lo instead of hi",
           "discriminative_param_groups_solution", DISCRIMINATIVE_GEOMSPACE, {"discriminative_param_groups_hidden": 0}),
    wrong("audit_by_shape", "matches parameters by shape: two layers of one shape are confused",
           "audit_optimizer_solution", AUDIT_BY_SHAPE, {"audit_optimizer_hidden": 0}),
    wrong("audit_by_value", "matches parameters by value (torch.equal): two equal layers are confused",
           "audit_optimizer_solution", AUDIT_BY_VALUE, {"audit_optimizer_hidden": 0}),
    wrong("audit_missing_any_flag", "trainable_missing lists every parameter not in the optimizer, frozen ones too",
           "audit_optimizer_solution", AUDIT_MISSING_ANY_FLAG, {"audit_optimizer_hidden": 0}),
]
