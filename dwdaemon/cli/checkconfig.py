"""``dwdaemon check-config FILE``: validate a configuration and print the effective settings."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Any

from dwdaemon.cli import exitcodes
from dwdaemon.config import Config, ConfigError, load_config

HIDDEN = "***"


def effective_settings(config: Config) -> dict[str, Any]:
    """The configuration as JSON-able data, passwords and keys hidden."""
    data = dataclasses.asdict(config)
    data["registered_users"] = {user: HIDDEN for user in config.registered_users}
    pg = data.get("postgresql", {})
    for key in ("password", "connection_uri"):
        if pg.get(key):
            pg[key] = HIDDEN
    for server in data.get("dicomweb", {}).get("servers", {}).values():
        for key in ("password", "certificate_key_password"):
            if server.get(key):
                server[key] = HIDDEN
        server["http_headers"] = {name: HIDDEN for name in server.get("http_headers") or {}}
    proxy = data.get("http_proxy") or ""
    if "@" in proxy:
        scheme, _, rest = proxy.rpartition("//")
        data["http_proxy"] = f"{scheme}//{HIDDEN}@{rest.rpartition('@')[2]}"
    return data


def run_check_config(args: Any) -> int:
    if args.file is not None and not os.path.isfile(args.file):
        print(f"cannot read the configuration: no file {args.file}", file=sys.stderr)
        return exitcodes.FATAL
    try:
        config, warnings = load_config(args.file)
    except ConfigError as exc:
        print(f"invalid configuration: {exc}", file=sys.stderr)
        return exitcodes.PARTIAL
    except OSError as exc:
        print(f"cannot read the configuration: {exc}", file=sys.stderr)
        return exitcodes.FATAL
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    json.dump(effective_settings(config), sys.stdout, indent=2, default=str, sort_keys=True)
    sys.stdout.write("\n")
    return exitcodes.OK
