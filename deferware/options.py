"""The one table of ``DeferMiddleware`` options, shared by the keyword and the PasteDeploy (ini)
paths: each :class:`Option` has a default, the accepted values and a strict parser, so the two
paths cannot drift apart, and every error names the option, the accepted values and the value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

__all__ = ["OPTIONS", "Option", "from_ini", "from_keywords"]


@dataclass(frozen=True)
class Option:
    """One option: its name, default, accepted values and what it means."""

    name: str
    default: str
    choices: tuple[str, ...]
    doc: str

    def check(self, value: object, given: object = None) -> str:
        """Return *value* if accepted, else raise ``ValueError`` naming *given* (what was written)."""
        if isinstance(value, str) and value in self.choices:
            return value
        shown = value if given is None else given
        choices = ", ".join(map(repr, self.choices))
        raise ValueError(f"DeferMiddleware option {self.name!r} must be one of {choices}; got {shown!r}.")

    def parse(self, text: str) -> str:
        """Parse strictly: blanks around and case are ignored, nothing else is guessed."""
        if not isinstance(text, str):
            return self.check(text)
        return self.check(text.strip().lower(), given=text)


_ON_CALLBACK_ERROR = Option(
    "on_callback_error",
    "raise",
    ("raise", "log"),
    "What an exception from an after_this_request callback does. 'raise': it propagates (the app "
    "iterable is closed, close callbacks run). 'log': it is logged on the 'deferware' logger and "
    "the response goes on as it was before that callback.",
)
OPTIONS: dict[str, Option] = {option.name: option for option in (_ON_CALLBACK_ERROR,)}


def from_keywords(**values: Any) -> dict[str, str]:
    """Check keyword option values with the ini parser; unset options get their defaults."""
    return {name: option.parse(values.get(name, option.default)) for name, option in OPTIONS.items()}


def from_ini(local_conf: Mapping[str, str], global_conf: Mapping[str, str]) -> dict[str, str]:
    """Parse a PasteDeploy filter section's options strictly.

    An unknown key is an error naming the known ones (PasteDeploy would only say ``TypeError:
    unexpected keyword``). So is a deferware option in the global configuration (``[DEFAULT]``, a
    ``set`` line, a pserve variable): PasteDeploy silently drops a section's own setting of a key
    that is also there, so the value meant cannot be known.
    """
    unknown = sorted(set(local_conf) - set(OPTIONS))
    if unknown:
        raise ValueError(
            f"Unknown deferware option(s) {', '.join(map(repr, unknown))} in the ini section with "
            f"'use = egg:deferware'. Known options: {', '.join(map(repr, OPTIONS))}."
        )
    in_defaults = sorted(name for name in OPTIONS if name in global_conf)
    if in_defaults:
        example = in_defaults[0]
        raise ValueError(
            f"deferware option(s) {', '.join(map(repr, in_defaults))} found in the global configuration "
            f"([DEFAULT], a 'set' line, or a variable of that name such as pserve's '{example}=...' "
            "argument). PasteDeploy drops a filter section's own value for a key that is also there, so "
            "the value meant cannot be known. Set it in the ini section with 'use = egg:deferware', or "
            f"take it from a variable of another name: '{example} = %(callback_errors)s'."
        )
    return {
        name: option.parse(local_conf[name]) if name in local_conf else option.default
        for name, option in OPTIONS.items()
    }
