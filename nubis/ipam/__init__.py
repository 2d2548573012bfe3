"""Address allocation: which /64 of a location's prefix, which address in a /64."""
