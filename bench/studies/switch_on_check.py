"""Does the switch-on gain predict what switching a sensor back on brings?

Trains the dense model and DynST to the sparsity (as ``dynst run`` does), takes the top
``--candidates`` switched-off sensors by their estimated gain (``mask.json``'s
``switch_on_gain``), and for each switches it back on (gate = mean |theta| of the active
sensors, as a regrown sensor gets) and measures the whole-field **validation** MAE:

* at once, with the trained weights (what the first-order estimate speaks about);
* after a brief fine-tune (``--finetune-epochs``) of the compacted model, against the
  same fine-tune of the unchanged active set (so that the fine-tune itself cancels).

Writes a Markdown table and a JSON file with the predicted and measured gains and their
Spearman correlation.

    python -m bench.studies.switch_on_check --data ../shared/data/los_loop --horizon 3 \\
        --sparsity 0.5 --out bench/results/los_loop_switch_on
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import torch

from bench.studies.runs import add_run_flags, dense_run, plan_from, sparse_train
from dynst_fast.evaluation import evaluate_model
from dynst_fast.files import write_atomic, write_json
from dynst_fast.train import masked_weighted_l1, switch_on_estimate, train_loader


def finetune(model, index, theta, splits, lr: float, epochs: int, seed: int):
    """A copy of ``model`` whose compacted form on ``index`` was trained ``epochs`` epochs
    at learning rate ``lr`` (AdamW, the run's loss); returns the compacted model."""
    model = copy.deepcopy(model)
    compact = model.compact(index, theta)
    std = torch.as_tensor(splits.std, dtype=torch.float32)
    weight = (std / std.mean())[None, None]
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    loader = train_loader(splits.train, 32, torch.Generator().manual_seed(seed))
    model.train()
    for _ in range(epochs):
        for xb, yb in loader:
            loss = masked_weighted_l1(compact(compact.gather_input(xb)), yb, weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return compact.eval()


def val_mae(compact, prep) -> float:
    return float(evaluate_model(compact, prep.splits, prep.space, "val", compact.index)["mae"])


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_run_flags(p)
    p.add_argument("--candidates", type=int, default=5)
    p.add_argument("--finetune-epochs", type=int, default=3)
    args = p.parse_args()
    started = time.perf_counter()
    prep = plan_from(args)
    dense, _ = dense_run(prep)
    trained = sparse_train(prep, dense)
    sp, model = trained.fit.sparsifier, trained.model.eval()
    gain = switch_on_estimate(sp, prep.splits.std)
    signed = switch_on_estimate(sp, prep.splits.std, signed=True)
    active = sp.active.clone()
    theta = sp.theta.detach().clone()
    theta_bar = float(theta[active].abs().mean())
    off = np.flatnonzero(~active.numpy())
    top = off[np.argsort(-gain[off], kind="stable")][: args.candidates]
    lr = 0.1 * prep.config.train.lr
    base_now = val_mae(model.compact(sp.active_index(), theta), prep)
    base_ft = val_mae(
        finetune(model, sp.active_index(), theta, prep.splits, lr, args.finetune_epochs, 0), prep
    )
    rows = []
    for j in top.tolist():
        on = active.clone()
        on[j] = True
        t = theta.clone()
        t[j] = theta_bar
        index = torch.nonzero(on).reshape(-1)
        now = val_mae(model.compact(index, t), prep)
        ft = val_mae(finetune(model, index, t, prep.splits, lr, args.finetune_epochs, 0), prep)
        rows.append(
            {
                "sensor": prep.space.ids[j],
                "index": j,
                "predicted": float(gain[j]),
                "predicted_signed": float(signed[j]),
                "measured_at_once": base_now - now,
                "measured_after_finetune": base_ft - ft,
            }
        )
        print(
            f"{prep.space.ids[j]}: predicted {gain[j]:.4f} (signed {signed[j]:+.4f}), "
            "measured at once "
            f"{base_now - now:+.4f}, after fine-tune {base_ft - ft:+.4f}",
            flush=True,
        )
    pred = [r["predicted"] for r in rows]
    pred_signed = [r["predicted_signed"] for r in rows]
    rho_now = spearman(pred, [r["measured_at_once"] for r in rows])
    rho_ft = spearman(pred, [r["measured_after_finetune"] for r in rows])
    rho_signed_now = spearman(pred_signed, [r["measured_at_once"] for r in rows])
    rho_signed_ft = spearman(pred_signed, [r["measured_after_finetune"] for r in rows])
    seconds = time.perf_counter() - started
    units = f" ({prep.dataset.units})" if prep.dataset.units else ""
    lines = [
        f"# Switch-on gains on {prep.dataset.name}: predicted against measured (DynST, sparsity "
        f"{args.sparsity:g})",
        "",
        f"The top {args.candidates} switched-off sensors by their estimated gain, each "
        "switched back on alone (gate = mean |theta| of the active sensors). Measured: the "
        f"decrease of the whole-field **validation** MAE{units}, at once (trained weights) "
        f"and after {args.finetune_epochs} fine-tune epochs of the compacted model against "
        "the same fine-tune without it. Positive = better. Validation MAE without any: "
        f"{base_now:.4f} at once, {base_ft:.4f} after the fine-tune.",
        "",
        "| rank | sensor | predicted (mean abs, mask.json) | predicted (mean signed) | "
        "measured at once | measured after fine-tune |",
        "|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(rows, 1):
        lines.append(
            f"| {i} | {r['sensor']} | {r['predicted']:.4f} | {r['predicted_signed']:+.4f} | "
            f"{r['measured_at_once']:+.4f} | {r['measured_after_finetune']:+.4f} |"
        )
    lines += [
        "",
        f"Spearman correlation of predicted and measured gains: **{rho_now:.2f}** at once, "
        f"**{rho_ft:.2f}** after the fine-tune (mean |dL/dg|, the mask.json figure); "
        f"{rho_signed_now:.2f} and {rho_signed_ft:.2f} from the mean signed -dL/dg.",
        "",
        f"Reproduce: `python -m bench.studies.switch_on_check --data {args.data} --horizon "
        f"{args.horizon} --sparsity {args.sparsity:g} --candidates {args.candidates} "
        f"--finetune-epochs {args.finetune_epochs} --epochs {args.epochs} --seed {args.seed} "
        f"--out {args.out}`",
        "",
        f"Total time {seconds:.0f} s.",
        "",
    ]
    out = Path(args.out)
    write_atomic(out.with_suffix(".md"), "\n".join(lines))
    write_json(
        out.with_suffix(".json"),
        {"rows": rows, "spearman_at_once": rho_now, "spearman_after_finetune": rho_ft,
         "spearman_signed_at_once": rho_signed_now,
         "spearman_signed_after_finetune": rho_signed_ft,
         "base_val_mae": base_now, "base_val_mae_finetuned": base_ft, "args": vars(args),
         "seconds": seconds},
    )  # fmt: skip


if __name__ == "__main__":
    main()
