"""gatewaylab.django_site: a one-file Django project under the course's WSGI and ASGI servers; set up once."""

import os
import subprocess
import sys

import httpx
import pytest

from gatewaylab import django_site
from gatewaylab.load import load
from gatewaylab.servers import running, serve_asgi, serve_wsgi

pytestmark = pytest.mark.xdist_group("l10-checks")


@pytest.fixture(autouse=True)
def _no_server_left():
    yield
    assert not [name for name in running() if name.startswith("django-test")]


def test_setup_twice_is_safe_and_both_apps_come_from_it():
    django_site.setup()
    django_site.setup()
    from django.conf import settings
    assert settings.ROOT_URLCONF == "gatewaylab.django_site" and settings.MIDDLEWARE == []
    assert callable(django_site.wsgi_app()) and callable(django_site.asgi_app())


def test_setup_refuses_a_django_configured_for_another_site():
    code = ("from django.conf import settings; settings.configure(ROOT_URLCONF='elsewhere')\n"
            "from gatewaylab import django_site\n"
            "try:\n    django_site.setup()\nexcept RuntimeError as e:\n    print('refused:', e)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ})
    assert "refused: Django is already configured" in done.stdout, done.stderr
    assert "'elsewhere'" in done.stdout


def test_views_under_wsgi_say_where_they_ran():
    with serve_wsgi(django_site.wsgi_app(), name="django-test", server="gatewaylab", threads=2) as server:
        sync = httpx.get(f"{server.url}/sync/?delay=0")
        async_ = httpx.get(f"{server.url}/async/?delay=0")
        missing = httpx.get(f"{server.url}/nowhere/")
    assert sync.status_code == 200 and sync.text.startswith("sync view in gatewaylab-wsgi")
    assert sync.text.endswith("no event loop\n")
    # async_to_sync runs the view's loop in a thread of its own: the one-off loop Django's docs speak of
    assert async_.status_code == 200 and async_.text.endswith(", a running event loop\n")
    assert not async_.text.startswith("async view in gatewaylab-wsgi")
    assert missing.status_code == 404


@pytest.mark.parametrize("server", ["gatewaylab", "uvicorn"])
def test_views_under_asgi_say_where_they_ran(server):
    with serve_asgi(django_site.asgi_app(), name="django-test", server=server, lifespan="off") as running_:
        sync = httpx.get(f"{running_.url}/sync/?delay=0")
        async_ = httpx.get(f"{running_.url}/async/?delay=0")
    assert sync.status_code == 200 and sync.text.endswith("no event loop\n")  # sync_to_async: a thread
    assert async_.status_code == 200 and async_.text.endswith(", a running event loop\n")


def test_a_bad_delay_is_a_short_wait():
    with serve_wsgi(django_site.wsgi_app(), name="django-test", server="gatewaylab") as server:
        for query in ("delay=soon", "delay=-1"):
            assert httpx.get(f"{server.url}/sync/?{query}", timeout=5).status_code == 200


def test_async_views_wait_together_under_asgi_but_hold_a_worker_under_wsgi():
    requests, delay = 4, 0.4
    with serve_wsgi(django_site.wsgi_app(), name="django-test", server="gatewaylab", threads=1) as server:
        wsgi = load(f"{server.url}/async/?delay={delay}", requests, timeout=15)
    with serve_asgi(django_site.asgi_app(), name="django-test", server="gatewaylab", lifespan="off") as server:
        asgi = load(f"{server.url}/async/?delay={delay}", requests, timeout=15)
    assert wsgi.ok == asgi.ok == requests
    assert wsgi.wall >= requests * delay * 0.95  # one worker thread: one async view at a time
    assert asgi.wall < requests * delay * 0.6
