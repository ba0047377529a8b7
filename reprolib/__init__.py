"""reprolib: the helper package of 'Deep Clustering, Reproduced'.

Modules grow out of the chapters; each function's docstring names the paper and equation it
implements. ``data`` (datasets and splits), ``metrics`` (ACC, NMI, ARI, purity), ``params``
(profiles and parameter checks), ``results`` (results.json), ``training`` (seeding, NaN guard,
checkpoints and resume), ``device``, ``plotting``, ``runner`` (``python -m reprolib run``).
"""
__version__ = "0.1.0"
