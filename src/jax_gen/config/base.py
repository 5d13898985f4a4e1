"""Validation shared by every config: the field checks, the finiteness check, and the switch that
lets the command line parse first and validate afterwards.

A config class derives from :class:`Validated` and writes ``validate()`` with the ``_check_*``
helpers, whose messages name the field and its value (``"scale=-1.0 must be positive"``).
"""

import contextlib
import contextvars
import dataclasses
import math
import numbers
from collections.abc import Iterator
from typing import Any


def check_finite(obj: Any) -> None:
    """Raises ``ValueError`` if a float field of the dataclass ``obj`` (or an element of a tuple
    field) is inf or nan.

    One check for every field, run before each config's own ``validate``: inf passes every
    lower bound and nan fails every comparison, so the bound checks would let them through or
    name the wrong rule, and a non-finite hyperparameter only ever trains to nan.
    """
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        for item in value if isinstance(value, tuple) else (value,):
            if isinstance(item, numbers.Real) and not isinstance(item, numbers.Integral):
                if not math.isfinite(item):
                    raise ValueError(f"{f.name}={value!r} must be finite")


def _check_positive(obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if not value > 0:
            raise ValueError(f"{name}={value!r} must be positive")


def _check_non_negative(obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if not value >= 0:
            raise ValueError(f"{name}={value!r} must be non-negative")


def _check_unit_interval(obj: Any, *names: str, closed_right: bool = False) -> None:
    for name in names:
        value = getattr(obj, name)
        inside = 0 <= value <= 1 if closed_right else 0 <= value < 1
        if not inside:
            interval = "[0, 1]" if closed_right else "[0, 1)"
            raise ValueError(f"{name}={value!r} must lie in {interval}")


def _check_ambient_dim(obj: Any) -> None:
    if not (isinstance(obj.ambient_dim, int) and obj.ambient_dim >= 2):
        raise ValueError(f"ambient_dim={obj.ambient_dim!r} must be an integer >= 2")


def _check_silhouette(obj: Any) -> None:
    """The fields a silhouette image's config (cat, image) shares."""
    _check_positive(obj, "scale")
    _check_ambient_dim(obj)
    if not 0 < obj.threshold <= 255:
        raise ValueError(f"threshold={obj.threshold!r} must lie in (0, 255]")


def _check_choice(obj: Any, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(obj, name)
    if value not in choices:
        raise ValueError(f"{name}={value!r} must be one of {', '.join(choices)}")


_validating = contextvars.ContextVar("jax_gen_validating", default=True)


class Validated:
    """Mixin: :func:`check_finite` and ``validate()`` run when the dataclass is created, unless
    deferred."""

    def __post_init__(self) -> None:
        if _validating.get():
            check_finite(self)
            self.validate()

    def validate(self) -> None:
        """Raises ``ValueError`` naming the first invalid field and its value."""


@contextlib.contextmanager
def deferred_validation() -> Iterator[None]:
    """Creates configs without validating them; call :func:`validate_all` afterwards.

    The command line parses first and then reports the first invalid value as one line.
    """
    token = _validating.set(False)
    try:
        yield
    finally:
        _validating.reset(token)


def validate_all(obj: Any) -> None:
    """Validates a dataclass and every dataclass nested in its fields, depth first.

    Every float field of every one of them must be finite (:func:`check_finite`), whether or
    not its class has a ``validate`` of its own.
    """
    if not dataclasses.is_dataclass(obj):
        return
    for f in dataclasses.fields(obj):
        validate_all(getattr(obj, f.name))
    check_finite(obj)
    if isinstance(obj, Validated) or hasattr(obj, "validate"):
        obj.validate()
