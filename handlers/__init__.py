"""HTTP and websocket handlers; each module ends with `default_handlers`."""
