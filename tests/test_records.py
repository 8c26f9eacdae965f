"""The run directory's file formats (``dynst_fast.records``) and the export sidecar
(``dynst_fast.sidecar``): one home each, both ways, checked on read; the metrics layout
before format 2 still reads, with a warning."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from dynst_fast import sidecar
from dynst_fast.records import (
    MaskRecord,
    MetricsDict,
    ProgressRecord,
    RecordError,
    RunMetrics,
    switch_on_ranking,
)


def test_mask_record_round_trips_and_ranks_once():
    gain = [float("nan"), 0.5, 0.2, float("nan"), 0.5]  # NaN: forbidden, never a candidate
    active = [True, False, False, False, False]
    rec = MaskRecord.build(["a", "b", "c", "d", "e"], [1.0, 0.9, 0.8, 0.7, 0.6], active,
                           "dynst", None, gain, "mph")  # fmt: skip
    assert rec.switch_on_ranking == [1, 4, 2]  # by gain, ties by index; no active, no NaN
    assert rec.switch_on_gain == [None, 0.5, 0.2, None, 0.5]
    assert rec.sparsity == pytest.approx(0.8) and rec.active_index == [0]
    d = json.loads(json.dumps(rec.to_dict()))
    assert MaskRecord.from_dict(d) == rec
    assert switch_on_ranking(gain, active) == rec.switch_on_ranking


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"active": [True]}, "differ in length"),
        ({"active": [1, 0, 0]}, "true / false"),
        ({"theta": ["x", 1, 1]}, "numbers"),
        ({"switch_on_gain": [None, "big", 1.0]}, "numbers or null"),
        ({"switch_on_ranking": [0]}, "switched-off sensors with a gain"),
        ({"sensor_ids": "abc"}, "'sensor_ids' must be list"),
    ],
)
def test_mask_record_refuses_a_damaged_file(edit, message):
    good = MaskRecord.build(["a", "b", "c"], [1.0, 1.0, 1.0], [True, False, False], "dynst",
                            None, [math.nan, 0.3, 0.1]).to_dict()  # fmt: skip
    with pytest.raises(RecordError, match=message):
        MaskRecord.from_dict({**good, **edit}, "x/mask.json")


def _metrics(layout: str) -> dict:
    entry = {"mae": 1.5, "rmse": 2.0, "infer_ms": 1.0, "dense_infer_ms": 2.0, "speedup": 2.0,
             "gives_speedup": True, "num_active": 2, "train_seconds": 1.0, "swaps": 0}  # fmt: skip
    d = {"dataset": "d", "model": "stgcn", "scheme": "mask", "num_sensors": 4,
         "num_active": 2, "dense": {"mae": 1.0, "train_seconds": 1.0, "infer_ms": 2.0},
         "timing": {"batch": 4, "threads": 1, "machine": "m", "method": "x"}}  # fmt: skip
    if layout == "old":
        return {**d, "dynst": entry, "others": {"random": {**entry, "mae": 1.7}}}
    return {**d, "schemes": {"mask": entry, "random": {**entry, "mae": 1.7}}}


def test_metrics_name_the_main_model_by_its_scheme_and_read_the_old_layout():
    new = RunMetrics.from_dict(_metrics("new"))
    assert new.main.scores["mae"] == 1.5 and set(new.others) == {"random"}
    assert new.to_dict()["schemes"]["mask"]["mae"] == 1.5 and "dynst" not in new.to_dict()
    with pytest.warns(FutureWarning, match="under 'dynst'"):
        old = RunMetrics.from_dict(_metrics("old"))
    assert old.schemes == new.schemes and old.scheme == "mask"


def test_the_dict_dynst_run_returns_reads_the_old_keys_with_a_warning():
    m = MetricsDict(RunMetrics.from_dict(_metrics("new")).to_dict())
    with pytest.warns(FutureWarning, match="before metrics format 2"):
        assert m["dynst"]["mae"] == 1.5  # the main model, whatever its scheme
    with pytest.warns(FutureWarning):
        assert set(m["others"]) == {"random"}
    with pytest.raises(KeyError):
        m["nothing"]


def test_progress_record_checks_what_it_reads_and_the_world_size():
    rec = ProgressRecord({"seed": 0}, world_size=2)
    back = ProgressRecord.from_dict(rec.to_dict())
    assert back == rec and back.resume_state("dense") is None
    with pytest.raises(ValueError, match="resume it with --nproc 2"):
        back.check_world(1)
    for bad in ({"config": {}, "done": []}, {"config": {}, "done": {"dense": {}}},
                {"config": {}, "done": {}, "current": {"stage": 1}}):  # fmt: skip
        with pytest.raises(RecordError, match="is damaged"):
            ProgressRecord.from_dict(bad, "p.pt")


def test_sidecar_fields_are_stated_once():
    """``dynst predict`` checks exactly the fields the sidecar module states, and every
    field ``describe`` writes for the layout-free part is one of them or optional."""
    meta = sidecar.describe(model="m", dense=False, dataset="d", sensor_ids=["a"],
                            input_index=[0], all_sensor_ids=["a", "b"], channels=1, t_in=2,
                            t_out=1, units="", version="0",
                            layout={"kind": "graph", "input": {"shape": ["batch", 2, 1, 1]},
                                    "output": {"shape": ["batch", 1, 2, 1]}})  # fmt: skip
    meta.update(opset=18, sha256="0" * 64, input={**meta["input"], "name": "x"},
                output={**meta["output"], "name": "y"})  # fmt: skip
    sidecar.check(meta)
    for field in sidecar.FIELD_TYPES:
        broken = {k: v for k, v in meta.items() if k != field}
        with pytest.raises(sidecar.SidecarError, match=f"lacks {field}"):
            sidecar.check(broken)


def test_rank_and_predict_modules_import_no_torch():
    code = "import sys, dynst_fast.rank, dynst_fast.serve, dynst_fast.records\n"
    code += "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_export_and_latency_do_not_import_the_training_code():
    code = (
        "import sys, dynst_fast.export, dynst_fast.latency\n"
        "bad = [m for m in ('sparsifier', 'distributed', 'schedule', 'constraints', 'train',"
        " 'plan', 'stages') if 'dynst_fast.' + m in sys.modules]\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
