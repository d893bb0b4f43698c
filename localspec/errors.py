"""The one exception type a user sees.

Anything raised as `LocalspecError` is printed by the CLI as a single line on
stderr with exit code 2; everything else is a bug and keeps its traceback.
"""


class LocalspecError(Exception):
    """A problem with the user's input or environment, stated in one line."""
