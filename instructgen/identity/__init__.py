"""Self-identity data: a persona, multilingual seed pools, and a contamination scan."""
