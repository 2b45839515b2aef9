"""A local Salesforce org speaking the REST API over HTTPS, seeded with GTM data.

``SandboxOrg.start(data="demo")`` runs one in a background thread; see ``server.py``.
"""

from gtm_sandbox.org.server import API_VERSION, SandboxOrg

__all__ = ["API_VERSION", "SandboxOrg"]
