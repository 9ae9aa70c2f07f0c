"""URL routes: the admin, the status page and the health check."""
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("campaigns.urls")),
]
