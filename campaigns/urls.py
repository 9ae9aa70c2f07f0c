"""The status page, its JSON twin, its buttons (POST only), the health check and the Prometheus metrics."""
from django.urls import path
from django.views.generic import RedirectView

from campaigns import metrics, views

app_name = "campaigns"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="campaigns:status", permanent=False)),
    path("status/", views.status_page, name="status"),
    path("status.json", views.status_json, name="status-json"),
    path("status/accounts/<int:account_id>/sync/", views.account_sync_now, name="account-sync-now"),
    path("status/accounts/<int:account_id>/retry-failed/", views.account_retry_failed, name="account-retry-failed"),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", metrics.metrics, name="metrics"),
]
