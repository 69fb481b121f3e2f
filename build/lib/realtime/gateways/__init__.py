"""Gateways: the transports clients hold open (Socket.IO, Server-Sent Events)."""
