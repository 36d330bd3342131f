"""A clock the test moves by hand, for everything that takes a ``clock`` callable: tests never sleep."""

from __future__ import annotations

T0 = 1_700_000_000.0


class FakeClock:
    """POSIX time that moves only when told to (``advance``)."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
