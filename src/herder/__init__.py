"""herder: an LLM inference gateway (OpenAI-compatible) in front of a fleet of model servers."""

__version__ = "0.1.0"
