"""GTM sync connector: Salesforce PBO (AgentExchange GTM app) <-> local model <-> Stripe."""

__version__ = "0.1.0"
