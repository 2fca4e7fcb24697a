"""Lesson 08's small real app: a notes API on SQLite that asks a slow upstream service for each note's tag.

    POST /notes?text=buy+milk   asks the upstream for a tag, stores the note, answers 201 {"id", "text", "tag"}
    GET  /notes                 every note, oldest first

Written three times: for Flask (WSGI, each request in a thread of its own), for Starlette as it is often first
written (async views whose calls block the event loop), and for Starlette fixed (httpx.AsyncClient for the upstream,
a thread for SQLite). Both Starlette apps run a LagMonitor on the server's loop for as long as they serve
(app.state.monitor). The text comes in the query string: the course's load driver sends no request body.
"""

import asyncio
import contextlib
import json
import sqlite3
from urllib.parse import parse_qs

import httpx
from flask import Flask, jsonify, request
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from gatewaylab.eventloop import LagMonitor

UPSTREAM_DELAY = 0.2  # seconds the upstream takes to answer, unless asked for another ?delay=


async def upstream_app(scope, receive, send):
    """The slow upstream: GET /tag?text=... answers {"tag": its first word in lower case} after
    ?delay= seconds (0.2 by default), as a remote service would."""
    if scope["type"] != "http":
        return
    query = parse_qs(scope["query_string"].decode("latin-1"))
    words = query.get("text", [""])[0].split()
    await asyncio.sleep(min(float(query.get("delay", [UPSTREAM_DELAY])[0]), 10))
    body = json.dumps({"tag": words[0].lower() if words else "empty"}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def create_db(path):
    """Create the notes table in the SQLite file `path`, unless it is there already."""
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE IF NOT EXISTS notes "
                   "(id INTEGER PRIMARY KEY, text TEXT NOT NULL, tag TEXT NOT NULL)")


def insert_note(path, text, tag):
    """Store a note and commit; return its id. It blocks: it may wait up to 5 s for the file's
    write lock, while another connection writes."""
    with contextlib.closing(sqlite3.connect(path, timeout=5)) as db, db:  # `with db`: commit
        return db.execute("INSERT INTO notes (text, tag) VALUES (?, ?)", (text, tag)).lastrowid


def list_notes(path):
    """Every note, oldest first, as dicts."""
    with contextlib.closing(sqlite3.connect(path, timeout=5)) as db:
        rows = db.execute("SELECT id, text, tag FROM notes ORDER BY id").fetchall()
    return [{"id": id_, "text": text, "tag": tag} for id_, text, tag in rows]


def flask_app(db_path, upstream_url):
    """The notes API for Flask: plain, blocking calls, which is right for WSGI (a thread each)."""
    app = Flask("notes")

    @app.post("/notes")
    def add():
        text = request.args.get("text", "")
        reply = httpx.get(f"{upstream_url}/tag", params={"text": text}, timeout=10)
        reply.raise_for_status()
        tag = reply.json()["tag"]
        return jsonify(id=insert_note(db_path, text, tag), text=text, tag=tag), 201

    @app.get("/notes")
    def notes():
        return jsonify(list_notes(db_path))

    return app


@contextlib.asynccontextmanager
async def watch_loop(app):
    """A lifespan: a LagMonitor beats on the server's loop while it serves (app.state.monitor)."""
    async with LagMonitor() as monitor:
        app.state.monitor = monitor
        yield


def starlette_app(db_path, upstream_url):
    """The same API as async views, as it is often first written: Flask's calls, unchanged."""
    async def add(request):
        text = request.query_params.get("text", "")
        reply = httpx.get(f"{upstream_url}/tag", params={"text": text}, timeout=10)
        reply.raise_for_status()
        tag = reply.json()["tag"]
        note_id = insert_note(db_path, text, tag)
        return JSONResponse({"id": note_id, "text": text, "tag": tag}, status_code=201)

    async def notes(request):
        return JSONResponse(list_notes(db_path))

    return Starlette(routes=[Route("/notes", add, methods=["POST"]),
                             Route("/notes", notes, methods=["GET"])], lifespan=watch_loop)


def fixed_starlette_app(db_path, upstream_url):
    """The async views without blocking calls: httpx.AsyncClient, and SQLite in a thread."""
    @contextlib.asynccontextmanager
    async def lifespan(app):
        async with watch_loop(app), httpx.AsyncClient(timeout=10) as client:
            app.state.client = client  # one client, its connections reused by every request
            yield

    async def add(request):
        text = request.query_params.get("text", "")
        reply = await request.app.state.client.get(f"{upstream_url}/tag", params={"text": text})
        reply.raise_for_status()
        tag = reply.json()["tag"]
        note_id = await asyncio.to_thread(insert_note, db_path, text, tag)
        return JSONResponse({"id": note_id, "text": text, "tag": tag}, status_code=201)

    async def notes(request):
        return JSONResponse(await asyncio.to_thread(list_notes, db_path))

    return Starlette(routes=[Route("/notes", add, methods=["POST"]),
                             Route("/notes", notes, methods=["GET"])], lifespan=lifespan)
