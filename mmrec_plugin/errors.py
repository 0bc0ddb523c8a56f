"""Errors a user can fix. The CLI prints them as one line, without a traceback."""


class UserError(Exception):
    """Bad input from the user: a missing dataset, a malformed file, a bad config value.

    The message must say what is wrong, where (file, line, key) and, when possible,
    what would be accepted.
    """


class ConfigError(UserError):
    """A bad configuration key or value; the message names the key and the allowed values."""


class DataError(UserError):
    """A missing or malformed dataset file; the message names the file and the line or shape."""


def closest(name: str, choices) -> str:
    """The entry of ``choices`` closest to ``name`` (case-insensitive), or '' if none is close."""
    import difflib

    choices = list(choices)
    lowered = {c.lower(): c for c in choices}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.5)
    return lowered[hits[0]] if hits else ""


def did_you_mean(name: str, choices) -> str:
    """' (did you mean 'x'?)' or ''."""
    c = closest(name, choices)
    return f" (did you mean '{c}'?)" if c else ""
