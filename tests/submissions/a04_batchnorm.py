"""Fixture submissions for 04_batchnorm, each with the score an honest grader gives it.

Graded cells: set_bn_eval (1 + 2), freeze_train_bn (1 + 2), to_frozen_bn (1 + 2), keep_bn_eval (1 + 2):
12 points. A case that names no score for a cell expects full marks there.
"""
from tests.grading import Case, reference_cases, wrong

ASSIGNMENT = "04_batchnorm"

EXERCISES = {
    name: [f"{name}_visible", f"{name}_hidden"]
    for name in ["set_bn_eval", "freeze_train_bn", "to_frozen_bn", "keep_bn_eval"]
}

# ---- correct, written differently from the reference ---------------------------------------------------

BN_EVAL_BY_NAME = '''
def set_bn_eval(model):
    for m in model.modules():
        if "BatchNorm" in type(m).__name__:
            m.eval()
    return model
'''

BN_EVAL_RECURSIVE = '''
from torch.nn.modules.batchnorm import _BatchNorm

def set_bn_eval(model):
    if isinstance(model, _BatchNorm):
        model.train(False)
    for child in model.children():
        set_bn_eval(child)
    return model
'''

FREEZE_BY_IDS = '''
NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)

def freeze(model, train_bn=True):
    keep = set()
    if train_bn:
        for m in model.modules():
            if isinstance(m, NORMS):
                keep.update(id(p) for p in m.parameters(recurse=False))
    for p in model.parameters():
        p.requires_grad = id(p) in keep
    return model
'''

FREEZE_THEN_THAW = '''
def freeze(model, train_bn=True):
    model.requires_grad_(False)
    if train_bn:
        for m in model.modules():
            if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm,
                              nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)):
                m.requires_grad_(True)
    return model
'''

FROZEN_BN_BY_PATH = '''
def to_frozen_bn(model):
    targets = [name for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    for name in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        bn = getattr(parent, attr)
        frozen = FrozenBatchNorm2d(bn.num_features, eps=bn.eps)
        values = {"running_mean": bn.running_mean, "running_var": bn.running_var}
        if bn.weight is not None:
            values.update(weight=bn.weight.detach(), bias=bn.bias.detach())
        for key, value in values.items():
            getattr(frozen, key).copy_(value)
        setattr(parent, attr, frozen)
    return model
'''

FROZEN_BN_STATE_DICT = '''
def to_frozen_bn(model):
    for name, child in list(model.named_children()):
        if type(child) is nn.BatchNorm2d:
            frozen = FrozenBatchNorm2d(child.num_features, child.eps)
            frozen.load_state_dict(child.state_dict(), strict=False)
            model._modules[name] = frozen
        else:
            to_frozen_bn(child)
    return model
'''

KEEP_BY_HOOK = '''
def _eval_before_forward(module, args):
    module.eval()

def keep_bn_eval(model):
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.register_forward_pre_hook(_eval_before_forward)
            m.eval()
    return model
'''

KEEP_BY_WRAPPING_TRAIN = '''
def keep_bn_eval(model):
    plain_train = model.train
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def train(mode=True):
        plain_train(mode)
        for bn in bns:
            bn.eval()
        return model

    model.train = train
    for bn in bns:
        bn.eval()
    return model
'''

FREEZE_OWNER_MAP = '''
NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)

def freeze(model, train_bn=True):
    owner = {}
    for m in model.modules():
        for p in m.parameters(recurse=False):
            owner.setdefault(id(p), m)
    for p in model.parameters():
        p.requires_grad_(bool(train_bn) and isinstance(owner[id(p)], NORMS))
    return model
'''

FREEZE_RECURSIVE = '''
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

def _freeze_tree(module, train_bn):
    trainable = train_bn and isinstance(module, (_BatchNorm, _InstanceNorm, nn.GroupNorm, nn.LayerNorm))
    for _, p in module.named_parameters(recurse=False):
        p.requires_grad = trainable
    for child in module.children():
        _freeze_tree(child, train_bn)

def freeze(model, train_bn=True):
    _freeze_tree(model, train_bn)
    return model
'''

KEEP_HOOK_ONLY = '''
def _to_eval(module, inputs):
    module.training = False

def keep_bn_eval(model):
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.register_forward_pre_hook(_to_eval)
    return model
'''

KEEP_METHOD_TYPE = '''
import types

def _stay_in_eval(self, mode=True):
    return nn.Module.train(self, False)

def keep_bn_eval(model):
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.train = types.MethodType(_stay_in_eval, m)
            m.train()
    return model
'''

# ---- wrong, as students really write them ---------------------------------------------------------------

BN_EVAL_ONLY_2D = '''
def set_bn_eval(model):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
    return model
'''

BN_EVAL_WHOLE_MODEL = '''
def set_bn_eval(model):
    return model.eval()
'''

