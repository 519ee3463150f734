"""riskprop's public Python API: what a script or notebook needs, importable from one place.

    from riskprop.api import generate_dataset, simulate_plaintext, simulate_secure

Everything here is stable across minor versions; anything else in the package is internal and
may move. The layers underneath (``riskprop.core``, ``protocol``, ``node``) stay importable for
those who build on them.

* Data: :func:`load_dataset` validates a multi-bank data set (``DATA/<bank>/accounts.csv``
  and ``transactions.csv``); :func:`generate_dataset` and :func:`split_amlsim` write one.
* Propagation: :func:`simulate_plaintext` (the reference engine) and :func:`simulate_secure`
  (every bank's encrypted protocol in this process); both return a :class:`SimulationResult`.
* Parameters: :class:`RunParameters`, one name per parameter as on the command line.
* Evaluation: :func:`roc_auc`, :func:`precision_at_recall` and :func:`read_labels`.
* Workbench for notebooks: :func:`load` a data set and its labels once, from files or from
  pyarrow/pandas tables; :func:`simulate`, :func:`evaluate` and :func:`sweep` return
  ``pyarrow.Table`` results (``as_pandas=True``: pandas DataFrames). A sweep's data come from
  a :class:`Files`, :class:`AmlsimSplits` or :class:`Generated` source (what a seed redraws);
  settings and metric options are :class:`Setting` and :class:`Options`. A sweep runs worker
  processes (``spawn``): a script calling it needs the ``if __name__ == "__main__":`` guard.
* Results of nodes: :func:`read_scores`, :func:`read_global_scores`, :func:`read_report`.
* Errors: every error riskprop raises for bad input or configuration is a
  :class:`RiskpropError` with a one-line message.
"""

from __future__ import annotations

from riskprop.core.data import BankData, Dataset, load_dataset
from riskprop.core.metrics import precision_at_recall, roc_auc
from riskprop.core.params import DEFAULT_KEY_BITS, RunParameters
from riskprop.errors import ConfigError, InputError, ParameterError, ProtocolError, RiskpropError
from riskprop.files.layout import read_labels
from riskprop.files.results import NodeReport, read_global_scores, read_report, read_scores
from riskprop.lab.amlsim import split_amlsim
from riskprop.lab.evaluate import Options, Setting, Workbench
from riskprop.lab.notebook import evaluate, load, simulate, sweep
from riskprop.lab.simulate import SimulationResult, simulate_plaintext, simulate_secure
from riskprop.lab.sweep import AmlsimSplits, Files, Generated
from riskprop.lab.synthetic import GenerationSummary, generate_dataset

__all__ = [
    "DEFAULT_KEY_BITS",
    "AmlsimSplits",
    "BankData",
    "ConfigError",
    "Dataset",
    "Files",
    "Generated",
    "GenerationSummary",
    "InputError",
    "NodeReport",
    "Options",
    "ParameterError",
    "ProtocolError",
    "RiskpropError",
    "RunParameters",
    "Setting",
    "SimulationResult",
    "Workbench",
    "evaluate",
    "generate_dataset",
    "load",
    "load_dataset",
    "precision_at_recall",
    "read_global_scores",
    "read_labels",
    "read_report",
    "read_scores",
    "roc_auc",
    "simulate",
    "simulate_plaintext",
    "simulate_secure",
    "split_amlsim",
    "sweep",
]
