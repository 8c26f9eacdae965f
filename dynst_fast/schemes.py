"""The sparse schemes as objects, in one registry (DESIGN.md section 4), like the backbones'.

A :class:`Scheme` says everything the schedule, the sparsifier, the configuration and
the run need to know about it: whether its rounds prune and / or swap, whether it starts
from a fixed set of K* sensors, whether it has one round or ``--rounds``, whether it can
reach a ``--budget`` (a cost) rather than a count, and, for the fixed-set schemes that
choose their set from the data, the :meth:`Scheme.order` of the sensors it starts from.
A scheme whose order comes from the data (``needs_order``) is never started from a
random draw: the :class:`~dynst_fast.sparsifier.Sparsifier` refuses to build without its
order, and the run plan (``dynst_fast.plan``) always hands it over.

A new scheme is one :func:`register_scheme` call here (a subclass if it has an order).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the data-driven orders import the data code only when they run
    from torch import Tensor

    from .constraints import Constraints
    from .data import WindowSplits
    from .sensors import SensorSpace


@dataclass(frozen=True)
class OrderSource:
    """What a fixed-set scheme may choose its K sensors from: the run's windows and
    sensor space, K (``k``), the constraints, and ``--mask``'s ids (or None)."""

    splits: WindowSplits
    space: SensorSpace
    k: int
    constraints: Constraints | None = None
    mask: Sequence[str] | None = None


@dataclass(frozen=True)
class Scheme:
    """One sparse scheme (or ``dense``).

    Attributes:
        name: the registry name (``--scheme``, ``--also``).
        summary: one line for ``--help`` and the docs.
        prunes: its rounds switch sensors off, from N down to K* (Eq. 4).
        swaps: its rounds drop and regrow sensors at a fixed count (Eqs. 5-7).
        fixed_set: K* sensors are on from step 0 (no pruning).
        one_round: a single round (``one-shot``) instead of ``--rounds``.
        takes_budget: the scheme can reach a ``--budget`` (a cost) instead of a count.
        needs_order: its starting set comes from :meth:`order` (chosen from the data or
            given), never from a seeded random draw.
        nested: its order for K is the first K entries of its order for any larger K
            (so one order serves every sparsity).
        dense: every sensor stays on (the dense model).
    """

    name: str
    summary: str
    prunes: bool = False
    swaps: bool = False
    fixed_set: bool = False
    one_round: bool = False
    takes_budget: bool = True
    needs_order: bool = False
    nested: bool = False
    dense: bool = False

    @property
    def uses_rounds(self) -> bool:
        """Whether the schedule has rounds (network and mask phases, then an update)."""
        return self.prunes or self.swaps

    @property
    def trains_theta(self) -> bool:
        """Whether theta is learned (in the rounds' mask phases); else the gate is 0/1."""
        return self.uses_rounds

    def num_rounds(self, rounds: int) -> int:
        """The rounds this scheme runs when ``--rounds`` is ``rounds``."""
        if not self.uses_rounds:
            return 0
        return 1 if self.one_round else rounds

    def order(self, source: OrderSource) -> Tensor | None:
        """The ``[N']`` int64 order of the sensors a fixed-set scheme starts from (the
        sparsifier takes the kept sensors, then movable ones in this order, up to K*), or
        None where the sparsifier draws a seeded random set or the scheme learns it."""
        return None

    def describe(self, source: OrderSource) -> str | None:
        """A progress line for computing the order (None: nothing worth saying)."""
        return None


@dataclass(frozen=True)
class QRScheme(Scheme):
    """PySensors' QR pivots on the POD modes of the training split (r = K)."""

    def order(self, source: OrderSource) -> Tensor:
        from .selection import qr_order, sensor_series

        series = sensor_series(source.splits.train, source.space)
        return qr_order(series, source.k, source.constraints)

    def describe(self, source: OrderSource) -> str:
        return f"choosing {source.k} of {source.space.num_sensors} sensors ({self.name})"


