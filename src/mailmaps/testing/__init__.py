"""Test support that ships with mailmaps: the contract every backend must meet.

Third-party backends reuse it::

    from mailmaps.testing import TableContract

    class TestRedisTable(TableContract):
        fixed_keys = True
        def make_table(self, tmp_path, entries, options): ...
"""

from mailmaps.testing.contract import TableContract

__all__ = ["TableContract"]
