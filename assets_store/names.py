"""Names of sessions, episodes, cameras and bundles: a documented character set so no name escapes the store."""

import re

from assets_store.errors import StoreError

# Letters, digits, '_', '-', '.', starting with a letter or digit; at most 100 characters.
# No path separators, no '..', no leading dot (hidden / temporary directories are ours).
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")


def validate_name(name: str, what: str = "name") -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name) or ".." in name:
        raise StoreError(
            f"invalid {what} {name!r}: expected 1-100 characters of letters, digits, '_', '-', '.', "
            "starting with a letter or digit, without '..' or path separators"
        )
    return name
