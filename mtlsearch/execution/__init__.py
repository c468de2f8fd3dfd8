"""The execution layer: everything that runs trials on Ray.

Contract: a validated :class:`mtlsearch.space.Space` goes in (``search.run_search``); trial
folders, the search's metadata and its Optuna study come out, in the layout of
:mod:`mtlsearch.layout`, for :mod:`mtlsearch.report` to read. The modules, in the order a
search meets them:

* ``cluster``: start or join Ray (dashboard on localhost, tokens never printed); every Ray
  environment setting mtlsearch makes.
* ``plan``: what a search will run (``--dry-run``, trial-count checks), before Ray starts.
* ``search``: the driver: builds the ``Tuner`` (searcher, scheduler, trainable with its
  reservation), writes the search metadata, runs or resumes it, prints the summary.
* ``strategies`` (samplers and schedulers by name), ``samplers`` (Optuna samplers Tune can
  pickle), ``halving`` (ASHA on seed means), ``replicate`` (every configuration on every
  seed; adaptive replication), ``tracking`` (MLflow / W&B callbacks), ``baselines``
  (single-task baselines trained once per storage).
* ``trial``: the Tune trial function: the planned row, the resolved config, then the loop.
* ``trainer``: the loop in a trial's process, or as a Ray Train ``TorchTrainer``
  (``mtlsearch train``, the baselines); ``session``: where the loop reports; ``peers``: a
  multi-worker trial's DDP peers; ``phases``: timing marks for ``bench search``.

What crosses process boundaries is typed (:mod:`mtlsearch.records`): the driver hands each
trial a ``TrialContext``, each worker loop a ``LoopConfig``.
"""

LEGACY_MODULES = {
    "mtlsearch.search": "mtlsearch.execution.search",
    "mtlsearch.trial": "mtlsearch.execution.trial",
    "mtlsearch.trainable": "mtlsearch.execution.trainer",
    "mtlsearch.samplers": "mtlsearch.execution.samplers",
    "mtlsearch.replicate": "mtlsearch.execution.replicate",
    "mtlsearch.tracking": "mtlsearch.execution.tracking",
}
"""Where modules named in a search's saved Tune state (written before this package existed)
live now: :func:`map_legacy_modules` lets such a search resume and be reported."""


def map_legacy_modules() -> None:
    """Point the old module names at their new places, so that Tune can unpickle the state
    of a search started before :mod:`mtlsearch.execution` existed (``--resume``, and
    ``collect`` reading its trial statuses)."""
    import importlib
    import sys

    for old, new in LEGACY_MODULES.items():
        sys.modules.setdefault(old, importlib.import_module(new))
