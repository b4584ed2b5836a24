"""Long-running services: the gateway and the drift monitor."""
