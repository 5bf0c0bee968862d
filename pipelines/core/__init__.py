"""Shared foundations: configuration, the raw-schema DDL, the build lock and id generation."""
