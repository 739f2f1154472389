"""Stores: the contract types, BaseStore, and the in-memory and SQLite backends."""
