"""vidgen gateway: the REST API the frontend uses, and its projection of every generation.

``create_app(settings, deps)`` builds the FastAPI app; ``python -m vidgen_gateway`` runs the
whole service (API, projection consumer, outbox relay).
"""

from vidgen_gateway.app import create_app
from vidgen_gateway.settings import GatewaySettings

__all__ = ["GatewaySettings", "create_app"]
