"""The curated public API: every exported name exists, is documented and is what it says."""

from __future__ import annotations

import inspect

from riskprop import api


def test_every_exported_name_resolves_and_is_documented() -> None:
    assert len(set(api.__all__)) == len(api.__all__)
    for name in api.__all__:
        value = getattr(api, name)
        if inspect.isfunction(value) or inspect.isclass(value):
            assert inspect.getdoc(value), f"riskprop.api.{name} has no docstring"


def test_nothing_public_is_left_out() -> None:
    public = {n for n in vars(api) if not n.startswith("_") and n != "annotations"}
    assert public == set(api.__all__)


def test_errors_share_one_base() -> None:
    for error in (api.ConfigError, api.InputError, api.ParameterError, api.ProtocolError):
        assert issubclass(error, api.RiskpropError)
    assert issubclass(api.ParameterError, api.ConfigError)
