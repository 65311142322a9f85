"""Signing in to mail servers with OAuth 2.0: login flows, token storage and refresh.

Layers (imports point down): ``store`` (sealed token records in the vault, or the OS keyring)
-> ``oauth`` (the one OAuth client, Authlib) -> ``login`` (authorization code + PKCE through a
loopback listener, device grant) and ``tokens`` (access tokens for connections: refresh before
expiry, app-only grants). Provider data lives in :mod:`mailvault.net.providers`. Nothing here
imports typer; the commands are in :mod:`mailvault.cli.auth_cmds`.
"""
