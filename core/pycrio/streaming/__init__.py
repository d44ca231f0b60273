"""Streaming (exec, attach, port-forward) protocols and server."""
