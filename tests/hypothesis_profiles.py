"""How many examples the property tests draw: a third in the default suite,
all of them in CI's property step.

Why: the default ``python -m pytest`` must stay under 90 s on two cores, and
the property tests took about 30 s of CPU there at their full counts. Each
test states its full count once, as ``settings(max_examples=examples(150))``,
and the loaded profile scales it by its own ``max_examples`` over
hypothesis's default of 100:

* ``suite`` (max_examples 34; ``tests/conftest.py`` loads it unless another
  profile is named) draws about a third: ``examples(150) == 51``, never
  fewer than 5 (or the stated count, when that is smaller); a test that
  states no count draws 34;
* ``ci-long`` (max_examples 100) draws the full count. ``.ci/run`` runs every
  property test with it, as its own step::

      python -m pytest -m hypothesis --hypothesis-profile=ci-long

Hypothesis draws fresh examples on every run (the suite is not
derandomised), so the many default runs of a working day add up to far more
than one full-count run, and the CI step keeps the full count per run.
"""

from __future__ import annotations

from hypothesis import settings

#: The full counts (CI's property step).
LONG = "ci-long"
#: The default suite's profile.
SUITE = "suite"
#: Hypothesis's own default count: a stated count is relative to it.
BASE = 100
#: The default suite never draws fewer (unless the stated count is fewer).
FLOOR = 5

settings.register_profile(LONG, max_examples=BASE)
settings.register_profile(SUITE, max_examples=34)


def examples(n: int) -> int:
    """The stated full count ``n`` scaled to the loaded profile (``n`` under
    ``ci-long``; about ``n / 3`` under ``suite``, at least ``min(n, FLOOR)``)."""
    return max(min(n, FLOOR), round(n * settings.default.max_examples / BASE))
