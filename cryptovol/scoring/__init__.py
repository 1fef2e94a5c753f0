"""Streaming scoring: the champion applied to the live feature stream (`cryptovol score`)."""
