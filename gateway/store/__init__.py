"""Everything the gateway keeps: accounts, keys, balances, reservations, history — in Redis."""
