# The fuzz target runs in its own process only: importing it here (pytest's doctest collection
# would) would instrument the package inside pytest.
collect_ignore = ["fuzz_input.py"]
