"""``riskprop report``: one bank's ranked CSV and a self-contained HTML report.

Inputs come in two ways, both for one bank only:

* a node's results (``node_inputs``): the bank's configuration names its data and output; the
  results are read from ``OUT/latest/`` of a service (``OUT/runs/<run_id>/`` with a run id)
  or from ``OUT/`` of a one-shot run. The run's ``run-report.json`` names the run, its
  parameters, the checksum of ``risk_scores.csv`` and a digest of the data the run read; both
  are checked, so the report never pairs scores with other data than the run used;
* simulated scores (``simulated_inputs``): a bank's data directory and a scores file.

The HTML page is one file: inline CSS, charts as inline SVG drawn here, no script and nothing
fetched; every text from the data is escaped (``html.escape``).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

import numpy as np

from riskprop.config import load_player_config
from riskprop.core.data import BankData, data_digest
from riskprop.core.types import FloatArray
from riskprop.errors import InputError, ParameterError
from riskprop.files.atomic import atomic_write_text
from riskprop.files.results import REPORT_FILE, RESULTS_FILE, NodeReport, read_report
from riskprop.lab.analyst import (
    DEFAULT_BANDS,
    DEFAULT_FLAG_THRESHOLD,
    RANKED_FILE,
    Bands,
    Ranking,
    load_own_bank,
    rank_bank,
    read_bank_scores,
    write_ranked,
)
from riskprop.service.layout import latest_run, run_folder

HTML_FILE = "report.html"
#: accounts in the report's top table unless told
DEFAULT_TOP = 25
#: bins of the score histograms over [0, 1]; the change histogram has one more, centred on 0
SCORE_BINS = 20
#: run parameters shown, in this order, with their labels
PARAMETERS = (
    ("iterations", "iterations T per period"),
    ("delta_a", "delta a"),
    ("delta_b", "delta b"),
    ("periods", "periods"),
    ("parties", "banks"),
    ("threshold", "decryption threshold t"),
    ("precision_bits", "precision bits"),
)


@dataclass(frozen=True)
class RunInfo:
    """What is known about the run behind the scores (nothing but ``source`` for a
    simulation)."""

    source: str
    run_id: str | None = None
    #: label -> value, in display order
    parameters: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_report(cls, source: str, report: NodeReport) -> RunInfo:
        shown = {}
        for key, label in PARAMETERS:
            if key in report.identity:
                shown[label] = _plain(report.identity[key])
        return cls(source, report.run_id, shown)


def _plain(value: str) -> str:
    """An identity value (JSON text) for people: lists joined by commas."""
    try:
        decoded = json.loads(value)
    except ValueError:
        return value
    if isinstance(decoded, list):
        return ", ".join(str(item) for item in decoded)
    return str(decoded)


@dataclass(frozen=True, eq=False)
class ReportInputs:
    """One bank's data and final scores (in account order), and what is known of the run."""

    bank: BankData
    scores: FloatArray
    run: RunInfo
    #: file mode of what the report writes
    mode: int = 0o600


# ------------------------------------------------------------------------------ inputs


def results_folder(output: Path, run_id: str | None = None) -> Path:
    """Where a node's results are: ``OUT/runs/<run_id>`` of a service (``latest``'s when no
    run id is given), else ``OUT`` of a one-shot run."""
    if run_id is None:
        latest = latest_run(output)
        if latest is not None:
            return run_folder(output, latest)
        if (output / RESULTS_FILE).is_file():
            return output
        raise InputError(
            f"{output}: no results (no latest/ of a service, no {RESULTS_FILE} of a one-shot "
            "run); has a run of this node succeeded?"
        )
    if not run_id or "/" in run_id or run_id in (".", ".."):
        raise ParameterError("run", f"{run_id!r} is not a run id")
    folder = run_folder(output, run_id)
    if folder.is_dir():
        return folder
    if (output / REPORT_FILE).is_file() and read_report(output).run_id == run_id:
        return output
    raise InputError(f"{output}: no results of run {run_id!r} (no {folder})")


