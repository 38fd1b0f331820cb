"""Live: which calls are live, and what viewers are pushed each tick."""
