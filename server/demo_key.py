"""Print the first API key of the first account in a config file.

`make run` uses it to show the demo key without the server logging a key.
"""

from __future__ import annotations

import sys

import yaml


def main(path: str) -> int:
    with open(path, encoding="utf-8") as handle:
        document = yaml.safe_load(handle) or {}
    for account in document.get("accounts") or []:
        for key in account.get("api_keys") or []:
            print(key)
            return 0
    print("(no account key in " + path + ")")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
