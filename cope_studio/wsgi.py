import os

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application

from cope_studio.lib.secret_key import refusal_message

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cope_studio.settings")
application = get_wsgi_application()

# gunicorn (and runserver) refuse to serve with a weak key when DEBUG is off.
if settings.WEAK_SECRET_KEY_REASON:
    raise ImproperlyConfigured(refusal_message(settings.WEAK_SECRET_KEY_REASON))
