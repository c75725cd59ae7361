"""Settings, logging and error reporting: read once at the edge, passed inward."""
