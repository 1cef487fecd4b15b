"""codex-node: a storage-provider daemon for a Codex-style decentralized storage marketplace."""

__version__ = "0.1.0"
