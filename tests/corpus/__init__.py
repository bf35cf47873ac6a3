import pytest

# Show the compared values when a shared corpus assertion fails.
pytest.register_assert_rewrite("tests.corpus.checks")
