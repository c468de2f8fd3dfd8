"""Freeing the placement group of a multi-worker trial's Train run when Tune ends it.

A multi-worker trial launches a ``TorchTrainer`` whose controller actor creates the
placement group of its workers. A placement group created by an actor lives as long
as the job (the search's driver), not the actor: when Tune stops the trial (ASHA, the
end of its budget) or the trial dies, the controller is killed with it and the group
stays reserved, so pending trials wait forever for its CPUs (measured on this machine:
two stopped trials kept 2 of 3 CPUs reserved; Train's own cleaner did not free them).

Contract:

* rank 0 of the Train run records its group's id in ``<search>/<trial id>/`` +
  :data:`PG_FILE` (:func:`record_current_group`, called by the loop's session);
* the driver's :class:`ReleasePlacementGroups` Tune callback removes that group when
  Tune completes, fails or is about to retry the trial. A group already removed (a run
  that finished normally removes its own) is left alone.
"""

from __future__ import annotations

import logging
from typing import Any

from ray.tune import Callback

from mtlsearch.storage import parse as parse_storage

PG_FILE = "train_placement_group.txt"
log = logging.getLogger("mtlsearch.placement")


def record_current_group(path: str) -> None:
    """Write the id of the placement group this worker runs in to ``path``."""
    from ray.util import get_current_placement_group

    group = get_current_placement_group()
    if group is not None:
        parse_storage(path).write_text(group.id.hex() + "\n")


def release(path: str) -> bool:
    """Remove the placement group recorded at ``path`` if it still exists."""
    from ray import PlacementGroupID
    from ray.util import placement_group_table, remove_placement_group
    from ray.util.placement_group import PlacementGroup

    where = parse_storage(path)
    if not where.is_file():
        return False
    hex_id = where.read_text().strip()
    state = placement_group_table().get(hex_id, {}).get("state")
    if state in (None, "REMOVED"):
        return False
    try:
        remove_placement_group(PlacementGroup(PlacementGroupID(bytes.fromhex(hex_id))))
    except Exception as err:  # noqa: BLE001  (a group removed meanwhile is fine)
        log.debug("placement group %s: %s", hex_id, err)
        return False
    return True


class ReleasePlacementGroups(Callback):
    """Tune callback: free the Train run's placement group of every trial Tune ends."""

    def __init__(self, exp_dir: str) -> None:
        self.exp_dir = str(exp_dir)

    def _release(self, trial: Any) -> None:
        release((parse_storage(self.exp_dir) / str(trial.trial_id) / PG_FILE).uri)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._release(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._release(trial)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._release(trial)


__all__ = ["PG_FILE", "ReleasePlacementGroups", "record_current_group", "release"]