@dataclass(frozen=True)
class GreedyScheme(Scheme):
    """Forward selection of a ridge forecaster of the whole field."""

    def order(self, source: OrderSource) -> Tensor:
        from .selection import greedy_order, sensor_series

        s = source.splits
        train, val = sensor_series(s.train, source.space), sensor_series(s.val, source.space)
        return greedy_order(train, val, s.t_in, s.t_out, source.k, source.constraints)

    def describe(self, source: OrderSource) -> str:
        return f"choosing {source.k} of {source.space.num_sensors} sensors ({self.name})"


@dataclass(frozen=True)
class MaskScheme(Scheme):
    """The active set of ``--mask FILE``."""

    def order(self, source: OrderSource) -> Tensor:
        from .selection import mask_order

        if source.mask is None:
            raise ValueError("the mask scheme trains a given set: name it with --mask FILE")
        return mask_order(source.mask, source.space.ids)


SCHEMES: dict[str, Scheme] = {}


def register_scheme(scheme: Scheme) -> Scheme:
    """Add ``scheme`` to the registry (its name must be new); returns it."""
    if scheme.name in SCHEMES:
        raise ValueError(f"register_scheme: a scheme named {scheme.name!r} exists")
    if scheme.prunes and scheme.fixed_set:
        raise ValueError(f"register_scheme({scheme.name!r}): a fixed set does not prune")
    if scheme.needs_order and not scheme.fixed_set:
        raise ValueError(f"register_scheme({scheme.name!r}): only a fixed set has an order")
    SCHEMES[scheme.name] = scheme
    return scheme


def scheme(name: str | Scheme) -> Scheme:
    """The registered scheme ``name`` (a ``Scheme`` is returned as it is); one clear
    ``ValueError`` naming the choices otherwise."""
    if isinstance(name, Scheme):
        return name
    if name not in SCHEMES:
        raise ValueError(f"unknown scheme {name!r}; choose one of {', '.join(SCHEMES)}")
    return SCHEMES[name]


def scheme_names(sparse: bool = False) -> tuple[str, ...]:
    """Every registered name, in registration order (``sparse``: without ``dense``)."""
    return tuple(n for n, s in SCHEMES.items() if not (sparse and s.dense))


register_scheme(
    Scheme("dynst", "prune in rounds and swap by the gate gradient (the paper)",
           prunes=True, swaps=True)
)  # fmt: skip
register_scheme(Scheme("iterative", "prune in rounds, no swap", prunes=True))
register_scheme(
    Scheme("one-shot", "train theta once, prune to the target at once", prunes=True,
           one_round=True)
)  # fmt: skip
register_scheme(
    Scheme("fixed", "K sensors from the start (seeded), swapped every round (RigL-style)",
           swaps=True, fixed_set=True)
)  # fmt: skip
register_scheme(Scheme("random", "a seeded random set of K sensors", fixed_set=True))
register_scheme(
    QRScheme("qr", "PySensors' QR pivots on the training split's POD modes",
             fixed_set=True, takes_budget=False, needs_order=True)
)  # fmt: skip
register_scheme(
    GreedyScheme("greedy", "forward selection of a ridge forecaster of the whole field",
                 fixed_set=True, takes_budget=False, needs_order=True, nested=True)
)  # fmt: skip
register_scheme(
    MaskScheme("mask", "the set of --mask FILE", fixed_set=True, takes_budget=False,
               needs_order=True)
)  # fmt: skip
register_scheme(Scheme("dense", "every sensor on", takes_budget=False, dense=True))


class OrderMemo:
    """Orders computed once and shared: by scheme and K, and for a ``nested`` scheme a
    longer order's first K entries (one greedy order serves every sparsity)."""

    def __init__(self) -> None:
        self._orders: dict[tuple[str, int], Tensor | None] = {}

    def get(self, s: Scheme, source: OrderSource) -> Tensor | None:
        key = (s.name, source.k)
        if key in self._orders:
            return self._orders[key]
        if s.nested:
            longer = [k for (n, k), v in self._orders.items() if n == s.name and k >= source.k]
            if longer and self._orders[(s.name, min(longer))] is not None:
                return self._orders[(s.name, min(longer))][: source.k]
        self._orders[key] = s.order(source)
        return self._orders[key]
