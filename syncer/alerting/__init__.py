"""Alerts that reach people: conditions found in the database, alerts opened and resolved, messages sent."""
