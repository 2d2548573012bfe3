"""The REST API (/v1), served by `nubis api` and `nubis up`."""

from nubis.api.app import create_app

__all__ = ["create_app"]
