"""Signing in: local accounts (username and password, reset by email) and single sign-on over
OpenID Connect, whose groups give the studio's roles."""
