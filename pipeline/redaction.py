"""Secrets never stored in clear: the one redaction function for everything the pipeline
records (run parameters and tags, registry tags, dataset lineage, a manifest's ``source``, the
retrain input snapshot's ``source``, log lines).

A value is redacted whole when its key names a secret by convention: a password, secret, token,
key or credential, a signature, and Hadoop's families of token-valued keys (``fs.azure.sas.*``,
``*.oauth2.*``, ``*.session.token``). In any other value, every URI is scrubbed: a password in
its userinfo (``https://alice:<redacted>@host``; a bare token as the user of an http(s) URI,
``https://<redacted>@github.com``), and the values of secret query parameters (``?sig=``,
``?token=``, ``X-Amz-Signature``, ``X-Amz-Credential``, ``X-Amz-Security-Token``,
``X-Goog-Signature``, ``access_token``, ``password``, ...). Standard library only, base layer.
"""

from __future__ import annotations

import re

REDACTED = "<redacted>"
# words that make a key (or a query parameter) secret wherever they appear in its name
SECRET_WORDS = ("password", "passwd", "pwd", "secret", "token", "key", "credential",
                "signature")
# whole segments of a dotted key that make it secret: SAS tokens, OAuth2 client settings, ...
SECRET_SEGMENTS = frozenset({"sas", "oauth", "oauth2", "sig", "auth"})
# keys of our own typed configuration that contain one of those words but hold no secret
NOT_SECRETS = frozenset({"text.url_token", "text.email_token", "text.mention_token",
                         "text.token_pattern"})
# scheme://user:password@ (the password may hold '@' and ':': the last '@' before the path ends
# the userinfo), or a bare user before '@' in http(s), where it is a token by convention
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/?#@:\s]*)"
                       r"(?::(?P<password>[^/?#\s]*))?@")
# name=value after '?', '&' or ';' (or at the start: a SAS token stored without its '?')
_PARAMETER = re.compile(r"(?P<lead>^|[?&;])(?P<name>[^=&#;?\s]+)=(?P<value>[^&#;\s]*)")
_SEGMENT = re.compile(r"[._\-\s/:]+")


def secret_name(name: str) -> bool:
    """True when a key or a query parameter's name says its value is a secret."""
    lowered = name.lower()
    if lowered in NOT_SECRETS:
        return False
    if any(word in lowered for word in SECRET_WORDS):
        return True
    return any(segment in SECRET_SEGMENTS for segment in _SEGMENT.split(lowered))


def redact(value: object, key: str | None = None) -> str:
    """``value`` as it may be stored: ``REDACTED`` when ``key`` names a secret, else with every
    URI's userinfo password and secret query parameters replaced by ``REDACTED``."""
    text = str(value)
    if key is not None and secret_name(key):
        return REDACTED
    if "@" in text:
        text = _USERINFO.sub(_scrub_userinfo, text)
    if "=" in text:
        text = _PARAMETER.sub(_scrub_parameter, text)
    return text


def _scrub_userinfo(match: re.Match[str]) -> str:
    scheme, user, password = match["scheme"], match["user"], match["password"]
    if password is not None:
        return f"{scheme}{user}:{REDACTED}@"
    if scheme.lower() in ("http://", "https://") and user:
        return f"{scheme}{REDACTED}@"  # https://ghp_xxx@github.com: a token, not a name
    return match[0]  # abfs://container@account, s3://bucket: names, not secrets


def _scrub_parameter(match: re.Match[str]) -> str:
    if not match["value"] or not secret_name(match["name"]):
        return match[0]
    return f"{match['lead']}{match['name']}={REDACTED}"
