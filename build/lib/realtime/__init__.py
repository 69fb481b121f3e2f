"""realtime: a push server. Kafka and HTTP in, Socket.IO and SSE out, scaled out via Redis."""

__version__ = "0.1.0"
