"""The Functions app: built once here, triggers registered from their Blueprints."""

import azure.functions as func

from triggers import outbound, retention, webhooks

app = func.FunctionApp()
app.register_functions(webhooks.bp)
app.register_functions(outbound.bp)
app.register_functions(retention.bp)
