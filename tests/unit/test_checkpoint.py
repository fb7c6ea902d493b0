"""course.checkpoint: the freeze state, modes and optimizer survive a save and a load; a state_dict does not;
fit_one_cycle continues a run from a checkpoint."""
import pytest
import torch
import torch.nn.functional as F

from course.checkpoint import freeze_state, load_checkpoint, save_checkpoint
from course.fit import History, fit_one_cycle, one_cycle_scheduler
from course.models import tiny_cnn


def batches(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 3, 8, 8, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(n)]


def half_frozen(seed=0):
    torch.manual_seed(seed)
    model = tiny_cnn(3)
    model.body[0].requires_grad_(False)
    model.body[1].requires_grad_(False)
    model.body[1].eval()
    return model


def steps(model, opt, sched, data):
    for x, y in data:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        sched.step()


def make_opt(model, total):
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": params[:1], "lr": 1e-3}, {"params": params[1:], "lr": 1e-2}])
    return opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[1e-3, 1e-2], total_steps=total)


def test_resuming_from_a_checkpoint_is_bit_for_bit_the_uninterrupted_run(tmp_path):
    """Train 6 steps straight, or 3 + save + load into a fresh model + 3: identical weights and statistics."""
    data = batches()
    straight = half_frozen()
    opt, sched = make_opt(straight, 6)
    steps(straight, opt, sched, data)

    first = half_frozen()
    opt, sched = make_opt(first, 6)
    steps(first, opt, sched, data[:3])
    save_checkpoint(tmp_path / "ck.pt", first, opt, sched, extra={"step": 3})

    resumed = tiny_cnn(3)  # fresh: everything trainable, train mode, other weights
    torch.manual_seed(99)
    state = load_checkpoint(tmp_path / "ck.pt", resumed, lambda o: torch.optim.lr_scheduler.OneCycleLR(
        o, max_lr=[1e-3, 1e-2], total_steps=6))
    assert state["extra"] == {"step": 3}
    steps(resumed, state["optimizer"], state["scheduler"], data[3:])
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs after resuming"


def test_a_scheduler_built_after_loading_would_resume_at_the_wrong_rate(tmp_path):
    """The control for make_scheduler: OneCycleLR built on a loaded optimizer resets its learning rates."""
    model = half_frozen()
    opt, sched = make_opt(model, 6)
    steps(model, opt, sched, batches(3))
    save_checkpoint(tmp_path / "ck.pt", model, opt, sched)
    late = load_checkpoint(tmp_path / "ck.pt", tiny_cnn(3))["optimizer"]
    torch.optim.lr_scheduler.OneCycleLR(late, max_lr=[1e-3, 1e-2], total_steps=6)
    right = load_checkpoint(tmp_path / "ck.pt", tiny_cnn(3), lambda o: torch.optim.lr_scheduler.OneCycleLR(
        o, max_lr=[1e-3, 1e-2], total_steps=6))["optimizer"]
    want = [g["lr"] for g in opt.param_groups]
    assert [g["lr"] for g in right.param_groups] == want
    assert [g["lr"] for g in late.param_groups] != want


def test_freeze_state_and_modes_come_back_and_a_state_dict_loses_them(tmp_path):
    model = half_frozen()
    save_checkpoint(tmp_path / "ck.pt", model)
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    bare = tiny_cnn(3)
    bare.load_state_dict(torch.load(tmp_path / "sd.pt"))
    assert freeze_state(bare) == {"frozen": [], "eval_modules": []}, \
        "the control: a state_dict keeps no freeze"
    restored = tiny_cnn(3)
    out = load_checkpoint(tmp_path / "ck.pt", restored)
    assert freeze_state(restored) == freeze_state(model) == {
        "frozen": ["body.0.weight", "body.1.weight", "body.1.bias"], "eval_modules": ["body.1"]}
    assert out["optimizer"] is None and out["history"] is None


def loader(n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)


def bn_eval(model):
    model.body[1].eval()


