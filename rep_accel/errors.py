"""The one exception type for user errors.

Raise `RepAccelError` for anything a user can fix (a bad file, a model that does not
fit, an impossible option): the message names the input and the fix. The CLI prints
it as one line and exits non-zero; it never shows a traceback for these.
"""


class RepAccelError(Exception):
    """A user error: bad input, an unsupported model, a model that does not fit."""
