"""HTC-Grid's client package name, served by htcgrid: ``api.connector`` is htcgrid's."""
