"""gatewaylab: the code of the course "From sockets to ASGI".

Each module has one job (see CONTRIBUTING.md); import the one you need, e.g. `from gatewaylab.servers import serve_wsgi`.
Importing the package itself is cheap: it imports none of them.
"""

__version__ = "0.1.0"
