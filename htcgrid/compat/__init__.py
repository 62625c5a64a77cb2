"""Running HTC-Grid's programs unchanged on htcgrid.

HTC-Grid's client programs import ``from api.connector import AWSConnector`` (its ``api``
wheel). ``SHIM_PATH`` is a folder holding only a package ``api`` whose ``api.connector`` is
``htcgrid.connector``; put it on the import path and such a program runs as published::

    python -m htcgrid.compat run client.py -n 1 --job_size 10    # runs client.py as __main__
    PYTHONPATH=$(python -m htcgrid.compat path) python client.py  # the same, by hand

``grid_config`` reads HTC-Grid's config files (``htcgrid config check FILE`` explains each
key); ``answers`` and ``dataplane`` give the connector HTC-Grid's shapes. Importing this
package does nothing else; importing ``htcgrid.connector`` (or ``api.connector``) sets the
root logger to INFO, as HTC-Grid's connector does.
"""

from __future__ import annotations

from pathlib import Path

SHIM_PATH = str(Path(__file__).resolve().parent / "shim")

__all__ = ["SHIM_PATH"]