BN_EVAL_LIKE_FASTAI = '''
from torch.nn.modules.batchnorm import _BatchNorm

def set_bn_eval(model):
    for child in model.children():
        if isinstance(child, _BatchNorm):
            child.train(False)
        set_bn_eval(child)
    return model
'''

BN_EVAL_CHILDREN_ONLY = '''
def set_bn_eval(model):
    for m in model.children():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    return model
'''

FREEZE_BN_ONLY = '''
def freeze(model, train_bn=True):
    for m in model.modules():
        is_bn = isinstance(m, nn.modules.batchnorm._BatchNorm)
        for p in m.parameters(recurse=False):
            p.requires_grad = bool(train_bn and is_bn)
    return model
'''

FREEZE_ONE_DIMENSIONAL = '''
def freeze(model, train_bn=True):
    for p in model.parameters():
        p.requires_grad = bool(train_bn and p.ndim == 1)
    return model
'''

FREEZE_NEVER_THAWS_NORMS = '''
NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)

def freeze(model, train_bn=True):
    for m in model.modules():
        if train_bn and isinstance(m, NORMS):
            continue
        for p in m.parameters(recurse=False):
            p.requires_grad = False
    return model
'''

FROZEN_BN_DEFAULT_EPS = '''
def to_frozen_bn(model):
    for name, child in model.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features)
            frozen.running_mean.copy_(child.running_mean)
            frozen.running_var.copy_(child.running_var)
            if child.affine:
                frozen.weight.copy_(child.weight.detach())
                frozen.bias.copy_(child.bias.detach())
            setattr(model, name, frozen)
        else:
            to_frozen_bn(child)
    return model
'''

FROZEN_BN_TOP_LEVEL = '''
def to_frozen_bn(model):
    for name, child in model.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            frozen.running_mean.copy_(child.running_mean)
            frozen.running_var.copy_(child.running_var)
            if child.affine:
                frozen.weight.copy_(child.weight.detach())
                frozen.bias.copy_(child.bias.detach())
            setattr(model, name, frozen)
    return model
'''

FROZEN_BN_NO_STATS = '''
def to_frozen_bn(model):
    for name, child in model.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            if child.affine:
                frozen.weight.copy_(child.weight.detach())
                frozen.bias.copy_(child.bias.detach())
            setattr(model, name, frozen)
        else:
            to_frozen_bn(child)
    return model
'''

KEEP_ONCE = '''
def keep_bn_eval(model):
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    return model
'''

KEEP_TRAIN_WITHOUT_MODE = '''
def keep_bn_eval(model):
    plain_train = model.train

    def train():
        plain_train()
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        return model

    model.train = train
    return model
'''

KEEP_PATCHES_THE_CLASS = '''
def keep_bn_eval(model):
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            type(m).train = lambda self, mode=True: nn.Module.train(self, False)
            m.eval()
    return model
'''

FREEZE_EVALS_NORMS = '''
NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)

def freeze(model, train_bn=True):
    for m in model.modules():
        is_norm = isinstance(m, NORMS)
        for p in m.parameters(recurse=False):
            p.requires_grad = bool(train_bn and is_norm)
        if is_norm and not train_bn:
            m.eval()            # a frozen norm layer should not update its statistics either
    return model
'''

KEEP_WRAPS_TRAIN_LATE = '''
def keep_bn_eval(model):
    plain_train = model.train
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def train(mode=True):
        plain_train(mode)
        for bn in bns:
            bn.eval()
        return model

    model.train = train           # takes effect at the next model.train()
    return model
'''

KEEP_WRAPPER_RETURNS_NONE = '''
def keep_bn_eval(model):
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    plain_train = model.train

    def train(mode=True):
        plain_train(mode)
        for bn in bns:
            bn.eval()

    model.train = train
    model.train(model.training)
    return model
'''


