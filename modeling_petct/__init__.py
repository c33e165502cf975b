"""petct-fm."""
