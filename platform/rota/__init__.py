"""Rota: scheduled, dedicated LLM endpoints on Ray Serve."""

__version__ = "0.1.0"
