"""The marketplace contract and the chain: the Market port, its on-chain and embedded backends, events, clock."""
