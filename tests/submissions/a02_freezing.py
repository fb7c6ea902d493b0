"""Fixture submissions for 02_freezing, each with the score an honest grader gives it.

Graded cells: freeze_visible (1), freeze_hidden (2), freeze_to_visible (1), freeze_to_hidden (2),
layer_groups_visible (1), layer_groups_hidden (2), changed_params_visible (1), changed_params_hidden (2):
12 points. A case that names no score for a cell expects full marks there.
"""
from tests.grading import Case, reference_cases, wrong

ASSIGNMENT = "02_freezing"

EXERCISES = {
    "freeze": ["freeze_visible", "freeze_hidden"],
    "freeze_to": ["freeze_to_visible", "freeze_to_hidden"],
    "layer_groups": ["layer_groups_visible", "layer_groups_hidden"],
    "changed_params": ["changed_params_visible", "changed_params_hidden"],
}

# ---- correct, written differently from the reference ---------------------------------------------------

FREEZE_METHOD = '''
def freeze(module):
    return module.requires_grad_(False)

def unfreeze(module):
    return module.requires_grad_(True)
'''

FREEZE_PER_MODULE = '''
def _set(module, flag):
    for m in module.modules():
        for p in m.parameters(recurse=False):
            p.requires_grad = flag
    return module

def freeze(module):
    return _set(module, False)

def unfreeze(module):
    return _set(module, True)
'''

FREEZE_TO_INDEX_SET = '''
def freeze_to(groups, n):
    frozen = set(range(len(groups))[:n])
    for i, group in enumerate(groups):
        group.requires_grad_(i not in frozen)
'''

FREEZE_TO_NORMALISED = '''
def freeze_to(groups, n):
    if n < 0:
        n = max(len(groups) + n, 0)
    for i, group in enumerate(groups):
        for p in group.parameters():
            p.requires_grad = i >= n
'''

GROUPS_COARSE = '''
def layer_groups(model):
    body_low = nn.ModuleList([model.conv1, model.bn1, model.layer1, model.layer2])
    body_high = nn.Sequential(model.layer3, model.layer4)
    return [body_low, body_high, model.fc]
'''

GROUPS_FROM_CHILDREN = '''
def layer_groups(model):
    stem, groups = [], []
    for name, child in model.named_children():
        if not any(True for _ in child.parameters()):
            continue
        if name in ("conv1", "bn1"):
            stem.append(child)
        else:
            groups.append(child)
    return [nn.Sequential(*stem)] + groups
'''

CHANGED_ANY = '''
def changed_params(before, model):
    return [n for n, p in model.named_parameters() if (before[n] != p.detach()).any()]
'''

CHANGED_TOLIST = '''
def changed_params(before, model):
    out = []
    for name, p in model.named_parameters():
        if before[name].flatten().tolist() != p.detach().flatten().tolist():
            out.append(name)
    return out
'''

CHANGED_NE_ANY = '''
def changed_params(before, model):
    return [name for name, p in model.named_parameters() if torch.ne(before[name], p.detach()).any().item()]
'''

CHANGED_NOT_ALL_EQUAL = '''
def changed_params(before, model):
    changed = []
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not bool((before[name] == p).all()):
                changed.append(name)
    return changed
'''

# ---- wrong, as students really write them ---------------------------------------------------------------

FREEZE_ATTRIBUTE = '''
def freeze(module):
    module.requires_grad = False
    return module

def unfreeze(module):
    module.requires_grad = True
    return module
'''

FREEZE_CHILDREN_ONLY = '''
def freeze(module):
    for layer in module.children():
        for p in layer.parameters():
            p.requires_grad = False
    return module

def unfreeze(module):
    for layer in module.children():
        for p in layer.parameters():
            p.requires_grad = True
    return module
'''

FREEZE_WITH_EVAL = '''
def freeze(module):
    for p in module.parameters():
        p.requires_grad = False
    return module.eval()

def unfreeze(module):
    for p in module.parameters():
        p.requires_grad = True
    return module.train()
'''

FREEZE_TO_NEVER_UNFREEZES = '''
def freeze_to(groups, n):
    for g in groups[:n]:
        g.requires_grad_(False)
'''

FREEZE_TO_INDEX_COMPARE = '''
def freeze_to(groups, n):
    for i, g in enumerate(groups):
        g.requires_grad_(not i < n)
'''

FREEZE_TO_MODULO = '''
def freeze_to(groups, n):
    n = n % len(groups)
    for g in groups[:n]:
        g.requires_grad_(False)
    for g in groups[n:]:
        g.requires_grad_(True)
'''

GROUPS_ALL_CHILDREN = '''
def layer_groups(model):
    return list(model.children())
'''

GROUPS_NO_BN1 = '''
def layer_groups(model):
    return [model.conv1, model.layer1, model.layer2, model.layer3, model.layer4, model.fc]
'''

