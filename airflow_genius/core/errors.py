"""Errors of the genius core.

Every error a user can cause (a bad spec, an unknown class, a path that escapes its root) is a
`GeniusError`: its message is one line that says what was wrong and what was expected, so the CLI can
print it as is and exit non-zero. :class:`RunCancelled` is the one exception here that is not an error:
it stops a run on SIGTERM/SIGINT.
"""

from __future__ import annotations


class GeniusError(Exception):
    """Base of every error the core raises on purpose."""


class RunCancelled(BaseException):
    """Raised inside the task's code when SIGTERM/SIGINT arrives; BaseException so user code cannot
    swallow it with ``except Exception``.

    >>> issubclass(RunCancelled, Exception)
    False
    """


class SpecError(GeniusError, ValueError):
    """A TaskSpec (or a field of it) is malformed.

    >>> str(SpecError("task.method", "expected a non-empty string", got=3))
    'task.method: expected a non-empty string, got 3'
    """

    def __init__(self, field: str, problem: str, *, got: object = ...) -> None:
        self.field = field
        self.problem = problem
        message = f"{field}: {problem}"
        if got is not ...:
            shown = repr(got)
            message += f", got {shown if len(shown) <= 80 else shown[:77] + '...'}"
        super().__init__(message)


class TaskImportError(GeniusError, ImportError):
    """The task class named in a spec cannot be imported or is not a genius Task."""


class TaskCallError(GeniusError, TypeError):
    """The method named in a spec does not exist or does not accept the given args/kwargs."""


class PathEscapeError(GeniusError, ValueError):
    """A path built from user data would leave the folder it must stay in."""


class BackendUnavailableError(GeniusError, ImportError):
    """An optional backend library is not installed (the message names the extra to install)."""


class StateError(GeniusError):
    """A state store could not do what was asked."""


class TransitionConflict(StateError):
    """A status transition lost a race or is not allowed from the record's current status."""


class RunNotFound(StateError, KeyError):
    """No run record exists for the given run key."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0]) if self.args else "run record not found"


def missing_extra(module: str, extra: str) -> BackendUnavailableError:
    """Build the error raised when an optional dependency is absent.

    >>> str(missing_extra("redis", "redis"))
    "the 'redis' package is required for this backend: pip install 'airflow-provider-genius[redis]'"
    """
    return BackendUnavailableError(
        f"the {module!r} package is required for this backend: pip install 'airflow-provider-genius[{extra}]'"
    )
