"""Benchmarks that print figures: data, model, search, crossview, gpu."""