def test_fit_one_cycle_continues_from_a_checkpoint_as_if_never_interrupted(tmp_path):
    """5 epochs in one call, saving after epoch 2; then load into a fresh model and continue epochs 3-5
    through fit_one_cycle: the same weights, BatchNorm statistics, learning rates and history."""
    epochs, train, valid = 5, loader(), loader(16, seed=1)
    straight = half_frozen()
    layer_lrs = [(straight.body, 1e-3), (straight.head, 1e-2)]

    def save_after_2(model, optimizer, scheduler, history):
        if len(history.epochs) == 2:
            save_checkpoint(tmp_path / "ck.pt", model, optimizer, scheduler, history)

    h = fit_one_cycle(straight, layer_lrs, train, epochs, valid, before_epoch=bn_eval, progress=False,
                      on_epoch_end=save_after_2)

    resumed = tiny_cnn(3)  # fresh: everything trainable, train mode, other weights
    torch.manual_seed(99)
    state = load_checkpoint(tmp_path / "ck.pt", resumed,
                            lambda opt: one_cycle_scheduler(opt, epochs * len(train)))
    assert len(state["history"]["epochs"]) == 2 and state["scheduler"].last_epoch == 2 * len(train)
    seen = []
    r = fit_one_cycle(resumed, None, train, epochs, valid, before_epoch=bn_eval, progress=False,
                      optimizer=state["optimizer"], scheduler=state["scheduler"], history=state["history"],
                      on_epoch_end=lambda m, o, s, hi: seen.append(hi.epochs[-1]["epoch"]))
    assert seen == [3, 4, 5], "only the epochs left are trained"
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs after resuming"
    assert isinstance(r, History) and r.lrs == h.lrs and r.groups == h.groups
    assert r.phase_steps == h.phase_steps
    drop = ("seconds",)
    assert [{k: v for k, v in e.items() if k not in drop} for e in r.epochs] == [
        {k: v for k, v in e.items() if k not in drop} for e in h.epochs]
    assert state["scheduler"].last_epoch == epochs * len(train), "the schedule ran to its end"


def test_continuing_a_run_refuses_what_does_not_match(tmp_path):
    train = loader()
    model = tiny_cnn(3)
    fit_one_cycle(model, [(model, 1e-3)], train, 2, progress=False,
                  on_epoch_end=lambda m, o, s, hi: save_checkpoint(tmp_path / "ck.pt", m, o, s, hi))
    fresh = tiny_cnn(3)
    state = load_checkpoint(tmp_path / "ck.pt", fresh, lambda opt: one_cycle_scheduler(opt, 2 * len(train)))
    with pytest.raises(ValueError, match="done already"):
        fit_one_cycle(fresh, None, train, 2, optimizer=state["optimizer"], scheduler=state["scheduler"],
                      history=state["history"], progress=False)
    with pytest.raises(ValueError, match="built for 6 steps"):
        fit_one_cycle(fresh, None, train, 3, optimizer=state["optimizer"], scheduler=state["scheduler"],
                      history=state["history"], progress=False)
    with pytest.raises(ValueError, match="scheduler too"):
        fit_one_cycle(fresh, None, train, 2, optimizer=state["optimizer"], history=state["history"],
                      progress=False)
    with pytest.raises(ValueError, match="its history"):
        fit_one_cycle(fresh, None, train, 2, optimizer=state["optimizer"], scheduler=state["scheduler"],
                      progress=False)
    with pytest.raises(ValueError, match="pass both"):
        fit_one_cycle(fresh, [(fresh, 1e-3)], train, 2, scheduler=state["scheduler"], progress=False)


def test_history_from_fit_one_cycle_is_saved(tmp_path):
    model = tiny_cnn(3)
    saved = {}
    h = fit_one_cycle(
        model, [(model, 1e-3)], batches(2), 2, progress=False,
        on_epoch_end=lambda m, o, s, hi: saved.update(path=save_checkpoint(tmp_path / "e.pt", m, o, s, hi)))
    out = load_checkpoint(saved["path"], tiny_cnn(3))
    assert out["history"]["epochs"] == h.epochs and out["history"]["lrs"] == h.lrs
    assert not list(tmp_path.glob("*.partial")), "no temporary file left behind"


def test_wrong_files_and_models_are_refused_clearly(tmp_path):
    model = half_frozen()
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    with pytest.raises(ValueError, match="not a course checkpoint"):
        load_checkpoint(tmp_path / "sd.pt", tiny_cnn(3))
    save_checkpoint(tmp_path / "ck.pt", model)
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_checkpoint(tmp_path / "ck.pt", tiny_cnn(5))


def test_an_optimizer_over_foreign_parameters_is_refused(tmp_path):
    model = tiny_cnn(3)
    opt = torch.optim.SGD(tiny_cnn(3).parameters(), lr=0.1)
    with pytest.raises(ValueError, match="not the model's"):
        save_checkpoint(tmp_path / "ck.pt", model, opt)
    assert not (tmp_path / "ck.pt").exists()
