"""Fixture submissions for 01_layers, each with the score an honest grader gives it.

Graded cells: count_params_visible (1), count_params_hidden (2), grad_norms_visible (1),
grad_norms_hidden (2), params_reached_visible (1), params_reached_hidden (3): 10 points.
A case that names no score for a cell expects full marks there: a wrong answer to one exercise must
cost that exercise's points and no others.
"""
from tests.grading import Case, reference_cases

ASSIGNMENT = "01_layers"

EXERCISES = {
    "count_params": ["count_params_visible", "count_params_hidden"],
    "grad_norms": ["grad_norms_visible", "grad_norms_hidden"],
    "params_reached": ["params_reached_visible", "params_reached_hidden"],
}

# ---- correct, written differently from the reference ---------------------------------------------------

COUNT_BY_MODULE_IDS = '''
import math

def count_params(model, trainable_only=False):
    unique = {}
    for module in model.modules():
        for p in module.parameters(recurse=False):
            unique[id(p)] = p
    return sum(math.prod(p.shape) for p in unique.values() if p.requires_grad or not trainable_only)
'''

COUNT_WITH_FILTER = '''
def count_params(model, trainable_only=False):
    params = model.parameters()
    if trainable_only:
        params = filter(lambda p: p.requires_grad, params)
    total = 0
    for p in params:
        total += p.numel()
    return total
'''

NORMS_LINALG_LOOP = '''
def grad_norms(model):
    out = {}
    for name, param in model.named_parameters():
        if param.grad is None:
            continue
        out[name] = float(torch.linalg.vector_norm(param.grad.double()))
    return out
'''

NORMS_PURE_PYTHON = '''
import math

def grad_norms(model):
    result = dict()
    for name, p in model.named_parameters():
        if p.grad is not None:
            result[name] = math.sqrt(sum(v * v for v in p.grad.flatten().tolist()))
    return result
'''

REACHED_AUTOGRAD_GRAD = '''
def params_reached(loss, model):
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not loss.requires_grad or not named:
        return []
    grads = torch.autograd.grad(loss, [p for _, p in named], retain_graph=True, allow_unused=True)
    return [n for (n, _), g in zip(named, grads) if g is not None]
'''

REACHED_RECURSIVE_WALK = '''
def params_reached(loss, model):
    found = set()
    visited = set()

    def visit(node):
        if node is None or id(node) in visited:
            return
        visited.add(id(node))
        variable = getattr(node, "variable", None)
        if variable is not None:
            found.add(id(variable))
        for parent, _ in node.next_functions:
            visit(parent)

    visit(loss.grad_fn)
    return [name for name, p in model.named_parameters() if id(p) in found]
'''

NORMS_LINALG_FLAT = '''
def grad_norms(model):
    return {name: torch.linalg.norm(p.grad.reshape(-1)).item()
            for name, p in model.named_parameters() if p.grad is not None}
'''

NORMS_SUM_OF_SQUARES = '''
import math

def grad_norms(model):
    norms = {}
    for name, p in model.named_parameters():
        if p.grad is None:
            continue
        norms[name] = math.sqrt(float((p.grad.double() ** 2).sum()))
    return norms
'''

REACHED_BREADTH_FIRST = '''
from collections import deque

def params_reached(loss, model):
    if loss.grad_fn is None:
        return []
    queue, visited, leaves = deque([loss.grad_fn]), {loss.grad_fn}, set()
    while queue:
        node = queue.popleft()
        if type(node).__name__ == "AccumulateGrad":
            leaves.add(id(node.variable))
        for parent, _ in node.next_functions:
            if parent is not None and parent not in visited:
                visited.add(parent)
                queue.append(parent)
    return [n for n, p in model.named_parameters() if id(p) in leaves]
'''

REACHED_ONE_AT_A_TIME = '''
def params_reached(loss, model):
    names = []
    if not loss.requires_grad:
        return names
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (g,) = torch.autograd.grad(loss, p, retain_graph=True, allow_unused=True)
        if g is not None:
            names.append(name)
    return names
'''

# ---- wrong, as students really write them ---------------------------------------------------------------

COUNT_STATE_DICT = '''
def count_params(model, trainable_only=False):
    if trainable_only:
        return sum(p.numel() for p in model.parameters() if p.requires_grad)
    return sum(t.numel() for t in model.state_dict().values())
'''