GROUPS_HEAD_MERGED = '''
def layer_groups(model):
    stem = nn.Sequential(model.conv1, model.bn1)
    return [stem, model.layer1, model.layer2, model.layer3, nn.Sequential(model.layer4, model.fc)]
'''

CHANGED_ALLCLOSE = '''
def changed_params(before, model):
    return [n for n, p in model.named_parameters() if not torch.allclose(before[n], p)]
'''

CHANGED_SNAPSHOT_ORDER = '''
def changed_params(before, model):
    params = dict(model.named_parameters())
    return [n for n, t in before.items() if not torch.equal(t, params[n].detach())]
'''

CHANGED_BY_SUM = '''
def changed_params(before, model):
    return [n for n, p in model.named_parameters() if before[n].sum() != p.sum()]
'''

CHANGED_TRAINABLE_ONLY = '''
def changed_params(before, model):
    # frozen parameters cannot change, so only the trainable ones need checking
    return [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(before[n], p.detach())]
'''


CASES = [
    *reference_cases(),
    Case(
        "correct_a",
        "correct answers written differently: Module.requires_grad_, an index set, coarse groups, any()",
        replace={
            "freeze_solution": FREEZE_METHOD,
            "freeze_to_solution": FREEZE_TO_INDEX_SET,
            "layer_groups_solution": GROUPS_COARSE,
            "changed_params_solution": CHANGED_ANY,
        },
    ),
    Case(
        "correct_b",
        "correct answers written differently: per-module loops, a normalised n, named_children, tolist()",
        replace={
            "freeze_solution": FREEZE_PER_MODULE,
            "freeze_to_solution": FREEZE_TO_NORMALISED,
            "layer_groups_solution": GROUPS_FROM_CHILDREN,
            "changed_params_solution": CHANGED_TOLIST,
        },
    ),
    Case(
        "correct_c",
        "correct answers written differently: torch.ne(...).any() for changed_params",
        replace={"changed_params_solution": CHANGED_NE_ANY},
    ),
    Case(
        "correct_d",
        "correct answers written differently: not (before == p).all() under no_grad for changed_params",
        replace={"changed_params_solution": CHANGED_NOT_ALL_EQUAL},
    ),
    wrong("freeze_attribute", "module.requires_grad = False: a plain attribute, nothing frozen",
           "freeze_solution", FREEZE_ATTRIBUTE, {"freeze_visible": 0, "freeze_hidden": 0}),
    wrong("freeze_children_only", "loops over children: a layer's own parameters are never frozen",
           "freeze_solution", FREEZE_CHILDREN_ONLY, {"freeze_hidden": 0}),
    wrong("freeze_with_eval", "freeze() also calls eval(): freezing is not evaluation mode",
           "freeze_solution", FREEZE_WITH_EVAL, {"freeze_hidden": 0}),
    wrong("freeze_to_never_unfreezes", "freezes groups[:n] but never unfreezes groups[n:]",
           "freeze_to_solution", FREEZE_TO_NEVER_UNFREEZES, {"freeze_to_visible": 0, "freeze_to_hidden": 0}),
    wrong("freeze_to_index_compare", "compares i < n: a negative n freezes nothing",
           "freeze_to_solution", FREEZE_TO_INDEX_COMPARE, {"freeze_to_visible": 0, "freeze_to_hidden": 0}),
    wrong("freeze_to_modulo", "n % len(groups): n equal to or beyond the length wraps around",
           "freeze_to_solution", FREEZE_TO_MODULO, {"freeze_to_hidden": 0}),
    wrong("groups_all_children", "list(model.children()): relu, maxpool and avgpool are groups without parameters",
           "layer_groups_solution", GROUPS_ALL_CHILDREN, {"layer_groups_hidden": 0}),
    wrong("groups_no_bn1", "forgets the stem's BatchNorm: bn1 is in no group",
           "layer_groups_solution", GROUPS_NO_BN1, {"layer_groups_visible": 0, "layer_groups_hidden": 0}),
    wrong("groups_head_merged", "puts fc in one group with layer4: the head cannot be trained alone",
           "layer_groups_solution", GROUPS_HEAD_MERGED, {"layer_groups_hidden": 0}),
    wrong("changed_allclose", "torch.allclose: small changes pass for no change",
           "changed_params_solution", CHANGED_ALLCLOSE, {"changed_params_hidden": 0}),
    wrong("changed_snapshot_order", "returns names in the snapshot's order",
           "changed_params_solution", CHANGED_SNAPSHOT_ORDER, {"changed_params_hidden": 0}),
    wrong("changed_by_sum", "compares sums: changes that cancel out are missed",
           "changed_params_solution", CHANGED_BY_SUM, {"changed_params_hidden": 0}),
    wrong("changed_trainable_only", "compares trainable parameters only: a frozen parameter that moved anyway is missed",
           "changed_params_solution", CHANGED_TRAINABLE_ONLY, {"changed_params_hidden": 0}),
]
