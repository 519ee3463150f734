"""The researcher's workbench as a notebook uses it: load a data set once, compare a few
propagation settings in a table, then sweep a grid over two seeds and write its plots.

    python examples/workbench.py [--amlsim DIR] [--out DIR]

With --amlsim (or $RISKPROP_AMLSIM) IBM's AMLSim sample is split into three banks, and each
seed of the sweep redraws which fraud accounts the banks already flag; otherwise a synthetic
data set is generated, redrawn whole per seed. The sweep's files (CSV, JSON, the
recommendation and PNG/SVG plots) go to --out, by default a temporary directory. Uses only
``riskprop.api``; tables print without pandas (``as_pandas=True`` would give DataFrames).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from riskprop.api import (
    AmlsimSplits,
    Generated,
    RiskpropError,
    evaluate,
    generate_dataset,
    load,
    split_amlsim,
    sweep,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--amlsim", type=Path, default=os.environ.get("RISKPROP_AMLSIM"))
    parser.add_argument("--out", type=Path, help="the sweep's files (default: a temporary dir)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            return run(Path(tmp), args.amlsim, args.out or Path(tmp) / "sweep")
        except RiskpropError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1


def run(work: Path, amlsim: Path | None, out: Path) -> int:
    # 1. a data set with labels: the AMLSim sample split into banks, or generated data
    data = work / "data"
    source: AmlsimSplits | Generated
    if amlsim is not None:
        split_amlsim(Path(amlsim), data, seed=0)
        source = AmlsimSplits(Path(amlsim))
    else:
        generate_dataset(data, accounts=2000, edges=10_000, seed=0)
        source = Generated(accounts=2000, edges=10_000)

    # 2. load once (graph and labels), then evaluate settings: one row per setting and subset
    bench = load(data)
    table = evaluate(bench, iterations=[2, 6], delta_a=[0.1, 0.5], combine=["plain", "max"])
    columns = ["iterations", "delta_a", "combine", "subset", "roc_auc", "average_precision"]
    print(" ".join(f"{name:>17}" for name in columns))
    for row in table.select(columns).to_pylist():
        print(
            " ".join(
                f"{row[c]:>17.3f}" if isinstance(row[c], float) else f"{row[c]:>17}"
                for c in columns
            )
        )

    # 3. a sweep over seeds in worker processes: means and deviations, files and plots in out
    rows = sweep(source, iterations=[0, 1, 2, 4, 8], delta_a=[0.1, 0.3, 0.5], seeds=2, out=out)
    names = ", ".join(rows.schema.names[:8])
    print(f"sweep: {rows.num_rows} rows (settings x subsets), columns {names}, ...")
    print((out / "recommendation.md").read_text(encoding="utf-8"))
    print(f"trade-off plot: {out / 'tradeoff.png'}")
    print(f"metric against T: {out / 'average_precision_vs_T.png'}")
    return 0


if __name__ == "__main__":  # the sweep's worker processes import this file: keep the guard
    sys.exit(main())