COUNT_PER_MODULE = '''
def count_params(model, trainable_only=False):
    total = 0
    for module in model.modules():
        for p in module.parameters(recurse=False):
            if p.requires_grad or not trainable_only:
                total += p.numel()
    return total
'''

COUNT_IGNORES_TRAINABLE_ONLY = '''
def count_params(model, trainable_only=False):
    return sum(p.numel() for p in model.parameters())
'''

NORMS_NONE_AS_ZERO = '''
def grad_norms(model):
    return {n: (p.grad.norm().item() if p.grad is not None else 0.0) for n, p in model.named_parameters()}
'''

NORMS_REQUIRES_GRAD_FILTER = '''
def grad_norms(model):
    return {n: p.grad.norm().item() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}
'''

NORMS_SQUARED = '''
def grad_norms(model):
    return {n: p.grad.pow(2).sum().item() for n, p in model.named_parameters() if p.grad is not None}
'''

REACHED_REQUIRES_GRAD = '''
def params_reached(loss, model):
    return [n for n, p in model.named_parameters() if p.requires_grad]
'''

REACHED_BY_BACKWARD = '''
def params_reached(loss, model):
    loss.backward()
    return [n for n, p in model.named_parameters() if p.grad is not None]
'''

REACHED_BACKWARD_RESTORED = '''
def params_reached(loss, model):
    saved = {n: p.grad for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    loss.backward(retain_graph=True)
    names = [n for n, p in model.named_parameters() if p.grad is not None]
    for n, p in model.named_parameters():
        p.grad = saved[n]
    return names
'''

NORMS_PER_MODULE = '''
def grad_norms(model):
    out = {}
    for prefix, module in model.named_modules():
        for name, p in module.named_parameters(recurse=False):
            if p.grad is not None:
                out[f"{prefix}.{name}" if prefix else name] = p.grad.norm().item()
    return out
'''

REACHED_NONZERO_GRAD = '''
def params_reached(loss, model):
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not loss.requires_grad or not named:
        return []
    grads = torch.autograd.grad(loss, [p for _, p in named], retain_graph=True, allow_unused=True)
    # a gradient of zeros means the parameter took no part
    return [n for (n, _), g in zip(named, grads) if g is not None and bool(g.abs().sum() > 0)]
'''

NORMS_THAT_WARN = '''
import warnings

def grad_norms(model):
    warnings.simplefilter("always")
    warnings.warn("grad_norms: this message goes to stderr, like torch's own warnings", UserWarning)
    return {n: p.grad.norm().item() for n, p in model.named_parameters() if p.grad is not None}
'''

NORMS_WITH_CXX_WARNING = r'''
import sys

def grad_norms(model):
    # what a C++ warning from torch looks like on a notebook's stderr
    sys.stderr.write("[W1124 10:00:00.000000 4242 grad_norms.cpp:7] Warning: printed by C++ code\n")
    sys.stderr.flush()
    return {n: p.grad.norm().item() for n, p in model.named_parameters() if p.grad is not None}
'''

