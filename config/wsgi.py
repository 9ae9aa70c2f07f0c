"""WSGI entry point (gunicorn config.wsgi in production)."""
import os
import sys

from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application

# gunicorn's "App failed to load": it stops, instead of starting the worker again and again.
APP_LOAD_ERROR = 4

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
try:
    application = get_wsgi_application()
except ImproperlyConfigured as error:
    # A bad setting is something the operator fixes: one line, as manage.py says it, no traceback.
    sys.stderr.write(f"Configuration error: {error}\n")
    sys.exit(APP_LOAD_ERROR)
