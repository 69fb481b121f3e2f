"""Backend control: disconnect, revoke, join/leave, history and info across instances."""