CASES = [
    *reference_cases(),
    Case(
        "correct_a",
        "correct answers written differently: class names, id sets, module paths, a forward pre-hook",
        replace={
            "set_bn_eval_solution": BN_EVAL_BY_NAME,
            "freeze_train_bn_solution": FREEZE_BY_IDS,
            "to_frozen_bn_solution": FROZEN_BN_BY_PATH,
            "keep_bn_eval_solution": KEEP_BY_HOOK,
        },
    ),
    Case(
        "correct_b",
        "correct answers written differently: recursion, freeze then thaw, load_state_dict, a wrapped train()",
        replace={
            "set_bn_eval_solution": BN_EVAL_RECURSIVE,
            "freeze_train_bn_solution": FREEZE_THEN_THAW,
            "to_frozen_bn_solution": FROZEN_BN_STATE_DICT,
            "keep_bn_eval_solution": KEEP_BY_WRAPPING_TRAIN,
        },
    ),
    Case(
        "correct_c",
        "correct answers written differently: a parameter-to-owner map, a forward pre-hook alone (no eval() up front)",
        replace={
            "freeze_train_bn_solution": FREEZE_OWNER_MAP,
            "keep_bn_eval_solution": KEEP_HOOK_ONLY,
        },
    ),
    Case(
        "correct_d",
        "correct answers written differently: a recursion over children, train bound with types.MethodType",
        replace={
            "freeze_train_bn_solution": FREEZE_RECURSIVE,
            "keep_bn_eval_solution": KEEP_METHOD_TYPE,
        },
    ),
    wrong("bn_eval_only_2d", "only BatchNorm2d: 1d, 3d, Sync and lazy batch norms keep training",
           "set_bn_eval_solution", BN_EVAL_ONLY_2D, {"set_bn_eval_hidden": 0}),
    wrong("bn_eval_whole_model", "model.eval(): Dropout and everything else stop training too",
           "set_bn_eval_solution", BN_EVAL_WHOLE_MODEL, {"set_bn_eval_visible": 0, "set_bn_eval_hidden": 0}),
    wrong("bn_eval_like_fastai", "recurses over children as fastai's set_bn_eval does: a model that is a BatchNorm is missed",
           "set_bn_eval_solution", BN_EVAL_LIKE_FASTAI, {"set_bn_eval_hidden": 0}),
    wrong("bn_eval_children_only", "looks at direct children only: nested BatchNorm is missed",
           "set_bn_eval_solution", BN_EVAL_CHILDREN_ONLY, {"set_bn_eval_hidden": 0}),
    wrong("freeze_bn_only", "keeps batch norm trainable but freezes GroupNorm, LayerNorm and InstanceNorm",
           "freeze_train_bn_solution", FREEZE_BN_ONLY, {"freeze_train_bn_hidden": 0}),
    wrong("freeze_one_dimensional", "keeps every 1-D parameter trainable: biases of other layers too",
           "freeze_train_bn_solution", FREEZE_ONE_DIMENSIONAL, {"freeze_train_bn_visible": 0, "freeze_train_bn_hidden": 0}),
    wrong("freeze_never_thaws_norms", "skips the norms instead of setting them trainable: re-freezing keeps them frozen",
           "freeze_train_bn_solution", FREEZE_NEVER_THAWS_NORMS, {"freeze_train_bn_hidden": 0}),
    wrong("frozen_bn_default_eps", "builds FrozenBatchNorm2d with its default eps",
           "to_frozen_bn_solution", FROZEN_BN_DEFAULT_EPS, {"to_frozen_bn_hidden": 0}),
    wrong("frozen_bn_top_level", "replaces direct children only: nested BatchNorm2d stays",
           "to_frozen_bn_solution", FROZEN_BN_TOP_LEVEL, {"to_frozen_bn_hidden": 0}),
    wrong("frozen_bn_no_stats", "copies weight and bias but not the running statistics",
           "to_frozen_bn_solution", FROZEN_BN_NO_STATS, {"to_frozen_bn_visible": 0, "to_frozen_bn_hidden": 0}),
    wrong("keep_once", "sets eval mode once: the next model.train() undoes it",
           "keep_bn_eval_solution", KEEP_ONCE, {"keep_bn_eval_visible": 0, "keep_bn_eval_hidden": 0}),
    wrong("keep_train_without_mode", "replaces model.train with a function that takes no mode: eval() breaks",
           "keep_bn_eval_solution", KEEP_TRAIN_WITHOUT_MODE, {"keep_bn_eval_hidden": 0}),
    # A class patched in the student's kernel never reaches the judge's own torch (autograder.judge): the model
    # the test trains keeps an unpatched BatchNorm, so the visible test fails too (in the student's own kernel,
    # where the self-check runs, it passes).
    wrong("keep_patches_the_class", "patches BatchNorm's class: every other model's BatchNorm stops training too",
           "keep_bn_eval_solution", KEEP_PATCHES_THE_CLASS, {"keep_bn_eval_visible": 0, "keep_bn_eval_hidden": 0}),
    wrong("freeze_evals_norms", "with train_bn=False also calls eval() on the norm layers: freezing is not eval()",
           "freeze_train_bn_solution", FREEZE_EVALS_NORMS, {"freeze_train_bn_hidden": 0}),
    wrong("keep_wraps_train_late", "wraps model.train but leaves the layers in train mode until the next model.train()",
           "keep_bn_eval_solution", KEEP_WRAPS_TRAIN_LATE, {"keep_bn_eval_hidden": 0}),
    wrong("keep_wrapper_returns_none", "wraps model.train without returning the model: model.eval() gives None",
           "keep_bn_eval_solution", KEEP_WRAPPER_RETURNS_NONE, {"keep_bn_eval_hidden": 0}),
]
