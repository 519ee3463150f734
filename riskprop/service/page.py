"""The admin listener's HTML status page (``GET /``).

The page is a static shell in the package (``static/status.html``) that holds no data: its
script fetches ``status`` (the JSON of ``GET /status``) every second and, when that answers
401, asks for the admin token, keeps it in the tab's ``sessionStorage`` and sends it as
``Authorization: Bearer <token>``. So the page itself can be public on every listener.
"""

from __future__ import annotations

import functools
from importlib.resources import files

#: the page's media type, for the response that serves it
CONTENT_TYPE = "text/html; charset=utf-8"


@functools.cache
def status_page() -> bytes:
    """The status page's bytes, read once from the installed package."""
    return files("riskprop").joinpath("service/static/status.html").read_bytes()
