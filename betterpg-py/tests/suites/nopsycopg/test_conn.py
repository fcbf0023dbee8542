def test_wants_a_connection(betterpg_conn):
    raise AssertionError("not reached")
