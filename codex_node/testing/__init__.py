"""Fakes shipped beside the real ports for unit tests: MockMarket, MockLedger, FakeClock, MemoryKV, FakeQuota."""
