"""cryptovol core."""
