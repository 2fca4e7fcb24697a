"""A Django project in one file: settings, two views and their URLs, no database (lesson 10).

    >>> from gatewaylab import django_site
    >>> wsgi_app = django_site.wsgi_app()    # Django's WSGIHandler: serve it with serve_wsgi(...)
    >>> asgi_app = django_site.asgi_app()    # Django's ASGIHandler: serve it with serve_asgi(...)

Two views wait `?delay=` seconds (0.5 by default, at most 10) and answer which thread ran them and whether an event
loop was running there: `/sync/` with time.sleep, `/async/` with `await asyncio.sleep`.

Django is configured once per process: `setup()` does it on the first call and does nothing after, so a notebook
cell that calls it can be run again. If something else configured Django first, with other URLs, it says so
instead of serving the wrong site.
"""

import asyncio
import threading
import time

import django
from django.conf import settings
from django.http import HttpResponse
from django.urls import path

SETTINGS = dict(
    DEBUG=False,
    SECRET_KEY="gatewaylab: a demo site on 127.0.0.1, no secret to keep",
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,  # urlpatterns below
    INSTALLED_APPS=[],
    MIDDLEWARE=[],  # none: each request goes straight to its view
    DATABASES={},
    USE_TZ=True,
)


def setup():
    """Configure Django with SETTINGS and set it up, once per process; safe to call again."""
    if not settings.configured:
        settings.configure(**SETTINGS)
        django.setup()
    elif settings.ROOT_URLCONF != __name__:
        raise RuntimeError(f"Django is already configured in this process, for "
                           f"{settings.ROOT_URLCONF!r}: restart the kernel to serve this site")


def delay_of(request):
    """The ?delay= value in seconds: 0.5 by default, clamped to 0..10."""
    try:
        return min(max(float(request.GET.get("delay", 0.5)), 0.0), 10.0)
    except ValueError:
        return 0.5


def where():
    """Which thread runs this code, and whether an event loop is running in it."""
    try:
        asyncio.get_running_loop()
        loop = "a running event loop"
    except RuntimeError:
        loop = "no event loop"
    return f"{threading.current_thread().name}, {loop}"


def sync_view(request):
    time.sleep(delay_of(request))  # a blocking call: holds the thread it runs in
    return HttpResponse(f"sync view in {where()}\n", content_type="text/plain")


async def async_view(request):
    await asyncio.sleep(delay_of(request))  # gives the loop back while it waits
    return HttpResponse(f"async view in {where()}\n", content_type="text/plain")


urlpatterns = [path("sync/", sync_view), path("async/", async_view)]


def wsgi_app():
    """The site as a WSGI app (what a project's wsgi.py gives gunicorn)."""
    setup()
    from django.core.wsgi import get_wsgi_application
    return get_wsgi_application()


def asgi_app():
    """The site as an ASGI app (what a project's asgi.py gives uvicorn)."""
    setup()
    from django.core.asgi import get_asgi_application
    return get_asgi_application()
