"""Integration tests: the service behind real Envoy and NGINX processes on loopback."""
