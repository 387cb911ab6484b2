import pytest


@pytest.fixture(autouse=True)
def _database(db):
    """Every check may use the database (sessions, the admin's users)."""
