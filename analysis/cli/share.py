"""``python -m analysis share|notes``: read short links and team notes from the share database."""
from __future__ import annotations

import argparse
import csv
import json
import sys

from analysis.share_store import ShareStore


def add_database_argument(parser: argparse.ArgumentParser) -> None:
    """``--db``: a SQLite file or a SQLAlchemy URL (default: ATLAS_DB_URL / ATLAS_DB_PATH)."""
    parser.add_argument("--db", default=None, help="SQLite file or database URL (default: ATLAS_DB_URL, ATLAS_DB_PATH)")


def _store(args: argparse.Namespace) -> ShareStore:
    if args.db is None:
        return ShareStore()
    return ShareStore(args.db if "://" in args.db else f"sqlite:///{args.db}")


def add_share_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the share command."""
    add_database_argument(parser)
    parser.add_argument("id", help="the id after ?s= in a short link")


def share_command(args: argparse.Namespace) -> int:
    """Print the view stored under a short-link id as JSON."""
    view = _store(args).load_view(args.id)
    if view is None:
        print(f"error: no shared view with id {args.id!r}", file=sys.stderr)
        return 2
    print(json.dumps({"id": view.id, "model": view.model, "model_revision": view.model_revision,
                      "state": view.state}, indent=2))
    return 0


def notes_command(args: argparse.Namespace) -> int:
    """Print every note on the model's heads as CSV."""
    writer = csv.writer(sys.stdout)
    writer.writerow(["head", "layer", "head_index", "author", "label", "text"])
    for note in _store(args).notes(args.model):
        writer.writerow([f"L{note.layer}H{note.head}", note.layer, note.head, note.author, note.label, note.text])
    return 0
