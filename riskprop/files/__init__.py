"""Every file format riskprop writes or reads back, in one place: atomic writes
(``atomic``), the multi-bank data set layout (``layout``), key share files (``keys``) and a
run's results and report (``results``). Input data are read and validated by
``riskprop.core.data``; checkpoints are encoded by ``riskprop.protocol.checkpoint``."""
