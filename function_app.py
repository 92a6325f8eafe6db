"""Azure Function app: a timer and HTTP triggers around shared.entry."""

from __future__ import annotations

import json
import logging
import os

import azure.functions as func

from shared import entry

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
logger = logging.getLogger("function_app")


@app.timer_trigger(
    schedule="%THREATFOX_SYNC_SCHEDULE%",
    arg_name="timer",
    run_on_startup=False,
    use_monitor=True,
)
def threatfox_sync_timer(timer: func.TimerRequest) -> None:
    entry.run_timer_sync(os.environ, past_due=timer.past_due)


@app.route(route="sync", methods=["POST"])
def threatfox_sync_http(req: func.HttpRequest) -> func.HttpResponse:
    status, body = entry.handle_sync(req.get_body(), os.environ)
    return func.HttpResponse(
        json.dumps(body), status_code=status, mimetype="application/json"
    )


@app.route(route="status", methods=["GET"])
def threatfox_sync_status(req: func.HttpRequest) -> func.HttpResponse:
    status, body = entry.handle_status(os.environ)
    return func.HttpResponse(
        json.dumps(body), status_code=status, mimetype="application/json"
    )


@app.route(route="huntpack", methods=["GET"])
def threatfox_huntpack(req: func.HttpRequest) -> func.HttpResponse:
    status, body, mimetype = entry.handle_huntpack(dict(req.params), os.environ)
    return func.HttpResponse(body, status_code=status, mimetype=mimetype)
