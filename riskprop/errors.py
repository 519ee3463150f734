"""Error types: each carries a one-line message a user can act on."""


class RiskpropError(Exception):
    """Base class of every error riskprop reports to a user."""


class InputError(RiskpropError):
    """Bad input data: the message names the file, the line and the problem."""


class ConfigError(RiskpropError):
    """Bad configuration or parameters: the message names the key or option."""


class ProtocolError(RiskpropError):
    """A protocol run cannot continue (mismatch between parties, bad message, peer abort)."""


class ParameterError(ConfigError):
    """A run parameter out of its range. ``name`` is the parameter's one name (``delta_a``,
    ``precision_bits``, ...), which callers turn into the flag or key the user gave."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name
        self.problem = problem


class StorageError(RiskpropError):
    """The node could not write its state or results (disk full, read-only, gone)."""


class StoppedError(RiskpropError):
    """The node was asked to stop (SIGTERM/SIGINT) and did; its last checkpoint resumes it."""
