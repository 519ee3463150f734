"""Talking to a running node's admin listener (``riskprop trigger``)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from riskprop.config import PlayerConfig
from riskprop.errors import ConfigError, RiskpropError


def post_trigger(
    config: PlayerConfig, run_id: str | None, *, fresh: bool = False, timeout: float = 10.0
) -> str:
    """``POST /runs`` on the player's admin listener; the queued run id, or one error line."""
    admin = config.admin
    if admin is None or not admin.enabled:
        raise ConfigError(f"{config.path}: admin.enabled: the admin listener is off")
    token = admin.read_token()
    fields: dict[str, object] = {"fresh": fresh}
    if run_id is not None:
        fields["run_id"] = run_id
    body = json.dumps(fields).encode()
    request = urllib.request.Request(
        f"{admin.url}/runs",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            reason = json.loads(exc.read()).get("error", exc.reason)
        except (ValueError, AttributeError):
            reason = exc.reason
        raise RiskpropError(f"{config.player}: the node refused: {reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        why = getattr(exc, "reason", exc)
        raise RiskpropError(
            f"{config.player}: no admin listener answers at {admin.url} ({why}); is the "
            "service running?"
        ) from None
    queued = answer.get("run_id") if isinstance(answer, dict) else None
    if not isinstance(queued, str):
        raise RiskpropError(f"{config.player}: unexpected answer from {admin.url}")
    return queued
