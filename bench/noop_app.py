"""A Flask app that does nothing: the HTTP stack's own limit, for B3."""

from __future__ import annotations

from flask import Flask, Response, jsonify, request


def create_app() -> Flask:
    """A Flask app whose POST /api reads the JSON body and answers {"ok": true}."""
    app = Flask(__name__)

    @app.post("/api")
    def command() -> Response:
        """Read the command like the bank would, do nothing with it."""
        request.get_json()
        return jsonify({"ok": True})

    @app.get("/api/health")
    def health() -> Response:
        """Answer, so the benchmark can wait for this server like for the bank."""
        return jsonify({"status": "ok"})

    return app
