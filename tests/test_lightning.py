"""DynSTCallback: a Lightning module with a gated backbone learns a sensor mask; mask
phases leave the network alone; a checkpoint in the middle of the schedule resumes
exactly."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

L = pytest.importorskip("lightning.pytorch")

from dynst_fast.data import make_windows, synthetic_sensor_network  # noqa: E402
from dynst_fast.integrations.lightning import DynSTCallback  # noqa: E402
from dynst_fast.models import build_backbone  # noqa: E402
from dynst_fast.schedule import Schedule  # noqa: E402
from dynst_fast.train import first_windows  # noqa: E402

N, T_IN, T_OUT, STEPS_PER_EPOCH, EPOCHS = 12, 6, 2, 4, 5
# warm-up 2 steps, then 3 rounds of 2 network + 2 mask steps: the rounds end at step 14
SCHEDULE = Schedule("dynst", N, 0.5, warmup_steps=2, rounds=3, network_steps=2, mask_steps=2)


class Forecaster(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        ds = synthetic_sensor_network(num_sensors=N, num_planted=4, num_steps=300, seed=1)
        self.model = build_backbone("stgcn", ds.sensor_space(), T_IN, T_OUT, 1, {"hidden": 8})

    def training_step(self, batch, batch_idx):
        x, y = batch
        return (self.model(x, self.dynst.gate()) - y).abs().mean()

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-2, weight_decay=0.1)


def _loader() -> DataLoader:
    ds = synthetic_sensor_network(num_sensors=N, num_planted=4, num_steps=300, seed=1)
    x, y = first_windows(make_windows(ds, t_in=T_IN, t_out=T_OUT).train, 8 * STEPS_PER_EPOCH)
    return DataLoader(TensorDataset(x, y), batch_size=8, shuffle=False)


class _Watch(L.Callback):
    """Records, per optimizer step, the phase it ran in and whether the weights moved."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, bool]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, idx):
        self._before = [p.detach().clone() for p in pl_module.model.parameters()]
        self._phase = pl_module.dynst.sparsifier.phase

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, idx):
        after = list(pl_module.model.parameters())
        moved = any(not torch.equal(a, b) for a, b in zip(after, self._before, strict=True))
        self.steps.append((self._phase, moved))


def _trainer(tmp_path, epochs: int, *callbacks) -> L.Trainer:
    return L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        callbacks=list(callbacks),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        deterministic=True,
    )


@pytest.mark.slow
def test_callback_reaches_the_sparsity_and_freezes_mask_phases(tmp_path):
    L.seed_everything(0)
    dynst, watch = DynSTCallback(SCHEDULE), _Watch()
    module = Forecaster()
    _trainer(tmp_path, EPOCHS, dynst, watch).fit(module, _loader())
    sp = dynst.sparsifier
    assert sp.step_count == EPOCHS * STEPS_PER_EPOCH and sp.phase == "finetune"
    assert sp.num_active == 6 and sp.sparsity == pytest.approx(0.5)
    phases = [p for p, _ in watch.steps]
    assert phases.count("mask") == 6
    assert all(not moved for p, moved in watch.steps if p == "mask")
    assert all(moved for p, moved in watch.steps if p != "mask")
    compact = dynst.compact()
    x = _loader().dataset.tensors[0][:2]
    with torch.no_grad():
        torch.testing.assert_close(compact(compact.gather_input(x)), module.model(x, sp.gate()))


@pytest.mark.slow
def test_checkpoint_in_the_middle_of_the_schedule_resumes_exactly(tmp_path):
    L.seed_everything(0)
    straight = DynSTCallback(SCHEDULE)
    whole = Forecaster()
    _trainer(tmp_path / "a", EPOCHS, straight).fit(whole, _loader())

    L.seed_everything(0)
    first = DynSTCallback(SCHEDULE)
    half = Forecaster()
    trainer = _trainer(tmp_path / "b", 2, first)
    trainer.fit(half, _loader())
    assert first.sparsifier.phase == "mask" and 0 < first.sparsifier.sparsity < 0.5
    ckpt = tmp_path / "mid.ckpt"
    trainer.save_checkpoint(ckpt)

    L.seed_everything(123)  # the resumed run must not depend on the RNG
    resumed = DynSTCallback(SCHEDULE)
    again = Forecaster()
    _trainer(tmp_path / "c", EPOCHS, resumed).fit(again, _loader(), ckpt_path=ckpt)
    a, b = straight.sparsifier.state_dict(), resumed.sparsifier.state_dict()
    for key in ("theta", "active", "grad_sum"):
        assert torch.equal(a[key], b[key]), key
    assert a["step_count"] == b["step_count"] and a["history"] == b["history"]
    for (name, p), q in zip(whole.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(p, q), name


def test_bad_arguments_are_clear(tmp_path):
    with pytest.raises(TypeError, match="Schedule or a ScheduleConfig"):
        DynSTCallback(0.5)
    wrong = Schedule("dynst", N + 1, 0.5, rounds=1, network_steps=1, mask_steps=1)
    with pytest.raises(ValueError, match="schedule is for 13 sensors"):
        _trainer(tmp_path, 1, DynSTCallback(wrong)).fit(Forecaster(), _loader())
