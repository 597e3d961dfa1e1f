"""The loss columns of the history: a loss's values summed over an epoch, per datapoint.

``loss`` = (sum of the step losses over the epoch) / N — the mean per datapoint for
losses that sum over the data plate — or ``loss_0, loss_1, ...`` for a loss of several
values; validation's ``val_loss`` columns are made the same way.
"""

from __future__ import annotations

__all__ = ["add_values", "loss_columns"]


def add_values(totals: list[float], values: tuple[float, ...]) -> list[float]:
    """The running sum of a loss's value(s) over the steps of an epoch.

    >>> add_values(add_values([], (1.0, 2.0)), (3.0, 4.0))
    [4.0, 6.0]
    """
    return list(values) if not totals else [a + b for a, b in zip(totals, values)]


def loss_columns(totals: list[float], n: int, name: str = "loss") -> dict[str, float]:
    """The columns ``name`` (one value) or ``name_0, name_1, ...`` of a history row: the
    summed values per datapoint.

    >>> loss_columns([6.0], 3), loss_columns([2.0, 4.0], 2, "val_loss")
    ({'loss': 2.0}, {'val_loss_0': 1.0, 'val_loss_1': 2.0})
    """
    if len(totals) == 1:
        return {name: totals[0] / n}
    return {f"{name}_{i}": total / n for i, total in enumerate(totals)}
