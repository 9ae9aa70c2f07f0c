"""Rate slots belong to the platform's client (base URL + client id), not to an account.

Accounts sharing a client keep the slots of the one that called last (its
window is the likeliest still open); the others' go. Budgets stored before
the caps of `parse_budget` are brought inside them, so that every page that
shows an account can still read its budget.
"""
import re

import django.db.models.deletion
from django.db import migrations, models

import campaigns.models

MAX_CALLS, MIN_WINDOW, MAX_WINDOW = 10_000, 0.1, 86_400.0
_BUDGET = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?|\.\d+)\s*s?\s*$")


def slots_to_clients(apps, schema_editor):
    AdAccount = apps.get_model("campaigns", "AdAccount")
    ApiClient = apps.get_model("campaigns", "ApiClient")
    RateSlot = apps.get_model("campaigns", "RateSlot")
    latest = {}  # client key -> (latest slot date, account id)
    for account in AdAccount.objects.all():
        key = (account.base_url.rstrip("/"), account.client_id)
        last_call = RateSlot.objects.filter(account_id=account.pk).aggregate(m=models.Max("last_used"))["m"]
        if last_call is not None and (key not in latest or last_call > latest[key][0]):
            latest[key] = (last_call, account.pk)
    for (base_url, client_id), (_, account_id) in latest.items():
        client, _ = ApiClient.objects.get_or_create(base_url=base_url, client_id=client_id)
        RateSlot.objects.filter(account_id=account_id).update(api_client=client)
    RateSlot.objects.filter(api_client__isnull=True).delete()


def budgets_within_caps(apps, schema_editor):
    """20000/60s becomes 10000/60s and 10/0.05s 10/0.1s (both slower); 10/90000s becomes 10/86400s."""
    AdAccount = apps.get_model("campaigns", "AdAccount")
    for account in AdAccount.objects.all():
        match = _BUDGET.match(account.rate_limit or "")
        digits = match.group(1).lstrip("0") if match else ""
        if not digits or float(match.group(2)) <= 0:
            continue  # 'none', or text the form never accepted
        window = float(match.group(2))
        if len(digits) > 5 or int(digits) > MAX_CALLS or not MIN_WINDOW <= window <= MAX_WINDOW:
            calls = MAX_CALLS if len(digits) > 5 else min(int(digits), MAX_CALLS)
            capped = f"{calls}/{min(max(window, MIN_WINDOW), MAX_WINDOW):g}s"
            AdAccount.objects.filter(pk=account.pk).update(rate_limit=capped)


def slots_forget(apps, schema_editor):
    """Going back: slots are re-created at the next run; their dates are not worth a mapping back."""
    apps.get_model("campaigns", "RateSlot").objects.all().delete()


class Migration(migrations.Migration):

    dependencies = [
        ("campaigns", "0003_trust_fields"),
    ]

    operations = [
        migrations.CreateModel(
            name="ApiClient",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("base_url", models.CharField(help_text="As the accounts have it, without a trailing slash.",
                                              max_length=500)),
                ("client_id", models.CharField(max_length=200)),
                ("configured_calls", models.PositiveIntegerField(
                    default=0, help_text="Calls per window its accounts' budgets allow together (fewest calls); "
                                         "0: no budget.")),
                ("configured_window_seconds", models.FloatField(
                    default=0.0, help_text="The window of that budget, in seconds (the longest of its accounts').")),
            ],
            options={
                "constraints": [models.UniqueConstraint(fields=("base_url", "client_id"), name="api_client_unique")],
            },
        ),
        migrations.AddField(
            model_name="rateslot",
            name="api_client",
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.CASCADE,
                                    related_name="rate_slots", to="campaigns.apiclient"),
        ),
        migrations.RunPython(slots_to_clients, migrations.RunPython.noop),
        migrations.RunPython(budgets_within_caps, migrations.RunPython.noop),
        migrations.RemoveConstraint(model_name="rateslot", name="rate_slot_unique"),
        migrations.RemoveField(model_name="rateslot", name="account"),
        migrations.RunPython(migrations.RunPython.noop, slots_forget),  # going back: before `account` returns
        migrations.AlterField(
            model_name="rateslot",
            name="api_client",
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="rate_slots",
                                    to="campaigns.apiclient"),
        ),
        migrations.AlterField(
            model_name="rateslot",
            name="last_used",
            field=models.FloatField(default=0.0, help_text="When the call that took it went, in seconds of the slot "
                                                           "clock (the database server's on PostgreSQL, the host's "
                                                           "monotonic clock on SQLite)."),
        ),
        migrations.AlterField(
            model_name="adaccount",
            name="rate_limit",
            field=models.CharField(
                default="10/60s", max_length=32, validators=[campaigns.models.validate_budget],
                help_text="N calls per W seconds, e.g. 10/60s (at most 10,000 calls; a window of 0.1 s to a day); "
                          "'none' for no limit. Accounts with the same base URL and client id share one budget."),
        ),
        migrations.AddConstraint(
            model_name="rateslot",
            constraint=models.UniqueConstraint(fields=("api_client", "index"), name="rate_slot_unique"),
        ),
    ]