CASES = [
    *reference_cases(),
    Case(
        "correct_a",
        "correct answers written differently: ids over modules, linalg norm in float64, autograd.grad",
        replace={
            "count_params_solution": COUNT_BY_MODULE_IDS,
            "grad_norms_solution": NORMS_LINALG_LOOP,
            "params_reached_solution": REACHED_AUTOGRAD_GRAD,
        },
    ),
    Case(
        "correct_b",
        "correct answers written differently: filter(), norms in pure Python, a recursive graph walk",
        replace={
            "count_params_solution": COUNT_WITH_FILTER,
            "grad_norms_solution": NORMS_PURE_PYTHON,
            "params_reached_solution": REACHED_RECURSIVE_WALK,
        },
    ),
    Case(
        "correct_c",
        "correct answers written differently: linalg.norm of the flattened gradient, a breadth-first graph walk",
        replace={
            "grad_norms_solution": NORMS_LINALG_FLAT,
            "params_reached_solution": REACHED_BREADTH_FIRST,
        },
    ),
    Case(
        "correct_d",
        "correct answers written differently: a float64 sum of squares, autograd.grad one parameter at a time",
        replace={
            "grad_norms_solution": NORMS_SUM_OF_SQUARES,
            "params_reached_solution": REACHED_ONE_AT_A_TIME,
        },
    ),
    Case(
        "count_state_dict",
        "counts state_dict(): buffers and both names of a tied weight",
        replace={"count_params_solution": COUNT_STATE_DICT},
        expect={"count_params_hidden": 0},
    ),
    Case(
        "count_per_module",
        "sums each module's own parameters: a tied weight counts twice",
        replace={"count_params_solution": COUNT_PER_MODULE},
        expect={"count_params_hidden": 0},
    ),
    Case(
        "count_ignores_trainable_only",
        "forgets trainable_only",
        replace={"count_params_solution": COUNT_IGNORES_TRAINABLE_ONLY},
        expect={"count_params_visible": 0, "count_params_hidden": 0},
    ),
    Case(
        "norms_none_as_zero",
        "reports 0.0 for parameters with no gradient instead of leaving them out",
        replace={"grad_norms_solution": NORMS_NONE_AS_ZERO},
        expect={"grad_norms_hidden": 0},
    ),
    Case(
        "norms_requires_grad_filter",
        "filters on requires_grad: a frozen parameter that still has a .grad is dropped",
        replace={"grad_norms_solution": NORMS_REQUIRES_GRAD_FILTER},
        expect={"grad_norms_hidden": 0},
    ),
    Case(
        "norms_squared",
        "returns the squared norm (no square root)",
        replace={"grad_norms_solution": NORMS_SQUARED},
        expect={"grad_norms_visible": 0, "grad_norms_hidden": 0},
    ),
    Case(
        "reached_requires_grad",
        "lists every parameter with requires_grad, ignoring detach and no_grad",
        replace={"params_reached_solution": REACHED_REQUIRES_GRAD},
        expect={"params_reached_visible": 0, "params_reached_hidden": 0},
    ),
    Case(
        "reached_by_backward",
        "runs backward: writes .grad and frees the graph",
        replace={"params_reached_solution": REACHED_BY_BACKWARD},
        expect={"params_reached_visible": 0, "params_reached_hidden": 0},
    ),
    Case(
        "reached_backward_restored",
        "runs backward with retain_graph and restores .grad: crashes when the loss needs no grad",
        replace={"params_reached_solution": REACHED_BACKWARD_RESTORED},
        expect={"params_reached_hidden": 0},
    ),
    Case(
        "norms_per_module",
        "builds names from named_modules(): a tied weight appears twice, under both names",
        replace={"grad_norms_solution": NORMS_PER_MODULE},
        expect={"grad_norms_hidden": 0},
    ),
    Case(
        "reached_nonzero_grad",
        "asks autograd but drops all-zero gradients: a dead ReLU unit or a product with 0 is still reached",
        replace={"params_reached_solution": REACHED_NONZERO_GRAD},
        expect={"params_reached_hidden": 0},
    ),
    Case(
        "edited_locked_test",
        "a wrong count_params, and the hidden-test cell edited to pass: graded by the original test",
        replace={"count_params_solution": COUNT_PER_MODULE},
        edit={"count_params_hidden": "pass  # nothing to see here\n"},
        expect={"count_params_hidden": 0},
    ),
    Case(
        "deleted_tests_correct",
        "correct answers with two test cells deleted: they are put back and run, nothing left to grade by hand",
        delete=("grad_norms_visible", "params_reached_hidden"),
    ),
    Case(
        "deleted_test_wrong",
        "a wrong count_params with its hidden-test cell deleted: the cell is put back and fails",
        replace={"count_params_solution": COUNT_STATE_DICT},
        delete=("count_params_hidden",),
        expect={"count_params_hidden": 0},
    ),
    Case(
        "warns_on_stderr",
        "correct answers, but grad_norms raises a Python warning in the test cells (course shows it on stdout)",
        replace={"grad_norms_solution": NORMS_THAT_WARN},
    ),
    Case(
        "cxx_warning_on_stderr",
        "correct answers, but grad_norms prints a C++-style torch warning on stderr inside the test cells",
        replace={"grad_norms_solution": NORMS_WITH_CXX_WARNING},
    ),
]

# Graded after the others with IgnorePattern switched off: shows that the course's IgnorePattern setting is
# what keeps warnings on stderr from zeroing test cells (nbgrader's default gives those cells 0).
WARNING_CONTROL = Case(
    "cxx_warning_without_ignore_pattern",
    "the same submission as cxx_warning_on_stderr, graded with IgnorePattern disabled: stderr zeroes the cells",
    replace={"grad_norms_solution": NORMS_WITH_CXX_WARNING},
    expect={"grad_norms_visible": 0, "grad_norms_hidden": 0},
)
