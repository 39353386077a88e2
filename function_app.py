"""DataSync's Azure Functions app (Python v2 programming model). Thin: the functions live in
``datasync/functions``; this file builds the app and the provider of its services."""

from datasync.functions import AppProvider, build_function_app

datasync_app = AppProvider()
"""Builds DataSync's services from the app settings on first use; the embedded runtime
installs its own."""

app = build_function_app(datasync_app)