def node_inputs(
    config_dir: Path, player: str, *, run_id: str | None = None, data: Path | None = None
) -> ReportInputs:
    """The results of ``player``'s node (see the module header); ``data`` overrides the
    configuration's (e.g. the snapshot a scheduled run read)."""
    # Only data, output and the results' mode are read: the key share, TLS files and peers
    # are the node's business, and an analyst's machine need not have them.
    config = load_player_config(
        config_dir, player, overrides={"data": data}, insecure=True, for_keygen=True
    )
    folder = results_folder(config.output, run_id)
    report = read_report(folder)
    if report.player != player:
        raise InputError(f"{folder / REPORT_FILE}: a run of bank {report.player!r}, not {player!r}")
    scores_path = folder / RESULTS_FILE
    _check_sha256(scores_path, report)
    if not config.data.is_dir():
        raise InputError(
            f"{config.data}: data directory not found; give the run's data with --data"
        )
    digest = report.identity.get("data")
    if digest and data_digest(config.data) != digest:
        raise InputError(
            f"{config.data}: not the data run {report.run_id} read (its digest in "
            f"{folder / REPORT_FILE} differs); give that run's data directory with --data"
        )
    parties = _parties(report) or config.network.names
    bank = load_own_bank(config.data, player, parties)
    scores = read_bank_scores(scores_path, bank)
    return ReportInputs(
        bank, scores, RunInfo.from_report(str(scores_path), report), config.results_mode
    )


def simulated_inputs(data: Path, scores: Path, bank: str | None = None) -> ReportInputs:
    """Bank ``bank`` (default: the directory's name) of ``data`` with final scores from
    ``scores`` (``id,risk_score``, or ``bank,id,risk_score`` of ``riskprop simulate``). A
    ``run-report.json`` beside ``scores`` that vouches for it (same checksum) names the run."""
    name = bank or data.resolve().name
    report = _vouching_report(scores)
    if report is not None and report.player == name:
        digest = report.identity.get("data")
        if digest and data_digest(data) != digest:
            raise InputError(
                f"{data}: not the data run {report.run_id} read (its digest in "
                f"{scores.parent / REPORT_FILE} differs)"
            )
        loaded = load_own_bank(data, name, _parties(report) or None)
        return ReportInputs(
            loaded, read_bank_scores(scores, loaded), RunInfo.from_report(str(scores), report)
        )
    loaded = load_own_bank(data, name)
    return ReportInputs(loaded, read_bank_scores(scores, loaded), RunInfo(str(scores)))


def _parties(report: NodeReport) -> tuple[str, ...]:
    try:
        parties = json.loads(report.identity.get("parties", "[]"))
    except ValueError:
        return ()
    return tuple(str(p) for p in parties) if isinstance(parties, list) else ()


def _check_sha256(path: Path, report: NodeReport) -> None:
    if not path.is_file():
        raise InputError(f"{path}: file not found (the run report names run {report.run_id})")
    if report.results_sha256 and _sha256(path) != report.results_sha256:
        raise InputError(
            f"{path}: changed since run {report.run_id} wrote it (its checksum in {REPORT_FILE} "
            "differs)"
        )


def _sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None


def _vouching_report(scores: Path) -> NodeReport | None:
    beside = scores.parent / REPORT_FILE
    if not beside.is_file() or not scores.is_file():
        return None
    try:
        report = read_report(scores.parent)
    except InputError:
        return None
    sha = report.results_sha256
    return report if sha and sha == _sha256(scores) else None


# ------------------------------------------------------------------------------ output


@dataclass(frozen=True)
class Written:
    ranked: Path
    html: Path
    ranking: Ranking


def make_report(
    out: Path,
    inputs: ReportInputs,
    *,
    bands: Bands = DEFAULT_BANDS,
    flag_threshold: float = DEFAULT_FLAG_THRESHOLD,
    top: int = DEFAULT_TOP,
) -> Written:
    """Rank, render, then write ``OUT/ranked.csv`` and ``OUT/report.html`` (each atomically,
    with ``inputs.mode``; ``OUT`` is made for the owner only). Nothing is written when the
    inputs are bad."""
    ranking = rank_bank(inputs.bank, inputs.scores, bands=bands, flag_threshold=flag_threshold)
    page = render_html(ranking, inputs.run, top=top)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a directory")
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_ranked(out / RANKED_FILE, ranking, mode=inputs.mode)
    atomic_write_text(out / HTML_FILE, page, mode=inputs.mode)
    return Written(out / RANKED_FILE, out / HTML_FILE, ranking)


