"""Conversation Assistant: iMessage reply suggestions in your own voice, self-hosted."""

__version__ = "0.1.0"

# What each service's health endpoint names itself (`service`), so a client can tell them apart.
SERVER_ID = "conversation-assistant-server"
ML_SERVICE_ID = "conversation-assistant-ml"
