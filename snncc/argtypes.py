"""argparse value types shared by the CLI, the benchmarks and the examples.

Standard library only (no numpy): scripts that must set thread variables before numpy loads
(benchmarks/bench_speed.py) can import it first.
"""
from __future__ import annotations

import argparse


def positive_int(s: str) -> int:
    """An integer > 0, else argparse's one-line usage error."""
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {s!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {v}")
    return v


def positive_int_or_auto(s: str) -> int | str:
    """An integer > 0 or the word ``auto``, else argparse's one-line usage error."""
    if s.strip() == "auto":
        return "auto"
    try:
        return positive_int(s)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or auto, got {s!r}") from None


def nonnegative_int(s: str) -> int:
    """An integer >= 0 (0 often means "all"), else argparse's one-line usage error."""
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {s!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or a positive integer, got {v}")
    return v


def floats(s: str) -> list[float]:
    """Comma-separated numbers, e.g. ``0.485,0.456,0.406``."""
    try:
        return [float(v) for v in s.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {s!r}") from None


def _positive_list(s: str, conv, what: str) -> list:
    """Comma-separated values of type ``conv`` that are > 0 and finite (``none`` = an empty list)."""
    if s.strip() == "none":
        return []
    try:
        vals = [conv(v) for v in s.split(",") if v.strip()]
    except ValueError:
        vals = []
    if not vals or any(not (v > 0 and v != float("inf")) for v in vals):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive {what} or none, got {s!r}")
    return vals


def positive_floats(s: str) -> list[float]:
    """Comma-separated finite numbers > 0 (``none`` = an empty list), e.g. ``2,4``."""
    return _positive_list(s, float, "numbers")


def positive_ints(s: str) -> list[int]:
    """Comma-separated integers > 0 (``none`` = an empty list), e.g. ``32,64``."""
    return _positive_list(s, int, "integers")


def positive_ints_or_auto(s: str) -> list:
    """Comma-separated integers > 0 and the word ``auto`` (``none`` = an empty list), e.g. ``auto,32``."""
    items = [v.strip() for v in s.split(",") if v.strip()]
    if "auto" not in items:
        return positive_ints(s)
    rest = [v for v in items if v != "auto"]
    try:
        vals = positive_ints(",".join(rest)) if rest else []
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers and auto, got {s!r}") from None
    return ["auto"] * (len(items) > len(rest)) + vals


def choices_list(allowed, none_ok: bool = True):
    """A type for a comma list of names from ``allowed`` (and ``none``): returns the list ([] for none)."""
    def parse(s: str) -> list[str]:
        items = [v.strip() for v in s.split(",") if v.strip()]
        if none_ok and items == ["none"]:
            return []
        bad = [v for v in items if v not in allowed]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"expected a comma list of {', '.join(allowed)}"
                                             f"{' or none' if none_ok else ''}, got {s!r}")
        return items
    return parse
