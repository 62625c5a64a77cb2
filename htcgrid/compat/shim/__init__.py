"""A folder for the import path: its only package is ``api`` (see ``htcgrid.compat``)."""
