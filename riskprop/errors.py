"""Error types: each carries a one-line message a user can act on."""


class RiskpropError(Exception):
    """Base class of every error riskprop reports to a user.

    ``peer_reason`` is what the other banks are told when this error stops a node: the message
    itself only for protocol errors about the exchange; for anything local (input, storage,
    configuration), or a protocol error raised with ``private=True``, a generic line, because
    local messages may quote the bank's own account ids, values or paths."""

    #: The generic line peers get for a local error of this class.
    PEER_REASON = "stopped by a local error (see its log)"

    def __init__(self, *args: object, private: bool = False) -> None:
        super().__init__(*args)
        self.private = private

    @property
    def peer_reason(self) -> str:
        return self.PEER_REASON


class InputError(RiskpropError):
    """Bad input data: the message names the file, the line and the problem."""

    PEER_REASON = "stopped: its input data is invalid (see its log)"


class ConfigError(RiskpropError):
    """Bad configuration or parameters: the message names the key or option."""


class ProtocolError(RiskpropError):
    """A protocol run cannot continue (mismatch between parties, bad message, peer abort)."""

    PEER_REASON = "stopped by a protocol error (see its log)"

    @property
    def peer_reason(self) -> str:
        return self.PEER_REASON if self.private else str(self)


class ParameterError(ConfigError):
    """A run parameter out of its range. ``name`` is the parameter's one name (``delta_a``,
    ``precision_bits``, ...), which callers turn into the flag or key the user gave."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name
        self.problem = problem

    def __reduce__(self) -> "tuple[type[ParameterError], tuple[str, str]]":
        """Pickled by its two fields (a worker process hands it back to the parent)."""
        return (type(self), (self.name, self.problem))


class StorageError(RiskpropError):
    """The node could not write its state or results (disk full, read-only, gone)."""

    PEER_REASON = "stopped: it cannot write its state or results (see its log)"


class StoppedError(RiskpropError):
    """The node was asked to stop (SIGTERM/SIGINT) and did; its last checkpoint resumes it."""


class ComputeError(RiskpropError):
    """The node's compute workers could not run a batch of the run's arithmetic (a worker
    process died, also on the retry): the run stops with no partial output."""

    PEER_REASON = "stopped: its compute workers failed (see its log)"
