"""One-line reasons for runs that end on an error nobody planned for.

A run that meets an unexpected error fails at once with one of these lines
(category `internal`) so that its account can sync again; the log keeps the
traceback. The line never carries the exception's text: it may hold a
secret or a platform's body.
"""
from __future__ import annotations

from django_q.conf import Conf

_where_the_log_is = "the log"


def mark_cluster_worker() -> None:
    """This process is a task cluster worker: its errors are in the cluster's log."""
    global _where_the_log_is
    _where_the_log_is = "the cluster log"


def internal_reason(step: str, error: BaseException) -> str:
    return f"internal error while {step}: {type(error).__name__} (see {_where_the_log_is})"


def not_queued_reason(error: BaseException) -> str:
    """Why a run's task could not be put on the task broker, and what to check."""
    check = "that the database answers" if Conf.ORM else "REDIS_URL and that the broker runs"
    return f"could not queue the run on the task broker ({type(error).__name__}): check {check}"