# -------------------------------------------------------------------------------- HTML

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; color: #1d2433; margin: 0 auto; max-width: 1180px;
  padding: 16px 24px 40px; }
h1 { font-size: 22px; margin: 8px 0 2px; }
h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #d8dde6; padding-bottom: 4px; }
.sub { color: #5b6475; margin: 0 0 12px; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: 2px 16px; margin: 0; }
dl.facts dt { color: #5b6475; }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { padding: 3px 8px; border-bottom: 1px solid #e4e8ef; text-align: right;
  vertical-align: top; }
th { background: #f3f5f9; font-weight: 600; }
td.text, th.text { text-align: left; }
td.id { font-family: ui-monospace, monospace; overflow-wrap: anywhere; }
td.account { min-width: 9em; max-width: 16em; }
td.sources { min-width: 14em; max-width: 22em; }
td.bands { white-space: nowrap; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; }
figure { margin: 0; }
figcaption { color: #5b6475; font-size: 13px; }
svg { background: #fbfcfe; border: 1px solid #e4e8ef; }
svg .bar { fill: #3f6fb5; }
svg .bar.final { fill: #c2553a; }
svg .bar.change { fill: #6b5fb5; }
svg .axis { stroke: #8a93a3; stroke-width: 1; }
svg .edge { stroke: #8a93a3; stroke-dasharray: 3 3; }
svg text { font: 11px system-ui, sans-serif; fill: #5b6475; }
.band { display: inline-block; padding: 0 6px; border-radius: 3px; color: #1d2433; }
.up { color: #a3321b; }
.down { color: #2f6b3a; }
.note { color: #5b6475; font-size: 13px; max-width: 900px; }
"""


def render_html(ranking: Ranking, run: RunInfo, *, top: int = DEFAULT_TOP) -> str:
    """The report page (see the module header)."""
    title = f"Risk report: bank {ranking.bank}" + (f", run {run.run_id}" if run.run_id else "")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="sub">{ranking.n_accounts} accounts, ranked by final score; this bank\'s '
        "data and scores only</p>",
        _summary(ranking, run),
        _distributions(ranking),
        _top_table(ranking, top),
        _notes(ranking),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _summary(ranking: Ranking, run: RunInfo) -> str:
    facts = [("bank", ranking.bank), ("accounts", str(ranking.n_accounts))]
    facts.append(("run", run.run_id or "not known (simulated scores)"))
    facts.extend(run.parameters.items())
    facts.append(("scores", run.source))
    facts.append(("bands", ranking.bands.describe()))
    facts.append(("flagged before the run", f"initial score >= {ranking.flag_threshold:g}"))
    rows = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in facts)
    up = int(np.sum(ranking.final_band > ranking.initial_band))
    down = int(np.sum(ranking.final_band < ranking.initial_band))
    moved = (
        f'<p id="band-changes">Changed band: <strong>{up + down}</strong> account(s), '
        f'<span class="up">{up} up</span>, <span class="down">{down} down</span>; '
        f"{ranking.n_accounts - up - down} stayed.</p>"
    )
    return (
        '<section id="summary"><h2>Summary</h2>'
        f'<dl class="facts">{rows}</dl>'
        f"{_stats_table(ranking)}{moved}{_band_matrix(ranking)}</section>"
    )


def _stats_table(ranking: Ranking) -> str:
    columns = ("mean", "min", "median", "90th pct", "99th pct", "max")
    head = "".join(f"<th>{c}</th>" for c in columns)
    body = []
    for name, values in (
        ("initial score", ranking.initial),
        ("final score", ranking.final),
        ("change", ranking.change),
    ):
        cells = "".join(f"<td>{v}</td>" for v in _stats(values))
        body.append(f'<tr><th class="text">{name}</th>{cells}</tr>')
    return (
        f'<table id="stats"><thead><tr><th></th>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _stats(values: FloatArray) -> list[str]:
    if not len(values):
        return ["&ndash;"] * 6
    q = np.quantile(values, [0.5, 0.9, 0.99])
    numbers = (values.mean(), values.min(), q[0], q[1], q[2], values.max())
    return [f"{float(v):.4f}" for v in numbers]


def _band_matrix(ranking: Ranking) -> str:
    names = ranking.bands.names
    k = len(names)
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (ranking.initial_band, ranking.final_band), 1)
    head = "".join(f"<th>{_band(names, j)}</th>" for j in range(k))
    rows = []
    for i in range(k):
        cells = "".join(f"<td>{int(counts[i, j])}</td>" for j in range(k))
        rows.append(
            f'<tr><th class="text">{_band(names, i)}</th>{cells}'
            f"<td>{int(counts[i].sum())}</td></tr>"
        )
    totals = "".join(f"<td>{int(counts[:, j].sum())}</td>" for j in range(k))
    return (
        '<table id="band-matrix"><caption class="note">Accounts by initial band (rows) and '
        f'final band (columns)</caption><thead><tr><th class="text">initial \\ final</th>{head}'
        f"<th>all</th></tr></thead><tbody>{''.join(rows)}"
        f'<tr><th class="text">all</th>{totals}<td>{ranking.n_accounts}</td></tr></tbody></table>'
    )


def _band(names: Sequence[str], index: int) -> str:
    """A band's name on a colour from green (lowest) to red (highest)."""
    hue = 120 - 120 * index / max(len(names) - 1, 1)
    return (
        f'<span class="band" style="background: hsl({hue:.0f}, 65%, 82%)">'
        f"{escape(names[index])}</span>"
    )


def _distributions(ranking: Ranking) -> str:
    edges = np.linspace(0.0, 1.0, SCORE_BINS + 1)
    marks = list(zip(ranking.bands.lower[1:], ranking.bands.names[1:], strict=True))
    initial = histogram_svg(
        np.histogram(ranking.initial, bins=edges)[0], edges, kind="initial", marks=marks
    )
    final = histogram_svg(
        np.histogram(ranking.final, bins=edges)[0], edges, kind="final", marks=marks
    )
    change = ranking.change
    reach = float(np.max(np.abs(change))) if len(change) else 0.0
    reach = reach if reach > 0.0 else 1e-6
    # an odd number of bins over [-reach, reach]: one bin centred on "unchanged"
    width = 2.0 * reach / (SCORE_BINS + 1)
    change_edges = np.linspace(-reach - width / 2, reach + width / 2, SCORE_BINS + 2)
    changes = histogram_svg(
        np.histogram(change, bins=change_edges)[0], change_edges, kind="change", marks=[(0.0, "")]
    )
    return (
        '<section id="distributions"><h2>Distribution of scores</h2><div class="charts">'
        f'<figure id="chart-initial">{initial}<figcaption>Initial scores (accounts per '
        "0.05); dashed: band edges</figcaption></figure>"
        f'<figure id="chart-final">{final}<figcaption>Final scores (accounts per 0.05)'
        "</figcaption></figure></div>"
        '<h2>Distribution of changes</h2><div class="charts">'
        f'<figure id="chart-change">{changes}<figcaption>Final minus initial score per account; '
        "dashed: no change</figcaption></figure></div></section>"
    )


def histogram_svg(
    counts: Sequence[int] | np.ndarray,
    edges: Sequence[float] | np.ndarray,
    *,
    kind: str,
    marks: Sequence[tuple[float, str]] = (),
    size: tuple[int, int] = (540, 230),
) -> str:
    """Bars of ``counts`` over the bins ``edges[i] <= x < edges[i + 1]`` as an SVG element:
    one ``rect.bar`` per bin (a non-empty bin at least 1 px high, so a few accounts beside
    many still show), its range and count in a ``title``; vertical dashed lines at ``marks``."""
    width, height = size
    left, right, top, bottom = 46, 12, 12, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    counts = np.asarray(counts, dtype=np.int64)
    edges = np.asarray(edges, dtype=np.float64)
    low, high = float(edges[0]), float(edges[-1])
    peak = int(counts.max()) if counts.size else 0

    def x_of(value: float) -> float:
        return left + plot_w * (value - low) / (high - low)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="histogram {escape(kind)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
    ]
    for i, count in enumerate(counts.tolist()):
        x0, x1 = x_of(float(edges[i])), x_of(float(edges[i + 1]))
        bar_h = 0.0 if peak == 0 else max(plot_h * count / peak, 1.0 if count else 0.0)
        y = top + plot_h - bar_h
        tip = f"{edges[i]:.3g} to {edges[i + 1]:.3g}: {count} account(s)"
        out.append(
            f'<rect class="bar {escape(kind)}" x="{x0 + 0.5:.1f}" y="{y:.1f}" '
            f'width="{max(x1 - x0 - 1.0, 0.5):.1f}" height="{bar_h:.1f}" data-count="{count}">'
            f"<title>{escape(tip)}</title></rect>"
        )
    base = top + plot_h
    out.append(f'<line class="axis" x1="{left}" y1="{base}" x2="{left + plot_w}" y2="{base}"/>')
    out.append(f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{base}"/>')
    for value, label in marks:
        if low <= value <= high:
            x = x_of(value)
            out.append(f'<line class="edge" x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{base}"/>')
            if label:
                out.append(f'<text x="{x + 3:.1f}" y="{top + 10}">{escape(label)}</text>')
    for j in range(5):  # five x labels, at the outer edges and three between
        value = low + (high - low) * j / 4
        anchor = "start" if j == 0 else "end" if j == 4 else "middle"
        out.append(
            f'<text x="{x_of(value):.1f}" y="{base + 15}" text-anchor="{anchor}">{value:.2f}</text>'
        )
    out.append(f'<text x="{left - 4}" y="{top + 9}" text-anchor="end">{peak}</text>')
    out.append(f'<text x="{left - 4}" y="{base}" text-anchor="end">0</text>')
    out.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 4}" text-anchor="middle">'
        f"{'score' if kind != 'change' else 'change'}</text>"
    )
    out.append("</svg>")
    return "".join(out)


def _percent(value: float) -> str:
    return "&ndash;" if math.isnan(value) else f"{100.0 * value:.1f}%"


def _top_table(ranking: Ranking, top: int) -> str:
    names = ranking.bands.names
    shown = ranking.order[: max(top, 0)].tolist()
    head = (
        "<tr><th>rank</th><th class='text'>account</th><th>initial</th><th>final</th>"
        "<th>change</th><th class='text'>band</th><th>incoming amount</th>"
        "<th>from other banks</th><th>from flagged own accounts</th>"
        "<th class='text'>top senders</th></tr>"
    )
    rows = []
    for i in shown:
        before, after = int(ranking.initial_band[i]), int(ranking.final_band[i])
        band = _band(names, after)
        if before != after:
            band = f"{_band(names, before)} &rarr; {band}"
        change = float(ranking.final[i] - ranking.initial[i])
        css = "up" if change > 0 else "down" if change < 0 else ""
        sources = "<br>".join(escape(str(s)) for s in ranking.top_sources[i]) or "&ndash;"
        rows.append(
            f"<tr><td>{int(ranking.rank[i])}</td>"
            f'<td class="text id account">{escape(ranking.account_ids[i])}</td>'
            f"<td>{ranking.initial[i]:.4f}</td><td>{ranking.final[i]:.4f}</td>"
            f'<td class="{css}">{change:+.4f}</td><td class="text bands">{band}</td>'
            f"<td>{ranking.incoming[i]:,.2f}</td>"
            f"<td>{_percent(float(ranking.foreign_share[i]))}</td>"
            f"<td>{_percent(float(ranking.flagged_share[i]))}</td>"
            f'<td class="text id sources">{sources}</td></tr>'
        )
    return (
        f'<section id="top"><h2>Top {len(shown)} accounts</h2>'
        f'<table id="top-accounts"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'
        "</section>"
    )


def _notes(ranking: Ranking) -> str:
    return (
        '<section id="notes"><h2>How to read this</h2><p class="note">'
        "Rank 1 is the highest final score; equal scores share a rank. The explanation comes "
        "from this bank's own transactions file, every period added up: the share of an "
        "account's incoming amount sent by other banks' accounts, the share sent by this "
        f"bank's accounts flagged before the run (initial score &gt;= "
        f"{ranking.flag_threshold:g}), and the largest senders (another bank's account as "
        "bank:id). Propagation counts another bank's sender only when that bank's file lists "
        "the transaction too. Scores are relative: compare accounts within a run. "
        f"Every account is in {RANKED_FILE}, at full precision.</p></section>"
    )
