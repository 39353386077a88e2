"""DataSync's Azure Functions app (Python v2 model). Thin: the functions live in
``datasync/functions``; this file only builds the app and registers their blueprints."""
import azure.durable_functions as df

from datasync.functions import BLUEPRINTS

app = df.DFApp()
for blueprint in BLUEPRINTS:
    app.register_functions(blueprint)
