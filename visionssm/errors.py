"""Exception hierarchy shared by the whole library.

Every error visionssm raises on purpose derives from :class:`VisionSSMError`. Errors caused by what a
user passed in (a bad file, an unknown scan name, mismatched shapes) derive from :class:`InputError`;
the CLI turns those into a one-line message and exit code 2.
"""


class VisionSSMError(Exception):
    """Base class of all errors raised by visionssm."""


class InputError(VisionSSMError, ValueError):
    """A user-supplied value, file or option is invalid; the message names it and the problem."""


class BackendUnavailableError(VisionSSMError, RuntimeError):
    """A requested compute backend cannot run on this machine (the message says how to get it)."""
