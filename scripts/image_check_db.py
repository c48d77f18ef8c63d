"""``image_check_db.py create|drop NAME``: a throw-away database for one image's start-up check.

scripts/images.sh starts each service image against the local infrastructure; its
migrations run in a database of its own (``imagecheck_NAME`` beside ``DATABASE_URL``'s),
dropped afterwards. ``create`` prints the database's URL.
"""

from __future__ import annotations

import os
import re
import sys

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


def main(argv: list[str]) -> int:
    action, name = argv
    url = make_url(os.environ["DATABASE_URL"])
    database = "imagecheck_" + re.sub(r"\W", "_", name)
    admin = create_engine(url.set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            if action == "create":
                conn.execute(text(f'CREATE DATABASE "{database}"'))
    finally:
        admin.dispose()
    if action == "create":
        print(url.set(database=database).render_as_string(hide_password=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
