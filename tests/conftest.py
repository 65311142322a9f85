"""Shared pytest configuration. Fixture modules live beside this file as plugins."""

pytest_plugins = ["tests.fixtures_s3", "tests.fixtures_dovecot", "tests.fixtures_env"]
