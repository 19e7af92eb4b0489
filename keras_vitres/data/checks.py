"""The positive-integer check that the data pipelines, the builders and the analyses share (on the lowest floor
that needs it)."""

import numbers


def is_positive_int(value):
    """Whether `value` is an integer >= 1 (a Python or NumPy int; a bool is not)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1


def check_positive_int(name, value, *, allow_none=False):
    """Raises a ValueError naming `name` unless `value` is an int >= 1 (or None, with `allow_none`)."""
    if not (is_positive_int(value) or (allow_none and value is None)):
        or_none = " or None" if allow_none else ""
        raise ValueError(f"`{name}` must be a positive int{or_none}; received {name}={value!r}.")
