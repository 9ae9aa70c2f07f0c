"""The engine's own state about a platform's budget: each platform client, and the rate slots of its window."""
from __future__ import annotations

from typing import Protocol

from django.db import models

from syncer.budget import RateBudget


class CallsAsClient(Protocol):
    """What names a platform client: an AdAccount, or any row with its base URL and client id."""

    base_url: str
    client_id: str


class ApiClient(models.Model):
    """The platform's client, a base URL and a client id: the rate budget belongs to it, not to an account.

    Accounts with the same base URL and client id are one client to the
    platform, which counts their calls in one window; they share its rate
    slots. Its budget is the one that keeps every such account's configured
    budget (`budget_shared`), written when a run starts or a client is made.
    """

    base_url = models.CharField(max_length=500, help_text="As the accounts have it, without a trailing slash.")
    client_id = models.CharField(max_length=200)
    configured_calls = models.PositiveIntegerField(
        default=0, help_text="Calls per window its accounts' budgets allow together (fewest calls); 0: no budget.")
    configured_window_seconds = models.FloatField(
        default=0.0, help_text="The window of that budget, in seconds (the longest of its accounts').")
    learned_calls = models.PositiveIntegerField(
        default=0, help_text="Calls per window the platform's answers say it allows, when fewer than configured; "
                             "0: pace to the configured budget.")
    learned_at = models.DateTimeField(null=True, blank=True, help_text="When the learned budget last changed.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["base_url", "client_id"], name="api_client_unique")]

    def __str__(self) -> str:
        return f"{self.client_id} at {self.base_url}"

    @staticmethod
    def key_of(account: CallsAsClient) -> tuple[str, str]:
        """The client an account calls as: "http://host/" and "http://host" are one."""
        return account.base_url.rstrip("/"), account.client_id

    @property
    def configured_budget(self) -> RateBudget | None:
        if not self.configured_calls:
            return None
        return RateBudget(calls=self.configured_calls, window_seconds=self.configured_window_seconds)

    @property
    def learned_budget(self) -> RateBudget | None:
        """The budget the platform says it allows, when it is lower than the configured one."""
        if not self.configured_calls or not 0 < self.learned_calls < self.configured_calls:
            return None
        return RateBudget(calls=self.learned_calls, window_seconds=self.configured_window_seconds)

    @property
    def budget_note(self) -> str | None:
        """"the platform allows 6/60s; configured 10/60s" while it allows less than configured, else None."""
        learned = self.learned_budget
        return f"the platform allows {learned}; configured {self.configured_budget}" if learned else None


class RateSlot(models.Model):
    """One of a platform client's N call slots: a call may go once a slot is W seconds old.

    The N rows of a client are its sliding window, shared by every process
    that uses the same database, and by every account of that client.
    """

    api_client = models.ForeignKey(ApiClient, on_delete=models.CASCADE, related_name="rate_slots")
    index = models.PositiveIntegerField()
    last_used = models.FloatField(default=0.0, help_text="When the call that took it went, in seconds of the slot "
                                                         "clock (the database server's on PostgreSQL, the host's "
                                                         "monotonic clock on SQLite).")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["api_client", "index"], name="rate_slot_unique")]
