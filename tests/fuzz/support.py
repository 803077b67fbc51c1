"""Hypothesis profiles for the fuzz tests, and a count of the examples run."""

from __future__ import annotations

import atexit
import functools
import os
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings

LONG = os.environ.get("DWDAEMON_FUZZ", "").lower() == "long"
LONG_EXAMPLES = int(os.environ.get("DWDAEMON_FUZZ_EXAMPLES", "5000"))

settings.register_profile(
    "dwdaemon-ci", max_examples=40, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dwdaemon-long", max_examples=LONG_EXAMPLES, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = settings.get_profile("dwdaemon-long" if LONG else "dwdaemon-ci")

#: Examples run per property (printed at exit in the long mode).
EXAMPLES: Counter[str] = Counter()

F = TypeVar("F", bound=Callable[..., Any])


def counted(fn: F) -> F:
    """Count each example the property runs."""
    name = f"{fn.__module__.rsplit('.', 1)[-1]}.{fn.__qualname__}"

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        EXAMPLES[name] += 1
        return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _report() -> None:
    if LONG and EXAMPLES:
        total = sum(EXAMPLES.values())
        lines = [f"  {count:8d}  {name}" for name, count in sorted(EXAMPLES.items())]
        sys.stderr.write("fuzz examples run:\n" + "\n".join(lines) + f"\n  {total:8d}  total\n")


atexit.register(_report)
