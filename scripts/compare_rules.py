#!/usr/bin/env python3
"""Do rules alone, propagation alone, or rules + propagation find the laundering accounts?

Every bank scores its own raw transactions with the shipped default rules
(:func:`riskprop.scoring.pipeline.score_bank`, one period); the data set those files make is
loaded as the workbench loads any other (:class:`~riskprop.lab.evaluate.Workbench`), so the
rule score ``u(x)`` of an account is the ``risk_score`` of its ``accounts.csv``. The banks also
know some launderers already, from their investigators: the *flags* ``f(x)`` in {0, 1},
exactly ``round(flag_share * L)`` of the ``L`` laundering accounts, drawn per seed by the
workbench's flag model (:func:`riskprop.lab.synthetic.realistic_scores` with no false
positives: an account is flagged when its drawn score is at or above the model's threshold).
The same flags enter every variant:

* ``flags alone``: ``f`` (T = 0), the reference: what the banks know before anything runs;
* ``rules alone``: ``max(u, f)``, no propagation (T = 0);
* ``propagation alone``: propagation (plaintext engine, ``plain`` ranking, ``delta_b = 0``)
  seeded by ``f`` only: flagged accounts start at 1, all others at 0;
* ``rules + propagation``: the same propagation seeded by ``max(u, f)``; also ranked by
  ``max(r_0, r_T)`` (``evaluate --combine max``), which keeps an account's own rule evidence
  however much its neighbours pull it down.

Propagation settings: the researcher guide's recommendation (T = 8, a = 0.1), a light one
(T = 2, a = 0.1) and riskprop's run defaults (T = 3, a = 0.5) for reference.

Metrics (:func:`riskprop.lab.evaluate.measure`): ROC AUC, average precision and precision at k
with k = the number of laundering accounts of the subset (so precision at k equals recall at
k), on ``all`` accounts and on the ``unflagged`` ones (``f = 0``: the launderers the banks do
not know yet; the same subset for every variant). The tables give the mean over the seeds
``±`` the sample standard deviation (ddof = 1).

Data sets:

* ``generated``: ``riskprop generate OUT --raw --accounts 6000 --transactions 60000 --days 30
  --seed S`` (:func:`riskprop.lab.rawgen.generate_raw`), three banks, each scored in one
  period (``periods=1``); seed S draws the data and the flags.
* ``amlworld``: the AMLSim sample written in AMLworld's layout by
  ``scripts/amlworld_from_amlsim.py`` (30 bank ids; or ``--amlworld FILE``), every bank id
  scored as its own bank (``layout="amlworld"``, one period); labels as ``riskprop import
  amlworld`` defines them (an account is laundering when it pays or receives in a row with
  ``Is Laundering`` 1): they are read from what the importer writes. The rules are scored
  once; seed S draws the flags only.

Above each data set's table it prints the counts (accounts, laundering, flagged, rule alerts
at score >= 0.5) and on how many accounts each rule fires (contribution > 0 in
``score_bank``'s result), with the laundering ones among them.

Commands (figures in docs/guide-researcher.md, "Rules and propagation on raw transactions"; the
first took 20-32 s on 2 shared cores, peak memory 0.3 GB)::

    python scripts/compare_rules.py --seeds 10 --out /tmp/compare_rules.csv
    python scripts/compare_rules.py --data generated --seeds 5 --accounts 3000 \\
        --transactions 30000
    python scripts/compare_rules.py --data amlworld --amlworld HI-Small_Trans.csv --out r.json

``--out`` writes one row per data set, seed, variant and subset (CSV, or JSON when the name
ends in ``.json``), every metric of the workbench at full precision.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import numpy as np

from riskprop.core.data import load_dataset
from riskprop.core.graph import GlobalGraph, build_global
from riskprop.core.types import BoolArray, FloatArray
from riskprop.errors import ConfigError, RiskpropError
from riskprop.files.atomic import atomic_write_text
from riskprop.files.layout import read_labels
from riskprop.lab.amlworld import import_amlworld
from riskprop.lab.evaluate import METRICS, Options, Setting, Workbench, measure
from riskprop.lab.rawgen import generate_raw
from riskprop.lab.synthetic import ScoreModel, realistic_scores
from riskprop.scoring.pipeline import BankScored, score_bank

DEFAULT_SRC: Final = (
    Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "amlsim-20K_cycle200"
)
GENERATED_BANKS: Final = ("alice", "bob", "charlie")
DATA_SETS: Final = ("generated", "amlworld")
SUBSETS: Final = ("all", "unflagged")
#: What a variant's propagation starts from: the flags only, or max(rule score, flag).
FLAGS, RULES = "flags", "rules"


@dataclass(frozen=True)
class Variant:
    """One row of the table: ranking scores r_T from the seed scores ``seeded_by``."""

    name: str
    seeded_by: str  #: FLAGS or RULES
    iterations: int
    delta_a: float
    combine: str = "plain"  #: or "max": rank by max(r_0, r_T)

    @property
    def setting(self) -> Setting:
        return Setting(self.iterations, self.delta_a, 0.0, self.combine)

    @property
    def label(self) -> str:
        if self.iterations == 0:
            return f"{self.name} (T = 0)"
        ranked = ", max(r_0, r_T)" if self.combine == "max" else ""
        return f"{self.name}{ranked}, T = {self.iterations}, a = {self.delta_a:g}"


VARIANTS: Final = (
    Variant("flags alone", FLAGS, 0, 0.1),
    Variant("rules alone", RULES, 0, 0.1),
    Variant("propagation alone", FLAGS, 2, 0.1),
    Variant("propagation alone", FLAGS, 8, 0.1),
    Variant("propagation alone", FLAGS, 3, 0.5),
    Variant("rules + propagation", RULES, 2, 0.1),
    Variant("rules + propagation", RULES, 8, 0.1),
    Variant("rules + propagation", RULES, 3, 0.5),
    Variant("rules + propagation", RULES, 8, 0.1, "max"),
    Variant("rules + propagation", RULES, 3, 0.5, "max"),
)
#: The markdown table's columns: (subset, metric, heading).
COLUMNS: Final = (
    ("all", "roc_auc", "AUC, all"),
    ("all", "average_precision", "AP, all"),
    ("all", "precision_at_k", "P@k, all"),
    ("unflagged", "roc_auc", "AUC, unflagged"),
    ("unflagged", "average_precision", "AP, unflagged"),
    ("unflagged", "precision_at_k", "P@k, unflagged"),
)


@dataclass(frozen=True, eq=False)
class Scored:
    """A data set scored by the rules: its joint graph (``graph.initial`` holds the rule
    scores u of the banks' ``accounts.csv``) and the labels in the graph's global order."""

    name: str
    graph: GlobalGraph
    labels: BoolArray
    #: rule -> (accounts it fires on, laundering accounts among them), over every bank
    fired: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def rules(self) -> FloatArray:
        return self.graph.initial


# ------------------------------------------------------------------------------ data


def load_scored(
    name: str, data: Path, laundering: set[str], banks: Sequence[BankScored] = ()
) -> Scored:
    """The data set at ``data`` with the accounts whose ids are in ``laundering`` labelled
    positive (account ids are unique over the banks in both sources), and how often each rule
    fires in ``banks`` (contribution > 0). A laundering account that no bank lists is an
    error: it could be found by no variant."""
    graph = build_global(load_dataset(data))
    ids = [account for bank_ids in graph.account_ids for account in bank_ids]
    labels = np.fromiter((account in laundering for account in ids), dtype=bool, count=len(ids))
    missing = len(laundering) - int(labels.sum())
    if missing:
        raise ConfigError(f"{data}: {missing} laundering accounts are in no bank's accounts.csv")
    fired: dict[str, tuple[int, int]] = {}
    for bank in banks:
        accounts = bank.scored.accounts
        for rule, contribution in bank.scored.contributions.items():
            hit = accounts[np.asarray(contribution) > 0]
            bad = sum(account in laundering for account in hit)
            seen, seen_bad = fired.get(rule, (0, 0))
            fired[rule] = (seen + len(hit), seen_bad + bad)
    return Scored(name, graph, labels, fired)


def score_generated(
    seed: int, work: Path, *, accounts: int, transactions: int, days: int
) -> Scored:
    """``generate --raw`` with ``seed`` (three banks), every bank scored by the default rules
    in one period."""
    raw, data = work / f"raw-{seed}", work / f"data-{seed}"
    summary = generate_raw(
        raw,
        banks=GENERATED_BANKS,
        accounts=accounts,
        transactions=transactions,
        days=days,
        seed=seed,
    )
    done = [score_bank(raw / bank / "raw.csv", bank, data, periods=1) for bank in summary.banks]
    laundering = {account for (_, account), bad in read_labels(raw / "labels.csv").items() if bad}
    return load_scored("generated", data, laundering, done)


def score_amlworld(layout: Path, work: Path) -> Scored:
    """Every bank id of the AMLworld file ``layout`` scored as its own bank by the default
    rules (one period); labels from ``riskprop import amlworld``'s own output."""
    imported = work / "amlworld-import"
    import_amlworld(layout, imported, banks=("all",), periods=1)
    labels = read_labels(imported / "labels.csv")
    banks = sorted({account.split(":", 1)[0] for _, account in labels})
    data = work / "amlworld-data"
    done = [score_bank(layout, bank, data, layout="amlworld", periods=1) for bank in banks]
    laundering = {account for (_, account), bad in labels.items() if bad}
    return load_scored("amlworld", data, laundering, done)


def convert(src: Path, layout: Path) -> None:
    """Write the AMLSim sample ``src`` in AMLworld's layout to ``layout`` with
    ``scripts/amlworld_from_amlsim.py`` (run beside this file, its defaults)."""
    script = Path(__file__).resolve().with_name("amlworld_from_amlsim.py")
    done = subprocess.run(
        [sys.executable, str(script), str(src), str(layout)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        problem = (done.stderr.strip().splitlines() or ["failed"])[-1]
        raise ConfigError(f"{src}: converting to the AMLworld layout: {problem}")


# ------------------------------------------------------------------------------ variants


def draw_flags(labels: BoolArray, seed: int, flag_share: float) -> BoolArray:
    """The investigators' flags: ``round(flag_share * L)`` of the ``L`` laundering accounts,
    drawn by the workbench's :class:`~riskprop.lab.synthetic.ScoreModel` from
    ``numpy.random.default_rng(seed)`` with no false positives."""
    model = ScoreModel(flag_share=flag_share, false_positive_share=0.0)
    flagged: BoolArray = realistic_scores(np.random.default_rng(seed), labels, model) >= (
        model.threshold
    )
    return flagged


def seed_scores(seeded_by: str, rules: FloatArray, flags: BoolArray) -> FloatArray:
    """The initial scores of a variant: ``f`` (FLAGS) or ``max(u, f)`` (RULES)."""
    flag = flags.astype(np.float64)
    if seeded_by == FLAGS:
        return flag
    if seeded_by == RULES:
        return np.maximum(rules, flag)
    raise ValueError(f"unknown seed scores {seeded_by!r}")


def variant_scores(data: Scored, flags: BoolArray) -> dict[Variant, FloatArray]:
    """Every variant's ranking scores: the workbench's plaintext propagation from the variant's
    seed scores (T = 0: the seed scores themselves)."""
    benches = {
        seeded_by: Workbench(
            replace(data.graph, initial=seed_scores(seeded_by, data.rules, flags)), data.labels
        )
        for seeded_by in (FLAGS, RULES)
    }
    return {v: benches[v.seeded_by].scores(v.setting) for v in VARIANTS}


def measure_seed(data: Scored, seed: int, flag_share: float) -> list[dict[str, Any]]:
    """One row per variant and subset: counts and every workbench metric, precision at k with
    k = the subset's laundering accounts."""
    flags = draw_flags(data.labels, seed, flag_share)
    masks = {"all": np.ones(len(flags), dtype=bool), "unflagged": ~flags}
    found = []
    for variant, scores in variant_scores(data, flags).items():
        for subset in SUBSETS:
            mask = masks[subset]
            labels = data.labels[mask]
            positives = int(labels.sum())
            options = Options(k=max(1, positives))
            found.append(
                {
                    "data": data.name,
                    "seed": seed,
                    "variant": variant.name,
                    "seeded_by": variant.seeded_by,
                    "iterations": variant.iterations,
                    "delta_a": variant.delta_a,
                    "combine": variant.combine,
                    "subset": subset,
                    "accounts": int(mask.sum()),
                    "positives": positives,
                    "flagged": int(flags.sum()),
                    "rule_alerts": int((data.rules >= 0.5).sum()),
                    "rule_alerts_laundering": int(((data.rules >= 0.5) & data.labels).sum()),
                    "k": options.k,
                    **measure(scores[mask], labels, options),
                }
            )
    return found


# ------------------------------------------------------------------------------ output


def spread(values: Sequence[float]) -> str:
    """``mean ± sd`` over the seeds where the value is defined."""
    defined = [v for v in values if not math.isnan(v)]
    if not defined:
        return "—"
    sd = statistics.stdev(defined) if len(defined) > 1 else 0.0
    return f"{statistics.fmean(defined):.3f} ± {sd:.3f}"


def markdown(
    rows: Sequence[dict[str, Any]], name: str, fired: Sequence[dict[str, tuple[int, int]]] = ()
) -> str:
    """The markdown table of one data set over its seeds, with lines of counts above: the
    accounts, and (given ``fired``, one per scoring) how often each rule fires, as means."""
    mine = [r for r in rows if r["data"] == name]
    seeds = sorted({r["seed"] for r in mine})
    first = [r for r in mine if r["variant"] == VARIANTS[0].name and r["subset"] == "all"]
    unflagged = [r for r in mine if r["variant"] == VARIANTS[0].name and r["subset"] != "all"]

    def avg(key: str, of: Sequence[dict[str, Any]]) -> str:
        return f"{statistics.fmean(r[key] for r in of):,.0f}"

    lines = [
        f"{name}, {len(seeds)} seeds: {avg('accounts', first)} accounts, "
        f"{avg('positives', first)} laundering, {avg('flagged', first)} of them flagged, "
        f"{avg('positives', unflagged)} unflagged; rule alerts (score >= 0.5): "
        f"{avg('rule_alerts', first)}, {avg('rule_alerts_laundering', first)} of them laundering",
    ]
    if fired:
        counts = [
            f"{rule} {statistics.fmean(f[rule][0] for f in fired):,.0f} "
            f"({statistics.fmean(f[rule][1] for f in fired):,.0f})"
            for rule in fired[0]
        ]
        lines.append("rules fire on (laundering among them): " + ", ".join(counts))
    lines += [
        "",
        "| scores | " + " | ".join(h for _, _, h in COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
    ]
    for v in VARIANTS:
        cells = []
        for subset, metric, _ in COLUMNS:
            values = [
                r[metric]
                for r in mine
                if (r["variant"], r["iterations"], r["delta_a"], r["combine"], r["subset"])
                == (v.name, v.iterations, v.delta_a, v.combine, subset)
            ]
            cells.append(spread(values))
        lines.append(f"| {v.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_rows(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """The rows as CSV (NaN an empty field) or, for ``*.json``, a JSON array (NaN null)."""
    clean = [
        {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()}
        for r in rows
    ]
    if path.suffix == ".json":
        atomic_write_text(path, json.dumps(clean, indent=1, allow_nan=False) + "\n")
        return
    buffer = io.StringIO()
    names = list(clean[0]) if clean else ["data", "seed", "variant", *METRICS]
    writer = csv.DictWriter(buffer, names, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in clean)
    atomic_write_text(path, buffer.getvalue())


# ------------------------------------------------------------------------------ main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", default="generated,amlworld", help="generated,amlworld")
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1")
    parser.add_argument("--flag-share", type=float, default=0.3)
    parser.add_argument("--accounts", type=int, default=6000)
    parser.add_argument("--transactions", type=int, default=60000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument(
        "--src",
        type=Path,
        default=Path(os.environ.get("RISKPROP_AMLSIM") or DEFAULT_SRC),
        help="AMLSim sample written in AMLworld's layout (default: the shared 20K sample)",
    )
    parser.add_argument("--amlworld", type=Path, help="an AMLworld file to use instead")
    parser.add_argument("--out", type=Path, help="per-seed rows: .csv, or .json")
    args = parser.parse_args(argv)
    wanted = [name.strip() for name in args.data.split(",") if name.strip()]
    if not wanted or any(name not in DATA_SETS for name in wanted):
        parser.error(f"--data: one or more of {', '.join(DATA_SETS)} (got {args.data!r})")
    if args.seeds < 2:
        parser.error("--seeds: need at least 2 for a spread")
    if args.out is not None and (args.out.is_dir() or not args.out.parent.is_dir()):
        problem = "is a directory" if args.out.is_dir() else "is in no existing directory"
        parser.error(f"--out {args.out} {problem}")
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    fired: dict[str, list[dict[str, tuple[int, int]]]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            if "generated" in wanted:
                for seed in range(args.seeds):
                    data = score_generated(
                        seed,
                        work / "generated",
                        accounts=args.accounts,
                        transactions=args.transactions,
                        days=args.days,
                    )
                    rows += measure_seed(data, seed, args.flag_share)
                    fired.setdefault(data.name, []).append(data.fired)
                    shutil.rmtree(work / "generated")
            if "amlworld" in wanted:
                layout = args.amlworld
                if layout is None:
                    if not (args.src / "nodes.csv").is_file():
                        raise ConfigError(f"{args.src}: no AMLSim sample (--src or --amlworld)")
                    layout = work / "amlworld-layout.csv"
                    convert(args.src, layout)
                data = score_amlworld(layout, work)
                fired[data.name] = [data.fired]
                for seed in range(args.seeds):
                    rows += measure_seed(data, seed, args.flag_share)
        if args.out is not None:
            write_rows(args.out, rows)
    except RiskpropError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name in wanted:
        print(markdown(rows, name, fired[name]))
        print()
    print(f"({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
