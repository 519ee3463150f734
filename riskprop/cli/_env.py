"""Process settings of riskprop's command line, made before numpy is first imported.

riskprop does no dense linear algebra, so every riskprop process (a node, its worker processes,
which inherit the environment) uses one OpenBLAS thread instead of a pool of one per core: the
pool costs about 50 ms of CPU at each start-up (numpy's import: 0.11 s of CPU against 0.06 s
with one thread) and idle threads in every process of a many-core server. An operator's own
``OPENBLAS_NUM_THREADS`` is kept. The Python API (``riskprop.api``) leaves the setting alone.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
